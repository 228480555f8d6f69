//! Live pipeline: kernel records → flow table → dissector → EVE output, with
//! the parsing on a worker thread so that the ring-buffer reader never waits
//! on parsing or on a slow output.
//!
//! The reader (on the tokio runtime) copies each batch of records into one
//! [`SegmentBatch`] (one allocation per batch, not per record) and sends it
//! over a bounded channel; when the worker falls behind, the reader waits on
//! the channel, the ring buffer fills and the kernel counts the records it
//! could not queue (`ringbuf_lost`), which reassembly then reports as gaps:
//! back-pressure is visible, never silent. The worker hands the
//! [`Enforcement`] requests of the policy (verdicts, IP blocks, gate
//! openings) to the enforcement callback right after the segment that
//! decided them, on its own thread: a verdict reaches the kernel without
//! waiting for the rest of the batch or for the reader.
//!
//! With the netfilter-queue gate, the queue reader thread sends the packets
//! it reads ([`QueueFeed`]) down the same channel; the worker gives each its
//! verdict (the [`LiveGate::verdict`] callback) as soon as the flow was
//! inspected up to the packet's end — after the very segment whose record
//! completes it.
//!
//! With `workers` > 1 there are that many worker threads, each with its own
//! flow table, dissector, policy, enforcement handle and gate verdict
//! handle; every batch is split by flow ([`Sharder`]) so both directions of
//! a flow reach the same worker in order, and a queued packet's question
//! goes to the worker owning its flow. Workers write their EVE lines into
//! their own buffers and hand them whole to one output thread: lines never
//! interleave mid-line. Counters, flow lists and the final report are the
//! sum (or concatenation) over the workers, which are also reported one by
//! one.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use smtp_common::{FlowKey, FAMILY_V4, FAMILY_V6};
use tokio::sync::{mpsc, oneshot};

use crate::capture::{parse_frame, wire::linktype, Checksum, Segment, TcpFlags};
use crate::enforce::nfqueue::QueuedPacket;
use crate::flow::{FlowConfig, FlowInfo, FlowTable, TableStats};
use crate::output::{EveWriter, OutputCounters};
use crate::policy::RuleSet;

use super::enforcement::Enforcement;
use super::gate_queue::QueuedSegment;
use super::shard::{flow_share, Sharder};
use super::smtp_flows::{FlowView, PipelineCounters, PolicyOptions, SmtpFlows};

/// Batches in flight between reader and each worker.
const CHANNEL_BATCHES: usize = 256;
/// Line buffers in flight between each worker and the output thread.
const CHANNEL_OUTPUTS: usize = 64;

/// Segments copied out of the ring buffer: metadata plus one shared byte buffer.
#[derive(Debug, Default)]
pub struct SegmentBatch {
    bytes: Vec<u8>,
    segs: Vec<SegmentMeta>,
}

#[derive(Debug, Clone, Copy)]
struct SegmentMeta {
    ts_micros: u64,
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    /// Payload is `bytes[start..start + len]`.
    start: usize,
    len: usize,
    uncaptured: u32,
    held: bool,
    urgent: u16,
    checksum: Checksum,
}

impl SegmentBatch {
    pub fn push(&mut self, seg: &Segment<'_>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(seg.payload);
        self.segs.push(SegmentMeta {
            ts_micros: seg.ts_micros,
            src: seg.src,
            dst: seg.dst,
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags,
            start,
            len: seg.payload.len(),
            uncaptured: seg.uncaptured,
            held: seg.held,
            urgent: seg.urgent,
            checksum: seg.checksum,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// The segments of each of `sharder`'s workers, in order.
    fn split(self, sharder: &Sharder) -> Vec<SegmentBatch> {
        let mut out: Vec<SegmentBatch> = (0..sharder.workers())
            .map(|_| SegmentBatch::default())
            .collect();
        self.for_each(|s| {
            if let Some(b) = out.get_mut(sharder.shard(s.src, s.dst)) {
                b.push(s);
            }
        });
        out
    }

    fn for_each(&self, mut f: impl FnMut(&Segment<'_>)) {
        for m in &self.segs {
            let payload = self
                .bytes
                .get(m.start..m.start.saturating_add(m.len))
                .unwrap_or_default();
            f(&Segment {
                ts_micros: m.ts_micros,
                src: m.src,
                dst: m.dst,
                seq: m.seq,
                ack: m.ack,
                flags: m.flags,
                payload,
                uncaptured: m.uncaptured,
                held: m.held,
                urgent: m.urgent,
                checksum: m.checksum,
            });
        }
    }
}

enum Msg {
    Batch(SegmentBatch),
    /// Wall clock (µs since the epoch): expire idle flows.
    Tick(u64),
    /// New rules for sessions opened from now on.
    Rules(Arc<RuleSet>),
    /// Snapshot of the tracked flows.
    Flows(oneshot::Sender<Vec<LiveFlow>>),
    /// The pipeline's counters so far.
    Counters(oneshot::Sender<PipelineCounters>),
    /// The flow table's counters so far.
    Table(oneshot::Sender<TableStats>),
    /// Packets read from the netfilter queue, waiting for verdicts.
    Queued(Vec<QueuedPacket>, Instant),
    /// The monitor stops: answer the gated sessions still open.
    Shutdown,
    /// A liveness probe: dropped once everything queued before it is done
    /// (see [`LivePipeline::alive`]).
    Alive(Arc<Probe>),
}

/// Calls its function when the last worker drops its handle: every worker
/// got through what was queued before the probe.
pub struct Probe(std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl Probe {
    /// The probe will not be called (a worker could not be reached).
    fn disarm(&self) {
        if let Ok(mut f) = self.0.lock() {
            f.take();
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(f) = self.0.get_mut().ok().and_then(Option::take) {
            f();
        }
    }
}

/// The gate's live parts.
pub struct LiveGate {
    /// Reply of the `reject` action (one line, no CRLF).
    pub reject_reply: String,
    /// Gives a queued packet its verdict `(id, accept)`; `None` without
    /// the netfilter-queue gate.
    pub verdict: Option<Box<dyn FnMut(u32, bool) + Send>>,
}

impl Default for LiveGate {
    fn default() -> Self {
        LiveGate {
            reject_reply: super::smtp_flows::DEFAULT_REJECT_REPLY.to_string(),
            verdict: None,
        }
    }
}

/// The queue reader's way into the workers.
#[derive(Clone)]
pub struct QueueFeed {
    txs: Vec<mpsc::Sender<Msg>>,
    sharder: Sharder,
}

impl QueueFeed {
    /// Hands packets read from the queue to the workers owning their flows
    /// (blocking while one is behind); false once a worker is gone. A
    /// packet that is not a TCP segment goes to the first worker, which
    /// drops it.
    pub fn send(&self, packets: Vec<QueuedPacket>) -> bool {
        let now = Instant::now();
        if let [tx] = self.txs.as_slice() {
            return tx.blocking_send(Msg::Queued(packets, now)).is_ok();
        }
        let mut per: Vec<Vec<QueuedPacket>> = self.txs.iter().map(|_| Vec::new()).collect();
        for p in packets {
            let w = parse_frame(linktype::RAW, 0, &p.packet)
                .map_or(0, |s| self.sharder.shard(s.src, s.dst));
            if let Some(v) = per.get_mut(w) {
                v.push(p);
            }
        }
        per.into_iter().zip(&self.txs).all(|(packets, tx)| {
            packets.is_empty() || tx.blocking_send(Msg::Queued(packets, now)).is_ok()
        })
    }
}

/// Gives the queued segments that can be decided now their verdicts (and
/// the ones already in `verdicts`).
fn settle<W: Write>(
    h: &mut SmtpFlows<W>,
    verdict: &mut Option<Box<dyn FnMut(u32, bool) + Send>>,
    verdicts: &mut Vec<(u32, bool)>,
) {
    let Some(v) = verdict.as_mut() else {
        verdicts.clear();
        return;
    };
    if h.queue_pending() {
        let now_micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        h.settle_queue(Instant::now(), now_micros, verdicts);
    }
    for (id, accept) in verdicts.drain(..) {
        v(id, accept);
    }
}

/// A queued packet as the gate sees it; `None` when it is not a TCP segment.
fn queued_segment(p: &QueuedPacket, since: Instant) -> Option<QueuedSegment> {
    let seg = parse_frame(linktype::RAW, 0, &p.packet).ok()?;
    let len = (seg.payload.len() as u32).wrapping_add(seg.uncaptured);
    Some(QueuedSegment {
        id: p.id,
        client: seg.src,
        server: seg.dst,
        end_seq: seg.seq.wrapping_add(len),
        since,
    })
}

/// One tracked flow, for `ctl flows`.
#[derive(Debug, Clone)]
pub struct LiveFlow {
    pub info: FlowInfo,
    pub view: FlowView,
    /// Bytes seen client → server and server → client.
    pub bytes: [u64; 2],
}

/// Most flows a snapshot lists.
const MAX_FLOWS_LISTED: usize = 10_000;

/// The workers' counters while they run (`ctl stats`, metrics).
#[derive(Debug, Clone, Default)]
pub struct LiveCounters {
    /// Totals over the workers.
    pub pipeline: PipelineCounters,
    pub table: TableStats,
    /// Each worker's counters, in worker order.
    pub workers: Vec<PipelineCounters>,
}

/// What the workers did, reported when they end.
#[derive(Debug, Clone, Default)]
pub struct LiveReport {
    /// Totals over the workers.
    pub pipeline: PipelineCounters,
    pub table: TableStats,
    pub output: OutputCounters,
    /// Output could not be written (first error).
    pub output_error: Option<String>,
    /// Each worker's counters, in worker order.
    pub workers: Vec<PipelineCounters>,
}

impl LiveReport {
    /// Adds one worker's report.
    fn merge(&mut self, o: LiveReport) {
        self.pipeline.merge(&o.pipeline);
        self.table.merge(&o.table);
        self.output.merge(&o.output);
        if self.output_error.is_none() {
            self.output_error = o.output_error;
        }
        self.workers.push(o.pipeline);
    }
}

/// The reader's handle on the worker threads.
pub struct LivePipeline {
    txs: Vec<mpsc::Sender<Msg>>,
    sharder: Sharder,
    workers: Vec<JoinHandle<LiveReport>>,
    /// With several workers: the thread appending their line buffers.
    output: Option<JoinHandle<std::io::Result<()>>>,
}

/// Appends the workers' line buffers to `out`, each whole; flushes when
/// no buffer is waiting. The first error stops writing (buffers are still
/// taken, so workers never wait on a broken output).
fn output_loop<W: Write>(
    mut out: W,
    lines: std::sync::mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let mut result = Ok(());
    while let Ok(buf) = lines.recv() {
        if result.is_ok() {
            result = out.write_all(&buf);
        }
        for buf in lines.try_iter() {
            if result.is_ok() {
                result = out.write_all(&buf);
            }
        }
        if result.is_ok() {
            result = out.flush();
        }
    }
    result.and_then(|_| out.flush())
}

impl LivePipeline {
    /// Starts `workers` worker threads writing EVE lines to `out` (through
    /// an output thread when there are several). `parts(i)` gives worker
    /// `i` its way of carrying out the policy's requests (called on the
    /// worker's thread) and its gate; the flow limits of `flow` are shared
    /// out ([`flow_share`]).
    pub fn start<W, E>(
        flow: FlowConfig,
        log_commands: bool,
        anomalies_per_kind: u32,
        policy: PolicyOptions,
        out: W,
        workers: usize,
        mut parts: impl FnMut(usize) -> (E, LiveGate),
    ) -> std::io::Result<LivePipeline>
    where
        W: Write + Send + 'static,
        E: FnMut(Enforcement) + Send + 'static,
    {
        let n = workers.max(1);
        let sharder = Sharder::new(n);
        let flow = flow_share(&flow, n);
        let mut txs = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        let spawn_worker =
            |i: usize,
             rx: mpsc::Receiver<Msg>,
             parts: (E, LiveGate),
             start: Box<dyn FnOnce(Worker<E>) -> LiveReport + Send>| {
                let worker = Worker {
                    flow: flow.clone(),
                    log_commands,
                    anomalies_per_kind,
                    policy: policy.clone(),
                    enforce: parts.0,
                    gate: parts.1,
                    rx,
                };
                std::thread::Builder::new()
                    .name(if n == 1 {
                        "smtp-pipeline".into()
                    } else {
                        format!("smtp-worker-{i}")
                    })
                    .spawn(move || start(worker))
            };
        let output = if n == 1 {
            let (tx, rx) = mpsc::channel::<Msg>(CHANNEL_BATCHES);
            txs.push(tx);
            handles.push(spawn_worker(
                0,
                rx,
                parts(0),
                Box::new(move |w| w.run(out, |_| {})),
            )?);
            None
        } else {
            let (lines_tx, lines_rx) = std::sync::mpsc::sync_channel(CHANNEL_OUTPUTS * n);
            let output = std::thread::Builder::new()
                .name("smtp-output".into())
                .spawn(move || output_loop(out, lines_rx))?;
            for i in 0..n {
                let (tx, rx) = mpsc::channel::<Msg>(CHANNEL_BATCHES);
                txs.push(tx);
                let lines = lines_tx.clone();
                handles.push(spawn_worker(
                    i,
                    rx,
                    parts(i),
                    Box::new(move |w| {
                        w.run(Vec::new(), move |buf: &mut Vec<u8>| {
                            if !buf.is_empty() {
                                let _ = lines.send(std::mem::take(buf));
                            }
                        })
                    }),
                )?);
            }
            Some(output)
        };
        Ok(LivePipeline {
            txs,
            sharder,
            workers: handles,
            output,
        })
    }

    pub fn workers(&self) -> usize {
        self.txs.len()
    }

    /// The queue reader's way into the workers.
    pub fn queue_feed(&self) -> QueueFeed {
        QueueFeed {
            txs: self.txs.clone(),
            sharder: self.sharder.clone(),
        }
    }

    /// Sends a copy of `msg` to every worker; false once one is gone.
    async fn broadcast(&self, msg: impl Fn() -> Msg) -> bool {
        for tx in &self.txs {
            if tx.send(msg()).await.is_err() {
                return false;
            }
        }
        true
    }

    /// The monitor stops: gated sessions still open are answered 421 and
    /// their server side reset (after what is queued before this).
    pub async fn shutdown_gate(&self) -> bool {
        self.broadcast(|| Msg::Shutdown).await
    }

    /// Queues a batch, each segment to the worker owning its flow; waits
    /// while a worker is behind.
    pub async fn send(&self, batch: SegmentBatch) -> bool {
        if let [tx] = self.txs.as_slice() {
            return tx.send(Msg::Batch(batch)).await.is_ok();
        }
        for (b, tx) in batch.split(&self.sharder).into_iter().zip(&self.txs) {
            if !b.is_empty() && tx.send(Msg::Batch(b)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Periodic housekeeping with the wall clock: idle timeout, output flush.
    pub async fn tick(&self, now_micros: u64) -> bool {
        self.broadcast(|| Msg::Tick(now_micros)).await
    }

    /// Calls `probe` once every worker has processed everything queued
    /// before (the service manager's watchdog: a wedged worker stops
    /// answering). False if the pipeline has stopped.
    pub async fn alive(&self, probe: impl FnOnce() + Send + 'static) -> bool {
        let probe = Arc::new(Probe(std::sync::Mutex::new(Some(Box::new(probe)))));
        let sent = self.broadcast(|| Msg::Alive(probe.clone())).await;
        if !sent {
            probe.disarm();
        }
        // Our handle goes now; the last worker's drop calls the probe.
        drop(probe);
        sent
    }

    /// Rules for sessions opened from now on.
    pub async fn set_rules(&self, rules: Arc<RuleSet>) -> bool {
        self.broadcast(|| Msg::Rules(rules.clone())).await
    }

    /// Each worker's counters so far, in worker order.
    pub async fn worker_counters(&self) -> Option<Vec<PipelineCounters>> {
        let mut out = Vec::with_capacity(self.txs.len());
        for tx in &self.txs {
            let (reply, rx) = oneshot::channel();
            tx.send(Msg::Counters(reply)).await.ok()?;
            out.push(rx.await.ok()?);
        }
        Some(out)
    }

    /// The pipeline's counters so far (the sum over the workers).
    pub async fn counters(&self) -> Option<PipelineCounters> {
        let per = self.worker_counters().await?;
        let mut total = PipelineCounters::default();
        for c in &per {
            total.merge(c);
        }
        Some(total)
    }

    /// The flow tables' counters so far (the sum over the workers).
    pub async fn table_stats(&self) -> Option<TableStats> {
        let mut total = TableStats::default();
        for tx in &self.txs {
            let (reply, rx) = oneshot::channel();
            tx.send(Msg::Table(reply)).await.ok()?;
            total.merge(&rx.await.ok()?);
        }
        Some(total)
    }

    /// Every counter of the running workers (`ctl stats`, metrics).
    pub async fn live_counters(&self) -> Option<LiveCounters> {
        let workers = self.worker_counters().await?;
        let mut pipeline = PipelineCounters::default();
        for c in &workers {
            pipeline.merge(c);
        }
        Some(LiveCounters {
            pipeline,
            table: self.table_stats().await?,
            workers,
        })
    }

    /// The flows tracked right now (at most 10,000).
    pub async fn flows(&self) -> Option<Vec<LiveFlow>> {
        let mut all = Vec::new();
        for tx in &self.txs {
            let (reply, rx) = oneshot::channel();
            tx.send(Msg::Flows(reply)).await.ok()?;
            all.extend(rx.await.ok()?);
        }
        all.truncate(MAX_FLOWS_LISTED);
        Some(all)
    }

    /// Closes every flow (open transactions flushed as `aborted`), flushes
    /// the output and returns the workers' report.
    pub fn finish(self) -> LiveReport {
        drop(self.txs);
        let mut report = LiveReport::default();
        for w in self.workers {
            report.merge(w.join().unwrap_or_else(|_| LiveReport {
                output_error: Some("pipeline worker panicked".into()),
                ..LiveReport::default()
            }));
        }
        if let Some(o) = self.output {
            let r = o
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("output thread panicked")));
            if let (Err(e), None) = (r, &report.output_error) {
                report.output_error = Some(e.to_string());
            }
        }
        report
    }
}

/// One worker's parts, before its thread runs.
struct Worker<E> {
    flow: FlowConfig,
    log_commands: bool,
    anomalies_per_kind: u32,
    policy: PolicyOptions,
    enforce: E,
    gate: LiveGate,
    rx: mpsc::Receiver<Msg>,
}

impl<E: FnMut(Enforcement)> Worker<E> {
    /// The worker's loop, writing lines to `out`; `ship(out)` after every
    /// message hands what was written on (lines are whole there).
    fn run<W: Write>(self, out: W, mut ship: impl FnMut(&mut W)) -> LiveReport {
        let Worker {
            flow,
            log_commands,
            anomalies_per_kind,
            policy,
            mut enforce,
            gate,
            mut rx,
        } = self;
        let mut handler = SmtpFlows::with_policy(
            EveWriter::new(out, log_commands).with_anomalies_per_kind(anomalies_per_kind),
            policy,
        );
        handler.set_reject_reply(&gate.reject_reply);
        let mut verdict = gate.verdict;
        let mut verdicts = Vec::new();
        let mut table = FlowTable::new(flow, handler);
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                Msg::Batch(b) => b.for_each(|s| {
                    table.segment(s);
                    for r in table.handler_mut().take_requests() {
                        enforce(r);
                    }
                    settle(table.handler_mut(), &mut verdict, &mut verdicts);
                }),
                Msg::Queued(packets, since) => {
                    let h = table.handler_mut();
                    for p in &packets {
                        match queued_segment(p, since) {
                            Some(q) => h.queue_segment(q),
                            None => {
                                h.queue_unparsed();
                                verdicts.push((p.id, false));
                            }
                        }
                    }
                    settle(h, &mut verdict, &mut verdicts);
                }
                Msg::Shutdown => {
                    let n = table.handler_mut().reject_open_gated();
                    if n > 0 {
                        tracing::warn!(
                            sessions = n,
                            "stopping: gated sessions still open answered 421 and reset"
                        );
                    }
                }
                Msg::Tick(now) => {
                    settle(table.handler_mut(), &mut verdict, &mut verdicts);
                    table.expire(now);
                    if let Err(e) = table.handler_mut().finish_output() {
                        tracing::error!(error = %e, "cannot write output");
                    }
                }
                Msg::Rules(rules) => table.handler_mut().set_rules(rules),
                Msg::Alive(probe) => drop(probe),
                Msg::Flows(reply) => {
                    let mut flows = Vec::new();
                    table.for_each_flow(|info, s, bytes| {
                        if flows.len() < MAX_FLOWS_LISTED {
                            flows.push(LiveFlow {
                                info: *info,
                                view: s.view(),
                                bytes,
                            });
                        }
                    });
                    let _ = reply.send(flows);
                }
                Msg::Counters(reply) => {
                    let _ = reply.send(table.handler().counters());
                }
                Msg::Table(reply) => {
                    let _ = reply.send(table.stats().clone());
                }
            }
            for r in table.handler_mut().take_requests() {
                enforce(r);
            }
            ship(table.handler_mut().writer_mut().get_mut());
        }
        table.close_all();
        for r in table.handler_mut().take_requests() {
            enforce(r);
        }
        let stats = table.stats().clone();
        let mut handler = table.into_handler();
        let output_error = handler.finish_output().err().map(|e| e.to_string());
        ship(handler.writer_mut().get_mut());
        LiveReport {
            pipeline: handler.counters(),
            table: stats,
            output: handler.writer().counters(),
            output_error,
            workers: Vec::new(),
        }
    }
}

/// The kernel's normalised key of the flow between `a` and `b`.
pub fn kernel_flow_key(a: SocketAddr, b: SocketAddr) -> FlowKey {
    fn bytes(ip: IpAddr) -> [u8; 16] {
        match ip {
            IpAddr::V4(v4) => {
                let mut out = [0u8; 16];
                out[..4].copy_from_slice(&v4.octets());
                out
            }
            IpAddr::V6(v6) => v6.octets(),
        }
    }
    let family = if a.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 };
    FlowKey::new(family, bytes(a.ip()), a.port(), bytes(b.ip()), b.port()).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_the_same_from_both_sides() {
        let c: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let s: SocketAddr = "198.18.0.2:25".parse().unwrap();
        assert_eq!(kernel_flow_key(c, s), kernel_flow_key(s, c));
        let k = kernel_flow_key(c, s);
        assert_eq!(k.lo_port, 25);
        assert_eq!(k.hi_port, 40000);
        assert_eq!(&k.lo_addr[..4], &[198, 18, 0, 2]);
    }

    #[test]
    fn batch_round_trips_segments() {
        let seg = Segment {
            ts_micros: 7,
            src: "198.18.0.1:40000".parse().unwrap(),
            dst: "198.18.0.2:25".parse().unwrap(),
            seq: 100,
            ack: 5,
            flags: TcpFlags(TcpFlags::ACK),
            payload: b"EHLO x\r\n",
            uncaptured: 3,
            held: false,
            urgent: 0,
            checksum: Default::default(),
        };
        let mut b = SegmentBatch::default();
        b.push(&seg);
        b.push(&Segment {
            payload: b"",
            seq: 108,
            ..seg
        });
        let mut seen = Vec::new();
        b.for_each(|s| seen.push((s.seq, s.payload.to_vec(), s.uncaptured)));
        assert_eq!(
            seen,
            vec![(100, b"EHLO x\r\n".to_vec(), 3), (108, vec![], 3)]
        );
    }
}
