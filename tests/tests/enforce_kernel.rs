//! Kernel enforcement on a real kernel, in network namespaces: the client IP
//! blocklist (with expiry), the end-of-data gate (held message ends, release,
//! TCP's retransmission delivering them, the latency that adds), bare RSTs
//! passing a drop verdict, and the counters of all three. Each scenario runs
//! with the TC and the XDP ingress hook.

use std::{
    io::{ErrorKind, Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use smtp_common::{FlowKey, Gate, Stat, Verdict, REC_HELD};
use smtp_e2e::{
    in_netns,
    netns::{CLIENT_V4, CLIENT_V6},
    require_root, MonitorThread, NetPair, OwnedRecord,
};
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

fn listen(pair: &NetPair, addr: SocketAddr) -> TcpListener {
    in_netns(&pair.server_ns, move || {
        TcpListener::bind(addr).expect("bind")
    })
    .join()
    .expect("listener")
}

/// Connects from the client namespace, waiting at most `wait`.
fn connect(pair: &NetPair, server: SocketAddr, wait: Duration) -> std::io::Result<TcpStream> {
    in_netns(&pair.client_ns, move || {
        let s = TcpStream::connect_timeout(&server, wait)?;
        s.set_nodelay(true)?;
        Ok(s)
    })
    .join()
    .expect("client thread")
}

/// A connection: (client end, server end).
fn connection(pair: &NetPair, l: &TcpListener, server: SocketAddr) -> (TcpStream, TcpStream) {
    let c = connect(pair, server, Duration::from_secs(5)).expect("connect");
    let s = l.accept().expect("accept").0;
    assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    (c, s)
}

/// Reads exactly `n` bytes within `wait`; `None` when they do not all come.
fn read_n(s: &mut TcpStream, n: usize, wait: Duration) -> Option<Vec<u8>> {
    let end = Instant::now() + wait;
    let mut buf = vec![0u8; n];
    let mut have = 0;
    while have < n {
        let left = end.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf[have..]) {
            Ok(0) => return None,
            Ok(k) => have += k,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    Some(buf)
}

fn held(r: &OwnedRecord) -> bool {
    r.header.rec_flags & REC_HELD != 0
}

/// (a) Blocked client addresses cannot connect nor send on an existing
/// connection; unblock and expiry restore them.
fn blocklist(ingress: IngressMode, tag: &str) {
    let pair = NetPair::new(tag);
    let mon = MonitorThread::start(&pair.server_ns, &pair.server_if, &[25], ingress);
    let (srv4, srv6) = (pair.server_addr(false, 25), pair.server_addr(true, 25));
    let (l4, l6) = (listen(&pair, srv4), listen(&pair, srv6));
    let (c4, c6): (IpAddr, IpAddr) = (CLIENT_V4.parse().unwrap(), CLIENT_V6.parse().unwrap());
    let short = Duration::from_millis(700);
    let (mut c, mut s) = connection(&pair, &l4, srv4);
    c.write_all(b"1").unwrap();
    assert_eq!(read_n(&mut s, 1, short).as_deref(), Some(&b"1"[..]));

    let mut ctl = mon.control();
    ctl.block_ip(c4, None).expect("block");
    assert_eq!(ctl.blocked_ips().unwrap(), vec![(c4, None)]);
    assert!(
        connect(&pair, srv4, short).is_err(),
        "blocked client connected"
    );
    c.write_all(b"2").unwrap();
    assert_eq!(
        read_n(&mut s, 1, short),
        None,
        "blocked client's data passed"
    );
    s.write_all(b"r").unwrap();
    assert_eq!(
        read_n(&mut c, 1, short),
        None,
        "data to a blocked client passed"
    );
    let dropped = mon.kernel_stats().get(Stat::DroppedByBlocklist);
    assert!(dropped >= 3, "dropped_by_blocklist={dropped}");
    // The other family's address is another key.
    let (_c6, _s6) = connection(&pair, &l6, srv6);
    ctl.block_ip(c6, None).expect("block v6");
    assert!(
        connect(&pair, srv6, short).is_err(),
        "blocked v6 client connected"
    );
    assert!(ctl.unblock_ip(c6).unwrap());

    assert!(ctl.unblock_ip(c4).unwrap());
    assert!(
        !ctl.unblock_ip(c4).unwrap(),
        "second unblock found an entry"
    );
    assert!(ctl.blocked_ips().unwrap().is_empty());
    let _ok = connection(&pair, &l4, srv4);
    // TCP retransmits what the blocklist dropped.
    let long = Duration::from_secs(10);
    assert_eq!(read_n(&mut s, 1, long).as_deref(), Some(&b"2"[..]));
    assert_eq!(read_n(&mut c, 1, long).as_deref(), Some(&b"r"[..]));

    // An entry with an expiry drops until it expires, then the kernel
    // deletes it on the next packet.
    let t0 = Instant::now();
    let ttl = Duration::from_millis(1500);
    ctl.block_ip(c4, Some(ttl)).expect("block for");
    let listed = ctl.blocked_ips().unwrap();
    assert_eq!(listed.len(), 1);
    let (ip, left) = listed[0];
    assert_eq!(ip, c4);
    let left = left.expect("remaining time");
    assert!(
        left <= ttl && left > ttl - Duration::from_millis(500),
        "{left:?}"
    );
    assert!(connect(&pair, srv4, Duration::from_millis(500)).is_err());
    std::thread::sleep((ttl + Duration::from_millis(100)).saturating_sub(t0.elapsed()));
    assert!(
        ctl.blocked_ips().unwrap().is_empty(),
        "expired entry listed"
    );
    let later = connect(&pair, srv4, Duration::from_secs(3)).expect("connect after expiry");
    let mut later_s = l4.accept().expect("accept").0;
    assert!(
        !ctl.unblock_ip(c4).unwrap(),
        "the kernel did not delete the expired entry"
    );
    // A bare RST of a blocked client still passes (resets end connections).
    ctl.block_ip(c4, None).expect("block");
    reset_arrives(later, &mut later_s);
    assert!(ctl.unblock_ip(c4).unwrap());
    let st = mon.kernel_stats();
    assert!(st.get(Stat::DroppedByBlocklist) >= dropped + 2);
    assert_eq!(st.get(Stat::DroppedByVerdict), 0);
    assert!(st.to_string().contains("dropped_by_blocklist="));
}

#[test]
fn blocklist_tc() {
    if !require_root("blocklist_tc") {
        return;
    }
    blocklist(IngressMode::Tc, "bltc");
}

#[test]
fn blocklist_xdp() {
    if !require_root("blocklist_xdp") {
        return;
    }
    blocklist(IngressMode::Xdp, "blxd");
}

/// Waits for the held record of `payload`; returns the end sequence number
/// of its segment.
fn held_end(mon: &MonitorThread, payload: &[u8]) -> u32 {
    let want = |r: &OwnedRecord| held(r) && r.payload == payload;
    assert!(
        mon.wait_for(Duration::from_secs(3), |rs| rs.iter().any(want)),
        "no held record of {:?}",
        String::from_utf8_lossy(payload)
    );
    let recs = mon.records();
    let r = recs.iter().find(|r| want(r)).expect("held record");
    r.header.seq.wrapping_add(r.header.payload_len)
}

/// Sends a message end on a gated flow, releases it as soon as its held copy
/// arrives; returns the time from release to delivery (prints the times
/// from the send too).
fn gated_send(
    mon: &MonitorThread,
    ctl: &mut smtp_user::datapath::Control,
    k: &FlowKey,
    c: &mut TcpStream,
    s: &mut TcpStream,
    msg: &[u8],
) -> Duration {
    let sent = Instant::now();
    c.write_all(msg).unwrap();
    let end = held_end(mon, msg);
    let t = Instant::now();
    ctl.release_gate(k, end).expect("release");
    let got = read_n(s, msg.len(), Duration::from_secs(10));
    let d = t.elapsed();
    assert_eq!(got.as_deref(), Some(msg), "released message not delivered");
    println!(
        "  released {} ms after the send, delivered {} ms after the send",
        (t - sent).as_millis(),
        sent.elapsed().as_millis()
    );
    d
}

/// (b) The gate holds message ends until released; TCP retransmits them.
fn gate(ingress: IngressMode, tag: &str, rounds: usize) {
    let pair = NetPair::new(tag);
    let mon = MonitorThread::start(&pair.server_ns, &pair.server_if, &[25], ingress);
    let server = pair.server_addr(false, 25);
    let l = listen(&pair, server);
    let (mut c, mut s) = connection(&pair, &l, server);
    let k = key(c.local_addr().unwrap(), server);
    let mut ctl = mon.control();
    ctl.arm_gate(&k).expect("arm");
    assert_eq!(ctl.gate(&k), Some(Gate::default()));
    let short = Duration::from_millis(800);

    // A segment that does not end a message passes.
    let cmd = b"MAIL FROM:<a@example.org>\r\n";
    c.write_all(cmd).unwrap();
    assert_eq!(read_n(&mut s, cmd.len(), short).as_deref(), Some(&cmd[..]));

    // A message end is held: not delivered, copied with REC_HELD, counted;
    // held for 3 s, its retransmissions show TCP's timer on veth.
    let msg = b"Subject: t\r\n\r\nhello\r\n.\r\n";
    let t_sent = Instant::now();
    c.write_all(msg).unwrap();
    assert_eq!(
        read_n(&mut s, msg.len(), short),
        None,
        "held message passed"
    );
    let end = held_end(&mon, msg);
    std::thread::sleep(Duration::from_secs(3).saturating_sub(t_sent.elapsed()));
    assert_eq!(read_n(&mut s, 1, Duration::from_millis(10)), None);
    let copies: Vec<u64> = mon
        .records()
        .iter()
        .filter(|r| held(r) && r.payload == msg)
        .map(|r| r.header.ts_ns)
        .collect();
    let g = ctl.gate(&k).expect("gate");
    assert!(
        g.held as usize >= copies.len(),
        "gate held {} < {} copies",
        g.held,
        copies.len()
    );
    assert!(copies.len() >= 2, "no retransmission within 3 s");
    let after_ms: Vec<u64> = copies.iter().map(|t| (t - copies[0]) / 1_000_000).collect();
    println!("{ingress}: held copies of one segment at ms {after_ms:?} after the first (TCP retransmission schedule on veth)");
    let held_now = mon.kernel_stats().get(Stat::GateHeld);
    assert!(held_now >= copies.len() as u64, "gate_held={held_now}");
    let t_rel = Instant::now();
    ctl.release_gate(&k, end).expect("release");
    assert_eq!(
        read_n(&mut s, msg.len(), Duration::from_secs(20)).as_deref(),
        Some(&msg[..])
    );
    println!(
        "{ingress}: after a 3 s hold, delivered {:?} after release",
        t_rel.elapsed()
    );
    assert!(mon.kernel_stats().get(Stat::GatePassed) >= 1);

    // Messages released as soon as userspace sees their held copy: the
    // gate latency.
    let mut lat = Vec::new();
    for i in 0..rounds {
        let m = format!("Subject: {i}\r\n\r\nbody {i}\r\n.\r\n");
        lat.push(gated_send(&mon, &mut ctl, &k, &mut c, &mut s, m.as_bytes()));
    }
    // An end followed by more data in the same segment (pipelining) is not
    // at the segment's end: it passes (userspace reports it as gate_missed).
    let held_before = mon.kernel_stats().get(Stat::GateHeld);
    let piped = b"last\r\n.\r\nQUIT\r\n";
    c.write_all(piped).unwrap();
    assert_eq!(
        read_n(&mut s, piped.len(), short).as_deref(),
        Some(&piped[..])
    );
    assert_eq!(mon.kernel_stats().get(Stat::GateHeld), held_before);
    // A released gate holds the next message end again; `.\r\n` alone ends
    // a message too.
    let body = b"more text\r\n";
    c.write_all(body).unwrap();
    assert_eq!(
        read_n(&mut s, body.len(), short).as_deref(),
        Some(&body[..])
    );
    lat.push(gated_send(&mon, &mut ctl, &k, &mut c, &mut s, b".\r\n"));
    lat.sort();
    let ms: Vec<u128> = lat.iter().map(|d| d.as_millis()).collect();
    println!(
        "{ingress}: gate latency (release → server has the message) ms {ms:?}, median {} ms",
        ms[ms.len() / 2]
    );
    let st = mon.kernel_stats();
    assert!(st.get(Stat::GatePassed) >= 2 + rounds as u64, "{st}");
    assert!(st.get(Stat::GateHeld) >= copies.len() as u64 + 1 + rounds as u64);
    assert_eq!(st.get(Stat::DroppedByVerdict), 0);

    // BDAT: the segment carrying the declared end is held until released;
    // later segments pass.
    let chunk = b"0123456789";
    let bdat_end = end_of_next(&mon, &k, &mut c, &mut s).wrapping_add(chunk.len() as u32);
    ctl.gate_bdat(&k, bdat_end).expect("bdat");
    c.write_all(chunk).unwrap();
    assert_eq!(read_n(&mut s, chunk.len(), short), None, "BDAT end passed");
    assert_eq!(held_end(&mon, chunk), bdat_end);
    ctl.release_gate(&k, bdat_end).expect("release");
    assert_eq!(
        read_n(&mut s, chunk.len(), Duration::from_secs(10)).as_deref(),
        Some(&chunk[..])
    );
    let next = b"RSET\r\n";
    c.write_all(next).unwrap();
    assert_eq!(
        read_n(&mut s, next.len(), short).as_deref(),
        Some(&next[..])
    );

    // Disarmed: a held retransmission passes, and later ends pass at once.
    let z = b"z\r\n.\r\n";
    c.write_all(z).unwrap();
    assert_eq!(read_n(&mut s, z.len(), short), None, "message end passed");
    held_end(&mon, z);
    ctl.disarm_gate(&k).expect("disarm");
    assert_eq!(ctl.gate(&k), None);
    assert_eq!(
        read_n(&mut s, z.len(), Duration::from_secs(10)).as_deref(),
        Some(&z[..])
    );
    let m = b"x\r\n.\r\n";
    c.write_all(m).unwrap();
    assert_eq!(read_n(&mut s, m.len(), short).as_deref(), Some(&m[..]));
    // Monitor mode: an armed gate holds nothing.
    ctl.arm_gate(&k).expect("arm");
    ctl.set_enforce(false).expect("enforce off");
    c.write_all(b"y\r\n.\r\n").unwrap();
    assert_eq!(
        read_n(&mut s, 6, short).as_deref(),
        Some(&b"y\r\n.\r\n"[..])
    );
    assert_eq!(ctl.gate(&k).map(|g| g.held), Some(0));
}

/// Sends a line that ends no message and returns the sequence number after
/// it (the next byte the client sends), from its record.
fn end_of_next(mon: &MonitorThread, k: &FlowKey, c: &mut TcpStream, s: &mut TcpStream) -> u32 {
    let line = b"BDAT 10 LAST\r\n";
    c.write_all(line).unwrap();
    assert_eq!(
        read_n(s, line.len(), Duration::from_secs(2)).as_deref(),
        Some(&line[..])
    );
    let want = |r: &OwnedRecord| r.header.key == *k && r.payload == line;
    assert!(
        mon.wait_for(Duration::from_secs(2), |rs| rs.iter().any(want)),
        "no record of the BDAT line"
    );
    let recs = mon.records();
    let r = recs
        .iter()
        .find(|r| want(r))
        .expect("record of the BDAT line");
    r.header.seq.wrapping_add(r.header.payload_len)
}

#[test]
fn gate_tc() {
    if !require_root("gate_tc") {
        return;
    }
    gate(IngressMode::Tc, "gtc", 5);
}

/// The gate on IPv6: held, released, delivered.
#[test]
fn gate_ipv6_tc() {
    if !require_root("gate_ipv6_tc") {
        return;
    }
    let pair = NetPair::new("g6");
    let mon = MonitorThread::start(&pair.server_ns, &pair.server_if, &[25], IngressMode::Tc);
    let server = pair.server_addr(true, 25);
    let l = listen(&pair, server);
    let (mut c, mut s) = connection(&pair, &l, server);
    let k = key(c.local_addr().unwrap(), server);
    let mut ctl = mon.control();
    ctl.arm_gate(&k).expect("arm");
    let msg = b"Subject: six\r\n\r\nv6\r\n.\r\n";
    let d = gated_send(&mon, &mut ctl, &k, &mut c, &mut s, msg);
    println!("ipv6 tc: gate latency {} ms", d.as_millis());
    // One copy held unless the machine was too slow to release it before
    // the first retransmission.
    let held = ctl.gate(&k).expect("gate").held;
    assert!(held >= 1);
    let st = mon.kernel_stats();
    assert_eq!(st.get(Stat::GateHeld), u64::from(held));
    assert!(st.get(Stat::GatePassed) >= 1);
}

#[test]
fn gate_xdp() {
    if !require_root("gate_xdp") {
        return;
    }
    gate(IngressMode::Xdp, "gxdp", 2);
}

/// Closes `c` with SO_LINGER 0 (a bare RST with seq = the peer's rcv_nxt)
/// and checks that its peer `s` sees the reset.
fn reset_arrives(c: TcpStream, s: &mut TcpStream) {
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd and option buffer.
    let rc = unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &lg as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(c);
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("read {n} bytes instead of a reset"),
    }
}

/// (c) A drop verdict drops data but lets a payload-less RST through.
fn rst_passes(ingress: IngressMode, tag: &str) {
    let pair = NetPair::new(tag);
    let mon = MonitorThread::start(&pair.server_ns, &pair.server_if, &[25], ingress);
    let server = pair.server_addr(false, 25);
    let l = listen(&pair, server);
    let (mut c, mut s) = connection(&pair, &l, server);
    let mut ctl = mon.control();
    ctl.set_verdict(&key(c.local_addr().unwrap(), server), Verdict::Drop)
        .expect("verdict");
    assert_eq!(ctl.drop_verdicts().unwrap().len(), 1);
    s.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut c, 1, Duration::from_millis(700)), None);
    let before = mon.kernel_stats().get(Stat::DroppedByVerdict);
    assert!(before >= 1);
    reset_arrives(c, &mut s);
    let rst = |r: &OwnedRecord| r.header.tcp_flags & 0x04 != 0 && r.payload.is_empty();
    assert!(
        mon.wait_for(Duration::from_secs(2), |rs| rs.iter().any(rst)),
        "the RST was not recorded"
    );
}

#[test]
fn drop_verdict_lets_rst_through_tc() {
    if !require_root("drop_verdict_lets_rst_through_tc") {
        return;
    }
    rst_passes(IngressMode::Tc, "rtc");
}

#[test]
fn drop_verdict_lets_rst_through_xdp() {
    if !require_root("drop_verdict_lets_rst_through_xdp") {
        return;
    }
    rst_passes(IngressMode::Xdp, "rxdp");
}

/// With the gate switched on (`Config::gate`), the client's SYN arms its
/// flow's gate in the kernel: a message end is held with no userspace
/// action at all, and the server's SYN-ACK does not arm anything.
#[test]
fn gate_switch_arms_flows_at_syn_tc() {
    if !require_root("gate_switch_arms_flows_at_syn_tc") {
        return;
    }
    let pair = NetPair::new("gsyn");
    let opts = smtp_user::datapath::MonitorOptions {
        iface: Some(pair.server_if.clone()),
        gate: true,
        ..Default::default()
    };
    let mon = MonitorThread::start_opts(&pair.server_ns, opts, true);
    let server = pair.server_addr(false, 25);
    let l = listen(&pair, server);
    let (mut c, mut s) = connection(&pair, &l, server);
    let k = key(c.local_addr().unwrap(), server);
    let mut ctl = mon.control();
    assert_eq!(ctl.config().expect("config").gate, 1);
    assert_eq!(ctl.gate(&k), Some(Gate::default()), "armed at the SYN");
    let msg = b"Subject: syn\r\n\r\narmed by the kernel\r\n.\r\n";
    let d = gated_send(&mon, &mut ctl, &k, &mut c, &mut s, msg);
    println!(
        "gate armed at SYN: delivered {} ms after release",
        d.as_millis()
    );
    assert!(ctl.gate(&k).expect("gate").held >= 1);
    // Disarmed (what userspace does for flows no rule applies to): the next
    // end passes at once.
    ctl.disarm_gate(&k).expect("disarm");
    let next = b"x\r\n.\r\n";
    c.write_all(next).unwrap();
    assert_eq!(
        read_n(&mut s, next.len(), Duration::from_secs(2)).as_deref(),
        Some(&next[..])
    );
    // With the switch off, a new connection gets no gate.
    let mut cfg = ctl.config().expect("config");
    cfg.gate = 0;
    ctl.set_config(&cfg).expect("config");
    let (c2, _s2) = connection(&pair, &l, server);
    assert_eq!(ctl.gate(&key(c2.local_addr().unwrap(), server)), None);
}
