//! `smtp-user run`: attach the datapath to an interface and report what it
//! sees until SIGINT/SIGTERM (then detach and unpin).

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Args;
use smtp_user::datapath::{IngressMode, Monitor, MonitorOptions, DEFAULT_PIN_ROOT};
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
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Install the handlers first: a signal during start-up is then handled
    // after it, through the normal detach path.
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut mon = Monitor::start(MonitorOptions {
        iface: args.iface,
        ports: args.ports,
        ringbuf_size: args.ringbuf_size,
        ingress: args.ingress,
        enforce: !args.no_enforce,
        pin_root: args.pin_root,
    })?;
    let mut tick = tokio::time::interval(Duration::from_secs(args.stats_interval.max(1)));
    tick.tick().await;
    let clock = *mon.clock();
    loop {
        tokio::select! {
            r = mon.next_batch(|rec| {
                let seg = rec.segment(&clock);
                tracing::debug!(
                    src = %seg.src, dst = %seg.dst, seq = seg.seq, ack = seg.ack,
                    flags = format_args!("{:#04x}", seg.flags.0), len = seg.payload.len(),
                    offset = rec.header.offset, total = rec.header.payload_len,
                    uncaptured = seg.uncaptured, hook = rec.header.hook, "record"
                );
            }) => { r?; }
            _ = tick.tick() => summary(&mon),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    summary(&mon);
    mon.shutdown();
    Ok(())
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
