//! `smtp-user`: the smtp-monitor daemon and CLI.
fn main() {
    println!("smtp-user: under construction");
}
