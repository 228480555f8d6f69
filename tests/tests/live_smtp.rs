//! The whole product live: a real SMTP server (Postfix's `smtp-sink`) and
//! real clients (`swaks`, `smtp-source`) talk across the veth pair while
//! `smtp-user run` watches the server side; its EVE output must describe
//! exactly the mails that were sent.

use std::{path::PathBuf, time::Duration};

use serde_json::Value;
use smtp_e2e::{
    mail::{require_tools, run_in, SmtpSink},
    process::Daemon,
    require_root, NetPair,
};

fn events(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("output file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn of_type<'a>(ev: &'a [Value], t: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["event_type"] == t).collect()
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn swaks_and_smtp_source_through_smtp_sink() {
    if !require_root("swaks_and_smtp_source_through_smtp_sink")
        || !require_tools(
            "swaks_and_smtp_source_through_smtp_sink",
            &["swaks", "smtp-sink", "smtp-source"],
        )
    {
        return;
    }
    let pair = NetPair::new("live");
    let dir = TempDir(std::env::temp_dir().join(format!("smtp-live-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let out = dir.0.join("eve.json");
    let attachment = dir.0.join("report.bin");
    // 5 MiB of varied bytes (base64 on the wire: ~6.9 MB of DATA).
    let body: Vec<u8> = (0..5u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&attachment, &body).expect("attachment");

    let _sink = SmtpSink::start(&pair.server_ns, "198.18.0.2:25", &["-c"]);
    let daemon = Daemon::monitor(
        &pair,
        &[
            "--output",
            out.to_str().expect("utf-8 path"),
            "--stats-interval",
            "3600",
        ],
    );

    // 1. Pipelined session with a 5 MiB attachment and two recipients.
    let s = run_in(
        &pair.client_ns,
        "swaks",
        &[
            "--server",
            "198.18.0.2",
            "--from",
            "alice@example.org",
            "--to",
            "bob@example.net,carol@example.net",
            "--pipeline",
            "--header",
            "Subject: live attachment",
            "--attach",
            attachment.to_str().expect("utf-8 path"),
            "--ehlo",
            "client.example.org",
        ],
        Duration::from_secs(60),
    );
    assert!(
        s.status.success(),
        "swaks: {}",
        String::from_utf8_lossy(&s.stderr)
    );
    // 2. Three mails over one connection (smtp-source -d).
    let s = run_in(
        &pair.client_ns,
        "smtp-source",
        &[
            "-d",
            "-m",
            "3",
            "-s",
            "1",
            "-l",
            "3000",
            "-f",
            "sender@example.org",
            "-t",
            "rcpt@example.net",
            "198.18.0.2:25",
        ],
        Duration::from_secs(30),
    );
    assert!(
        s.status.success(),
        "smtp-source: {}",
        String::from_utf8_lossy(&s.stderr)
    );

    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = daemon.terminate(Duration::from_secs(20));
    assert!(status.success(), "run failed: {stderr}");
    assert!(
        stderr.contains("records_lost=0"),
        "ring buffer loss: {stderr}"
    );

    let ev = events(&out);
    let smtp = of_type(&ev, "smtp");
    let flows = of_type(&ev, "flow");
    assert_eq!(flows.len(), 2, "two sessions: {ev:#?}");
    for f in &flows {
        assert_eq!(f["flow"]["gaps"], 0, "no gaps: {f}");
        assert_eq!(f["dest_port"], 25);
        assert_eq!(f["src_ip"], "198.18.0.1");
    }
    assert!(of_type(&ev, "anomaly").is_empty(), "no anomalies: {ev:#?}");

    let swaks: Vec<_> = smtp
        .iter()
        .filter(|t| t["smtp"]["mail_from"] == "<alice@example.org>")
        .collect();
    assert_eq!(swaks.len(), 1, "{smtp:#?}");
    let t = swaks[0];
    assert_eq!(t["tx_id"], 0);
    assert_eq!(t["smtp"]["helo"], "client.example.org");
    assert_eq!(
        t["smtp"]["rcpt_to"],
        serde_json::json!(["<bob@example.net>", "<carol@example.net>"])
    );
    assert_eq!(t["transaction"]["state"], "delivered");
    assert_eq!(t["transaction"]["reply_code"], 250);
    let size = t["transaction"]["size"].as_u64().expect("size");
    assert!(size > (5 << 20) * 4 / 3, "base64 of 5 MiB: size {size}");
    assert_eq!(t["email"]["status"], "PARSE_DONE");
    assert_eq!(t["email"]["subject"], "live attachment");
    assert_eq!(t["email"]["from"], "alice@example.org");
    let to: Vec<&str> = t["email"]["to"]
        .as_array()
        .expect("email.to")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        to.join(",").contains("bob@example.net") && to.join(",").contains("carol@example.net"),
        "email.to: {to:?}"
    );
    assert_eq!(t["email"]["attachment"], serde_json::json!(["report.bin"]));

    let source: Vec<_> = smtp
        .iter()
        .filter(|t| t["smtp"]["mail_from"] == "<sender@example.org>")
        .collect();
    assert_eq!(source.len(), 3, "{smtp:#?}");
    for (i, t) in source.iter().enumerate() {
        assert_eq!(t["tx_id"], i as u64);
        assert_eq!(t["flow_id"], source[0]["flow_id"]);
        assert_eq!(
            t["smtp"]["rcpt_to"],
            serde_json::json!(["<rcpt@example.net>"])
        );
        assert_eq!(t["transaction"]["state"], "delivered");
        assert!(t["transaction"]["size"].as_u64().expect("size") >= 3000);
    }
}

/// With two parsing workers, sessions sent from every CPU (the sender
/// pinned with `taskset`, so the kernel programs run on that CPU) are all
/// delivered and dissected, without ring loss, and the flows are shared
/// between the workers.
#[test]
fn every_cpu_delivers_records_with_two_workers() {
    const NAME: &str = "every_cpu_delivers_records_with_two_workers";
    if !require_root(NAME) || !require_tools(NAME, &["taskset", "smtp-sink", "smtp-source"]) {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pair = NetPair::new("cpus");
    let dir = TempDir(std::env::temp_dir().join(format!("smtp-cpus-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let out = dir.0.join("eve.json");
    let _sink = SmtpSink::start(&pair.server_ns, "198.18.0.2:25", &["-c"]);
    let daemon = Daemon::monitor(
        &pair,
        &[
            "--output",
            out.to_str().expect("utf-8 path"),
            "--stats-interval",
            "3600",
            "--workers",
            "2",
        ],
    );
    let source = smtp_e2e::mail::tool("smtp-source").expect("smtp-source");
    let source = source.to_str().expect("utf-8 path");
    // Sessions per CPU: enough that both workers get flows.
    const SESSIONS: usize = 8;
    for cpu in 0..cpus {
        let from = format!("cpu{cpu}@example.org");
        let (cpu_s, n) = (cpu.to_string(), SESSIONS.to_string());
        let s = run_in(
            &pair.client_ns,
            "taskset",
            &[
                "-c",
                &cpu_s,
                source,
                "-m",
                &n,
                "-s",
                "2",
                "-l",
                "2000",
                "-f",
                &from,
                "-t",
                "rcpt@example.net",
                "198.18.0.2:25",
            ],
            Duration::from_secs(60),
        );
        assert!(
            s.status.success(),
            "smtp-source on CPU {cpu}: {}",
            String::from_utf8_lossy(&s.stderr)
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = daemon.terminate(Duration::from_secs(20));
    assert!(status.success(), "run failed: {stderr}");
    assert!(
        stderr.contains("records_lost=0"),
        "ring buffer loss: {stderr}"
    );
    let ev = events(&out);
    let smtp = of_type(&ev, "smtp");
    for cpu in 0..cpus {
        let from = format!("<cpu{cpu}@example.org>");
        let delivered = smtp
            .iter()
            .filter(|t| t["smtp"]["mail_from"] == from.as_str())
            .filter(|t| t["transaction"]["state"] == "delivered")
            .count();
        assert_eq!(delivered, SESSIONS, "CPU {cpu}: {smtp:#?}");
    }
    for f in of_type(&ev, "flow") {
        assert_eq!(f["flow"]["gaps"], 0, "no gaps: {f}");
    }
    // Both workers had flows: "workers: 2 flows=a+b" with a, b > 0.
    let line = stderr
        .lines()
        .find(|l| l.contains("workers: 2 flows="))
        .unwrap_or_else(|| panic!("no per-worker line: {stderr}"));
    let flows: Vec<u64> = line
        .split("flows=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(|f| f.split('+').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    assert_eq!(flows.len(), 2, "{line}");
    assert!(flows.iter().all(|n| *n > 0), "{line}");
    assert_eq!(
        flows.iter().sum::<u64>(),
        (cpus * SESSIONS) as u64,
        "{line}"
    );
}
