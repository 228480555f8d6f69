//! One replay worker: the flow table, SMTP dissector and policy of the
//! flows of one shard (see [`super::super::shard`]).
//!
//! The reader gives it segments (in line with one worker, in [`Batch`]es
//! from another thread with several), the capture-time ticks at which idle
//! flows expire, and the overlapping-fragment anomalies to write. Its
//! [`WorkerStats`] are the one definition of what a worker counted; the
//! replay's totals are their sum ([`WorkerStats::merge`]).

use std::io::{self, Write};
use std::time::Duration;

use crate::capture::decoder::{DecodeStats, TcpBytes};
use crate::capture::ipfrag::FragOverlap;
use crate::capture::Segment;
use crate::flow::{FlowTable, TableStats};

use super::super::shard::flow_share;
use crate::output::{EveWriter, OutputCounters};

use super::super::enforcement::Enforcement;
use super::super::smtp_flows::{PipelineCounters, PolicyOptions, SmtpFlows};
use super::ReplayOptions;

/// What one worker (or the reader, for what it counts before dispatch)
/// counted.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    pub pipeline: PipelineCounters,
    /// Verdicts the policy decided (drop/reset/IP block): counted, never
    /// carried out — a replay sends no packet anywhere.
    pub verdicts: u64,
    pub table: TableStats,
    pub output: OutputCounters,
    /// Checksum verdicts (workers) and IP reassembly (the reader).
    pub decode: DecodeStats,
    /// Time spent working (not waiting for input or output).
    pub busy: Duration,
}

impl WorkerStats {
    /// Adds another worker's counts.
    pub fn merge(&mut self, o: &WorkerStats) {
        // Every field named: a new counter cannot be forgotten here.
        let WorkerStats {
            pipeline,
            verdicts,
            table,
            output,
            decode,
            busy,
        } = o;
        self.pipeline.merge(pipeline);
        self.verdicts += *verdicts;
        self.table.merge(table);
        self.output.merge(output);
        self.decode.merge(decode);
        self.busy += *busy;
    }
}

/// Where the reader sends what it decoded: a worker in line, or the
/// dispatcher to worker threads.
pub trait Dispatch {
    /// A monitored segment, parsed from `tcp` (checksum not yet judged).
    fn segment(&mut self, tcp: &TcpBytes<'_>, seg: Segment<'_>);
    /// Capture time reached `now`: expire idle flows.
    fn expire(&mut self, now: u64);
    /// A datagram discarded for overlapping fragments, to write.
    fn overlap(&mut self, o: &FragOverlap);
}

/// A shard's flow table and what it counted.
pub struct ReplayWorker<W: Write> {
    table: FlowTable<SmtpFlows<W>>,
    verdicts: u64,
    checksums: DecodeStats,
}

impl<W: Write> ReplayWorker<W> {
    /// Worker of one of `n` shards, writing its lines to `out`.
    pub fn new(opts: &ReplayOptions, n: usize, out: W) -> ReplayWorker<W> {
        let policy = PolicyOptions {
            gate: false,
            ..opts.policy.clone()
        };
        let writer =
            EveWriter::new(out, opts.log_commands).with_anomalies_per_kind(opts.anomalies_per_kind);
        ReplayWorker {
            table: FlowTable::new(
                flow_share(&opts.flow, n),
                SmtpFlows::with_policy(writer, policy),
            ),
            verdicts: 0,
            checksums: DecodeStats::default(),
        }
    }

    /// The handler's lines go to this writer (the worker's line buffer).
    pub fn writer_mut(&mut self) -> &mut W {
        self.table.handler_mut().writer_mut().get_mut()
    }

    fn count_verdicts(&mut self) {
        let requests = self.table.handler_mut().take_requests();
        self.verdicts += requests
            .iter()
            .filter(|r| matches!(r, Enforcement::Block { .. } | Enforcement::BlockIp { .. }))
            .count() as u64;
    }

    /// Closes every flow and reports (`busy` zero: the caller measures);
    /// the result is the first output error; the output is given back.
    pub fn finish(mut self) -> (WorkerStats, io::Result<()>, W) {
        self.table.close_all();
        self.count_verdicts();
        let table = self.table.stats().clone();
        let mut handler = self.table.into_handler();
        let result = handler.finish_output();
        let stats = WorkerStats {
            pipeline: handler.counters(),
            verdicts: self.verdicts,
            table,
            output: handler.writer().counters(),
            decode: self.checksums,
            busy: Duration::ZERO,
        };
        (stats, result, handler.into_writer().into_inner())
    }
}

impl<W: Write> Dispatch for ReplayWorker<W> {
    fn segment(&mut self, tcp: &TcpBytes<'_>, mut seg: Segment<'_>) {
        seg.checksum = self.checksums.check(tcp, &seg);
        self.table.segment(&seg);
        self.count_verdicts();
    }

    fn expire(&mut self, now: u64) {
        self.table.expire(now);
    }

    fn overlap(&mut self, o: &FragOverlap) {
        self.table.handler_mut().frag_overlap(o);
    }
}
