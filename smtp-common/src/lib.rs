//! Types shared by the kernel programs (`smtp-ebpf`) and userspace (`smtp-user`).
//!
//! Everything here is `#[repr(C)]` and `bytemuck::Pod`, so both sides read the
//! same bytes the same way. The layout is part of the kernel/userspace ABI of
//! one build: both sides are compiled from this crate in the same `cargo build`.
//!
//! * [`FlowKey`]: the normalised key of a TCP connection (both directions map
//!   to the same key), used as the verdict map key and carried in records.
//! * [`RecordHeader`]: the fixed header of every ring-buffer record; the
//!   captured payload bytes follow it directly.
//! * [`Config`]: the single entry of the config map (ports, enforcement).
//! * [`Stats`]: the per-CPU counters, one slot per [`Stat`].
//! * [`IpKey`]: key of the IP blocklist (client addresses whose packets are
//!   dropped while enforcing, with an expiry).
//! * [`Gate`]: the end-of-data gate of one flow (holds back the client
//!   segment that ends a message until userspace releases it).
//! * [`AckSeen`]: the server's latest pure ACK on a gated flow, replayed to
//!   userspace at a hold ([`REC_ACK_REPLAY`]).
//! * [`MAX_VLAN_TAGS`], [`MAX_IPV6_EXT_HEADERS`]: the parser limits both
//!   sides use.
#![cfg_attr(not(test), no_std)]

use bytemuck::{Pod, Zeroable};

/// Name of the ring buffer map carrying [`RecordHeader`] + payload records.
pub const MAP_RECORDS: &str = "RECORDS";
/// Name of the config map (array, one [`Config`]).
pub const MAP_CONFIG: &str = "CONFIG";
/// Name of the verdict map (LRU hash, [`FlowKey`] → [`Verdict`] as `u32`).
pub const MAP_VERDICTS: &str = "VERDICTS";
/// Name of the per-CPU statistics map (per-CPU array, one [`Stats`]).
pub const MAP_STATS: &str = "STATS";
/// Name of the IP blocklist (LRU hash, [`IpKey`] → `u64` expiry in
/// `bpf_ktime_get_ns` time, i.e. CLOCK_MONOTONIC ns; 0 = no expiry).
pub const MAP_BLOCKLIST: &str = "BLOCKLIST";
/// Name of the gate map (LRU hash, [`FlowKey`] → [`Gate`]).
pub const MAP_GATES: &str = "GATES";
/// Names of the programs in the object.
pub const PROG_XDP_INGRESS: &str = "smtp_xdp_ingress";
pub const PROG_TC_INGRESS: &str = "smtp_tc_ingress";
pub const PROG_TC_EGRESS: &str = "smtp_tc_egress";
/// The logger programs (tail-called when kernel logging is on) and the
/// program arrays that hold them.
pub const PROG_LOG_TC: &str = "smtp_log_tc";
pub const PROG_LOG_XDP: &str = "smtp_log_xdp";
pub const MAP_LOG_TC: &str = "LOG_TC";
pub const MAP_LOG_XDP: &str = "LOG_XDP";

/// Number of monitored port slots in [`Config::ports`].
pub const MAX_PORTS: usize = 8;
/// Payload bytes per record at most. A 1460-byte segment fits in one record;
/// bigger (GSO/GRO) segments are split into several records.
pub const CHUNK: usize = 4096;
/// Records per segment at most: `CHUNK * MAX_CHUNKS` = 64 KiB covers any
/// GSO/GRO super-packet of a non-BIG-TCP device. Payload bytes beyond that are
/// reported in [`RecordHeader::uncaptured`] of the last record.
pub const MAX_CHUNKS: usize = 16;
/// Capacity of the verdict map (LRU: the least recently used verdicts are
/// evicted when full).
pub const VERDICT_CAPACITY: u32 = 65536;
/// Capacity of the IP blocklist (LRU: the least recently used entries are
/// evicted when full).
pub const BLOCKLIST_CAPACITY: u32 = 65536;
/// Capacity of the gate map (LRU). One entry per flow with content rules.
pub const GATE_CAPACITY: u32 = 16384;
/// VLAN tags (802.1Q, 802.1ad, 0x9100) the parsers skip at most before the
/// IP header: 2 covers QinQ. Frames with more tags are not parsed: the kernel
/// counts them ([`Stat::VlanLimit`]) and, enforcing, drops them; userspace
/// skips them. On TC ingress the kernel has already moved the outer tag out
/// of the frame, so one more tag is seen there.
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers (hop-by-hop, routing, fragment, destination
/// options, AH) the parsers skip at most before the TCP header. Real traffic
/// carries 0 to 3 (RFC 9098 surveys); 8 leaves room for every header type
/// once plus repetitions. A longer chain is not parsed: the kernel counts it
/// ([`Stat::ExtHeaderLimit`]) and, enforcing, drops it; userspace skips it.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;
/// Default ring buffer size in bytes (must be a power of two, multiple of the
/// page size).
pub const DEFAULT_RINGBUF_SIZE: u32 = 16 * 1024 * 1024;

/// IPv4 / IPv6 in [`FlowKey::family`].
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Normalised key of a TCP connection: the endpoint with the smaller
/// `(port, address bytes)` pair is `lo`, the other `hi`, so both directions
/// of one connection give the same key.
///
/// IPv4 addresses occupy the first 4 bytes of the address fields, the other
/// 12 bytes are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKey {
    /// Address of the `lo` endpoint (network byte order).
    pub lo_addr: [u8; 16],
    /// Address of the `hi` endpoint (network byte order).
    pub hi_addr: [u8; 16],
    /// Port of the `lo` endpoint (host byte order). Invariant: `(lo_port,
    /// lo_addr) <= (hi_port, hi_addr)`.
    pub lo_port: u16,
    /// Port of the `hi` endpoint (host byte order).
    pub hi_port: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Always zero (part of the hash key).
    pub _pad: [u8; 3],
}

impl FlowKey {
    /// Builds the normalised key of a segment from `src` to `dst`; returns
    /// it with `true` when `src` is the `lo` endpoint.
    #[inline(always)]
    pub fn new(
        family: u8,
        src_addr: [u8; 16],
        src_port: u16,
        dst_addr: [u8; 16],
        dst_port: u16,
    ) -> (FlowKey, bool) {
        let src_lo = if src_port != dst_port {
            src_port < dst_port
        } else {
            src_addr <= dst_addr
        };
        let key = if src_lo {
            FlowKey {
                lo_addr: src_addr,
                hi_addr: dst_addr,
                lo_port: src_port,
                hi_port: dst_port,
                family,
                _pad: [0; 3],
            }
        } else {
            FlowKey {
                lo_addr: dst_addr,
                hi_addr: src_addr,
                lo_port: dst_port,
                hi_port: src_port,
                family,
                _pad: [0; 3],
            }
        };
        (key, src_lo)
    }
}

/// Key of the IP blocklist: one address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct IpKey {
    /// Address in network byte order; IPv4 in the first 4 bytes, the other
    /// 12 zero (as in [`FlowKey`]).
    pub addr: [u8; 16],
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Always zero (part of the hash key).
    pub _pad: [u8; 7],
}

impl IpKey {
    #[inline(always)]
    pub fn new(family: u8, addr: [u8; 16]) -> IpKey {
        IpKey {
            addr,
            family,
            _pad: [0; 7],
        }
    }
}

/// [`Gate::flags`]: [`Gate::release_end`] is valid.
pub const GATE_RELEASED: u32 = 1;
/// [`Gate::flags`]: [`Gate::bdat_end`] is valid.
pub const GATE_BDAT: u32 = 2;

/// The end-of-data gate of one flow (value of the gate map).
///
/// While enforcement is on and a flow has an entry, a client→server segment
/// with payload "ends a message" when its payload ends with `\n.\r\n` or
/// is exactly `.\r\n` (however `\r\n.\r\n` was split, as long as the dot
/// line was not), or (with [`GATE_BDAT`]) it carries the byte before
/// `bdat_end` (`seq < bdat_end <= seq + len`). Such a segment is copied to
/// userspace with [`REC_HELD`] and dropped, unless [`GATE_RELEASED`] is set
/// and the message end (`bdat_end` for a BDAT end, else `seq + len`) is at
/// or before `release_end` (sequence compares wrap): then it passes, so
/// TCP's retransmission of the held segment gets through once released. A
/// later message end is held again.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Gate {
    /// Sequence number one past the last byte allowed through (valid with
    /// [`GATE_RELEASED`]).
    pub release_end: u32,
    /// Sequence number one past the last byte of the BDAT LAST chunk (valid
    /// with [`GATE_BDAT`]).
    pub bdat_end: u32,
    /// [`GATE_RELEASED`] | [`GATE_BDAT`].
    pub flags: u32,
    /// Segments held (dropped) by this gate so far, retransmissions included.
    pub held: u32,
}

/// Value of the server-ACK map (LRU hash, [`FlowKey`] → [`AckSeen`]): the
/// latest pure ACK the server sent on a gated flow, replayed at a hold
/// ([`REC_ACK_REPLAY`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct AckSeen {
    /// Sequence number of the ACK segment.
    pub seq: u32,
    /// Acknowledgement number: the server received the client's stream up
    /// to here.
    pub ack: u32,
}

/// Name of the server-ACK map.
pub const MAP_SERVER_ACKS: &str = "SERVER_ACKS";

/// True when sequence number `a` is at or after `b` (RFC 1982 style, wraps).
#[inline(always)]
pub fn seq_ge(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// [`RecordHeader::rec_flags`]: the segment was held by a gate: dropped
/// after this copy (its retransmission comes again) or, with
/// [`Config::gate_mark`], marked for the netfilter queue, where it waits for
/// the monitor's verdict.
pub const REC_HELD: u32 = 1;
/// [`RecordHeader::rec_flags`]: the kernel (or NIC) verified the TCP checksum.
pub const REC_CSUM_GOOD: u32 = 2;
/// [`RecordHeader::rec_flags`]: the TCP checksum is known to be wrong; the
/// receiving stack discards this segment, so the monitor must too.
pub const REC_CSUM_BAD: u32 = 4;

/// [`RecordHeader::rec_flags`]: a payload-less record replaying the latest
/// pure ACK the server sent on this flow (its `seq`, `ack`; `dir` server to
/// client), emitted just before a record with [`REC_HELD`]. Pure ACKs are
/// otherwise not recorded; this one tells reassembly how far the server has
/// received the client's stream, so a hole the monitor never saw (a lost
/// record, a fragment passed with `--unparsed pass`) is declared a gap and
/// the gate does not wait for it forever. `ts_ns` is the hold time.
pub const REC_ACK_REPLAY: u32 = 8;

/// Value of the verdict map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let the flow's packets pass (same as no entry).
    Pass = 0,
    /// Drop the flow's packets in every hook while [`Config::enforce`] is set.
    Drop = 1,
}

/// [`RecordHeader::dir`]: the destination port is monitored.
pub const DIR_CLIENT_TO_SERVER: u8 = 0;
/// [`RecordHeader::dir`]: only the source port is monitored.
pub const DIR_SERVER_TO_CLIENT: u8 = 1;

/// [`RecordHeader::hook`] values.
pub const HOOK_XDP: u8 = 1;
pub const HOOK_TC_INGRESS: u8 = 2;
pub const HOOK_TC_EGRESS: u8 = 3;

/// Fixed header of one ring-buffer record; `captured_len` payload bytes
/// follow it in the same record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct RecordHeader {
    /// Normalised connection key.
    pub key: FlowKey,
    /// Kernel time of capture (`bpf_ktime_get_ns`, CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// TCP sequence number of the segment (of its first payload byte).
    pub seq: u32,
    /// TCP acknowledgement number.
    pub ack: u32,
    /// Total TCP payload length of the segment on the wire.
    pub payload_len: u32,
    /// Offset of this record's bytes in the segment payload.
    /// Invariant: `offset + captured_len + uncaptured <= payload_len`.
    pub offset: u32,
    /// Payload bytes following this header (`<= CHUNK`).
    pub captured_len: u32,
    /// Payload bytes after `offset + captured_len` that no record of this
    /// segment carries (non-zero only on the last record of a segment).
    pub uncaptured: u32,
    /// Interface index the packet was seen on.
    pub ifindex: u32,
    /// TCP flags (low 8 bits of the TCP flags field).
    pub tcp_flags: u8,
    /// [`DIR_CLIENT_TO_SERVER`] or [`DIR_SERVER_TO_CLIENT`].
    pub dir: u8,
    /// 1 when the sender is the key's `lo` endpoint, 0 when it is `hi`.
    pub src_is_lo: u8,
    /// Which program saw the packet ([`HOOK_XDP`], ...).
    pub hook: u8,
    /// [`REC_HELD`], [`REC_CSUM_GOOD`], [`REC_CSUM_BAD`] (bits, or 0).
    pub rec_flags: u32,
    /// TCP urgent pointer of the segment (meaningful when URG is set).
    pub urg_ptr: u16,
    /// Always zero.
    pub _pad: u16,
}

/// Size of [`RecordHeader`] in bytes.
pub const RECORD_HEADER_LEN: usize = core::mem::size_of::<RecordHeader>();
// 88 bytes: a multiple of 8, so payload bytes start 8-aligned in a record.
const _: () = assert!(RECORD_HEADER_LEN == 88);
const _: () = assert!(core::mem::size_of::<IpKey>() == 24);
const _: () = assert!(core::mem::size_of::<Gate>() == 16);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// The single entry of the config map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Config {
    /// Monitored TCP ports (host byte order). Invariant: all 8 slots are
    /// filled; unused slots repeat a used port, so a packet never matches an
    /// empty slot. All zero = nothing monitored (program not configured).
    pub ports: [u16; MAX_PORTS],
    /// Non-zero: drop packets of flows whose verdict is [`Verdict::Drop`],
    /// of blocked client addresses, and segments held by gates.
    pub enforce: u32,
    /// Non-zero: the end-of-data gate is on. A client SYN then creates the
    /// flow's [`Gate`] entry (armed, nothing released), so the gate holds
    /// from the first byte even when userspace is late; userspace removes
    /// the entry of flows no rule applies to.
    pub gate: u32,
    /// Non-zero (`--unparsed pass`): packets the program cannot record
    /// completely (fragments, header chains beyond the limits, unreadable
    /// headers, URG segments) pass while enforcing, as in monitor mode. Zero
    /// (the default): enforcing drops them (fail closed).
    pub unparsed_pass: u32,
    /// Non-zero (with [`Config::gate`] flows): the netfilter-queue gate. On
    /// TC ingress, every client→server segment with payload of a flow with a
    /// [`Gate`] entry gets these bits set in `skb->mark` and passes; the
    /// monitor's netfilter rule queues marked packets to userspace, which
    /// accepts each once the bytes up to its end were inspected (no kernel
    /// hold, no retransmission wait). Other hooks (XDP, TC egress) hold
    /// message ends in the kernel as without it.
    pub gate_mark: u32,
}

impl Config {
    /// Config monitoring `ports` (1 to [`MAX_PORTS`] entries; extra entries
    /// are ignored, an empty list monitors nothing).
    pub fn new(ports: &[u16], enforce: bool) -> Config {
        let mut slots = [0u16; MAX_PORTS];
        if let Some(&first) = ports.first() {
            for (i, slot) in slots.iter_mut().enumerate() {
                *slot = *ports.get(i).unwrap_or(&first);
            }
        }
        Config {
            ports: slots,
            enforce: enforce as u32,
            gate: 0,
            unparsed_pass: 0,
            gate_mark: 0,
        }
    }
}

/// Index of each counter in [`Stats::counters`].
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Packets seen by any hook.
    Packets = 0,
    /// Packets of monitored flows (either port monitored).
    MonitoredPackets = 1,
    /// TCP payload bytes of monitored packets.
    MonitoredBytes = 2,
    /// Records written to the ring buffer.
    RecordsSent = 3,
    /// Records lost because the ring buffer was full.
    RecordsLost = 4,
    /// Payload bytes of lost records plus bytes beyond the record limit.
    BytesUncaptured = 5,
    /// Packets dropped because of a drop verdict.
    DroppedByVerdict = 6,
    /// Packets whose headers could not be read, so whose ports are unknown:
    /// a VLAN or IP header cut short, an impossible IPv4 header of TCP, a
    /// TCP header cut short or impossible. Enforcing, dropped (fail
    /// closed) unless `unparsed_pass`; the receiving stack would discard
    /// them too.
    Unparsed = 7,
    /// Packets dropped because the client address is in the blocklist.
    DroppedByBlocklist = 8,
    /// Message-ending segments held (dropped) by a gate.
    GateHeld = 9,
    /// Message-ending segments a released gate let through.
    GatePassed = 10,
    /// IP fragments of TCP on a monitored port: IPv4 (MF set, offset 0) or
    /// IPv6 first fragments whose ports are monitored, and first fragments
    /// too short to show the ports (any port; RFC 1858's tiny fragment).
    /// Non-first fragments carry no ports and pass: without its first
    /// fragment a datagram is never reassembled (Linux also discards
    /// overlapping fragments, so the ports cannot be rewritten later).
    Fragments = 11,
    /// IPv6 packets whose extension-header chain is longer than
    /// [`MAX_IPV6_EXT_HEADERS`] (ports unknown, so any port).
    ExtHeaderLimit = 12,
    /// Frames with more VLAN tags than [`MAX_VLAN_TAGS`] (any content).
    VlanLimit = 13,
    /// Monitored segments with the URG flag (SMTP never sets it; the
    /// receiver removes the urgent byte from the stream).
    Urgent = 14,
    /// Packets dropped while enforcing because of the five counters above
    /// ([`Stat::Unparsed`], [`Stat::Fragments`], [`Stat::ExtHeaderLimit`],
    /// [`Stat::VlanLimit`], [`Stat::Urgent`]) (fail closed).
    DroppedUnparsed = 15,
    /// Monitored segments whose TCP checksum the kernel knows is good
    /// (NIC-verified, locally generated, or verified by the program).
    ChecksumGood = 16,
    /// Monitored segments with a wrong TCP checksum (recorded with
    /// [`REC_CSUM_BAD`]; enforcing, dropped: the receiver discards them).
    ChecksumBad = 17,
    /// Server pure ACKs replayed to userspace at a gate hold
    /// ([`REC_ACK_REPLAY`]).
    AckReplays = 18,
    /// Client segments of gated flows marked for the netfilter queue
    /// ([`Config::gate_mark`]).
    GateQueued = 19,
}

/// Number of counters.
pub const STAT_COUNT: usize = 20;

/// Per-CPU counters (the single entry of the per-CPU stats map).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Stats {
    /// Indexed by [`Stat`]; monotonic.
    pub counters: [u64; STAT_COUNT],
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all are repr(C) Pod (no padding, any bit pattern valid).
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::RecordHeader {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::Stats {}
    unsafe impl aya::Pod for super::IpKey {}
    unsafe impl aya::Pod for super::Gate {}
    unsafe impl aya::Pod for super::AckSeen {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut x = [0u8; 16];
        x[..4].copy_from_slice(&a);
        x
    }

    #[test]
    fn both_directions_give_one_key() {
        let (c, s) = (v4([198, 18, 0, 1]), v4([198, 18, 0, 2]));
        let (k1, lo1) = FlowKey::new(FAMILY_V4, c, 40000, s, 25);
        let (k2, lo2) = FlowKey::new(FAMILY_V4, s, 25, c, 40000);
        assert_eq!(k1, k2);
        assert_ne!(lo1, lo2);
        assert_eq!((k1.lo_port, k1.hi_port), (25, 40000));
        assert_eq!(k1.lo_addr, s);
    }

    #[test]
    fn equal_ports_ordered_by_address() {
        let (a, b) = (v4([198, 18, 0, 1]), v4([198, 18, 0, 2]));
        let (k1, lo1) = FlowKey::new(FAMILY_V4, b, 25, a, 25);
        let (k2, _) = FlowKey::new(FAMILY_V4, a, 25, b, 25);
        assert_eq!(k1, k2);
        assert!(!lo1);
        assert_eq!(k1.lo_addr, a);
    }

    #[test]
    fn seq_compare_wraps() {
        assert!(seq_ge(10, 10));
        assert!(seq_ge(11, 10));
        assert!(!seq_ge(9, 10));
        assert!(seq_ge(5, u32::MAX - 5));
        assert!(!seq_ge(u32::MAX - 5, 5));
    }

    #[test]
    fn config_fills_every_slot() {
        let c = Config::new(&[25, 587], true);
        assert_eq!(c.ports, [25, 587, 25, 25, 25, 25, 25, 25]);
        assert_eq!(c.enforce, 1);
        let c = Config::new(&[], false);
        assert_eq!(c.ports, [0; MAX_PORTS]);
        let many: [u16; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(Config::new(&many, false).ports, [1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
