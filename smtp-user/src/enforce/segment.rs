//! Wire format of forged segments: the IPv4 or IPv6 header and a 20-byte
//! TCP header (RST|ACK for [`rst_packet`], PSH|ACK with a payload for
//! [`data_packet`]), checksums included.
//!
//! Pure byte building, no sockets: each returns the packet a raw socket
//! sends as is (IPv4 `IP_HDRINCL`, IPv6 `IPPROTO_RAW`). The bytes come
//! from the shared frame builder ([`crate::capture::builder`]).

use std::net::SocketAddr;

use crate::capture::builder::TcpPacket;
use crate::capture::TcpFlags;

/// One forged RST|ACK segment `src` → `dst` with sequence number `seq` (the
/// next sequence number `src` would send: the receiver accepts an RST only
/// when it is exactly its `RCV.NXT`, RFC 5961) and acknowledgement number
/// `ack` (the next one `dst` would send), wrapped in an IP header with
/// Don't Fragment set and window 0.
///
/// Returns `None` when `src` and `dst` are not of one address family.
pub fn rst_packet(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32) -> Option<Vec<u8>> {
    if src.is_ipv4() != dst.is_ipv4() {
        return None;
    }
    let mut p = TcpPacket::new(src, dst, seq, ack, TcpFlags::RST | TcpFlags::ACK, &[]);
    p.window = 0;
    Some(p.ip())
}

/// One forged data segment `src` → `dst` carrying `payload` (PSH|ACK, and
/// FIN when `fin`: `src` has nothing more to say), `seq` the sequence number
/// of its first byte, `ack` the next byte expected from `dst`, an open
/// window. What the gate's `reject` answers the client with.
///
/// Returns `None` when `src` and `dst` are not of one address family or the
/// payload does not fit one packet.
pub fn data_packet(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    payload: &[u8],
    fin: bool,
) -> Option<Vec<u8>> {
    if src.is_ipv4() != dst.is_ipv4() || payload.len() > 1200 {
        return None;
    }
    let flags = TcpFlags::PSH | TcpFlags::ACK | if fin { TcpFlags::FIN } else { 0 };
    let mut p = TcpPacket::new(src, dst, seq, ack, flags, payload);
    p.window = 0xffff;
    Some(p.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::wire::{ip_packet, tcp_checksum};
    use crate::capture::{parse_frame, wire::linktype, Checksum, TcpFlags};

    /// RFC 1071 checksum over `parts`, for the fixed vectors below.
    fn checksum(parts: &[&[u8]]) -> u16 {
        let mut sum: u32 = 0;
        for w in parts.concat().chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_rst_fields_and_checksums() {
        let p = rst_packet(sa("198.18.2.2:25"), sa("198.18.1.2:40000"), 0x1122_3344, 7).unwrap();
        assert_eq!(p.len(), 40);
        // The IP header sums to zero with its checksum in place.
        assert_eq!(checksum(&[&p[..20]]), 0);
        // So does the TCP segment with its pseudo header.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        assert_eq!(checksum(&[&pseudo, &p[20..]]), 0);
        // Fixed vector, computed independently (Python, RFC 793 pseudo header).
        assert_eq!(u16::from_be_bytes([p[36], p[37]]), 0x3fe1);
        assert_eq!(u16::from_be_bytes([p[10], p[11]]), 0xaba7);

        let ip = ip_packet(linktype::RAW, &p).unwrap();
        assert_eq!(tcp_checksum(ip.src, ip.dst, ip.payload), Checksum::Good);
        let seg = parse_frame(linktype::RAW, 0, &p).unwrap();
        assert_eq!(seg.src, sa("198.18.2.2:25"));
        assert_eq!(seg.dst, sa("198.18.1.2:40000"));
        assert_eq!(seg.seq, 0x1122_3344);
        assert_eq!(seg.ack, 7);
        assert_eq!(seg.flags.0, TcpFlags::RST | TcpFlags::ACK);
        assert!(seg.payload.is_empty());
    }

    #[test]
    fn ipv6_rst_fields_and_checksum() {
        let p = rst_packet(
            sa("[2001:2:0:1::2]:41000"),
            sa("[2001:2:0:2::2]:25"),
            u32::MAX,
            0x8000_0000,
        )
        .unwrap();
        assert_eq!(p.len(), 60);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[8..40]);
        pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, 6]);
        assert_eq!(checksum(&[&pseudo, &p[40..]]), 0);
        assert_eq!(u16::from_be_bytes([p[56], p[57]]), 0x4f82);

        let seg = parse_frame(linktype::RAW, 0, &p).unwrap();
        assert_eq!(seg.src, sa("[2001:2:0:1::2]:41000"));
        assert_eq!(seg.dst, sa("[2001:2:0:2::2]:25"));
        assert_eq!(seg.seq, u32::MAX);
        assert_eq!(seg.ack, 0x8000_0000);
        assert_eq!(seg.flags.0, TcpFlags::RST | TcpFlags::ACK);
    }

    #[test]
    fn data_segment_carries_the_reply() {
        let reply = b"550 5.7.1 rejected\r\n";
        let p = data_packet(
            sa("198.18.0.2:25"),
            sa("198.18.0.1:40000"),
            9,
            77,
            reply,
            true,
        )
        .unwrap();
        assert_eq!(p.len(), 40 + reply.len());
        assert_eq!(checksum(&[&p[..20]]), 0);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, 6, 0, (20 + reply.len()) as u8]);
        assert_eq!(checksum(&[&pseudo, &p[20..]]), 0);
        let seg = parse_frame(linktype::RAW, 0, &p).unwrap();
        assert_eq!((seg.seq, seg.ack), (9, 77));
        assert_eq!(seg.payload, reply);
        assert_eq!(seg.flags.0, TcpFlags::PSH | TcpFlags::ACK | TcpFlags::FIN);
        assert!(data_packet(
            sa("198.18.0.2:25"),
            sa("198.18.0.1:1"),
            0,
            0,
            &[0; 1300],
            false
        )
        .is_none());
    }

    #[test]
    fn mixed_families_yield_nothing() {
        assert!(rst_packet(sa("198.18.0.1:1"), sa("[2001:2::1]:2"), 0, 0).is_none());
    }
}
