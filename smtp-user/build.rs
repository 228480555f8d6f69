//! Builds the eBPF object (`smtp-ebpf`, nightly + bpf-linker) and leaves it in
//! `OUT_DIR/smtp-ebpf`, where `datapath::loader` embeds it with
//! `include_bytes_aligned!`. Fails with the command that installs a missing
//! prerequisite.
use std::{env, path::PathBuf, process::Command};

fn fail(msg: &str) -> ! {
    println!("cargo:warning={msg}");
    panic!("{msg}");
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    let ebpf_dir = root.join("smtp-ebpf");
    println!(
        "cargo:rerun-if-changed={}",
        root.join("smtp-common").display()
    );
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");

    if env::var("AYA_BUILD_SKIP").is_err() {
        check_prerequisites();
    }
    // aya-build runs `cargo build --package smtp-ebpf` in the current
    // directory; smtp-ebpf is its own workspace (excluded from the host one),
    // so run it from there.
    if let Err(e) = env::set_current_dir(&ebpf_dir) {
        fail(&format!("cannot enter {}: {e}", ebpf_dir.display()));
    }
    let ebpf_root = ebpf_dir.to_string_lossy().into_owned();
    let pkg = aya_build::Package {
        name: "smtp-ebpf",
        root_dir: &ebpf_root,
        ..Default::default()
    };
    if let Err(e) = aya_build::build_ebpf([pkg], aya_build::Toolchain::Nightly) {
        fail(&format!(
            "building the eBPF object failed: {e:#}. Prerequisites: \
             `rustup toolchain install nightly`, \
             `rustup component add rust-src --toolchain nightly`, \
             `cargo install bpf-linker@0.10.0 --locked` (or run `cargo xtask test`, which installs them)"
        ));
    }
}

fn check_prerequisites() {
    let has_linker = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_linker {
        fail("bpf-linker not found in PATH: install it with `cargo install bpf-linker@0.10.0 --locked` (or run `cargo xtask test`)");
    }
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output();
    let sysroot = match sysroot {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => fail(
            "the nightly toolchain is missing: install it with `rustup toolchain install nightly`",
        ),
    };
    let src = PathBuf::from(sysroot).join("lib/rustlib/src/rust/library/core");
    if !src.exists() {
        fail("nightly rust-src is missing: install it with `rustup component add rust-src --toolchain nightly`");
    }
}
