//! Counters of one flow ([`FlowStats`]) and of the whole table ([`TableStats`]).
//!
//! Nothing is dropped silently: every duplicate, overlap, gap, limit hit,
//! eviction and skipped frame increments one of these.

use crate::capture::Skip;
use crate::Direction;

/// Counters of one direction of a flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Segments seen in this direction (with or without payload).
    pub packets: u64,
    /// Payload bytes on the wire (captured + uncaptured), retransmissions included.
    pub bytes: u64,
    /// Holes given up on, and their total length in bytes.
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Segments whose data had all been delivered already.
    pub duplicates: u64,
    /// Segments partly overlapping delivered or buffered data.
    pub overlaps: u64,
    /// Overlaps whose bytes differed from the ones kept (the receiver's
    /// policy decided which; see [`super::stream`]).
    pub overlap_conflicts: u64,
    /// Buffered bytes replaced by overlapping data that won.
    pub overridden_bytes: u64,
    /// Bytes received between holes but given up with them (slivers too
    /// short to parse, inside one gap); not counted in `gap_bytes`.
    pub sliver_bytes: u64,
    /// Largest out-of-order buffer of this direction (real heap bytes).
    pub ooo_peak: usize,
    /// Segments with a bad TCP checksum: the receiver drops them, so do we.
    pub bad_checksum: u64,
    /// Segments without ACK (neither SYN nor RST): the receiver drops them.
    pub no_ack: u64,
    /// Bytes carried in SYNs, and SYNs whose data the receiver did not
    /// acknowledge (no Fast Open): ignored, as the receiver ignored them.
    pub syn_data: u64,
    pub syn_data_ignored: u64,
    /// Urgent bytes removed from the stream (as Linux removes them).
    pub urgent_removed: u64,
    /// Times a buffering limit (per direction or global) forced a gap.
    pub limit_hits: u64,
    /// Segments starting more than a maximal TCP window ahead: ignored.
    pub out_of_window: u64,
    /// RSTs whose sequence number was far from the stream: ignored.
    pub bad_rst: u64,
    /// Bytes of the next connection on the same 5-tuple (its SYN lost),
    /// seen before it was recognised: not this flow's, not delivered, and
    /// not counted as missed (`gap_bytes`).
    pub next_connection_bytes: u64,
}

/// Counters of one flow, given to the consumer when it closes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Client → server.
    pub up: DirStats,
    /// Server → client.
    pub down: DirStats,
    /// A SYN (or SYN-ACK) of this connection was seen.
    pub syn_seen: bool,
    /// The flow was first seen without a SYN: the capture started (or the
    /// table forgot it) mid-session.
    pub midstream: bool,
}

impl FlowStats {
    pub fn dir(&self, d: Direction) -> &DirStats {
        match d {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        }
    }

    /// True if either direction had a gap.
    pub fn has_gaps(&self) -> bool {
        self.up.gaps + self.down.gaps > 0
    }
}

/// Why a flow was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both sides sent FIN and all data was delivered.
    Closed,
    /// A RST was seen.
    Reset,
    /// No packet for the idle timeout.
    Timeout,
    /// Removed to make room under the flow limit (least recently used).
    Evicted,
    /// End of input (`close_all`).
    Shutdown,
    /// Shed by the global memory cap (`--memcap`).
    Memcap,
    /// A new SYN with another initial sequence number reused the 5-tuple:
    /// the old connection is closed, a new flow starts.
    Reused,
}

impl CloseReason {
    /// Stable lowercase name for logs and output.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Closed => "closed",
            CloseReason::Reset => "reset",
            CloseReason::Timeout => "timeout",
            CloseReason::Evicted => "evicted",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Memcap => "memcap",
            CloseReason::Reused => "reused",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of the flow table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Segments given to the table.
    pub segments: u64,
    /// Segments of no known flow that carry no data and no SYN (late ACKs,
    /// FINs and RSTs of closed flows): no flow is created for them.
    pub orphans: u64,
    pub flows_created: u64,
    /// Closes by reason.
    pub closed_fin: u64,
    pub closed_reset: u64,
    pub timed_out: u64,
    pub evicted: u64,
    pub shutdown: u64,
    pub reused: u64,
    /// Flows currently in the table.
    pub active: u64,
    /// Frames skipped before reaching the table, by [`Skip`] reason
    /// (indexed by `Skip::index`); counted by the caller via `count_skip`.
    pub skipped: [u64; Skip::ALL.len()],
    /// Times the global buffer limit forced a gap.
    pub memcap_hits: u64,
    /// Segments of no known flow dropped before tracking because the
    /// receiver drops them too (bad checksum, data without ACK).
    pub rejected: u64,
    /// Times a direction's data waited for the other direction's bytes it
    /// acknowledges, and times the wait ran out (bounded waiting).
    pub order_waits: u64,
    pub order_timeouts: u64,
    /// Chunks passed on in arrival order because holding them for ordering
    /// would have exceeded the buffer limits.
    pub order_overflows: u64,
    /// Longest a chunk was held for ordering before dissection (capture
    /// time, µs): the latency ordering added.
    pub order_wait_max_micros: u64,
    /// Times the global memory cap (`--memcap`) was exceeded, and the flows
    /// it shed.
    pub memcap_exceeded: u64,
    pub memcap_shed: u64,
    /// Heap bytes of the consumer's per-flow state now (see `memcap`).
    pub session_memory: usize,
    /// Bytes buffered out of order now, and the peak.
    pub buffered: usize,
    pub buffered_peak: usize,
}

impl TableStats {
    /// Adds another table's counts (a worker's share of one capture or
    /// link): counters and current sizes add up, the longest wait is the
    /// longest of both, and the buffered peak is the sum of the peaks (an
    /// upper bound of the peak of the sum).
    pub fn merge(&mut self, o: &TableStats) {
        // Every field named: a new counter cannot be forgotten here.
        let TableStats {
            segments,
            orphans,
            flows_created,
            closed_fin,
            closed_reset,
            timed_out,
            evicted,
            shutdown,
            reused,
            active,
            skipped,
            memcap_hits,
            rejected,
            order_waits,
            order_timeouts,
            order_overflows,
            order_wait_max_micros,
            memcap_exceeded,
            memcap_shed,
            session_memory,
            buffered,
            buffered_peak,
        } = o;
        self.segments += *segments;
        self.orphans += *orphans;
        self.flows_created += *flows_created;
        self.closed_fin += *closed_fin;
        self.closed_reset += *closed_reset;
        self.timed_out += *timed_out;
        self.evicted += *evicted;
        self.shutdown += *shutdown;
        self.reused += *reused;
        self.active += *active;
        for (a, b) in self.skipped.iter_mut().zip(skipped.iter()) {
            *a += b;
        }
        self.memcap_hits += *memcap_hits;
        self.rejected += *rejected;
        self.order_waits += *order_waits;
        self.order_timeouts += *order_timeouts;
        self.order_overflows += *order_overflows;
        self.order_wait_max_micros = self.order_wait_max_micros.max(*order_wait_max_micros);
        self.memcap_exceeded += *memcap_exceeded;
        self.memcap_shed += *memcap_shed;
        self.session_memory += *session_memory;
        self.buffered += *buffered;
        self.buffered_peak += *buffered_peak;
    }

    /// Counts a frame the wire parser skipped.
    pub fn count_skip(&mut self, reason: Skip) {
        if let Some(c) = self.skipped.get_mut(reason.index()) {
            *c += 1;
        }
    }

    /// Skipped frames for `reason`.
    pub fn skipped(&self, reason: Skip) -> u64 {
        self.skipped.get(reason.index()).copied().unwrap_or(0)
    }

    /// All closes, whatever the reason.
    pub fn closed(&self) -> u64 {
        self.closed_fin
            + self.closed_reset
            + self.timed_out
            + self.evicted
            + self.shutdown
            + self.reused
            + self.memcap_shed
    }

    pub(crate) fn count_close(&mut self, reason: CloseReason) {
        let c = match reason {
            CloseReason::Closed => &mut self.closed_fin,
            CloseReason::Reset => &mut self.closed_reset,
            CloseReason::Timeout => &mut self.timed_out,
            CloseReason::Evicted => &mut self.evicted,
            CloseReason::Shutdown => &mut self.shutdown,
            CloseReason::Reused => &mut self.reused,
            CloseReason::Memcap => &mut self.memcap_shed,
        };
        *c += 1;
        self.active = self.active.saturating_sub(1);
    }
}
