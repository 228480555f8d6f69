//! Content-rule cost (criterion): the dissector alone vs the dissector
//! feeding a policy session with 1,000 body keywords and 20 body regexes,
//! on a DATA-heavy stream (one 10 MiB plain-text message of English-like
//! words, fed in 64 KiB segments as reassembly would) and on a 10 MiB
//! base64 attachment. No pattern matches the text, so every byte is
//! scanned by both automata (the worst case: a match would not stop the
//! scan either, as other rules may still match).
//!
//! Throughput is wire bytes per second; the ratio of the two times is the
//! content-rule cost. Variants with only the keywords and only the regexes
//! tell the two automata apart.
//!
//! Measured (2-core shared VM, stable 1.95, one core): plain text 10 MiB:
//! dissector alone 0.21 ms (47 GiB/s: the plain-text path does no per-byte
//! work beyond memchr), with 1,000 keywords + 20 regexes 45.9 ms
//! (218 MiB/s; keywords alone 429 MiB/s, regexes alone 443 MiB/s);
//! base64 attachment 10 MiB: dissector alone 6.65 ms (1.41 GiB/s), with
//! the rules 39.0 ms (245 MiB/s), ratio 5.9: about 4.4 ns per decoded
//! byte for this rule set. Figures vary with the load of the machine.
//! Run: `cargo bench -p smtp-user --bench policy -- --warm-up-time 1 --measurement-time 5`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput};
use smtp_user::policy::{Alert, PolicySession, RuleSet};
use smtp_user::smtp::{Event, EventSink, Session};
use smtp_user::Direction::{self, Down, Up};

type Script = Vec<(Direction, Vec<u8>)>;

const SEGMENT: usize = 64 << 10;
const WORDS: &[&str] = &[
    "the", "meeting", "report", "quarter", "invoice", "attached", "please", "review", "numbers",
    "budget", "team", "project", "schedule", "thanks", "regards", "update", "customer", "order",
    "delivery", "payment", "account", "week", "friday", "office", "draft", "version", "final",
];

/// Deterministic English-like text, 78-byte lines.
fn text(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 100);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut line = 0;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = WORDS[(x % WORDS.len() as u64) as usize].as_bytes();
        out.extend_from_slice(w);
        line += w.len() + 1;
        if line > 72 {
            out.extend_from_slice(b"\r\n");
            line = 0;
        } else {
            out.push(b' ');
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn session_with(message: Vec<u8>) -> Script {
    let mut content = message;
    content.extend_from_slice(b".\r\n");
    let mut s: Script = vec![
        (Down, b"220 mx.example.org ESMTP\r\n".to_vec()),
        (Up, b"EHLO client.example.com\r\n".to_vec()),
        (Down, b"250-mx.example.org\r\n250 8BITMIME\r\n".to_vec()),
        (
            Up,
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n".to_vec(),
        ),
        (Down, b"250 ok\r\n250 ok\r\n354 go\r\n".to_vec()),
    ];
    for seg in content.chunks(SEGMENT) {
        s.push((Up, seg.to_vec()));
    }
    s.push((Down, b"250 2.0.0 Ok: queued\r\n".to_vec()));
    s.push((Up, b"QUIT\r\n".to_vec()));
    s.push((Down, b"221 bye\r\n".to_vec()));
    s
}

fn data_heavy() -> Script {
    let mut m = b"Subject: bench\r\nFrom: a@example.com\r\nTo: b@example.org\r\n\r\n".to_vec();
    m.extend_from_slice(&text(10 << 20));
    session_with(m)
}

fn base64_attachment() -> Script {
    let mut m = b"Subject: attachment\r\nContent-Type: multipart/mixed; boundary=\"XyZ\"\r\n\r\n--XyZ\r\n\
Content-Type: text/plain\r\n\r\nsee attached\r\n--XyZ\r\nContent-Type: application/octet-stream; name=\"report.txt\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    let raw = text(7 << 20);
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut line = Vec::new();
    for c in raw.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            line.push(A[((n >> (18 - 6 * i)) & 63) as usize]);
        }
        if line.len() >= 76 {
            m.extend_from_slice(&line);
            m.extend_from_slice(b"\r\n");
            line.clear();
        }
    }
    m.extend_from_slice(&line);
    m.extend_from_slice(b"\r\n--XyZ--\r\n");
    session_with(m)
}

/// Body regexes of the benchmark (none occurs in the generated text).
const REGEXES: [&str; 20] = [
    r"(?i)bitcoin wallet [0-9a-z]{20,}",
    r"\b(bc1|[13])[a-hj-np-z0-9]{25,39}\b",
    r"(?i)wire transfer to [A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}",
    r"(?i)verify your (account|password) within [0-9]+ hours",
    r"[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{4}",
    r"(?i)click here to unlock",
    r"(?i)password\s*[:=]\s*\S{6,}",
    r"(?i)\bgift ?cards?\b.{0,20}\bcodes?\b",
    r"https?://[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}/",
    r"(?i)powershell(\.exe)? -e(nc)? [A-Za-z0-9+/=]{20,}",
    r"(?i)invoice #?[0-9]{8,}",
    r"(?i)your mailbox is (full|over quota)",
    r"(?i)act now!{2,}",
    r"(?i)urgent:? (payment|invoice) required",
    r"\$[0-9]{1,3}(,[0-9]{3}){2,}",
    r"(?i)ssn:? ?[0-9]{3}-[0-9]{2}-[0-9]{4}",
    r"(?i)docusign.{0,30}(review|sign) document",
    r"(?i)\bunsubscribe\b.{0,10}\bzzq\b",
    r"(?i)lottery (winner|prize)",
    r"(?i)nigerian prince",
];

/// A pseudo-random lower-case keyword of 6..=14 letters (xorshift).
fn word(x: &mut u64) -> String {
    let mut next = || {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    };
    let n = 6 + (next() % 9) as usize;
    (0..n)
        .map(|_| char::from(b'a' + (next() % 26) as u8))
        .collect()
}

/// 1,000 keywords (20 rules of 50, half of the rules case-insensitive)
/// and/or 20 regexes (one rule each).
fn rules_text(keywords: bool, regexes: bool) -> String {
    let mut t = String::new();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for r in 0..if keywords { 20 } else { 0 } {
        let kws: Vec<String> = (0..50)
            .map(|_| format!("\"{}\"", word(&mut seed)))
            .collect();
        let nocase = if r % 2 == 0 {
            "\nbody_nocase = true"
        } else {
            ""
        };
        t.push_str(&format!(
            "[[rule]]\nsid = {}\nname = \"kw{r}\"\n[rule.when]\nbody_keywords = [{}]{nocase}\n\n",
            100 + r,
            kws.join(", ")
        ));
    }
    for (i, re) in REGEXES
        .iter()
        .enumerate()
        .take(if regexes { 20 } else { 0 })
    {
        t.push_str(&format!(
            "[[rule]]\nsid = {}\nname = \"re{i}\"\n[rule.when]\nbody_regex = [{re:?}]\n\n",
            200 + i
        ));
    }
    t
}

/// Feeds events to the policy session.
struct PolicySink {
    policy: Option<PolicySession>,
    alerts: Vec<Alert>,
    events: u64,
}

impl EventSink for PolicySink {
    fn event(&mut self, event: Event<'_>) {
        self.events += 1;
        if let Some(p) = &mut self.policy {
            p.event(&event, &mut self.alerts);
        }
    }
}

fn run(script: &Script, rules: Option<&Arc<RuleSet>>) -> (u64, usize) {
    let client: SocketAddr = "192.0.2.10:40000".parse().expect("addr");
    let server: SocketAddr = "192.0.2.1:25".parse().expect("addr");
    let mut sink = PolicySink {
        policy: rules.map(|r| r.session(client, server)),
        alerts: Vec::new(),
        events: 0,
    };
    let mut s = Session::new();
    for (dir, bytes) in script {
        s.feed(*dir, black_box(bytes), &mut sink);
    }
    s.finish(&mut sink);
    (sink.events, sink.alerts.len())
}

fn main() {
    let compile = |kw, re| {
        Arc::new(
            RuleSet::from_toml(&rules_text(kw, re), Path::new("bench-rules.toml"))
                .expect("bench rules compile"),
        )
    };
    let rules = compile(true, true);
    assert_eq!(rules.len(), 41);
    let (kw_only, re_only) = (compile(true, false), compile(false, true));
    let mut c = Criterion::default().configure_from_args();
    for (name, script) in [
        ("data_heavy_10MiB", data_heavy()),
        ("base64_attachment_10MiB", base64_attachment()),
    ] {
        let wire: usize = script.iter().map(|(_, b)| b.len()).sum();
        // No pattern occurs in the text: the scan must not report anything.
        assert_eq!(run(&script, Some(&rules)).1, 0, "{name}: unexpected alert");
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(wire as u64));
        g.sample_size(10);
        g.bench_function("dissector_only", |b| b.iter(|| run(&script, None)));
        g.bench_function("dissector+1000kw+20re", |b| {
            b.iter(|| run(&script, Some(&rules)))
        });
        g.bench_function("dissector+1000kw", |b| {
            b.iter(|| run(&script, Some(&kw_only)))
        });
        g.bench_function("dissector+20re", |b| {
            b.iter(|| run(&script, Some(&re_only)))
        });
        g.finish();
    }
    c.final_summary();
}
