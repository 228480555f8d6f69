//! The `reset` action on a real kernel: both ends of a connection learn at
//! once that it is gone.
//!
//! * Local mode (the monitor on an end host): the socket is destroyed via
//!   sock_diag; the peer's blocking read fails with ECONNRESET, the local
//!   application's with ECONNABORTED. IPv4, IPv6, IPv4 on a dual-stack
//!   listener, and from the client's host.
//! * Gateway mode (client — router — server): forged RSTs carrying the next
//!   sequence numbers seen by a capture in the router reset both ends; the
//!   same RSTs one sequence number off do not.
//! * No socket and no sequence numbers, a socket in TIME-WAIT: the errors
//!   say so, and a listener on the port is left alone.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use smtp_e2e::{in_netns, require_root, router::Routed, router::SeqTracker, NetPair};
use smtp_user::enforce::{reset_connection, ResetError, ResetMethod, TcpEndpoints};

/// Both ends must see the reset within this time of the call.
const FAST: Duration = Duration::from_millis(200);
/// Bound of every blocking socket operation.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// An established connection `connect_to` from `client_ns` to a listener on
/// `listen` in `server_ns`: (client stream, server stream), after one byte
/// went each way.
fn connect(
    client_ns: &str,
    server_ns: &str,
    listen: SocketAddr,
    connect_to: SocketAddr,
) -> (TcpStream, TcpStream) {
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = in_netns(server_ns, move || {
        let l = TcpListener::bind(listen).expect("bind");
        tx.send(()).expect("ready");
        l.accept().expect("accept").0
    });
    rx.recv_timeout(IO_TIMEOUT).expect("server ready");
    let c = in_netns(client_ns, move || {
        TcpStream::connect_timeout(&connect_to, IO_TIMEOUT).expect("connect")
    })
    .join()
    .expect("client");
    let s = srv.join().expect("server");
    exchange(&c, &s, b'a');
    (c, s)
}

/// One byte each way; panics when it does not arrive.
fn exchange(c: &TcpStream, s: &TcpStream, b: u8) {
    for (mut from, mut to) in [(c, s), (s, c)] {
        from.write_all(&[b]).expect("write");
        to.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut got = [0u8; 1];
        to.read_exact(&mut got).expect("read");
        assert_eq!(got[0], b);
    }
}

/// A thread blocked in `read` on `s`: returns when and how the read ended.
fn blocked_read(s: &TcpStream) -> JoinHandle<(Instant, io::Result<usize>)> {
    let mut s = s.try_clone().expect("clone");
    std::thread::spawn(move || {
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut buf = [0u8; 64];
        let r = s.read(&mut buf);
        (Instant::now(), r)
    })
}

/// `f()` and how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

/// The read ended with `kind` within [`FAST`] of `t0`; returns the delay.
fn ended_with(
    who: &str,
    h: JoinHandle<(Instant, io::Result<usize>)>,
    t0: Instant,
    kind: io::ErrorKind,
) -> Duration {
    let (at, r) = h.join().expect("reader");
    let err = match r {
        Err(e) => e,
        Ok(n) => panic!("{who}: read returned {n} bytes instead of failing"),
    };
    assert_eq!(err.kind(), kind, "{who}: {err}");
    let took = at.saturating_duration_since(t0);
    assert!(at >= t0, "{who}: read failed before the reset");
    assert!(took < FAST, "{who}: reset seen after {took:?}");
    took
}

/// Local mode: readers blocked on both ends, `reset_connection` from the
/// namespace `reset_ns` → SocketDestroyed, the local end's read fails with
/// ECONNABORTED, the peer's with ECONNRESET, both within [`FAST`].
fn local_reset(pair: &NetPair, listen: SocketAddr, connect_to: SocketAddr, from_client: bool) {
    let (c, s) = connect(&pair.client_ns, &pair.server_ns, listen, connect_to);
    let ep = TcpEndpoints {
        client: c.local_addr().expect("addr"),
        server: connect_to,
        client_next_seq: None,
        server_next_seq: None,
    };
    let (rc, rs) = (blocked_read(&c), blocked_read(&s));
    std::thread::sleep(Duration::from_millis(50)); // readers are blocked
    let ns = if from_client {
        &pair.client_ns
    } else {
        &pair.server_ns
    };
    let t0 = Instant::now();
    let (method, call) = in_netns(ns, move || timed(|| reset_connection(&ep)))
        .join()
        .expect("reset thread");
    assert_eq!(method.expect("reset"), ResetMethod::SocketDestroyed);
    let (local_kind, peer_kind) = (
        io::ErrorKind::ConnectionAborted,
        io::ErrorKind::ConnectionReset,
    );
    let (ck, sk) = if from_client {
        (local_kind, peer_kind)
    } else {
        (peer_kind, local_kind)
    };
    let tc = ended_with("client", rc, t0, ck);
    let ts = ended_with("server", rs, t0, sk);
    println!(
        "local reset {connect_to} (from {}): call {call:?}; client read failed after {tc:?}, server after {ts:?}",
        if from_client { "client" } else { "server" }
    );
}

#[test]
fn local_ipv4() {
    if !require_root("local_ipv4") {
        return;
    }
    let pair = NetPair::new("rl4");
    let a = pair.server_addr(false, 25);
    local_reset(&pair, a, a, false);
}

#[test]
fn local_ipv6() {
    if !require_root("local_ipv6") {
        return;
    }
    let pair = NetPair::new("rl6");
    let a = pair.server_addr(true, 25);
    local_reset(&pair, a, a, false);
}

/// An IPv4 connection accepted by a `[::]` listener is an AF_INET6 socket
/// with IPv4-mapped addresses; it is found from the IPv4 tuple.
#[test]
fn local_ipv4_on_dual_stack_listener() {
    if !require_root("local_ipv4_on_dual_stack_listener") {
        return;
    }
    let pair = NetPair::new("rld");
    let any: SocketAddr = "[::]:25".parse().expect("addr");
    local_reset(&pair, any, pair.server_addr(false, 25), false);
}

/// The monitor on the sending host: the client's socket is the local one.
#[test]
fn local_client_side() {
    if !require_root("local_client_side") {
        return;
    }
    let pair = NetPair::new("rlc");
    let a = pair.server_addr(false, 25);
    local_reset(&pair, a, a, true);
}

/// Gateway mode over the router topology; returns the delays seen by the
/// client and the server.
fn gateway_reset(v6: bool, tag: &str) {
    let net = Routed::new(tag);
    let tracker = SeqTracker::start(&net.router_ns, &net.router_server_if);
    let server = net.server_addr(v6, 25);
    let (mut c, mut s) = connect(&net.client_ns, &net.server_ns, server, server);
    let client = c.local_addr().expect("addr");
    assert_eq!(client.ip(), net.client_ip(v6));
    // Some SMTP-like traffic the router forwards.
    const GREETING: &[u8] = b"220 mx ESMTP\r\n";
    const EHLO: &[u8] = b"EHLO client.example\r\n";
    s.write_all(GREETING).expect("greet");
    c.write_all(EHLO).expect("ehlo");
    let mut buf = [0u8; 64];
    c.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    c.read_exact(&mut buf[..GREETING.len()]).expect("greeting");
    s.read_exact(&mut buf[..EHLO.len()]).expect("ehlo");

    let ep_at = |(cseq, sseq): (u32, u32)| TcpEndpoints {
        client,
        server,
        client_next_seq: Some(cseq),
        server_next_seq: Some(sseq),
    };
    // Payload bytes each side sent so far: the tracker has seen the whole
    // connection when its sequence numbers account for all of them.
    let (greeting, ehlo) = (GREETING.len() as u32, EHLO.len() as u32);
    let settle = |extra: u32| {
        tracker
            .settled(
                client,
                server,
                (1 + ehlo + extra, 1 + greeting + extra),
                IO_TIMEOUT,
            )
            .expect("the router saw the whole connection")
    };

    // One sequence number off: inside the window, so the receivers answer
    // with a challenge ACK and keep the connection (RFC 5961).
    let (cseq, sseq) = settle(0);
    let off = ep_at((cseq.wrapping_add(1), sseq.wrapping_add(1)));
    let method = in_netns(&net.router_ns, move || reset_connection(&off))
        .join()
        .expect("reset thread");
    assert_eq!(method.expect("reset"), ResetMethod::RstInjected);
    std::thread::sleep(Duration::from_millis(100));
    exchange(&c, &s, b'b');

    // The exact next sequence numbers: both ends are reset at once.
    let ep = ep_at(settle(1));
    let (rc, rs) = (blocked_read(&c), blocked_read(&s));
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    let (method, call) = in_netns(&net.router_ns, move || timed(|| reset_connection(&ep)))
        .join()
        .expect("reset thread");
    assert_eq!(method.expect("reset"), ResetMethod::RstInjected);
    let tc = ended_with("client", rc, t0, io::ErrorKind::ConnectionReset);
    let ts = ended_with("server", rs, t0, io::ErrorKind::ConnectionReset);
    println!(
        "gateway reset {client} <-> {server}: call {call:?}; client read failed after {tc:?}, server after {ts:?}"
    );
    drop(tracker);
}

#[test]
fn gateway_ipv4() {
    if !require_root("gateway_ipv4") {
        return;
    }
    gateway_reset(false, "rg4");
}

#[test]
fn gateway_ipv6() {
    if !require_root("gateway_ipv6") {
        return;
    }
    gateway_reset(true, "rg6");
}

/// No socket of the tuple, no sequence numbers: UnknownSeq naming what is
/// missing. The listener on the server port (which the kernel's lookup
/// falls back to) is not destroyed.
#[test]
fn no_such_connection() {
    if !require_root("no_such_connection") {
        return;
    }
    let pair = NetPair::new("rnx");
    let server = pair.server_addr(false, 25);
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = in_netns(&pair.server_ns, move || {
        let l = TcpListener::bind(server).expect("bind");
        let client: SocketAddr = "198.18.0.1:40000".parse().expect("addr");
        let results = [(None, None), (Some(1), None), (None, Some(1))].map(|(c, s)| {
            reset_connection(&TcpEndpoints {
                client,
                server,
                client_next_seq: c,
                server_next_seq: s,
            })
        });
        tx.send(()).expect("ready");
        let accepted = l.accept().map(|(_, peer)| peer);
        (results, accepted)
    });
    rx.recv_timeout(IO_TIMEOUT).expect("resets done");
    let c = in_netns(&pair.client_ns, move || {
        TcpStream::connect_timeout(&server, IO_TIMEOUT).expect("listener still accepts")
    })
    .join()
    .expect("client");
    let (results, accepted) = srv.join().expect("server");
    assert_eq!(accepted.expect("accept"), c.local_addr().expect("addr"));
    let missing: Vec<_> = results
        .iter()
        .map(|r| match r {
            Err(ResetError::UnknownSeq { missing, .. }) => *missing,
            other => panic!("expected UnknownSeq, got {other:?}"),
        })
        .collect();
    assert_eq!(missing, ["client and server", "server", "client"]);
    let msg = results[0].as_ref().expect_err("error").to_string();
    assert!(
        msg.contains("no socket 198.18.0.1:40000 <-> 198.18.0.2:25"),
        "{msg}"
    );
}

/// The server closed first and the client followed: the server's socket
/// sits in TIME-WAIT and there is nothing left to reset.
#[test]
fn time_wait_is_already_closed() {
    if !require_root("time_wait_is_already_closed") {
        return;
    }
    let pair = NetPair::new("rtw");
    let server = pair.server_addr(false, 25);
    let (mut c, s) = connect(&pair.client_ns, &pair.server_ns, server, server);
    let client = c.local_addr().expect("addr");
    drop(s);
    let mut buf = [0u8; 8];
    assert_eq!(c.read(&mut buf).expect("eof"), 0);
    drop(c);
    let ep = TcpEndpoints {
        client,
        server,
        client_next_seq: None,
        server_next_seq: None,
    };
    let r = in_netns(&pair.server_ns, move || {
        // The client's FIN reaches the server within a few ms; bounded wait.
        let end = Instant::now() + IO_TIMEOUT;
        while Instant::now() < end && !in_time_wait(client.port()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        reset_connection(&ep)
    })
    .join()
    .expect("reset thread");
    match r {
        Err(ResetError::AlreadyClosed { state, .. }) => assert_eq!(state, "TIME-WAIT"),
        other => panic!("expected AlreadyClosed, got {other:?}"),
    }
}

/// True when this thread's namespace has a TIME-WAIT socket to `port`
/// (`/proc/thread-self/net/tcp`: state 06, remote port in hex).
fn in_time_wait(port: u16) -> bool {
    let tcp = std::fs::read_to_string("/proc/thread-self/net/tcp").unwrap_or_default();
    let rem = format!(":{port:04X}");
    tcp.lines().skip(1).any(|l| {
        let f: Vec<_> = l.split_whitespace().collect();
        f.get(2).is_some_and(|r| r.ends_with(&rem)) && f.get(3) == Some(&"06")
    })
}
