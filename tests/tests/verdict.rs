//! Drop verdicts stop a flow in both directions while another flow keeps
//! working; monitor mode (enforcement off) lets it through again.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use smtp_common::{FlowKey, Stat, Verdict};
use smtp_e2e::{in_netns, require_root, MonitorThread, NetPair};
use smtp_user::datapath::IngressMode;

fn key(a: SocketAddr, b: SocketAddr) -> FlowKey {
    let bytes = |s: SocketAddr| match s.ip() {
        std::net::IpAddr::V4(v4) => {
            let mut x = [0u8; 16];
            x[..4].copy_from_slice(&v4.octets());
            x
        }
        std::net::IpAddr::V6(v6) => v6.octets(),
    };
    let fam = if a.is_ipv4() { 4 } else { 6 };
    FlowKey::new(fam, bytes(a), a.port(), bytes(b), b.port()).0
}

/// Sends one byte, expects it echoed within `wait`.
fn ping(s: &mut TcpStream, b: u8, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).expect("timeout");
    if s.write_all(&[b]).is_err() {
        return false;
    }
    let mut got = [0u8; 1];
    matches!(s.read(&mut got), Ok(1) if got[0] == b)
}

fn check(ingress: IngressMode, tag: &str) {
    let pair = NetPair::new(tag);
    let mon = MonitorThread::start(&pair.server_ns, &pair.server_if, &[25], ingress);
    let server = pair.server_addr(false, 25);
    let (tx, rx) = std::sync::mpsc::channel();
    // Echo server: two connections, one thread each, bounded by timeouts.
    let srv = in_netns(&pair.server_ns, move || {
        let l = TcpListener::bind(server).expect("bind");
        tx.send(()).expect("ready");
        let mut hs = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = l.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            hs.push(std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }));
        }
        for h in hs {
            let _ = h.join();
        }
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    let clients = in_netns(&pair.client_ns, move || {
        let c = |_| TcpStream::connect_timeout(&server, Duration::from_secs(5)).expect("connect");
        (c(0), c(1))
    });
    let (mut a, mut b) = clients.join().expect("clients");
    let short = Duration::from_millis(1500);
    assert!(
        ping(&mut a, b'1', short) && ping(&mut b, b'1', short),
        "echo before verdict"
    );

    let mut ctl = mon.control();
    let ka = key(a.local_addr().unwrap(), server);
    ctl.set_verdict(&ka, Verdict::Drop).expect("verdict");
    assert_eq!(ctl.verdict(&ka), Verdict::Drop);
    assert!(!ping(&mut a, b'2', short), "dropped flow still echoes");
    assert!(ping(&mut b, b'2', short), "other flow blocked");
    let dropped = mon.kernel_stats().get(Stat::DroppedByVerdict);
    assert!(dropped > 0);
    // No record of the dropped flow's new data reached userspace.
    assert!(!mon
        .records()
        .iter()
        .any(|r| r.src == a.local_addr().unwrap() && r.payload == b"2"));

    // Monitor mode: the same flow passes again (retransmission delivers '2').
    ctl.set_enforce(false).expect("enforce off");
    a.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = [0u8; 1];
    assert!(
        matches!(a.read(&mut got), Ok(1) if got[0] == b'2'),
        "flow still blocked in monitor mode"
    );
    assert!(ping(&mut a, b'3', short));
    assert!(ping(&mut b, b'3', short));
    drop(a);
    drop(b);
    let _ = srv.join();
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
}
