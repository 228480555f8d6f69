//! Verdict latency (real kernel, netns + veth, `smtp-user run --rules` on
//! the server veth): the time from the client sending the offending
//! segment (`MAIL FROM` a forbidden domain, rule action `drop`) to the
//! kernel dropping that flow's packets.
//!
//! Method: after the offending command the client sends a 6-byte probe
//! (`NOOP\r\n`, TCP_NODELAY) every `--interval-us` microseconds for 50 ms,
//! recording when each one left. The server (a scripted listener that
//! only counts bytes) reports how many probes it received: probe k+1 is
//! the first one the kernel dropped, so the latency is its send time minus
//! the offending segment's, with the probe interval as resolution.
//! Median and p99 over `--sessions` sessions.
//!
//! Run: `cargo bench -p smtp-e2e --bench verdict_latency` (root; builds
//! the release smtp-user). Options: `--sessions N`, `--interval-us N`.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    time::{Duration, Instant},
};

use smtp_e2e::{
    in_netns, live::POLICY_RULES, process::Daemon, require_root, smtp_client::SmtpClient, NetPair,
};

const PROBE: &[u8] = b"NOOP\r\n";
const PROBE_WINDOW: Duration = Duration::from_millis(50);

struct Opts {
    sessions: usize,
    interval: Duration,
}

fn opts() -> Opts {
    let mut o = Opts {
        sessions: 50,
        interval: Duration::from_micros(20),
    };
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        let v: Option<u64> = w[1].parse().ok();
        match (w[0].as_str(), v) {
            ("--sessions", Some(v)) => o.sessions = (v as usize).clamp(3, 1000),
            ("--interval-us", Some(v)) => o.interval = Duration::from_micros(v.clamp(5, 1000)),
            _ => {}
        }
    }
    o
}

/// Server: greeting, `250` to EHLO and MAIL, then counts every byte until
/// 300 ms of silence; returns the bytes received after the MAIL line.
fn serve_one(listener: &TcpListener) -> usize {
    let end = Instant::now() + Duration::from_secs(10);
    let s = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("no client within 10 s: {e}"),
        }
    };
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    w.write_all(b"220 bench ESMTP\r\n").expect("greeting");
    for _ in 0..2 {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return 0;
        }
        let _ = w.write_all(b"250 ok\r\n");
    }
    let mut n = r.buffer().len();
    r.consume(n);
    let mut buf = [0u8; 4096];
    loop {
        match r.get_mut().read(&mut buf) {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += k,
        }
    }
}

/// Client: one session; returns the send offsets (from the end of the
/// offending segment's write) of every probe.
fn client_one(interval: Duration) -> Vec<Duration> {
    let addr = "198.18.0.2:25".parse().expect("addr");
    let (mut c, _) = SmtpClient::connect(addr, Duration::from_secs(2)).expect("connect");
    // Once the flow is dropped nothing is acknowledged and the send buffer
    // fills: a write then fails after this instead of blocking for ever.
    c.stream
        .set_write_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    assert!(c.cmd("EHLO bench.example\r\n").is_some(), "EHLO reply");
    assert!(c.send(b"MAIL FROM:<someone@forbidden.example>\r\n"));
    let t0 = Instant::now();
    let mut sent = Vec::new();
    let mut next = t0 + interval;
    while t0.elapsed() < PROBE_WINDOW {
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        sent.push(t0.elapsed());
        if !c.send(PROBE) {
            break;
        }
        next += interval;
    }
    sent
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn main() {
    if !require_root("verdict_latency") {
        return;
    }
    let o = opts();
    let pair = NetPair::new("vlat");
    let dir = std::env::temp_dir().join(format!("verdict-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, POLICY_RULES).expect("rules");
    let rules_s = rules.to_string_lossy().into_owned();
    let daemon = Daemon::monitor(
        &pair,
        &[
            "--rules",
            &rules_s,
            "-o",
            "/dev/null",
            "--stats-interval",
            "3600",
        ],
    );

    let (ltx, lrx) = std::sync::mpsc::channel();
    let sessions = o.sessions;
    let server = in_netns(&pair.server_ns, move || {
        let l = TcpListener::bind("198.18.0.2:25").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let _ = ltx.send(());
        (0..sessions).map(|_| serve_one(&l)).collect::<Vec<_>>()
    });
    lrx.recv_timeout(Duration::from_secs(10))
        .expect("server up");
    let interval = o.interval;
    let client = in_netns(&pair.client_ns, move || {
        let mut all = Vec::new();
        for _ in 0..sessions {
            all.push(client_one(interval));
            // Let the server notice the silence and accept the next one.
            std::thread::sleep(Duration::from_millis(400));
        }
        all
    });
    let sent = client.join().expect("client");
    let received = server.join().expect("server");
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);

    let mut lat = Vec::new();
    let mut never = 0;
    for (s, bytes) in sent.iter().zip(&received) {
        let k = bytes / PROBE.len();
        match s.get(k) {
            Some(t) => lat.push(*t),
            None => never += 1,
        }
    }
    lat.sort();
    println!(
        "verdict latency (MAIL FROM rule, action drop; offending segment sent -> first \
         dropped probe; probe every {:?})",
        o.interval
    );
    println!(
        "  sessions {}  median {:?}  p99 {:?}  min {:?}  max {:?}  never dropped within {:?}: {never}",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.first().copied().unwrap_or_default(),
        lat.last().copied().unwrap_or_default(),
        PROBE_WINDOW
    );
}
