//! `cargo xtask`: build, prerequisite checks, run and test.
fn main() {}
