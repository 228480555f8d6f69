//! Flow table and TCP reassembly.
//!
//! [`FlowTable`] takes [`Segment`](crate::capture::Segment)s in capture
//! order, groups them into connections keyed by the normalised 5-tuple,
//! reassembles each direction as the receiving Linux stack does
//! ([`stream`]), orders the two directions by their acknowledgements
//! ([`order`]) and hands ordered bytes and gaps to a [`FlowHandler`]. It
//! knows nothing about the application protocol.
//!
//! Who is the client: the sender of a SYN without ACK; for a connection
//! already open when the capture started, the side not on a monitored port
//! (if both or neither are monitored, the side with the higher port).
//!
//! Lifecycle: a flow is created by a SYN or by a segment carrying data (bare
//! ACK/FIN/RST of an unknown flow are counted as orphans); it is closed when
//! both sides' FINs are reached with all data delivered, on RST, after the
//! idle timeout (`expire`), when evicted as least recently used under the
//! flow limit, when shed by the memory cap, or at `close_all`. Closing
//! flushes buffered and held data, declaring holes as gaps.
//!
//! # Examples
//!
//! Reassemble a generated capture with the recording handler:
//!
//! ```
//! use smtp_user::capture::synth::{render, smtp_script, Conversation, RenderOptions};
//! use smtp_user::capture::wire::linktype;
//! use smtp_user::flow::{CloseReason, FlowConfig, FlowTable, Recorder};
//! use smtp_user::Direction;
//!
//! let conv = Conversation::new(smtp_script(1000));
//! let frames = render(&conv, &conv.packets(), RenderOptions::default());
//! let mut table = FlowTable::new(FlowConfig::default(), Recorder::default());
//! for (ts, frame) in &frames {
//!     table.frame(linktype::ETHERNET, *ts, frame).expect("a TCP segment");
//!     table.expire(*ts); // replay: capture time drives the idle timeout
//! }
//! table.close_all();
//! let flow = &table.handler().flows[0];
//! assert_eq!(flow.up.data(), conv.stream(Direction::Up));
//! assert_eq!(flow.reason(), Some(CloseReason::Closed));
//! ```

pub mod key;
pub mod order;
pub mod recorder;
pub mod stats;
pub mod stream;
pub mod table;

use std::net::SocketAddr;

pub use key::FlowKey;
pub use order::Order;
pub use recorder::Recorder;
pub use stats::{CloseReason, DirStats, FlowStats, TableStats};
pub use table::FlowTable;

use crate::Direction;

/// What the consumer knows about a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowInfo {
    /// Stable id (see [`FlowKey::flow_id`]): same input, same id.
    pub flow_id: u64,
    /// Initiator of the connection (see the module doc).
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Capture time of the first and of the latest segment, microseconds.
    pub first_ts: u64,
    pub last_ts: u64,
    /// The flow was first seen without its SYN: the capture (or the
    /// monitor) started mid-session, so the application protocol may be
    /// joined in the middle of an exchange.
    pub midstream: bool,
    /// The segment being processed was held back by the kernel's
    /// end-of-data gate ([`crate::capture::Segment::held`]).
    pub held: bool,
}

/// What reassembly reports about a flow beyond its bytes and gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowAnomaly {
    /// Overlapping segments of this direction carried different bytes: the
    /// receiver's policy chose (see [`stream`]); reported once per flow
    /// and direction.
    OverlapConflict,
    /// The global memory cap (`--memcap`) shed this flow: its buffered
    /// data was given up as gaps and it is closed.
    Memcap,
}

/// Consumer of reassembled flows.
pub trait FlowHandler {
    /// Per-flow consumer state.
    type Session;

    /// A flow was created.
    fn open(&mut self, flow: &FlowInfo) -> Self::Session;

    /// In-order bytes of direction `dir`, captured at `ts_micros`.
    fn data(
        &mut self,
        s: &mut Self::Session,
        flow: &FlowInfo,
        dir: Direction,
        ts_micros: u64,
        bytes: &[u8],
    );

    /// `len` bytes of direction `dir` are missing from the stream here.
    fn gap(
        &mut self,
        s: &mut Self::Session,
        flow: &FlowInfo,
        dir: Direction,
        ts_micros: u64,
        len: u64,
    );

    /// Reassembly noticed `what` in direction `dir`.
    fn anomaly(
        &mut self,
        _s: &mut Self::Session,
        _flow: &FlowInfo,
        _dir: Direction,
        _what: FlowAnomaly,
    ) {
    }

    /// Heap bytes the consumer holds for this flow (counted against the
    /// table's global memory cap).
    fn memory(&self, _s: &Self::Session) -> usize {
        0
    }

    /// The flow is gone; everything seen was delivered before this call.
    fn close(&mut self, s: Self::Session, flow: &FlowInfo, stats: &FlowStats, reason: CloseReason);

    /// Called once the segment's bytes and gaps were delivered, with the
    /// sequence number of the next byte to deliver in each direction
    /// (`[Up, Down]`; `None` while unknown). Live enforcement uses it to
    /// open the end-of-data gate and to aim resets.
    fn after_segment(
        &mut self,
        _s: &mut Self::Session,
        _flow: &FlowInfo,
        _next_seq: [Option<u32>; 2],
    ) {
    }

    /// Asked after each segment: `false` stops reassembly of `dir` for
    /// good (e.g. after STARTTLS): its buffer is freed and its segments
    /// are only counted.
    fn wants_data(&mut self, _s: &Self::Session, _dir: Direction) -> bool {
        true
    }
}

/// Flow table limits and behaviour.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// Server ports, used to tell client from server mid-session.
    pub monitored_ports: Vec<u16>,
    /// A flow with no segment for this long is closed by `expire`.
    pub idle_timeout_micros: u64,
    /// Most flows tracked at once; beyond, the least recently active is evicted.
    pub max_flows: usize,
    /// Most heap bytes of out-of-order data buffered per direction of a
    /// flow (the real allocation: bytes, allocator and tree overhead).
    pub max_buffer_per_direction: usize,
    /// Most heap bytes of out-of-order data buffered across all flows.
    pub max_buffer_total: usize,
    /// Most heap bytes for reassembly (buffered and held data) plus the
    /// consumer's per-flow state ([`FlowHandler::memory`]) across all flows;
    /// beyond, the largest flows are shed (reported, then closed) until
    /// 90 % of it is used. 0: no cap.
    pub memcap: usize,
    /// Longest a direction's bytes wait (capture time) for the peer bytes
    /// they acknowledge, and a hole the receiver acknowledged for its
    /// late copy, before going on without them. 0: arrival order.
    pub reorder_wait_micros: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            monitored_ports: vec![25],
            idle_timeout_micros: 300 * 1_000_000,
            max_flows: 65_536,
            max_buffer_per_direction: 1 << 20,
            max_buffer_total: 256 << 20,
            reorder_wait_micros: 100_000,
            memcap: 1 << 30,
        }
    }
}
