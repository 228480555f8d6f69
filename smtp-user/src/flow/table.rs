//! The flow table: segments → flows → reassembled streams for a [`FlowHandler`].
//!
//! Flows live in a slab threaded on a doubly linked LRU list (most recently
//! active at the head), indexed by a hash map on the normalised 5-tuple.
//! The LRU tail is both the eviction victim when the flow limit is reached
//! and where idle-timeout expiry starts. Memory is bounded by the flow limit,
//! the per-direction buffer limit and the global buffer limit.

use std::collections::HashMap;
use std::net::SocketAddr;

use tracing::{debug, trace};

use super::key::FlowKey;
use super::stats::{CloseReason, FlowStats, TableStats};
use super::stream::{Budget, Chunk, Stream};
use super::{FlowConfig, FlowHandler, FlowInfo};
use crate::capture::{parse_frame, Segment, Skip};
use crate::Direction;

const NIL: u32 = u32::MAX;

/// One tracked connection.
struct Flow<S> {
    key: FlowKey,
    info: FlowInfo,
    session: S,
    /// Index 0: client → server (`Direction::Up`); 1: server → client.
    streams: [Stream; 2],
    syn_seen: bool,
    midstream: bool,
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
    index: HashMap<FlowKey, u32>,
    /// Slab of flows; `None` slots are listed in `free`.
    slots: Vec<Option<Slot<H::Session>>>,
    free: Vec<u32>,
    /// Most and least recently active flows (`NIL` when empty).
    head: u32,
    tail: u32,
    /// Last flow looked up: consecutive segments of one flow skip the hash.
    last: Option<(FlowKey, u32)>,
    stats: TableStats,
}

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
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            last: None,
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
        let slot = match self.last {
            Some((k, s)) if k == key => Some(s),
            _ => self.index.get(&key).copied(),
        };
        let slot = match slot {
            Some(s) if self.reuses(s, seg) => {
                debug!(src = %seg.src, dst = %seg.dst, "new SYN on a known 5-tuple: port reuse");
                self.close(s, CloseReason::Reused);
                self.create(key, seg)
            }
            Some(s) => s,
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
        let Some(Some(entry)) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Flow {
            info,
            session,
            streams,
            syn_seen,
            ..
        } = &mut entry.flow;
        info.last_ts = seg.ts_micros.max(info.last_ts);
        info.held = seg.held;
        let dir = if seg.src == info.client {
            Direction::Up
        } else {
            Direction::Down
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
        let wire = seg.payload.len() as u64 + u64::from(seg.uncaptured);
        mine.stats.packets += 1;
        mine.stats.bytes += wire;
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
        let before = mine.buffered() + theirs.buffered();
        let mut budget = Budget {
            per_direction: self.config.max_buffer_per_direction,
            global_room: self
                .config
                .max_buffer_total
                .saturating_sub(self.stats.buffered),
            global_hits: 0,
        };
        let handler = &mut self.handler;
        let ts = seg.ts_micros;
        let mut deliver = |d: Direction, c: Chunk<'_>| match c {
            Chunk::Data(b) => handler.data(session, info, d, ts, b),
            Chunk::Gap(n) => {
                debug!(flow_id = info.flow_id, dir = ?d, len = n, "gap: bytes missing from the capture");
                handler.gap(session, info, d, ts, n)
            }
        };
        // The ACK first: the sender had received the peer's bytes up to it
        // before it sent this payload, so a hole the ACK proves lost is a gap
        // that comes before this segment's data in the session's order.
        if seg.flags.ack() {
            theirs.peer_ack(seg.ack, &mut |c| deliver(dir.reverse(), c));
        }
        let mut seq = seg.seq;
        if seg.flags.syn() {
            *syn_seen = true;
            mine.syn(seg.seq);
            seq = seg.seq.wrapping_add(1);
        }
        if wire > 0 || seg.flags.fin() || !seg.flags.syn() {
            mine.segment(
                seq,
                seg.payload,
                seg.uncaptured,
                seg.flags.fin(),
                &mut budget,
                &mut |c| deliver(dir, c),
            );
        }
        let next_seq = [streams[0].next_seq(), streams[1].next_seq()];
        self.handler.after_segment(session, info, next_seq);
        for d in [dir, dir.reverse()] {
            let s = &mut streams[di(d)];
            if s.started() && !self.handler.wants_data(session, d) {
                s.bypass();
            }
        }
        let after = streams[0].buffered() + streams[1].buffered();
        self.stats.buffered = (self.stats.buffered + after).saturating_sub(before);
        self.stats.buffered_peak = self.stats.buffered_peak.max(self.stats.buffered);
        self.stats.memcap_hits += budget.global_hits;
        if streams[0].finished() && streams[1].finished() {
            self.close(slot, CloseReason::Closed);
        }
    }

    /// Closes flows idle for the configured timeout at time `now_micros`
    /// (capture time in replay, wall clock live), oldest first.
    pub fn expire(&mut self, now_micros: u64) {
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

    /// End of input: flushes and closes every flow, least recent first.
    pub fn close_all(&mut self) {
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
            syn_seen: false,
            midstream: !syn,
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

    /// True if `seg` is a SYN (without ACK) starting a new connection on
    /// the 5-tuple of flow `idx`.
    fn reuses(&self, idx: u32, seg: &Segment<'_>) -> bool {
        if !seg.flags.syn() || seg.flags.ack() {
            return false;
        }
        let Some(Some(s)) = self.slots.get(idx as usize) else {
            return false;
        };
        let f = &s.flow;
        let dir = if seg.src == f.info.client { 0 } else { 1 };
        f.streams[dir].is_new_syn(seg.seq)
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
            syn_seen,
            midstream,
        } = slot.flow;
        self.index.remove(&key);
        let before = streams[0].buffered() + streams[1].buffered();
        let handler = &mut self.handler;
        let ts = info.last_ts;
        for d in [Direction::Up, Direction::Down] {
            streams[di(d)].flush(&mut |c| match c {
                Chunk::Data(b) => handler.data(&mut session, &info, d, ts, b),
                Chunk::Gap(n) => {
                    debug!(flow_id = info.flow_id, dir = ?d, len = n, "gap at close: bytes never seen");
                    handler.gap(&mut session, &info, d, ts, n)
                }
            });
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
