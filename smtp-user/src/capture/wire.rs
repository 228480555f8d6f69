//! Wire formats: one captured link-layer frame → one TCP [`Segment`].
//!
//! Stateless and allocation-free: link layer (Ethernet with up to
//! [`MAX_VLAN_TAGS`] VLAN tags, Linux cooked SLL/SLL2, raw IP, BSD
//! null/loopback) → IPv4 / IPv6 with up to [`MAX_IPV6_EXT_HEADERS`]
//! extension headers → TCP. The headers are decoded by `etherparse`; this
//! module walks the chain and applies the limits the kernel parser shares
//! (`smtp-common`). Anything that is not a parseable unfragmented TCP segment
//! is returned as a [`Skip`] reason that the caller counts; no input panics.
//! IP fragments are [`Skip::Fragment`] here; `replay` reassembles them
//! ([`super::ipfrag`]) through [`ip_packet`] and [`tcp_segment`]. Checksums
//! are not verified here ([`tcp_checksum`] does it on request): captures
//! taken on hosts with checksum offloading carry bad ones.
//!
//! Lengths: the IP header's length bounds the TCP segment (so Ethernet
//! padding is trimmed); the frame's captured length bounds what we can hand
//! out. Payload bytes that were on the wire but not captured (snaplen) are
//! reported in [`Segment::uncaptured`].

use std::net::{IpAddr, SocketAddr};

use etherparse::err::ipv4::HeaderSliceError as V4Error;
use etherparse::err::ipv6::HeaderSliceError as V6Error;
use etherparse::{
    Ethernet2Slice, IpAuthHeaderSlice, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice,
    Ipv6RawExtHeaderSlice, LinuxSllProtocolType, LinuxSllSlice, SingleVlanSlice, TcpSlice,
};
pub use smtp_common::{MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS};

use super::{Checksum, Segment, TcpFlags};

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
    /// An IP fragment (reassembled by `replay`, not by [`parse_frame`]).
    Fragment,
    /// A header ends beyond the captured bytes.
    Truncated,
    /// A header field is impossible (IP version, header length, TCP data
    /// offset, IP length shorter than its header, IPv6 jumbogram).
    Malformed,
    /// A header chain beyond the parsers' limits: more than
    /// [`MAX_VLAN_TAGS`] VLAN tags or [`MAX_IPV6_EXT_HEADERS`] IPv6
    /// extension headers.
    HeaderLimit,
}

impl Skip {
    /// Every reason, for iterating over counters.
    pub const ALL: [Skip; 7] = [
        Skip::UnsupportedLinkType,
        Skip::NotIp,
        Skip::NotTcp,
        Skip::Fragment,
        Skip::Truncated,
        Skip::Malformed,
        Skip::HeaderLimit,
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
            Skip::HeaderLimit => "header_limit",
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
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
/// Linux cooked capture v2 header length (not decoded by `etherparse`).
const SLL2_LEN: usize = 20;

/// Where an IP packet is one fragment of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Identification (IPv4: 16 bits; IPv6: the fragment header's 32).
    pub ident: u32,
    /// Offset of this fragment's data in the datagram's payload, bytes.
    pub offset: u32,
    /// More fragments follow (MF).
    pub more: bool,
}

/// One IP packet with its header chain decoded, up to the upper layer.
#[derive(Debug, Clone, Copy)]
pub struct IpPacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Upper-layer protocol (after every IPv6 extension header).
    pub proto: u8,
    /// Set when the packet is a fragment (IPv6: a fragment header with a
    /// non-zero offset or MF; an atomic fragment is not one, RFC 6946).
    pub fragment: Option<Fragment>,
    /// The upper-layer (or fragment) bytes present in the capture.
    pub payload: &'a [u8],
    /// Length of those bytes on the wire, per the IP header; may exceed
    /// `payload.len()` (snaplen).
    pub wire_len: usize,
}

/// Parses one frame of link type `linktype` captured at `ts_micros`.
///
/// `frame` is the captured bytes. The returned segment borrows its payload
/// from `frame`; its checksum is [`Checksum::Unknown`].
pub fn parse_frame(linktype: u32, ts_micros: u64, frame: &[u8]) -> Result<Segment<'_>, Skip> {
    let ip = ip_packet(linktype, frame)?;
    if ip.fragment.is_some() {
        return Err(Skip::Fragment);
    }
    if ip.proto != IPPROTO_TCP {
        return Err(Skip::NotTcp);
    }
    tcp_segment(ts_micros, ip.src, ip.dst, ip.payload, ip.wire_len)
}

/// Decodes the link layer and the IP header chain of one frame.
pub fn ip_packet(linktype: u32, frame: &[u8]) -> Result<IpPacket<'_>, Skip> {
    let (version, ip) = match linktype {
        linktype::ETHERNET => ethernet(frame)?,
        linktype::LINUX_SLL => {
            let sll = LinuxSllSlice::from_slice(frame).map_err(|e| match e {
                etherparse::err::linux_sll::HeaderSliceError::Len(_) => Skip::Truncated,
                etherparse::err::linux_sll::HeaderSliceError::Content(_) => Skip::Malformed,
            })?;
            match sll.protocol_type() {
                LinuxSllProtocolType::EtherType(t) => network(t.0, sll.payload_slice())?,
                _ => return Err(Skip::NotIp),
            }
        }
        linktype::LINUX_SLL2 => {
            let proto = frame.get(..2).ok_or(Skip::Truncated)?;
            let rest = frame.get(SLL2_LEN..).ok_or(Skip::Truncated)?;
            network(u16::from_be_bytes([proto[0], proto[1]]), rest)?
        }
        linktype::RAW | linktype::RAW_12 | linktype::RAW_14 => raw_ip(frame)?,
        linktype::IPV4 => (4, frame),
        linktype::IPV6 => (6, frame),
        linktype::NULL | linktype::LOOP => {
            let b: [u8; 4] = frame
                .get(0..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(Skip::Truncated)?;
            let family = if linktype == linktype::LOOP {
                u32::from_be_bytes(b)
            } else {
                // Host byte order of the capturing machine: accept either.
                let le = u32::from_le_bytes(b);
                if le < 0x100 {
                    le
                } else {
                    u32::from_be_bytes(b)
                }
            };
            let rest = frame.get(4..).ok_or(Skip::Truncated)?;
            match family {
                2 => (4, rest),
                // AF_INET6 differs per BSD: 10 (Linux), 24, 28, 30.
                10 | 24 | 28 | 30 => (6, rest),
                _ => return Err(Skip::NotIp),
            }
        }
        _ => return Err(Skip::UnsupportedLinkType),
    };
    match version {
        4 => ipv4(ip),
        _ => ipv6(ip),
    }
}

/// Ethernet II and its VLAN tags → (IP version, IP bytes).
fn ethernet(frame: &[u8]) -> Result<(u8, &[u8]), Skip> {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame).map_err(|_| Skip::Truncated)?;
    let mut ethertype = eth.ether_type().0;
    let mut rest = eth.payload_slice();
    let mut tags = 0;
    while matches!(
        ethertype,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
    ) {
        if tags == MAX_VLAN_TAGS {
            return Err(Skip::HeaderLimit);
        }
        let vlan = SingleVlanSlice::from_slice(rest).map_err(|_| Skip::Truncated)?;
        ethertype = vlan.ether_type().0;
        rest = vlan.payload_slice();
        tags += 1;
    }
    network(ethertype, rest)
}

fn network(ethertype: u16, rest: &[u8]) -> Result<(u8, &[u8]), Skip> {
    match ethertype {
        ETHERTYPE_IPV4 => Ok((4, rest)),
        ETHERTYPE_IPV6 => Ok((6, rest)),
        _ => Err(Skip::NotIp),
    }
}

fn raw_ip(frame: &[u8]) -> Result<(u8, &[u8]), Skip> {
    match frame.first().ok_or(Skip::Truncated)? >> 4 {
        4 => Ok((4, frame)),
        6 => Ok((6, frame)),
        _ => Err(Skip::NotIp),
    }
}

fn ipv4(b: &[u8]) -> Result<IpPacket<'_>, Skip> {
    let hdr = Ipv4HeaderSlice::from_slice(b).map_err(|e| match e {
        V4Error::Len(_) => Skip::Truncated,
        V4Error::Content(_) => Skip::Malformed,
    })?;
    let ihl = hdr.slice().len();
    // Total length 0 is what TSO/GSO captures on the sending host show:
    // take the frame as the packet.
    let total = match usize::from(hdr.total_len()) {
        0 => b.len(),
        t => t,
    };
    if total < ihl {
        return Err(Skip::Malformed);
    }
    let offset = u32::from(hdr.fragments_offset().byte_offset());
    let more = hdr.more_fragments();
    let fragment = (offset != 0 || more).then_some(Fragment {
        ident: u32::from(hdr.identification()),
        offset,
        more,
    });
    Ok(IpPacket {
        src: IpAddr::V4(hdr.source_addr()),
        dst: IpAddr::V4(hdr.destination_addr()),
        proto: hdr.protocol().0,
        fragment,
        payload: b.get(ihl..total.min(b.len())).unwrap_or_default(),
        wire_len: total - ihl,
    })
}

fn ipv6(b: &[u8]) -> Result<IpPacket<'_>, Skip> {
    let hdr = Ipv6HeaderSlice::from_slice(b).map_err(|e| match e {
        V6Error::Len(_) => Skip::Truncated,
        V6Error::Content(_) => Skip::Malformed,
    })?;
    let payload_len = usize::from(hdr.payload_length());
    if payload_len == 0 {
        // Jumbogram (hop-by-hop jumbo option) or TSO capture: not handled.
        return Err(Skip::Malformed);
    }
    let mut next = hdr.next_header().0;
    // `at` and `end` are offsets into `b`; `end` is where the packet ends
    // on the wire (may exceed the captured bytes).
    let end = 40 + payload_len;
    let mut at = 40;
    let mut fragment = None;
    let mut headers = 0;
    // A header cut short by the packet's end is malformed; by the capture's
    // end, truncated.
    let short = if end > b.len() {
        Skip::Truncated
    } else {
        Skip::Malformed
    };
    loop {
        let rest = b.get(at..end.min(b.len())).ok_or(Skip::Truncated)?;
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let h = Ipv6RawExtHeaderSlice::from_slice(rest).map_err(|_| short)?;
                next = h.next_header().0;
                h.slice().len()
            }
            IPPROTO_AH => {
                let h = IpAuthHeaderSlice::from_slice(rest).map_err(|e| match e {
                    etherparse::err::ip_auth::HeaderSliceError::Len(_) => short,
                    etherparse::err::ip_auth::HeaderSliceError::Content(_) => Skip::Malformed,
                })?;
                next = h.next_header().0;
                h.slice().len()
            }
            IPPROTO_FRAGMENT => {
                let h = Ipv6FragmentHeaderSlice::from_slice(rest).map_err(|_| short)?;
                next = h.next_header().0;
                if h.is_fragmenting_payload() {
                    // The fragmentable part starts right after this header:
                    // headers behind it are in the reassembled payload.
                    let offset = u32::from(h.fragment_offset().byte_offset());
                    fragment = Some(Fragment {
                        ident: h.identification(),
                        offset,
                        more: h.more_fragments(),
                    });
                    at += h.slice().len();
                    if at > end {
                        return Err(Skip::Malformed);
                    }
                    break;
                }
                h.slice().len()
            }
            _ => break,
        };
        headers += 1;
        if headers > MAX_IPV6_EXT_HEADERS {
            return Err(Skip::HeaderLimit);
        }
        at += len;
        if at > end {
            return Err(Skip::Malformed);
        }
    }
    Ok(IpPacket {
        src: IpAddr::V6(hdr.source_addr()),
        dst: IpAddr::V6(hdr.destination_addr()),
        proto: next,
        fragment,
        payload: b.get(at..end.min(b.len())).unwrap_or_default(),
        wire_len: end - at,
    })
}

/// The TCP segment in `tcp` (the captured bytes of a TCP header and
/// payload, `wire_len` of them on the wire) from `src` to `dst`.
pub fn tcp_segment(
    ts_micros: u64,
    src: IpAddr,
    dst: IpAddr,
    tcp: &[u8],
    wire_len: usize,
) -> Result<Segment<'_>, Skip> {
    if wire_len < 20 {
        return Err(Skip::Malformed);
    }
    let t = TcpSlice::from_slice(tcp).map_err(|e| match e {
        etherparse::err::tcp::HeaderSliceError::Len(_) => Skip::Truncated,
        etherparse::err::tcp::HeaderSliceError::Content(_) => Skip::Malformed,
    });
    let t = match t {
        Ok(t) => t,
        // A data offset beyond the wire length is impossible, beyond the
        // captured bytes only cut.
        Err(Skip::Truncated) => {
            let data_offset = usize::from(tcp.get(12).ok_or(Skip::Truncated)? >> 4) * 4;
            return Err(if data_offset > wire_len {
                Skip::Malformed
            } else {
                Skip::Truncated
            });
        }
        Err(e) => return Err(e),
    };
    let data_offset = usize::from(t.data_offset()) * 4;
    if data_offset > wire_len {
        return Err(Skip::Malformed);
    }
    let payload = t.payload();
    let uncaptured = (wire_len - data_offset).saturating_sub(payload.len());
    let flags = tcp.get(13).copied().unwrap_or(0);
    Ok(Segment {
        ts_micros,
        src: SocketAddr::new(src, t.source_port()),
        dst: SocketAddr::new(dst, t.destination_port()),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        flags: TcpFlags(flags),
        payload,
        uncaptured: u32::try_from(uncaptured).unwrap_or(u32::MAX),
        held: false,
        urgent: t.urgent_pointer(),
        checksum: Checksum::Unknown,
    })
}

/// Verifies the checksum of a whole TCP segment `tcp` (header and
/// payload, nothing missing) sent from `src` to `dst`, over the IPv4 or
/// IPv6 pseudo-header. Mixed families are never `Good`.
pub fn tcp_checksum(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> Checksum {
    use etherparse::checksum::Sum16BitWords;
    let Ok(len) = u32::try_from(tcp.len()) else {
        return Checksum::Bad;
    };
    let sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Sum16BitWords::new()
            .add_4bytes(s.octets())
            .add_4bytes(d.octets())
            .add_2bytes([0, IPPROTO_TCP])
            .add_2bytes((len as u16).to_be_bytes()),
        (IpAddr::V6(s), IpAddr::V6(d)) => Sum16BitWords::new()
            .add_16bytes(s.octets())
            .add_16bytes(d.octets())
            .add_4bytes(len.to_be_bytes())
            .add_4bytes([0, 0, 0, IPPROTO_TCP]),
        _ => return Checksum::Bad,
    };
    // The sum over a segment whose checksum field is right is 0xffff.
    if sum
        .add_2bytes(ones_sum(tcp).to_be_bytes())
        .ones_complement()
        == 0
    {
        Checksum::Good
    } else {
        Checksum::Bad
    }
}

/// The 16-bit ones'-complement sum (RFC 1071, not complemented) of
/// `data` as big-endian words, an odd last byte padded with zero.
///
/// The fast path of checksum verification, which reads every payload
/// byte: native-order 32-bit words summed into four 64-bit lanes without
/// carries (the compiler vectorises it; fastest of the variants tried, about
/// 10 GB/s on one core here), folded at the end, then swapped to network
/// order (RFC 1071 §2(B): the sum commutes with byte swapping). Checked
/// against `etherparse`'s word-by-word sum in the tests.
pub fn ones_sum(data: &[u8]) -> u16 {
    let mut lanes = [0u64; 4];
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(b.chunks_exact(4)) {
            *lane += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    let mut words = blocks.remainder().chunks_exact(4);
    for w in &mut words {
        lanes[0] += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut tail = [0u8; 4];
    for (t, b) in tail.iter_mut().zip(words.remainder()) {
        *t = *b;
    }
    lanes[1] += u64::from(u32::from_ne_bytes(tail));
    // A lane gains less than 2^32 per 16 bytes: no overflow below 2^64
    // bytes of input. Fold with end-around carry.
    let mut sum: u128 = lanes.iter().map(|&l| u128::from(l)).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // `sum` holds native-order words: on a little-endian host, each is the
    // byte swap of the network-order word.
    u16::from_be(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::capture::builder::TcpPacket;

    fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
        let mut p = TcpPacket::new(
            "10.0.0.1:1234".parse().unwrap(),
            "10.0.0.2:25".parse().unwrap(),
            7,
            9,
            TcpFlags::ACK | TcpFlags::PSH,
            payload,
        );
        p.dont_fragment = false;
        p.ip()
    }

    /// The fast sum equals `etherparse`'s word-by-word sum on every length
    /// and alignment.
    #[test]
    fn ones_sum_matches_the_reference() {
        use etherparse::checksum::Sum16BitWords;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..4099)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for start in 0..8 {
            for len in (0..200).chain([1023, 1460, 4000]) {
                let d = &data[start..start + len];
                // etherparse sums native-order words: its result's bytes
                // in memory are the network-order sum.
                let ne = !Sum16BitWords::new().add_slice(d).ones_complement();
                let reference = u16::from_be_bytes(ne.to_ne_bytes());
                let fast = ones_sum(d);
                // 0x0000 and 0xffff are both zero in ones' complement.
                let norm = |v: u16| if v == 0xffff { 0 } else { v };
                assert_eq!(norm(fast), norm(reference), "start {start} len {len}");
            }
        }
        assert_eq!(ones_sum(&[0xff; 4096]), 0xffff);
        // Beyond one 64 KiB block (lanes folded between blocks).
        let big: Vec<u8> = data.iter().cycle().take(200_000).copied().collect();
        let ne = !Sum16BitWords::new().add_slice(&big).ones_complement();
        let norm = |v: u16| if v == 0xffff { 0 } else { v };
        assert_eq!(
            norm(ones_sum(&big)),
            norm(u16::from_be_bytes(ne.to_ne_bytes()))
        );
    }

    #[test]
    fn raw_ipv4_segment() {
        let p = ipv4_tcp(b"EHLO x\r\n");
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
        let p = ipv4_tcp(b"0123456789");
        let s = parse_frame(linktype::IPV4, 0, &p[..45]).unwrap();
        assert_eq!(s.payload, b"01234");
        assert_eq!(s.uncaptured, 5);
    }

    #[test]
    fn truncated_headers_and_bad_fields() {
        let p = ipv4_tcp(b"abc");
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
