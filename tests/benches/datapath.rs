//! Datapath benchmark (real kernel, netns + veth), printed as two tables:
//!
//! 1. Cost of the programs on non-SMTP traffic: iperf3 TCP throughput across
//!    the veth with no program vs. smtp-monitor attached (watching port 25,
//!    iperf3 on 5201), for each ingress hook, both directions, and with the
//!    kernel's aya-log diagnostics on (`--log smtp_ebpf=debug`); ratios to
//!    the no-program runs of the same session (runs interleaved, median of N).
//! 2. Ring buffer delivery: records/s userspace reads for 64- and 1460-byte
//!    writes (TCP_NODELAY) to port 25, with the kernel's lost-record count,
//!    kernel log off and on.
//!
//! Run: `cargo xtask bench-datapath` (root). Options: `--secs N` per run,
//! `--reps N`.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use smtp_common::Stat;
use smtp_e2e::{in_netns, require_root, MonitorThread, NetPair};
use smtp_user::datapath::{IngressMode, KernelLog, MonitorOptions};

/// A monitor on the server veth watching port 25 (records counted, not kept).
fn monitor(pair: &NetPair, ingress: IngressMode, log: KernelLog) -> MonitorThread {
    let opts = MonitorOptions {
        iface: Some(pair.server_if.clone()),
        ports: vec![25],
        ingress,
        kernel_log: log,
        ..MonitorOptions::default()
    };
    MonitorThread::start_opts(&pair.server_ns, opts, false)
}

struct Opts {
    secs: u64,
    reps: usize,
}

fn opts() -> Opts {
    let mut o = Opts { secs: 2, reps: 5 };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let next: Option<u64> = args.get(i + 1).and_then(|v| v.parse().ok());
        match (args[i].as_str(), next) {
            ("--secs", Some(v)) => o.secs = v.clamp(1, 60),
            ("--reps", Some(v)) => o.reps = (v as usize).clamp(1, 10),
            _ => {}
        }
        i += 1;
    }
    o
}

/// iperf3 server in the server namespace, killed on drop.
struct Iperf(Child);

impl Drop for Iperf {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn iperf_client(pair: &NetPair, secs: u64, reverse: bool) -> f64 {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &pair.client_ns, "iperf3", "-c"])
        .arg(smtp_e2e::netns::SERVER_V4)
        .args(["-p", "5201", "-J", "-t", &secs.to_string()]);
    if reverse {
        cmd.arg("-R");
    }
    let out = cmd.output().expect("iperf3 client");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn throughput(o: &Opts) {
    let pair = NetPair::new("bthr");
    let _srv = Iperf(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &pair.server_ns,
                "iperf3",
                "-s",
                "-p",
                "5201",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 server (apt-get install iperf3)"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let hooks: [(&str, Option<IngressMode>, KernelLog); 5] = [
        ("no program", None, KernelLog::Off),
        ("tc (default)", Some(IngressMode::Tc), KernelLog::Off),
        (
            "tc, kernel log on (smtp_ebpf=debug)",
            Some(IngressMode::Tc),
            KernelLog::Debug,
        ),
        ("xdp-generic", Some(IngressMode::XdpGeneric), KernelLog::Off),
        ("xdp (native)", Some(IngressMode::Xdp), KernelLog::Off),
    ];
    let mut res = vec![[Vec::new(), Vec::new()]; hooks.len()];
    for _ in 0..o.reps {
        for (i, (_, hook, log)) in hooks.iter().enumerate() {
            let mon = hook.map(|h| monitor(&pair, h, *log));
            for (d, rev) in [false, true].into_iter().enumerate() {
                res[i][d].push(iperf_client(&pair, o.secs, rev));
            }
            if let Some(m) = &mon {
                let k = m.kernel_stats();
                assert_eq!(
                    k.get(Stat::MonitoredPackets),
                    0,
                    "iperf3 traffic was monitored"
                );
            }
        }
    }
    // Ratio of each run to the no-program run of the same repetition (the
    // machine is shared: adjacent runs see the same background load).
    let ratio = |i: usize, d: usize| {
        median(
            res[i][d]
                .iter()
                .zip(res[0][d].iter())
                .map(|(x, b)| x / b.max(1.0))
                .collect(),
        )
    };
    println!(
        "\n### Program cost on non-SMTP traffic (iperf3 TCP over veth, {} reps x {} s, medians)\n",
        o.reps, o.secs
    );
    println!("| ingress hook | client→server Gbit/s | ratio to no program | server→client Gbit/s | ratio to no program |");
    println!("|---|---|---|---|---|");
    for (i, (name, _, _)) in hooks.iter().enumerate() {
        println!(
            "| {name} | {:.2} | {:.0} % | {:.2} | {:.0} % |",
            median(res[i][0].clone()) / 1e9,
            100.0 * ratio(i, 0),
            median(res[i][1].clone()) / 1e9,
            100.0 * ratio(i, 1),
        );
    }
}

fn ringbuf(o: &Opts) {
    println!(
        "\n### Ring buffer delivery (TCP_NODELAY writes to port 25, 2 connections, {} s, tc ingress, 16 MiB ring)\n",
        o.secs
    );
    println!("| write size | kernel log | writes/s | records/s read | payload MB/s read | records lost | bytes uncaptured |");
    println!("|---|---|---|---|---|---|---|");
    for (size, log) in [
        (64usize, KernelLog::Off),
        (64, KernelLog::Debug),
        (1460, KernelLog::Off),
        (1460, KernelLog::Debug),
    ] {
        let pair = NetPair::new("brb");
        let mon = monitor(&pair, IngressMode::Tc, log);
        let server = pair.server_addr(false, 25);
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = in_netns(&pair.server_ns, move || {
            let l = TcpListener::bind(server).expect("bind");
            tx.send(()).expect("ready");
            let mut hs = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = l.accept().expect("accept");
                s.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                hs.push(std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                }));
            }
            for h in hs {
                let _ = h.join();
            }
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("sink ready");
        let writes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let secs = o.secs;
        let start = Instant::now();
        let clients: Vec<_> = (0..2)
            .map(|_| {
                let (w, st) = (writes.clone(), stop.clone());
                in_netns(&pair.client_ns, move || {
                    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))
                        .expect("connect");
                    s.set_nodelay(true).expect("nodelay");
                    s.set_write_timeout(Some(Duration::from_secs(5)))
                        .expect("timeout");
                    let buf = vec![b'x'; size];
                    let end = Instant::now() + Duration::from_secs(secs);
                    while Instant::now() < end && !st.load(Ordering::Relaxed) {
                        if s.write_all(&buf).is_err() {
                            break;
                        }
                        w.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for c in clients {
            let _ = c.join();
        }
        stop.store(true, Ordering::Relaxed);
        let elapsed = start.elapsed().as_secs_f64();
        let _ = sink.join();
        // Let the reader drain what is still in the ring (bounded).
        let mut last = (u64::MAX, 0);
        for _ in 0..50 {
            let now = mon.counts();
            if now == last {
                break;
            }
            last = now;
            std::thread::sleep(Duration::from_millis(100));
        }
        let k = mon.kernel_stats();
        let (recs, bytes) = mon.counts();
        let log = if log == KernelLog::Off { "off" } else { "on" };
        println!(
            "| {size} B | {log} | {:.0} | {:.0} | {:.1} | {} | {} |",
            writes.load(Ordering::Relaxed) as f64 / elapsed,
            recs as f64 / elapsed,
            bytes as f64 / elapsed / 1e6,
            k.get(Stat::RecordsLost),
            k.get(Stat::BytesUncaptured),
        );
        assert_eq!(recs, k.get(Stat::RecordsSent), "records sent but not read");
    }
}

/// Userspace drain capacity: the ring is filled while the reader is paused,
/// then the reader is resumed and timed until it has read every record.
fn drain(o: &Opts) {
    let _ = o;
    println!("\n### Ring buffer drain capacity (reader paused while ~10 MB of records queue, then timed)\n");
    println!("| write size | records queued | drain time ms | records/s drained | payload MB/s | records lost |");
    println!("|---|---|---|---|---|---|");
    for size in [64usize, 1460] {
        let pair = NetPair::new("bdr");
        let mon = MonitorThread::start_with(
            &pair.server_ns,
            &pair.server_if,
            &[25],
            IngressMode::Tc,
            false,
        );
        mon.pause(true);
        let server = pair.server_addr(false, 25);
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = in_netns(&pair.server_ns, move || {
            let l = TcpListener::bind(server).expect("bind");
            tx.send(()).expect("ready");
            let (mut s, _) = l.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut buf = vec![0u8; 65536];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("sink ready");
        let writes = 10_000_000 / (size + 96);
        in_netns(&pair.client_ns, move || {
            let mut s =
                TcpStream::connect_timeout(&server, Duration::from_secs(5)).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s.set_write_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let buf = vec![b'y'; size];
            for _ in 0..writes {
                if s.write_all(&buf).is_err() {
                    break;
                }
            }
        })
        .join()
        .expect("client");
        let _ = sink.join();
        std::thread::sleep(Duration::from_millis(200));
        let k = mon.kernel_stats();
        let queued = k.get(Stat::RecordsSent);
        let start = Instant::now();
        mon.pause(false);
        let end = start + Duration::from_secs(20);
        while mon.counts().0 < queued && Instant::now() < end {
            std::thread::sleep(Duration::from_micros(200));
        }
        let t = start.elapsed().as_secs_f64();
        let (recs, bytes) = mon.counts();
        println!(
            "| {size} B | {queued} | {:.1} | {:.0} | {:.0} | {} |",
            t * 1e3,
            recs as f64 / t,
            bytes as f64 / t / 1e6,
            k.get(Stat::RecordsLost)
        );
    }
}

fn main() {
    if !require_root("datapath bench") {
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` too: keep quick then.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let o = opts();
    throughput(&o);
    ringbuf(&o);
    drain(&o);
}
