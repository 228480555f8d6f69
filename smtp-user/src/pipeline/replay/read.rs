//! The replay reader: capture files → frames → TCP segments of monitored
//! flows, IP fragments reassembled, handed to a [`Dispatch`] (the worker in
//! line, or the dispatcher to worker threads). It reads every file once,
//! in order, and owns what is decided per file or across flows: the
//! checksum decision, IP reassembly, the frames skipped, the expiry ticks.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::capture::decoder::{ChecksumMode, ChecksumSample, Decoder};
use crate::capture::CaptureReader;

use super::worker::Dispatch;
use super::{ReplayError, ReplayOptions, ReplayProgress, ReplaySummary};

/// How often (in capture time) idle flows are expired.
const EXPIRE_EVERY_MICROS: u64 = 1_000_000;
/// Frames between two progress callbacks.
const PROGRESS_EVERY_FRAMES: u64 = 1 << 14;

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

/// The kernel's filter, for files: a segment belongs to a monitored flow
/// when either port is monitored.
fn monitored(ports: &[u16], seg: &crate::capture::Segment<'_>) -> bool {
    ports.contains(&seg.src.port()) || ports.contains(&seg.dst.port())
}

/// Reads `paths` into `to`. The summary has what the reader counts: files,
/// frames, bytes, errors, checksum decisions, frames skipped
/// (`table.skipped`) and IP reassembly (`decode.fragments`).
pub fn read<D: Dispatch>(
    paths: &[PathBuf],
    opts: &ReplayOptions,
    to: &mut D,
    mut progress: impl FnMut(ReplayProgress<'_>),
) -> ReplaySummary {
    let start = Instant::now();
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
            let decoded = decoder
                .tcp_bytes(frame.linktype, frame.ts_micros, frame.data)
                .and_then(|t| match t {
                    Some(t) => t.segment().map(|s| Some((t, s))),
                    None => Ok(None),
                });
            match decoded {
                Ok(Some((t, seg))) if monitored(&opts.flow.monitored_ports, &seg) => {
                    to.segment(&t, seg);
                }
                Ok(Some(_)) => summary.not_monitored += 1,
                // A fragment, held or dropped: counted by the decoder; a
                // datagram discarded for an overlap is also an anomaly.
                Ok(None) => {
                    if let Some(o) = decoder.take_overlap() {
                        let n = overlaps_written.get_mut(usize::from(o.src.is_ipv6()));
                        if let Some(n) = n.filter(|n| **n < opts.anomalies_per_kind) {
                            *n += 1;
                            to.overlap(&o);
                        } else {
                            summary.frag_overlaps_not_written += 1;
                        }
                    }
                }
                Err(skip) => summary.table.count_skip(skip),
            }
            if frame.ts_micros >= last_expire.saturating_add(EXPIRE_EVERY_MICROS) {
                decoder.expire(frame.ts_micros);
                to.expire(frame.ts_micros);
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
    summary
}
