//! Wire format of forged segments: the IPv4 or IPv6 header and a 20-byte
//! TCP header (RST|ACK for [`rst_packet`], PSH|ACK with a payload for
//! [`data_packet`]), checksums included.
//!
//! Pure byte building, no sockets: each returns the packet a raw socket
//! sends as is (IPv4 `IP_HDRINCL`, IPv6 `IPPROTO_RAW`).

use std::net::{IpAddr, SocketAddr};

/// TCP header length of a forged RST (no options).
pub const TCP_LEN: usize = 20;
/// IPv4 header length (no options).
pub const IPV4_LEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_LEN: usize = 40;

const PROTO_TCP: u8 = 6;
const FLAG_FIN: u8 = 0x01;
const FLAG_RST: u8 = 0x04;
const FLAG_PSH: u8 = 0x08;
const FLAG_ACK: u8 = 0x10;
/// TTL / hop limit of forged packets.
const HOP_LIMIT: u8 = 64;

/// One forged RST|ACK segment `src` → `dst` with sequence number `seq` (the
/// next sequence number `src` would send: the receiver accepts an RST only
/// when it is exactly its `RCV.NXT`, RFC 5961) and acknowledgement number
/// `ack` (the next one `dst` would send), wrapped in an IP header.
///
/// Returns `None` when `src` and `dst` are not of one address family.
pub fn rst_packet(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32) -> Option<Vec<u8>> {
    tcp_packet(src, dst, seq, ack, FLAG_RST | FLAG_ACK, 0, &[])
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
    if payload.len() > 1200 {
        return None;
    }
    let flags = FLAG_PSH | FLAG_ACK | if fin { FLAG_FIN } else { 0 };
    tcp_packet(src, dst, seq, ack, flags, 0xffff, payload)
}

fn tcp_packet(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let mut tcp = vec![0u8; TCP_LEN];
    tcp[0..2].copy_from_slice(&src.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = ((TCP_LEN / 4) as u8) << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    // Checksum filled below, urgent pointer 0.
    tcp.extend_from_slice(payload);
    let tcp_len = tcp.len();
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut pseudo = [0u8; 12];
            pseudo[0..4].copy_from_slice(&s.octets());
            pseudo[4..8].copy_from_slice(&d.octets());
            pseudo[9] = PROTO_TCP;
            pseudo[10..12].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            let sum = checksum(&[&pseudo, &tcp]);
            tcp[16..18].copy_from_slice(&sum.to_be_bytes());

            let mut ip = [0u8; IPV4_LEN];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((IPV4_LEN + tcp_len) as u16).to_be_bytes());
            // Identification 0: the kernel picks one. Don't fragment.
            ip[6] = 0x40;
            ip[8] = HOP_LIMIT;
            ip[9] = PROTO_TCP;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let sum = checksum(&[&ip]);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            Some([&ip[..], &tcp[..]].concat())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut pseudo = [0u8; 40];
            pseudo[0..16].copy_from_slice(&s.octets());
            pseudo[16..32].copy_from_slice(&d.octets());
            pseudo[32..36].copy_from_slice(&(tcp_len as u32).to_be_bytes());
            pseudo[39] = PROTO_TCP;
            let sum = checksum(&[&pseudo, &tcp]);
            tcp[16..18].copy_from_slice(&sum.to_be_bytes());

            let mut ip = [0u8; IPV6_LEN];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            ip[6] = PROTO_TCP;
            ip[7] = HOP_LIMIT;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            Some([&ip[..], &tcp[..]].concat())
        }
        _ => None,
    }
}

/// The Internet checksum (RFC 1071) of the concatenation of `parts`, each of
/// even length except possibly the last.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut words = part.chunks_exact(2);
        for w in &mut words {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u32::from(*last) << 8;
        }
        // Fold now so the sum never overflows, whatever the input length.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{parse_frame, wire::linktype, TcpFlags};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// RFC 1071 section 3's worked example: words 0001 f203 f4f5 f6f7 sum
    /// to ddf2, so the checksum is its complement.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
        // Split across parts: same result.
        assert_eq!(checksum(&[&data[..4], &data[4..]]), !0xddf2);
        // Odd trailing byte is padded with a zero low byte.
        assert_eq!(checksum(&[&[0x12]]), !0x1200);
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
