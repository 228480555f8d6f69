//! What the end-of-data gate adds per message, with real Postfix as the
//! server (smtpd → cleanup → queue → Maildir) and two kinds of client:
//!
//! * a relaying **Postfix** (`smtp` client, DATA, PIPELINING: it sends the
//!   end of data and QUIT in one segment); measured by Postfix itself, the
//!   `d` of `delays=a/b/c/d` (SMTP transmission time, µs resolution);
//! * Python's **smtplib** (one command per write, no pipelining): the time
//!   of `SMTP.data()` (DATA → 354 → content and dot → 250), one session.
//!
//! Three setups in one run: no monitor (the baseline), `--gate` (the
//! netfilter queue), `--gate --gate-fallback` (the kernel hold released
//! through the client's TCP retransmission). The added latency is the
//! difference of the medians (and of the p99s) with the baseline.
//!
//! `cargo xtask bench-gate` (root), or `cargo bench -p smtp-e2e --bench
//! gate_latency -- [--messages N]`.

use std::process::Command;
use std::time::{Duration, Instant};

use smtp_e2e::postfix::{message, ClientOptions, MxLive, ServerOptions};

fn quantiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (q(0.5), q(0.99))
}

/// Postfix client → server, one message at a time; transmission times in µs.
fn postfix_run(mx: &MxLive, n: usize) -> Vec<f64> {
    let mta = mx.mta();
    for i in 0..n {
        let m = message(&format!("bench-{i}"), "bench", "a small clean message\n");
        mta.submit("alice@client.test.example", "bob@example.net", &m);
        let want = i + 1;
        let ok = mta.wait_log(Duration::from_secs(30), |l| {
            l.matches("status=").count() >= want
        });
        assert!(ok, "message {i} not delivered:\n{}", mta.log());
    }
    assert!(
        !mta.log().contains("status=deferred"),
        "deferred:\n{}",
        mta.log()
    );
    mta.sent_transmission_delays()
        .into_iter()
        .map(|s| s * 1e6)
        .collect()
}

const SMTPLIB: &str = r#"
import smtplib, sys, time, json
n = int(sys.argv[1])
s = smtplib.SMTP("198.18.0.2", 25, timeout=10)
s.ehlo("bench.test.example")
out = []
for i in range(n):
    msg = "Subject: bench %d\r\nMessage-ID: <smtplib-%d@bench>\r\n\r\na small clean message\r\n" % (i, i)
    s.mail("alice@client.test.example")
    s.rcpt("bob@example.net")
    t0 = time.perf_counter()
    code, _ = s.data(msg)
    t1 = time.perf_counter()
    assert code == 250, code
    out.append((t1 - t0) * 1e6)
s.quit()
print(json.dumps(out))
"#;

/// smtplib in the client namespace; `data()` times in µs.
fn smtplib_run(mx: &MxLive, n: usize) -> Vec<f64> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &mx.pair.client_ns,
            "python3",
            "-c",
            SMTPLIB,
        ])
        .arg(n.to_string())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "smtplib failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<f64>>(&out.stdout).expect("smtplib output")
}

/// The daemon's own measure: how long accepted segments were held
/// (capture by the kernel hook → accept verdict), from `ctl stats --json`.
fn daemon_wait(mx: &MxLive) -> Option<(u64, u64, u64)> {
    let out = smtp_e2e::process::run_to_end(
        &mx.pair.server_ns,
        &["ctl", "--iface", &mx.pair.server_if, "--json", "stats"],
        Duration::from_secs(20),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let w = v.pointer("/user/pipeline/gate_queue/wait_us")?;
    Some((
        w["median"].as_u64()?,
        w["p99"].as_u64()?,
        w["samples"].as_u64()?,
    ))
}

fn main() {
    // SAFETY: trivial libc call.
    if unsafe { libc::geteuid() } != 0 {
        println!("gate_latency: skipped: needs root");
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--messages")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let rounds = 4;
    let per_round = n.div_ceil(rounds);
    // Warm the release build before timing anything.
    let _ = smtp_e2e::smtp_user_bin();
    let setups: [(&str, Option<&[&str]>); 3] = [
        ("no monitor (baseline)", None),
        ("--gate (netfilter queue)", Some(&["--gate"])),
        (
            "--gate --gate-fallback (kernel hold, retransmission)",
            Some(&["--gate", "--gate-fallback"]),
        ),
    ];
    let server = ServerOptions {
        // DATA, so the Postfix client pipelines the dot with QUIT.
        no_chunking: true,
        ..Default::default()
    };
    let t = Instant::now();
    let mut mx = MxLive::start("bgl", &server, Some(&ClientOptions::default()), None);
    let mut pf: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    let mut py: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    let mut missed = vec![0usize; setups.len()];
    let mut waits = Vec::new();
    let mut seen = 0;
    // Rounds interleave the setups, so load from elsewhere on the host
    // falls on all of them alike.
    for round in 0..rounds {
        for (i, (_, monitor)) in setups.iter().enumerate() {
            mx.daemon.take();
            let _ = std::fs::remove_file(&mx.eve);
            if let Some(a) = monitor {
                mx.spawn_monitor(a);
            }
            let _ = postfix_run(&mx, per_round);
            let d = mx.mta().sent_transmission_delays();
            pf[i].extend(d.iter().skip(seen).map(|s| s * 1e6));
            seen = d.len();
            py[i].extend(smtplib_run(&mx, per_round));
            missed[i] += mx
                .events()
                .iter()
                .filter(|e| e["event_type"] == "anomaly" && e["anomaly"]["event"] == "gate_missed")
                .count();
            if i == 1 {
                if let Some(w) = daemon_wait(&mx) {
                    waits.push(w);
                }
            }
        }
        eprintln!("round {round} done after {:?}", t.elapsed());
    }
    let base_pf = quantiles(pf[0].clone());
    let base_py = quantiles(py[0].clone());
    println!(
        "\n{} messages per client and setup ({rounds} interleaved rounds); µs; added = setup − baseline\n",
        per_round * rounds
    );
    println!("| setup | Postfix client median | p99 | added median | added p99 | smtplib median | p99 | added median | added p99 | gate_missed |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (i, (name, _)) in setups.iter().enumerate() {
        let a = quantiles(pf[i].clone());
        let b = quantiles(py[i].clone());
        println!(
            "| {name} | {:.0} | {:.0} | {:+.0} | {:+.0} | {:.0} | {:.0} | {:+.0} | {:+.0} | {} |",
            a.0,
            a.1,
            a.0 - base_pf.0,
            a.1 - base_pf.1,
            b.0,
            b.1,
            b.0 - base_py.0,
            b.1 - base_py.1,
            missed[i],
        );
    }
    for (m, p, c) in waits {
        println!(
            "queue gate, daemon's measure (one round): each client segment held {m} µs median, {p} µs p99 ({c} segments): capture → accept verdict"
        );
    }
}
