//! Helpers shared by the policy tests: load rules from text, run SMTP
//! transcripts through the dissector and a policy session, collect alerts.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use smtp_user::policy::{Alert, PolicySession, RuleSet};
use smtp_user::smtp::{Event, EventSink, Session};
pub use smtp_user::Direction;

pub use Direction::{Down, Up};

pub const CLIENT: &str = "192.0.2.10:40000";
pub const SERVER: &str = "192.0.2.1:25";

/// Compiles rules text (list files relative to the crate directory), panicking with the error.
pub fn rules(text: &str) -> Arc<RuleSet> {
    let origin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules.toml");
    match RuleSet::from_toml(text, &origin) {
        Ok(r) => Arc::new(r),
        Err(e) => panic!("{e}"),
    }
}

/// Forwards dissector events to a policy session.
pub struct PolicySink {
    pub policy: PolicySession,
    pub alerts: Vec<Alert>,
}

impl EventSink for PolicySink {
    fn event(&mut self, event: Event<'_>) {
        self.policy.event(&event, &mut self.alerts);
    }
}

/// Runs the transcript (each segment fed as one chunk) from `client`, returns the alerts.
pub fn run_from(rules: &Arc<RuleSet>, client: &str, script: &[(Direction, &[u8])]) -> Vec<Alert> {
    let client: SocketAddr = client.parse().expect("test address");
    let mut sink = PolicySink {
        policy: rules.session(client, SERVER.parse().expect("test address")),
        alerts: Vec::new(),
    };
    let mut s = Session::new();
    for (dir, bytes) in script {
        s.feed(*dir, bytes, &mut sink);
    }
    s.finish(&mut sink);
    sink.alerts
}

pub fn run(rules: &Arc<RuleSet>, script: &[(Direction, &[u8])]) -> Vec<Alert> {
    run_from(rules, CLIENT, script)
}

/// sids of the alerts, in firing order.
pub fn sids(alerts: &[Alert]) -> Vec<u32> {
    alerts.iter().map(|a| a.signature_id).collect()
}

/// A whole session delivering one message with `body` (CRLF lines, no final dot).
pub fn mail(from: &str, rcpts: &[&str], message: &str) -> Vec<(Direction, Vec<u8>)> {
    let mut s: Vec<(Direction, Vec<u8>)> = vec![
        (Down, b"220 mx ESMTP\r\n".to_vec()),
        (Up, b"EHLO client.example\r\n".to_vec()),
        (Down, b"250-mx\r\n250 8BITMIME\r\n".to_vec()),
        (Up, format!("MAIL FROM:<{from}>\r\n").into_bytes()),
        (Down, b"250 ok\r\n".to_vec()),
    ];
    for r in rcpts {
        s.push((Up, format!("RCPT TO:<{r}>\r\n").into_bytes()));
        s.push((Down, b"250 ok\r\n".to_vec()));
    }
    s.push((Up, b"DATA\r\n".to_vec()));
    s.push((Down, b"354 go\r\n".to_vec()));
    s.push((Up, format!("{message}\r\n.\r\n").into_bytes()));
    s.push((Down, b"250 queued\r\n".to_vec()));
    s.push((Up, b"QUIT\r\n".to_vec()));
    s.push((Down, b"221 bye\r\n".to_vec()));
    s
}

/// Borrowed view of an owned script.
pub fn view(s: &[(Direction, Vec<u8>)]) -> Vec<(Direction, &[u8])> {
    s.iter().map(|(d, b)| (*d, b.as_slice())).collect()
}
