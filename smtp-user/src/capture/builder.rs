//! The one TCP/IP frame builder: forged resets (`enforce`), synthetic
//! captures ([`super::synth`]) and tests all build their packets here.
//!
//! [`TcpPacket`] describes one segment; it is written as a bare TCP
//! segment, an IP packet (what a raw socket sends), an Ethernet frame (what
//! a capture holds), or as IP fragments of its datagram. Headers and
//! checksums (IPv4 header, TCP over the IPv4/IPv6 pseudo-header) are
//! written by `etherparse`'s `PacketBuilder`, so every checksum is right
//! unless a caller breaks it on purpose ([`TcpPacket::bad_checksum`]).
//!
//! # Examples
//!
//! ```
//! use smtp_user::capture::builder::TcpPacket;
//! use smtp_user::capture::{parse_frame, wire::linktype, TcpFlags};
//!
//! let p = TcpPacket::new(
//!     "192.0.2.1:40000".parse().unwrap(),
//!     "192.0.2.25:25".parse().unwrap(),
//!     7,
//!     9,
//!     TcpFlags::ACK | TcpFlags::PSH,
//!     b"EHLO x\r\n",
//! );
//! let frame = p.ethernet();
//! let seg = parse_frame(linktype::ETHERNET, 0, &frame).unwrap();
//! assert_eq!(seg.payload, b"EHLO x\r\n");
//! ```

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use etherparse::{
    IpFragOffset, IpNumber, Ipv4Header, Ipv6FragmentHeader, Ipv6Header, PacketBuilder, TcpHeader,
};

use super::TcpFlags;

/// Source and destination MAC of built Ethernet frames (locally administered).
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
/// TTL / hop limit of built packets.
pub const HOP_LIMIT: u8 = 64;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// One TCP segment to build.
#[derive(Debug, Clone)]
pub struct TcpPacket<'a> {
    /// Sender. When the families of `src` and `dst` differ, both are
    /// written as IPv6 (IPv4 ones v4-mapped).
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    /// Written whatever the flags (meaningful with ACK).
    pub ack: u32,
    /// TCP flags (`TcpFlags::*`).
    pub flags: u8,
    pub window: u16,
    /// Urgent pointer (meaningful with URG).
    pub urgent: u16,
    pub payload: &'a [u8],
    /// Set the IPv4 Don't Fragment bit.
    pub dont_fragment: bool,
    /// Write a wrong TCP checksum (the right one with its bits inverted).
    pub bad_checksum: bool,
}

impl<'a> TcpPacket<'a> {
    /// A segment with window 65535, DF set, right checksums.
    pub fn new(
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &'a [u8],
    ) -> TcpPacket<'a> {
        TcpPacket {
            src,
            dst,
            seq,
            ack,
            flags,
            window: 0xffff,
            urgent: 0,
            payload,
            dont_fragment: true,
            bad_checksum: false,
        }
    }

    fn tcp_header(&self) -> TcpHeader {
        let mut h = TcpHeader::new(self.src.port(), self.dst.port(), self.seq, self.window);
        let f = TcpFlags(self.flags);
        h.fin = f.fin();
        h.syn = f.syn();
        h.rst = f.rst();
        h.psh = self.flags & TcpFlags::PSH != 0;
        h.ack = f.ack();
        h.urg = f.urg();
        h.acknowledgment_number = self.ack;
        h.urgent_pointer = self.urgent;
        h
    }

    /// Writes the IP packet into `out` (after anything already there).
    fn write_ip(&self, out: &mut Vec<u8>, ethernet: bool) {
        let tcp = self.tcp_header();
        let start = out.len();
        let written = match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let b = if ethernet {
                    PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv4(
                        s.octets(),
                        d.octets(),
                        HOP_LIMIT,
                    )
                } else {
                    PacketBuilder::ipv4(s.octets(), d.octets(), HOP_LIMIT)
                };
                b.tcp_header(tcp).write(out, self.payload)
            }
            (s, d) => {
                let b = if ethernet {
                    PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv6(
                        v6(s).octets(),
                        v6(d).octets(),
                        HOP_LIMIT,
                    )
                } else {
                    PacketBuilder::ipv6(v6(s).octets(), v6(d).octets(), HOP_LIMIT)
                };
                b.tcp_header(tcp).write(out, self.payload)
            }
        };
        // Writing to a Vec fails only on lengths beyond IP's (a caller bug).
        debug_assert!(written.is_ok(), "{written:?}");
        let ip_start = start + if ethernet { 14 } else { 0 };
        let v4 = matches!(
            (self.src.ip(), self.dst.ip()),
            (IpAddr::V4(_), IpAddr::V4(_))
        );
        if v4 && self.dont_fragment {
            // Flags byte 6 of the IPv4 header; its checksum is redone.
            if let Some(b) = out.get_mut(ip_start + 6) {
                *b |= 0x40;
            }
            fix_ipv4_checksum(out.get_mut(ip_start..).unwrap_or_default());
        }
        if self.bad_checksum {
            let ihl = if v4 {
                usize::from(out.get(ip_start).copied().unwrap_or(0x45) & 0x0f) * 4
            } else {
                40
            };
            for b in out
                .get_mut(ip_start + ihl + 16..ip_start + ihl + 18)
                .unwrap_or_default()
            {
                *b = !*b;
            }
        }
    }

    /// The IPv4 or IPv6 packet, what a raw socket sends.
    pub fn ip(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + 20 + self.payload.len());
        self.write_ip(&mut out, false);
        out
    }

    /// The Ethernet II frame (no VLAN tag), what a capture holds.
    pub fn ethernet(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + 40 + 20 + self.payload.len());
        self.write_ip(&mut out, true);
        out
    }

    /// The TCP header and payload, checksum included: the payload of the
    /// IP datagram, which [`TcpPacket::ip_fragment`] cuts.
    pub fn tcp_bytes(&self) -> Vec<u8> {
        let ip = self.ip();
        let hdr = ip_header_len(&ip);
        ip.get(hdr..).unwrap_or_default().to_vec()
    }

    /// One IP fragment of this segment's datagram: `data` (normally a
    /// piece of [`TcpPacket::tcp_bytes`], possibly altered to build
    /// overlaps) at byte `offset` of the datagram's payload, with
    /// identification `ident` (16 bits used for IPv4) and the
    /// more-fragments flag `more`. `offset` should be a multiple of 8.
    pub fn ip_fragment(&self, ident: u32, offset: usize, data: &[u8], more: bool) -> Vec<u8> {
        let ip = self.ip();
        let frag_offset = IpFragOffset::try_new((offset / 8) as u16).unwrap_or(IpFragOffset::ZERO);
        let mut out = Vec::with_capacity(48 + data.len());
        if let Ok((mut h, _)) = Ipv4Header::from_slice(&ip) {
            h.identification = ident as u16;
            h.dont_fragment = false;
            h.more_fragments = more;
            h.fragment_offset = frag_offset;
            let _ = h.set_payload_len(data.len());
            h.header_checksum = h.calc_header_checksum();
            let _ = h.write(&mut out);
        } else if let Ok((mut h, _)) = Ipv6Header::from_slice(&ip) {
            h.next_header = IpNumber::IPV6_FRAGMENTATION_HEADER;
            let _ = h.set_payload_length(8 + data.len());
            let _ = h.write(&mut out);
            let f = Ipv6FragmentHeader::new(IpNumber::TCP, frag_offset, more, ident);
            out.extend_from_slice(&f.to_bytes());
        }
        out.extend_from_slice(data);
        out
    }
}

/// `ip` (an IPv4 or IPv6 packet) in an Ethernet II frame, behind VLAN
/// tags with the given TPIDs (each with VID 7), outermost first.
pub fn ethernet_frame(tags: &[u16], ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tags.len() + ip.len());
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    for t in tags {
        f.extend_from_slice(&t.to_be_bytes());
        f.extend_from_slice(&7u16.to_be_bytes());
    }
    let ethertype = if ip.first().is_some_and(|b| b >> 4 == 6) {
        ETHERTYPE_IPV6
    } else {
        ETHERTYPE_IPV4
    };
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// Header length of an IPv4 (IHL) or IPv6 (fixed 40) packet built here.
fn ip_header_len(ip: &[u8]) -> usize {
    match ip.first() {
        Some(b) if b >> 4 == 4 => usize::from(b & 0x0f) * 4,
        _ => 40,
    }
}

/// Recomputes the header checksum of the IPv4 header at the start of `ip`.
fn fix_ipv4_checksum(ip: &mut [u8]) {
    if let Ok((h, _)) = Ipv4Header::from_slice(ip) {
        let sum = h.calc_header_checksum().to_be_bytes();
        if let Some(c) = ip.get_mut(10..12) {
            c.copy_from_slice(&sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::wire::{ip_packet, linktype, tcp_checksum};
    use crate::capture::Checksum;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn checksums_verify_and_break_on_request() {
        for (s, d) in [
            ("198.18.0.1:4000", "198.18.0.2:25"),
            ("[2001:2::1]:4000", "[2001:2::2]:25"),
        ] {
            let mut p = TcpPacket::new(sa(s), sa(d), 1, 2, TcpFlags::ACK, b"odd length");
            let ip = p.ip();
            let pkt = ip_packet(linktype::RAW, &ip).unwrap();
            assert_eq!(tcp_checksum(pkt.src, pkt.dst, pkt.payload), Checksum::Good);
            if ip[0] >> 4 == 4 {
                let h = Ipv4Header::from_slice(&ip).unwrap().0;
                assert_eq!(h.calc_header_checksum(), h.header_checksum);
                assert!(h.dont_fragment);
            }
            p.bad_checksum = true;
            let ip = p.ip();
            let pkt = ip_packet(linktype::RAW, &ip).unwrap();
            assert_eq!(tcp_checksum(pkt.src, pkt.dst, pkt.payload), Checksum::Bad);
        }
    }

    #[test]
    fn fragments_carry_the_datagram() {
        for (s, d) in [
            ("198.18.0.1:4000", "198.18.0.2:25"),
            ("[2001:2::1]:4000", "[2001:2::2]:25"),
        ] {
            let p = TcpPacket::new(sa(s), sa(d), 1, 2, TcpFlags::ACK, b"MAIL FROM:<a@b>\r\n");
            let tcp = p.tcp_bytes();
            let first = p.ip_fragment(9, 0, &tcp[..24], true);
            let last = p.ip_fragment(9, 24, &tcp[24..], false);
            let a = ip_packet(linktype::RAW, &first).unwrap();
            let b = ip_packet(linktype::RAW, &last).unwrap();
            assert_eq!(
                a.fragment.map(|f| (f.ident, f.offset, f.more)),
                Some((9, 0, true))
            );
            assert_eq!(
                b.fragment.map(|f| (f.ident, f.offset, f.more)),
                Some((9, 24, false))
            );
            assert_eq!([a.payload, b.payload].concat(), tcp);
        }
    }
}
