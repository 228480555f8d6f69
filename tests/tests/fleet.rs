//! `--fleet`: two monitored mail hosts (two namespace pairs) share one
//! real redis-server. A rule's IP block on host A reaches host B's kernel
//! within a second with the same expiry, `ctl unblock` on B frees the
//! client on both, a Redis restart is survived (changes made meanwhile are
//! queued and sent, both hosts resynchronise), and malformed entries are
//! rejected and counted.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use smtp_e2e::{
    live::{serial, TempDir, SERVER, SWAKS_TIMEOUT},
    mail::swaks,
    netns::run,
    process::{run_to_end, Daemon},
    redis::RedisServer,
    require_root,
    sink::MailSink,
    NetPair,
};
use smtp_user::datapath::{Control, DEFAULT_PIN_ROOT};

const RULES: &str = r#"
[[rule]]
sid = 2001
name = "forbidden-sender-blocks-the-client"
message = "MAIL FROM a forbidden domain"
action = "drop"
block_ip_for = "10m"
[rule.when]
mail_from_domain = ["forbidden.example"]
"#;

const CLIENT: &str = "198.18.0.1";
/// Redis listens here, in host A's namespace, reached by B over a veth.
const REDIS_A: &str = "198.19.255.1";
const REDIS_B: &str = "198.19.255.2";

struct Host {
    daemon: Option<Daemon>,
    _sink: MailSink,
    pair: NetPair,
}

impl Host {
    fn control(&self) -> Control {
        Control::open_pinned(DEFAULT_PIN_ROOT.as_ref(), &self.pair.server_if).expect("pins")
    }

    fn blocked(&self, ip: &str) -> Option<Option<Duration>> {
        let ip: IpAddr = ip.parse().expect("ip");
        self.control()
            .blocked_ips()
            .expect("blocklist")
            .into_iter()
            .find(|(a, _)| *a == ip)
            .map(|(_, left)| left)
    }

    fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        let mut full = vec!["ctl", "--iface", &self.pair.server_if];
        full.extend_from_slice(args);
        let out = run_to_end(&self.pair.server_ns, &full, Duration::from_secs(20));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn stats(&self) -> serde_json::Value {
        let (ok, out, err) = self.ctl(&["--json", "stats"]);
        assert!(ok, "{err}");
        serde_json::from_str(out.trim()).expect("JSON")
    }

    fn status(&self) -> String {
        let (ok, out, err) = self.ctl(&["--json", "status"]);
        assert!(ok, "{err}");
        out
    }

    fn session(&self, from: &str) -> bool {
        swaks(
            &self.pair.client_ns,
            SERVER,
            &["--from", from, "--to", "bob@example.net"],
            SWAKS_TIMEOUT,
        )
        .success()
    }
}

/// Polls `cond` every 10 ms for at most `limit`; the time it took.
fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond().then(|| start.elapsed())
}

#[test]
fn fleet_shares_blocks_unblocks_and_survives_a_redis_restart() {
    if !require_root("fleet_shares_blocks_unblocks_and_survives_a_redis_restart") {
        return;
    }
    let _turn = serial();
    let dir = TempDir::new("fleet");
    let (pa, pb) = (NetPair::new("flta"), NetPair::new("fltb"));
    // A veth between the two mail hosts' namespaces: the fleet's network.
    let (la, lb) = (
        format!("{}l", &pa.server_if[..pa.server_if.len() - 1]),
        format!("{}l", &pb.server_if[..pb.server_if.len() - 1]),
    );
    run(
        "ip",
        &[
            "link",
            "add",
            &la,
            "netns",
            &pa.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &lb,
            "netns",
            &pb.server_ns,
        ],
    );
    for (ns, dev, addr) in [(&pa.server_ns, &la, REDIS_A), (&pb.server_ns, &lb, REDIS_B)] {
        run(
            "ip",
            &["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev],
        );
        run("ip", &["-n", ns, "link", "set", dev, "up"]);
    }
    let mut redis = RedisServer::start(
        &pa.server_ns,
        &[REDIS_A],
        6379,
        Some("fl33t"),
        dir.0.join("redis"),
    );
    let pw = dir.0.join("pw");
    std::fs::write(&pw, "fl33t\n").expect("pw");
    let rules = dir.0.join("rules.toml");
    std::fs::write(&rules, RULES).expect("rules");
    let url = format!("redis://{REDIS_A}:6379/testfleet");
    let start = |pair: NetPair, tag: &str| -> Host {
        let sink = MailSink::start(&pair.server_ns, &format!("{SERVER}:25"));
        let eve = dir.0.join(format!("eve-{tag}.json"));
        let daemon = Daemon::monitor(
            &pair,
            &[
                "-o",
                eve.to_str().expect("utf-8"),
                "--stats-interval",
                "3600",
                "--rules",
                rules.to_str().expect("utf-8"),
                "--fleet",
                &url,
                "--redis-password-file",
                pw.to_str().expect("utf-8"),
            ],
        );
        Host {
            daemon: Some(daemon),
            _sink: sink,
            pair,
        }
    };
    let a = start(pa, "a");
    let b = start(pb, "b");
    for h in [&a, &b] {
        assert!(
            within(Duration::from_secs(10), || h
                .status()
                .contains("\"fleet\":\"connected"))
            .is_some(),
            "{}",
            h.status()
        );
    }

    // The client can talk to B; a rule on A blocks it there...
    assert!(
        b.session("alice@example.org"),
        "B serves the client before the block"
    );
    let _ = a.session("eve@forbidden.example");
    assert!(
        within(Duration::from_secs(5), || a.blocked(CLIENT).is_some()).is_some(),
        "A's rule did not block the client"
    );
    // ...and within a second on B too, with the same expiry.
    let took = within(Duration::from_secs(1), || b.blocked(CLIENT).is_some());
    assert!(took.is_some(), "B did not get the block within 1 s");
    println!("fleet: A's block reached B's kernel {took:?} after A's");
    let (left_a, left_b) = (
        a.blocked(CLIENT).flatten().expect("expiry"),
        b.blocked(CLIENT).flatten().expect("expiry"),
    );
    assert!(
        left_a.as_secs_f64() > 540.0 && left_a.as_secs_f64().sub_abs(left_b.as_secs_f64()) < 2.0,
        "{left_a:?} vs {left_b:?}"
    );
    assert!(
        !b.session("bob@example.org"),
        "the client must not get a session on B"
    );

    // `ctl unblock` on B frees it on both.
    let (ok, out, err) = b.ctl(&["unblock", CLIENT]);
    assert!(
        ok && out.contains("unblocked (published to the fleet)"),
        "{out}{err}"
    );
    assert!(
        within(Duration::from_secs(1), || a.blocked(CLIENT).is_none()).is_some(),
        "A kept the block"
    );
    assert!(b.session("carol@example.org"), "B serves the client again");

    // Redis restarts; a change made while it is down is queued and sent.
    redis.stop();
    assert!(
        within(Duration::from_secs(10), || b
            .status()
            .contains("\"fleet\":\"disconnected"))
        .is_some(),
        "{}",
        b.status()
    );
    let (ok, out, err) = b.ctl(&["block", "198.18.0.77", "--for", "10m"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = a.ctl(&["block", "198.18.0.78"]);
    assert!(ok, "{out}{err}");
    assert!(b.status().contains("1 changes queued"), "{}", b.status());
    // Local enforcement went on.
    assert!(b.blocked("198.18.0.77").is_some());
    redis.restart();
    for (h, ip) in [(&a, "198.18.0.77"), (&b, "198.18.0.78")] {
        assert!(
            within(Duration::from_secs(15), || h.blocked(ip).is_some()).is_some(),
            "{ip} did not reach {}",
            h.pair.server_if
        );
    }
    assert_eq!(redis.cli_text(&["HLEN", "testfleet:blocklist"]).trim(), "2");
    // The unblock is in the set too: the client stays free after the resync.
    assert!(a.blocked(CLIENT).is_none() && b.blocked(CLIENT).is_none());

    // Malformed entries are rejected, counted, never applied or fatal.
    redis.cli(&["HSET", "testfleet:blocklist", "not-an-ip", "5"]);
    redis.cli(&["HSET", "testfleet:blocklist", "0.0.0.0", "0"]);
    redis.cli(&["PUBLISH", "testfleet:changes", "block 0.0.0.0 0 evil"]);
    redis.cli(&["PUBLISH", "testfleet:changes", "\u{7f}garbage"]);
    for h in [&a, &b] {
        assert!(
            within(Duration::from_secs(5), || h.stats()["user"]["fleet"]
                ["rejected"]
                .as_u64()
                >= Some(2))
            .is_some(),
            "{}",
            h.stats()
        );
    }
    // A restart makes both reload the set with the bad entries in it.
    redis.restart();
    for h in [&a, &b] {
        assert!(
            within(Duration::from_secs(15), || h.stats()["user"]["fleet"]
                ["rejected"]
                .as_u64()
                >= Some(4))
            .is_some(),
            "{}",
            h.stats()
        );
        let blocked = h.control().blocked_ips().expect("blocklist");
        assert_eq!(blocked.len(), 2, "{blocked:?}");
    }
    for mut h in [a, b] {
        let (st, err) = h
            .daemon
            .take()
            .expect("daemon")
            .terminate(Duration::from_secs(20));
        assert!(st.success(), "{err}");
    }
}

trait SubAbs {
    fn sub_abs(self, o: f64) -> f64;
}

impl SubAbs for f64 {
    fn sub_abs(self, o: f64) -> f64 {
        (self - o).abs()
    }
}
