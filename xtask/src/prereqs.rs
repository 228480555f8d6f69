//! Prerequisites of the build and the tests, checked and installed.
//!
//! The Debian package list lives in [`APT_PACKAGES`] (one place: add there).

use std::process::Command;

use anyhow::{bail, Result};

use crate::sh;

/// Debian packages the tests and benchmarks use, with why.
pub const APT_PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip netns/veth for the real-kernel tests"),
    (
        "util-linux",
        "nsenter to run the daemon inside a test namespace",
    ),
    ("iperf3", "datapath throughput benchmark"),
    ("tshark", "pcap inspection in tests"),
    ("swaks", "SMTP client for end-to-end tests"),
    ("socat", "ad-hoc TCP endpoints"),
    ("curl", "fetches Suricata's EVE schema for the output tests"),
    (
        "postfix",
        "smtp-sink/smtp-source load generators; real Postfix MTAs for the gate tests",
    ),
    (
        "iptables",
        "the gate's NFQUEUE rule (iptables/ip6tables, run by the daemon)",
    ),
    ("openssl", "a certificate for the STARTTLS gate test"),
    (
        "systemd",
        "systemd-analyze verify/security for the unit (no running systemd needed)",
    ),
    (
        "logrotate",
        "checks the packaged logrotate configuration (logrotate -d)",
    ),
    (
        "dpkg-dev",
        "dpkg-shlibdeps: the package's library dependencies (cargo-deb)",
    ),
    (
        "python3-aiosmtpd",
        "scriptable SMTP server for end-to-end tests",
    ),
    (
        "redis-server",
        "Redis for the EVE output and fleet blocklist tests (redis-cli reads back)",
    ),
    (
        "prometheus",
        "promtool and a real Prometheus server for the metrics test",
    ),
];

const BPF_LINKER: &str = "bpf-linker@0.10.0";
/// Builds the Debian package (`cargo xtask deb`).
const CARGO_DEB: &str = "cargo-deb";

fn ok(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn stdout(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn step(what: &str, argv: &[&str]) -> Result<()> {
    eprintln!("xtask: {what}: {}", argv.join(" "));
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    sh::run(&sh::workspace_root()?, &argv)
}

/// Checks everything, installing what is missing (one line per action).
pub fn ensure() -> Result<()> {
    if !ok("rustup", &["--version"]) {
        bail!("rustup not found: install it from your distribution or rustup.rs first");
    }
    if !stdout("rustup", &["toolchain", "list"])
        .lines()
        .any(|l| l.starts_with("nightly"))
    {
        step(
            "installing the nightly toolchain (builds the eBPF object)",
            &[
                "rustup",
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
            ],
        )?;
    }
    if !stdout(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .lines()
    .any(|l| l.trim() == "rust-src")
    {
        step(
            "installing rust-src for nightly (build-std=core for the BPF target)",
            &[
                "rustup",
                "component",
                "add",
                "rust-src",
                "--toolchain",
                "nightly",
            ],
        )?;
    }
    if !ok("bpf-linker", &["--version"]) {
        step(
            "installing bpf-linker (links the eBPF object)",
            &["cargo", "install", BPF_LINKER, "--locked"],
        )?;
    }
    if !ok("cargo", &["deb", "--version"]) {
        step(
            "installing cargo-deb (builds the Debian package)",
            &["cargo", "install", CARGO_DEB, "--locked"],
        )?;
    }
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| {
            !stdout("dpkg-query", &["-W", "-f=${Status}", p]).contains("install ok installed")
        })
        .collect();
    if !missing.is_empty() {
        if !ok("apt-get", &["--version"]) {
            bail!("missing packages {missing:?} and no apt-get: install them by hand");
        }
        eprintln!(
            "xtask: installing Debian packages {} (DEBIAN_FRONTEND=noninteractive)",
            missing.join(" ")
        );
        let root = sh::workspace_root()?;
        let mut update = vec![
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "update",
            "-q",
        ];
        if !sh::is_root() {
            update.insert(0, "sudo");
        }
        sh::run(
            &root,
            &update.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )?;
        let mut install = vec![
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
        ];
        install.extend(missing.iter());
        if !sh::is_root() {
            install.insert(0, "sudo");
        }
        sh::run(
            &root,
            &install.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )?;
    }
    crate::suricata_schema::ensure();
    Ok(())
}
