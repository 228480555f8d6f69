//! The end-of-data gate against real Postfix, as an MX sees it: a Postfix
//! server (smtpd, cleanup, queue, virtual delivery to a Maildir) behind
//! `smtp-user run --gate` on its veth, and as clients a relaying Postfix
//! (which pipelines MAIL, RCPT, DATA, and the end of data with QUIT),
//! swaks, and a scripted client for BDAT (neither Postfix's SMTP client
//! nor swaks sends it) and the cuts MTAs rarely make.
//!
//! Blocked messages (keyword in the body, in a base64 attachment, in a BDAT
//! chunk) must never be in the server's queue or Maildir, and the sending
//! Postfix must bounce them (5.7.1) without retry or duplicate. Clean
//! messages must be delivered exactly once, byte for byte.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use smtp_e2e::{
    in_netns,
    live::of_type,
    mail::require_tools,
    postfix::{message, message_with_attachment, ClientOptions, MxLive, ServerOptions},
    require_root,
    smtp_client::SmtpClient,
};

const KEYWORD: &str = "FORBIDDEN-KEYWORD";
const SERVER: &str = "198.18.0.2:25";

fn ready(test: &str) -> bool {
    require_root(test) && require_tools(test, &["postfix", "swaks", "iptables"])
}

/// No `gate_missed` anomaly, and the monitor used the queue gate.
fn assert_nothing_missed(mx: &MxLive) {
    let ev = mx.events();
    let missed: Vec<&Value> = ev
        .iter()
        .filter(|e| e["event_type"] == "anomaly" && e["anomaly"]["event"] == "gate_missed")
        .collect();
    assert!(missed.is_empty(), "gate_missed: {missed:?}");
}

/// The Postfix client bounced the message with 5.7.1, never deferred it,
/// and its bounce (in the client's Maildir) says 5.7.1; the server has
/// nothing of it.
fn assert_bounced_not_delivered(mx: &MxLive) {
    let mta = mx.mta();
    assert!(
        mta.wait_log(Duration::from_secs(20), |l| l.contains("status=bounced")),
        "no bounce; client log:\n{}",
        mta.log()
    );
    let log = mta.log();
    let bounced = log
        .lines()
        .find(|l| l.contains("status=bounced"))
        .unwrap_or("");
    assert!(bounced.contains("5.7.1"), "bounce without 5.7.1: {bounced}");
    // Time for a retry or a late delivery to show.
    std::thread::sleep(Duration::from_secs(2));
    let log = mta.log();
    assert!(
        !log.contains("status=deferred"),
        "deferred (would retry):\n{log}"
    );
    assert_eq!(log.matches("status=bounced").count(), 1, "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("relay=198.18.0.2") && l.contains("status=sent")),
        "the server accepted it:\n{log}"
    );
    assert!(mx.server.maildir().is_empty(), "delivered to the Maildir");
    assert_eq!(mx.server.queued(), 0, "left in the server's queue");
    let bounce = mta.maildir();
    assert_eq!(bounce.len(), 1, "one bounce to the sender");
    let text = String::from_utf8_lossy(&bounce[0]);
    assert!(text.contains("5.7.1"), "bounce text: {text}");
    let alerts = of_type(&mx.events(), "alert");
    assert!(
        alerts.iter().any(|a| a["alert"]["signature_id"] == 2001),
        "no alert: {alerts:?}"
    );
    assert_nothing_missed(mx);
}

#[test]
fn postfix_data_keyword_is_rejected_and_bounced() {
    if !ready("postfix_data_keyword_is_rejected_and_bounced") {
        return;
    }
    let server = ServerOptions {
        no_chunking: true,
        ..Default::default()
    };
    let mx = MxLive::start(
        "gpd",
        &server,
        Some(&ClientOptions::default()),
        Some(&["--gate"]),
    );
    mx.mta().submit(
        "alice@client.test.example",
        "bob@example.net",
        &message(
            "kw-data",
            "hello",
            &format!("line one\nthe {KEYWORD} here\nbye\n"),
        ),
    );
    assert_bounced_not_delivered(&mx);
}

/// The server offers CHUNKING (Postfix's default). Postfix's SMTP client
/// still sends DATA (it has no BDAT support), pipelined with MAIL and RCPT;
/// BDAT is covered by the scripted client below.
#[test]
fn postfix_keyword_in_base64_attachment_is_rejected() {
    if !ready("postfix_keyword_in_base64_attachment_is_rejected") {
        return;
    }
    let mx = MxLive::start(
        "gpa",
        &ServerOptions::default(),
        Some(&ClientOptions::default()),
        Some(&["--gate"]),
    );
    let msg = message_with_attachment(
        "kw-att",
        format!("binary-ish report\n{KEYWORD}\nend\n").as_bytes(),
    );
    mx.mta()
        .submit("alice@client.test.example", "bob@example.net", &msg);
    assert_bounced_not_delivered(&mx);
}

#[test]
fn swaks_keyword_in_body_and_attachment_is_rejected() {
    if !ready("swaks_keyword_in_body_and_attachment_is_rejected") {
        return;
    }
    let mx = MxLive::start("gsw", &ServerOptions::default(), None, Some(&["--gate"]));
    let body = mx.dir.0.join("att.txt");
    std::fs::write(&body, format!("report\n{KEYWORD}\n")).expect("attachment");
    let att = format!("@{}", body.display());
    for extra in [
        vec!["--body", "the FORBIDDEN-KEYWORD is here"],
        vec!["--attach", att.as_str()],
    ] {
        let mut args = vec![
            "--from",
            "alice@client.test.example",
            "--to",
            "bob@example.net",
        ];
        args.extend(extra);
        let r = mx.swaks(&args);
        assert!(
            r.stdout.contains("<** 550 5.7.1"),
            "swaks did not get the reject: {}\n{}",
            r.stdout,
            r.stderr
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(mx.server.maildir().is_empty());
    assert_eq!(mx.server.queued(), 0);
    assert_nothing_missed(&mx);
}

/// A scripted client: `BDAT n LAST` with its chunk in one write, a BDAT
/// chunk ending mid-segment followed by QUIT, and a dot line split over two
/// segments. Returns the end-of-data replies.
fn scripted(ns: &str, keyword: bool) -> Vec<String> {
    let kw = if keyword { KEYWORD } else { "clean" };
    in_netns(ns, move || {
        let addr: SocketAddr = SERVER.parse().expect("addr");
        let mut replies = Vec::new();
        // BDAT LAST with the chunk in the command's segment, QUIT after it.
        let (mut c, _) = SmtpClient::connect(addr, Duration::from_secs(10)).expect("connect");
        c.cmd("EHLO scripted.test.example\r\n");
        c.cmd("MAIL FROM:<alice@client.test.example>\r\n");
        c.cmd("RCPT TO:<bob@example.net>\r\n");
        let chunk = format!("Subject: bdat\r\nMessage-ID: <bdat-{kw}@x>\r\n\r\nbody {kw}\r\n");
        let mut seg = format!("BDAT {} LAST\r\n", chunk.len()).into_bytes();
        seg.extend_from_slice(chunk.as_bytes());
        seg.extend_from_slice(b"QUIT\r\n");
        c.send(&seg);
        replies.push(c.reply().unwrap_or_default());
        // DATA with the dot line split: "\r\n." then ".\r\n"... "\r\n".
        let (mut c, _) = SmtpClient::connect(addr, Duration::from_secs(10)).expect("connect");
        c.cmd("EHLO scripted.test.example\r\n");
        c.cmd("MAIL FROM:<alice@client.test.example>\r\n");
        c.cmd("RCPT TO:<bob@example.net>\r\n");
        c.cmd("DATA\r\n");
        c.send(
            format!("Subject: split\r\nMessage-ID: <split-{kw}@x>\r\n\r\nbody {kw}\r\n.")
                .as_bytes(),
        );
        std::thread::sleep(Duration::from_millis(50));
        c.send(b"\r\nQUIT\r\n");
        replies.push(c.reply().unwrap_or_default());
        replies
    })
    .join()
    .expect("scripted client")
}

#[test]
fn scripted_bdat_and_split_dot_are_held() {
    if !ready("scripted_bdat_and_split_dot_are_held") {
        return;
    }
    let mx = MxLive::start("gsc", &ServerOptions::default(), None, Some(&["--gate"]));
    let blocked = scripted(&mx.pair.client_ns, true);
    for r in &blocked {
        assert!(
            r.starts_with("550 5.7.1"),
            "expected the reject: {blocked:?}"
        );
    }
    let clean = scripted(&mx.pair.client_ns, false);
    for r in &clean {
        assert!(r.starts_with("250"), "expected acceptance: {clean:?}");
    }
    mx.server.wait_maildir(2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let mail = mx.server.maildir();
    assert_eq!(mail.len(), 2, "the two clean messages, once each");
    assert!(mail
        .iter()
        .all(|m| !String::from_utf8_lossy(m).contains(KEYWORD)));
    assert_nothing_missed(&mx);
}

/// The message as delivered, from its first header we wrote on (the
/// server adds Return-Path, Delivered-To and Received above it), with LF
/// line endings.
fn delivered_from(m: &[u8], first_header: &str) -> Option<String> {
    let s = String::from_utf8_lossy(m).replace("\r\n", "\n");
    let at = s.find(first_header)?;
    Some(s[at..].to_string())
}

fn median_p99(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (q(0.5), q(0.99))
}

#[test]
fn postfix_100_clean_messages_delivered_once_byte_identical() {
    if !ready("postfix_100_clean_messages_delivered_once_byte_identical") {
        return;
    }
    let mx = MxLive::start(
        "gcl",
        &ServerOptions::default(),
        Some(&ClientOptions::default()),
        Some(&["--gate"]),
    );
    let n = 100;
    let mut sent = Vec::new();
    for i in 0..n {
        let body =
            format!("clean message {i}\n.leading dot line\nline with trailing space \nend\n");
        let m = message(&format!("clean-{i}"), &format!("clean {i}"), &body);
        mx.mta()
            .submit("alice@client.test.example", "bob@example.net", &m);
        sent.push(String::from_utf8(m).expect("utf-8"));
    }
    let start = Instant::now();
    let mta = mx.mta();
    assert!(
        mta.wait_log(Duration::from_secs(120), |l| l
            .matches("status=sent")
            .count()
            >= n),
        "not all sent after {:?}:\n{}",
        start.elapsed(),
        mta.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let log = mta.log();
    assert_eq!(log.matches("status=sent").count(), n, "{log}");
    assert!(!log.contains("status=deferred"), "{log}");
    mx.server.wait_maildir(n, Duration::from_secs(20));
    let mail = mx.server.maildir();
    assert_eq!(mail.len(), n, "each delivered exactly once");
    let mut delivered: Vec<String> = mail
        .iter()
        .filter_map(|m| delivered_from(m, "From: alice@"))
        .collect();
    delivered.sort();
    sent.sort();
    let differ = delivered.iter().zip(&sent).filter(|(a, b)| a != b).count();
    assert_eq!(
        (delivered.len(), differ),
        (n, 0),
        "byte-identical content; first: {:?} vs {:?}",
        delivered.first(),
        sent.first()
    );
    assert_nothing_missed(&mx);
    let mut d = mta.sent_transmission_delays();
    let (med, p99) = median_p99(&mut d);
    println!(
        "postfix client, {n} clean messages through the queue gate: SMTP transmission time \
         median {:.3} ms, p99 {:.3} ms (Postfix delays=…/d)",
        med * 1000.0,
        p99 * 1000.0
    );
}

#[test]
fn sigterm_with_a_held_message_does_not_release_it() {
    if !ready("sigterm_with_a_held_message_does_not_release_it") {
        return;
    }
    let mut mx = MxLive::start("gst", &ServerOptions::default(), None, Some(&["--gate"]));
    let pid = mx.daemon.as_ref().expect("daemon").pid();
    // The daemon stalls: the client's segments wait in the queue.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let ns = mx.pair.client_ns.clone();
    let swaks = std::thread::spawn(move || {
        smtp_e2e::mail::swaks(
            &ns,
            "198.18.0.2",
            &[
                "--from",
                "alice@client.test.example",
                "--to",
                "bob@example.net",
                "--body",
                "a clean message held at shutdown",
            ],
            Duration::from_secs(8),
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        libc::kill(pid, libc::SIGCONT);
    };
    let (st, err) = mx
        .daemon
        .take()
        .expect("daemon")
        .terminate(Duration::from_secs(20));
    assert!(st.success(), "{err}");
    let r = swaks.join().expect("swaks");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        mx.server.maildir().is_empty(),
        "released by the monitor stopping; swaks: {}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("<-  250 2.0.0 Ok: queued"),
        "{}",
        r.stdout
    );
}

#[test]
fn starttls_session_is_reported_and_allowed() {
    if !ready("starttls_session_is_reported_and_allowed")
        || !require_tools("starttls_session_is_reported_and_allowed", &["openssl"])
    {
        return;
    }
    let dir = smtp_e2e::live::TempDir::new("gtlscert");
    let cert = smtp_e2e::postfix::self_signed_cert(&dir.0);
    let server = ServerOptions {
        tls: Some(cert),
        ..Default::default()
    };
    let mut mx = MxLive::start(
        "gtl",
        &server,
        Some(&ClientOptions { tls: true }),
        Some(&["--gate"]),
    );
    mx.mta().submit(
        "alice@client.test.example",
        "bob@example.net",
        &message("tls-1", "tls", &format!("encrypted {KEYWORD}\n")),
    );
    let mta = mx.mta();
    assert!(
        mta.wait_log(Duration::from_secs(20), |l| l.contains("status=sent")),
        "TLS mail not delivered (tls = allow):\n{}",
        mta.log()
    );
    assert!(
        mta.log().contains("TLS connection established"),
        "{}",
        mta.log()
    );
    assert_eq!(mx.server.wait_maildir(1, Duration::from_secs(10)), 1);
    // Reported: the flow says TLS, and no alert could be raised.
    std::thread::sleep(Duration::from_millis(300));
    mx.daemon.take();
    let ev = smtp_e2e::live::events(&mx.eve);
    let flows = of_type(&ev, "flow");
    assert!(
        flows.iter().any(|f| f["smtp"]["tls"] == true
            || f["tls"] == true
            || f.to_string().contains("\"tls\":true")),
        "no TLS flow reported: {flows:?}"
    );
    assert!(of_type(&ev, "alert").is_empty());
}

/// `tls = "reject"`: the TLS session is reset at the handshake (nothing
/// behind TLS can be inspected). The sending Postfix defers the message
/// (4.7.5, handshake failure): it is neither delivered uninspected nor
/// lost; the MTA must be set to send plaintext to this host.
#[test]
fn starttls_with_tls_reject_is_reset_at_the_handshake() {
    let test = "starttls_with_tls_reject_is_reset_at_the_handshake";
    if !ready(test) || !require_tools(test, &["openssl"]) {
        return;
    }
    let dir = smtp_e2e::live::TempDir::new("gtlrcert");
    let cert = smtp_e2e::postfix::self_signed_cert(&dir.0);
    let server = ServerOptions {
        tls: Some(cert),
        ..Default::default()
    };
    let mut mx = MxLive::start("gtr", &server, Some(&ClientOptions { tls: true }), None);
    let rules = smtp_e2e::postfix::GATE_RULES.replace(
        "action = \"reject\"\n",
        "action = \"reject\"\ntls = \"reject\"\n",
    );
    mx.spawn_monitor_with(&rules, &["--gate"]);
    mx.mta().submit(
        "alice@client.test.example",
        "bob@example.net",
        &message("tlsr-1", "tls", "clean content\n"),
    );
    let mta = mx.mta();
    assert!(
        mta.wait_log(Duration::from_secs(20), |l| l.contains("status=deferred")),
        "TLS session not stopped:\n{}",
        mta.log()
    );
    assert!(mta.log().contains("handshake"), "{}", mta.log());
    std::thread::sleep(Duration::from_secs(1));
    assert!(mx.server.maildir().is_empty(), "delivered uninspected");
    assert_eq!(mx.server.queued(), 0);
    let alerts = of_type(&mx.events(), "alert");
    assert!(
        alerts
            .iter()
            .any(|a| a["alert"]["matched"].as_str().unwrap_or("").contains("tls")),
        "no tls alert: {alerts:?}"
    );
}
