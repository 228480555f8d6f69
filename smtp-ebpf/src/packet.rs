//! The per-packet decision shared by all hooks: monitored or not, blocklist,
//! verdict, gate, copy to the ring buffer, counters.

use aya_ebpf::{
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    },
    programs::{TcContext, XdpContext},
    EbpfContext,
};
use core::ffi::c_void;
use smtp_common::{
    seq_ge, FlowKey, Gate, IpKey, RecordHeader, Stat, Stats, CHUNK, DIR_CLIENT_TO_SERVER,
    DIR_SERVER_TO_CLIENT, GATE_BDAT, GATE_RELEASED, HOOK_TC_INGRESS, MAX_CHUNKS, MAX_PORTS, RECORD_HEADER_LEN,
    REC_HELD,
};

use crate::{
    maps::{BLOCKLIST, CONFIG, GATES, RECORDS, SCRATCH, STATS, VERDICTS},
    parse,
};

/// TCP flag bits.
const TCP_RST: u8 = 0x04;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
/// `bpf_map_update_elem` flag: only create, never overwrite.
const BPF_NOEXIST: u64 = 1;

pub enum Action {
    Pass,
    Drop,
}

/// What the shared body needs from a program context.
pub trait Packet {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// Length of the whole packet (linear + paged).
    fn len(&self) -> usize;
    fn ifindex(&self) -> u32;
    /// Copies `len` bytes at `off` (from the frame start) to `dst`.
    fn load(&self, off: u32, dst: *mut c_void, len: u32) -> i64;
    /// Makes the first `len` bytes linear (TC only); false if impossible.
    fn pull(&self, _len: u32) -> bool {
        false
    }
    /// Sets `bits` in the packet's mark (TC only); false if impossible.
    fn set_mark_bits(&self, _bits: u32) -> bool {
        false
    }
}

pub struct XdpCtx<'a>(pub &'a XdpContext);
pub struct SkbCtx<'a>(pub &'a TcContext);

impl Packet for XdpCtx<'_> {
    #[inline(always)]
    fn data(&self) -> usize {
        self.0.data()
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        self.0.data_end()
    }
    #[inline(always)]
    fn len(&self) -> usize {
        unsafe { bpf_xdp_get_buff_len(self.0.as_ptr() as *mut _) as usize }
    }
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.0.ingress_ifindex() as u32
    }
    #[inline(always)]
    fn load(&self, off: u32, dst: *mut c_void, len: u32) -> i64 {
        unsafe { bpf_xdp_load_bytes(self.0.as_ptr() as *mut _, off, dst, len) }
    }
}

impl Packet for SkbCtx<'_> {
    #[inline(always)]
    fn data(&self) -> usize {
        self.0.data()
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        self.0.data_end()
    }
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len() as usize
    }
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        unsafe { (*self.0.skb.skb).ifindex }
    }
    #[inline(always)]
    fn load(&self, off: u32, dst: *mut c_void, len: u32) -> i64 {
        unsafe { bpf_skb_load_bytes(self.0.as_ptr() as *const _, off, dst, len) }
    }
    #[inline(always)]
    fn pull(&self, len: u32) -> bool {
        self.0.pull_data(len).is_ok()
    }
    #[inline(always)]
    fn set_mark_bits(&self, bits: u32) -> bool {
        let old = unsafe { (*self.0.skb.skb).mark };
        self.0.set_mark(old | bits);
        true
    }
}

#[inline(always)]
fn stats() -> Option<&'static mut Stats> {
    STATS.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(always)]
fn bump(s: &mut Stats, which: Stat, by: u64) {
    s.counters[which as usize] += by;
}

#[inline(always)]
pub fn handle<P: Packet>(p: &P, hook: u8) -> Action {
    let Some(st) = stats() else {
        return Action::Pass;
    };
    bump(st, Stat::Packets, 1);
    let l4 = match parse::find_tcp(p) {
        Some(l4) => l4,
        None => {
            // Headers may sit beyond the linear part of an skb: pull once.
            let want = core::cmp::min(p.len(), 128) as u32;
            if p.data_end() - p.data() >= want as usize || !p.pull(want) {
                return Action::Pass;
            }
            match parse::find_tcp(p) {
                Some(l4) => l4,
                None => return Action::Pass,
            }
        }
    };
    let Some((sport, dport)) = parse::ports(p.data(), p.data_end(), &l4) else {
        return Action::Pass;
    };
    let Some(cfg) = CONFIG.get(0) else {
        return Action::Pass;
    };
    let mut dst_mon = false;
    let mut src_mon = false;
    for i in 0..MAX_PORTS {
        let port = cfg.ports[i];
        dst_mon |= port == dport;
        src_mon |= port == sport;
    }
    if !(dst_mon || src_mon) {
        return Action::Pass;
    }
    let gate = GateMode {
        arm_at_syn: cfg.gate != 0,
        mark: if hook == HOOK_TC_INGRESS {
            cfg.gate_mark
        } else {
            0
        },
    };
    monitored(p, hook, &l4, dst_mon, cfg.enforce != 0, gate, st)
}

/// How gates work for this packet.
#[derive(Clone, Copy)]
struct GateMode {
    /// A client SYN arms its flow's gate ([`smtp_common::Config::gate`]).
    arm_at_syn: bool,
    /// Non-zero: gated client segments are marked with these bits for the
    /// netfilter queue instead of being held here (TC ingress only).
    mark: u32,
}

#[inline(always)]
fn monitored<P: Packet>(
    p: &P,
    hook: u8,
    l4: &parse::L4,
    dst_mon: bool,
    enforce: bool,
    gate_mode: GateMode,
    st: &mut Stats,
) -> Action {
    bump(st, Stat::MonitoredPackets, 1);
    let (data, end) = (p.data(), p.data_end());
    let (Some(tcp), Some((src, dst))) = (parse::tcp(data, end, l4), parse::addrs(data, end, l4))
    else {
        bump(st, Stat::Unparsed, 1);
        return Action::Pass;
    };
    let (key, src_is_lo) = FlowKey::new(l4.family, src, tcp.sport, dst, tcp.dport);
    let pkt_len = p.len();
    let payload_off = l4.l4_off + tcp.doff;
    let ip_end = if l4.ip_end == 0 || l4.ip_end > pkt_len {
        pkt_len
    } else {
        l4.ip_end
    };
    let payload_len = ip_end.saturating_sub(payload_off) as u32;
    let mut rec_flags = 0;
    let mut queued = false;
    if enforce {
        // A payload-less RST always passes: resets sent by the monitor (or
        // by the peers) must reach both ends of a stopped connection.
        let bare_rst = payload_len == 0 && tcp.flags & TCP_RST != 0;
        let client = if dst_mon { src } else { dst };
        if !bare_rst && blocked(l4.family, client) {
            bump(st, Stat::DroppedByBlocklist, 1);
            return Action::Drop;
        }
        if !bare_rst {
            if let Some(v) = unsafe { VERDICTS.get(key) } {
                if *v == smtp_common::Verdict::Drop as u32 {
                    bump(st, Stat::DroppedByVerdict, 1);
                    return Action::Drop;
                }
            }
        }
        // The gate on: a client's SYN arms its flow's gate right here, so
        // no message end can pass before userspace has seen the flow.
        if gate_mode.arm_at_syn && dst_mon && tcp.flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
            let _ = GATES.insert(&key, &Gate::default(), BPF_NOEXIST);
        }
        // The queue gate: every client segment with payload of a gated flow
        // goes through the monitor's netfilter queue, wherever a message
        // end sits in it; userspace accepts it once inspected.
        queued = dst_mon
            && payload_len > 0
            && gate_mode.mark != 0
            && unsafe { GATES.get(&key) }.is_some()
            && p.set_mark_bits(gate_mode.mark);
        if queued {
            bump(st, Stat::GateQueued, 1);
            rec_flags = REC_HELD;
        } else if dst_mon && payload_len > 0 {
            match gate(p, &key, tcp.seq, payload_off as u32, payload_len) {
                GateAction::None => {}
                GateAction::Passed => bump(st, Stat::GatePassed, 1),
                GateAction::Hold => {
                    bump(st, Stat::GateHeld, 1);
                    rec_flags = REC_HELD;
                }
            }
        }
    }
    bump(st, Stat::MonitoredBytes, payload_len as u64);
    if payload_len == 0 && tcp.flags & 0x07 == 0 {
        return Action::Pass; // pure ACK: nothing for userspace
    }
    let hdr = RecordHeader {
        key,
        ts_ns: unsafe { bpf_ktime_get_ns() },
        seq: tcp.seq,
        ack: tcp.ack,
        payload_len,
        offset: 0,
        captured_len: 0,
        uncaptured: 0,
        ifindex: p.ifindex(),
        tcp_flags: tcp.flags,
        dir: if dst_mon {
            DIR_CLIENT_TO_SERVER
        } else {
            DIR_SERVER_TO_CLIENT
        },
        src_is_lo: src_is_lo as u8,
        hook,
        rec_flags,
        urg_ptr: 0,
        _pad: 0,
    };
    emit(p, hdr, payload_off as u32, st);
    if rec_flags & REC_HELD != 0 && !queued {
        Action::Drop
    } else {
        Action::Pass
    }
}

/// True when `addr` is in the blocklist and not expired; an expired entry is
/// deleted (and passes).
#[inline(always)]
fn blocked(family: u8, addr: [u8; 16]) -> bool {
    let k = IpKey::new(family, addr);
    let Some(expiry) = (unsafe { BLOCKLIST.get(&k) }) else {
        return false;
    };
    let expiry = *expiry;
    if expiry != 0 && unsafe { bpf_ktime_get_ns() } >= expiry {
        let _ = BLOCKLIST.remove(&k);
        return false;
    }
    true
}

enum GateAction {
    /// No gate, or the segment does not end a message.
    None,
    /// Ends a message; the gate is released up to (at least) its end.
    Passed,
    /// Ends a message the gate holds back.
    Hold,
}

/// The end-of-data gate of a client→server segment with payload.
#[inline(always)]
fn gate<P: Packet>(p: &P, key: &FlowKey, seq: u32, payload_off: u32, len: u32) -> GateAction {
    let Some(g) = GATES.get_ptr_mut(key) else {
        return GateAction::None;
    };
    let g = unsafe { &mut *g };
    let end = seq.wrapping_add(len);
    // Where the message ends: the BDAT end when this segment carries its
    // last byte (a retransmission collapsed with later data still counts),
    // else the segment's end.
    let mut msg_end = end;
    let mut ends = false;
    if g.flags & GATE_BDAT != 0 && seq_ge(end, g.bdat_end) && !seq_ge(seq, g.bdat_end) {
        ends = true;
        msg_end = g.bdat_end;
    }
    if !ends {
        // A segment ending in "\n.\r\n", or exactly ".\r\n": the end of data
        // however CRLF.CRLF was split over segments, as long as the dot line
        // itself was not ("…\r" + "\n.\r\n" too). Inside a message nothing
        // else ends so (a lone dot line is the end), so long messages are
        // never held midway.
        let mut tail = [0u8; 4];
        if len >= 4 {
            ends = p.load(payload_off + len - 4, tail.as_mut_ptr() as *mut c_void, 4) == 0
                && tail == *b"\n.\r\n";
        } else if len == 3 {
            ends = p.load(payload_off, tail.as_mut_ptr() as *mut c_void, 3) == 0
                && tail[0] == b'.'
                && tail[1] == b'\r'
                && tail[2] == b'\n';
        }
    }
    if !ends {
        return GateAction::None;
    }
    if g.flags & GATE_RELEASED != 0 && seq_ge(g.release_end, msg_end) {
        return GateAction::Passed;
    }
    g.held = g.held.wrapping_add(1);
    GateAction::Hold
}

/// Sends the segment as records of at most `CHUNK` payload bytes.
#[inline(always)]
fn emit<P: Packet>(p: &P, hdr: RecordHeader, payload_off: u32, st: &mut Stats) {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let scratch = unsafe { &mut *scratch };
    scratch.hdr = hdr;
    let total = hdr.payload_len;
    let limit = (CHUNK * MAX_CHUNKS) as u32;
    let capturable = if total > limit { limit } else { total };
    let tail = total - capturable;
    if total == 0 {
        let bytes = unsafe {
            core::slice::from_raw_parts(scratch as *const _ as *const u8, RECORD_HEADER_LEN)
        };
        match RECORDS.output::<[u8]>(bytes, 0) {
            Ok(()) => bump(st, Stat::RecordsSent, 1),
            Err(_) => bump(st, Stat::RecordsLost, 1),
        }
        return;
    }
    let mut off: u32 = 0;
    for _ in 0..MAX_CHUNKS {
        if off >= capturable {
            break;
        }
        let rest = capturable - off;
        let n = if rest > CHUNK as u32 {
            CHUNK as u32
        } else {
            rest
        };
        // n is in 1..=CHUNK; the barrier keeps LLVM from folding the
        // masking away, which makes the bound visible to the verifier.
        let n = core::hint::black_box(n);
        let n = (n.wrapping_sub(1) & (CHUNK as u32 - 1)) + 1;
        let last = off + n >= capturable;
        scratch.hdr.offset = off;
        scratch.hdr.captured_len = n;
        scratch.hdr.uncaptured = if last { tail } else { 0 };
        if p.load(
            payload_off + off,
            scratch.data.as_mut_ptr() as *mut c_void,
            n,
        ) != 0
        {
            // Could not copy: the rest of the segment is uncaptured.
            scratch.hdr.captured_len = 0;
            scratch.hdr.uncaptured = total - off;
            let bytes = unsafe {
                core::slice::from_raw_parts(scratch as *const _ as *const u8, RECORD_HEADER_LEN)
            };
            bump(st, Stat::BytesUncaptured, (total - off) as u64);
            match RECORDS.output::<[u8]>(bytes, 0) {
                Ok(()) => bump(st, Stat::RecordsSent, 1),
                Err(_) => bump(st, Stat::RecordsLost, 1),
            }
            return;
        }
        let bytes = unsafe {
            core::slice::from_raw_parts(
                scratch as *const _ as *const u8,
                RECORD_HEADER_LEN + n as usize,
            )
        };
        match RECORDS.output::<[u8]>(bytes, 0) {
            Ok(()) => bump(st, Stat::RecordsSent, 1),
            Err(_) => {
                bump(st, Stat::RecordsLost, 1);
                bump(st, Stat::BytesUncaptured, n as u64);
            }
        }
        off += n;
        if last {
            break;
        }
    }
    if tail > 0 {
        bump(st, Stat::BytesUncaptured, tail as u64);
    }
}
