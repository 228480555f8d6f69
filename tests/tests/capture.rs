//! Records reach userspace complete: both directions, SYN/FIN, IPv4 and
//! IPv6, only monitored ports, large (GSO/GRO) segments, exact counters.

use std::time::Duration;

use smtp_common::Stat;
use smtp_e2e::{require_root, streams, traffic, MonitorThread, NetPair};
use smtp_user::datapath::IngressMode;

const GREETING: &[u8] = b"220 mx.test ESMTP ready\r\n";

fn conversation(
    pair: &NetPair,
    v6: bool,
    port: u16,
    data: Vec<u8>,
) -> (std::net::SocketAddr, std::net::SocketAddr, Vec<u8>) {
    let server = pair.server_addr(v6, port);
    let srv = traffic::one_shot_server(&pair.server_ns, server, 1, GREETING.to_vec());
    let (local, got) = traffic::client(&pair.client_ns, server, data, GREETING.len())
        .join()
        .expect("client");
    assert_eq!(got, GREETING);
    let received = srv.join().expect("server").pop().expect("one conn");
    (local, server, received)
}

fn check_session(v6: bool, ingress: IngressMode, tag: &str) {
    let pair = NetPair::new(tag);
    let mon = MonitorThread::start(&pair.server_ns, &pair.server_if, &[25], ingress);
    let data = b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nQUIT\r\n".to_vec();
    let (client, server, received) = conversation(&pair, v6, 25, data.clone());
    assert_eq!(received, data);
    assert!(
        mon.wait_for(Duration::from_secs(5), |r| {
            let up = streams(r, client, server);
            let down = streams(r, server, client);
            up.fin && down.fin && up.bytes.len() == data.len() && down.bytes.len() == GREETING.len()
        }),
        "records incomplete: {:?}",
        mon.records()
    );
    let recs = mon.records();
    let up = streams(&recs, client, server);
    let down = streams(&recs, server, client);
    assert!(up.syn && up.fin && down.syn && down.fin);
    assert_eq!(up.bytes, data);
    assert_eq!(down.bytes, GREETING);
    assert!(!up.hole && !down.hole);
    assert_eq!(up.uncaptured + down.uncaptured, 0);
    // The kernel's checksum verdict on a clean session: never bad; with TC
    // every segment is vouched for (ingress: CHECKSUM_PARTIAL of the local
    // sender, seen through GSO marks; egress: the host's own packets).
    for r in &recs {
        assert_eq!(r.header.rec_flags & smtp_common::REC_CSUM_BAD, 0, "{r:?}");
        if ingress == IngressMode::Tc {
            assert_ne!(r.header.rec_flags & smtp_common::REC_CSUM_GOOD, 0, "{r:?}");
        }
    }
    // Directions: client→server records are marked so.
    for r in &recs {
        let c2s = r.dst == server;
        assert_eq!(
            r.header.dir == smtp_common::DIR_CLIENT_TO_SERVER,
            c2s,
            "{r:?}"
        );
    }
}

#[test]
fn ipv4_session_both_directions_tc() {
    if !require_root("ipv4_session_both_directions_tc") {
        return;
    }
    check_session(false, IngressMode::Tc, "v4tc");
}

#[test]
fn ipv4_session_both_directions_xdp() {
    if !require_root("ipv4_session_both_directions_xdp") {
        return;
    }
    check_session(false, IngressMode::Xdp, "v4xd");
}

#[test]
fn ipv4_session_both_directions_xdp_generic() {
    if !require_root("ipv4_session_both_directions_xdp_generic") {
        return;
    }
    check_session(false, IngressMode::XdpGeneric, "v4xg");
}

#[test]
fn ipv6_session_both_directions() {
    if !require_root("ipv6_session_both_directions") {
        return;
    }
    check_session(true, IngressMode::Tc, "v6tc");
    check_session(true, IngressMode::Xdp, "v6xd");
}

#[test]
fn only_monitored_ports_produce_records() {
    if !require_root("only_monitored_ports_produce_records") {
        return;
    }
    let pair = NetPair::new("port");
    let mon = MonitorThread::start(
        &pair.server_ns,
        &pair.server_if,
        &[25, 2525],
        IngressMode::Tc,
    );
    let (c80, s80, _) = conversation(&pair, false, 80, b"GET / HTTP/1.0\r\n\r\n".to_vec());
    let (c2525, s2525, _) = conversation(&pair, false, 2525, b"EHLO x\r\n".to_vec());
    assert!(
        mon.wait_for(Duration::from_secs(5), |r| streams(r, c2525, s2525).fin
            && streams(r, s2525, c2525).fin)
    );
    let recs = mon.records();
    assert!(
        recs.iter()
            .all(|r| r.src.port() != 80 && r.dst.port() != 80),
        "port 80 leaked: {:?}",
        recs.iter()
            .filter(|r| r.dst.port() == 80 || r.src.port() == 80)
            .collect::<Vec<_>>()
    );
    assert_eq!(streams(&recs, c2525, s2525).bytes, b"EHLO x\r\n");
    assert!(!streams(&recs, c80, s80).syn);
    let k = mon.kernel_stats();
    assert!(k.get(Stat::Packets) > k.get(Stat::MonitoredPackets));
}

#[test]
fn large_segments_arrive_complete() {
    if !require_root("large_segments_arrive_complete") {
        return;
    }
    let pair = NetPair::new("big");
    let mon = MonitorThread::start(&pair.server_ns, &pair.server_if, &[25], IngressMode::Tc);
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let (client, server, received) = conversation(&pair, false, 25, data.clone());
    assert_eq!(received, data);
    assert!(mon.wait_for(Duration::from_secs(5), |r| streams(r, client, server).fin));
    let up = streams(&mon.records(), client, server);
    assert!(!up.hole, "hole in capture");
    assert_eq!(up.uncaptured, 0);
    assert_eq!(up.bytes.len(), data.len());
    assert!(up.bytes == data, "captured bytes differ");
    // The test must exercise the split path: at least one segment bigger
    // than one record (GRO on the veth).
    assert!(
        up.max_segment as usize > smtp_common::CHUNK,
        "no segment above one record (max {})",
        up.max_segment
    );
    let k = mon.kernel_stats();
    assert_eq!(k.get(Stat::RecordsLost), 0);
    assert_eq!(k.get(Stat::BytesUncaptured), 0);
}

#[test]
fn counters_match_traffic() {
    if !require_root("counters_match_traffic") {
        return;
    }
    let pair = NetPair::new("cnt");
    let mon = MonitorThread::start(&pair.server_ns, &pair.server_if, &[25], IngressMode::Tc);
    let data = vec![b'a'; 3000];
    let (client, server, _) = conversation(&pair, false, 25, data.clone());
    assert!(
        mon.wait_for(Duration::from_secs(5), |r| streams(r, client, server).fin
            && streams(r, server, client).fin)
    );
    // Let late records (final ACKs do not produce records) settle.
    std::thread::sleep(Duration::from_millis(200));
    let k = mon.kernel_stats();
    let recs = mon.records();
    assert_eq!(
        k.get(Stat::MonitoredBytes),
        (data.len() + GREETING.len()) as u64,
        "{k}"
    );
    assert_eq!(k.get(Stat::RecordsSent), recs.len() as u64, "{k}");
    assert_eq!(k.get(Stat::RecordsLost), 0);
    assert_eq!(k.get(Stat::BytesUncaptured), 0);
    assert_eq!(k.get(Stat::DroppedByVerdict), 0);
    let with_payload_or_flags = recs.iter().filter(|r| r.header.offset == 0).count() as u64;
    assert!(k.get(Stat::MonitoredPackets) >= with_payload_or_flags);
    assert!(k.get(Stat::Packets) >= k.get(Stat::MonitoredPackets));
    let payload: usize = recs.iter().map(|r| r.payload.len()).sum();
    assert_eq!(payload, data.len() + GREETING.len());
    let u = mon.stop();
    assert_eq!(u.decode_errors, 0);
    assert_eq!(u.records, recs.len() as u64);
}

#[test]
fn ipv6_hop_by_hop_header_is_skipped() {
    if !require_root("ipv6_hop_by_hop_header_is_skipped") {
        return;
    }
    for (ingress, tag) in [(IngressMode::Tc, "hbt"), (IngressMode::Xdp, "hbx")] {
        let pair = NetPair::new(tag);
        let mon = MonitorThread::start(&pair.server_ns, &pair.server_if, &[25], ingress);
        let server = pair.server_addr(true, 25);
        let srv = traffic::one_shot_server(&pair.server_ns, server, 1, GREETING.to_vec());
        let data = b"EHLO hbh.test\r\n".to_vec();
        let (client, got) =
            traffic::client_with_hopopts(&pair.client_ns, server, data.clone(), GREETING.len())
                .join()
                .expect("client");
        assert_eq!(got, GREETING);
        assert_eq!(srv.join().expect("server").pop().expect("conn"), data);
        assert!(
            mon.wait_for(Duration::from_secs(5), |r| streams(r, client, server).fin),
            "{ingress}: {:?}",
            mon.records()
        );
        let up = streams(&mon.records(), client, server);
        assert!(up.syn && up.fin);
        assert_eq!(up.bytes, data);
    }
}

#[test]
fn ring_buffer_overflow_is_counted_and_visible_as_a_gap() {
    if !require_root("ring_buffer_overflow_is_counted_and_visible_as_a_gap") {
        return;
    }
    let pair = NetPair::new("ovf");
    // 16 KiB ring: a few 4 KiB records fit, a 64 KiB write cannot.
    let opts = smtp_user::datapath::MonitorOptions {
        iface: Some(pair.server_if.clone()),
        ringbuf_size: 16 * 1024,
        ..Default::default()
    };
    let mon = MonitorThread::start_opts(&pair.server_ns, opts, true);
    mon.pause(true);
    let data = vec![b'z'; 64 * 1024];
    let (client, server, received) = conversation(&pair, false, 25, data.clone());
    assert_eq!(received, data);
    std::thread::sleep(Duration::from_millis(200));
    let k = mon.kernel_stats();
    assert!(k.get(Stat::RecordsLost) > 0, "ring never overflowed: {k}");
    assert!(k.get(Stat::BytesUncaptured) > 0, "{k}");
    mon.pause(false);
    let k = mon.kernel_stats();
    let sent = k.get(Stat::RecordsSent);
    assert!(mon.wait_for(Duration::from_secs(5), |r| r.len() as u64 >= sent));
    let up = streams(&mon.records(), client, server);
    // What reached userspace has a hole (or lacks its end), never a silent
    // cut: every missing byte is counted by the kernel.
    assert!(up.bytes.len() < data.len());
    assert!(up.hole || !up.fin, "loss not visible as a gap");
    let bytes_read: u64 = mon
        .records()
        .iter()
        .filter(|r| r.src == client)
        .map(|r| r.payload.len() as u64)
        .sum();
    assert_eq!(
        bytes_read + k.get(Stat::BytesUncaptured),
        data.len() as u64,
        "read + uncaptured must account for every byte sent ({k})"
    );
}
