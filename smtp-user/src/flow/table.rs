//! The flow table: segments → flows → reassembled streams for a [`FlowHandler`].
//!
//! Flows live in a slab threaded on a doubly linked LRU list (most recently
//! active at the head), indexed by a hash map on the normalised 5-tuple.
//! The LRU tail is both the eviction victim when the flow limit is reached
//! and where idle-timeout expiry starts. Memory is bounded by the flow limit,
//! the per-direction buffer limit and the global buffer limit.
//!
//! Before reassembly, segments the receiver's stack throws away are thrown
//! away here too, and counted: a bad TCP checksum ([`Checksum::Bad`]), and
//! any segment without ACK that is neither a SYN nor a RST (Linux discards
//! them in every synchronised state). The urgent pointer of an URG segment
//! is passed to the stream, which removes the urgent byte.
//!
//! Chunks go from the streams to the handler through the flow's
//! [`Order`](super::order): a direction's bytes never overtake the peer
//! bytes they acknowledge. Waits (a held chunk, a hole the receiver
//! acknowledged) last at most [`FlowConfig::reorder_wait_micros`] of capture
//! time; they are checked at every segment of the flow and at `expire`.

use std::collections::HashMap;
use std::net::SocketAddr;

use tracing::{debug, trace};

use super::key::FlowKey;
use super::order::Order;
use super::stats::{CloseReason, FlowStats, TableStats};
use super::stream::{Budget, Chunk, Data, Mark, Stream};
use super::{FlowAnomaly, FlowConfig, FlowHandler, FlowInfo};
use crate::capture::{parse_frame, Checksum, Segment, Skip};
use crate::Direction;

const NIL: u32 = u32::MAX;

/// One tracked connection.
struct Flow<S> {
    key: FlowKey,
    info: FlowInfo,
    session: S,
    /// Index 0: client → server (`Direction::Up`); 1: server → client.
    streams: [Stream; 2],
    /// Chunks waiting for the other direction (see the module doc).
    order: Order,
    syn_seen: bool,
    midstream: bool,
    /// The flow is in `FlowTable::waiting`.
    listed: bool,
    /// The consumer's memory for this flow, as last asked.
    memory: usize,
}

struct Slot<S> {
    flow: Flow<S>,
    /// LRU neighbours (slot indices, `NIL` at the ends): `prev` is more
    /// recently active, `next` less.
    prev: u32,
    next: u32,
}

/// Flow table and reassembler, delivering to `H` (see the module doc).
pub struct FlowTable<H: FlowHandler> {
    config: FlowConfig,
    handler: H,
    /// Keyed with foldhash, randomly seeded per table: the keys are chosen
    /// by whoever sends packets, and SipHash cost 4 % of replay time.
    index: HashMap<FlowKey, u32, foldhash::quality::RandomState>,
    /// Slab of flows; `None` slots are listed in `free`.
    slots: Vec<Option<Slot<H::Session>>>,
    free: Vec<u32>,
    /// Most and least recently active flows (`NIL` when empty).
    head: u32,
    tail: u32,
    /// Last flow looked up: consecutive segments of one flow skip the hash.
    last: Option<(FlowKey, u32)>,
    /// Flows with something waiting (held chunks or an acknowledged hole),
    /// as (slot, flow id): `expire` ends their waits when they are due.
    waiting: Vec<(u32, u64)>,
    stats: TableStats,
}

/// Where a flow's chunks go: through its [`Order`] to the handler.
struct Sink<'a, H: FlowHandler> {
    handler: &'a mut H,
    session: &'a mut H::Session,
    info: &'a FlowInfo,
    order: &'a mut Order,
    /// Capture time of the segment being processed.
    ts: u64,
    /// Memory for held chunks (shared with the streams).
    budget: &'a Budget,
    /// Waits that started (a direction's first held chunk), and chunks
    /// passed on unordered because holding them would exceed the budget.
    waits: u64,
    overflows: u64,
    /// Longest a chunk handed over in this call was held (capture time).
    max_wait: u64,
}

impl<H: FlowHandler> Sink<'_, H> {
    fn put(&mut self, d: Direction, c: Chunk<'_>, m: Mark) {
        if self.order.may_pass(d, m) {
            self.hand(d, c, self.ts);
            self.order.delivered(d, m.end);
            if !self.order.is_empty() {
                self.pump();
            }
        } else {
            let cost = Order::cost(c);
            if self.order.held() + cost > self.budget.per_direction
                || cost > self.budget.global_room.get()
            {
                // No room to wait: what waits of this direction goes on in
                // arrival order, then this chunk.
                self.overflows += 1;
                debug!(flow_id = self.info.flow_id, dir = ?d, "no room to hold for ordering: delivered in arrival order");
                while let Some((d, h)) = self.order.force(d) {
                    self.hand(d, h.chunk(), h.ts);
                }
                self.hand(d, c, self.ts);
                self.order.delivered(d, m.end);
                self.pump();
                return;
            }
            if self.order.is_empty() {
                self.waits += 1;
            }
            trace!(flow_id = self.info.flow_id, dir = ?d, need = m.need, "held: waits for the peer bytes it acknowledges");
            self.order.hold(d, c, m, self.ts);
            self.budget.take(cost);
        }
    }

    fn hand(&mut self, d: Direction, c: Chunk<'_>, ts: u64) {
        self.max_wait = self.max_wait.max(self.ts.saturating_sub(ts));
        match c {
            Chunk::Data([]) => {}
            Chunk::Data(b) => self.handler.data(self.session, self.info, d, ts, b),
            Chunk::Gap(n) => {
                debug!(flow_id = self.info.flow_id, dir = ?d, len = n, "gap: bytes missing from the capture");
                self.handler.gap(self.session, self.info, d, ts, n)
            }
        }
    }

    /// Delivers the held chunks whose wait is over.
    fn pump(&mut self) {
        while let Some((d, h)) = self.order.pop_ready() {
            self.hand(d, h.chunk(), h.ts);
        }
    }

    /// Ends the waits that are due at `now`: holes the receiver acknowledged
    /// become gaps, held chunks stop waiting for peer bytes never seen, and
    /// mutual waits are broken at once. Returns the waits that timed out.
    fn settle(&mut self, streams: &mut [Stream; 2], now: u64, wait: u64) -> u64 {
        for d in [Direction::Up, Direction::Down] {
            let s = &mut streams[di(d)];
            if s.hole_acked_since()
                .is_some_and(|t| now.saturating_sub(t) >= wait)
            {
                s.give_up_acked(&mut |c, m| self.put(d, c, m));
            }
        }
        let mut timeouts = 0;
        // Each round delivers at least one held chunk, or stops.
        for _ in 0..MAX_FORCED_PER_SETTLE {
            let Some((mut d, mut since, mut need)) = self.order.oldest() else {
                break;
            };
            if now.saturating_sub(since) < wait {
                if !self.order.deadlocked() {
                    break;
                }
                // Waiting cannot end a mutual wait: let the side that
                // overreaches least go first.
                if let Some(v) = self.order.deadlock_victim() {
                    if v != d {
                        if let Some(o) = self.order.oldest_of(v) {
                            (d, since, need) = o;
                        }
                    }
                }
            }
            let peer = d.reverse();
            // The receiver had the peer's bytes this chunk acknowledges:
            // holes among them are gaps.
            streams[di(peer)].give_up_before(need, &mut |c, m| self.put(peer, c, m));
            if self.order.oldest().is_some_and(|o| o == (d, since, need)) {
                timeouts += 1;
                debug!(flow_id = self.info.flow_id, dir = ?d, need, "wait for the peer's bytes over: delivered in arrival order");
                if let Some((d, h)) = self.order.force(d) {
                    self.hand(d, h.chunk(), h.ts);
                }
                self.pump();
            }
        }
        timeouts
    }
}

/// Idle time after which data far from a flow's stream is taken for a new
/// connection on the same 5-tuple (see `FlowTable::reuses`).
const REUSE_IDLE_MICROS: u64 = 1_000_000;

/// Most held chunks one settle forces (the rest wait for the next segment
/// or `expire`), so that one call stays short.
const MAX_FORCED_PER_SETTLE: usize = 1 << 16;

fn di(d: Direction) -> usize {
    match d {
        Direction::Up => 0,
        Direction::Down => 1,
    }
}

impl<H: FlowHandler> FlowTable<H> {
    pub fn new(config: FlowConfig, handler: H) -> FlowTable<H> {
        FlowTable {
            config,
            handler,
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            last: None,
            waiting: Vec::new(),
            stats: TableStats::default(),
        }
    }

    pub fn stats(&self) -> &TableStats {
        &self.stats
    }

    /// For callers that count frames skipped before the table.
    pub fn stats_mut(&mut self) -> &mut TableStats {
        &mut self.stats
    }

    pub fn handler(&self) -> &H {
        &self.handler
    }

    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// Number of flows in the table.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Consumes the table without closing flows (call `close_all` first).
    pub fn into_handler(self) -> H {
        self.handler
    }

    /// Parses one captured frame (see [`parse_frame`]) and processes its
    /// segment; a frame without one is counted in `stats().skipped` and its
    /// reason returned.
    pub fn frame(&mut self, linktype: u32, ts_micros: u64, data: &[u8]) -> Result<(), Skip> {
        match parse_frame(linktype, ts_micros, data) {
            Ok(seg) => {
                self.segment(&seg);
                Ok(())
            }
            Err(reason) => {
                self.stats.count_skip(reason);
                Err(reason)
            }
        }
    }

    /// Visits every tracked flow, most recently active first, with the
    /// bytes seen so far in each direction (`[Up, Down]`).
    pub fn for_each_flow(&self, mut f: impl FnMut(&FlowInfo, &H::Session, [u64; 2])) {
        let mut idx = self.head;
        // Bounded by the number of slots even if the list were corrupt.
        for _ in 0..self.slots.len() {
            let Some(Some(slot)) = self.slots.get(idx as usize) else {
                break;
            };
            let fl = &slot.flow;
            f(
                &fl.info,
                &fl.session,
                [fl.streams[0].stats.bytes, fl.streams[1].stats.bytes],
            );
            idx = slot.next;
        }
    }

    /// Processes one segment.
    pub fn segment(&mut self, seg: &Segment<'_>) {
        self.stats.segments += 1;
        let key = FlowKey::new(seg.src, seg.dst);
        // What the receiver's stack throws away before reassembly.
        let discard = seg.checksum == Checksum::Bad
            || !(seg.flags.ack() || seg.flags.syn() || seg.flags.rst());
        let slot = match self.last {
            Some((k, s)) if k == key => Some(s),
            _ => self.index.get(&key).copied(),
        };
        let slot = match slot {
            Some(s) if !discard && self.reuses(s, seg) => {
                debug!(src = %seg.src, dst = %seg.dst, "new SYN on a known 5-tuple: port reuse");
                self.close(s, CloseReason::Reused);
                self.create(key, seg)
            }
            Some(s) => s,
            None if discard => {
                trace!(src = %seg.src, dst = %seg.dst, "segment the receiver drops (bad checksum or no ACK): not tracked");
                self.stats.rejected += 1;
                return;
            }
            None => {
                let carries = !seg.payload.is_empty() || seg.uncaptured > 0;
                if seg.flags.rst() || !(carries || seg.flags.syn()) {
                    trace!(src = %seg.src, dst = %seg.dst, "segment of no flow without data: not tracked");
                    self.stats.orphans += 1;
                    return;
                }
                self.create(key, seg)
            }
        };
        self.last = Some((key, slot));
        self.touch(slot);
        let wait = self.config.reorder_wait_micros;
        let Some(Some(entry)) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Flow {
            info,
            session,
            streams,
            order,
            syn_seen,
            listed,
            memory,
            ..
        } = &mut entry.flow;
        info.last_ts = seg.ts_micros.max(info.last_ts);
        info.held = seg.held;
        let dir = if seg.src == info.client {
            Direction::Up
        } else {
            Direction::Down
        };
        let wire = seg.payload.len() as u64 + u64::from(seg.uncaptured);
        {
            let mine = &mut streams[di(dir)];
            mine.stats.packets += 1;
            mine.stats.bytes += wire;
            if seg.checksum == Checksum::Bad {
                trace!(src = %seg.src, dst = %seg.dst, seq = seg.seq, "bad TCP checksum: the receiver drops it");
                mine.stats.bad_checksum += 1;
                return;
            }
            if discard {
                trace!(src = %seg.src, dst = %seg.dst, seq = seg.seq, "no ACK flag: the receiver drops it");
                mine.stats.no_ack += 1;
                return;
            }
            if seg.flags.rst() {
                // A RST's payload and ACK are not data (Linux ignores both).
                if mine.rst_acceptable(seg.seq) {
                    self.close(slot, CloseReason::Reset);
                } else {
                    trace!(src = %seg.src, dst = %seg.dst, seq = seg.seq, "RST out of window: ignored");
                    mine.stats.bad_rst += 1;
                }
                return;
            }
        }
        let held_before = order.held();
        let before = streams[0].buffered() + streams[1].buffered() + held_before;
        let budget = Budget::new(
            self.config.max_buffer_per_direction,
            self.config
                .max_buffer_total
                .saturating_sub(self.stats.buffered),
        );
        let ts = seg.ts_micros;
        let mut sink = Sink {
            handler: &mut self.handler,
            session,
            info,
            order,
            ts,
            budget: &budget,
            waits: 0,
            overflows: 0,
            max_wait: 0,
        };
        let (mine, theirs) = match dir {
            Direction::Up => {
                let (a, b) = streams.split_at_mut(1);
                (&mut a[0], &mut b[0])
            }
            Direction::Down => {
                let (a, b) = streams.split_at_mut(1);
                (&mut b[0], &mut a[0])
            }
        };
        // The ACK first: the sender had received the peer's bytes up to it
        // before it sent this payload.
        let need = if seg.flags.ack() {
            let need = theirs.ack_offset(seg.ack);
            theirs.peer_ack(need, ts, &mut |c, m| sink.put(dir.reverse(), c, m));
            need
        } else {
            0
        };
        let mut seq = seg.seq;
        if seg.flags.syn() {
            *syn_seen = true;
            mine.syn(seg.seq, seg.payload);
            seq = seg.seq.wrapping_add(1);
        }
        if seg.flags.urg() && mine.started() {
            // Linux: the urgent byte is the one before the pointer.
            mine.urgent(
                seg.seq
                    .wrapping_add(u32::from(seg.urgent.saturating_sub(1))),
            );
        }
        if !seg.flags.syn() || seg.flags.fin() {
            let (payload, uncaptured) = if seg.flags.syn() {
                (&[][..], 0)
            } else {
                (seg.payload, seg.uncaptured)
            };
            let data = Data {
                seq,
                payload,
                uncaptured,
                fin: seg.flags.fin(),
                need,
            };
            mine.segment(data, &budget, &mut |c, m| sink.put(dir, c, m));
            if wire > 0 && seg.flags.ack() && !sink.order.is_empty() {
                let start = mine.ack_offset(seq);
                sink.order.lower_need(dir, start, start + wire, need);
                sink.pump();
            }
        }
        for st in streams.iter_mut() {
            st.check_acked_hole(ts);
        }
        let idle = sink.order.is_empty()
            && streams[0].hole_acked_since().is_none()
            && streams[1].hole_acked_since().is_none();
        let timeouts = if idle {
            0
        } else {
            sink.settle(streams, ts, wait)
        };
        let (waits, overflows) = (sink.waits, sink.overflows);
        self.stats.order_wait_max_micros = self.stats.order_wait_max_micros.max(sink.max_wait);
        let waiting =
            !idle && (!order.is_empty() || streams.iter().any(|s| s.hole_acked_since().is_some()));
        let next_seq = [streams[0].next_seq(), streams[1].next_seq()];
        self.handler.after_segment(session, info, next_seq);
        for d in [dir, dir.reverse()] {
            let s = &mut streams[di(d)];
            if s.take_conflict() {
                self.handler
                    .anomaly(session, info, d, FlowAnomaly::OverlapConflict);
            }
            if s.started() && !self.handler.wants_data(session, d) {
                s.bypass();
            }
        }
        let after = streams[0].buffered() + streams[1].buffered() + order.held();
        self.stats.buffered = (self.stats.buffered + after).saturating_sub(before);
        self.stats.buffered_peak = self.stats.buffered_peak.max(self.stats.buffered);
        self.stats.memcap_hits += budget.global_hits.get();
        self.stats.order_waits += waits;
        self.stats.order_overflows += overflows;
        self.stats.order_timeouts += timeouts;
        if waiting && !*listed {
            *listed = true;
            self.waiting.push((slot, info.flow_id));
        }
        if wire > 0 || !idle {
            // Only bytes (or gaps) change what the consumer holds.
            let m = self.handler.memory(session);
            self.stats.session_memory = (self.stats.session_memory + m).saturating_sub(*memory);
            *memory = m;
        }
        if streams[0].finished() && streams[1].finished() && order.is_empty() {
            self.close(slot, CloseReason::Closed);
        }
        self.enforce_memcap();
    }

    /// Memory used by reassembly and the consumer's per-flow state.
    pub fn memory(&self) -> usize {
        self.stats.buffered + self.stats.session_memory
    }

    /// Beyond the global memory cap: sheds the largest flows (reported as
    /// [`FlowAnomaly::Memcap`], then closed, their buffered data given up)
    /// until 90 % of the cap is used.
    fn enforce_memcap(&mut self) {
        let cap = self.config.memcap;
        if cap == 0 || self.memory() <= cap {
            return;
        }
        self.stats.memcap_exceeded += 1;
        let mut sizes: Vec<(usize, u32)> = Vec::with_capacity(self.index.len());
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(s) = slot {
                let f = &s.flow;
                let m =
                    f.streams[0].buffered() + f.streams[1].buffered() + f.order.held() + f.memory;
                sizes.push((m, i as u32));
            }
        }
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let target = cap - cap / 10;
        for (m, idx) in sizes {
            if self.memory() <= target {
                break;
            }
            if let Some(Some(s)) = self.slots.get_mut(idx as usize) {
                let f = &mut s.flow;
                debug!(flow_id = f.info.flow_id, bytes = m, "memcap: flow shed");
                self.handler
                    .anomaly(&mut f.session, &f.info, Direction::Up, FlowAnomaly::Memcap);
            }
            self.close(idx, CloseReason::Memcap);
        }
    }

    /// Ends the waits due at `now_micros` on every flow with something
    /// waiting (see the module doc).
    fn settle_waiting(&mut self, now_micros: u64) {
        let wait = self.config.reorder_wait_micros;
        let mut list = std::mem::take(&mut self.waiting);
        let mut done: Vec<u32> = Vec::new();
        list.retain(|&(slot, id)| {
            let Some(Some(entry)) = self.slots.get_mut(slot as usize) else {
                return false;
            };
            let fl = &mut entry.flow;
            if fl.info.flow_id != id {
                return false;
            }
            let before = fl.streams[0].buffered() + fl.streams[1].buffered() + fl.order.held();
            let budget = Budget::new(
                self.config.max_buffer_per_direction,
                self.config
                    .max_buffer_total
                    .saturating_sub(self.stats.buffered),
            );
            let mut sink = Sink {
                handler: &mut self.handler,
                session: &mut fl.session,
                info: &fl.info,
                order: &mut fl.order,
                // Events of a settled wait are stamped when it ran out (not
                // with `expire(u64::MAX)`'s "end of time").
                ts: now_micros.min(fl.info.last_ts.saturating_add(wait)),
                budget: &budget,
                waits: 0,
                overflows: 0,
                max_wait: 0,
            };
            self.stats.order_timeouts += sink.settle(&mut fl.streams, now_micros, wait);
            if now_micros != u64::MAX {
                self.stats.order_wait_max_micros =
                    self.stats.order_wait_max_micros.max(sink.max_wait);
            }
            let after = fl.streams[0].buffered() + fl.streams[1].buffered() + fl.order.held();
            self.stats.buffered = (self.stats.buffered + after).saturating_sub(before);
            let waiting =
                !fl.order.is_empty() || fl.streams.iter().any(|s| s.hole_acked_since().is_some());
            fl.listed = waiting;
            if !waiting && fl.streams[0].finished() && fl.streams[1].finished() {
                done.push(slot);
            }
            waiting
        });
        list.append(&mut self.waiting);
        self.waiting = list;
        for slot in done {
            self.close(slot, CloseReason::Closed);
        }
    }

    /// Closes flows idle for the configured timeout at time `now_micros`
    /// (capture time in replay, wall clock live), oldest first.
    pub fn expire(&mut self, now_micros: u64) {
        self.settle_waiting(now_micros);
        while self.tail != NIL {
            let tail = self.tail;
            let Some(Some(s)) = self.slots.get(tail as usize) else {
                break;
            };
            if s.flow
                .info
                .last_ts
                .saturating_add(self.config.idle_timeout_micros)
                > now_micros
            {
                break;
            }
            self.close(tail, CloseReason::Timeout);
        }
    }

    /// End of input: ends every wait (nothing late can come), then flushes
    /// and closes every flow, least recent first (as `Closed` if that
    /// completed both sides up to their FINs).
    pub fn close_all(&mut self) {
        self.settle_waiting(u64::MAX);
        while self.tail != NIL {
            self.close(self.tail, CloseReason::Shutdown);
        }
    }

    fn create(&mut self, key: FlowKey, seg: &Segment<'_>) -> u32 {
        if self.index.len() >= self.config.max_flows.max(1) && self.tail != NIL {
            self.close(self.tail, CloseReason::Evicted);
        }
        let syn = seg.flags.syn();
        let client = if syn && !seg.flags.ack() {
            seg.src
        } else if syn {
            seg.dst
        } else {
            self.midstream_client(seg.src, seg.dst)
        };
        let server = if client == seg.src { seg.dst } else { seg.src };
        let info = FlowInfo {
            flow_id: key.flow_id(seg.ts_micros),
            client,
            server,
            first_ts: seg.ts_micros,
            last_ts: seg.ts_micros,
            midstream: !syn,
            held: seg.held,
        };
        debug!(flow_id = info.flow_id, %client, %server, midstream = !syn, "flow opened");
        let session = self.handler.open(&info);
        let flow = Flow {
            key,
            info,
            session,
            streams: [Stream::default(), Stream::default()],
            order: Order::default(),
            syn_seen: false,
            midstream: !syn,
            listed: false,
            memory: 0,
        };
        let slot = Slot {
            flow,
            prev: NIL,
            next: NIL,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = Some(slot);
                }
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.link_front(idx);
        self.index.insert(key, idx);
        self.stats.flows_created += 1;
        self.stats.active += 1;
        idx
    }

    /// True if `seg` starts a new connection on the 5-tuple of flow `idx`:
    /// a SYN or SYN-ACK with another initial sequence number, or (its SYN
    /// lost) data far from everything seen on a flow that was idle for
    /// [`REUSE_IDLE_MICROS`] or had a FIN: counting the distance as a gap
    /// would report bytes that were never sent.
    fn reuses(&self, idx: u32, seg: &Segment<'_>) -> bool {
        let Some(Some(s)) = self.slots.get(idx as usize) else {
            return false;
        };
        let f = &s.flow;
        let dir = if seg.src == f.info.client { 0 } else { 1 };
        if seg.flags.syn() {
            return f.streams[dir].is_new_syn(seg.seq);
        }
        let carries = !seg.payload.is_empty() || seg.uncaptured > 0;
        // Data beyond the sender's own FIN, or an ACK beyond the peer's
        // FIN+1, cannot belong to the connection that ended there (its
        // SYN lost, e.g. ring-buffer loss under load, and the new initial
        // sequence number too close for `is_far`).
        if !seg.flags.rst()
            && ((carries && f.streams[dir].is_beyond_fin(seg.seq, 0))
                || (seg.flags.ack() && f.streams[1 - dir].is_beyond_fin(seg.ack, 1)))
        {
            return true;
        }
        // The server's own segment (captured at its egress: a client cannot
        // forge it) whose sequence number lands far from the server's data
        // and whose ACK lands far from the client's delivered data: both
        // sequence spaces changed, so this is another connection (both
        // SYNs and both FINs lost, port reused within a second).
        if dir == 1
            && !seg.flags.rst()
            && seg.flags.ack()
            && f.streams[1].is_far(seg.seq)
            && f.streams[0].is_far_from_delivered(seg.ack)
        {
            return true;
        }
        let quiet = seg.ts_micros.saturating_sub(f.info.last_ts) >= REUSE_IDLE_MICROS
            || f.streams.iter().any(Stream::fin_seen);
        carries && !seg.flags.rst() && quiet && f.streams[dir].is_far(seg.seq)
    }

    /// Client of a flow first seen without SYN: the side not on a monitored
    /// port; if both or neither are, the side with the higher port.
    fn midstream_client(&self, src: SocketAddr, dst: SocketAddr) -> SocketAddr {
        let m = |a: SocketAddr| self.config.monitored_ports.contains(&a.port());
        match (m(src), m(dst)) {
            (true, false) => dst,
            (false, true) => src,
            _ => {
                if dst.port() > src.port() {
                    dst
                } else {
                    src
                }
            }
        }
    }

    fn close(&mut self, idx: u32, reason: CloseReason) {
        self.unlink(idx);
        let Some(slot) = self.slots.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        self.free.push(idx);
        if self.last.is_some_and(|(_, s)| s == idx) {
            self.last = None;
        }
        let Flow {
            key,
            info,
            mut session,
            mut streams,
            mut order,
            syn_seen,
            midstream,
            memory,
            ..
        } = slot.flow;
        self.index.remove(&key);
        self.stats.session_memory = self.stats.session_memory.saturating_sub(memory);
        let before = streams[0].buffered() + streams[1].buffered() + order.held();
        // At the end nothing is held longer than the flush.
        let budget = Budget::new(usize::MAX, usize::MAX);
        let mut sink = Sink {
            handler: &mut self.handler,
            session: &mut session,
            info: &info,
            order: &mut order,
            ts: info.last_ts,
            budget: &budget,
            waits: 0,
            overflows: 0,
            max_wait: 0,
        };
        for d in [Direction::Up, Direction::Down] {
            if reason == CloseReason::Reused {
                streams[di(d)].drop_next_connection();
            }
            streams[di(d)].flush(&mut |c, m| sink.put(d, c, m));
        }
        // What still waits goes in the best order there is.
        for (d, h) in sink.order.drain_all() {
            sink.hand(d, h.chunk(), h.ts);
        }
        for d in [Direction::Up, Direction::Down] {
            if streams[di(d)].take_conflict() {
                self.handler
                    .anomaly(&mut session, &info, d, FlowAnomaly::OverlapConflict);
            }
        }
        self.stats.buffered = self.stats.buffered.saturating_sub(before);
        let stats = FlowStats {
            up: streams[0].stats,
            down: streams[1].stats,
            syn_seen,
            midstream,
        };
        debug!(
            flow_id = info.flow_id,
            reason = reason.as_str(),
            gaps = stats.up.gaps + stats.down.gaps,
            "flow closed"
        );
        self.handler.close(session, &info, &stats, reason);
        self.stats.count_close(reason);
    }

    fn slot_mut(&mut self, idx: u32) -> Option<&mut Slot<H::Session>> {
        self.slots.get_mut(idx as usize).and_then(Option::as_mut)
    }

    fn link_front(&mut self, idx: u32) {
        let old = self.head;
        if let Some(s) = self.slot_mut(idx) {
            s.prev = NIL;
            s.next = old;
        }
        if let Some(h) = self.slot_mut(old) {
            h.prev = idx;
        }
        self.head = idx;
        if self.tail == NIL {
            self.tail = idx;
        }
    }

    fn unlink(&mut self, idx: u32) {
        let Some((prev, next)) = self.slot_mut(idx).map(|s| (s.prev, s.next)) else {
            return;
        };
        match self.slot_mut(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.slot_mut(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
        if let Some(s) = self.slot_mut(idx) {
            s.prev = NIL;
            s.next = NIL;
        }
    }

    /// Moves `idx` to the LRU head.
    fn touch(&mut self, idx: u32) {
        if self.head != idx {
            self.unlink(idx);
            self.link_front(idx);
        }
    }
}
