//! Header parsing: Ethernet (+ up to [`MAX_VLAN_TAGS`] VLAN tags), IPv4 /
//! IPv6 (+ up to [`MAX_IPV6_EXT_HEADERS`] extension headers), TCP. Fixed
//! headers are read by direct packet access (never outside
//! `[data, data_end)`), extension and TCP headers with the load helper.
//!
//! [`find_tcp`] sorts every frame into one of the [`Found`] cases: a TCP
//! header, a first fragment of TCP, something that is not TCP (not ours),
//! or a packet the program cannot read (by reason). The caller decides what
//! to do with each; the limits are the ones userspace parses with.

use core::{ffi::c_void, mem::size_of};

use smtp_common::{Stat, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS};

use crate::packet::Packet;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const ETH_P_QINQ_OLD: u16 = 0x9100;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// Where the TCP header of a packet is, and the IP facts around it.
pub struct L4 {
    /// 4 or 6.
    pub family: u8,
    /// Offset of the IP header from the start of the frame.
    pub l3_off: usize,
    /// Offset of the TCP header from the start of the frame.
    pub l4_off: usize,
    /// End of the IP packet (offset from the frame start) as the IP header
    /// says, or 0 when the header gives no length (jumbo / BIG TCP).
    pub ip_end: usize,
}

/// What a frame is, for the monitor.
pub enum Found {
    /// A TCP header (unfragmented packet, or IPv6 atomic fragment).
    Tcp(L4),
    /// The first fragment (offset 0, more fragments) of a TCP packet: the
    /// TCP header starts at `l4_off`, but the segment is not complete.
    FirstFragment(L4),
    /// Not TCP, not IP, or a non-first fragment (no ports): pass untouched.
    Other,
    /// Cannot be read; the counter that says why ([`Stat::VlanLimit`],
    /// [`Stat::ExtHeaderLimit`], [`Stat::Unparsed`]). Its ports are unknown.
    Unreadable(Stat),
}

#[inline(always)]
fn ptr_at<T>(data: usize, data_end: usize, off: usize) -> Option<*const T> {
    let start = data + off;
    if start + size_of::<T>() > data_end {
        return None;
    }
    Some(start as *const T)
}

#[inline(always)]
fn load_u8(data: usize, end: usize, off: usize) -> Option<u8> {
    ptr_at::<u8>(data, end, off).map(|p| unsafe { *p })
}

#[inline(always)]
fn load_be16(data: usize, end: usize, off: usize) -> Option<u16> {
    ptr_at::<[u8; 2]>(data, end, off).map(|p| u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
fn is_vlan(proto: u16) -> bool {
    proto == ETH_P_8021Q || proto == ETH_P_8021AD || proto == ETH_P_QINQ_OLD
}

/// Sorts the frame (see [`Found`]). A header beyond the linear data gives
/// `Unreadable(Stat::Unparsed)`: the caller pulls and tries again.
#[inline(always)]
pub fn find_tcp<P: Packet>(p: &P) -> Found {
    let (data, end) = (p.data(), p.data_end());
    let Some(mut proto) = load_be16(data, end, 12) else {
        return Found::Other;
    };
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if is_vlan(proto) {
            let Some(inner) = load_be16(data, end, off + 2) else {
                return Found::Unreadable(Stat::Unparsed);
            };
            proto = inner;
            off += 4;
        }
    }
    if is_vlan(proto) {
        return Found::Unreadable(Stat::VlanLimit);
    }
    if proto == ETH_P_IP {
        return ipv4(data, end, off);
    }
    if proto == ETH_P_IPV6 {
        return ipv6(p, data, end, off);
    }
    Found::Other
}

#[inline(always)]
fn ipv4(data: usize, end: usize, off: usize) -> Found {
    let (Some(vihl), Some(tot), Some(frag), Some(proto)) = (
        load_u8(data, end, off),
        load_be16(data, end, off + 2),
        load_be16(data, end, off + 6),
        load_u8(data, end, off + 9),
    ) else {
        return Found::Unreadable(Stat::Unparsed);
    };
    if proto != IPPROTO_TCP {
        return Found::Other;
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return Found::Unreadable(Stat::Unparsed);
    }
    if frag & 0x1fff != 0 {
        return Found::Other; // non-first fragment: no TCP header here
    }
    let tot = tot as usize;
    let l4 = L4 {
        family: 4,
        l3_off: off,
        l4_off: off + ihl,
        ip_end: if tot == 0 { 0 } else { off + tot },
    };
    if frag & 0x2000 != 0 {
        return Found::FirstFragment(l4);
    }
    Found::Tcp(l4)
}

#[inline(always)]
fn ipv6<P: Packet>(p: &P, data: usize, end: usize, l3: usize) -> Found {
    let (Some(ver), Some(plen), Some(first_next)) = (
        load_u8(data, end, l3),
        load_be16(data, end, l3 + 4),
        load_u8(data, end, l3 + 6),
    ) else {
        return Found::Unreadable(Stat::Unparsed);
    };
    if ver >> 4 != 6 {
        return Found::Other;
    }
    let plen = plen as usize;
    let mut next = first_next;
    let mut l4 = l3 + 40;
    let mut first_fragment = false;
    // Extension headers are read with the load helper, which takes variable
    // offsets without verifier gymnastics. One pass more than the limit: the
    // last one only checks for TCP.
    for i in 0..MAX_IPV6_EXT_HEADERS + 1 {
        if next == IPPROTO_TCP {
            // Offsets past here are checked against the packet again.
            let l4 = crate::maps::opaque(l4 as u32) as usize;
            if l4 > 0x7fff {
                return Found::Unreadable(Stat::Unparsed);
            }
            let l4 = L4 {
                family: 6,
                l3_off: l3,
                l4_off: l4,
                ip_end: if plen == 0 { 0 } else { l3 + 40 + plen },
            };
            return if first_fragment {
                Found::FirstFragment(l4)
            } else {
                Found::Tcp(l4)
            };
        }
        let known = next == IPPROTO_HOPOPTS
            || next == IPPROTO_ROUTING
            || next == IPPROTO_DSTOPTS
            || next == IPPROTO_AH
            || next == IPPROTO_FRAGMENT;
        if !known {
            return Found::Other; // another protocol (or ESP, no next header)
        }
        if i == MAX_IPV6_EXT_HEADERS {
            return Found::Unreadable(Stat::ExtHeaderLimit);
        }
        let mut ext = [0u8; 4];
        if p.load(l4 as u32, ext.as_mut_ptr() as *mut c_void, 4) != 0 {
            return Found::Unreadable(Stat::Unparsed);
        }
        let len = ext[1] as usize;
        match next {
            IPPROTO_AH => l4 += (len + 2) * 4,
            IPPROTO_FRAGMENT => {
                let fo = u16::from_be_bytes([ext[2], ext[3]]);
                if fo & 0xfff8 != 0 {
                    return Found::Other; // non-first fragment: no ports
                }
                // Offset 0 with M set: first fragment. M clear: an atomic
                // fragment (RFC 6946), a whole packet.
                first_fragment |= fo & 1 != 0;
                l4 += 8;
            }
            _ => l4 += (len + 1) * 8,
        }
        next = ext[0];
    }
    Found::Unreadable(Stat::ExtHeaderLimit)
}

/// The TCP header fields the monitor needs.
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// TCP header length in bytes (20 to 60).
    pub doff: usize,
    pub urg_ptr: u16,
    /// The checksum field as it is in memory (not byte-swapped).
    pub csum_raw: u16,
}

/// Reads the ports only (fast path for unmonitored traffic); `None` when
/// the 4 bytes are not in the linear data or beyond the IP packet's end.
#[inline(always)]
pub fn ports(data: usize, end: usize, l4: &L4) -> Option<(u16, u16)> {
    if l4.ip_end != 0 && l4.l4_off + 4 > l4.ip_end {
        return None;
    }
    let p = ptr_at::<[u8; 4]>(data, end, l4.l4_off)?;
    let b = unsafe { *p };
    Some((
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ))
}

/// Reads the ports with the load helper (headers beyond the linear data),
/// within the IP packet.
#[inline(always)]
pub fn ports_load<P: Packet>(p: &P, l4: &L4) -> Option<(u16, u16)> {
    if l4.ip_end != 0 && l4.l4_off + 4 > l4.ip_end {
        return None;
    }
    let mut b = [0u8; 4];
    if p.load(l4.l4_off as u32, b.as_mut_ptr() as *mut c_void, 4) != 0 {
        return None;
    }
    Some((
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ))
}

/// The fixed TCP header (options not read), inside the IP packet.
#[inline(always)]
pub fn tcp<P: Packet>(p: &P, l4: &L4) -> Option<Tcp> {
    let mut h = [0u8; 20];
    if p.load(l4.l4_off as u32, h.as_mut_ptr() as *mut c_void, 20) != 0 {
        return None;
    }
    let doff = ((h[12] >> 4) as usize) * 4;
    if doff < 20 || (l4.ip_end != 0 && l4.l4_off + doff > l4.ip_end) {
        return None;
    }
    Some(Tcp {
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        flags: h[13],
        doff,
        csum_raw: u16::from_ne_bytes([h[16], h[17]]),
        urg_ptr: u16::from_be_bytes([h[18], h[19]]),
    })
}

/// Source and destination addresses (IPv4 in the first 4 bytes).
#[inline(always)]
pub fn addrs<P: Packet>(p: &P, l4: &L4) -> Option<([u8; 16], [u8; 16])> {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if l4.family == 4 {
        let mut b = [0u8; 8];
        if p.load((l4.l3_off + 12) as u32, b.as_mut_ptr() as *mut c_void, 8) != 0 {
            return None;
        }
        src[..4].copy_from_slice(&b[..4]);
        dst[..4].copy_from_slice(&b[4..]);
    } else {
        if p.load((l4.l3_off + 8) as u32, src.as_mut_ptr() as *mut c_void, 16) != 0
            || p.load((l4.l3_off + 24) as u32, dst.as_mut_ptr() as *mut c_void, 16) != 0
        {
            return None;
        }
    }
    Some((src, dst))
}
