//! `--metrics`: the scraped page passes `promtool check metrics`, and a real
//! Prometheus server (Debian's) started here scrapes it and serves the
//! series through its API.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use smtp_e2e::{
    live::{Live, POLICY_RULES},
    require_root,
};

const METRICS: &str = "127.0.0.1:9725";
const PROM: &str = "127.0.0.1:9790";

/// `curl -s URL` inside `ns`.
fn curl(ns: &str, url: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "--max-time", "10", url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn metrics_pass_promtool_and_prometheus_scrapes_them() {
    if !require_root("metrics_pass_promtool_and_prometheus_scrapes_them") {
        return;
    }
    let mut live = Live::start("metr", Some(POLICY_RULES), &["--metrics", METRICS]);
    let ns = live.pair.server_ns.clone();
    // A clean mail and a blocked one: flows, transactions, an alert, a verdict.
    assert!(live
        .swaks(&["--from", "alice@example.org", "--to", "bob@example.net"])
        .success());
    let _ = live.swaks(&["--from", "eve@forbidden.example", "--to", "bob@example.net"]);

    let end = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = curl(&ns, &format!("http://{METRICS}/metrics"));
        if page.contains("smtp_monitor_alerts_total{sid=\"1001\"} 1") || Instant::now() > end {
            break page;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for want in [
        "smtp_monitor_build_info{version=",
        "smtp_monitor_kernel_records_lost_total 0",
        "smtp_monitor_kernel_gate_held_total",
        "smtp_monitor_flows_total 2",
        "smtp_monitor_transactions_total",
        "smtp_monitor_alerts_total{sid=\"1001\"} 1",
        "smtp_monitor_verdicts_total 1",
        "smtp_monitor_verdict_latency_seconds_count 1",
        "smtp_monitor_reassembly_buffered_bytes",
        "smtp_monitor_anomalies_suppressed_total{kind=",
        "smtp_monitor_ip_blocks_total 0",
    ] {
        assert!(page.contains(want), "{want} missing from:\n{page}");
    }
    // The same counters as `ctl stats` (one source).
    let (ok, out, err) = live.ctl(&["--json", "stats"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(v["user"]["pipeline"]["flows"], 2, "{v}");
    assert_eq!(v["user"]["pipeline"]["alerts_by_sid"]["1001"], 1, "{v}");

    let file = live.dir.0.join("metrics.txt");
    std::fs::write(&file, &page).expect("write");
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("open"))
        .output()
        .expect("promtool (cargo xtask prereqs installs prometheus)");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real Prometheus in the same namespace, scraping every second.
    let conf = live.dir.0.join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: smtp\n    static_configs:\n      - targets: ['{METRICS}']\n"
        ),
    )
    .expect("config");
    let data = live.dir.0.join("prom-data");
    let _prom = Prometheus(
        Command::new("ip")
            .args(["netns", "exec", &ns, "prometheus"])
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={PROM}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (cargo xtask prereqs installs it)"),
    );
    let end = Instant::now() + Duration::from_secs(60);
    let mut last;
    let found = loop {
        last = curl(
            &ns,
            &format!("http://{PROM}/api/v1/query?query=smtp_monitor_flows_total"),
        );
        if last.contains("\"status\":\"success\"")
            && last.contains("\"__name__\":\"smtp_monitor_flows_total\"")
        {
            break true;
        }
        if Instant::now() > end {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(found, "Prometheus did not show the series: {last}");
    let up = curl(&ns, &format!("http://{PROM}/api/v1/query?query=up"));
    assert!(up.contains("\"value\":[") && up.contains(",\"1\"]"), "{up}");
    let hist = curl(
        &ns,
        &format!("http://{PROM}/api/v1/query?query=smtp_monitor_verdict_latency_seconds_bucket"),
    );
    assert!(hist.contains("\"le\":\"+Inf\""), "{hist}");
    live.stop();
}
