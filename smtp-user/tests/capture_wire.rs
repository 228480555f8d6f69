//! Wire parsing of every supported link type, IP variants, and hostile
//! frames (which must be skipped with a reason, never panic).

use std::net::SocketAddr;

use proptest::prelude::*;
use smtp_user::capture::synth::tcp_frame;
use smtp_user::capture::wire::{linktype, parse_frame, Skip};
use smtp_user::capture::TcpFlags;

const PAYLOAD: &[u8] = b"MAIL FROM:<a@b>\r\n";

fn v4() -> Vec<u8> {
    let src: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let dst: SocketAddr = "192.0.2.25:25".parse().unwrap();
    tcp_frame(
        src,
        dst,
        0x1122_3344,
        0x5566_7788,
        TcpFlags::ACK | TcpFlags::PSH,
        PAYLOAD,
    )
}

fn v6() -> Vec<u8> {
    let src: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
    let dst: SocketAddr = "[2001:db8::25]:25".parse().unwrap();
    tcp_frame(src, dst, 7, 9, TcpFlags::ACK, PAYLOAD)
}

/// The IP packet inside an Ethernet frame from `tcp_frame`.
fn ip(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

fn check(lt: u32, frame: &[u8], v6: bool) {
    let s = parse_frame(lt, 42, frame).unwrap_or_else(|e| panic!("linktype {lt}: {e}"));
    assert_eq!(s.payload, PAYLOAD, "linktype {lt}");
    assert_eq!(s.dst.port(), 25);
    assert_eq!(s.src.port(), 40000);
    assert_eq!(s.src.is_ipv6(), v6);
    assert_eq!(s.uncaptured, 0);
    assert_eq!(s.ts_micros, 42);
}

#[test]
fn every_link_type() {
    for (packet, is6) in [(v4(), false), (v6(), true)] {
        let ethertype = packet[12..14].to_vec();
        let ipb = ip(&packet);
        check(linktype::ETHERNET, &packet, is6);
        // 802.1Q, and 802.1ad + 802.1Q.
        let mut q = packet[..12].to_vec();
        q.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        q.extend_from_slice(&packet[12..]);
        check(linktype::ETHERNET, &q, is6);
        let mut qq = packet[..12].to_vec();
        qq.extend_from_slice(&[0x88, 0xa8, 0x00, 0x07, 0x81, 0x00, 0x00, 0x05]);
        qq.extend_from_slice(&packet[12..]);
        check(linktype::ETHERNET, &qq, is6);
        // Linux cooked v1: 16 bytes, protocol at 14.
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
        sll.extend_from_slice(&ethertype);
        sll.extend_from_slice(&ipb);
        check(linktype::LINUX_SLL, &sll, is6);
        // Linux cooked v2: 20 bytes, protocol first.
        let mut sll2 = ethertype.clone();
        sll2.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        sll2.extend_from_slice(&ipb);
        check(linktype::LINUX_SLL2, &sll2, is6);
        for lt in [linktype::RAW, linktype::RAW_12, linktype::RAW_14] {
            check(lt, &ipb, is6);
        }
        check(if is6 { linktype::IPV6 } else { linktype::IPV4 }, &ipb, is6);
        // BSD null (host order, either) and OpenBSD loop (network order).
        let af: u32 = if is6 { 24 } else { 2 };
        for hdr in [af.to_le_bytes(), af.to_be_bytes()] {
            let mut n = hdr.to_vec();
            n.extend_from_slice(&ipb);
            check(linktype::NULL, &n, is6);
        }
        let mut lo = af.to_be_bytes().to_vec();
        lo.extend_from_slice(&ipb);
        check(linktype::LOOP, &lo, is6);
    }
    assert_eq!(
        parse_frame(147, 0, &v4()).unwrap_err(),
        Skip::UnsupportedLinkType
    );
}

#[test]
fn ethernet_padding_is_trimmed_and_ipv4_options_honoured() {
    let mut f = v4();
    f.extend_from_slice(&[0xee; 10]); // trailer/padding after the IP packet
    check(linktype::ETHERNET, &f, false);
    // IHL 6: four bytes of options before TCP.
    let base = v4();
    let mut f = base[..14 + 20].to_vec();
    f.extend_from_slice(&[1, 1, 1, 1]);
    f.extend_from_slice(&base[14 + 20..]);
    f[14] = 0x46;
    let total = u16::from_be_bytes([f[16], f[17]]) + 4;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    check(linktype::ETHERNET, &f, false);
}

#[test]
fn snaplen_cut_is_uncaptured() {
    let f = v4();
    let s = parse_frame(linktype::ETHERNET, 0, &f[..f.len() - 5]).unwrap();
    assert_eq!(s.payload, &PAYLOAD[..PAYLOAD.len() - 5]);
    assert_eq!(s.uncaptured, 5);
    assert_eq!((s.seq, s.ack), (0x1122_3344, 0x5566_7788));
    assert!(s.flags.ack() && !s.flags.syn());
}

/// IPv6 packet with extension headers `ext` (each: next header, bytes).
fn v6_with(ext: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let base = v6();
    let mut f = base[..14 + 40].to_vec();
    let tcp = &base[14 + 40..];
    let mut chain = Vec::new();
    for (i, (_, body)) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map_or(6, |e| e.0);
        let mut h = body.clone();
        h[0] = next;
        chain.extend_from_slice(&h);
    }
    f[14 + 6] = ext.first().map_or(6, |e| e.0);
    let plen = (chain.len() + tcp.len()) as u16;
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&chain);
    f.extend_from_slice(tcp);
    f
}

#[test]
fn ipv6_extension_headers_and_fragments() {
    let opts = |len8: u8| {
        let mut h = vec![0u8; (usize::from(len8) + 1) * 8];
        h[1] = len8;
        h
    };
    check(
        linktype::ETHERNET,
        &v6_with(&[(0, opts(0)), (60, opts(1)), (43, opts(0))]),
        true,
    );
    // Fragment header: offset 0, M=1 (first fragment) carries TCP.
    let frag = |off: u16, more: bool| {
        let v = (off << 3) | u16::from(more);
        let mut h = vec![0, 0];
        h.extend_from_slice(&v.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 1]);
        h
    };
    // First fragment (offset 0, M=1): a fragment, reassembled by replay
    // only. Atomic fragment (offset 0, M=0, RFC 6946): a whole packet.
    assert_eq!(
        parse_frame(linktype::ETHERNET, 0, &v6_with(&[(44, frag(0, true))])).unwrap_err(),
        Skip::Fragment
    );
    check(linktype::ETHERNET, &v6_with(&[(44, frag(0, false))]), true);
    assert_eq!(
        parse_frame(linktype::ETHERNET, 0, &v6_with(&[(44, frag(100, false))])).unwrap_err(),
        Skip::Fragment
    );
    // An unknown extension / upper layer is not TCP.
    let mut udp = v6();
    udp[14 + 6] = 17;
    assert_eq!(
        parse_frame(linktype::ETHERNET, 0, &udp).unwrap_err(),
        Skip::NotTcp
    );
    // Extension header length pointing past the packet.
    let mut bad = v6_with(&[(0, opts(0))]);
    bad[14 + 40 + 1] = 200;
    assert_eq!(
        parse_frame(linktype::ETHERNET, 0, &bad).unwrap_err(),
        Skip::Malformed
    );
}

#[test]
fn ipv4_fragments_and_non_ip() {
    let mut f = v4();
    f[14 + 6] = 0x20; // MF set, offset 0: first fragment, reassembled by replay only
    assert_eq!(
        parse_frame(linktype::ETHERNET, 0, &f).unwrap_err(),
        Skip::Fragment
    );
    f[14 + 7] = 0x10; // offset 16 × 8
    assert_eq!(
        parse_frame(linktype::ETHERNET, 0, &f).unwrap_err(),
        Skip::Fragment
    );
    let mut arp = v4();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(
        parse_frame(linktype::ETHERNET, 0, &arp).unwrap_err(),
        Skip::NotIp
    );
    let mut short_total = v4();
    short_total[14 + 2..14 + 4].copy_from_slice(&30u16.to_be_bytes()); // < IHL + TCP header
    assert_eq!(
        parse_frame(linktype::ETHERNET, 0, &short_total).unwrap_err(),
        Skip::Malformed
    );
}

#[test]
fn every_prefix_of_a_valid_frame_is_an_error_or_a_short_payload() {
    for packet in [v4(), v6()] {
        let header = packet.len() - PAYLOAD.len();
        for cut in 0..packet.len() {
            match parse_frame(linktype::ETHERNET, 0, &packet[..cut]) {
                Ok(s) => {
                    assert!(cut >= header);
                    assert_eq!(s.payload.len() + s.uncaptured as usize, PAYLOAD.len());
                }
                Err(e) => {
                    assert!(cut < header);
                    assert_eq!(e, Skip::Truncated, "cut {cut}");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(lt in prop::sample::select(vec![0u32, 1, 12, 14, 101, 108, 113, 228, 229, 276]), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(s) = parse_frame(lt, 0, &bytes) {
            prop_assert!(s.payload.len() <= bytes.len());
        }
    }

    #[test]
    fn mutated_frames_never_panic(six in any::<bool>(), muts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in any::<prop::sample::Index>()) {
        let mut f = if six { v6() } else { v4() };
        for (i, b) in muts {
            let at = i.index(f.len());
            f[at] = b;
        }
        let end = cut.index(f.len() + 1);
        if let Ok(s) = parse_frame(linktype::ETHERNET, 0, &f[..end]) {
            prop_assert!(s.payload.len() <= end);
        }
    }
}

/// The parsers' shared limits (smtp-common): up to MAX_VLAN_TAGS tags and
/// MAX_IPV6_EXT_HEADERS extension headers are parsed; one more is
/// `HeaderLimit`, counted apart from malformed frames.
#[test]
fn header_chain_limits() {
    use smtp_user::capture::builder::{ethernet_frame, TcpPacket};
    use smtp_user::capture::wire::{MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS};
    let p = TcpPacket::new(
        "192.0.2.1:40000".parse().unwrap(),
        "192.0.2.25:25".parse().unwrap(),
        1,
        2,
        TcpFlags::ACK,
        PAYLOAD,
    );
    let ip = p.ip();
    for n in 0..=MAX_VLAN_TAGS + 1 {
        let tags: Vec<u16> = (0..n)
            .map(|i| if i == 0 { 0x88a8 } else { 0x8100 })
            .collect();
        let f = ethernet_frame(&tags, &ip);
        let r = parse_frame(linktype::ETHERNET, 0, &f);
        if n <= MAX_VLAN_TAGS {
            assert_eq!(
                r.map(|s| s.payload.to_vec()).ok(),
                Some(PAYLOAD.to_vec()),
                "{n} tags"
            );
        } else {
            assert_eq!(r.unwrap_err(), Skip::HeaderLimit, "{n} tags");
        }
    }
    let dstopts = || vec![0u8, 0, 1, 4, 0, 0, 0, 0];
    for n in [1, MAX_IPV6_EXT_HEADERS, MAX_IPV6_EXT_HEADERS + 1, 40] {
        let chain: Vec<(u8, Vec<u8>)> = (0..n).map(|_| (60, dstopts())).collect();
        let f = v6_with(&chain);
        let r = parse_frame(linktype::ETHERNET, 0, &f);
        if n <= MAX_IPV6_EXT_HEADERS {
            assert_eq!(
                r.map(|s| s.payload.to_vec()).ok(),
                Some(PAYLOAD.to_vec()),
                "{n} headers"
            );
        } else {
            assert_eq!(r.unwrap_err(), Skip::HeaderLimit, "{n} headers");
        }
    }
}
