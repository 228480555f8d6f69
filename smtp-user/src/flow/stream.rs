//! One direction of a TCP connection: sequence tracking and reassembly, as
//! the receiving Linux stack sees it.
//!
//! Bytes are addressed by 64-bit offsets relative to the first byte of the
//! direction (ISN+1, or the first sequence number seen when the capture
//! started mid-session); a 32-bit sequence number is mapped to the offset
//! nearest the delivery point (`±2^31`), so wrap-around is invisible.
//!
//! Policy: the receiver's, Linux's (Suricata's `linux` stream policy), so
//! that the monitor reads what the server reads:
//!
//! - bytes already delivered in order are kept; later copies are dropped
//!   (counted as duplicates/overlaps; delivered bytes are not kept, so a
//!   conflict with them cannot be seen);
//! - in-order data overrides the out-of-order pieces it covers;
//! - among out-of-order pieces, a byte comes from the segment that starts
//!   first; at the same start, from the longer one (earlier arrival on a
//!   tie), as Linux's out-of-order queue and Suricata's `linux` policy decide;
//! - an urgent byte (the byte before the urgent pointer, the last one
//!   announced winning) is removed from the stream, as Linux does by default
//!   (`SO_OOBINLINE` off);
//! - data carried in a SYN is delivered only once the receiver acknowledged
//!   it (TCP Fast Open); otherwise the receiver discarded it.
//!
//! Segments the receiver drops before reassembly (bad checksum, no ACK) are
//! filtered by the [flow table](super::table). Every overridden, dropped or
//! removed byte is counted in [`DirStats`]; bytes that differ from the ones
//! kept are counted as conflicts.
//!
//! In-order data goes to the consumer straight from the packet; only
//! out-of-order data is copied into a buffer, whose real heap cost is
//! charged (see [`piece_cost`]). Adjacent pieces of one sender are
//! coalesced, as Linux coalesces its out-of-order queue.
//!
//! A hole is given up on, and delivered as a gap, when (a) buffering the
//! next out-of-order segment would exceed the direction's or the table's
//! limit, (b) the peer acknowledged data beyond the hole (the receiver had
//! it; the capture lost it) and the table's reordering wait is over, or
//! (c) the flow ends. One gap is delivered per run of holes: slivers of
//! data between holes (shorter than [`MIN_ISLAND`]) are given up with them.
//!
//! Every delivered chunk is tagged with a [`Mark`]: its end offset and the
//! offset of the peer's stream that the sender had received when it sent
//! the chunk (its ACK), which the flow table uses to order the two
//! directions.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::mem::size_of;

use super::stats::DirStats;

/// Farthest a segment may start beyond the delivery point: the largest
/// TCP window (2^30 with window scaling).
pub const MAX_AHEAD: u64 = 1 << 30;

/// How far from the data seen a segment must land to be taken, on a flow
/// that was idle or closing, for a new connection on the same 5-tuple whose
/// SYN was not seen (see [`Stream::is_far`]).
pub const FAR_JUMP: i64 = 16 << 20;

/// How far from the highest byte seen a RST's sequence number may be and
/// still be believed (a receiver accepts RSTs within its window).
pub const RST_WINDOW: i64 = 1 << 24;

/// Buffered data shorter than this between two holes is given up with
/// them: one gap per run of holes, not one per sliver.
pub const MIN_ISLAND: usize = 32;

/// Largest piece adjacent segments are coalesced into.
const MAX_PIECE: usize = 64 << 10;

/// Smallest segment appended to a piece by reallocating it (smaller ones
/// only fill spare capacity, so that 1-byte floods do not copy quadratically).
const MIN_REALLOC_APPEND: usize = 256;

/// Most bytes of SYN data kept until the receiver says whether it took them.
const MAX_SYN_DATA: usize = 64 << 10;

/// What reassembly hands to the consumer, in stream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// This many bytes of the stream will never be seen.
    Gap(u64),
}

/// Where a delivered chunk sits, for ordering across directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// Stream offset just past the chunk (a removed urgent byte included).
    pub end: u64,
    /// Offset of the peer's stream the sender had received when it sent
    /// these bytes (its ACK); 0 when unknown.
    pub need: u64,
}

/// A segment of one direction, as reassembly needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Data<'a> {
    /// Sequence number of the first payload byte.
    pub seq: u32,
    pub payload: &'a [u8],
    /// Bytes on the wire after `payload` that were not captured.
    pub uncaptured: u32,
    /// A FIN follows the payload.
    pub fin: bool,
    /// See [`Mark::need`].
    pub need: u64,
}

/// Memory a flow may still take for buffering (shared by its two streams
/// and its [`Order`](super::order::Order)), and where to count a refusal.
#[derive(Debug)]
pub struct Budget {
    /// Limit on one direction's buffered bytes (real heap cost), and on
    /// the flow's chunks held for ordering.
    pub per_direction: usize,
    /// Bytes the whole table can still buffer.
    pub global_room: Cell<usize>,
    /// Incremented when the global room (not the per-direction limit) refused.
    pub global_hits: Cell<u64>,
}

impl Budget {
    pub fn new(per_direction: usize, global_room: usize) -> Budget {
        Budget {
            per_direction,
            global_room: Cell::new(global_room),
            global_hits: Cell::new(0),
        }
    }

    /// Takes `n` bytes of the global room.
    pub fn take(&self, n: usize) {
        self.global_room
            .set(self.global_room.get().saturating_sub(n));
    }
}

/// An out-of-order piece: bytes of one segment (or of adjacent segments
/// coalesced), possibly cut where other data won.
#[derive(Debug)]
struct Piece {
    data: Vec<u8>,
    /// Start and end offset of the segment these bytes came from (of the
    /// first and last one when coalesced): the rank used against overlaps.
    owner: (u64, u64),
    /// See [`Mark::need`].
    need: u64,
}

/// Real heap bytes a buffered piece of `capacity` bytes costs: the
/// allocator's chunk for the bytes (glibc: 16-byte granules with an 8-byte
/// header, 32 at least) and the piece's share of the B-tree (nodes hold 11
/// entries, at worst half full, plus the internal nodes).
pub fn piece_cost(capacity: usize) -> usize {
    const ENTRY: usize = 2 * size_of::<(u64, Piece)>() + 48;
    alloc_cost(capacity) + ENTRY
}

fn alloc_cost(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

/// Reassembly state of one direction.
#[derive(Debug, Default)]
pub struct Stream {
    /// Sequence number of offset 0. Meaningful once `started`.
    base: u32,
    /// A SYN or a first data segment fixed `base`.
    started: bool,
    /// Offset of the next byte to deliver: everything before it was
    /// delivered or declared a gap.
    next: u64,
    /// Out-of-order data: disjoint pieces, every key > `next`.
    ooo: BTreeMap<u64, Piece>,
    /// Heap bytes of `ooo` ([`piece_cost`] of every piece).
    buffered: usize,
    /// Highest offset seen (end of data or FIN position).
    max_end: u64,
    /// Offset of the FIN, once seen (first FIN wins).
    fin: Option<u64>,
    /// The consumer asked for no more data: segments are only counted.
    bypass: bool,
    /// Highest offset the receiver acknowledged (possibly beyond `max_end`:
    /// bytes the capture has not shown yet).
    acked: u64,
    /// Capture time since which the acknowledged data seen is beyond a hole
    /// (`next < min(acked, max_end)`).
    hole_acked_since: Option<u64>,
    /// Offset of the pending urgent byte, removed when delivery reaches it.
    urgent: Option<u64>,
    /// Data of the SYN, until the receiver acknowledges or ignores it.
    syn_data: Option<Vec<u8>>,
    /// The first overlap conflict was reported to the consumer.
    conflict_reported: bool,
    /// Counters of this direction.
    pub stats: DirStats,
}

impl Stream {
    /// Bytes currently buffered (real heap cost).
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Offset of the next byte to deliver.
    pub fn delivered(&self) -> u64 {
        self.next
    }

    /// Highest offset seen (data or FIN).
    pub fn max_end(&self) -> u64 {
        self.max_end
    }

    /// True once the FIN was seen and everything before it delivered.
    pub fn finished(&self) -> bool {
        self.fin.is_some_and(|f| self.next >= f)
    }

    /// True if a SYN or data fixed the sequence base.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Sequence number of the next byte to deliver (the next one the sender
    /// will send once everything before it arrived); `None` before the
    /// sequence base is known.
    pub fn next_seq(&self) -> Option<u32> {
        self.started
            .then(|| self.base.wrapping_add(self.next as u32))
    }

    /// Stops reassembly: frees the buffer, later segments are only counted.
    pub fn bypass(&mut self) {
        self.bypass = true;
        self.ooo.clear();
        self.buffered = 0;
        self.syn_data = None;
    }

    /// True if the first overlap conflict of this direction happened and was
    /// not reported yet (it is reported once).
    pub fn take_conflict(&mut self) -> bool {
        let new = self.stats.overlap_conflicts > 0 && !self.conflict_reported;
        self.conflict_reported |= new;
        new
    }

    /// True if a SYN with sequence number `isn` starts a different
    /// connection than the one this stream follows (port reuse).
    pub fn is_new_syn(&self, isn: u32) -> bool {
        self.started && isn.wrapping_add(1) != self.base
    }

    /// True if a RST from this direction with sequence number `seq` is
    /// plausible (near the data seen), so that a blind or stale RST does
    /// not end monitoring of a live connection.
    pub fn rst_acceptable(&self, seq: u32) -> bool {
        !self.started || (self.offset(seq) - self.max_end as i64).abs() <= RST_WINDOW
    }

    /// True if a segment at `seq` lands more than [`FAR_JUMP`] away from
    /// the data seen: on an idle or closing flow, another connection.
    pub fn is_far(&self, seq: u32) -> bool {
        self.started && (self.offset(seq) - self.max_end as i64).abs() > FAR_JUMP
    }

    /// True if `seq` lands more than [`FAR_JUMP`] away from what was
    /// delivered in order (data buffered far ahead does not count).
    pub fn is_far_from_delivered(&self, seq: u32) -> bool {
        self.started && (self.offset(seq) - self.next as i64).abs() > FAR_JUMP
    }

    /// The flow ends because another connection took its 5-tuple: data
    /// buffered more than [`FAR_JUMP`] ahead of the delivery point is that
    /// connection's (sent before it was recognised), so it is neither
    /// delivered nor counted as a gap.
    pub fn drop_next_connection(&mut self) {
        let far = self.next + FAR_JUMP as u64;
        let stale = self.ooo.split_off(&far);
        for p in stale.values() {
            self.buffered -= piece_cost(p.data.capacity());
            self.stats.next_connection_bytes += p.data.len() as u64;
        }
        if self.max_end > far {
            let last = self
                .ooo
                .last_key_value()
                .map(|(k, p)| k + p.data.len() as u64);
            self.max_end = last.unwrap_or(self.next).max(self.next);
            if self.fin.is_some_and(|f| f > far) {
                self.fin = None;
            }
            self.acked = self.acked.min(self.max_end);
        }
    }

    /// True if sequence number `seq` (plus `margin`) lies beyond this
    /// direction's FIN, the FIN being the last thing it sent: no segment of
    /// the same connection starts there, and no ACK of the peer reaches
    /// past FIN+1. A FIN below data already seen (stale or forged) does
    /// not count.
    pub fn is_beyond_fin(&self, seq: u32, margin: i64) -> bool {
        self.started
            && self
                .fin
                .is_some_and(|f| self.max_end <= f && self.offset(seq) > f as i64 + margin)
    }

    /// True once a FIN of this direction was seen.
    pub fn fin_seen(&self) -> bool {
        self.fin.is_some()
    }

    /// A SYN with sequence number `isn` carrying `payload`: data starts at
    /// `isn + 1`; the payload waits for the receiver's verdict.
    pub fn syn(&mut self, isn: u32, payload: &[u8]) {
        if !self.started {
            self.base = isn.wrapping_add(1);
            self.started = true;
        }
        if !payload.is_empty() && self.syn_data.is_none() && self.next == 0 && !self.bypass {
            let keep = payload.len().min(MAX_SYN_DATA);
            self.syn_data = Some(payload.get(..keep).unwrap_or_default().to_vec());
            self.stats.syn_data += payload.len() as u64;
        }
    }

    /// Offset of sequence number `seq`, relative to the delivery point.
    fn offset(&self, seq: u32) -> i64 {
        let next_seq = self.base.wrapping_add(self.next as u32);
        self.next as i64 + i64::from(seq.wrapping_sub(next_seq) as i32)
    }

    /// The offset the peer's acknowledgement `ack` stands for in this
    /// stream (0 before the stream started or for one before its start).
    pub fn ack_offset(&self, ack: u32) -> u64 {
        if self.started {
            self.offset(ack).max(0) as u64
        } else {
            0
        }
    }

    /// An urgent pointer: `ptr` is the sequence number of the urgent byte.
    /// As Linux: ignored if that byte was delivered already or is not past
    /// the pending one; else it replaces the pending one.
    pub fn urgent(&mut self, ptr: u32) {
        if !self.started || self.bypass {
            return;
        }
        let off = self.offset(ptr);
        if off < self.next as i64 || off > (self.next + MAX_AHEAD) as i64 {
            return;
        }
        let off = off as u64;
        if self.urgent.is_some_and(|u| off <= u) {
            return;
        }
        self.urgent = Some(off);
    }

    /// A segment of this direction.
    pub fn segment(
        &mut self,
        seg: Data<'_>,
        budget: &Budget,
        out: &mut impl FnMut(Chunk<'_>, Mark),
    ) {
        if !self.started {
            self.base = seg.seq;
            self.started = true;
        }
        let start = self.offset(seg.seq);
        let wire_len = seg.payload.len() as u64 + u64::from(seg.uncaptured);
        if start > (self.next + MAX_AHEAD) as i64 {
            // Beyond any TCP window: forged or corrupt. Accepting it would
            // let one packet push the stream past real data.
            self.stats.out_of_window += 1;
            return;
        }
        let (mut payload, mut uncaptured) = (seg.payload, seg.uncaptured);
        let start = if start < 0 {
            // Begins before the first byte of a mid-session capture (or more
            // than 2^31 back): only a part beyond offset 0 is new.
            let end = start + wire_len as i64;
            if end < 0 || (end == 0 && !seg.fin) {
                if wire_len > 0 {
                    self.stats.duplicates += 1;
                }
                return;
            }
            if wire_len > 0 && self.next == 0 {
                // (With next > 0 the overlap is counted below.)
                self.stats.overlaps += 1;
            }
            (payload, uncaptured) = cut_front(payload, uncaptured, start.unsigned_abs());
            0
        } else {
            start as u64
        };
        let wire_len = payload.len() as u64 + u64::from(uncaptured);
        let end = start + wire_len;
        if wire_len > 0 && self.syn_data.is_some() && start == 0 {
            // The sender sends again what its SYN carried: the receiver did
            // not take the SYN's data.
            self.reject_syn_data();
        }
        // A bare ACK/RST after a FIN sits at FIN+1: only data and FINs
        // say how far the stream goes.
        if wire_len > 0 || seg.fin {
            self.max_end = self.max_end.max(end);
        }
        if seg.fin && self.fin.is_none() {
            self.fin = Some(end);
        }
        if wire_len == 0 || self.bypass {
            return;
        }
        if end <= self.next {
            self.stats.duplicates += 1;
            return;
        }
        let mut start = start;
        if start < self.next {
            // Overlaps delivered data: keep only the new part.
            self.stats.overlaps += 1;
            (payload, uncaptured) = cut_front(payload, uncaptured, self.next - start);
            start = self.next;
        }
        if start > self.next {
            let cost = if payload.is_empty() {
                0
            } else {
                piece_cost(payload.len())
            };
            let over_dir = self.buffered + cost > budget.per_direction;
            let over_global = cost > budget.global_room.get();
            if payload.is_empty() || !(over_dir || over_global) {
                let before = self.buffered;
                self.insert(start, end, payload, seg.need);
                budget.take(self.buffered.saturating_sub(before));
                self.stats.ooo_peak = self.stats.ooo_peak.max(self.buffered);
                return;
            }
            // No room to wait for the hole: give it up.
            self.stats.limit_hits += 1;
            if over_global && !over_dir {
                budget.global_hits.set(budget.global_hits.get() + 1);
            }
            self.skip_to(start, out);
            if self.next > start {
                // A buffered piece before `start` reached into this segment.
                if self.next >= end {
                    return;
                }
                (payload, uncaptured) = cut_front(payload, uncaptured, self.next - start);
            }
        }
        self.in_order(payload, seg.need, out);
        if uncaptured > 0 {
            let target = self.next + u64::from(uncaptured);
            self.skip_to(target, out);
        }
        self.drain(out);
    }

    /// Delivers `data`, which starts at `next`: it overrides the buffered
    /// pieces it covers (in-order data wins).
    fn in_order(&mut self, data: &[u8], need: u64, out: &mut impl FnMut(Chunk<'_>, Mark)) {
        if data.is_empty() {
            return;
        }
        let start = self.next;
        let end = start + data.len() as u64;
        let covered: Vec<u64> = self.ooo.range(..end).map(|(&k, _)| k).collect();
        for k in covered {
            let Some(piece) = self.ooo.remove(&k) else {
                continue;
            };
            self.buffered -= piece_cost(piece.data.capacity());
            self.stats.overlaps += 1;
            let piece_end = k + piece.data.len() as u64;
            let overlap_end = piece_end.min(end);
            let old = piece.data.get(..(overlap_end - k) as usize);
            let new = data.get((k - start) as usize..(overlap_end - start) as usize);
            if old != new {
                self.stats.overlap_conflicts += 1;
            }
            self.stats.overridden_bytes += overlap_end - k;
            if piece_end > end {
                let rest = piece.data.get((end - k) as usize..).unwrap_or_default();
                self.store(end, rest, piece.owner, piece.need);
            }
        }
        self.emit(data, need, out);
    }

    /// Hands `data` (starting at `next`) to the consumer, removing the
    /// pending urgent byte if it is inside.
    fn emit(&mut self, data: &[u8], need: u64, out: &mut impl FnMut(Chunk<'_>, Mark)) {
        let start = self.next;
        let end = start + data.len() as u64;
        if let Some(u) = self.urgent.filter(|&u| u >= start && u < end) {
            let i = (u - start) as usize;
            let head = data.get(..i).unwrap_or_default();
            if !head.is_empty() {
                out(Chunk::Data(head), Mark { end: u, need });
            }
            self.urgent = None;
            self.stats.urgent_removed += 1;
            self.next = end;
            let tail = data.get(i + 1..).unwrap_or_default();
            out(Chunk::Data(tail), Mark { end, need });
            return;
        }
        self.next = end;
        out(Chunk::Data(data), Mark { end, need });
    }

    /// Delivers buffered pieces contiguous with `next`.
    fn drain(&mut self, out: &mut impl FnMut(Chunk<'_>, Mark)) {
        while let Some(entry) = self.ooo.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            let (k, piece) = entry.remove_entry();
            self.buffered -= piece_cost(piece.data.capacity());
            // Keys are > next when stored; == next now. Trim defensively.
            let skip = (self.next - k) as usize;
            if let Some(rest) = piece.data.get(skip..) {
                if !rest.is_empty() {
                    self.emit(rest, piece.need, out);
                }
            }
        }
    }

    /// Gives up on everything missing before `target`: delivers the
    /// buffered pieces that start before it, and one gap per run of holes
    /// (slivers shorter than [`MIN_ISLAND`] between holes go with them).
    fn skip_to(&mut self, target: u64, out: &mut impl FnMut(Chunk<'_>, Mark)) {
        // The gap being built: its length, and how many of its bytes were
        // never seen (the rest are slivers given up).
        let (mut len, mut missing) = (0u64, 0u64);
        loop {
            let pos = self.next + len;
            if pos >= target {
                break;
            }
            let Some((&k, piece)) = self.ooo.first_key_value() else {
                missing += target - pos;
                len += target - pos;
                break;
            };
            if k >= target {
                missing += target - pos;
                len += target - pos;
                break;
            }
            if k > pos {
                missing += k - pos;
                len += k - pos;
            }
            let piece_end = k + piece.data.len() as u64;
            let sliver = len > 0
                && piece.data.len() < MIN_ISLAND
                && piece_end < target
                && !self.ooo.contains_key(&piece_end);
            if sliver {
                if let Some(p) = self.ooo.remove(&k) {
                    self.buffered -= piece_cost(p.data.capacity());
                    self.stats.sliver_bytes += p.data.len() as u64;
                    len += p.data.len() as u64;
                }
            } else {
                self.gap(len, missing, out);
                (len, missing) = (0, 0);
                self.drain(out);
            }
        }
        self.gap(len, missing, out);
        self.drain(out);
    }

    /// Delivers a gap of `len` bytes of which `missing` were never seen.
    fn gap(&mut self, len: u64, missing: u64, out: &mut impl FnMut(Chunk<'_>, Mark)) {
        if len == 0 {
            return;
        }
        self.stats.gaps += 1;
        self.stats.gap_bytes += missing;
        let end = self.next + len;
        if self.urgent.is_some_and(|u| u < end) {
            self.urgent = None;
        }
        self.next = end;
        out(Chunk::Gap(len), Mark { end, need: 0 });
    }

    /// Buffers out-of-order `data` of the segment `[start, end)` (`start` >
    /// `next`; `end` may extend past `data` by uncaptured bytes), resolving
    /// overlaps with buffered pieces by Linux's rule (see the module doc).
    fn insert(&mut self, start: u64, end: u64, data: &[u8], need: u64) {
        let data_end = start + data.len() as u64;
        // Pieces overlapping [start, data_end): the one starting before
        // `start`, and those starting inside.
        let mut overlapping: Vec<u64> = Vec::new();
        if let Some((&k, p)) = self.ooo.range(..start).next_back() {
            if k + p.data.len() as u64 > start {
                overlapping.push(k);
            }
        }
        overlapping.extend(self.ooo.range(start..data_end).map(|(&k, _)| k));
        if !overlapping.is_empty() {
            self.stats.overlaps += 1;
        }
        let slice = |a: u64, b: u64| {
            data.get((a - start) as usize..(b - start) as usize)
                .unwrap_or_default()
        };
        let mut pos = start;
        for k in overlapping {
            let Some(p) = self.ooo.get_mut(&k) else {
                continue;
            };
            // Copies of the same bytes wait only for the smallest ACK (a
            // retransmission carries a later one).
            p.need = p.need.min(need);
            let p = &*p;
            let kend = k + p.data.len() as u64;
            let owner = p.owner;
            let (a, b) = (pos.max(k), data_end.min(kend));
            let differs =
                a < b && p.data.get((a - k) as usize..(b - k) as usize) != Some(slice(a, b));
            if pos < k {
                self.store(pos, slice(pos, k), (start, end), need);
            }
            if a < b {
                if differs {
                    self.stats.overlap_conflicts += 1;
                }
                // The new segment wins if it starts first, or at the same
                // start reaches farther (then `k == start` here).
                let wins = start < owner.0 || (start == owner.0 && end > owner.1);
                if wins {
                    self.stats.overridden_bytes += b - a;
                    if let Some(old) = self.ooo.remove(&k) {
                        self.buffered -= piece_cost(old.data.capacity());
                        if let Some(head) = old.data.get(..(a - k) as usize) {
                            self.store(k, head, old.owner, old.need);
                        }
                        self.store(a, slice(a, b), (start, end), need.min(old.need));
                        if let Some(tail) = old.data.get((b - k) as usize..) {
                            self.store(b, tail, old.owner, old.need);
                        }
                    }
                }
            }
            pos = pos.max(kend);
        }
        if pos < data_end {
            self.store(pos, slice(pos, data_end), (start, end), need);
        }
    }

    /// Buffers `bytes` at `at`, appended to the piece ending there when it
    /// came from the same segment, or from the segment just before (as
    /// Linux coalesces its out-of-order queue).
    fn store(&mut self, at: u64, bytes: &[u8], owner: (u64, u64), need: u64) {
        if bytes.is_empty() {
            return;
        }
        if let Some((&k, p)) = self.ooo.range_mut(..at).next_back() {
            let (n, cap) = (p.data.len(), p.data.capacity());
            let adjacent = k + n as u64 == at
                && p.need == need
                && (p.owner == owner || (p.owner.1 == at && owner.0 == at));
            let fits = n + bytes.len() <= cap
                || (bytes.len() >= MIN_REALLOC_APPEND && n + bytes.len() <= MAX_PIECE);
            if adjacent && fits {
                self.buffered -= piece_cost(cap);
                p.data.reserve_exact(bytes.len());
                p.data.extend_from_slice(bytes);
                p.owner = (p.owner.0, p.owner.1.max(owner.1));
                self.buffered += piece_cost(p.data.capacity());
                return;
            }
        }
        let data = bytes.to_vec();
        self.buffered += piece_cost(data.capacity());
        self.ooo.insert(at, Piece { data, owner, need });
    }

    /// The receiver acknowledged up to offset `ack` of this stream, seen at
    /// capture time `ts`: SYN data it covers is delivered; a hole before it
    /// waits for the table's reordering wait (see [`Stream::give_up_acked`]).
    pub fn peer_ack(&mut self, ack: u64, ts: u64, out: &mut impl FnMut(Chunk<'_>, Mark)) {
        if !self.started || self.bypass {
            return;
        }
        if let Some(data) = self.syn_data.take() {
            if ack >= data.len() as u64 && self.next == 0 {
                // The receiver took the SYN's data (TCP Fast Open).
                self.max_end = self.max_end.max(data.len() as u64);
                self.in_order(&data, 0, out);
                self.drain(out);
            } else {
                self.syn_data = Some(data);
                self.reject_syn_data();
            }
        }
        if ack > self.acked && ack <= self.max_end.max(self.next) + MAX_AHEAD {
            self.acked = ack;
        }
        self.check_acked_hole(ts);
    }

    /// Starts (at capture time `ts`) or ends the wait on a hole before data
    /// the receiver acknowledged; to call after every segment of either side.
    pub fn check_acked_hole(&mut self, ts: u64) {
        if self.acked.min(self.max_end) > self.next {
            self.hole_acked_since.get_or_insert(ts);
        } else {
            self.hole_acked_since = None;
        }
    }

    fn reject_syn_data(&mut self) {
        if self.syn_data.take().is_some() {
            self.stats.syn_data_ignored += 1;
        }
    }

    /// Since when a hole before the receiver's acknowledgement waits.
    pub fn hole_acked_since(&self) -> Option<u64> {
        self.hole_acked_since
    }

    /// The reordering wait is over: holes before what the receiver
    /// acknowledged are gaps.
    pub fn give_up_acked(&mut self, out: &mut impl FnMut(Chunk<'_>, Mark)) {
        self.hole_acked_since = None;
        let target = self.acked.min(self.max_end);
        if self.bypass || target <= self.next {
            return;
        }
        self.skip_to(target, out);
    }

    /// Gives up on holes before `target` (at most what was seen): the
    /// peer's data waiting on these bytes waited long enough.
    pub fn give_up_before(&mut self, target: u64, out: &mut impl FnMut(Chunk<'_>, Mark)) {
        let t = target.min(self.max_end);
        if !self.bypass && t > self.next {
            self.skip_to(t, out);
        }
        if self.acked.min(self.max_end) <= self.next {
            self.hole_acked_since = None;
        }
    }

    /// End of the flow: everything seen is delivered, holes become gaps.
    pub fn flush(&mut self, out: &mut impl FnMut(Chunk<'_>, Mark)) {
        self.reject_syn_data();
        if self.bypass {
            return;
        }
        let target = self.max_end.max(self.fin.unwrap_or(0));
        self.skip_to(target, out);
    }
}

/// Drops the first `cut` bytes of a segment (captured bytes first, then
/// uncaptured ones). `cut` must be less than the segment's wire length.
fn cut_front(payload: &[u8], uncaptured: u32, cut: u64) -> (&[u8], u32) {
    match usize::try_from(cut) {
        Ok(c) if c <= payload.len() => (payload.get(c..).unwrap_or_default(), uncaptured),
        _ => {
            let beyond = cut.saturating_sub(payload.len() as u64);
            (
                &[],
                uncaptured.saturating_sub(u32::try_from(beyond).unwrap_or(u32::MAX)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_dir: usize) -> Budget {
        Budget::new(per_dir, usize::MAX)
    }

    fn seg(seq: u32, payload: &[u8]) -> Data<'_> {
        Data {
            seq,
            payload,
            ..Data::default()
        }
    }

    fn run(stream: &mut Stream, segs: &[(u32, &[u8])], per_dir: usize) -> Vec<Chunk<'static>> {
        let mut got = Vec::new();
        let budget = budget(per_dir);
        for &(seq, p) in segs {
            stream.segment(seg(seq, p), &budget, &mut |c, _| {
                got.push(match c {
                    Chunk::Data(d) => Chunk::Data(Vec::leak(d.to_vec())),
                    Chunk::Gap(n) => Chunk::Gap(n),
                })
            });
        }
        got
    }

    fn bytes(chunks: &[Chunk<'_>]) -> Vec<u8> {
        chunks
            .iter()
            .flat_map(|c| match c {
                Chunk::Data(d) => d.to_vec(),
                Chunk::Gap(n) => vec![b'?'; *n as usize],
            })
            .collect()
    }

    #[test]
    fn in_order_data_overrides_out_of_order_pieces_across_wrap() {
        let mut s = Stream::default();
        s.syn(u32::MAX - 2, b"");
        let base = u32::MAX - 1;
        let segs: [(u32, &[u8]); 4] = [
            (base.wrapping_add(4), b"efgh"),
            (base.wrapping_add(2), b"cXYZ"), // starts first: wins over "ef"
            (base, b"ab"),
            (base.wrapping_add(6), b"ghij"),
        ];
        let got = run(&mut s, &segs, 1 << 20);
        assert_eq!(bytes(&got), b"abcXYZghij");
        assert_eq!(s.stats.overlap_conflicts, 1);
        assert_eq!(s.buffered(), 0);
        assert!(s.take_conflict());
        assert!(!s.take_conflict(), "reported once");
    }

    #[test]
    fn the_attack_tail_out_of_order_then_the_whole_line_in_order() {
        // "MAIL FROM:<good>" tail sent ahead, then the line in order with
        // other bytes: Linux keeps the in-order bytes.
        let mut s = Stream::default();
        s.syn(99, b"");
        let got = run(
            &mut s,
            &[(111, b"good>\r\n"), (100, b"MAIL FROM:<evil>\r\n")],
            1 << 20,
        );
        assert_eq!(bytes(&got), b"MAIL FROM:<evil>\r\n");
        assert_eq!(s.stats.overlap_conflicts, 1);
    }

    #[test]
    fn out_of_order_same_start_longer_wins_else_first() {
        let mut s = Stream::default();
        s.syn(0, b"");
        let got = run(
            &mut s,
            &[(3, b"cd"), (3, b"XY"), (3, b"CDE"), (5, b"zz"), (1, b"ab")],
            1 << 20,
        );
        // "XY" same start, not longer: dropped; "CDE" longer: wins; "zz"
        // starts later: loses "E", adds "z".
        assert_eq!(bytes(&got), b"abCDEz");
        assert_eq!(s.stats.overlap_conflicts, 3);
    }

    #[test]
    fn midstream_start_then_older_overlapping_segment() {
        let mut s = Stream::default();
        // First seen: "cd" at 102 (offset 0). Then "abcdef" from 100.
        let got = run(
            &mut s,
            &[(102, b"cd"), (100, b"abcdef"), (96, b"wxyz")],
            1 << 20,
        );
        assert_eq!(bytes(&got), b"cdef");
        assert_eq!((s.stats.overlaps, s.stats.duplicates), (1, 1));
    }

    #[test]
    fn uncaptured_bytes_become_a_gap_but_buffered_data_fills_it() {
        let mut s = Stream::default();
        s.syn(0, b"");
        let mut got = Vec::new();
        let budget = budget(1 << 20);
        let mut rec = |c: Chunk<'_>, _: Mark| {
            got.push(match c {
                Chunk::Data(d) => format!("D{}", String::from_utf8_lossy(d)),
                Chunk::Gap(n) => format!("G{n}"),
            })
        };
        s.segment(seg(8, b"hi"), &budget, &mut rec); // buffered at 7
        let cut = Data {
            uncaptured: 6,
            fin: true,
            ..seg(1, b"abc")
        };
        s.segment(cut, &budget, &mut rec); // 3 captured + 6 cut
        assert_eq!(got, ["Dabc", "G4", "Dhi"]);
        assert_eq!((s.stats.gaps, s.stats.gap_bytes), (1, 4));
        assert_eq!(s.delivered(), 9);
        assert!(s.finished());
    }

    #[test]
    fn limit_turns_a_run_of_holes_into_one_gap() {
        let mut s = Stream::default();
        s.syn(0, b"");
        let got = run(
            &mut s,
            &[(1, b"ab"), (5, b"e"), (7, b"g"), (9, b"ij")],
            piece_cost(1) * 2,
        );
        // "e" and "g" buffered; "ij" does not fit: holes c-d, f, h and the
        // slivers between them → one gap of 6, of which 4 bytes missed.
        assert_eq!(bytes(&got), b"ab??????ij");
        assert_eq!(
            (
                s.stats.gaps,
                s.stats.gap_bytes,
                s.stats.sliver_bytes,
                s.stats.limit_hits
            ),
            (1, 4, 2, 1)
        );
    }

    #[test]
    fn urgent_byte_is_removed_as_linux_does() {
        let mut s = Stream::default();
        s.syn(0, b"");
        // URG with pointer 8 on "MAIL FROX:" → the byte at seq 1+8-1 ('X').
        s.urgent(1 + 8 - 1);
        let got = run(&mut s, &[(1, b"MAIL FRXOM:<a>")], 1 << 20);
        assert_eq!(bytes(&got), b"MAIL FROM:<a>");
        assert_eq!(s.stats.urgent_removed, 1);
    }

    #[test]
    fn syn_data_counts_only_if_acknowledged() {
        let mut out = Vec::new();
        let mut rec = |c: Chunk<'_>, _: Mark| {
            if let Chunk::Data(d) = c {
                out.extend_from_slice(d)
            }
        };
        let mut s = Stream::default();
        s.syn(0, b"EVIL\r\n");
        s.peer_ack(0, 0, &mut rec); // SYN-ACK acks only the SYN
        s.segment(seg(1, b"GOOD\r\n"), &budget(1 << 20), &mut rec);
        assert_eq!(out, b"GOOD\r\n");
        assert_eq!(s.stats.syn_data_ignored, 1);
        out.clear();
        let mut s = Stream::default();
        s.syn(0, b"TFO\r\n");
        s.peer_ack(5, 0, &mut |c, _| {
            if let Chunk::Data(d) = c {
                out.extend_from_slice(d)
            }
        });
        assert_eq!(out, b"TFO\r\n");
    }

    #[test]
    fn piece_cost_covers_the_allocation() {
        assert!(piece_cost(1) >= 32 + 2 * size_of::<(u64, Piece)>());
        assert_eq!(alloc_cost(24), 32);
        assert_eq!(alloc_cost(25), 48);
    }
}
