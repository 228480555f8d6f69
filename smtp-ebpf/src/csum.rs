//! The TCP checksum verdict of a monitored segment: what the receiving
//! stack will decide, so the monitor never reads bytes the server discards.
//!
//! | hook / skb state | verdict |
//! |---|---|
//! | TC egress (the host's own packets) | good |
//! | TC ingress, `CHECKSUM_UNNECESSARY` (NIC verified; `bpf_csum_level`) | good |
//! | TC ingress, `gso_segs > 0` and the field holds the pseudo-header sum | good: `CHECKSUM_PARTIAL` (a local sender on a veth, GRO), the stack never verifies it |
//! | otherwise, segment of at most `CHUNK` bytes | verified here: good or bad |
//! | verification fails but the field holds the pseudo-header sum (no GSO mark, or XDP) | unknown: could be a `CHECKSUM_PARTIAL` skb (a VM's virtio packet, XDP on a veth) |
//! | otherwise (GRO super-packets beyond one record) | unknown |
//!
//! Sums use `bpf_csum_diff`, which adds 32-bit words in memory order; the
//! ones' complement sum is byte-order independent, so the field is compared
//! as it lies in memory.

use aya_ebpf::helpers::generated::bpf_csum_diff;

/// Largest buffer `bpf_csum_diff` sums in one call.
pub const STEP: usize = 512;

/// Adds `len` bytes at `ptr` (a multiple of 4, at most [`STEP`]) to `seed`.
#[inline(always)]
pub fn add(ptr: *const u8, len: u32, seed: u32) -> Option<u32> {
    let r = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, ptr as *mut u32, len, seed) };
    if r < 0 {
        None
    } else {
        Some(r as u32)
    }
}

/// Folds a 32-bit partial sum to 16 bits.
#[inline(always)]
pub fn fold(s: u32) -> u16 {
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Sum of the TCP pseudo header (addresses, protocol, TCP length).
#[inline(always)]
pub fn pseudo(family: u8, src: &[u8; 16], dst: &[u8; 16], tcp_len: u32) -> Option<u32> {
    let mut b = [0u8; 40];
    if family == 4 {
        b[..4].copy_from_slice(&src[..4]);
        b[4..8].copy_from_slice(&dst[..4]);
        b[9] = 6;
        b[10] = (tcp_len >> 8) as u8;
        b[11] = tcp_len as u8;
        add(b.as_ptr(), 12, 0)
    } else {
        b[..16].copy_from_slice(src);
        b[16..32].copy_from_slice(dst);
        b[32..36].copy_from_slice(&tcp_len.to_be_bytes());
        b[39] = 6;
        add(b.as_ptr(), 40, 0)
    }
}

/// What is known of a segment's checksum before its payload is summed.
#[derive(Clone, Copy)]
pub enum Csum {
    Good,
    Unknown,
    /// To be finished over the payload: the sum of pseudo header and TCP
    /// header so far; `partial_like`: the field holds the pseudo-header sum.
    Verify {
        sum: u32,
        partial_like: bool,
    },
    Bad,
}
