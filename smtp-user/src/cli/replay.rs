//! `smtp-user replay FILE...`: capture files through the monitor's pipeline,
//! EVE lines on stdout or `--output`, a summary line on stderr.
//!
//! Exit codes: 0 all files read to their end; 2 a file was missing, truncated
//! or corrupt (events up to the damage were written, the error line names
//! the file and offset); 1 output could not be written or bad arguments.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use smtp_user::capture::decoder::ChecksumMode;
use smtp_user::capture::ipfrag::FragConfig;
use smtp_user::flow::FlowConfig;
use smtp_user::pipeline::{
    replay_files, Mode, ModeSwitch, PolicyOptions, ReplayOptions, ReplayProgress,
};
use smtp_user::policy::RuleSet;

/// Arguments of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// pcap or pcapng files, read in order as one capture.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write EVE JSON lines to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Also log every command and reply (`smtp_command` / `smtp_reply`).
    #[arg(long)]
    pub log_commands: bool,
    /// Anomaly events of one kind written per flow; later ones are counted
    /// (`anomalies_suppressed` on the flow event and in the stats). Also the
    /// overlapping-IP-fragment anomalies of each IP version written per
    /// replay (the rest are counted in the summary line). Bounds the output
    /// an attacker can cause; alerts are never suppressed.
    #[arg(long, value_name = "N", default_value_t = smtp_user::output::DEFAULT_ANOMALIES_PER_KIND)]
    pub anomalies_per_kind: u32,
    /// SMTP server ports: only TCP flows on these ports are dissected (as the
    /// kernel filter does live); also tells client from server midstream.
    #[arg(long, value_delimiter = ',', default_value = "25,587,2525")]
    pub ports: Vec<u16>,
    /// Close flows idle for this many seconds (capture time).
    #[arg(long, default_value_t = 300)]
    pub idle_timeout: u64,
    /// Most flows tracked at once (least recently active evicted beyond).
    #[arg(long, default_value_t = 65_536)]
    pub max_flows: usize,
    /// Most memory, in MiB, for TCP reassembly plus SMTP session state
    /// across all flows; beyond, the largest flows are shed with a `memcap`
    /// anomaly. 0: no cap.
    #[arg(long, default_value_t = 1024)]
    pub memcap: usize,
    /// Rules file (TOML; see examples/rules.toml). Default: the built-in
    /// policy (protocol errors alert and drop).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// `enforce`: alerts of drop/reset rules say "blocked" (what a live
    /// monitor would have done); `monitor`: "allowed". No packet is sent either way.
    #[arg(long, value_enum, default_value_t = Mode::Enforce)]
    pub mode: Mode,
    /// TCP checksum verification: `on` ignores segments with a bad checksum
    /// (as the receiver does), `off` verifies nothing, `auto` verifies unless
    /// more than 1 in 10 of the first 1000 TCP segments of a file are bad
    /// (an offloaded capture), as Suricata does; a file that is not a
    /// regular file (a pipe) cannot be sampled and is not verified.
    #[arg(long, value_enum, default_value_t = ChecksumMode::Auto)]
    pub checksum: ChecksumMode,
    /// Give up an IP datagram this many seconds (capture time) after its
    /// first fragment (Linux: `ipfrag_time`).
    #[arg(long, default_value_t = 30)]
    pub ipfrag_timeout: u64,
    /// Bytes of IP fragments held at most; beyond, new fragments are
    /// dropped and counted (Linux: `ipfrag_high_thresh`).
    #[arg(long, default_value_t = 4 << 20)]
    pub ipfrag_memcap: usize,
    /// Parsing workers: flows are sharded among them by a hash of their
    /// 5-tuple (both directions to the same worker); the file is read once.
    /// Default: one per core. `--max-flows` and `--memcap` are totals,
    /// shared out equally.
    #[arg(long, value_name = "N", default_value_t = smtp_user::pipeline::default_workers())]
    pub workers: usize,
    /// Measure the reader alone: read, decode and dispatch for `--workers`
    /// shards, write no events; the summary line gives its MB/s.
    #[arg(long)]
    pub bench_reader: bool,
    /// No progress indicator.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub content: super::content::ContentArgs,
}

/// Exit status of a replay that ran (2 = a file was damaged).
pub fn replay(args: ReplayArgs) -> anyhow::Result<u8> {
    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(
            File::create(p)
                .with_context(|| format!("cannot create output file {}", p.display()))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let rules = Arc::new(load_rules(args.rules.as_deref())?);
    let content = args.content.options(&rules)?;
    let opts = ReplayOptions {
        flow: FlowConfig {
            monitored_ports: args.ports.clone(),
            idle_timeout_micros: args.idle_timeout.saturating_mul(1_000_000),
            max_flows: args.max_flows,
            memcap: args.memcap.saturating_mul(1 << 20),
            ..FlowConfig::default()
        },
        log_commands: args.log_commands,
        anomalies_per_kind: args.anomalies_per_kind,
        policy: PolicyOptions {
            rules,
            mode: ModeSwitch::new(args.mode),
            gate: false,
            content,
        },
        checksum: args.checksum,
        fragments: FragConfig {
            timeout_micros: args.ipfrag_timeout.saturating_mul(1_000_000),
            memcap: args.ipfrag_memcap,
        },
        workers: args.workers,
        reader_only: args.bench_reader,
    };
    let tty = io::stderr().is_terminal();
    let quiet = args.quiet;
    let mut next_report = Duration::from_secs(1);
    let mut shown = false;
    let progress = |p: ReplayProgress<'_>| {
        if quiet || p.elapsed < next_report {
            return;
        }
        next_report = p.elapsed + Duration::from_secs(1);
        shown = true;
        let pct = if p.size > 0 {
            p.offset as f64 * 100.0 / p.size as f64
        } else {
            0.0
        };
        let line = format!(
            "replay: {} {:.0}% ({:.1} of {:.1} MB, {:.0} s)",
            p.path.display(),
            pct,
            p.offset as f64 / 1e6,
            p.size as f64 / 1e6,
            p.elapsed.as_secs_f64()
        );
        if tty {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    };
    let (summary, output) = replay_files(
        &args.files,
        &opts,
        BufWriter::with_capacity(1 << 16, out),
        progress,
    );
    if shown && tty {
        eprintln!();
    }
    for e in &summary.errors {
        eprintln!("smtp-user: error: {e}");
    }
    eprintln!("{}", summary.line());
    output.context("cannot write output")?;
    Ok(if summary.errors.is_empty() { 0 } else { 2 })
}

/// The rules of `--rules`, or the built-in policy.
pub fn load_rules(path: Option<&Path>) -> anyhow::Result<RuleSet> {
    match path {
        // The error already reads "FILE:LINE:COLUMN: reason".
        Some(p) => RuleSet::from_file(p).map_err(|e| anyhow::anyhow!("invalid rules: {e}")),
        None => Ok(RuleSet::builtin()),
    }
}
