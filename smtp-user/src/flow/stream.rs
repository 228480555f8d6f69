//! One direction of a TCP connection: sequence tracking and reassembly.
//!
//! Bytes are addressed by 64-bit offsets relative to the first byte of the
//! direction (ISN+1, or the first sequence number seen when the capture
//! started mid-session); a 32-bit sequence number is mapped to the offset
//! nearest the delivery point (`±2^31`), so wrap-around is invisible.
//!
//! Policy (Suricata's Linux default, "first data wins"): bytes already
//! delivered or buffered are never replaced; later copies are dropped,
//! counted as duplicates/overlaps, and counted as conflicts when they differ
//! from buffered bytes (delivered bytes are not kept, so conflicts with them
//! cannot be seen). In-order data goes to the consumer straight from the
//! packet; only out-of-order data is copied into a buffer.
//!
//! A hole is given up on, and delivered as a gap of its exact length, when
//! (a) buffering the next out-of-order segment would exceed the direction's
//! or the table's limit, (b) the peer acknowledged data beyond the hole (the
//! receiver had it; the capture lost it), or (c) the flow ends.

use std::collections::BTreeMap;

use super::stats::DirStats;

/// Bookkeeping cost charged per buffered piece on top of its bytes, so that
/// many tiny out-of-order segments cannot exceed the memory bound.
pub const PIECE_OVERHEAD: usize = 64;

/// Farthest a segment may start beyond the delivery point: the largest
/// TCP window (2^30 with window scaling).
pub const MAX_AHEAD: u64 = 1 << 30;

/// How far from the highest byte seen a RST's sequence number may be and
/// still be believed (a receiver accepts RSTs within its window).
pub const RST_WINDOW: i64 = 1 << 24;

/// What reassembly hands to the consumer, in stream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// This many bytes of the stream will never be seen.
    Gap(u64),
}

/// Memory the stream may still take for buffering, and where to count a
/// refusal.
#[derive(Debug)]
pub struct Budget {
    /// Limit on this direction's buffered bytes (with overhead).
    pub per_direction: usize,
    /// Bytes the whole table can still buffer.
    pub global_room: usize,
    /// Incremented when the global room (not the per-direction limit) refused.
    pub global_hits: u64,
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
    ooo: BTreeMap<u64, Vec<u8>>,
    /// Bytes in `ooo` plus `PIECE_OVERHEAD` per piece.
    buffered: usize,
    /// Highest offset seen (end of data or FIN position).
    max_end: u64,
    /// Offset of the FIN, once seen (first FIN wins).
    fin: Option<u64>,
    /// The consumer asked for no more data: segments are only counted.
    bypass: bool,
    /// Counters of this direction.
    pub stats: DirStats,
}

impl Stream {
    /// Bytes currently buffered (with per-piece overhead).
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Offset of the next byte to deliver.
    pub fn delivered(&self) -> u64 {
        self.next
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

    /// A SYN with sequence number `isn`: data starts at `isn + 1`.
    pub fn syn(&mut self, isn: u32) {
        if !self.started {
            self.base = isn.wrapping_add(1);
            self.started = true;
        }
    }

    /// Offset of sequence number `seq`, relative to the delivery point.
    fn offset(&self, seq: u32) -> i64 {
        let next_seq = self.base.wrapping_add(self.next as u32);
        self.next as i64 + i64::from(seq.wrapping_sub(next_seq) as i32)
    }

    /// A segment of this direction: `payload` at `seq`, followed by
    /// `uncaptured` bytes the capture missed, then a FIN if `fin`.
    pub fn segment(
        &mut self,
        seq: u32,
        payload: &[u8],
        uncaptured: u32,
        fin: bool,
        budget: &mut Budget,
        out: &mut impl FnMut(Chunk<'_>),
    ) {
        if !self.started {
            self.base = seq;
            self.started = true;
        }
        let start = self.offset(seq);
        let wire_len = payload.len() as u64 + u64::from(uncaptured);
        if start > (self.next + MAX_AHEAD) as i64 {
            // Beyond any TCP window: forged or corrupt. Accepting it would
            // let one packet push the stream past real data.
            self.stats.out_of_window += 1;
            return;
        }
        let (mut payload, mut uncaptured) = (payload, uncaptured);
        let start = if start < 0 {
            // Begins before the first byte of a mid-session capture (or more
            // than 2^31 back): only a part beyond offset 0 is new.
            let end = start + wire_len as i64;
            if end < 0 || (end == 0 && !fin) {
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
        // A bare ACK/RST after a FIN sits at FIN+1: only data and FINs
        // say how far the stream goes.
        if wire_len > 0 || fin {
            self.max_end = self.max_end.max(end);
        }
        if fin && self.fin.is_none() {
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
            let cost = payload.len() + PIECE_OVERHEAD;
            let over_dir = self.buffered + cost > budget.per_direction;
            let over_global = cost > budget.global_room;
            if !(over_dir || over_global) {
                self.insert(start, payload);
                return;
            }
            // No room to wait for the hole: give it up.
            self.stats.limit_hits += 1;
            if over_global && !over_dir {
                budget.global_hits += 1;
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
        self.in_order(payload, out);
        if uncaptured > 0 {
            let target = self.next + u64::from(uncaptured);
            self.skip_to(target, out);
        }
        self.drain(out);
    }

    /// Delivers `data`, which starts at `next`; buffered pieces inside its
    /// range win over it (first data wins).
    fn in_order(&mut self, mut data: &[u8], out: &mut impl FnMut(Chunk<'_>)) {
        while !data.is_empty() {
            let first = self.ooo.first_key_value().map(|(&k, _)| k);
            match first {
                Some(k) if k < self.next + data.len() as u64 => {
                    let head = (k - self.next) as usize;
                    if head > 0 {
                        out(Chunk::Data(data.get(..head).unwrap_or_default()));
                        self.next = k;
                    }
                    let Some(piece) = self.ooo.remove(&k) else {
                        break;
                    };
                    self.buffered -= piece.len() + PIECE_OVERHEAD;
                    let rest = data.get(head..).unwrap_or_default();
                    let overlap = piece.len().min(rest.len());
                    self.stats.overlaps += 1;
                    if rest.get(..overlap) != piece.get(..overlap) {
                        self.stats.overlap_conflicts += 1;
                    }
                    out(Chunk::Data(&piece));
                    self.next += piece.len() as u64;
                    data = rest.get(overlap..).unwrap_or_default();
                }
                _ => {
                    out(Chunk::Data(data));
                    self.next += data.len() as u64;
                    data = &[];
                }
            }
        }
    }

    /// Delivers buffered pieces contiguous with `next`.
    fn drain(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        while let Some(entry) = self.ooo.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            let (k, piece) = entry.remove_entry();
            self.buffered -= piece.len() + PIECE_OVERHEAD;
            // Keys are > next when stored; == next now. Trim defensively.
            let skip = (self.next - k) as usize;
            if let Some(rest) = piece.get(skip..) {
                if !rest.is_empty() {
                    out(Chunk::Data(rest));
                    self.next += rest.len() as u64;
                }
            }
        }
    }

    /// Gives up on everything missing before `target`: delivers buffered
    /// pieces that start before it, and gaps for the holes between them.
    fn skip_to(&mut self, target: u64, out: &mut impl FnMut(Chunk<'_>)) {
        while self.next < target {
            match self.ooo.first_key_value().map(|(&k, _)| k) {
                Some(k) if k < target => {
                    if k > self.next {
                        self.gap(k - self.next, out);
                    }
                    self.drain(out);
                }
                _ => {
                    self.gap(target - self.next, out);
                }
            }
        }
        self.drain(out);
    }

    fn gap(&mut self, len: u64, out: &mut impl FnMut(Chunk<'_>)) {
        self.stats.gaps += 1;
        self.stats.gap_bytes += len;
        out(Chunk::Gap(len));
        self.next += len;
    }

    /// Buffers out-of-order `data` at `start` (> `next`), keeping bytes
    /// already buffered (first data wins).
    fn insert(&mut self, start: u64, data: &[u8]) {
        let end = start + data.len() as u64;
        // Existing pieces overlapping [start, end): the one starting before
        // `start`, and those starting inside.
        let mut overlapping: Vec<(u64, u64)> = Vec::new();
        if let Some((&k, v)) = self.ooo.range(..start).next_back() {
            if k + v.len() as u64 > start {
                overlapping.push((k, k + v.len() as u64));
            }
        }
        overlapping.extend(
            self.ooo
                .range(start..end)
                .map(|(&k, v)| (k, k + v.len() as u64)),
        );
        let mut pos = start;
        let slice = |a: u64, b: u64| {
            data.get((a - start) as usize..(b - start) as usize)
                .unwrap_or_default()
        };
        for &(k, kend) in &overlapping {
            if pos < k {
                self.store(pos, slice(pos, k.min(end)));
            }
            let (a, b) = (pos.max(k), end.min(kend));
            if a < b {
                let old = self
                    .ooo
                    .get(&k)
                    .and_then(|v| v.get((a - k) as usize..(b - k) as usize));
                if old != Some(slice(a, b)) {
                    self.stats.overlap_conflicts += 1;
                }
            }
            pos = pos.max(kend);
        }
        if overlapping.is_empty() {
            self.store(start, data);
        } else {
            self.stats.overlaps += 1;
            if pos < end {
                self.store(pos, slice(pos, end));
            }
        }
        self.stats.ooo_peak = self.stats.ooo_peak.max(self.buffered);
    }

    fn store(&mut self, at: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.buffered += bytes.len() + PIECE_OVERHEAD;
        self.ooo.insert(at, bytes.to_vec());
    }

    /// The peer acknowledged up to `ack`: data before it reached the
    /// receiver, so holes before it (up to what we have seen) are gaps.
    pub fn peer_ack(&mut self, ack: u32, out: &mut impl FnMut(Chunk<'_>)) {
        if !self.started || self.bypass {
            return;
        }
        let a = self.offset(ack);
        if a <= self.next as i64 {
            return;
        }
        let target = (a as u64).min(self.max_end);
        if target > self.next {
            self.skip_to(target, out);
        }
    }

    /// End of the flow: everything seen is delivered, holes become gaps.
    pub fn flush(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
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

    fn run(stream: &mut Stream, segs: &[(u32, &[u8])], per_dir: usize) -> Vec<Chunk<'static>> {
        let mut got = Vec::new();
        let mut budget = Budget {
            per_direction: per_dir,
            global_room: usize::MAX,
            global_hits: 0,
        };
        for &(seq, p) in segs {
            stream.segment(seq, p, 0, false, &mut budget, &mut |c| {
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
    fn reorder_overlap_first_wins_across_wrap() {
        let mut s = Stream::default();
        s.syn(u32::MAX - 2);
        let base = u32::MAX - 1;
        let segs: [(u32, &[u8]); 4] = [
            (base.wrapping_add(4), b"efgh"),
            (base.wrapping_add(2), b"cXYZ"), // conflicts with buffered "ef"
            (base, b"ab"),
            (base.wrapping_add(6), b"ghij"),
        ];
        let got = run(&mut s, &segs, 1 << 20);
        assert_eq!(bytes(&got), b"abcXefghij");
        assert_eq!(s.stats.overlap_conflicts, 1);
        assert_eq!(s.buffered(), 0);
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
    fn uncaptured_bytes_become_a_gap_but_buffered_data_wins() {
        let mut s = Stream::default();
        s.syn(0);
        let mut got = Vec::new();
        let mut budget = Budget {
            per_direction: 1 << 20,
            global_room: usize::MAX,
            global_hits: 0,
        };
        let mut rec = |c: Chunk<'_>| {
            got.push(match c {
                Chunk::Data(d) => format!("D{}", String::from_utf8_lossy(d)),
                Chunk::Gap(n) => format!("G{n}"),
            })
        };
        s.segment(8, b"hi", 0, false, &mut budget, &mut rec); // buffered at 7
        s.segment(1, b"abc", 6, true, &mut budget, &mut rec); // 3 captured + 6 cut
        assert_eq!(got, ["Dabc", "G4", "Dhi"]);
        assert_eq!((s.stats.gaps, s.stats.gap_bytes), (1, 4));
        assert_eq!(s.delivered(), 9);
        assert!(s.finished());
    }

    #[test]
    fn limit_turns_hole_into_gap() {
        let mut s = Stream::default();
        s.syn(0);
        let got = run(
            &mut s,
            &[(1, b"ab"), (5, b"ef"), (9, b"ij")],
            2 + PIECE_OVERHEAD,
        );
        // "ef" buffered; "ij" does not fit: hole "cd" → gap 2, "ef", hole "gh" → gap 2, "ij".
        assert_eq!(bytes(&got), b"ab??ef??ij");
        assert_eq!(
            (s.stats.gaps, s.stats.gap_bytes, s.stats.limit_hits),
            (2, 4, 1)
        );
    }
}
