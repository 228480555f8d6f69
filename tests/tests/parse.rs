//! The kernel parser on crafted frames: one VLAN tag (802.1Q, 802.1ad),
//! IPv4 options, IPv6 extension headers and fragments, truncated headers.
//! Frames that carry a TCP header to port 25 give a record with the right
//! payload; non-first fragments and truncated headers give none.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use smtp_e2e::{
    frames::{self, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6},
    in_netns,
    netns::{CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6},
    require_root, MonitorThread, NetPair,
};
use smtp_user::datapath::IngressMode;

const TCP: u8 = 6;
const HOPOPTS: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DSTOPTS: u8 = 60;
const PSH_ACK: u8 = 0x18;

/// (source port, frame, expected payload if a record must appear)
type Case = (u16, Vec<u8>, Option<&'static [u8]>);

fn cases() -> Vec<Case> {
    let (c4, s4): (Ipv4Addr, Ipv4Addr) = (CLIENT_V4.parse().unwrap(), SERVER_V4.parse().unwrap());
    let (c6, s6): (Ipv6Addr, Ipv6Addr) = (CLIENT_V6.parse().unwrap(), SERVER_V6.parse().unwrap());
    let t = |sport: u16, p: &[u8]| frames::tcp(sport, 25, 1000, PSH_ACK, p);
    let v4 = |opts: &[u8], frag: u16, l4: &[u8]| frames::ipv4(c4, s4, opts, frag, l4);
    let cat = |parts: &[&[u8]]| parts.concat();
    vec![
        // One 802.1Q tag.
        (
            41001,
            frames::eth(&[ETH_P_8021Q], ETH_P_IP, &v4(&[], 0, &t(41001, b"vlan-q"))),
            Some(b"vlan-q"),
        ),
        // One 802.1ad tag.
        (
            41002,
            frames::eth(
                &[ETH_P_8021AD],
                ETH_P_IP,
                &v4(&[], 0, &t(41002, b"vlan-ad")),
            ),
            Some(b"vlan-ad"),
        ),
        // IPv4 with 8 bytes of options (IHL 7).
        (
            41003,
            frames::eth(&[], ETH_P_IP, &v4(&[1; 8], 0, &t(41003, b"ipv4-opts"))),
            Some(b"ipv4-opts"),
        ),
        // IPv4 first fragment (MF set, offset 0): TCP header present.
        (
            41004,
            frames::eth(&[], ETH_P_IP, &v4(&[], 0x2000, &t(41004, b"first-frag"))),
            Some(b"first-frag"),
        ),
        // IPv4 non-first fragment whose bytes look like a TCP header to 25.
        (
            41005,
            frames::eth(&[], ETH_P_IP, &v4(&[], 0x0010, &t(41005, b"not-tcp"))),
            None,
        ),
        // IPv6, hop-by-hop + routing + destination options (16 bytes).
        (
            41006,
            frames::eth(
                &[],
                ETH_P_IPV6,
                &frames::ipv6(
                    c6,
                    s6,
                    HOPOPTS,
                    &cat(&[
                        &frames::ext8(ROUTING),
                        &frames::ext8(DSTOPTS),
                        &frames::ext16(TCP),
                        &t(41006, b"v6-ext"),
                    ]),
                ),
            ),
            Some(b"v6-ext"),
        ),
        // IPv6 first fragment.
        (
            41007,
            frames::eth(
                &[],
                ETH_P_IPV6,
                &frames::ipv6(
                    c6,
                    s6,
                    FRAGMENT,
                    &cat(&[&frames::frag6(TCP, 0, true), &t(41007, b"v6-first")]),
                ),
            ),
            Some(b"v6-first"),
        ),
        // IPv6 non-first fragment that looks like TCP to 25.
        (
            41008,
            frames::eth(
                &[],
                ETH_P_IPV6,
                &frames::ipv6(
                    c6,
                    s6,
                    FRAGMENT,
                    &cat(&[&frames::frag6(TCP, 3, false), &t(41008, b"v6-not-tcp")]),
                ),
            ),
            None,
        ),
        // VLAN + IPv6 with extension header.
        (
            41009,
            frames::eth(
                &[ETH_P_8021Q],
                ETH_P_IPV6,
                &frames::ipv6(
                    c6,
                    s6,
                    DSTOPTS,
                    &cat(&[&frames::ext8(TCP), &t(41009, b"vlan-v6")]),
                ),
            ),
            Some(b"vlan-v6"),
        ),
        // Truncated: IPv4 says TCP, the frame ends inside the TCP header.
        (
            41010,
            {
                let mut f = frames::eth(&[], ETH_P_IP, &v4(&[], 0, &t(41010, b"")));
                f.truncate(14 + 20 + 10);
                f
            },
            None,
        ),
    ]
}

fn check(ingress: IngressMode, tag: &str) {
    let pair = NetPair::new(tag);
    let mon = MonitorThread::start(&pair.server_ns, &pair.server_if, &[25], ingress);
    let cases = cases();
    let frames: Vec<Vec<u8>> = cases.iter().map(|c| c.1.clone()).collect();
    let iface = pair.client_if.clone();
    in_netns(&pair.client_ns, move || frames::send(&iface, &frames))
        .join()
        .expect("send");
    let want = cases.iter().filter(|c| c.2.is_some()).count();
    let got_all = mon.wait_for(Duration::from_secs(5), |r| {
        r.iter()
            .filter(|r| (41001..=41010).contains(&r.src.port()))
            .count()
            >= want
    });
    // Give frames that must not produce records time to show up anyway.
    std::thread::sleep(Duration::from_millis(300));
    let recs = mon.records();
    assert!(got_all, "{ingress}: missing records: {recs:?}");
    for (sport, _, expect) in &cases {
        let mine: Vec<_> = recs.iter().filter(|r| r.src.port() == *sport).collect();
        match expect {
            Some(p) => {
                assert_eq!(mine.len(), 1, "{ingress} case {sport}: {mine:?}");
                assert_eq!(mine[0].payload, *p, "{ingress} case {sport}");
                assert_eq!(mine[0].header.seq, 1000);
                assert_eq!(mine[0].dst.port(), 25);
            }
            None => assert!(
                mine.is_empty(),
                "{ingress} case {sport} misparsed: {mine:?}"
            ),
        }
    }
}

#[test]
fn crafted_frames_tc() {
    if !require_root("crafted_frames_tc") {
        return;
    }
    check(IngressMode::Tc, "pftc");
}

#[test]
fn crafted_frames_xdp() {
    if !require_root("crafted_frames_xdp") {
        return;
    }
    check(IngressMode::Xdp, "pfxd");
}
