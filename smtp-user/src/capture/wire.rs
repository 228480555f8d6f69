//! Wire formats: one captured link-layer frame → one TCP [`Segment`].
//!
//! Stateless and allocation-free: link layer (Ethernet with up to two VLAN
//! tags, Linux cooked SLL/SLL2, raw IP, BSD null/loopback) → IPv4 / IPv6 →
//! TCP. Anything that is not a parseable first-fragment TCP segment is
//! returned as a [`Skip`] reason that the caller counts; no input panics
//! (every access is a checked `get`). Checksums are not verified: captures
//! taken on hosts with checksum offloading carry bad ones.
//!
//! Lengths: the IP header's length bounds the TCP segment (so Ethernet
//! padding is trimmed); the frame's captured length bounds what we can hand
//! out. Payload bytes that were on the wire but not captured (snaplen) are
//! reported in [`Segment::uncaptured`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Segment, TcpFlags};

/// Link-layer header types (pcap `LINKTYPE_*` / DLT values) understood here.
pub mod linktype {
    /// BSD loopback: 4-byte address family in host byte order.
    pub const NULL: u32 = 0;
    /// Ethernet II (with optional 802.1Q / 802.1ad tags).
    pub const ETHERNET: u32 = 1;
    /// Raw IP (DLT_RAW on most platforms).
    pub const RAW_12: u32 = 12;
    /// Raw IP (DLT_RAW on OpenBSD).
    pub const RAW_14: u32 = 14;
    /// OpenBSD loopback: like NULL, address family in network byte order.
    pub const LOOP: u32 = 108;
    /// Raw IP, version from the first nibble.
    pub const RAW: u32 = 101;
    /// Linux cooked capture v1.
    pub const LINUX_SLL: u32 = 113;
    /// Raw IPv4.
    pub const IPV4: u32 = 228;
    /// Raw IPv6.
    pub const IPV6: u32 = 229;
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: u32 = 276;
}

/// Why a frame yielded no TCP segment. Callers count these by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// The capture's link type is not one we parse.
    UnsupportedLinkType,
    /// Link layer carries something other than IPv4/IPv6 (ARP, LLDP, …).
    NotIp,
    /// IP packet whose payload is not TCP (UDP, ICMP, …).
    NotTcp,
    /// A non-first IP fragment, or a first fragment too short to hold the
    /// TCP header (IP reassembly is not done).
    Fragment,
    /// A header ends beyond the captured bytes.
    Truncated,
    /// A header field is impossible (IP version, header length, TCP data
    /// offset, IP length shorter than its header, IPv6 jumbogram).
    Malformed,
}

impl Skip {
    /// Every reason, for iterating over counters.
    pub const ALL: [Skip; 6] = [
        Skip::UnsupportedLinkType,
        Skip::NotIp,
        Skip::NotTcp,
        Skip::Fragment,
        Skip::Truncated,
        Skip::Malformed,
    ];

    /// Stable lowercase name, for logs and stats output.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::UnsupportedLinkType => "unsupported_linktype",
            Skip::NotIp => "not_ip",
            Skip::NotTcp => "not_tcp",
            Skip::Fragment => "fragment",
            Skip::Truncated => "truncated",
            Skip::Malformed => "malformed",
        }
    }

    /// Dense index in `0..Skip::ALL.len()`.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const IPPROTO_TCP: u8 = 6;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses one frame of link type `linktype` captured at `ts_micros`.
///
/// `frame` is the captured bytes. The returned segment borrows its payload
/// from `frame`.
pub fn parse_frame(linktype: u32, ts_micros: u64, frame: &[u8]) -> Result<Segment<'_>, Skip> {
    let ip = match linktype {
        linktype::ETHERNET => ethernet(frame)?,
        linktype::LINUX_SLL => {
            let proto = be16(frame, 14).ok_or(Skip::Truncated)?;
            network(proto, frame.get(16..).ok_or(Skip::Truncated)?)?
        }
        linktype::LINUX_SLL2 => {
            let proto = be16(frame, 0).ok_or(Skip::Truncated)?;
            network(proto, frame.get(20..).ok_or(Skip::Truncated)?)?
        }
        linktype::RAW | linktype::RAW_12 | linktype::RAW_14 => raw_ip(frame)?,
        linktype::IPV4 => Ip::V4(frame),
        linktype::IPV6 => Ip::V6(frame),
        linktype::NULL | linktype::LOOP => {
            let b = frame.get(0..4).ok_or(Skip::Truncated)?;
            let family = if linktype == linktype::LOOP {
                u32::from_be_bytes([b[0], b[1], b[2], b[3]])
            } else {
                // Host byte order of the capturing machine: accept either.
                let le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if le < 0x100 {
                    le
                } else {
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
                }
            };
            let rest = frame.get(4..).ok_or(Skip::Truncated)?;
            match family {
                2 => Ip::V4(rest),
                // AF_INET6 differs per BSD: 10 (Linux), 24, 28, 30.
                10 | 24 | 28 | 30 => Ip::V6(rest),
                _ => return Err(Skip::NotIp),
            }
        }
        _ => return Err(Skip::UnsupportedLinkType),
    };
    let (src, dst, tcp) = match ip {
        Ip::V4(b) => ipv4(b)?,
        Ip::V6(b) => ipv6(b)?,
    };
    tcp_segment(ts_micros, src, dst, tcp)
}

/// An IP packet of known version, not yet parsed.
enum Ip<'a> {
    V4(&'a [u8]),
    V6(&'a [u8]),
}

fn ethernet(frame: &[u8]) -> Result<Ip<'_>, Skip> {
    let mut ethertype = be16(frame, 12).ok_or(Skip::Truncated)?;
    let mut at = 14;
    // At most MAX_VLAN_TAGS tags (802.1ad outer + 802.1Q inner), the
    // kernel program's limit too.
    for _ in 0..smtp_common::MAX_VLAN_TAGS {
        if matches!(
            ethertype,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
        ) {
            ethertype = be16(frame, at + 2).ok_or(Skip::Truncated)?;
            at += 4;
        }
    }
    network(ethertype, frame.get(at..).ok_or(Skip::Truncated)?)
}

fn network(ethertype: u16, rest: &[u8]) -> Result<Ip<'_>, Skip> {
    match ethertype {
        ETHERTYPE_IPV4 => Ok(Ip::V4(rest)),
        ETHERTYPE_IPV6 => Ok(Ip::V6(rest)),
        _ => Err(Skip::NotIp),
    }
}

fn raw_ip(frame: &[u8]) -> Result<Ip<'_>, Skip> {
    match frame.first().ok_or(Skip::Truncated)? >> 4 {
        4 => Ok(Ip::V4(frame)),
        6 => Ok(Ip::V6(frame)),
        _ => Err(Skip::NotIp),
    }
}

/// The TCP bytes of an IP packet: `captured` is what the frame holds (at
/// most `wire_len` bytes), `wire_len` what the IP header says was sent.
struct TcpBytes<'a> {
    captured: &'a [u8],
    wire_len: usize,
}

fn ipv4(b: &[u8]) -> Result<(IpAddr, IpAddr, TcpBytes<'_>), Skip> {
    let first = *b.first().ok_or(Skip::Truncated)?;
    if first >> 4 != 4 {
        return Err(Skip::Malformed);
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 {
        return Err(Skip::Malformed);
    }
    let hdr = b.get(..ihl).ok_or(Skip::Truncated)?;
    let total = usize::from(be16(hdr, 2).ok_or(Skip::Truncated)?);
    let frag = be16(hdr, 6).ok_or(Skip::Truncated)?;
    let proto = *hdr.get(9).ok_or(Skip::Truncated)?;
    let src = Ipv4Addr::from(be32(hdr, 12).ok_or(Skip::Truncated)?);
    let dst = Ipv4Addr::from(be32(hdr, 16).ok_or(Skip::Truncated)?);
    if proto != IPPROTO_TCP {
        return Err(Skip::NotTcp);
    }
    if frag & 0x1fff != 0 {
        return Err(Skip::Fragment);
    }
    // Total length 0 is what TSO/GSO captures on the sending host show:
    // take the frame as the packet.
    let total = if total == 0 { b.len() } else { total };
    if total < ihl {
        return Err(Skip::Malformed);
    }
    let more_fragments = frag & 0x2000 != 0;
    let captured = b.get(ihl..total.min(b.len())).unwrap_or(&[]);
    let tcp = TcpBytes {
        captured,
        wire_len: total - ihl,
    };
    if more_fragments && tcp.wire_len < 20 {
        return Err(Skip::Fragment);
    }
    Ok((IpAddr::V4(src), IpAddr::V4(dst), tcp))
}

fn ipv6(b: &[u8]) -> Result<(IpAddr, IpAddr, TcpBytes<'_>), Skip> {
    let hdr = b.get(..40).ok_or(Skip::Truncated)?;
    if hdr[0] >> 4 != 6 {
        return Err(Skip::Malformed);
    }
    let payload_len = usize::from(be16(hdr, 4).ok_or(Skip::Truncated)?);
    if payload_len == 0 {
        // Jumbogram (hop-by-hop jumbo option) or TSO capture: not handled.
        return Err(Skip::Malformed);
    }
    let mut next = hdr[6];
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&hdr[8..24]).map_err(|_| Skip::Truncated)?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&hdr[24..40]).map_err(|_| Skip::Truncated)?);
    // `at` and `end` are offsets into `b`; `end` is where the packet ends
    // on the wire (may exceed the captured bytes).
    let end = 40 + payload_len;
    let mut at = 40;
    // Bounded walk over at most MAX_IPV6_EXT_HEADERS extension headers
    // (the kernel program's limit too), then the TCP header.
    for _ in 0..=smtp_common::MAX_IPV6_EXT_HEADERS {
        match next {
            IPPROTO_TCP => {
                if at > end {
                    return Err(Skip::Malformed);
                }
                let captured = b.get(at..end.min(b.len())).unwrap_or(&[]);
                let tcp = TcpBytes {
                    captured,
                    wire_len: end - at,
                };
                return Ok((IpAddr::V6(src), IpAddr::V6(dst), tcp));
            }
            // Hop-by-hop, routing, destination options: (next, len in 8-octet units - 1).
            0 | 43 | 60 => {
                let n = *b.get(at).ok_or(Skip::Truncated)?;
                let len = usize::from(*b.get(at + 1).ok_or(Skip::Truncated)?) * 8 + 8;
                next = n;
                at += len;
            }
            // Authentication header: length in 4-octet units - 2.
            51 => {
                let n = *b.get(at).ok_or(Skip::Truncated)?;
                let len = usize::from(*b.get(at + 1).ok_or(Skip::Truncated)?) * 4 + 8;
                next = n;
                at += len;
            }
            // Fragment header: 8 bytes; only an unfragmented or first fragment.
            44 => {
                let n = *b.get(at).ok_or(Skip::Truncated)?;
                let off = be16(b, at + 2).ok_or(Skip::Truncated)?;
                if off & 0xfff8 != 0 {
                    return Err(Skip::Fragment);
                }
                next = n;
                at += 8;
                if off & 1 != 0 {
                    // First fragment: the TCP header must be in it.
                    if next != IPPROTO_TCP || end < at + 20 {
                        return Err(Skip::Fragment);
                    }
                }
            }
            _ => return Err(Skip::NotTcp),
        }
        if at > end {
            return Err(Skip::Malformed);
        }
    }
    Err(Skip::NotTcp)
}

fn tcp_segment(
    ts_micros: u64,
    src: IpAddr,
    dst: IpAddr,
    tcp: TcpBytes<'_>,
) -> Result<Segment<'_>, Skip> {
    let b = tcp.captured;
    let hdr = b.get(..20).ok_or(if tcp.wire_len < 20 {
        Skip::Malformed
    } else {
        Skip::Truncated
    })?;
    let sport = be16(hdr, 0).ok_or(Skip::Truncated)?;
    let dport = be16(hdr, 2).ok_or(Skip::Truncated)?;
    let seq = be32(hdr, 4).ok_or(Skip::Truncated)?;
    let ack = be32(hdr, 8).ok_or(Skip::Truncated)?;
    let data_offset = usize::from(hdr[12] >> 4) * 4;
    let flags = TcpFlags(hdr[13]);
    if data_offset < 20 || data_offset > tcp.wire_len {
        return Err(Skip::Malformed);
    }
    if b.len() < data_offset {
        return Err(Skip::Truncated);
    }
    let payload = b.get(data_offset..).unwrap_or(&[]);
    let wire_payload = tcp.wire_len - data_offset;
    let uncaptured = wire_payload.saturating_sub(payload.len());
    Ok(Segment {
        ts_micros,
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        seq,
        ack,
        flags,
        payload,
        uncaptured: u32::try_from(uncaptured).unwrap_or(u32::MAX),
        held: false,
        urgent: 0,
        checksum: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_tcp(payload: &[u8], ip_total_extra: usize) -> Vec<u8> {
        let total = 20 + 20 + payload.len() + ip_total_extra;
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            6,
            0,
            0,
        ];
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(&[0x04, 0xd2, 0, 25]); // 1234 → 25
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(&9u32.to_be_bytes());
        p.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn raw_ipv4_segment() {
        let p = ipv4_tcp(b"EHLO x\r\n", 0);
        let s = parse_frame(linktype::RAW, 5, &p).unwrap();
        assert_eq!(s.src, "10.0.0.1:1234".parse().unwrap());
        assert_eq!(s.dst, "10.0.0.2:25".parse().unwrap());
        assert_eq!((s.seq, s.ack, s.flags.0), (7, 9, 0x18));
        assert_eq!(s.payload, b"EHLO x\r\n");
        assert_eq!(s.uncaptured, 0);
        assert_eq!(s.ts_micros, 5);
    }

    #[test]
    fn snaplen_reports_uncaptured() {
        let p = ipv4_tcp(b"0123456789", 0);
        let s = parse_frame(linktype::IPV4, 0, &p[..45]).unwrap();
        assert_eq!(s.payload, b"01234");
        assert_eq!(s.uncaptured, 5);
    }

    #[test]
    fn truncated_headers_and_bad_fields() {
        let p = ipv4_tcp(b"abc", 0);
        for cut in 0..40 {
            assert!(
                parse_frame(linktype::RAW, 0, &p[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut bad = p.clone();
        bad[32] = 0x40; // data offset 16
        assert_eq!(
            parse_frame(linktype::RAW, 0, &bad).unwrap_err(),
            Skip::Malformed
        );
        let mut frag = p.clone();
        frag[7] = 1; // fragment offset 8
        assert_eq!(
            parse_frame(linktype::RAW, 0, &frag).unwrap_err(),
            Skip::Fragment
        );
        let mut udp = p;
        udp[9] = 17;
        assert_eq!(
            parse_frame(linktype::RAW, 0, &udp).unwrap_err(),
            Skip::NotTcp
        );
    }
}
