//! Issue 9, from the attacker's side: sessions crafted to steer the
//! dissector away from the message the server delivers. Each test says
//! which transaction must be reported and which rule must fire, through the
//! whole pipeline (dissector → policy → EVE), in enforce and monitor mode.
//! The test feeds every segment of the capture, as a replay does, or as the
//! live monitor sees a session the datapath did not stop.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use smtp_user::capture::parse_frame;
use smtp_user::capture::synth::{render, Conversation, RenderOptions};
use smtp_user::capture::wire::linktype;
use smtp_user::flow::{FlowConfig, FlowTable};
use smtp_user::output::EveWriter;
use smtp_user::pipeline::{Enforcement, Mode, ModeSwitch, PolicyOptions, SmtpFlows};
use smtp_user::policy::RuleSet;
use smtp_user::Direction::{self, Down, Up};

const RULES: &str = r#"
[defaults]
protocol_error = "drop"

[[rule]]
sid = 2001
name = "alice-to-anyone"
message = "alice sends to at least one recipient"
severity = "high"
action = "drop"
[rule.when]
mail_from = ["alice@example.com"]
rcpt_count_over = 0

[[rule]]
sid = 2002
name = "bad-sender"
message = "sender from bad.example"
severity = "high"
action = "drop"
[rule.when]
mail_from_domain = ["bad.example"]
"#;

struct Run {
    events: Vec<Value>,
    requests: Vec<Enforcement>,
}

fn run(steps: &[(Direction, &[u8])], mode: Mode, rules_text: &str) -> Run {
    let rules =
        Arc::new(RuleSet::from_toml(rules_text, Path::new("test-rules.toml")).expect("rules"));
    let policy = PolicyOptions {
        rules,
        mode: ModeSwitch::new(mode),
        gate: false,
        ..PolicyOptions::default()
    };
    let conv = Conversation::new(steps.iter().map(|(d, b)| (*d, b.to_vec())).collect());
    let handler = SmtpFlows::with_policy(EveWriter::new(Vec::new(), false), policy);
    let mut table = FlowTable::new(FlowConfig::default(), handler);
    let mut requests = Vec::new();
    for (ts, frame) in render(&conv, &conv.packets(), RenderOptions::default()) {
        let seg = parse_frame(linktype::ETHERNET, ts, &frame).expect("TCP frame");
        table.segment(&seg);
        requests.extend(table.handler_mut().take_requests());
    }
    table.close_all();
    requests.extend(table.handler_mut().take_requests());
    let out = table.into_handler().into_writer().into_inner();
    let events = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    Run { events, requests }
}

fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event_type"] == t).collect()
}

/// (mail_from, accepted recipients, state) of every `smtp` line.
fn envelopes(events: &[Value]) -> Vec<(String, Vec<String>, String)> {
    of_type(events, "smtp")
        .into_iter()
        .map(|e| {
            let t = &e["transaction"];
            let rcpts = t["recipients"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|r| r["reply_code"].as_u64().is_none_or(|c| c < 300))
                        .map(|r| r["path"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            (
                e["smtp"]["mail_from"].as_str().unwrap_or("").to_string(),
                rcpts,
                t["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn alert_sids(events: &[Value]) -> Vec<u64> {
    of_type(events, "alert")
        .into_iter()
        .filter_map(|a| a["alert"]["signature_id"].as_u64())
        .collect()
}

fn anomaly_kinds(events: &[Value]) -> Vec<String> {
    of_type(events, "anomaly")
        .into_iter()
        .filter_map(|a| a["anomaly"]["event"].as_str().map(String::from))
        .collect()
}

fn blocks(r: &Run) -> usize {
    r.requests
        .iter()
        .filter(|q| matches!(q, Enforcement::Block { .. }))
        .count()
}

fn env(from: &str, rcpts: &[&str], state: &str) -> (String, Vec<String>, String) {
    (
        from.to_string(),
        rcpts.iter().map(|r| r.to_string()).collect(),
        state.to_string(),
    )
}

const MESSAGE: &[u8] = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n.\r\n";

/// Issue 9 item 1, the issue's own example: a nested MAIL refused 503
/// changes nothing; the message goes from alice to bob.
#[test]
fn refused_nested_mail_keeps_the_envelope() {
    let steps: &[(Direction, &[u8])] = &[
        (Down, b"220 mx ESMTP\r\n"),
        (Up, b"EHLO c.example\r\n"),
        (Down, b"250 mx\r\n"),
        (Up, b"MAIL FROM:<alice@example.com>\r\n"),
        (Down, b"250 2.1.0 Ok\r\n"),
        (Up, b"MAIL FROM:<bob@example.com>\r\n"),
        (Down, b"503 5.5.1 Error: nested MAIL command\r\n"),
        (Up, b"RCPT TO:<bob@example.org>\r\n"),
        (Down, b"250 2.1.5 Ok\r\n"),
        (Up, b"DATA\r\n"),
        (Down, b"354 go\r\n"),
        (Up, MESSAGE),
        (Down, b"250 2.0.0 queued\r\n"),
        (Up, b"QUIT\r\n"),
        (Down, b"221 bye\r\n"),
    ];
    for mode in [Mode::Enforce, Mode::Monitor] {
        let r = run(steps, mode, RULES);
        assert_eq!(
            envelopes(&r.events),
            [env(
                "<alice@example.com>",
                &["<bob@example.org>"],
                "delivered"
            )]
        );
        assert_eq!(alert_sids(&r.events), [2001], "{mode:?}");
        assert_eq!(anomaly_kinds(&r.events), ["out_of_sequence"]);
        assert_eq!(blocks(&r), 1);
    }
}

/// The same with PIPELINING: the recipients queued behind the refused
/// MAIL belong to the open transaction.
#[test]
fn refused_nested_mail_pipelined_keeps_the_envelope() {
    let steps: &[(Direction, &[u8])] = &[
        (Down, b"220 mx ESMTP\r\n"),
        (Up, b"EHLO c.example\r\n"),
        (Down, b"250-mx\r\n250 PIPELINING\r\n"),
        (Up, b"MAIL FROM:<alice@example.com>\r\n"),
        (Down, b"250 2.1.0 Ok\r\n"),
        (
            Up,
            b"MAIL FROM:<bob@example.com>\r\nRCPT TO:<x@example.org>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n",
        ),
        (
            Down,
            b"503 5.5.1 nested MAIL\r\n250 ok\r\n550 no such user\r\n354 go\r\n",
        ),
        (Up, MESSAGE),
        (Down, b"250 2.0.0 queued\r\n"),
    ];
    let r = run(steps, Mode::Monitor, RULES);
    assert_eq!(
        envelopes(&r.events),
        [env(
            "<alice@example.com>",
            &["<x@example.org>"],
            "delivered"
        )]
    );
    assert_eq!(alert_sids(&r.events), [2001]);
}

/// A mid-envelope EHLO refused 501 leaves the server in the same state
/// (RFC 5321 §4.1.4); a refused DATA does not close the transaction.
#[test]
fn refused_ehlo_and_data_change_nothing() {
    let steps: &[(Direction, &[u8])] = &[
        (Down, b"220 mx ESMTP\r\n"),
        (Up, b"EHLO c.example\r\n"),
        (Down, b"250 mx\r\n"),
        (Up, b"MAIL FROM:<alice@example.com>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"EHLO \r\n"),
        (Down, b"501 5.5.4 Syntax: EHLO hostname\r\n"),
        (Up, b"DATA\r\n"),
        (Down, b"503 5.5.1 Error: need RCPT command\r\n"),
        (Up, b"RCPT TO:<bob@example.org>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"DATA\r\n"),
        (Down, b"354 go\r\n"),
        (Up, MESSAGE),
        (Down, b"250 queued\r\n"),
        (Up, b"QUIT\r\n"),
        (Down, b"221 bye\r\n"),
    ];
    let r = run(steps, Mode::Monitor, RULES);
    assert_eq!(
        envelopes(&r.events),
        [env(
            "<alice@example.com>",
            &["<bob@example.org>"],
            "delivered"
        )]
    );
    let smtp = of_type(&r.events, "smtp");
    assert_eq!(smtp[0]["smtp"]["helo"], "c.example");
    assert_eq!(alert_sids(&r.events), [2001]);
    assert_eq!(anomaly_kinds(&r.events), ["out_of_sequence"]);
}

/// Legitimate sessions where `out_of_sequence` must not fire: a sender or
/// recipient refused 550, a DATA refused 554 for lack of recipients.
#[test]
fn refusals_in_sequence_are_not_out_of_sequence() {
    let steps: &[(Direction, &[u8])] = &[
        (Down, b"220 mx ESMTP\r\n"),
        (Up, b"EHLO c.example\r\n"),
        (Down, b"250 mx\r\n"),
        (Up, b"MAIL FROM:<x@bad.example>\r\n"),
        (Down, b"550 5.7.1 sender refused\r\n"),
        (Up, b"MAIL FROM:<alice@example.com>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"RCPT TO:<nobody@example.org>\r\n"),
        (Down, b"550 5.1.1 unknown\r\n"),
        (Up, b"DATA\r\n"),
        (Down, b"554 5.5.1 no valid recipients\r\n"),
        (Up, b"QUIT\r\n"),
        (Down, b"221 bye\r\n"),
    ];
    let r = run(steps, Mode::Monitor, RULES);
    assert_eq!(anomaly_kinds(&r.events), Vec::<String>::new());
    assert_eq!(
        envelopes(&r.events),
        [
            env("<x@bad.example>", &[], "rejected"),
            env("<alice@example.com>", &[], "rejected"),
        ]
    );
    // A refused MAIL is no envelope: no rule sees the bad sender.
    assert_eq!(alert_sids(&r.events), Vec::<u64>::new());
}

/// A pipelined group behind a refused MAIL: the server answers 503 to the
/// RCPT and DATA that follow, as RFC 2920 expects; nothing is out of
/// sequence from the client's side.
#[test]
fn pipelined_group_behind_a_refused_mail_is_not_out_of_sequence() {
    let steps: &[(Direction, &[u8])] = &[
        (Down, b"220 mx ESMTP\r\n"),
        (Up, b"EHLO c.example\r\n"),
        (Down, b"250-mx\r\n250 PIPELINING\r\n"),
        (
            Up,
            b"MAIL FROM:<x@bad.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
        ),
        (
            Down,
            b"553 5.1.8 sender refused\r\n503 5.0.0 Need MAIL before RCPT\r\n503 5.0.0 Need MAIL command\r\n",
        ),
        (Up, b"QUIT\r\n"),
        (Down, b"221 bye\r\n"),
    ];
    let r = run(steps, Mode::Monitor, RULES);
    assert_eq!(anomaly_kinds(&r.events), Vec::<String>::new());
    assert_eq!(alert_sids(&r.events), Vec::<u64>::new());
}

/// A second mail of the session, from the bad sender, after the first.
fn evil_mail() -> Vec<(Direction, &'static [u8])> {
    vec![
        (Up, b"MAIL FROM:<evil@bad.example>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"RCPT TO:<victim@example.org>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"DATA\r\n"),
        (Down, b"354 go\r\n"),
        (Up, MESSAGE),
        (Down, b"250 queued\r\n"),
        (Up, b"QUIT\r\n"),
        (Down, b"221 bye\r\n"),
    ]
}

const PROTOCOL_ERROR_SID: u64 = 1;

/// Issue 9 item 3: an invalid `BDAT 5 X` (server: 501) takes the error
/// transition (drop requested); when the session goes on anyway the
/// dissector resynchronises and the later mail from evil@bad.example is
/// reported and its rule fires — in monitor mode, with
/// `protocol_error = "alert"`, and in a replay of an enforce-mode run.
#[test]
fn after_an_invalid_bdat_a_later_mail_is_reported() {
    let mut steps: Vec<(Direction, &[u8])> = vec![
        (Down, b"220 mx ESMTP\r\n"),
        (Up, b"EHLO c.example\r\n"),
        (Down, b"250-mx\r\n250 CHUNKING\r\n"),
        (Up, b"MAIL FROM:<alice@example.com>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"RCPT TO:<bob@example.org>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"BDAT 5 X\r\n"),
        (Down, b"501 5.5.4 Syntax error in parameters\r\n"),
        (Up, b"RSET\r\n"),
        (Down, b"250 reset\r\n"),
    ];
    steps.extend(evil_mail());
    let alert_rules = RULES.replace("protocol_error = \"drop\"", "protocol_error = \"alert\"");
    for (mode, rules) in [
        (Mode::Monitor, RULES),
        (Mode::Enforce, RULES),
        (Mode::Enforce, alert_rules.as_str()),
    ] {
        let r = run(&steps, mode, rules);
        assert_eq!(
            envelopes(&r.events),
            [
                env("<alice@example.com>", &["<bob@example.org>"], "reset"),
                env("<evil@bad.example>", &["<victim@example.org>"], "delivered"),
            ],
            "{mode:?}"
        );
        assert_eq!(
            alert_sids(&r.events),
            [2001, PROTOCOL_ERROR_SID, 2002],
            "{mode:?}"
        );
        assert_eq!(anomaly_kinds(&r.events), ["bdat_invalid"]);
        let drop_requested = of_type(&r.events, "anomaly")[0]["anomaly"]["drop_requested"].clone();
        assert_eq!(drop_requested, true);
    }
}

/// Issue 9 item 3: one garbage reply line (the EHLO's reply) takes the
/// error transition; the later mail is still reported.
#[test]
fn after_a_garbage_reply_line_a_later_mail_is_reported() {
    let mut steps: Vec<(Direction, &[u8])> = vec![
        (Down, b"220 mx ESMTP\r\n"),
        (Up, b"EHLO c.example\r\n"),
        (Down, b"\x00\x01garbage\r\n"),
    ];
    steps.extend(evil_mail());
    let r = run(&steps, Mode::Monitor, RULES);
    assert_eq!(
        envelopes(&r.events),
        [env(
            "<evil@bad.example>",
            &["<victim@example.org>"],
            "delivered"
        )]
    );
    assert_eq!(alert_sids(&r.events), [PROTOCOL_ERROR_SID, 2002]);
    assert_eq!(anomaly_kinds(&r.events), ["invalid_reply"]);
}

/// Issue 9 item 10: in monitor mode a drop verdict changes nothing in the
/// analysis: the next mail of the session is reported and alerts again.
/// A replay of an enforce-mode capture in which the session went on
/// reports it as well (the datapath, not the dissector, stops sessions).
#[test]
fn a_verdict_does_not_end_the_analysis() {
    let mut steps: Vec<(Direction, &[u8])> = vec![
        (Down, b"220 mx ESMTP\r\n"),
        (Up, b"EHLO c.example\r\n"),
        (Down, b"250 mx\r\n"),
        (Up, b"MAIL FROM:<first@bad.example>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"RCPT TO:<victim@example.org>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"DATA\r\n"),
        (Down, b"354 go\r\n"),
        (Up, MESSAGE),
        (Down, b"250 queued\r\n"),
    ];
    steps.extend(evil_mail());
    for mode in [Mode::Monitor, Mode::Enforce] {
        let r = run(&steps, mode, RULES);
        assert_eq!(
            envelopes(&r.events),
            [
                env(
                    "<first@bad.example>",
                    &["<victim@example.org>"],
                    "delivered"
                ),
                env("<evil@bad.example>", &["<victim@example.org>"], "delivered"),
            ],
            "{mode:?}"
        );
        assert_eq!(alert_sids(&r.events), [2002, 2002], "{mode:?}");
        let actions: Vec<_> = of_type(&r.events, "alert")
            .iter()
            .map(|a| a["alert"]["action"].as_str().unwrap_or("").to_string())
            .collect();
        let expected = if mode == Mode::Monitor {
            "allowed"
        } else {
            "blocked"
        };
        assert_eq!(actions[0], expected);
        // One block request per session: the strongest verdict only.
        assert_eq!(blocks(&r), 1);
    }
}

// ----- the dissector alone: what a transcript must yield -----

mod smtp_common;

use smtp_common::{anomalies, reply_codes, transactions};
use smtp_user::smtp::{AnomalyKind as A, OwnedEvent, Session, TransactionState as S, Verb};

fn dissect(s: &mut Session, script: &[(Direction, &[u8])]) -> Vec<OwnedEvent> {
    let mut ev = Vec::new();
    for (d, b) in script {
        s.feed(*d, b, &mut ev);
    }
    s.finish(&mut ev);
    ev
}

/// Issue 9 item 7: after a 1000-byte client gap ending on a line boundary,
/// the next complete line (`DATA`) is kept; the message lines are content,
/// not false `invalid_command`s.
#[test]
fn a_gap_ending_on_a_line_boundary_keeps_the_next_command() {
    let mut s = Session::new();
    let mut ev = Vec::new();
    for (d, b) in [
        (Down, &b"220 mx\r\n"[..]),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 mx\r\n"),
        (Up, b"MAIL FROM:<evil@bad.example>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"RCPT TO:<v@example.org>\r\n"),
        (Down, b"250 ok\r\n"),
    ] {
        s.feed(d, b, &mut ev);
    }
    s.gap(Up, 1000, &mut ev);
    let ev2 = dissect(
        &mut s,
        &[
            (Up, b"DATA\r\n"),
            (Down, b"354 go\r\n"),
            (
                Up,
                b"Subject: hi\r\n\r\none\r\ntwo\r\nthree\r\nfour\r\n.\r\n",
            ),
            (Down, b"250 queued\r\n"),
        ],
    );
    ev.extend(ev2);
    assert_eq!(anomalies(&ev), [A::StreamGap]);
    let t = transactions(&ev);
    assert_eq!(
        (t[0].mail_from.as_deref(), t[0].state),
        (Some("<evil@bad.example>"), S::Delivered)
    );
}

/// Issue 9 item 7: a lost server reply never shifts later replies: a
/// 334 names AUTH, a 354 names DATA.
#[test]
fn replies_that_name_their_command_realign_the_queue() {
    let mut s = Session::new();
    let ev = dissect(
        &mut s,
        &[
            (Down, b"220 mx\r\n"),
            (Up, b"EHLO c\r\n"),
            (Down, b"250 mx\r\n"),
            (Up, b"NOOP\r\nAUTH LOGIN\r\n"),
            // The NOOP's reply never came (a middlebox ate it).
            (Down, b"334 VXNlcm5hbWU6\r\n"),
            (Up, b"dXNlcg==\r\n"),
            (Down, b"334 UGFzc3dvcmQ6\r\n"),
            (Up, b"cGFzcw==\r\n"),
            (Down, b"235 ok\r\n"),
            (
                Up,
                b"MAIL FROM:<evil@bad.example>\r\nRCPT TO:<v@x>\r\nDATA\r\n",
            ),
            (Down, b"250 ok\r\n354 go\r\n"),
            (Up, b"Subject: s\r\n\r\nbody\r\n.\r\n"),
            (Down, b"250 queued\r\n"),
        ],
    );
    let codes = reply_codes(&ev);
    assert_eq!(codes[2], (334, Some(Verb::Auth)));
    assert_eq!(codes[4], (235, Some(Verb::Auth)));
    // The RCPT's reply is lost too: 354 still answers DATA.
    assert_eq!(codes[6], (354, Some(Verb::Data)));
    assert_eq!(codes[7], (250, Some(Verb::Data)));
    let t = transactions(&ev);
    assert_eq!(
        (t[0].mail_from.as_deref(), t[0].state),
        (Some("<evil@bad.example>"), S::Delivered)
    );
}

/// Issue 9 item 6: a greeting longer than the line cap is one reply, its
/// excess skipped: the EHLO reply is not taken for the greeting and the
/// 334 still answers AUTH.
#[test]
fn an_over_long_greeting_is_one_reply() {
    let mut greeting = b"220-mx\r\n220 ".to_vec();
    greeting.extend(std::iter::repeat_n(b'g', 6000));
    greeting.extend_from_slice(b"\r\n");
    let mut s = Session::new();
    let ev = dissect(
        &mut s,
        &[
            (Down, &greeting),
            (Up, b"EHLO c\r\n"),
            (Down, b"250-mx\r\n250 AUTH LOGIN\r\n"),
            (Up, b"AUTH LOGIN\r\n"),
            (Down, b"334 VXNlcm5hbWU6\r\n"),
        ],
    );
    let codes = reply_codes(&ev);
    assert_eq!(
        codes,
        [
            (220, None),
            (250, Some(Verb::Ehlo)),
            (334, Some(Verb::Auth))
        ]
    );
    assert_eq!(anomalies(&ev), [A::LineTooLong]);
}

/// Issue 9 item 10: what Postfix accepts is read as Postfix reads it:
/// `BDAT 5<TAB>LAST`, a quoted local part with a `>` in it, a source route.
#[test]
fn separators_and_paths_real_servers_accept() {
    let mut s = Session::new();
    let ev = dissect(
        &mut s,
        &[
            (Down, b"220 mx\r\n"),
            (Up, b"EHLO c\r\n"),
            (Down, b"250 mx\r\n"),
            (
                Up,
                b"MAIL FROM:<\"a>b\"@bad.example> SIZE=5\r\nRCPT TO:<@relay.example:v@example.org>\r\nBDAT 5\tLAST\r\nhello",
            ),
            (Down, b"250 ok\r\n250 ok\r\n250 queued\r\n"),
        ],
    );
    assert_eq!(anomalies(&ev), []);
    let t = &transactions(&ev)[0];
    assert_eq!(t.mail_from.as_deref(), Some("<\"a>b\"@bad.example>"));
    assert_eq!(t.mail_params, ["SIZE=5"]);
    assert_eq!(t.rcpt_to[0].path, "<@relay.example:v@example.org>");
    assert_eq!((t.state, t.size), (S::Delivered, 5));
    // The policy sees the sender's domain.
    let steps: &[(Direction, &[u8])] = &[
        (Down, b"220 mx\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 mx\r\n"),
        (Up, b"MAIL FROM:<\"a>b\"@bad.example>\r\n"),
        (Down, b"250 ok\r\n"),
    ];
    assert_eq!(alert_sids(&run(steps, Mode::Monitor, RULES).events), [2002]);
}

/// Issue 9 item 10: beyond 1,024 pipelined commands the later ones are
/// counted, not kept: their replies are counted off, later replies stay
/// aligned and the mail after them is reported.
#[test]
fn over_a_thousand_pipelined_commands_keep_replies_aligned() {
    let mut up = Vec::new();
    let mut down = Vec::new();
    for _ in 0..1100 {
        up.extend_from_slice(b"NOOP\r\n");
        down.extend_from_slice(b"250 ok\r\n");
    }
    let mut s = Session::new();
    let ev = dissect(
        &mut s,
        &[
            (Down, b"220 mx\r\n"),
            (Up, b"EHLO c\r\n"),
            (Down, b"250 mx\r\n"),
            (Up, &up),
            (Down, &down),
            (
                Up,
                b"MAIL FROM:<evil@bad.example>\r\nRCPT TO:<v@x>\r\nDATA\r\n",
            ),
            (
                Down,
                b"250 ok\r\n550 no such user\r\n554 no valid recipients\r\n",
            ),
        ],
    );
    assert_eq!(anomalies(&ev), [A::LimitExceeded]);
    let t = &transactions(&ev)[0];
    assert_eq!(t.mail_from.as_deref(), Some("<evil@bad.example>"));
    assert_eq!(t.rcpt_to[0].reply_code, Some(550));
    assert_eq!((t.state, t.reply_code), (S::Rejected, Some(554)));
}

/// Issue 9 item 6: legitimate sessions where the RFC-limit anomalies must
/// not fire: a 510-octet command line, a 998-octet message line, the
/// content sent after the 354, reply codes in range.
#[test]
fn rfc_limits_are_not_reported_on_legitimate_mail() {
    let mut rcpt = b"RCPT TO:<".to_vec();
    rcpt.extend(std::iter::repeat_n(b'r', 510 - 10 - 12));
    rcpt.extend_from_slice(b"@example.org>\r\n");
    assert_eq!(rcpt.len(), 512);
    let mut msg = b"Subject: s\r\n\r\n".to_vec();
    msg.extend(std::iter::repeat_n(b'm', 998));
    msg.extend_from_slice(b"\r\n.\r\n");
    let mut s = Session::new();
    let ev = dissect(
        &mut s,
        &[
            (Down, b"220 mx\r\n"),
            (Up, b"EHLO c\r\n"),
            (Down, b"250 mx\r\n"),
            (Up, b"MAIL FROM:<a@b>\r\n"),
            (Down, b"250 ok\r\n"),
            (Up, &rcpt),
            (Down, b"250 ok\r\n"),
            (Up, b"DATA\r\n"),
            (Down, b"354 go\r\n"),
            (Up, &msg),
            (Down, b"250 queued\r\n"),
        ],
    );
    assert_eq!(anomalies(&ev), []);
    assert_eq!(transactions(&ev)[0].state, S::Delivered);
}

/// …and the same limits, one octet over, reported.
#[test]
fn rfc_limits_are_reported_one_octet_over() {
    let mut rcpt = b"RCPT TO:<".to_vec();
    rcpt.extend(std::iter::repeat_n(b'r', 510 - 10 - 12 + 1));
    rcpt.extend_from_slice(b"@example.org>\r\n");
    let mut msg = b"Subject: s\r\n\r\n".to_vec();
    msg.extend(std::iter::repeat_n(b'm', 999));
    msg.extend_from_slice(b"\r\n.\r\n");
    let mut s = Session::new();
    let ev = dissect(
        &mut s,
        &[
            (Down, b"220 mx\r\n"),
            (Up, b"EHLO c\r\n"),
            (Down, b"250 mx\r\n"),
            (Up, b"MAIL FROM:<a@b>\r\n"),
            (Down, b"260 ok\r\n"),
            (Up, &rcpt),
            (Down, b"250 ok\r\n"),
            (Up, b"DATA\r\n"),
            (Down, b"354 go\r\n"),
            (Up, &msg),
            (Down, b"250 queued\r\n"),
        ],
    );
    assert_eq!(
        anomalies(&ev),
        [
            A::InvalidReplyCode,
            A::CommandLineTooLong,
            A::MessageLineTooLong
        ]
    );
}

/// The message of the smuggling tests: a bare-LF dot line, then a second
/// transaction's commands and content, then the real end of data.
const SMUGGLING: &[u8] = b"Subject: one\r\n\r\nhello\n.\nMAIL FROM:<evil@bad.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n";

fn smuggling_session(replies_after_data: &'static [u8]) -> Vec<(Direction, &'static [u8])> {
    vec![
        (Down, b"220 mx ESMTP\r\n"),
        (Up, b"EHLO c.example\r\n"),
        (Down, b"250 mx\r\n"),
        (Up, b"MAIL FROM:<alice@example.com>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"RCPT TO:<bob@example.org>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"DATA\r\n"),
        (Down, b"354 go\r\n"),
        (Up, SMUGGLING),
        (Down, replies_after_data),
        (Up, b"QUIT\r\n"),
        (Down, b"221 bye\r\n"),
    ]
}

/// Issue 9 item 4: a vulnerable server takes `\n.\n` for the end of data
/// (its replies: the first message queued, then MAIL/RCPT/DATA/end of the
/// smuggled one). The smuggled transaction is reported with its own
/// envelope and content, its rule fires, and the anomaly says the server
/// accepted the ambiguous end.
#[test]
fn smuggling_accepted_by_the_server_is_followed() {
    let steps =
        smuggling_session(b"250 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued 2\r\n");
    for mode in [Mode::Monitor, Mode::Enforce] {
        let r = run(&steps, mode, RULES);
        assert_eq!(
            envelopes(&r.events),
            [
                env("<alice@example.com>", &["<bob@example.org>"], "delivered"),
                env("<evil@bad.example>", &["<victim@example.org>"], "delivered"),
            ],
            "{mode:?}"
        );
        let smtp = of_type(&r.events, "smtp");
        assert_eq!(smtp[1]["email"]["subject"], "smuggled");
        assert_eq!(alert_sids(&r.events), [2001, 2002], "{mode:?}");
        // The smuggled DATA came with its content before its 354.
        assert_eq!(
            anomaly_kinds(&r.events),
            [
                "smuggling_bare_lf_end_of_data",
                "smuggling_accepted",
                "content_before_354"
            ]
        );
    }
}

/// …and when the server did not take it (one reply to the one message),
/// there is one transaction and nothing is smuggled.
#[test]
fn smuggling_refused_by_the_server_is_one_message() {
    let steps = smuggling_session(b"250 queued\r\n");
    for mode in [Mode::Monitor, Mode::Enforce] {
        let r = run(&steps, mode, RULES);
        assert_eq!(
            envelopes(&r.events),
            [env(
                "<alice@example.com>",
                &["<bob@example.org>"],
                "delivered"
            )],
            "{mode:?}"
        );
        assert_eq!(alert_sids(&r.events), [2001], "{mode:?}");
        assert_eq!(anomaly_kinds(&r.events), ["smuggling_bare_lf_end_of_data"]);
    }
}

/// The session ends before the replies decide: one message (RFC 5321's
/// reading).
#[test]
fn smuggling_undecided_is_one_message() {
    let mut s = Session::new();
    let steps = smuggling_session(b"");
    let ev = dissect(&mut s, &steps[..10]);
    assert_eq!(transactions(&ev).len(), 1);
    assert_eq!(anomalies(&ev), [A::SmugglingBareLfEndOfData]);
}

/// Issue 9 item 9: the handoff to TLS writes an `smtp` event (HELO name,
/// tls: true, the open transaction if any).
#[test]
fn starttls_handoff_is_an_smtp_event() {
    let steps: &[(Direction, &[u8])] = &[
        (Down, b"220 mx ESMTP\r\n"),
        (Up, b"EHLO c.example\r\n"),
        (Down, b"250-mx\r\n250 STARTTLS\r\n"),
        (Up, b"MAIL FROM:<alice@example.com>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"STARTTLS\r\n"),
        (Down, b"220 go ahead\r\n"),
        (Up, b"\x16\x03\x01\x00\x05hello"),
        (Down, b"\x16\x03\x03\x00\x05hello"),
    ];
    let r = run(steps, Mode::Monitor, RULES);
    let smtp = of_type(&r.events, "smtp");
    assert_eq!(smtp.len(), 1);
    assert_eq!(smtp[0]["smtp"]["helo"], "c.example");
    assert_eq!(smtp[0]["smtp"]["mail_from"], "<alice@example.com>");
    assert_eq!(smtp[0]["transaction"]["tls"], true);
    assert_eq!(anomaly_kinds(&r.events), Vec::<String>::new());
    // Without a transaction: the HELO name alone.
    let mut bare = steps.to_vec();
    bare.drain(3..5);
    let r = run(&bare, Mode::Monitor, RULES);
    let smtp = of_type(&r.events, "smtp");
    assert_eq!(smtp.len(), 1);
    assert_eq!(smtp[0]["smtp"]["helo"], "c.example");
    assert_eq!(smtp[0]["transaction"]["tls"], true);
}

/// A 220 to STARTTLS not followed by TLS bytes: reported, and what the
/// client sends in clear is parsed (the later mail is reported, its rule
/// fires).
#[test]
fn cleartext_after_starttls_is_reported_and_parsed() {
    let mut steps: Vec<(Direction, &[u8])> = vec![
        (Down, b"220 mx ESMTP\r\n"),
        (Up, b"EHLO c.example\r\n"),
        (Down, b"250-mx\r\n250 STARTTLS\r\n"),
        (Up, b"STARTTLS\r\n"),
        (Down, b"220 go ahead\r\n"),
    ];
    steps.extend(evil_mail());
    let r = run(&steps, Mode::Monitor, RULES);
    assert_eq!(anomaly_kinds(&r.events), ["cleartext_after_starttls"]);
    let smtp = of_type(&r.events, "smtp");
    // The handoff event, then the mail sent in clear.
    assert_eq!(smtp[0]["transaction"]["tls"], true);
    assert_eq!(
        envelopes(&r.events)[1],
        env("<evil@bad.example>", &["<victim@example.org>"], "delivered")
    );
    assert_eq!(smtp[1]["transaction"]["tls"], false);
    assert_eq!(alert_sids(&r.events), [2002]);
}

/// A refused STARTTLS (454) continues in clear and is parsed.
#[test]
fn refused_starttls_continues_in_clear() {
    let mut steps: Vec<(Direction, &[u8])> = vec![
        (Down, b"220 mx ESMTP\r\n"),
        (Up, b"EHLO c.example\r\n"),
        (Down, b"250-mx\r\n250 STARTTLS\r\n"),
        (Up, b"STARTTLS\r\n"),
        (Down, b"454 4.7.0 TLS not available\r\n"),
    ];
    steps.extend(evil_mail());
    let r = run(&steps, Mode::Monitor, RULES);
    assert_eq!(anomaly_kinds(&r.events), ["tls_rejected"]);
    assert_eq!(
        envelopes(&r.events),
        [env(
            "<evil@bad.example>",
            &["<victim@example.org>"],
            "delivered"
        )]
    );
    assert_eq!(alert_sids(&r.events), [2002]);
}

/// Issue 9 item 1: a BDAT refused 503 (no MAIL accepted) opens no
/// transaction (its id, already on its content events, is not reused).
#[test]
fn refused_bdat_without_mail_opens_no_transaction() {
    let mut s = Session::new();
    let ev = dissect(
        &mut s,
        &[
            (Down, b"220 mx\r\n"),
            (Up, b"EHLO c\r\n"),
            (Down, b"250 mx\r\n"),
            (Up, b"BDAT 3 LAST\r\nabc"),
            (Down, b"503 5.5.1 Error: need MAIL command\r\n"),
            (
                Up,
                b"MAIL FROM:<evil@bad.example>\r\nRCPT TO:<v@x>\r\nBDAT 3 LAST\r\nxyz",
            ),
            (Down, b"250 ok\r\n250 ok\r\n250 queued\r\n"),
        ],
    );
    let t = transactions(&ev);
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].id, t[0].mail_from.as_deref(), t[0].state, t[0].size),
        (1, Some("<evil@bad.example>"), S::Delivered, 3)
    );
    assert_eq!(anomalies(&ev), [A::OutOfSequence]);
}

/// Fuzzer regression (fuzz/seeds/regress-smuggling-bytes-count): when the
/// shadow reading is adopted in the middle of a server segment, the rest of
/// the segment is counted too (bytes ≥ unparsed bytes).
#[test]
fn adopting_the_shadow_mid_segment_counts_every_byte() {
    let mut s = Session::new();
    let steps =
        smuggling_session(b"250 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued 2\r\n");
    let mut ev = Vec::new();
    let mut down = 0;
    for (d, b) in &steps[..11] {
        s.feed(*d, b, &mut ev);
        if *d == Down {
            down += b.len() as u64;
        }
    }
    s.finish(&mut ev);
    assert_eq!(s.bytes(Down), down);
    assert!(s.bytes(Down) >= s.unparsed_bytes(Down));
}

/// Fuzzer regression (fuzz/seeds/regress-smuggling-tx-ids): both readings
/// give transaction ids after the fork (here the main reading to a BDAT
/// after the real end); the adopted shadow's move past the main reading's,
/// so no id is reported twice.
#[test]
fn adopted_shadow_ids_never_repeat_reported_ones() {
    let mut s = Session::new();
    let ev = dissect(
        &mut s,
        &[
            (Down, b"220 mx\r\n"),
            (Up, b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
            (Down, b"250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            (
                Up,
                b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<evil@bad.example>\r\nRCPT TO:<v@x>\r\nDATA\r\nSubject: two\r\n\r\nsmuggled\r\n.\r\nBDAT 3 LAST\r\nabc",
            ),
            (Down, b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued 2\r\n"),
        ],
    );
    let mut ids: Vec<u32> = transactions(&ev).iter().map(|t| t.id).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "{:?}", transactions(&ev));
    assert!(transactions(&ev)
        .iter()
        .any(|t| t.mail_from.as_deref() == Some("<evil@bad.example>")));
}

/// The fuzzer's crash inputs (`fuzz/seeds/regress-*`, the fuzz target's
/// record format) replayed with its checks: no transaction reported twice,
/// no envelope change for a reported one, bytes ≥ unparsed bytes.
#[test]
fn fuzz_regressions() {
    use smtp_user::smtp::{Event, EventSink, SessionConfig};
    use std::collections::HashSet;
    struct Check(HashSet<u32>);
    impl EventSink for Check {
        fn event(&mut self, event: Event<'_>) {
            match &event {
                Event::Transaction(t) => assert!(self.0.insert(t.id), "tx {} twice", t.id),
                Event::Envelope(e) => {
                    assert!(e.tx_id.is_none_or(|id| !self.0.contains(&id)));
                }
                _ => {}
            }
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz seeds") {
        let path = entry.expect("seed").path();
        if !path.to_string_lossy().contains("regress-") {
            continue;
        }
        let data = std::fs::read(&path).expect("seed");
        let (mut s, mut rest) = match data.split_first() {
            Some((b'!', tail)) => {
                let tiny = SessionConfig {
                    line_limit: 48,
                    hold_limit: 64,
                    max_pending: 6,
                    max_open_transactions: 2,
                    max_reply_lines: 3,
                    max_bdat_chunk: 100,
                    ..SessionConfig::default()
                };
                (Session::with_config(tiny), tail)
            }
            Some((b'~', tail)) => (Session::midstream(), tail),
            _ => (Session::new(), &data[..]),
        };
        let mut sink = Check(HashSet::new());
        while let Some((&h, tail)) = rest.split_first() {
            let dir = if h & 1 == 0 { Up } else { Down };
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
        assert!(s.bytes(Up) >= s.unparsed_bytes(Up), "{path:?}");
        assert!(s.bytes(Down) >= s.unparsed_bytes(Down), "{path:?}");
        n += 1;
    }
    assert!(n >= 3);
}
