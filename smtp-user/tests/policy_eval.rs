//! Rule evaluation on dissector events produced from SMTP transcripts:
//! every condition firing and not firing, once per transaction / session,
//! the protocol-error rule, content across chunk boundaries.

mod policy_common;

use policy_common::*;
use smtp_user::policy::{Action, RuleSet};

fn rule(sid: u32, when: &str) -> String {
    format!("[[rule]]\nsid = {sid}\nname = \"r{sid}\"\naction = \"drop\"\n[rule.when]\n{when}\n")
}

const PLAIN: &str = "From: a@b\r\nSubject: hello\r\n\r\nJust a normal message.";

#[test]
fn mail_from_domain_suffix_match() {
    let r = rules(&rule(1001, "mail_from_domain = [\"forbidden.example\"]"));
    for (from, fires) in [
        ("u@forbidden.example", true),
        ("u@x.FORBIDDEN.example", true),
        ("u@notforbidden.example", false),
        ("u@forbidden.example.org", false),
        ("", false),
    ] {
        let a = run(&r, &view(&mail(from, &["b@c"], PLAIN)));
        assert_eq!(sids(&a), if fires { vec![1001] } else { vec![] }, "{from}");
        if fires {
            assert_eq!(a[0].tx_id, Some(0));
            assert_eq!(a[0].action, Action::Drop);
            assert_eq!(a[0].matched, "mail_from_domain \"forbidden.example\"");
            assert_eq!(
                a[0].context.mail_from.as_deref(),
                Some(format!("<{from}>").as_str())
            );
            assert_eq!(a[0].context.helo.as_deref(), Some("client.example"));
            assert!(
                a[0].context.rcpt_to.is_empty(),
                "fires at MAIL, before RCPT"
            );
        }
    }
}

#[test]
fn envelope_conditions() {
    let r = rules(
        &[
            rule(10, "mail_from = [\"Boss@Corp.example\"]"),
            rule(11, "rcpt_to = [\"<victim@x.example>\"]"),
            rule(12, "rcpt_domain = [\"x.example\"]\nrcpt_count_over = 2"),
            rule(13, "helo = [\"client.*\"]\nclient_ip = [\"192.0.2.0/24\"]"),
            rule(14, "helo = [\"*.bad\"]"),
            rule(
                15,
                "client_ip = [\"2001:db8::/32\"]\nmail_from = [\"boss@corp.example\"]",
            ),
        ]
        .concat(),
    );
    let script = mail(
        "boss@corp.example",
        &["a@y.example", "victim@x.example", "c@y.example"],
        PLAIN,
    );
    let a = run(&r, &view(&script));
    assert_eq!(sids(&a), vec![13, 10, 11, 12]);
    assert_eq!(a[0].tx_id, None, "helo/client_ip rule is per session");
    assert!(
        a[0].matched.contains("client_ip 192.0.2.10"),
        "{}",
        a[0].matched
    );
    assert_eq!(a[3].matched, "rcpt_domain \"x.example\", rcpt_count 3 > 2");
    assert_eq!(a[3].context.rcpt_to.len(), 3);
    // From another network: the client_ip rules do not apply.
    let a = run_from(&r, "198.51.100.7:1234", &view(&script));
    assert_eq!(sids(&a), vec![10, 11, 12]);
    let a = run_from(&r, "[2001:db8::5]:1234", &view(&script));
    assert_eq!(sids(&a), vec![10, 15, 11, 12]);
}

#[test]
fn header_attachment_and_content_type_conditions() {
    let r = rules(
        &[
            rule(
                20,
                "header = [{ name = \"subject\", contains = \"URGENT invoice\" }]",
            ),
            rule(
                21,
                "header = [{ name = \"From\", regex = \"(?i)paypa1\\\\.\" }]",
            ),
            rule(22, "attachment_name = [\"invoice*.zip\"]"),
            rule(23, "attachment_ext = [\"exe\"]"),
            rule(24, "content_type = [\"application/x-ms*\"]"),
            rule(25, "header = [{ name = \"X-Nope\", contains = \"a\" }]"),
        ]
        .concat(),
    );
    let msg = "From: Billing <b@PayPa1.example>\r\nSubject: =?UTF-8?Q?Urgent_invoice?=\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n\
--zz\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--zz\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=\"Invoice-42.ZIP\"\r\n\r\nPK\r\n\
--zz\r\nContent-Type: application/x-msdownload; name=setup.EXE\r\n\r\nMZ\r\n--zz--";
    let a = run(&r, &view(&mail("a@b.example", &["c@d.example"], msg)));
    assert_eq!(
        sids(&a),
        vec![21, 20, 22, 23, 24],
        "rules firing on one event fire in file order"
    );
    assert_eq!(a[1].matched, "header subject contains \"urgent invoice\"");
    assert_eq!(a[1].context.subject.as_deref(), Some("Urgent invoice"));
    assert_eq!(
        a[2].matched,
        "attachment_name \"Invoice-42.ZIP\" matches \"invoice*.zip\""
    );
    assert_eq!(
        a[4].context.attachments,
        vec!["Invoice-42.ZIP".to_string(), "setup.EXE".to_string()]
    );
    // An ordinary mail fires none of them.
    assert!(run(&r, &view(&mail("a@b.example", &["c@d.example"], PLAIN))).is_empty());
}

#[test]
fn size_condition_counts_content_and_declared_size() {
    let r = rules(&rule(30, "size_over = 100"));
    let small = mail("a@b", &["c@d"], PLAIN);
    assert!(run(&r, &view(&small)).is_empty());
    let big = mail(
        "a@b",
        &["c@d"],
        &format!("Subject: x\r\n\r\n{}", "y".repeat(200)),
    );
    let a = run(&r, &view(&big));
    assert_eq!(sids(&a), vec![30]);
    assert!(a[0].matched.starts_with("size "), "{}", a[0].matched);
    let script = [
        (Down, &b"220 mx\r\n"[..]),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"MAIL FROM:<a@b> SIZE=5000\r\n"),
        // Rules see the envelope once the server accepted the MAIL.
        (Down, b"250 ok\r\n"),
    ];
    let a = run(&r, &script);
    assert_eq!(sids(&a), vec![30]);
    assert_eq!(a[0].matched, "size 5000 > 100");
}

#[test]
fn keyword_split_at_every_chunk_boundary() {
    let r = rules(&rule(1010, "body_keywords = [\"FORBIDDEN-KEYWORD\"]"));
    let body = b"Subject: t\r\n\r\nsome text then FORBIDDEN-KEYWORD and more\r\n.\r\n";
    let pre: &[(Direction, &[u8])] = &[
        (Down, b"220 mx\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"MAIL FROM:<a@b>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"RCPT TO:<c@d>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"DATA\r\n"),
        (Down, b"354 go\r\n"),
    ];
    for cut in 1..body.len() {
        let mut s = pre.to_vec();
        s.push((Up, &body[..cut]));
        s.push((Up, &body[cut..]));
        let a = run(&r, &s);
        assert_eq!(sids(&a), vec![1010], "cut at {cut}");
        assert_eq!(a[0].matched, "body keyword \"FORBIDDEN-KEYWORD\"");
    }
    // Byte by byte.
    let mut s = pre.to_vec();
    s.extend(body.chunks(1).map(|c| (Up, c)));
    assert_eq!(sids(&run(&r, &s)), vec![1010]);
    // Near misses do not fire; case matters unless body_nocase.
    let miss = mail(
        "a@b",
        &["c@d"],
        "Subject: t\r\n\r\nFORBIDDEN-KEYWOR D forbidden-keyword",
    );
    assert!(run(&r, &view(&miss)).is_empty());
    let nocase = rules(&rule(
        1010,
        "body_keywords = [\"FORBIDDEN-KEYWORD\"]\nbody_nocase = true",
    ));
    assert_eq!(sids(&run(&nocase, &view(&miss))), vec![1010]);
}

#[test]
fn regex_across_chunk_boundaries_and_at_end() {
    let r = rules(&rule(
        40,
        "body_regex = [\"wallet [0-9a-z]{20,}\", \"(?i)^end-marker$\"]",
    ));
    let body = b"Subject: t\r\n\r\npay to wallet abcdefghij0123456789xyz now\r\n.\r\n";
    let pre: &[(Direction, &[u8])] = &[
        (Down, b"220 mx\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
        (Down, b"250 ok\r\n250 ok\r\n354 go\r\n"),
    ];
    for cut in 1..body.len() {
        let mut s = pre.to_vec();
        s.push((Up, &body[..cut]));
        s.push((Up, &body[cut..]));
        let a = run(&r, &s);
        assert_eq!(sids(&a), vec![40], "cut at {cut}");
        assert_eq!(a[0].matched, "body regex /wallet [0-9a-z]{20,}/");
    }
    // Too short: no match.
    assert!(run(
        &r,
        &view(&mail("a@b", &["c@d"], "Subject: t\r\n\r\nwallet abc"))
    )
    .is_empty());
}

#[test]
fn base64_attachment_keyword() {
    let r = rules(&rule(1010, "body_keywords = [\"FORBIDDEN-KEYWORD\"]"));
    // "secret FORBIDDEN-KEYWORD inside" base64-encoded, split over lines.
    let msg = "Subject: doc\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--b1\r\nContent-Type: application/octet-stream; name=a.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n\
c2VjcmV0IEZPUkJJRERF\r\nTi1LRVlXT1JEIGluc2lk\r\nZQ==\r\n--b1--";
    let a = run(&r, &view(&mail("a@b", &["c@d"], msg)));
    assert_eq!(sids(&a), vec![1010]);
    assert_eq!(a[0].context.attachments, vec!["a.bin".to_string()]);
    // The raw (encoded) text alone does not contain the keyword.
    assert!(!msg.contains("FORBIDDEN"));
}

#[test]
fn once_per_transaction_and_per_session() {
    let r = rules(
        &[
            rule(50, "body_keywords = [\"bad\"]"),
            rule(51, "helo = [\"c\"]"),
        ]
        .concat(),
    );
    let s: &[(Direction, &[u8])] = &[
        (Down, b"220 mx\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
        (Down, b"250 ok\r\n250 ok\r\n354 go\r\n"),
        (Up, b"\r\nbad bad\r\nbad\r\n.\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
        (Down, b"250 ok\r\n250 ok\r\n354 go\r\n"),
        (Up, b"clean\r\n.\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
        (Down, b"250 ok\r\n250 ok\r\n354 go\r\n"),
        (Up, b"\r\nbad again\r\n.\r\n"),
        (Down, b"250 ok\r\n"),
    ];
    let a = run(&r, s);
    assert_eq!(sids(&a), vec![51, 50, 50]);
    assert_eq!(a[1].tx_id, Some(0));
    assert_eq!(a[2].tx_id, Some(2));
}

#[test]
fn protocol_error_default_rule() {
    let bad_greeting: &[(Direction, &[u8])] =
        &[(Down, b"HTTP/1.1 400 Bad Request\r\n"), (Up, b"EHLO c\r\n")];
    let a = run(&std::sync::Arc::new(RuleSet::builtin()), bad_greeting);
    assert_eq!(sids(&a), vec![1]);
    assert_eq!(
        (a[0].rule_name.as_str(), a[0].category.as_str()),
        ("protocol-error", "protocol-error")
    );
    assert_eq!(
        (a[0].severity, a[0].action, a[0].tx_id),
        (1, Action::Drop, None)
    );
    assert_eq!(a[0].matched, "anomaly invalid_reply");
    let alert_only = rules("[defaults]\nprotocol_error = \"alert\"\n");
    assert_eq!(run(&alert_only, bad_greeting)[0].action, Action::Alert);
    // An anomaly without the error transition does not fire it.
    let a = run(
        &std::sync::Arc::new(RuleSet::builtin()),
        &view(&mail("a@b", &["c@d"], PLAIN)),
    );
    assert!(a.is_empty());
}

#[test]
fn anomaly_conditions() {
    let r = rules(
        &[
            rule(60, "anomaly = [\"unknown_command\"]"),
            rule(61, "anomaly_severity = \"high\""),
            rule(
                62,
                "anomaly = [\"unknown_command\"]\nanomaly_severity = \"medium\"",
            ),
        ]
        .concat(),
    );
    let s: &[(Direction, &[u8])] = &[
        (Down, b"220 mx\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"FROBNICATE x\r\n"),
        (Down, b"502 no\r\n"),
        (Up, b"FROBNICATE y\r\n"),
        (Down, b"502 no\r\n"),
    ];
    let a = run(&r, s);
    assert_eq!(
        sids(&a),
        vec![60],
        "unknown_command is low: 61 and 62 stay silent"
    );
    assert_eq!(a[0].matched, "anomaly unknown_command");
}

#[test]
fn content_rules_for_client() {
    let r = rules(
        &[
            rule(70, "client_ip = [\"10.0.0.0/8\"]\nbody_keywords = [\"x\"]"),
            rule(71, "mail_from_domain = [\"a.example\"]"),
        ]
        .concat(),
    );
    assert!(r.has_content_rules());
    assert!(r.content_rules_for("10.1.2.3".parse().unwrap()));
    assert!(!r.content_rules_for("192.0.2.1".parse().unwrap()));
    let env_only = rules(&rule(71, "mail_from_domain = [\"a.example\"]"));
    assert!(!env_only.has_content_rules());
    assert!(!env_only.content_rules_for("10.1.2.3".parse().unwrap()));
    assert!(!RuleSet::builtin().has_content_rules());
}

#[test]
fn shipped_example_demo_mails() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.toml");
    let r = std::sync::Arc::new(RuleSet::from_file(&p).unwrap_or_else(|e| panic!("{e}")));
    let clean = mail(
        "sender@example.net",
        &["rcpt@example.com"],
        "Subject: test\r\nFrom: sender@example.net\r\n\r\nThis is a test mailing",
    );
    assert!(run(&r, &view(&clean)).is_empty());
    let forbidden = mail(
        "someone@mail.forbidden.example",
        &["rcpt@example.com"],
        PLAIN,
    );
    assert_eq!(sids(&run(&r, &view(&forbidden))), vec![1001]);
    let kw = "Subject: t\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nsee file\r\n\
--x\r\nContent-Type: application/octet-stream; name=\"a.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\nRk9SQklEREVOLUtFWVdPUkQK\r\n--x--";
    assert_eq!(
        sids(&run(
            &r,
            &view(&mail("a@example.net", &["b@example.com"], kw))
        )),
        vec![1010]
    );
}

#[test]
fn mixed_case_sensitive_and_nocase_keywords_across_boundaries() {
    let r = rules(
        &[
            rule(80, "body_keywords = [\"Secret-Word\"]"),
            rule(81, "body_keywords = [\"other-thing\"]\nbody_nocase = true"),
        ]
        .concat(),
    );
    let pre: &[(Direction, &[u8])] = &[
        (Down, b"220 mx\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
        (Down, b"250 ok\r\n250 ok\r\n354 go\r\n"),
    ];
    let cases: [(&[u8], Vec<u32>); 3] = [
        (
            b"\r\nsecret-word SECRET-WORD OTHER-THING\r\n.\r\n",
            vec![81],
        ),
        (b"\r\nsecret-word then Secret-Word\r\n.\r\n", vec![80]),
        (b"\r\nSecret-WordOther-Thing\r\n.\r\n", vec![80, 81]),
    ];
    for (body, want) in cases {
        for cut in 1..body.len() {
            for cut2 in [cut, (cut + 5).min(body.len())] {
                let mut s = pre.to_vec();
                s.push((Up, &body[..cut]));
                s.push((Up, &body[cut..cut2]));
                s.push((Up, &body[cut2..]));
                assert_eq!(
                    sids(&run(&r, &s)),
                    want,
                    "{} cut {cut}/{cut2}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }
}

#[test]
fn client_ip_only_rule_fires_on_the_first_event_once() {
    let r = rules(&rule(90, "client_ip = [\"192.0.2.0/28\"]"));
    let a = run(&r, &view(&mail("a@b", &["c@d"], PLAIN)));
    assert_eq!(sids(&a), vec![90]);
    assert_eq!((a[0].tx_id, a[0].context.helo.as_deref()), (None, None));
    assert_eq!(a[0].matched, "client_ip 192.0.2.10 in 192.0.2.0/28");
    assert!(run_from(&r, "192.0.2.20:1", &view(&mail("a@b", &["c@d"], PLAIN))).is_empty());
}

#[test]
fn regex_anchored_at_end_of_message_is_decided_at_end() {
    let r = rules(&rule(95, "body_regex = [\"(?m)^regards\\\\r\\\\n\\\\z\"]"));
    let ends = mail("a@b", &["c@d"], "Subject: t\r\n\r\nhello\r\nregards");
    assert_eq!(sids(&run(&r, &view(&ends))), vec![95]);
    let more = mail("a@b", &["c@d"], "Subject: t\r\n\r\nregards\r\nPS");
    assert!(run(&r, &view(&more)).is_empty());
}

#[test]
fn envelope_and_content_conditions_combine() {
    let r = rules(&rule(
        96,
        "mail_from_domain = [\"x.example\"]\nbody_keywords = [\"bad\"]",
    ));
    let a = run(
        &r,
        &view(&mail("u@x.example", &["c@d"], "Subject: s\r\n\r\nbad")),
    );
    assert_eq!(sids(&a), vec![96]);
    assert_eq!(
        a[0].matched,
        "mail_from_domain \"x.example\", body keyword \"bad\""
    );
    assert_eq!(a[0].context.rcpt_to, vec!["<c@d>".to_string()]);
    assert_eq!(a[0].context.subject.as_deref(), Some("s"));
    assert!(run(
        &r,
        &view(&mail("u@y.example", &["c@d"], "Subject: s\r\n\r\nbad"))
    )
    .is_empty());
    assert!(run(
        &r,
        &view(&mail("u@x.example", &["c@d"], "Subject: bad\r\n\r\nok"))
    )
    .is_empty());
}
