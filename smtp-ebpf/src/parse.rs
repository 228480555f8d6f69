//! Header parsing over direct packet access: Ethernet (+ one VLAN tag),
//! IPv4 / IPv6 (+ extension headers), TCP. Never reads outside
//! `[data, data_end)`; anything it does not understand is "not TCP".

use core::{ffi::c_void, mem::size_of};

use crate::packet::Packet;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
/// Extension headers skipped at most before giving up (pass).
const MAX_EXT_HEADERS: usize = 4;

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

/// Finds the TCP header. `None`: not TCP, not the first fragment, or headers
/// beyond the linear data.
#[inline(always)]
pub fn find_tcp<P: Packet>(p: &P) -> Option<L4> {
    let (data, end) = (p.data(), p.data_end());
    let mut proto = load_be16(data, end, 12)?;
    let mut off = ETH_HLEN;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = load_be16(data, end, 16)?;
        off += 4;
    }
    if proto == ETH_P_IP {
        let vihl = load_u8(data, end, off)?;
        if vihl >> 4 != 4 {
            return None;
        }
        let ihl = ((vihl & 0x0f) as usize) * 4;
        if ihl < 20 {
            return None;
        }
        let tot = load_be16(data, end, off + 2)? as usize;
        let frag = load_be16(data, end, off + 6)?;
        if frag & 0x1fff != 0 {
            return None; // non-first fragment: no TCP header here
        }
        if load_u8(data, end, off + 9)? != IPPROTO_TCP {
            return None;
        }
        let ip_end = if tot == 0 { 0 } else { off + tot };
        return Some(L4 {
            family: 4,
            l3_off: off,
            l4_off: off + ihl,
            ip_end,
        });
    }
    if proto == ETH_P_IPV6 {
        let l3 = off;
        if load_u8(data, end, l3)? >> 4 != 6 {
            return None;
        }
        let plen = load_be16(data, end, l3 + 4)? as usize;
        let mut next = load_u8(data, end, l3 + 6)?;
        let mut l4 = l3 + 40;
        // Extension headers are rare: read them with the load helper, which
        // takes variable offsets without verifier gymnastics.
        for _ in 0..MAX_EXT_HEADERS {
            if next == IPPROTO_TCP {
                let ip_end = if plen == 0 { 0 } else { l3 + 40 + plen };
                return Some(L4 {
                    family: 6,
                    l3_off: l3,
                    l4_off: l4,
                    ip_end,
                });
            }
            let mut ext = [0u8; 4];
            if p.load(l4 as u32, ext.as_mut_ptr() as *mut c_void, 4) != 0 {
                return None;
            }
            let len = ext[1] as usize;
            match next {
                IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => l4 += (len + 1) * 8,
                IPPROTO_AH => l4 += (len + 2) * 4,
                IPPROTO_FRAGMENT => {
                    if u16::from_be_bytes([ext[2], ext[3]]) & 0xfff8 != 0 {
                        return None; // non-first fragment
                    }
                    l4 += 8;
                }
                _ => return None,
            }
            next = ext[0];
        }
        return None;
    }
    None
}

/// The TCP header fields the monitor needs.
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// TCP header length in bytes (>= 20).
    pub doff: usize,
}

#[repr(C)]
struct TcpHdr {
    sport: [u8; 2],
    dport: [u8; 2],
    seq: [u8; 4],
    ack: [u8; 4],
    doff: u8,
    flags: u8,
    win: [u8; 2],
    csum: [u8; 2],
    urg: [u8; 2],
}

/// Reads the ports only (fast path for unmonitored traffic).
#[inline(always)]
pub fn ports(data: usize, end: usize, l4: &L4) -> Option<(u16, u16)> {
    let p = ptr_at::<[u8; 4]>(data, end, l4.l4_off)?;
    let b = unsafe { *p };
    Some((
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ))
}

#[inline(always)]
pub fn tcp(data: usize, end: usize, l4: &L4) -> Option<Tcp> {
    let h = unsafe { &*ptr_at::<TcpHdr>(data, end, l4.l4_off)? };
    let doff = ((h.doff >> 4) as usize) * 4;
    if doff < 20 {
        return None;
    }
    Some(Tcp {
        sport: u16::from_be_bytes(h.sport),
        dport: u16::from_be_bytes(h.dport),
        seq: u32::from_be_bytes(h.seq),
        ack: u32::from_be_bytes(h.ack),
        flags: h.flags,
        doff,
    })
}

/// Source and destination addresses (IPv4 in the first 4 bytes).
#[inline(always)]
pub fn addrs(data: usize, end: usize, l4: &L4) -> Option<([u8; 16], [u8; 16])> {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if l4.family == 4 {
        let s = ptr_at::<[u8; 8]>(data, end, l4.l3_off + 12)?;
        let b = unsafe { *s };
        src[..4].copy_from_slice(&b[..4]);
        dst[..4].copy_from_slice(&b[4..]);
    } else {
        let s = ptr_at::<[u8; 32]>(data, end, l4.l3_off + 8)?;
        let b = unsafe { &*s };
        src.copy_from_slice(&b[..16]);
        dst.copy_from_slice(&b[16..]);
    }
    Some((src, dst))
}
