//! Enforcement benchmark (real kernel, netns + veth, Postfix smtp-sink as
//! the server, the `smtp-user` daemon attached to the server veth), printed
//! as two tables:
//!
//! 1. Verdict latency: N sessions each send `MAIL FROM` a forbidden domain;
//!    the daemon measures, per verdict, the time from the kernel's capture
//!    of the offending segment (its arrival on the server veth, i.e. when
//!    its last byte left the client) to the drop verdict being in the
//!    kernel map, after which the kernel drops the flow's next packet. The
//!    median and p99 are read from `ctl stats`; the kernel's
//!    `dropped_by_verdict` counter shows the next packets being dropped.
//! 2. End-of-data gate: time from the client writing the end of a clean
//!    message (`\r\n.\r\n`) to the server's `250`, without the gate and with
//!    it (the held segment goes through on the client's TCP
//!    retransmission), median and p99 over N messages each.
//!
//! Run: `cargo xtask bench-enforcement` (root). Option: `--sessions N`
//! (10 to 250: blocked sessions stay open on the server side, whose
//! connection limit is 256).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;
use smtp_e2e::{
    in_netns,
    live::POLICY_RULES,
    mail::{require_tools, SmtpSink},
    process::{run_to_end, wait_path, Daemon},
    require_root,
    smtp_client::SmtpClient,
    NetPair,
};

fn sessions() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--sessions")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(200usize)
        .clamp(10, 250)
}

fn connect() -> Option<SmtpClient> {
    let addr = "198.18.0.2:25".parse().ok()?;
    SmtpClient::connect(addr, Duration::from_secs(3)).map(|(c, _)| c)
}

/// The daemon with `RULES`, plus the path of its control socket.
fn daemon(pair: &NetPair, dir: &Path, gate: bool) -> (Daemon, PathBuf) {
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, POLICY_RULES).expect("rules file");
    let sock = dir.join(format!("ctl-{gate}.sock"));
    let rules_s = rules.to_string_lossy().into_owned();
    let sock_s = sock.to_string_lossy().into_owned();
    // Errors only: the daemon's stderr is a pipe nobody reads until the end.
    let mut args = vec![
        "--log",
        "error",
        "--rules",
        &rules_s,
        "--output",
        "/dev/null",
        "--control-socket",
        &sock_s,
    ];
    if gate {
        // The kernel hold released through TCP's retransmission (the
        // netfilter-queue gate is measured by the gate_latency bench).
        args.extend(["--gate", "--gate-fallback"]);
    }
    let d = Daemon::monitor(pair, &args);
    assert!(
        wait_path(&sock, Duration::from_secs(10)),
        "the control socket did not appear"
    );
    (d, sock)
}

fn ctl_stats(pair: &NetPair, sock: &Path) -> Value {
    let sock_s = sock.to_string_lossy().into_owned();
    let out = run_to_end(
        &pair.server_ns,
        &[
            "ctl",
            "--iface",
            &pair.server_if,
            "--socket",
            &sock_s,
            "--json",
            "stats",
        ],
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stats JSON")
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or(f64::NAN)
}

/// Verdict latency: `n` sessions with a forbidden sender.
fn verdict_latency(pair: &NetPair, dir: &Path, n: usize) {
    let (d, sock) = daemon(pair, dir, false);
    let sent = in_netns(&pair.client_ns, move || {
        let mut ok = 0usize;
        for i in 0..n {
            let Some(mut c) = connect() else {
                continue;
            };
            if c.cmd("EHLO bench.example\r\n").is_none() {
                continue;
            }
            c.send(format!("MAIL FROM:<u{i}@forbidden.example>\r\n").as_bytes());
            // The next packet of the flow, for the kernel to drop.
            std::thread::sleep(Duration::from_millis(2));
            c.send(b"NOOP\r\n");
            ok += 1;
        }
        ok
    })
    .join()
    .expect("client thread");
    // Let the last verdicts land.
    std::thread::sleep(Duration::from_millis(500));
    let stats = ctl_stats(pair, &sock);
    drop(d);
    let lat = &stats["user"]["verdict_latency_us"];
    println!(
        "\n#### Verdict latency ({sent} sessions, MAIL FROM a forbidden domain, tc ingress)\n"
    );
    println!("| verdicts | median | p99 | next packets dropped by the kernel |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {} µs | {} µs | {} |",
        lat["samples"], lat["median"], lat["p99"], stats["kernel"]["dropped_by_verdict"]
    );
}

/// Time from writing the end of a clean message to its `250`, per message.
fn gate_latency(pair: &NetPair, dir: &Path, n: usize, gate: bool) -> Vec<f64> {
    let (d, sock) = daemon(pair, dir, gate);
    let times = in_netns(&pair.client_ns, move || {
        let mut times = Vec::with_capacity(n);
        let Some(mut c) = connect() else {
            return times;
        };
        if c.cmd("EHLO bench.example\r\n").is_none() {
            return times;
        }
        for i in 0..n {
            let steps = [
                "MAIL FROM:<alice@example.org>\r\n",
                "RCPT TO:<bob@example.net>\r\n",
                "DATA\r\n",
            ];
            if steps.iter().any(|l| c.cmd(l).is_none()) {
                break;
            }
            let body = format!("Subject: clean {i}\r\n\r\nnothing to see here\r\n");
            if !c.send(body.as_bytes()) {
                break;
            }
            let t0 = Instant::now();
            match c.cmd(".\r\n") {
                Some(rep) if rep.starts_with("250") => times.push(t0.elapsed().as_secs_f64()),
                _ => break,
            }
        }
        let _ = c.cmd("QUIT\r\n");
        times
    })
    .join()
    .expect("client thread");
    let stats = ctl_stats(pair, &sock);
    drop(d);
    if gate {
        let k = &stats["kernel"];
        println!(
            "(gate: held={} passed={} releases={} missed={})",
            k["gate_held"],
            k["gate_passed"],
            stats["user"]["pipeline"]["gate_releases"],
            stats["user"]["pipeline"]["gate_missed"]
        );
    }
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        let ms: Vec<String> = times.iter().map(|t| format!("{:.1}", t * 1e3)).collect();
        println!("gate={gate} per-message ms: {}", ms.join(" "));
    }
    assert_eq!(times.len(), n, "every clean message must be delivered");
    times
}

fn main() {
    if !require_root("bench enforcement") || !require_tools("bench enforcement", &["smtp-sink"]) {
        return;
    }
    let n = sessions();
    let dir = std::env::temp_dir().join(format!("smtp-bench-enf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pair = NetPair::new("benf");
    let _sink = SmtpSink::start(&pair.server_ns, "198.18.0.2:25", &["-c"]);
    verdict_latency(&pair, &dir, n);
    let msgs = (n / 4).max(10);
    let mut off = gate_latency(&pair, &dir, msgs, false);
    let mut on = gate_latency(&pair, &dir, msgs, true);
    let (off50, off99) = (quantile(&mut off, 0.5), quantile(&mut off, 0.99));
    let (on50, on99) = (quantile(&mut on, 0.5), quantile(&mut on, 0.99));
    println!("\n#### End-of-data gate ({msgs} clean messages each, end of data → 250)\n");
    println!("| | median | p99 |");
    println!("|---|---|---|");
    println!(
        "| no gate | {:.2} ms | {:.2} ms |",
        off50 * 1e3,
        off99 * 1e3
    );
    println!("| `--gate` | {:.2} ms | {:.2} ms |", on50 * 1e3, on99 * 1e3);
    println!(
        "| added by the gate | {:.2} ms | {:.2} ms |",
        (on50 - off50) * 1e3,
        (on99 - off99) * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
}
