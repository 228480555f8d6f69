//! Drop verdicts stop a flow in both directions while another flow keeps
//! working; monitor mode (enforcement off) lets it through again.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use smtp_common::{FlowKey, Stat, Verdict};
use smtp_e2e::{in_netns, require_root, MonitorThread, NetPair};
use smtp_user::datapath::IngressMode;

fn key(a: SocketAddr, b: SocketAddr) -> FlowKey {
    let bytes = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => {
            let mut x = [0u8; 16];
            x[..4].copy_from_slice(&v4.octets());
            x
        }
        IpAddr::V6(v6) => v6.octets(),
    };
    let fam = if a.is_ipv4() { 4 } else { 6 };
    FlowKey::new(fam, bytes(a), a.port(), bytes(b), b.port()).0
}

/// Writes one byte on `from`; true when `to` reads it within `wait`.
fn delivers(from: &mut TcpStream, to: &mut TcpStream, b: u8, wait: Duration) -> bool {
    if from.write_all(&[b]).is_err() {
        return false;
    }
    arrives(to, b, wait)
}

/// True when `b` is the next byte `to` reads within `wait`.
fn arrives(to: &mut TcpStream, b: u8, wait: Duration) -> bool {
    to.set_read_timeout(Some(wait)).expect("timeout");
    let mut got = [0u8; 1];
    matches!(to.read(&mut got), Ok(1) if got[0] == b)
}

/// Two connections: (client end, server end) for each.
fn two_flows(pair: &NetPair, server: SocketAddr) -> [(TcpStream, TcpStream); 2] {
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = in_netns(&pair.server_ns, move || {
        let l = TcpListener::bind(server).expect("bind");
        tx.send(()).expect("ready");
        let a = l.accept().expect("accept").0;
        let b = l.accept().expect("accept").0;
        (a, b)
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    let (ca, cb) = in_netns(&pair.client_ns, move || {
        let ca = TcpStream::connect_timeout(&server, Duration::from_secs(5)).expect("connect");
        // Accept order = connect order: connect the second after the first.
        let cb = TcpStream::connect_timeout(&server, Duration::from_secs(5)).expect("connect");
        (ca, cb)
    })
    .join()
    .expect("clients");
    let (sa, sb) = srv.join().expect("server");
    assert_eq!(sa.peer_addr().unwrap(), ca.local_addr().unwrap());
    [(ca, sa), (cb, sb)]
}

fn check(ingress: IngressMode, tag: &str) {
    let pair = NetPair::new(tag);
    let mon = MonitorThread::start(&pair.server_ns, &pair.server_if, &[25], ingress);
    let server = pair.server_addr(false, 25);
    let [(mut ca, mut sa), (mut cb, mut sb)] = two_flows(&pair, server);
    let short = Duration::from_millis(1500);
    assert!(delivers(&mut ca, &mut sa, b'1', short) && delivers(&mut sa, &mut ca, b'1', short));
    assert!(delivers(&mut cb, &mut sb, b'1', short) && delivers(&mut sb, &mut cb, b'1', short));

    let mut ctl = mon.control();
    let ka = key(ca.local_addr().unwrap(), server);
    ctl.set_verdict(&ka, Verdict::Drop).expect("verdict");
    assert_eq!(ctl.verdict(&ka), Verdict::Drop);
    // Both directions of flow A stop (ingress and egress hooks)...
    assert!(
        !delivers(&mut ca, &mut sa, b'2', short),
        "client→server still passes"
    );
    assert!(
        !delivers(&mut sa, &mut ca, b'x', short),
        "server→client still passes"
    );
    // ...while flow B keeps working both ways.
    assert!(
        delivers(&mut cb, &mut sb, b'2', short),
        "other flow blocked (c→s)"
    );
    assert!(
        delivers(&mut sb, &mut cb, b'2', short),
        "other flow blocked (s→c)"
    );
    assert!(mon.kernel_stats().get(Stat::DroppedByVerdict) >= 2);
    // Dropped packets are not sent to userspace.
    let a_addr = ca.local_addr().unwrap();
    assert!(!mon
        .records()
        .iter()
        .any(|r| (r.src == a_addr || r.dst == a_addr) && (r.payload == b"2" || r.payload == b"x")));

    // Monitor mode: the same flow passes again (retransmissions deliver).
    ctl.set_enforce(false).expect("enforce off");
    let long = Duration::from_secs(10);
    assert!(
        arrives(&mut sa, b'2', long),
        "c→s still blocked in monitor mode"
    );
    assert!(
        arrives(&mut ca, b'x', long),
        "s→c still blocked in monitor mode"
    );
    assert!(delivers(&mut ca, &mut sa, b'3', short) && delivers(&mut sa, &mut ca, b'3', short));
    assert_eq!(
        ctl.verdict(&ka),
        Verdict::Drop,
        "verdict kept in monitor mode"
    );
    // Clearing the verdict and re-enabling enforcement keeps the flow alive.
    ctl.set_verdict(&ka, Verdict::Pass).expect("clear");
    ctl.set_enforce(true).expect("enforce on");
    assert!(delivers(&mut ca, &mut sa, b'4', short) && delivers(&mut sa, &mut ca, b'4', short));
}

#[test]
fn drop_verdict_stops_one_flow_tc() {
    if !require_root("drop_verdict_stops_one_flow_tc") {
        return;
    }
    check(IngressMode::Tc, "vtc");
}

#[test]
fn drop_verdict_stops_one_flow_xdp() {
    if !require_root("drop_verdict_stops_one_flow_xdp") {
        return;
    }
    check(IngressMode::Xdp, "vxdp");
    check(IngressMode::XdpGeneric, "vxg");
}
