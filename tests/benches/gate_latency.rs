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
        .unwrap_or(50);
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
    let mut rows = Vec::new();
    for (name, monitor) in setups {
        let t = Instant::now();
        let mx = MxLive::start("bgl", &server, Some(&ClientOptions::default()), monitor);
        let pf = quantiles(postfix_run(&mx, n));
        let py = quantiles(smtplib_run(&mx, n));
        let missed = mx
            .events()
            .iter()
            .filter(|e| e["event_type"] == "anomaly" && e["anomaly"]["type"] == "gate_missed")
            .count();
        eprintln!("{name}: done in {:?}", t.elapsed());
        rows.push((name, pf, py, missed));
    }
    let (base_pf, base_py) = (rows[0].1, rows[0].2);
    println!("\n{n} messages per client and setup; µs; added = setup − baseline\n");
    println!("| setup | Postfix client median | p99 | added median | added p99 | smtplib median | p99 | added median | added p99 | gate_missed |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, pf, py, missed) in rows {
        println!(
            "| {name} | {:.0} | {:.0} | {:+.0} | {:+.0} | {:.0} | {:.0} | {:+.0} | {:+.0} | {missed} |",
            pf.0,
            pf.1,
            pf.0 - base_pf.0,
            pf.1 - base_pf.1,
            py.0,
            py.1,
            py.0 - base_py.0,
            py.1 - base_py.1,
        );
    }
}
