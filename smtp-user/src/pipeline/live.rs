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
use super::smtp_flows::{FlowView, PipelineCounters, PolicyOptions, SmtpFlows};

/// Batches in flight between reader and worker.
const CHANNEL_BATCHES: usize = 256;

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
    /// The pipeline's and the flow table's counters so far.
    Counters(oneshot::Sender<LiveCounters>),
    /// Packets read from the netfilter queue, waiting for verdicts.
    Queued(Vec<QueuedPacket>, Instant),
    /// The monitor stops: answer the gated sessions still open.
    Shutdown,
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

/// The queue reader's way into the worker.
#[derive(Clone)]
pub struct QueueFeed(mpsc::Sender<Msg>);

impl QueueFeed {
    /// Hands packets read from the queue to the worker (blocking while it
    /// is behind); false once the worker is gone.
    pub fn send(&self, packets: Vec<QueuedPacket>) -> bool {
        self.0
            .blocking_send(Msg::Queued(packets, Instant::now()))
            .is_ok()
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

/// The worker's counters while it runs (`ctl stats`, metrics).
#[derive(Debug, Clone, Default)]
pub struct LiveCounters {
    pub pipeline: PipelineCounters,
    pub table: TableStats,
}

/// What the worker did, reported when it ends.
#[derive(Debug, Clone, Default)]
pub struct LiveReport {
    pub pipeline: PipelineCounters,
    pub table: TableStats,
    pub output: OutputCounters,
    /// Output could not be written (first error).
    pub output_error: Option<String>,
}

/// The reader's handle on the worker thread.
pub struct LivePipeline {
    tx: mpsc::Sender<Msg>,
    worker: JoinHandle<LiveReport>,
}

impl LivePipeline {
    /// Starts the worker writing EVE lines to `out` and carrying out the
    /// policy's requests with `enforce` (called on the worker thread).
    pub fn start<W, E>(
        flow: FlowConfig,
        log_commands: bool,
        anomalies_per_kind: u32,
        policy: PolicyOptions,
        out: W,
        mut enforce: E,
        gate: LiveGate,
    ) -> std::io::Result<LivePipeline>
    where
        W: Write + Send + 'static,
        E: FnMut(Enforcement) + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Msg>(CHANNEL_BATCHES);
        let worker = std::thread::Builder::new()
            .name("smtp-pipeline".into())
            .spawn(move || {
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
                            let _ = reply.send(LiveCounters {
                                pipeline: table.handler().counters(),
                                table: table.stats().clone(),
                            });
                        }
                    }
                    for r in table.handler_mut().take_requests() {
                        enforce(r);
                    }
                }
                table.close_all();
                for r in table.handler_mut().take_requests() {
                    enforce(r);
                }
                let stats = table.stats().clone();
                let mut handler = table.into_handler();
                let output_error = handler.finish_output().err().map(|e| e.to_string());
                LiveReport {
                    pipeline: handler.counters(),
                    table: stats,
                    output: handler.writer().counters(),
                    output_error,
                }
            })?;
        Ok(LivePipeline { tx, worker })
    }

    /// The queue reader's way into the worker.
    pub fn queue_feed(&self) -> QueueFeed {
        QueueFeed(self.tx.clone())
    }

    /// The monitor stops: gated sessions still open are answered 421 and
    /// their server side reset (after what is queued before this).
    pub async fn shutdown_gate(&self) -> bool {
        self.tx.send(Msg::Shutdown).await.is_ok()
    }

    /// Queues a batch; waits while the worker is behind.
    pub async fn send(&self, batch: SegmentBatch) -> bool {
        self.tx.send(Msg::Batch(batch)).await.is_ok()
    }

    /// Periodic housekeeping with the wall clock: idle timeout, output flush.
    pub async fn tick(&self, now_micros: u64) -> bool {
        self.tx.send(Msg::Tick(now_micros)).await.is_ok()
    }

    /// Rules for sessions opened from now on.
    pub async fn set_rules(&self, rules: Arc<RuleSet>) -> bool {
        self.tx.send(Msg::Rules(rules)).await.is_ok()
    }

    /// The pipeline's and the flow table's counters so far.
    pub async fn counters(&self) -> Option<LiveCounters> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Counters(tx)).await.ok()?;
        rx.await.ok()
    }

    /// The flows tracked right now (at most 10,000).
    pub async fn flows(&self) -> Option<Vec<LiveFlow>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Flows(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Closes every flow (open transactions flushed as `aborted`), flushes
    /// the output and returns the worker's report.
    pub fn finish(self) -> LiveReport {
        drop(self.tx);
        match self.worker.join() {
            Ok(r) => r,
            Err(_) => LiveReport {
                output_error: Some("pipeline worker panicked".into()),
                ..LiveReport::default()
            },
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
