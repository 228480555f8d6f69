//! The per-packet decision shared by all hooks: monitored or not, fail
//! closed on what cannot be recorded, blocklist, verdict, gate, checksum
//! verdict, copy to the ring buffer, counters.
//!
//! Fail closed: while enforcing (and unless `Config::unparsed_pass`), a
//! packet the program cannot record completely is dropped and counted by
//! reason: first fragments of monitored TCP (and tiny first fragments of
//! any port), frames beyond the VLAN or IPv6 extension-header limits, TCP
//! headers it cannot read, URG segments on monitored ports. Monitor mode
//! passes them and counts them. Bad-checksum segments are counted; enforcing,
//! they are dropped without a record (the receiver discards them too);
//! otherwise recorded flagged `REC_CSUM_BAD`.

use aya_ebpf::{
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_csum_level, bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    },
    programs::{TcContext, XdpContext},
    EbpfContext,
};
use aya_log_ebpf::debug;
use core::ffi::c_void;
use smtp_common::{
    seq_ge, AckSeen, Config, FlowKey, Gate, IpKey, RecordHeader, Stat, Stats, CHUNK,
    DIR_CLIENT_TO_SERVER, DIR_SERVER_TO_CLIENT, GATE_BDAT, GATE_RELEASED, HOOK_TC_EGRESS,
    HOOK_TC_INGRESS, MAX_CHUNKS, MAX_PORTS, RECORD_HEADER_LEN, REC_ACK_REPLAY, REC_CSUM_BAD,
    REC_CSUM_GOOD,
    REC_HELD,
};

use crate::{
    csum::{self, Csum},
    maps::{BLOCKLIST, CONFIG, EVENT, GATES, RECORDS, SCRATCH, SERVER_ACKS, STATS, VERDICTS},
    parse::{self, Found},
};

/// TCP flag bits.
const TCP_URG: u8 = 0x20;
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
    /// The stack already knows the checksum is good (TC:
    /// `CHECKSUM_UNNECESSARY`).
    fn csum_unnecessary(&self) -> bool {
        false
    }
    /// `skb_shinfo->gso_segs` (TC); 0 when unknown (XDP).
    fn gso_segs(&self) -> u32 {
        0
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
    fn csum_unnecessary(&self) -> bool {
        // BPF_CSUM_LEVEL_QUERY: the csum level when CHECKSUM_UNNECESSARY,
        // an error otherwise.
        unsafe { bpf_csum_level(self.0.skb.skb, 0) >= 0 }
    }
    #[inline(always)]
    fn gso_segs(&self) -> u32 {
        unsafe { (*self.0.skb.skb).gso_segs }
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
pub fn handle<P: Packet>(p: &P, hook: u8, ev: &mut Event) -> Action {
    let Some(st) = stats() else {
        return Action::Pass;
    };
    bump(st, Stat::Packets, 1);
    let mut found = parse::find_tcp(p);
    if let Found::Unreadable(Stat::Unparsed) = found {
        // Headers may sit beyond the linear part of an skb: pull once.
        let want = core::cmp::min(p.len(), 256) as u32;
        if p.data_end() - p.data() < want as usize && p.pull(want) {
            found = parse::find_tcp(p);
        }
    }
    let (l4, fragment) = match found {
        Found::Other => return Action::Pass,
        Found::Tcp(l4) => (l4, false),
        Found::FirstFragment(l4) => (l4, true),
        Found::Unreadable(reason) => return fail_closed(st, reason, hook, ev),
    };
    let ports = match parse::ports(p.data(), p.data_end(), &l4) {
        Some(ports) => Some(ports),
        None => parse::ports_load(p, &l4),
    };
    let Some((sport, dport)) = ports else {
        // A first fragment too short to hold the ports (RFC 1858's tiny
        // fragment) or a TCP header cut short: its port is unknown.
        let reason = if fragment {
            Stat::Fragments
        } else {
            Stat::Unparsed
        };
        return fail_closed(st, reason, hook, ev);
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
    if fragment {
        // The monitor cannot see the whole segment; without this first
        // fragment the server never reassembles it.
        bump(st, Stat::MonitoredPackets, 1);
        return fail_closed(st, Stat::Fragments, hook, ev);
    }
    let gate = GateMode {
        arm_at_syn: cfg.gate != 0,
        mark: if hook == HOOK_TC_INGRESS {
            cfg.gate_mark
        } else {
            0
        },
    };
    monitored(p, hook, &l4, dst_mon, cfg, gate, st, ev)
}

/// [`log`] events.
const EV_UNRECORDABLE: u32 = 1;
const EV_GATE_HOLD: u32 = 2;
const EV_GATE_PASS: u32 = 3;
const EV_CSUM_BAD: u32 = 4;

/// Where a packet's handling notes the decision it wants traced, in the
/// per-CPU `EVENT` map (`[kind, a, b, c, verdict]`, kind 0 = none). The
/// entry point then tail-calls the logger program (`smtp_log_tc` /
/// `smtp_log_xdp`, put in `LOG_TC` / `LOG_XDP` by userspace only when
/// logging is on), which logs it with [`log_pending`] and returns the
/// verdict. The log statement lives in its own small program: the verifier
/// checks its formatting code once, not on every path through the parser,
/// and with logging off the slot is empty and the tail call falls through.
pub struct Event;

impl Event {
    #[inline(always)]
    fn set(&mut self, kind: u32, a: u32, b: u32, c: u32) {
        if let Some(e) = EVENT.get_ptr_mut(0) {
            unsafe { *e = [kind, a, b, c, 0] };
        }
    }
}

/// True when the packet's handling noted a decision to log; stores the
/// verdict the logger program must return.
#[inline(always)]
pub fn event_pending(verdict: u32) -> bool {
    match EVENT.get_ptr_mut(0) {
        Some(e) => unsafe {
            if (*e)[0] == 0 {
                return false;
            }
            (*e)[4] = verdict;
            true
        },
        None => false,
    }
}

/// Clears the note (the tail call did not happen: logging is off).
#[inline(always)]
pub fn clear_event() {
    if let Some(e) = EVENT.get_ptr_mut(0) {
        unsafe { (*e)[0] = 0 };
    }
}

/// The logger programs' body: logs the noted decision, clears it, returns
/// the verdict stored with it.
#[inline(always)]
pub fn log_pending() -> u32 {
    let Some(e) = EVENT.get_ptr_mut(0) else {
        return 0;
    };
    let e = unsafe { &mut *e };
    if e[0] != 0 {
        log(e[0], e[1], e[2], e[3]);
        e[0] = 0;
    }
    e[4]
}

/// One debug line (aya-log) for an [`Event`]:
///
/// | event | a | b | c |
/// |---|---|---|---|
/// | 1 cannot record | reason (`Stat` index: 7 unparsed, 11 fragment, 12 IPv6 chain, 13 VLAN stack, 14 urgent) | hook | dropped |
/// | 2 gate hold | source port | seq | 0 |
/// | 3 gate pass | source port | seq | 0 |
/// | 4 bad checksum | source port | seq | dropped |
#[inline(never)]
fn log(kind: u32, a: u32, b: u32, c: u32) {
    let name = match kind {
        EV_UNRECORDABLE => "cannot record",
        EV_GATE_HOLD => "gate hold",
        EV_GATE_PASS => "gate pass",
        _ => "bad checksum",
    };
    debug!(&(), "{}: a={} b={} c={}", name, a, b, c);
}

/// Counts a packet the program cannot record by `reason`; drops it while
/// enforcing unless the operator chose `--unparsed pass`. Traced at debug
/// level (`reason` is the [`Stat`] index: 7 unparsed, 11 fragment, 12
/// IPv6 chain, 13 VLAN stack, 14 urgent).
#[inline(always)]
fn fail_closed(st: &mut Stats, reason: Stat, hook: u8, ev: &mut Event) -> Action {
    bump(st, reason, 1);
    let Some(cfg) = CONFIG.get(0) else {
        return Action::Pass;
    };
    let drop = cfg.enforce != 0 && cfg.unparsed_pass == 0;
    ev.set(EV_UNRECORDABLE, reason as u32, hook as u32, drop as u32);
    if drop {
        bump(st, Stat::DroppedUnparsed, 1);
        return Action::Drop;
    }
    Action::Pass
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
    cfg: &Config,
    gate_mode: GateMode,
    st: &mut Stats,
    ev: &mut Event,
) -> Action {
    bump(st, Stat::MonitoredPackets, 1);
    // The parser reaches here on many paths (VLAN tags, IP options, IPv6
    // chains) that differ only in these offsets; passed through map memory
    // they become unknown scalars, so the verifier checks what follows once
    // rather than once per path. Bounded again here.
    let l3_off = crate::maps::opaque(l4.l3_off as u32) as usize;
    let l4_off = crate::maps::opaque(l4.l4_off as u32) as usize;
    let ip_end = crate::maps::opaque(l4.ip_end as u32) as usize;
    if l3_off > 0x7fff || l4_off > 0x7fff || ip_end > 0xffff {
        return fail_closed(st, Stat::Unparsed, hook, ev);
    }
    let l4 = &parse::L4 {
        family: l4.family,
        l3_off,
        l4_off,
        ip_end,
    };
    let enforce = cfg.enforce != 0;
    let gate_on = cfg.gate != 0;
    let (Some(tcp), Some((src, dst))) = (parse::tcp(p, l4), parse::addrs(p, l4)) else {
        return fail_closed(st, Stat::Unparsed, hook, ev);
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
    // A payload-less RST always passes: resets sent by the monitor (or by
    // the peers) must reach both ends of a stopped connection.
    let bare_rst = payload_len == 0 && tcp.flags & TCP_RST != 0;
    if tcp.flags & TCP_URG != 0 && !bare_rst {
        // SMTP never sends urgent data; the receiver would take the urgent
        // byte out of the stream. Monitor mode records urg_ptr instead.
        if let Action::Drop = fail_closed(st, Stat::Urgent, hook, ev) {
            return Action::Drop;
        }
    }
    let mut rec_flags = 0;
    let mut replay_ack = false;
    let mut queued = false;
    if enforce {
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
            // Userspace releases a queued segment once the stream up to
            // its end is inspected; a hole before it (bytes that passed
            // unrecorded, e.g. fragments with `--unparsed pass`) becomes a
            // gap only when the server's ACK passes it.
            replay_ack = true;
        } else if dst_mon && payload_len > 0 {
            match gate(p, &key, tcp.seq, payload_off as u32, payload_len) {
                GateAction::None => {}
                GateAction::Passed => {
                    bump(st, Stat::GatePassed, 1);
                    ev.set(EV_GATE_PASS, tcp.sport as u32, tcp.seq, 0);
                }
                GateAction::Hold => {
                    bump(st, Stat::GateHeld, 1);
                    ev.set(EV_GATE_HOLD, tcp.sport as u32, tcp.seq, 0);
                    rec_flags = REC_HELD;
                    replay_ack = true;
                }
            }
        }
    }
    bump(st, Stat::MonitoredBytes, payload_len as u64);
    if payload_len == 0 && tcp.flags & 0x07 == 0 {
        // Pure ACK: nothing for userspace, but a gated flow remembers the
        // server's latest one, replayed when the gate holds.
        if enforce && gate_on && !dst_mon && GATES.get_ptr(&key).is_some() {
            let seen = AckSeen {
                seq: tcp.seq,
                ack: tcp.ack,
            };
            let _ = SERVER_ACKS.insert(&key, &seen, 0);
        }
        return Action::Pass;
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
        urg_ptr: tcp.urg_ptr,
        _pad: 0,
    };
    if replay_ack {
        if let Some(a) = unsafe { SERVER_ACKS.get(&key) } {
            let replay = RecordHeader {
                seq: a.seq,
                ack: a.ack,
                payload_len: 0,
                tcp_flags: TCP_ACK,
                dir: DIR_SERVER_TO_CLIENT,
                src_is_lo: !src_is_lo as u8,
                rec_flags: REC_ACK_REPLAY,
                urg_ptr: 0,
                ..hdr
            };
            bump(st, Stat::AckReplays, 1);
            // Replayed with every held or queued segment, not once: if a
            // replay record is lost (ring full), the next one still
            // declares the hole, so the gate cannot wedge.
            let _ = emit(p, replay, 0, Csum::Good, false, st);
        }
    }
    let check = checksum(p, hook, l4, &tcp, &src, &dst, payload_len);
    if emit(p, hdr, payload_off as u32, check, enforce, st) {
        ev.set(EV_CSUM_BAD, tcp.sport as u32, tcp.seq, enforce as u32);
        if enforce {
            // The receiver discards it; so does the monitor.
            return Action::Drop;
        }
    }
    if rec_flags & REC_HELD != 0 && !queued {
        Action::Drop
    } else {
        Action::Pass
    }
}

/// The checksum verdict before the payload (see [`crate::csum`]).
#[inline(always)]
fn checksum<P: Packet>(
    p: &P,
    hook: u8,
    l4: &parse::L4,
    tcp: &parse::Tcp,
    src: &[u8; 16],
    dst: &[u8; 16],
    payload_len: u32,
) -> Csum {
    if hook == HOOK_TC_EGRESS || p.csum_unnecessary() {
        return Csum::Good;
    }
    let tcp_len = tcp.doff as u32 + payload_len;
    let Some(pseudo) = csum::pseudo(l4.family, src, dst, tcp_len) else {
        return Csum::Unknown;
    };
    let partial_like = csum::fold(pseudo) == tcp.csum_raw;
    if partial_like && p.gso_segs() > 0 {
        return Csum::Good; // CHECKSUM_PARTIAL: a local sender, or GRO
    }
    if payload_len as usize > CHUNK {
        return Csum::Unknown;
    }
    let mut h = [0u8; 60];
    let doff = tcp.doff as u32;
    // doff is 20 to 60 (parse::tcp); the masking shows the verifier a
    // non-zero size (LLVM folds a plain range check into one it cannot use).
    let doff = (core::hint::black_box(doff).wrapping_sub(1) & 63) + 1;
    if doff > 60 || p.load(l4.l4_off as u32, h.as_mut_ptr() as *mut c_void, doff) != 0 {
        return Csum::Unknown;
    }
    match csum::add(h.as_ptr(), doff, pseudo) {
        Some(sum) => Csum::Verify { sum, partial_like },
        None => Csum::Unknown,
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

/// Final verdict of a checksum from the sum over everything.
#[inline(always)]
fn finish(sum: u32, partial_like: bool) -> Csum {
    if csum::fold(sum) == 0xffff {
        Csum::Good
    } else if partial_like {
        Csum::Unknown
    } else {
        Csum::Bad
    }
}

#[inline(always)]
fn csum_flags(c: Csum) -> u32 {
    match c {
        Csum::Good => REC_CSUM_GOOD,
        Csum::Bad => REC_CSUM_BAD,
        _ => 0,
    }
}

/// Sums the first `n` bytes of the scratch payload onto `seed` (pads them
/// to a multiple of 4 with zeros).
#[inline(always)]
fn sum_payload(data: &mut [u8; CHUNK], n: u32, seed: u32) -> Option<u32> {
    let n = n as usize;
    let padded = (n + 3) & !3;
    for i in 0..3 {
        let idx = n + i;
        if idx < padded && idx < CHUNK {
            data[idx & (CHUNK - 1)] = 0;
        }
    }
    let mut sum = seed;
    for k in 0..CHUNK / csum::STEP {
        let o = k * csum::STEP;
        if o >= padded {
            break;
        }
        let len = core::hint::black_box(padded - o);
        let len = if len > csum::STEP { csum::STEP } else { len };
        if len == 0 || len > csum::STEP || o + len > CHUNK {
            return None;
        }
        sum = csum::add(data[o..].as_ptr(), len as u32, sum)?;
    }
    Some(sum)
}

/// Counts a checksum verdict; true when bad.
#[inline(always)]
fn count_csum(st: &mut Stats, c: Csum) -> bool {
    match c {
        Csum::Good => {
            bump(st, Stat::ChecksumGood, 1);
            false
        }
        Csum::Bad => {
            bump(st, Stat::ChecksumBad, 1);
            true
        }
        _ => false,
    }
}

/// Sends the segment as records of at most `CHUNK` payload bytes, with the
/// checksum verdict in their flags, and counts the verdict; true when the
/// checksum is bad. With `drop_bad` (enforcing) a segment found bad is not
/// sent: it is dropped. (The verdict is counted here and only a bool goes
/// back, so the verifier does not carry it through the record loop.)
#[inline(always)]
fn emit<P: Packet>(
    p: &P,
    hdr: RecordHeader,
    payload_off: u32,
    check: Csum,
    drop_bad: bool,
    st: &mut Stats,
) -> bool {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let scratch = unsafe { &mut *scratch };
    let mut check = check;
    scratch.hdr = hdr;
    let total = hdr.payload_len;
    let limit = (CHUNK * MAX_CHUNKS) as u32;
    let capturable = if total > limit { limit } else { total };
    let tail = total - capturable;
    if total == 0 {
        if let Csum::Verify { sum, partial_like } = check {
            check = finish(sum, partial_like);
        }
        let bad = count_csum(st, check);
        if bad && drop_bad {
            return true;
        }
        scratch.hdr.rec_flags |= csum_flags(check);
        let bytes = unsafe {
            core::slice::from_raw_parts(scratch as *const _ as *const u8, RECORD_HEADER_LEN)
        };
        match RECORDS.output::<[u8]>(bytes, 0) {
            Ok(()) => bump(st, Stat::RecordsSent, 1),
            Err(_) => bump(st, Stat::RecordsLost, 1),
        }
        return bad;
    }
    if let Csum::Verify { sum, partial_like } = check {
        // The checksum is verified only for payloads of one record (see
        // `checksum`): load, sum, flag, send.
        let n = core::hint::black_box(total);
        let n = (n.wrapping_sub(1) & (CHUNK as u32 - 1)) + 1;
        scratch.hdr.offset = 0;
        scratch.hdr.captured_len = n;
        scratch.hdr.uncaptured = 0;
        let loaded =
            p.load(payload_off, scratch.data.as_mut_ptr() as *mut c_void, n) == 0 && n == total;
        check = if loaded {
            match sum_payload(&mut scratch.data, n, sum) {
                Some(sum) => finish(sum, partial_like),
                None => Csum::Unknown,
            }
        } else {
            Csum::Unknown
        };
        let bad = count_csum(st, check);
        if bad && drop_bad {
            // Enforcing: the segment is dropped here, as the receiver would
            // discard it; the monitor does not see it either.
            return true;
        }
        scratch.hdr.rec_flags |= csum_flags(check);
        let len = if loaded {
            RECORD_HEADER_LEN + n as usize
        } else {
            scratch.hdr.captured_len = 0;
            scratch.hdr.uncaptured = total;
            bump(st, Stat::BytesUncaptured, total as u64);
            RECORD_HEADER_LEN
        };
        let bytes = unsafe { core::slice::from_raw_parts(scratch as *const _ as *const u8, len) };
        match RECORDS.output::<[u8]>(bytes, 0) {
            Ok(()) => bump(st, Stat::RecordsSent, 1),
            Err(_) => {
                bump(st, Stat::RecordsLost, 1);
                if loaded {
                    bump(st, Stat::BytesUncaptured, n as u64);
                }
            }
        }
        return bad;
    }
    // Good or unknown (bad is only ever found by the verification above).
    let _ = count_csum(st, check);
    scratch.hdr.rec_flags |= csum_flags(check);
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
            return false;
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
    false
}
