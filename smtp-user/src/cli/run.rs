//! `smtp-user run`: attach the datapath to an interface and report what it
//! sees until SIGINT/SIGTERM (then detach and unpin).

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use std::{fs::File, io::BufWriter, path::PathBuf};

use anyhow::Context;
use clap::Args;
use smtp_common::Verdict;
use smtp_user::datapath::{IngressMode, Monitor, MonitorOptions, DEFAULT_PIN_ROOT};
use smtp_user::flow::FlowConfig;
use smtp_user::pipeline::{LivePipeline, LiveReport, SegmentBatch};
use tokio::signal::unix::{signal, SignalKind};

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interface to monitor (default: the one carrying the default route).
    #[arg(long)]
    pub iface: Option<String>,
    /// Monitored TCP ports, comma separated (1 to 8).
    #[arg(long, value_delimiter = ',', default_value = "25")]
    pub ports: Vec<u16>,
    /// Ring buffer size in bytes (power of two).
    #[arg(long, default_value_t = smtp_common::DEFAULT_RINGBUF_SIZE)]
    pub ringbuf_size: u32,
    /// Ingress hook: xdp, xdp-generic or tc.
    #[arg(long, default_value = "tc")]
    pub ingress: IngressMode,
    /// Monitor mode: never drop, whatever the verdicts say.
    #[arg(long)]
    pub no_enforce: bool,
    /// Seconds between counter summaries.
    #[arg(long, default_value_t = 10)]
    pub stats_interval: u64,
    /// bpffs directory for pins.
    #[arg(long, default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
    /// Write EVE JSON lines to this file (appending) instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Also log every command and reply (`smtp_command` / `smtp_reply`).
    #[arg(long)]
    pub log_commands: bool,
    /// Close flows idle for this many seconds.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout: u64,
    /// Most flows tracked at once (least recently active evicted beyond).
    #[arg(long, default_value_t = 65_536)]
    pub max_flows: usize,
    /// Drop (in the kernel) sessions whose dissector takes the `error`
    /// transition (fatal protocol violation). Off: alert only.
    #[arg(long)]
    pub drop_on_error: bool,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Install the handlers first: a signal during start-up is then handled
    // after it, through the normal detach path.
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let out: Box<dyn Write + Send> = match &args.output {
        Some(p) => Box::new(
            File::options()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open output file {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let flow = FlowConfig {
        monitored_ports: args.ports.clone(),
        idle_timeout_micros: args.idle_timeout.saturating_mul(1_000_000),
        max_flows: args.max_flows,
        ..FlowConfig::default()
    };
    let mut pipeline = LivePipeline::start(flow, args.log_commands, BufWriter::new(out))
        .context("cannot start the pipeline thread")?;
    let mut mon = Monitor::start(MonitorOptions {
        iface: args.iface,
        ports: args.ports.clone(),
        ringbuf_size: args.ringbuf_size,
        ingress: args.ingress,
        enforce: !args.no_enforce,
        pin_root: args.pin_root,
    })?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let stats_every = args.stats_interval.max(1);
    let mut ticks = 0u64;
    let clock = *mon.clock();
    loop {
        let mut batch = SegmentBatch::default();
        tokio::select! {
            r = mon.next_batch(|rec| {
                let seg = rec.segment(&clock);
                tracing::trace!(
                    src = %seg.src, dst = %seg.dst, seq = seg.seq, ack = seg.ack,
                    flags = format_args!("{:#04x}", seg.flags.0), len = seg.payload.len(),
                    offset = rec.header.offset, total = rec.header.payload_len,
                    uncaptured = seg.uncaptured, hook = rec.header.hook, "record"
                );
                batch.push(&seg);
            }) => { r?; }
            _ = tick.tick() => {
                ticks += 1;
                if ticks.is_multiple_of(stats_every) {
                    summary(&mon);
                }
                if !pipeline.tick(now_micros()).await {
                    break;
                }
            }
            Some(key) = pipeline.next_drop_request() => {
                if args.drop_on_error {
                    match mon.set_verdict(&key, Verdict::Drop) {
                        Ok(()) => tracing::warn!("protocol error: session dropped (verdict written)"),
                        Err(e) => tracing::error!(error = %e, "cannot write drop verdict"),
                    }
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
        if !batch.is_empty() && !pipeline.send(batch).await {
            break;
        }
    }
    let report = pipeline.finish();
    summary(&mon);
    report_line(&report);
    mon.shutdown();
    if let Some(e) = report.output_error {
        anyhow::bail!("cannot write output: {e}");
    }
    Ok(())
}

fn report_line(r: &LiveReport) {
    tracing::info!(
        "pipeline: flows={} transactions={} anomalies={} bytes={} gap_bytes={} drop_requests={} evicted={} timed_out={} memcap_hits={}",
        r.pipeline.flows,
        r.pipeline.transactions,
        r.pipeline.anomalies,
        r.pipeline.bytes,
        r.pipeline.gap_bytes,
        r.pipeline.drop_requests,
        r.table.evicted,
        r.table.timed_out,
        r.table.memcap_hits
    );
}

fn summary(mon: &Monitor) {
    let u = mon.user_stats();
    match mon.stats() {
        Ok(k) => tracing::info!(
            "stats: {k} records_read={} decode_errors={}",
            u.records,
            u.decode_errors
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read counters"),
    }
}
