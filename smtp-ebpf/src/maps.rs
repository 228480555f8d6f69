//! The maps shared with userspace (names in `smtp_common::MAP_*`) and the
//! per-CPU scratch buffer records are assembled in.

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use smtp_common::{
    AckSeen, Config, FlowKey, Gate, IpKey, RecordHeader, Stats, BLOCKLIST_CAPACITY, CHUNK,
    GATE_CAPACITY, VERDICT_CAPACITY,
};

/// Records to userspace. Size is overridden by userspace at load time.
#[map]
pub static RECORDS: RingBuf = RingBuf::with_byte_size(1 << 24, 0);

/// One [`Config`] entry, written by userspace before attaching.
#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Flow verdicts ([`smtp_common::Verdict`] as u32).
#[map]
pub static VERDICTS: LruHashMap<FlowKey, u32> = LruHashMap::with_max_entries(VERDICT_CAPACITY, 0);

/// Blocked client addresses → expiry (ktime ns, 0 = none).
#[map]
pub static BLOCKLIST: LruHashMap<IpKey, u64> = LruHashMap::with_max_entries(BLOCKLIST_CAPACITY, 0);

/// End-of-data gates of flows with content rules.
#[map]
pub static GATES: LruHashMap<FlowKey, Gate> = LruHashMap::with_max_entries(GATE_CAPACITY, 0);

/// The latest pure ACK of the server on gated flows (replayed at a hold).
#[map]
pub static SERVER_ACKS: LruHashMap<FlowKey, AckSeen> =
    LruHashMap::with_max_entries(GATE_CAPACITY, 0);

/// Counters.
#[map]
pub static STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(1, 0);

/// The decision of the packet being handled that is to be logged
/// (`packet::Event`: kind, three facts, verdict; kind 0 = none).
#[map]
pub static EVENT: PerCpuArray<[u32; 5]> = PerCpuArray::with_max_entries(1, 0);

/// Slot 0: the TC logger program, when logging is on.
#[map]
pub static LOG_TC: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Slot 0: the XDP logger program, when logging is on.
#[map]
pub static LOG_XDP: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Where a record (header + payload chunk) is assembled before output.
#[repr(C)]
pub struct Scratch {
    pub hdr: RecordHeader,
    pub data: [u8; CHUNK],
}

#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Returns `v` through map memory, whose contents the verifier does not
/// track: the result is an unknown scalar, so the verifier need not follow
/// every path that computed it (the IPv6 extension-header walk), and the
/// caller bounds it again.
#[inline(always)]
pub fn opaque(v: u32) -> u32 {
    match SCRATCH.get_ptr_mut(0) {
        Some(s) => unsafe {
            let p = core::ptr::addr_of_mut!((*s).hdr.offset);
            core::ptr::write_volatile(p, v);
            core::ptr::read_volatile(p)
        },
        None => 0,
    }
}
