//! The queue gate's bookkeeping: which client segments waiting in the
//! netfilter queue may go on to the server.
//!
//! With the queue gate, the kernel marks every client segment with payload
//! of a gated flow and netfilter queues it; the packet waits there while
//! its bytes (captured to the ring buffer before netfilter saw the packet)
//! go through reassembly, the dissector and the policy. A queued segment is
//! decided by this table, one row per state:
//!
//! | flow as the pipeline knows it                  | verdict            |
//! |------------------------------------------------|--------------------|
//! | monitor mode (not enforcing)                   | accept             |
//! | blocked (drop/reset verdict, or rejected)      | drop               |
//! | not gated (no rule applies, or TLS allowed)    | accept             |
//! | inspected up to (at least) the segment's end   | accept             |
//! | not inspected that far yet, waiting < 1 s      | wait               |
//! | unknown flow, waiting < 1 s                    | wait               |
//! | waited 1 s (record lost, reassembly stuck)     | drop (TCP resends) |
//!
//! So a message end is accepted as soon as the message was inspected and
//! found clean — wherever it sits in the segment (pipelined QUIT, split dot
//! line, BDAT chunk) — and a blocked one never reaches the server. Every
//! drop is counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use smtp_common::seq_ge;

/// How long a queued segment may wait for its bytes to be inspected.
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// One client segment waiting in the netfilter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedSegment {
    /// The kernel's packet id (what the verdict names).
    pub id: u32,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Sequence number one past the segment's last payload byte.
    pub end_seq: u32,
    /// When it was read from the queue.
    pub since: Instant,
}

/// What the pipeline knows of one flow, for the queue gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowGate {
    /// Content rules may apply: segments wait for inspection.
    pub gated: bool,
    /// Next client sequence number to inspect (everything before was).
    pub up_next: Option<u32>,
    /// Next server sequence number (where a forged reply starts).
    pub down_next: Option<u32>,
    /// The flow was blocked: nothing more of the client passes.
    pub blocked: bool,
    /// Capture time (µs since the epoch, the kernel hook's clock) of the
    /// latest client segment inspected.
    pub inspected_ts: u64,
}

/// Verdicts given and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Segments read from the queue.
    pub queued: u64,
    pub accepted: u64,
    /// Dropped because the flow is blocked.
    pub dropped_blocked: u64,
    /// Dropped after waiting [`MAX_WAIT`] for inspection (TCP resends them).
    pub dropped_timeout: u64,
    /// Queued packets that could not be parsed (dropped).
    pub dropped_unparsed: u64,
}

impl QueueCounters {
    /// Adds another queue's counts.
    pub fn merge(&mut self, o: &QueueCounters) {
        // Every field named: a new counter cannot be forgotten here.
        let QueueCounters {
            queued,
            accepted,
            dropped_blocked,
            dropped_timeout,
            dropped_unparsed,
        } = o;
        self.queued += *queued;
        self.accepted += *accepted;
        self.dropped_blocked += *dropped_blocked;
        self.dropped_timeout += *dropped_timeout;
        self.dropped_unparsed += *dropped_unparsed;
    }
}

/// Samples kept of the queue wait (the most recent).
const WAIT_SAMPLES: usize = 4096;

/// How long accepted segments were held: from their capture by the kernel
/// hook (just before netfilter queued them) to the accept verdict, µs.
#[derive(Debug, Clone, Default)]
pub struct WaitSamples {
    recent: std::collections::VecDeque<u64>,
    /// Samples since start.
    pub count: u64,
}

impl WaitSamples {
    fn record(&mut self, micros: u64) {
        if self.recent.len() == WAIT_SAMPLES {
            self.recent.pop_front();
        }
        self.recent.push_back(micros);
        self.count += 1;
    }

    /// The `q` quantile (0.0–1.0) of the recent samples, nearest rank.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let mut v: Vec<u64> = self.recent.iter().copied().collect();
        v.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).max(1);
        v.get(rank - 1).copied()
    }
}

/// Queued segments and the per-flow state that decides them.
#[derive(Debug, Default)]
pub struct GateQueue {
    flows: HashMap<(SocketAddr, SocketAddr), FlowGate>,
    pending: Vec<QueuedSegment>,
    pub counters: QueueCounters,
    /// Hold time of accepted segments (capture → accept verdict).
    pub wait: WaitSamples,
}

impl GateQueue {
    /// A flow opened (`gated`: content rules may apply to it).
    pub fn open(&mut self, client: SocketAddr, server: SocketAddr, gated: bool) {
        self.flows.insert(
            (client, server),
            FlowGate {
                gated,
                ..FlowGate::default()
            },
        );
    }

    /// The flow's state, to update.
    pub fn flow_mut(&mut self, client: SocketAddr, server: SocketAddr) -> Option<&mut FlowGate> {
        // No queue gate (replay, no `--gate`): no hashing per segment.
        if self.flows.is_empty() {
            return None;
        }
        self.flows.get_mut(&(client, server))
    }

    /// The flows known, for rejecting them at shutdown.
    pub fn flows(&self) -> impl Iterator<Item = (&(SocketAddr, SocketAddr), &FlowGate)> {
        self.flows.iter()
    }

    /// The flows known, to update all.
    pub fn flows_mut(
        &mut self,
    ) -> impl Iterator<Item = (&(SocketAddr, SocketAddr), &mut FlowGate)> {
        self.flows.iter_mut()
    }

    /// The flow ended.
    pub fn close(&mut self, client: SocketAddr, server: SocketAddr) {
        self.flows.remove(&(client, server));
    }

    /// A segment read from the queue.
    pub fn push(&mut self, q: QueuedSegment) {
        self.counters.queued += 1;
        self.pending.push(q);
    }

    /// A queued packet that could not be parsed: dropped.
    pub fn unparsed(&mut self) {
        self.counters.queued += 1;
        self.counters.dropped_unparsed += 1;
    }

    /// True while segments wait.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Decides what can be decided (see the table in the module docs);
    /// appends `(id, accept)` to `out`.
    /// `now_micros`: wall clock, µs since the epoch (for the wait samples).
    pub fn settle(
        &mut self,
        now: Instant,
        now_micros: u64,
        enforcing: bool,
        out: &mut Vec<(u32, bool)>,
    ) {
        let flows = &self.flows;
        let counters = &mut self.counters;
        let wait = &mut self.wait;
        self.pending.retain(|q| {
            let accept = match flows.get(&(q.client, q.server)) {
                _ if !enforcing => Some(true),
                Some(f) if f.blocked => Some(false),
                Some(f) if !f.gated => Some(true),
                Some(f) if f.up_next.is_some_and(|n| seq_ge(n, q.end_seq)) => {
                    // The inspected segment that completed it is (almost
                    // always) this one: its capture time is the hold's start.
                    if enforcing && f.inspected_ts != 0 {
                        wait.record(now_micros.saturating_sub(f.inspected_ts));
                    }
                    Some(true)
                }
                _ if now.duration_since(q.since) >= MAX_WAIT => {
                    counters.dropped_timeout += 1;
                    Some(false)
                }
                _ => None,
            };
            match accept {
                Some(a) => {
                    if a {
                        counters.accepted += 1;
                    } else if flows.get(&(q.client, q.server)).is_some_and(|f| f.blocked) {
                        counters.dropped_blocked += 1;
                    }
                    out.push((q.id, a));
                    false
                }
                None => true,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn accepts_once_inspected_drops_when_blocked_or_stale() {
        let (c, s) = (sa("198.18.0.1:40000"), sa("198.18.0.2:25"));
        let t0 = Instant::now();
        let mut g = GateQueue::default();
        let mut out = Vec::new();
        // Unknown flow: waits.
        g.push(QueuedSegment {
            id: 1,
            client: c,
            server: s,
            end_seq: 110,
            since: t0,
        });
        g.settle(t0, 0, true, &mut out);
        assert!(out.is_empty());
        g.open(c, s, true);
        g.flow_mut(c, s).unwrap().up_next = Some(100);
        g.settle(t0, 0, true, &mut out);
        assert!(out.is_empty(), "not inspected that far");
        g.flow_mut(c, s).unwrap().up_next = Some(110);
        g.settle(t0, 0, true, &mut out);
        assert_eq!(out, vec![(1, true)]);
        // Blocked: dropped at once.
        out.clear();
        g.push(QueuedSegment {
            id: 2,
            client: c,
            server: s,
            end_seq: 120,
            since: t0,
        });
        g.flow_mut(c, s).unwrap().blocked = true;
        g.settle(t0, 0, true, &mut out);
        assert_eq!(out, vec![(2, false)]);
        // Stale: dropped after MAX_WAIT.
        out.clear();
        g.flow_mut(c, s).unwrap().blocked = false;
        g.push(QueuedSegment {
            id: 3,
            client: c,
            server: s,
            end_seq: 500,
            since: t0,
        });
        g.settle(t0 + MAX_WAIT, 0, true, &mut out);
        assert_eq!(out, vec![(3, false)]);
        assert_eq!(g.counters.dropped_timeout, 1);
        assert_eq!(g.counters.dropped_blocked, 1);
        assert_eq!(g.counters.accepted, 1);
    }

    #[test]
    fn monitor_mode_and_ungated_flows_pass() {
        let (c, s) = (sa("198.18.0.1:40000"), sa("198.18.0.2:25"));
        let t0 = Instant::now();
        let mut g = GateQueue::default();
        let mut out = Vec::new();
        g.push(QueuedSegment {
            id: 7,
            client: c,
            server: s,
            end_seq: 1,
            since: t0,
        });
        g.settle(t0, 0, false, &mut out);
        assert_eq!(out, vec![(7, true)]);
        out.clear();
        g.open(c, s, false);
        g.push(QueuedSegment {
            id: 8,
            client: c,
            server: s,
            end_seq: 1,
            since: t0,
        });
        g.settle(t0, 0, true, &mut out);
        assert_eq!(out, vec![(8, true)]);
        // Sequence numbers wrap.
        g.open(c, s, true);
        g.flow_mut(c, s).unwrap().up_next = Some(5);
        g.push(QueuedSegment {
            id: 9,
            client: c,
            server: s,
            end_seq: u32::MAX - 3,
            since: t0,
        });
        out.clear();
        g.settle(t0, 0, true, &mut out);
        assert_eq!(out, vec![(9, true)]);
    }
}
