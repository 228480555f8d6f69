//! `replay`: capture files through the same flow table, dissector and output
//! as live traffic.
//!
//! Files are read in the order given, as one continuous capture (a capture
//! rotated into several files keeps its flows). A damaged file yields every
//! event up to the damage; the error names the file and byte offset and the
//! remaining files are still read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::capture::decoder::{ChecksumMode, ChecksumSample, DecodeStats, Decoder};
use crate::capture::ipfrag::FragConfig;
use crate::capture::{CaptureError, CaptureReader};
use crate::flow::{FlowConfig, FlowTable, TableStats};
use crate::output::{EveWriter, OutputCounters};

use super::enforcement::Enforcement;
use super::smtp_flows::{PipelineCounters, PolicyOptions, SmtpFlows};

/// How often (in capture time) idle flows are expired.
const EXPIRE_EVERY_MICROS: u64 = 1_000_000;
/// Frames between two progress callbacks.
const PROGRESS_EVERY_FRAMES: u64 = 1 << 14;

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
    fn new(path: &Path, mut source: CaptureError) -> ReplayError {
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

/// Whether to verify checksums in the file at `path`.
fn checksum_decision(mode: ChecksumMode, path: &Path) -> (bool, Option<ChecksumSample>) {
    match mode {
        ChecksumMode::On => (true, None),
        ChecksumMode::Off => (false, None),
        // A pipe cannot be read twice: without a sample, nothing is
        // verified (as an offloaded capture would need).
        ChecksumMode::Auto if !path.metadata().is_ok_and(|m| m.is_file()) => (false, None),
        ChecksumMode::Auto => {
            let mut sample = ChecksumSample::default();
            if let Ok(mut r) = CaptureReader::open(path) {
                while let Ok(Some(f)) = r.next_frame() {
                    if !sample.add(f.linktype, f.data) {
                        break;
                    }
                }
            }
            (sample.verify(), Some(sample))
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

/// The kernel's filter, for files: a segment belongs to a monitored flow
/// when either port is monitored.
fn monitored(ports: &[u16], seg: &crate::capture::Segment<'_>) -> bool {
    ports.contains(&seg.src.port()) || ports.contains(&seg.dst.port())
}

/// Requests that would change the datapath live (the gate is off in replay).
fn count_verdicts(requests: Vec<Enforcement>) -> u64 {
    requests
        .iter()
        .filter(|r| matches!(r, Enforcement::Block { .. } | Enforcement::BlockIp { .. }))
        .count() as u64
}

/// Replays `paths` into `out` as EVE lines. Never fails as a whole: file
/// errors are collected in the summary (and output errors returned there
/// as `Err` of the second element).
pub fn replay_files<W: Write>(
    paths: &[PathBuf],
    opts: &ReplayOptions,
    out: W,
    mut progress: impl FnMut(ReplayProgress<'_>),
) -> (ReplaySummary, std::io::Result<()>) {
    let start = Instant::now();
    let policy = PolicyOptions {
        gate: false,
        ..opts.policy.clone()
    };
    let handler = SmtpFlows::with_policy(
        EveWriter::new(out, opts.log_commands).with_anomalies_per_kind(opts.anomalies_per_kind),
        policy,
    );
    let mut table = FlowTable::new(opts.flow.clone(), handler);
    let mut summary = ReplaySummary {
        files: paths.len(),
        ..ReplaySummary::default()
    };
    let mut last_expire = 0u64;
    let mut decoder = Decoder::new(false, opts.fragments);
    // Overlap anomalies written so far, IPv4 and IPv6.
    let mut overlaps_written = [0u32; 2];
    for path in paths {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let decision = checksum_decision(opts.checksum, path);
        decoder.set_verify(decision.0);
        decoder.set_offloaded(
            decision
                .1
                .as_ref()
                .map(|s| s.offloaded())
                .unwrap_or_default(),
        );
        summary.checksum.push(decision);
        let mut reader = match CaptureReader::open(path) {
            Ok(r) => r,
            Err(source) => {
                summary.errors.push(ReplayError::new(path, source));
                continue;
            }
        };
        let mut offset = 0u64;
        loop {
            let frame = match reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(source) => {
                    summary.errors.push(ReplayError::new(path, source));
                    break;
                }
            };
            summary.frames += 1;
            offset = frame.offset + frame.data.len() as u64;
            match decoder.decode(frame.linktype, frame.ts_micros, frame.data) {
                Ok(Some(seg)) if monitored(&opts.flow.monitored_ports, &seg) => {
                    table.segment(&seg);
                    summary.verdicts += count_verdicts(table.handler_mut().take_requests());
                }
                Ok(Some(_)) => summary.not_monitored += 1,
                // A fragment, held or dropped: counted by the decoder; a
                // datagram discarded for an overlap is also an anomaly.
                Ok(None) => {
                    if let Some(o) = decoder.take_overlap() {
                        let n = overlaps_written.get_mut(usize::from(o.src.is_ipv6()));
                        if let Some(n) = n.filter(|n| **n < opts.anomalies_per_kind) {
                            *n += 1;
                            table.handler_mut().frag_overlap(&o);
                        } else {
                            summary.frag_overlaps_not_written += 1;
                        }
                    }
                }
                Err(skip) => table.stats_mut().count_skip(skip),
            }
            if frame.ts_micros >= last_expire.saturating_add(EXPIRE_EVERY_MICROS) {
                decoder.expire(frame.ts_micros);
                table.expire(frame.ts_micros);
                last_expire = frame.ts_micros;
            }
            if summary.frames.is_multiple_of(PROGRESS_EVERY_FRAMES) {
                progress(ReplayProgress {
                    path,
                    offset,
                    size,
                    elapsed: start.elapsed(),
                });
            }
        }
        summary.file_bytes += size.max(offset);
    }
    decoder.finish();
    summary.decode = decoder.stats();
    table.close_all();
    summary.verdicts += count_verdicts(table.handler_mut().take_requests());
    summary.table = table.stats().clone();
    let mut handler = table.into_handler();
    let result = handler.finish_output();
    summary.pipeline = handler.counters();
    summary.output = handler.writer().counters();
    summary.elapsed = start.elapsed();
    (summary, result)
}
