//! Order across directions: each direction's bytes reach the consumer in an
//! order consistent with the other side's acknowledgements.
//!
//! A sender's segment carries an ACK: the peer's bytes it had received
//! when it sent this data. A server reply that acknowledges the client's
//! command was written after the command arrived, so it is dissected after
//! it, whatever order the capture (multi-queue NICs, merged taps, records
//! from several CPUs) put them in; the same holds for a client command
//! written after a reply. This is what Suricata does by inspecting a
//! direction only up to what the peer acknowledged.
//!
//! [`Order`] holds chunks that arrived before the peer bytes they
//! acknowledge (copying them); chunks with nothing to wait for pass
//! straight through, without a copy. The waiting is bounded by the flow
//! table: after the reordering wait (capture time), the peer's holes
//! before the awaited bytes are given up as gaps, and if the bytes were
//! never seen at all (one-sided capture, lost records, forged ACKs) the
//! held chunks go on in arrival order. A wait that cannot end (each side's
//! first chunk waits on the other's) is broken at once, oldest first.

use std::collections::VecDeque;

use super::stream::{Chunk, Mark};
use crate::Direction;

/// A chunk waiting for the peer.
#[derive(Debug)]
pub struct Held {
    pub data: HeldData,
    pub mark: Mark,
    /// Capture time of the segment that produced it.
    pub ts: u64,
}

/// The bytes (or gap) of a held chunk.
#[derive(Debug)]
pub enum HeldData {
    Data(Vec<u8>),
    Gap(u64),
}

impl Held {
    pub fn chunk(&self) -> Chunk<'_> {
        match &self.data {
            HeldData::Data(d) => Chunk::Data(d),
            HeldData::Gap(n) => Chunk::Gap(*n),
        }
    }
}

/// Cost charged per held chunk on top of its bytes (queue slot and
/// allocation header).
const HELD_OVERHEAD: usize = 64;

/// The ordering state of one flow.
#[derive(Debug, Default)]
pub struct Order {
    /// Chunks of each direction (`[Up, Down]`) waiting, in stream order.
    queue: [VecDeque<Held>; 2],
    /// Stream offset up to which each direction was handed to the consumer
    /// (every chunk before it was delivered).
    handed: [u64; 2],
    /// Heap bytes held in the queues (bytes plus overhead per chunk).
    held: usize,
}

fn di(d: Direction) -> usize {
    match d {
        Direction::Up => 0,
        Direction::Down => 1,
    }
}

fn dir_of(i: usize) -> Direction {
    if i == 0 {
        Direction::Up
    } else {
        Direction::Down
    }
}

impl Order {
    /// Heap bytes holding `chunk` would take.
    pub fn cost(chunk: Chunk<'_>) -> usize {
        match chunk {
            Chunk::Data(b) => b.len() + HELD_OVERHEAD,
            Chunk::Gap(_) => HELD_OVERHEAD,
        }
    }

    /// Heap bytes held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// True if nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue[0].is_empty() && self.queue[1].is_empty()
    }

    /// Stream offset of `d` handed to the consumer.
    pub fn handed(&self, d: Direction) -> u64 {
        self.handed[di(d)]
    }

    /// True if a chunk of `d` with `mark` may go to the consumer now:
    /// nothing of `d` waits before it and the peer bytes it acknowledges
    /// were handed over. The caller then delivers it and calls
    /// [`Order::delivered`]; otherwise it calls [`Order::hold`].
    pub fn may_pass(&self, d: Direction, mark: Mark) -> bool {
        self.queue[di(d)].is_empty() && mark.need <= self.handed[di(d.reverse())]
    }

    /// A chunk of `d` ending at `end` was handed to the consumer.
    pub fn delivered(&mut self, d: Direction, end: u64) {
        let h = &mut self.handed[di(d)];
        *h = (*h).max(end);
    }

    /// Keeps a copy of a chunk of `d` until the peer catches up.
    pub fn hold(&mut self, d: Direction, chunk: Chunk<'_>, mark: Mark, ts: u64) {
        let data = match chunk {
            Chunk::Data(b) => HeldData::Data(b.to_vec()),
            Chunk::Gap(n) => HeldData::Gap(n),
        };
        if let HeldData::Data(b) = &data {
            self.held += b.capacity();
        }
        self.held += HELD_OVERHEAD;
        self.queue[di(d)].push_back(Held { data, mark, ts });
    }

    /// A copy of the bytes `[start, end)` of `d` was sent with `need`: a
    /// retransmission carries a later ACK than the original, so held
    /// chunks among these bytes wait only for the smallest.
    pub fn lower_need(&mut self, d: Direction, start: u64, end: u64, need: u64) {
        let Some(q) = self.queue.get_mut(di(d)) else {
            return;
        };
        let mut from = self.handed[di(d)];
        let mut i = 0;
        while let Some(h) = q.get_mut(i) {
            let to = h.mark.end;
            if from >= end {
                break;
            }
            if to > start && h.mark.need > need {
                // Split off the parts of the chunk the copy does not cover.
                let (a, b) = (from.max(start), to.min(end));
                if let HeldData::Data(bytes) = &mut h.data {
                    let (head, mid) = ((a - from) as usize, (b - from) as usize);
                    if head > 0 || mid < bytes.len() {
                        let old_cap = bytes.capacity();
                        let tail = bytes.split_off(mid.min(bytes.len()));
                        let middle = bytes.split_off(head.min(bytes.len()));
                        let head_bytes = std::mem::take(bytes);
                        let (ts, old) = (h.ts, h.mark.need);
                        let pieces = [(head_bytes, a, old), (middle, b, need), (tail, to, old)];
                        q.remove(i);
                        self.held -= old_cap + HELD_OVERHEAD;
                        let mut j = i;
                        for (data, end, need) in pieces {
                            if !data.is_empty() {
                                self.held += data.capacity() + HELD_OVERHEAD;
                                q.insert(
                                    j,
                                    Held {
                                        data: HeldData::Data(data),
                                        mark: Mark { end, need },
                                        ts,
                                    },
                                );
                                j += 1;
                            }
                        }
                        i = j;
                        from = to;
                        continue;
                    }
                }
                h.mark.need = need;
            }
            from = to;
            i += 1;
        }
    }

    /// The next held chunk whose wait is over, with its direction (the
    /// caller delivers it; `handed` is already updated).
    pub fn pop_ready(&mut self) -> Option<(Direction, Held)> {
        for i in 0..2 {
            let peer = self.handed[1 - i];
            if self.queue[i].front().is_some_and(|h| h.mark.need <= peer) {
                return self.pop(i);
            }
        }
        None
    }

    /// The direction whose first held chunk waits longest, with that
    /// chunk's arrival time and the peer offset it waits for.
    pub fn oldest(&self) -> Option<(Direction, u64, u64)> {
        let heads = [self.queue[0].front(), self.queue[1].front()];
        let pick = match heads {
            [Some(a), Some(b)] => usize::from(b.ts < a.ts),
            [Some(_), None] => 0,
            [None, Some(_)] => 1,
            [None, None] => return None,
        };
        let h = heads[pick]?;
        Some((dir_of(pick), h.ts, h.mark.need))
    }

    /// The first held chunk of `d`: direction, arrival time, awaited offset.
    pub fn oldest_of(&self, d: Direction) -> Option<(Direction, u64, u64)> {
        self.queue[di(d)].front().map(|h| (d, h.ts, h.mark.need))
    }

    /// True if each direction's first held chunk waits on peer bytes that
    /// are themselves held: waiting cannot end it.
    pub fn deadlocked(&self) -> bool {
        (0..2).all(|i| {
            let (mine, theirs) = (&self.queue[i], &self.queue[1 - i]);
            match (mine.front(), theirs.back()) {
                (Some(h), Some(last)) => h.mark.need <= last.mark.end,
                _ => false,
            }
        })
    }

    /// Which side of a deadlock to let go first: the one whose first held
    /// chunk reaches least beyond what the peer handed over (a copy sent
    /// later, with a later ACK, overreaches a little; a genuine answer a lot).
    pub fn deadlock_victim(&self) -> Option<Direction> {
        let over = |i: usize| {
            self.queue[i]
                .front()
                .map(|h| h.mark.need.saturating_sub(self.handed[1 - i]))
        };
        match (over(0), over(1)) {
            (Some(a), Some(b)) => Some(if a <= b {
                Direction::Up
            } else {
                Direction::Down
            }),
            _ => None,
        }
    }

    /// Takes the first held chunk of `d` whatever it waits for (the wait
    /// is over); `handed` is updated.
    pub fn force(&mut self, d: Direction) -> Option<(Direction, Held)> {
        self.pop(di(d))
    }

    /// Everything held, in an order consistent with the waits as far as
    /// possible (ready chunks first, then oldest first): for the flow's end.
    pub fn drain_all(&mut self) -> Vec<(Direction, Held)> {
        let mut v = Vec::new();
        loop {
            if let Some(x) = self.pop_ready() {
                v.push(x);
                continue;
            }
            match self.oldest() {
                Some((d, _, _)) => v.extend(self.force(d)),
                None => break,
            }
        }
        v
    }

    fn pop(&mut self, i: usize) -> Option<(Direction, Held)> {
        let h = self.queue.get_mut(i)?.pop_front()?;
        if let HeldData::Data(b) = &h.data {
            self.held -= b.capacity();
        }
        self.held -= HELD_OVERHEAD;
        let e = &mut self.handed[i];
        *e = (*e).max(h.mark.end);
        Some((dir_of(i), h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Down, Up};

    #[test]
    fn a_reply_waits_for_the_command_it_acknowledges() {
        let mut o = Order::default();
        let reply = Mark { end: 9, need: 6 };
        assert!(!o.may_pass(Down, reply));
        o.hold(Down, Chunk::Data(b"250 ok\r\n\n"), reply, 1);
        assert!(o.pop_ready().is_none());
        let cmd = Mark { end: 6, need: 0 };
        assert!(o.may_pass(Up, cmd));
        o.delivered(Up, cmd.end);
        let (d, h) = o.pop_ready().expect("released");
        assert_eq!((d, h.chunk()), (Down, Chunk::Data(b"250 ok\r\n\n")));
        assert_eq!((o.handed(Down), o.held()), (9, 0));
    }

    #[test]
    fn mutual_waits_are_a_deadlock() {
        let mut o = Order::default();
        o.hold(Up, Chunk::Gap(5), Mark { end: 5, need: 3 }, 2);
        o.hold(Down, Chunk::Gap(3), Mark { end: 3, need: 5 }, 1);
        assert!(o.deadlocked());
        assert_eq!(o.oldest(), Some((Down, 1, 5)));
        assert_eq!(o.drain_all().len(), 2);
        assert!(o.is_empty());
    }
}
