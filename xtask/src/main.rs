//! `cargo xtask`: prerequisites, build, run, test and datapath benchmark.
//!
//! * `cargo xtask prereqs`: check and install what the build and the tests
//!   need (nightly rust-src, bpf-linker, Debian packages).
//! * `cargo xtask run [-- ARGS]`: build, then `smtp-user run ARGS` as root
//!   (default interface: the one carrying the default route).
//! * `cargo xtask test [-- ARGS]`: build, then `cargo test --workspace`
//!   (unit, corpus and real-kernel tests) with the privileges they need.
//! * `cargo xtask bench-datapath`: the datapath benchmark tables (README).
//! * `cargo xtask bench-enforcement`: verdict latency and end-of-data gate
//!   latency tables (README).
//! * `cargo xtask bench-gate`: what the end-of-data gate adds per message
//!   with real Postfix (netfilter queue, fallback, baseline) (README).
//! * `cargo xtask deb`: the Debian package (cargo-deb), with the unit, the
//!   default configuration, man pages and completions; prints its path.
//! * `cargo xtask demo`: Postfix's smtp-sink, swaks and the monitor with
//!   `examples/rules.toml` in two namespaces: what gets delivered, what
//!   gets blocked and why.

mod deb;
mod demo;
mod prereqs;
mod sh;
mod suricata_schema;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check and install prerequisites only.
    Prereqs,
    /// Build and run `smtp-user run` (arguments after `--`).
    Run {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build and run every test of the workspace (arguments after `--` go to `cargo test`).
    Test {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Measure the cost of the programs and the ring buffer delivery rate.
    BenchDatapath {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// `replay` throughput against tshark on a generated ~1 GiB capture
    /// (environment: SIZE_MIB, RUNS, MIX=mixed|small; see the script).
    BenchReplay,
    /// Live benchmark: smtp-source → smtp-sink across a veth with the daemon
    /// attached (arguments after `--`: MESSAGES BYTES LEVELS...).
    BenchLive {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Verdict latency and end-of-data gate latency through the daemon
    /// (arguments after `--`: `--sessions N`).
    BenchEnforcement {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The end-of-data gate's added latency per message with real Postfix
    /// as server, Postfix and smtplib as clients (arguments after `--`:
    /// `--messages N`).
    BenchGate {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the Debian package (binary, systemd unit, commented default
    /// configuration, examples/rules.toml, man pages, shell completions)
    /// and print its path.
    Deb,
    /// Send a clean, a forbidden-sender and a forbidden-keyword mail through
    /// the monitor (examples/rules.toml, --gate) to smtp-sink and show what
    /// happened to each; namespaces only, everything removed afterwards.
    Demo {
        /// Use the existing release binary (the re-run under sudo).
        #[arg(long, hide = true)]
        no_build: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the release `smtp-user` binary and returns its path.
fn build_release(root: &std::path::Path) -> Result<std::path::PathBuf> {
    sh::cargo(
        root,
        &[
            "build",
            "--release",
            "-p",
            "smtp-user",
            "--bin",
            "smtp-user",
        ],
    )?;
    Ok(root.join("target/release/smtp-user"))
}

fn run(cli: Cli) -> Result<()> {
    let root = sh::workspace_root()?;
    match cli.cmd {
        Cmd::Prereqs => prereqs::ensure(),
        Cmd::Deb => {
            prereqs::ensure()?;
            let deb = deb::build(&root)?;
            println!("{}", deb.display());
            Ok(())
        }
        Cmd::Run { args } => {
            prereqs::ensure()?;
            // Release: the dissector and reassembly are ~10x faster than in debug.
            let bin = build_release(&root)?;
            let mut cmd = vec![bin.to_string_lossy().into_owned(), "run".into()];
            cmd.extend(args);
            sh::privileged(&root, &cmd)
        }
        Cmd::Test { args } => {
            prereqs::ensure()?;
            // Test output is captured by cargo test: say here, once, whether
            // the corpus tests will run or print their skip lines.
            let corpus = root.join("../shared/corpus/pcap");
            if corpus.is_dir() {
                println!("xtask: real-capture tests use {}", corpus.display());
            } else {
                println!(
                    "xtask: {} not found: the real-capture tests will be skipped \
                     (the shared corpus is not part of the repository)",
                    corpus.display()
                );
            }
            // The end-to-end tests run the release smtp-user binary (the
            // one `run` uses): build it first, as the invoking user.
            build_release(&root)?;
            // --no-fail-fast: one failing test binary must not hide the others.
            let mut cmd: Vec<String> = ["cargo", "test", "--workspace", "--no-fail-fast"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            cmd.extend(args);
            sh::privileged(&root, &cmd)
        }
        Cmd::BenchDatapath { args } => {
            prereqs::ensure()?;
            build_release(&root)?;
            let mut cmd: Vec<String> = [
                "cargo", "bench", "-p", "smtp-e2e", "--bench", "datapath", "--",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            cmd.extend(args);
            sh::privileged(&root, &cmd)
        }
        Cmd::BenchEnforcement { args } => {
            prereqs::ensure()?;
            build_release(&root)?;
            let mut cmd: Vec<String> = [
                "cargo",
                "bench",
                "-p",
                "smtp-e2e",
                "--bench",
                "enforcement",
                "--",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            cmd.extend(args);
            sh::privileged(&root, &cmd)
        }
        Cmd::BenchGate { args } => {
            prereqs::ensure()?;
            build_release(&root)?;
            let mut cmd: Vec<String> = [
                "cargo",
                "bench",
                "-p",
                "smtp-e2e",
                "--bench",
                "gate_latency",
                "--",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            cmd.extend(args);
            sh::privileged(&root, &cmd)
        }
        Cmd::BenchReplay => {
            prereqs::ensure()?;
            sh::privileged(
                &root,
                &[root
                    .join("scripts/bench-replay.sh")
                    .to_string_lossy()
                    .into_owned()],
            )
        }
        Cmd::Demo { no_build } => {
            let bin = if no_build {
                root.join("target/release/smtp-user")
            } else {
                prereqs::ensure()?;
                build_release(&root)?
            };
            if sh::is_root() {
                demo::run(&root, &bin)
            } else {
                let exe = std::env::current_exe()?.to_string_lossy().into_owned();
                sh::privileged(&root, &[exe, "demo".into(), "--no-build".into()])
            }
        }
        Cmd::BenchLive { args } => {
            prereqs::ensure()?;
            let mut cmd = vec![root
                .join("scripts/bench-live.sh")
                .to_string_lossy()
                .into_owned()];
            cmd.extend(args);
            sh::privileged(&root, &cmd)
        }
    }
}
