//! Running commands: plain, and privileged (directly as root, else sudo).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// The workspace root (parent of the xtask crate).
pub fn workspace_root() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

pub fn is_root() -> bool {
    // SAFETY-free: read our effective uid from /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Runs a command, failing on a non-zero exit.
pub fn run(dir: &Path, argv: &[String]) -> Result<()> {
    let (prog, args) = argv.split_first().context("empty command")?;
    let status = Command::new(prog)
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run {prog}"))?;
    if !status.success() {
        bail!("`{}` failed ({status})", argv.join(" "));
    }
    Ok(())
}

pub fn cargo(dir: &Path, args: &[&str]) -> Result<()> {
    let mut argv = vec!["cargo".to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    run(dir, &argv)
}

/// Runs as root: directly when we are root, else through sudo keeping the
/// environment and PATH (cargo, rustup, bpf-linker live in ~/.cargo/bin).
pub fn privileged(dir: &Path, argv: &[String]) -> Result<()> {
    if is_root() {
        return run(dir, argv);
    }
    eprintln!("xtask: running as root via sudo: {}", argv.join(" "));
    let mut full = vec![
        "sudo".to_string(),
        "--preserve-env".to_string(),
        "env".to_string(),
        format!("PATH={}", std::env::var("PATH").unwrap_or_default()),
    ];
    full.extend(argv.iter().cloned());
    run(dir, &full)
}
