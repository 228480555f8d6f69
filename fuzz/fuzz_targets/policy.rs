//! The dissector and the policy together: arbitrary interleaved streams (same
//! input format as `session`) through one SMTP session whose events feed a
//! `PolicySession` of a rule set using every condition kind (envelope,
//! headers, streamed keywords and regexes, attachments, anomalies).
#![no_main]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use smtp_user::policy::{Alert, PolicySession, RuleSet};
use smtp_user::smtp::{Event, EventSink, Session};
use smtp_user::Direction;

const RULES: &str = r#"
[[rule]]
sid = 10
name = "envelope"
action = "drop"
block_ip_for = "1m"
[rule.when]
client_ip = ["0.0.0.0/0"]
helo = ["*x*"]
mail_from_domain = ["a", "b.c"]
rcpt_domain = ["d"]
rcpt_count_over = 1

[[rule]]
sid = 11
name = "content"
action = "reset"
[rule.when]
size_over = 10
header = [{ name = "Subject", contains = "hi" }, { name = "From", regex = "(?i)a+b" }]
body_keywords = ["KEY", "abc", "x"]
body_nocase = true
body_regex = ["k[0-9]{2,}z", "(?i)wal+et"]

[[rule]]
sid = 12
name = "attachments"
[rule.when]
attachment_name = ["*.exe", "a?c*"]
attachment_ext = ["js"]
content_type = ["application/*"]

[[rule]]
sid = 13
name = "anomalies"
[rule.when]
anomaly_severity = "low"
"#;

static RULESET: LazyLock<Arc<RuleSet>> = LazyLock::new(|| {
    Arc::new(RuleSet::from_toml(RULES, Path::new("fuzz.toml")).expect("valid fuzz rules"))
});

struct Sink {
    policy: PolicySession,
    alerts: Vec<Alert>,
}

impl EventSink for Sink {
    fn event(&mut self, event: Event<'_>) {
        self.policy.event(&event, &mut self.alerts);
        // Bounded memory: alerts are looked at and forgotten.
        for a in self.alerts.drain(..) {
            assert!(a.severity >= 1 && a.severity <= 3);
            assert!(a.matched.len() <= 4096);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let client: SocketAddr = "198.18.0.1:40000".parse().expect("addr");
    let server: SocketAddr = "198.18.0.2:25".parse().expect("addr");
    let mut sink = Sink {
        policy: RULESET.session(client, server),
        alerts: Vec::new(),
    };
    let mut s = Session::new();
    let mut rest = data;
    while let Some((&h, tail)) = rest.split_first() {
        let dir = if h & 1 == 0 {
            Direction::Up
        } else {
            Direction::Down
        };
        if h & 2 != 0 {
            s.gap(dir, u64::from(h >> 2), &mut sink);
            rest = tail;
            continue;
        }
        let n = (usize::from(h >> 2) + 1).min(tail.len());
        s.feed(dir, &tail[..n], &mut sink);
        rest = &tail[n..];
    }
    s.finish(&mut sink);
});
