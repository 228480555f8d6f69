//! `smtp-user`: the smtp-monitor daemon and CLI.
//!
//! Each subcommand lives in `cli/<name>.rs` with its `Args` struct.

mod cli;

use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: the dissector allocates small,
/// short-lived strings per command and event (`cargo xtask bench-replay`
/// measured the difference; see README, "Replay throughput").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "smtp-user", version, about = "eBPF SMTP monitor")]
struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. `debug`); RUST_LOG wins.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once at start-up: the size of `run`'s options does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Attach to an interface and monitor SMTP sessions until SIGINT/SIGTERM.
    Run(cli::config::RunCommand),
    /// Read pcap/pcapng files through the same pipeline; EVE JSON lines out.
    Replay(cli::replay::ReplayArgs),
    /// Change or inspect a running monitor: pinned maps (verdicts, enforce,
    /// IP blocklist) and the control socket (status, flows, stats, reload).
    Ctl(cli::ctl::CtlArgs),
    /// Check a configuration file, or print the effective configuration.
    Config(cli::config::ConfigArgs),
    /// Write the man pages and shell completions (for packaging).
    #[command(hide = true)]
    Generate(cli::generate::GenerateArgs),
}

fn main() -> std::process::ExitCode {
    let (cli, matches, config) = match cli::config::parse::<Cli>() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("smtp-user: error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cli.log))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.cmd {
        Cmd::Run(run) => {
            if let Some(path) = &config {
                tracing::info!(config = %path.display(), "configuration file");
            }
            run_async(run.args)
        }
        Cmd::Replay(args) => cli::replay::replay(args),
        Cmd::Ctl(args) => cli::ctl::ctl(args).map(|()| 0),
        Cmd::Config(args) => cli::config::config(args, &matches).map(|()| 0),
        Cmd::Generate(args) => cli::generate::generate(args, Cli::command()).map(|()| 0),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("smtp-user: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `run` is the only asynchronous command (ring buffer, signals).
fn run_async(args: cli::run::RunArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("tokio runtime: {e}"))?;
    rt.block_on(cli::run::run(args)).map(|()| 0)
}
