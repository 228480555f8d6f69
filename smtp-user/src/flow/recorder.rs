//! [`Recorder`]: a [`FlowHandler`] that keeps everything it is given.
//!
//! For tests (here and in other modules) and debugging tools: each flow's
//! two reassembled streams as data pieces and gaps, its close reason and
//! statistics. Memory grows with the input; not for production.

use super::{CloseReason, FlowHandler, FlowInfo, FlowStats};
use crate::Direction;

/// A piece of a reassembled stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Data(Vec<u8>),
    Gap(u64),
}

/// One direction as delivered: adjacent data pieces are merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedStream {
    pub pieces: Vec<Piece>,
}

impl RecordedStream {
    /// The data bytes, gaps left out.
    pub fn data(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for p in &self.pieces {
            if let Piece::Data(d) = p {
                v.extend_from_slice(d);
            }
        }
        v
    }

    /// The gaps as (stream offset, length).
    pub fn gaps(&self) -> Vec<(u64, u64)> {
        let mut at = 0;
        let mut v = Vec::new();
        for p in &self.pieces {
            match p {
                Piece::Data(d) => at += d.len() as u64,
                Piece::Gap(n) => {
                    v.push((at, *n));
                    at += n;
                }
            }
        }
        v
    }

    /// Total length, data plus gaps.
    pub fn len(&self) -> u64 {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Data(d) => d.len() as u64,
                Piece::Gap(n) => *n,
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_data(&mut self, bytes: &[u8]) {
        if let Some(Piece::Data(d)) = self.pieces.last_mut() {
            d.extend_from_slice(bytes);
        } else {
            self.pieces.push(Piece::Data(bytes.to_vec()));
        }
    }
}

/// Everything recorded about one flow.
#[derive(Debug, Clone)]
pub struct RecordedFlow {
    /// As given to `open` (timestamps of the latest segment are in `closed_info`).
    pub info: FlowInfo,
    pub up: RecordedStream,
    pub down: RecordedStream,
    /// Set by `close`.
    pub closed: Option<(CloseReason, FlowStats, FlowInfo)>,
}

impl RecordedFlow {
    pub fn stream(&self, d: Direction) -> &RecordedStream {
        match d {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        }
    }

    pub fn reason(&self) -> Option<CloseReason> {
        self.closed.as_ref().map(|c| c.0)
    }

    pub fn stats(&self) -> Option<&FlowStats> {
        self.closed.as_ref().map(|c| &c.1)
    }
}

/// Records all flows in creation order; the session is the flow's index.
#[derive(Debug, Default)]
pub struct Recorder {
    pub flows: Vec<RecordedFlow>,
    /// `(dir, n)`: `wants_data` answers no for `dir` of every flow once
    /// `n` bytes (data + gaps) of it were delivered (tests of bypass).
    pub stop_after: Option<(Direction, u64)>,
}

impl FlowHandler for Recorder {
    type Session = usize;

    fn open(&mut self, flow: &FlowInfo) -> usize {
        self.flows.push(RecordedFlow {
            info: *flow,
            up: RecordedStream::default(),
            down: RecordedStream::default(),
            closed: None,
        });
        self.flows.len() - 1
    }

    fn data(&mut self, s: &mut usize, _flow: &FlowInfo, dir: Direction, _ts: u64, bytes: &[u8]) {
        if let Some(f) = self.flows.get_mut(*s) {
            match dir {
                Direction::Up => f.up.push_data(bytes),
                Direction::Down => f.down.push_data(bytes),
            }
        }
    }

    fn gap(&mut self, s: &mut usize, _flow: &FlowInfo, dir: Direction, _ts: u64, len: u64) {
        if let Some(f) = self.flows.get_mut(*s) {
            match dir {
                Direction::Up => f.up.pieces.push(Piece::Gap(len)),
                Direction::Down => f.down.pieces.push(Piece::Gap(len)),
            }
        }
    }

    fn close(&mut self, s: usize, flow: &FlowInfo, stats: &FlowStats, reason: CloseReason) {
        if let Some(f) = self.flows.get_mut(s) {
            f.closed = Some((reason, *stats, *flow));
        }
    }

    fn wants_data(&mut self, s: &usize, dir: Direction) -> bool {
        match (self.stop_after, self.flows.get(*s)) {
            (Some((d, n)), Some(f)) if d == dir => f.stream(dir).len() < n,
            _ => true,
        }
    }
}
