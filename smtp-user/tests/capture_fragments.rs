//! IP reassembly in replay's frame decoder, IPv4 and IPv6, built with the
//! shared frame builder: in order, out of order, tiny first fragments,
//! duplicates and overlaps (Linux discards the datagram), timeouts and the
//! memory limit; and a fragmented `MAIL FROM` reported by replay, with one
//! `decoder.ipv4.frag_overlap` / `decoder.ipv6.frag_overlap` anomaly per
//! datagram discarded for overlapping fragments (bounded per replay).

mod pipeline_common;

use std::net::SocketAddr;

use pipeline_common::*;
use smtp_user::capture::builder::{ethernet_frame, TcpPacket};
use smtp_user::capture::decoder::Decoder;
use smtp_user::capture::ipfrag::FragConfig;
use smtp_user::capture::synth::{render, PcapWriter, RenderOptions, TimedFrame};
use smtp_user::capture::wire::{linktype, parse_frame};
use smtp_user::capture::{Checksum, TcpFlags};

const LINE: &[u8] = b"MAIL FROM:<alice@example.org> SIZE=1000\r\n";

fn endpoints(v6: bool) -> (SocketAddr, SocketAddr) {
    if v6 {
        (
            "[2001:2::1]:40000".parse().unwrap(),
            "[2001:2::25]:25".parse().unwrap(),
        )
    } else {
        (
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.25:25".parse().unwrap(),
        )
    }
}

fn packet(v6: bool, payload: &[u8]) -> TcpPacket<'_> {
    let (c, s) = endpoints(v6);
    TcpPacket::new(c, s, 1000, 2000, TcpFlags::ACK | TcpFlags::PSH, payload)
}

/// Feeds Ethernet frames of IP packets to `d` at 1 ms steps from `t0`;
/// returns the payloads of the segments that came out, with their checksum.
fn feed(d: &mut Decoder, t0: u64, ips: &[Vec<u8>]) -> Vec<(Vec<u8>, Checksum)> {
    let mut out = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let frame = ethernet_frame(&[], ip);
        if let Ok(Some(seg)) = d.decode(linktype::ETHERNET, t0 + i as u64 * 1000, &frame) {
            out.push((seg.payload.to_vec(), seg.checksum));
        }
    }
    out
}

fn decoder() -> Decoder {
    Decoder::new(true, FragConfig::default())
}

#[test]
fn in_order_and_out_of_order_fragments_are_reassembled() {
    for v6 in [false, true] {
        let p = packet(v6, LINE);
        let tcp = p.tcp_bytes();
        let frags = vec![
            p.ip_fragment(7, 0, &tcp[..24], true),
            p.ip_fragment(7, 24, &tcp[24..48], true),
            p.ip_fragment(7, 48, &tcp[48..], false),
        ];
        let mut d = decoder();
        assert_eq!(
            feed(&mut d, 0, &frags),
            vec![(LINE.to_vec(), Checksum::Good)],
            "v6 {v6}"
        );
        // Last first, then first, then middle.
        let mut d = decoder();
        let shuffled = vec![frags[2].clone(), frags[0].clone(), frags[1].clone()];
        assert_eq!(
            feed(&mut d, 0, &shuffled),
            vec![(LINE.to_vec(), Checksum::Good)]
        );
        let s = d.stats().fragments;
        assert_eq!((s.fragments, s.reassembled, s.overlaps), (3, 1, 0));
        assert_eq!(s.held_bytes, 0);
        assert!(s.held_peak > 0);
    }
}

#[test]
fn tiny_first_fragment_ipv4_reassembled_ipv6_dropped() {
    // 8 bytes: ports and sequence number only (the classic tiny-fragment
    // evasion): Linux reassembles it for IPv4; IPv6 requires the whole
    // TCP header in the first fragment (RFC 7112) and drops it.
    for v6 in [false, true] {
        let p = packet(v6, LINE);
        let tcp = p.tcp_bytes();
        let frags = vec![
            p.ip_fragment(9, 0, &tcp[..8], true),
            p.ip_fragment(9, 8, &tcp[8..], false),
        ];
        let mut d = decoder();
        let got = feed(&mut d, 0, &frags);
        let s = d.stats().fragments;
        if v6 {
            assert!(got.is_empty());
            assert_eq!((s.malformed, s.reassembled), (1, 0));
        } else {
            assert_eq!(got, vec![(LINE.to_vec(), Checksum::Good)]);
        }
    }
}

#[test]
fn overlap_discards_the_datagram_duplicate_is_ignored() {
    for v6 in [false, true] {
        let p = packet(v6, LINE);
        let tcp = p.tcp_bytes();
        // An overlapping fragment with other bytes ("evil" in the address):
        // Linux drops the whole datagram, so must we.
        let mut evil = tcp[16..40].to_vec();
        evil.iter_mut().for_each(|b| *b = b'e');
        let frags = vec![
            p.ip_fragment(11, 0, &tcp[..24], true),
            p.ip_fragment(11, 16, &evil, true),
            p.ip_fragment(11, 24, &tcp[24..], false),
        ];
        let mut d = decoder();
        assert!(feed(&mut d, 0, &frags).is_empty(), "v6 {v6}");
        let s = d.stats().fragments;
        assert_eq!((s.overlaps, s.reassembled), (1, 0));
        // The rest started a new datagram that never completes.
        d.finish();
        assert_eq!(d.stats().fragments.timed_out, 1);

        // A fragment entirely inside received data, with other bytes, is
        // a duplicate: ignored, the first bytes stay.
        let mut dup = tcp[24..32].to_vec();
        dup.iter_mut().for_each(|b| *b = b'X');
        let frags = vec![
            p.ip_fragment(12, 0, &tcp[..40], true),
            p.ip_fragment(12, 24, &dup, true),
            p.ip_fragment(12, 40, &tcp[40..], false),
        ];
        let mut d = decoder();
        assert_eq!(
            feed(&mut d, 0, &frags),
            vec![(LINE.to_vec(), Checksum::Good)]
        );
        assert_eq!(d.stats().fragments.duplicates, 1);
    }
}

#[test]
fn inconsistent_ends_and_unaligned_fragments() {
    let p = packet(false, LINE);
    let tcp = p.tcp_bytes();
    // Two last fragments with different ends.
    let frags = vec![
        p.ip_fragment(3, 8, &tcp[8..24], false),
        p.ip_fragment(3, 8, &tcp[8..32], false),
    ];
    let mut d = decoder();
    assert!(feed(&mut d, 0, &frags).is_empty());
    assert_eq!(d.stats().fragments.malformed, 1);
    // IPv6: a non-last fragment whose length is not a multiple of 8.
    let p6 = packet(true, LINE);
    let tcp6 = p6.tcp_bytes();
    let mut d = decoder();
    assert!(feed(&mut d, 0, &[p6.ip_fragment(4, 0, &tcp6[..30], true)]).is_empty());
    assert_eq!(d.stats().fragments.malformed, 1);
}

#[test]
fn timeout_and_memory_limit() {
    let p = packet(false, LINE);
    let tcp = p.tcp_bytes();
    let first = p.ip_fragment(5, 0, &tcp[..24], true);
    let last = p.ip_fragment(5, 24, &tcp[24..], false);
    // The rest arrives 31 s later: the first was given up at 30 s.
    let mut d = decoder();
    assert!(feed(&mut d, 0, std::slice::from_ref(&first)).is_empty());
    assert!(feed(&mut d, 31_000_000, std::slice::from_ref(&last)).is_empty());
    assert_eq!(d.stats().fragments.timed_out, 1);
    // Within the time: reassembled.
    let mut d = decoder();
    assert!(feed(&mut d, 0, std::slice::from_ref(&first)).is_empty());
    assert_eq!(
        feed(&mut d, 29_000_000, std::slice::from_ref(&last)).len(),
        1
    );

    // Memory: many datagrams that never complete, against a 64 KiB cap.
    let mut d = Decoder::new(
        true,
        FragConfig {
            memcap: 64 << 10,
            ..FragConfig::default()
        },
    );
    let many: Vec<Vec<u8>> = (0..2000)
        .map(|i| p.ip_fragment(i, 0, &tcp[..24], true))
        .collect();
    assert!(feed(&mut d, 0, &many).is_empty());
    let s = d.stats().fragments;
    assert!(s.memcap_drops > 0, "{s:?}");
    // The cap holds, give or take the one datagram that crossed it.
    assert!(s.held_peak <= (64 << 10) + 1024, "{s:?}");
    // While over the cap, even a datagram's last fragment is dropped.
    assert!(feed(&mut d, 1000, std::slice::from_ref(&last)).is_empty());
}

/// The realistic session with the client's `MAIL FROM` segment sent as
/// IP fragments (in reverse order); first `overlaps` overlapping,
/// conflicting sets (each discarded by Linux, an "evil" address in the
/// overlapping bytes), then the clean one.
fn fragmented_mail_from(v6: bool, overlaps: u32) -> Vec<u8> {
    let mut conv = realistic_conversation(1460);
    let (c, s) = endpoints(v6);
    conv.client = c;
    conv.server = s;
    let frames: Vec<TimedFrame> = render(&conv, &conv.packets(), RenderOptions::default());
    let mut w = PcapWriter::new(Vec::new(), linktype::ETHERNET).unwrap();
    let mut done = false;
    for (ts, f) in &frames {
        let seg = parse_frame(linktype::ETHERNET, *ts, f).unwrap();
        if done || !seg.payload.starts_with(b"MAIL FROM") {
            w.write_frame(*ts, f, f.len() as u32).unwrap();
            continue;
        }
        done = true;
        let p = TcpPacket::new(seg.src, seg.dst, seg.seq, seg.ack, seg.flags.0, seg.payload);
        let tcp = p.tcp_bytes();
        let mut ips = Vec::new();
        for i in 0..overlaps {
            // Bytes 4..20 of the payload: " FROM:<alice@exa" becomes "zzz…".
            let mut evil = tcp[24..40].to_vec();
            evil.iter_mut().for_each(|b| *b = b'z');
            ips.push(p.ip_fragment(1000 + i, 0, &tcp[..32], true));
            ips.push(p.ip_fragment(1000 + i, 24, &evil, true));
        }
        ips.push(p.ip_fragment(2, 24, &tcp[24..], false));
        ips.push(p.ip_fragment(2, 0, &tcp[..24], true));
        for (i, ip) in ips.iter().enumerate() {
            let frame = ethernet_frame(&[], ip);
            w.write_frame(ts + i as u64, &frame, frame.len() as u32)
                .unwrap();
        }
    }
    assert!(done);
    w.into_inner()
}

/// The `anomaly` lines of decoder events.
fn decode_anomalies(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    of_type(lines, "anomaly")
        .into_iter()
        .filter(|l| l["anomaly"]["type"] == "decode")
        .collect()
}

#[test]
fn replay_reports_a_fragmented_mail_from() {
    for v6 in [false, true] {
        for overlap in [false, true] {
            let name = format!("frag-mail-{v6}-{overlap}");
            let (summary, lines) =
                replay_pcap(&name, &fragmented_mail_from(v6, u32::from(overlap)));
            let smtp = of_type(&lines, "smtp");
            let mails: Vec<_> = smtp
                .iter()
                .map(|l| l["smtp"]["mail_from"].as_str().unwrap_or("").to_string())
                .collect();
            // What the server stored: the clean datagram, never the
            // discarded overlapping one.
            assert!(
                mails
                    .first()
                    .is_some_and(|m| m.contains("alice@example.org") && !m.contains('z')),
                "v6 {v6} overlap {overlap}: {mails:?}"
            );
            let f = &summary.decode.fragments;
            assert_eq!(f.reassembled, 1, "{f:?}");
            assert_eq!(f.overlaps, u64::from(overlap), "{f:?}");
            assert!(summary
                .line()
                .contains(&format!("{} overlapping", u64::from(overlap))));

            // One anomaly per discarded datagram, as Suricata writes a
            // decoder event, tied to the flow by its Community ID (the
            // held first fragment showed the ports).
            let anomalies = decode_anomalies(&lines);
            assert_eq!(anomalies.len(), usize::from(overlap), "{anomalies:?}");
            assert_eq!(summary.output.decode_anomaly, u64::from(overlap));
            if let Some(a) = anomalies.first() {
                let (c, s) = endpoints(v6);
                let event = if v6 {
                    "decoder.ipv6.frag_overlap"
                } else {
                    "decoder.ipv4.frag_overlap"
                };
                assert_eq!(a["anomaly"]["event"], event, "{a}");
                assert_eq!(a["src_ip"], c.ip().to_string());
                assert_eq!(a["dest_ip"], s.ip().to_string());
                assert_eq!(
                    (a["src_port"].as_u64(), a["dest_port"].as_u64()),
                    (Some(40000), Some(25))
                );
                assert_eq!(a["proto"], "TCP");
                assert!(
                    a.get("flow_id").is_none() && a.get("app_proto").is_none(),
                    "{a}"
                );
                assert_eq!(a["community_id"], smtp[0]["community_id"], "{a}");
                assert!(a["timestamp"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("+0000")));
            }
        }
    }
}

#[test]
fn overlap_anomalies_are_bounded_per_replay() {
    // More discarded datagrams than --anomalies-per-kind (default 10):
    // 10 lines per IP version, the rest counted in the summary.
    let n = smtp_user::output::DEFAULT_ANOMALIES_PER_KIND + 5;
    for v6 in [false, true] {
        let (summary, lines) =
            replay_pcap(&format!("frag-bound-{v6}"), &fragmented_mail_from(v6, n));
        let f = &summary.decode.fragments;
        assert_eq!((f.overlaps, f.reassembled), (u64::from(n), 1), "{f:?}");
        assert_eq!(decode_anomalies(&lines).len(), 10);
        assert_eq!(summary.frag_overlaps_not_written, 5);
        assert!(
            summary
                .line()
                .contains(&format!("{n} overlapping (5 not written)")),
            "{}",
            summary.line()
        );
        // The delivered message is still reported.
        assert!(of_type(&lines, "smtp")
            .first()
            .is_some_and(|l| l["smtp"]["mail_from"]
                .as_str()
                .is_some_and(|m| m.contains("alice@example.org"))));
    }
}

/// Ports of a discarded datagram are known only when its first fragment
/// was seen: without it, the anomaly has addresses only (and validates).
#[test]
fn overlap_without_the_first_fragment_has_no_ports() {
    let p = packet(false, LINE);
    let tcp = p.tcp_bytes();
    let mut evil = tcp[32..48].to_vec();
    evil.iter_mut().for_each(|b| *b = b'e');
    let mut d = decoder();
    let frags = vec![
        p.ip_fragment(21, 24, &tcp[24..40], true),
        p.ip_fragment(21, 32, &evil, true),
    ];
    assert!(feed(&mut d, 0, &frags).is_empty());
    // feed() does not take it: the last decode discarded the datagram.
    let o = d.take_overlap().expect("overlap reported");
    assert_eq!((o.ident, o.ports), (21, None));
    assert!(d.take_overlap().is_none(), "reported once");
    let mut out = Vec::new();
    let mut w = smtp_user::output::EveWriter::new(&mut out, false);
    w.frag_overlap(&o).unwrap();
    let lines = parse_lines(&out);
    assert_eq!(lines.len(), 1);
    let a = &lines[0];
    assert!(
        a.get("src_port").is_none() && a.get("community_id").is_none(),
        "{a}"
    );
    assert_eq!(a["anomaly"]["event"], "decoder.ipv4.frag_overlap");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

        /// Any cut of a datagram into 8-byte-aligned fragments, in any
        /// order, reassembles to the segment; memory goes back to zero.
        #[test]
        fn any_cut_in_any_order_reassembles(
            v6 in any::<bool>(),
            cuts in prop::collection::btree_set(1usize..12, 0..6),
            order in any::<prop::sample::Index>(),
        ) {
            let payload: Vec<u8> = (0..70u8).collect();
            let p = packet(v6, &payload);
            let tcp = p.tcp_bytes();
            let mut bounds: Vec<usize> = vec![0];
            // IPv6 first fragments must hold the TCP header: cuts from 24.
            bounds.extend(cuts.iter().map(|c| 16 + c * 8).filter(|&b| b < tcp.len()));
            bounds.push(tcp.len());
            bounds.dedup();
            let mut frags: Vec<Vec<u8>> = bounds
                .windows(2)
                .map(|w| p.ip_fragment(77, w[0], &tcp[w[0]..w[1]], w[1] < tcp.len()))
                .collect();
            let n = frags.len();
            frags.rotate_left(order.index(n));
            let mut d = decoder();
            let got = feed(&mut d, 0, &frags);
            prop_assert_eq!(got, vec![(payload.clone(), Checksum::Good)]);
            prop_assert_eq!(d.stats().fragments.held_bytes, 0);
        }

        /// Random fragments (any offset, length, flag, identification)
        /// never panic, never hold more than the memory limit (plus one
        /// datagram's worth), and hold nothing once finished.
        #[test]
        fn fragment_soup_is_bounded(
            v6 in any::<bool>(),
            soup in prop::collection::vec((0u32..4, 0usize..200, 0usize..80, any::<bool>()), 1..60),
        ) {
            let payload: Vec<u8> = (0..=255u8).cycle().take(300).collect();
            let p = packet(v6, &payload);
            let tcp = p.tcp_bytes();
            let mut d = Decoder::new(true, FragConfig { memcap: 2048, ..FragConfig::default() });
            let ips: Vec<Vec<u8>> = soup
                .iter()
                .map(|&(id, off, len, more)| {
                    let off = off.min(tcp.len());
                    let end = (off + len).min(tcp.len());
                    p.ip_fragment(id, off * 8 % 2048, &tcp[off..end], more)
                })
                .collect();
            let _ = feed(&mut d, 0, &ips);
            let s = d.stats().fragments;
            prop_assert!(s.held_peak <= 2048 + 2048, "{:?}", s);
            d.finish();
            prop_assert_eq!(d.stats().fragments.held_bytes, 0);
        }
    }
}
