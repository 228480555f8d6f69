//! `replay`: capture files through the same flow table, dissector and output
//! as live traffic.
//!
//! Files are read in the order given, as one continuous capture (a capture
//! rotated into several files keeps its flows). A damaged file yields every
//! event up to the damage; the error names the file and byte offset and the
//! remaining files are still read.
//!
//! With `workers` > 1 ([`ReplayOptions::workers`]) the file is still read
//! once, by one reader thread ([`read`]): it decodes frames, reassembles
//! IP fragments and dispatches each segment to the worker owning its flow
//! ([`dispatch`], [`super::shard`]); each [`worker`] runs its own flow
//! table, dissector and policy. With one worker the reader feeds it in line,
//! on the calling thread. Either way the events are the same; only the
//! order of lines of different flows may differ.

mod dispatch;
mod read;
pub mod worker;

pub use dispatch::{Batch, Dispatcher, BATCH_BYTES};
pub use worker::{Dispatch, ReplayWorker, WorkerStats};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::capture::decoder::{ChecksumMode, ChecksumSample, DecodeStats};
use crate::capture::ipfrag::FragConfig;
use crate::capture::CaptureError;
use crate::flow::{FlowConfig, TableStats};
use crate::output::OutputCounters;

use super::smtp_flows::{PipelineCounters, PolicyOptions};

/// Replay settings.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub flow: FlowConfig,
    /// Also write `smtp_command` / `smtp_reply` events.
    pub log_commands: bool,
    /// Anomaly lines of one kind written per flow (the rest are counted);
    /// also the decoder anomalies (overlapping IP fragments) of each IP
    /// version written per replay.
    pub anomalies_per_kind: u32,
    /// Rules and mode (the gate has no meaning offline and is ignored).
    pub policy: PolicyOptions,
    /// TCP checksum verification (`--checksum`).
    pub checksum: ChecksumMode,
    /// IP reassembly limits.
    pub fragments: FragConfig,
    /// Parsing workers (flows sharded among them); the flow limits of
    /// `flow` are shared out equally ([`super::shard::flow_share`]). 0 counts as 1.
    pub workers: usize,
    /// Measure the reader alone: read, decode and dispatch into batches
    /// for `workers` shards, which are then dropped (no events).
    pub reader_only: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            flow: FlowConfig::default(),
            log_commands: false,
            anomalies_per_kind: crate::output::DEFAULT_ANOMALIES_PER_KIND,
            policy: PolicyOptions::default(),
            checksum: ChecksumMode::default(),
            fragments: FragConfig::default(),
            workers: 1,
            reader_only: false,
        }
    }
}

/// Where a replay is, for a progress indicator.
#[derive(Debug, Clone, Copy)]
pub struct ReplayProgress<'a> {
    pub path: &'a Path,
    /// File bytes read so far, and the file size (0 if unknown).
    pub offset: u64,
    pub size: u64,
    pub elapsed: Duration,
}

/// A file that could not be read to its end.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct ReplayError {
    pub path: PathBuf,
    /// Names the file and the byte offset.
    #[source]
    pub source: CaptureError,
}

impl ReplayError {
    pub(crate) fn new(path: &Path, mut source: CaptureError) -> ReplayError {
        source.path.get_or_insert_with(|| path.to_path_buf());
        ReplayError {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What a replay did, for the summary line.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    pub files: usize,
    /// Frames read, and the file bytes they came from.
    pub frames: u64,
    pub file_bytes: u64,
    /// TCP frames on no monitored port (the kernel filter's job live).
    pub not_monitored: u64,
    pub pipeline: PipelineCounters,
    /// Verdicts the policy decided (drop/reset/IP block): counted, never
    /// carried out — a replay sends no packet anywhere.
    pub verdicts: u64,
    pub table: TableStats,
    pub output: OutputCounters,
    pub elapsed: Duration,
    /// Files that ended in an error (events before the damage were written).
    pub errors: Vec<ReplayError>,
    /// Checksums and IP reassembly.
    pub decode: DecodeStats,
    /// Per worker, in worker order; `pipeline`, `verdicts`, `table`,
    /// `output` and `decode` above are their sum (with the reader's skips
    /// and IP reassembly).
    pub workers: Vec<WorkerStats>,
    /// Batches the reader handed to workers (0 with one worker).
    pub batches: u64,
    /// Datagrams discarded for overlapping fragments whose `anomaly` event
    /// was not written (beyond `anomalies_per_kind` per IP version);
    /// `decode.fragments.overlaps` counts them all.
    pub frag_overlaps_not_written: u64,
    /// Per file read, whether checksums were verified, and the sample
    /// `--checksum auto` decided on (`None` with `on` / `off`).
    pub checksum: Vec<(bool, Option<ChecksumSample>)>,
}

impl ReplaySummary {
    /// One line for a person: what was read, what was found, how fast.
    pub fn line(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let mb = self.file_bytes as f64 / 1e6;
        format!(
            "replay: {} file(s), {} frames, {:.1} MB, {} flows, {} transactions, {} anomalies{}, \
             {}{} alerts, {} verdicts, {} gap bytes, {} frames skipped, {} on other ports, \
             checksums {}, {} bad segments, {} IP fragments ({} datagrams reassembled, \
             {} overlapping{}, {} timed out, {} dropped) in {:.3} s ({:.1} MB/s), \
             {} held for order (longest {} µs){}",
            self.files,
            self.frames,
            mb,
            self.pipeline.flows,
            self.pipeline.transactions,
            self.pipeline.anomalies,
            suppressed(&self.pipeline.anomalies_suppressed),
            if self.pipeline.single_packet_flows > 0 {
                format!(
                    "{} single-packet flows ({} lines not written), ",
                    self.pipeline.single_packet_flows, self.pipeline.single_packet_lines
                )
            } else {
                String::new()
            },
            self.pipeline.alerts,
            self.verdicts,
            self.pipeline.gap_bytes,
            self.table.skipped.iter().sum::<u64>(),
            self.not_monitored,
            self.checksum_line(),
            self.decode.checksum_bad,
            self.decode.fragments.fragments,
            self.decode.fragments.reassembled,
            self.decode.fragments.overlaps,
            if self.frag_overlaps_not_written > 0 {
                format!(" ({} not written)", self.frag_overlaps_not_written)
            } else {
                String::new()
            },
            self.decode.fragments.timed_out,
            self.decode.fragments.duplicates
                + self.decode.fragments.malformed
                + self.decode.fragments.memcap_drops
                + self.decode.fragments.uncaptured,
            secs,
            if secs > 0.0 { mb / secs } else { 0.0 },
            self.table.order_waits,
            self.table.order_wait_max_micros,
            if self.errors.is_empty() {
                String::new()
            } else {
                format!(", {} file error(s)", self.errors.len())
            }
        ) + &self.workers_line()
    }

    /// `; N workers: flows a + b, busy x + y s`, with more than one worker.
    fn workers_line(&self) -> String {
        if self.workers.len() < 2 {
            return String::new();
        }
        let flows: Vec<String> = self
            .workers
            .iter()
            .map(|w| w.pipeline.flows.to_string())
            .collect();
        let busy: Vec<String> = self
            .workers
            .iter()
            .map(|w| format!("{:.3}", w.busy.as_secs_f64()))
            .collect();
        format!(
            "; {} workers: flows {}, busy {} s, {} batches",
            self.workers.len(),
            flows.join(" + "),
            busy.join(" + "),
            self.batches
        )
    }
}

impl ReplaySummary {
    /// "verified", "not verified", or per file, with the auto sample.
    fn checksum_line(&self) -> String {
        let one = |(verify, sample): &(bool, Option<ChecksumSample>)| {
            let v = if *verify { "verified" } else { "not verified" };
            match sample {
                Some(s) => {
                    let off = s.offloaded().len();
                    let off = if *verify && off > 0 {
                        format!(", {off} offloaded sender(s) not verified")
                    } else {
                        String::new()
                    };
                    format!("{v} (auto: {} of {} sampled bad{off})", s.bad, s.checked)
                }
                None => v.to_string(),
            }
        };
        match self.checksum.as_slice() {
            [] => "not verified".to_string(),
            [f] => one(f),
            all => all.iter().map(one).collect::<Vec<_>>().join(" / "),
        }
    }
}

/// ` (N not written: kind n, …)` for anomalies over the per-flow limit, or "".
fn suppressed(t: &crate::output::AnomalyTally) -> String {
    if t.is_empty() {
        return String::new();
    }
    let kinds: Vec<String> = t
        .iter()
        .map(|(k, n)| format!("{} {n}", k.as_str()))
        .collect();
    format!(" ({} not written: {})", t.total(), kinds.join(", "))
}

/// Replays `paths` into `out` as EVE lines. Never fails as a whole: file
/// errors are collected in the summary (and output errors returned there
/// as `Err` of the second element).
pub fn replay_files<W: Write>(
    paths: &[PathBuf],
    opts: &ReplayOptions,
    mut out: W,
    progress: impl FnMut(ReplayProgress<'_>) + Send,
) -> (ReplaySummary, std::io::Result<()>) {
    let start = Instant::now();
    let n = opts.workers.max(1);
    let (mut summary, workers, result) = if opts.reader_only {
        let mut d = Dispatcher::reader_only(n);
        let mut summary = read::read(paths, opts, &mut d, progress);
        d.flush();
        summary.batches = d.batches;
        (summary, Vec::new(), Ok(()))
    } else if n == 1 {
        // One worker: fed in line, no thread, no copy.
        let mut w = ReplayWorker::new(opts, 1, out);
        let summary = read::read(paths, opts, &mut w, progress);
        let (mut stats, result, _) = w.finish();
        stats.busy = start.elapsed();
        (summary, vec![stats], result)
    } else {
        let ((mut summary, batches), workers, result) = std::thread::scope(|scope| {
            dispatch::run(scope, opts, n, &mut out, move |d| {
                let s = read::read(paths, opts, d, progress);
                d.flush();
                (s, d.batches)
            })
        });
        summary.batches = batches;
        (summary, workers, result)
    };
    let mut total = WorkerStats {
        table: summary.table.clone(),
        decode: summary.decode.clone(),
        ..WorkerStats::default()
    };
    for w in &workers {
        total.merge(w);
    }
    summary.pipeline = total.pipeline;
    summary.verdicts = total.verdicts;
    summary.table = total.table;
    summary.output = total.output;
    summary.decode = total.decode;
    summary.workers = workers;
    summary.elapsed = start.elapsed();
    (summary, result)
}
