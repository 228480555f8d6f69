//! Realistic transcripts through the dissector: one test per state and
//! transition of the machine (Postfix, Exim, Gmail-style servers; Outlook and
//! bare-LF clients; PIPELINING, AUTH, STARTTLS, BDAT, rejections, 421).

mod smtp_common;

use smtp_common::*;
use smtp_user::smtp::{
    AnomalyKind, ContentPart, Email, OwnedEvent, Recipient, Session, State, TransactionState, Verb,
};
use smtp_user::Direction;

#[test]
fn postfix_session_delivers_one_message() {
    let ev = run(POSTFIX);
    assert_eq!(
        trace(&ev),
        [
            "R:220",
            "C:EHLO",
            "R:250",
            "C:MAIL",
            "R:250",
            "C:RCPT",
            "R:250",
            "C:DATA",
            "R:354",
            "M:End:0",
            "R:250",
            "T:0:Delivered",
            "C:QUIT",
            "R:221"
        ]
    );
    assert_eq!(anomalies(&ev), []);
    let r = responses(&ev);
    assert_eq!(r[1].lines.len(), 11);
    assert_eq!(r[1].lines[10], "CHUNKING");
    assert_eq!(r[1].to, Some(Verb::Ehlo));
    assert_eq!(r[0].to, None);
    assert_eq!(reply_codes(&ev)[5], (250, Some(Verb::Data)));
    let body = b"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: Lunch\r\nDate: Tue, 3 Oct 2023 10:00:00 +0200\r\nMessage-ID: <abc@example.com>\r\n\r\nSee you at noon.\r\n.and a stuffed dot.\r\n";
    assert_eq!(content(&ev, 0, ContentPart::Raw), body.to_vec());
    assert_eq!(
        content(&ev, 0, ContentPart::DecodedBody),
        b"See you at noon.\r\n.and a stuffed dot.\r\n".to_vec()
    );
    let t = &transactions(&ev)[0];
    assert_eq!(t.id, 0);
    assert_eq!(t.helo.as_deref(), Some("client.example.com"));
    assert_eq!(t.mail_from.as_deref(), Some("<alice@example.com>"));
    assert_eq!(t.mail_params, ["SIZE=321", "BODY=8BITMIME"]);
    assert_eq!(
        t.rcpt_to,
        [Recipient {
            path: "<bob@example.org>".into(),
            reply_code: Some(250)
        }]
    );
    assert_eq!(t.reply_code, Some(250));
    assert_eq!(t.size, body.len() as u64);
    assert!(!t.tls);
    assert_eq!(t.email_status.as_deref(), Some("PARSE_DONE"));
    assert_eq!(
        t.email,
        Some(Email {
            from: Some("Alice <alice@example.com>".into()),
            to: vec!["Bob <bob@example.org>".into()],
            subject: Some("Lunch".into()),
            date: Some("Tue, 3 Oct 2023 10:00:00 +0200".into()),
            message_id: Some("<abc@example.com>".into()),
            // Python hashlib: the unstuffed body after the header block; "Lunch".
            body_md5: Some("59571cef67a440c9ea41edf469d173b6".into()),
            subject_md5: Some("f1e8a2ee776150614aaf07a8bdbac218".into()),
            ..Email::default()
        })
    );
}

#[test]
fn states_follow_the_session() {
    let mut s = Session::new();
    let mut ev = Vec::new();
    let mut states = vec![s.state()];
    for (dir, bytes) in POSTFIX {
        s.feed(*dir, bytes, &mut ev);
        states.push(s.state());
    }
    use State::*;
    assert_eq!(
        states,
        [
            SessionInitiation,
            ClientInitiation,
            Response,
            Command,
            Response,
            Command,
            Response,
            Command,
            Response,
            DataTransmission,
            Response,
            Command,
            Response,
            Finish
        ]
    );
    assert_eq!(s.transactions_seen(), 1);
    assert!(!s.drop_requested() && !s.is_tls());
}

#[test]
fn exim_pipelined_group_with_one_rejected_recipient() {
    let ev = run(&[
        (Down, b"220 mail.example.net ESMTP Exim 4.96 Tue, 03 Oct 2023 10:00:00 +0000\r\n"),
        (Up, b"EHLO laptop\r\n"),
        (Down, b"250-mail.example.net Hello laptop [192.0.2.1]\r\n250-SIZE 52428800\r\n250-PIPELINING\r\n250 HELP\r\n"),
        (Up, b"MAIL FROM:<a@laptop>\r\nRCPT TO:<ok@example.net>\r\nRCPT TO:<nobody@example.net>\r\nDATA\r\n"),
        (Down, b"250 OK\r\n250 Accepted\r\n550 Unrouteable address\r\n354 Enter message, ending with \".\" on a line by itself\r\n"),
        (Up, b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n"),
        (Down, b"250 OK id=1qnXyz-000123-AB\r\n221 mail.example.net closing connection\r\n"),
    ]);
    assert_eq!(anomalies(&ev), []);
    assert_eq!(
        reply_codes(&ev),
        [
            (220, None),
            (250, Some(Verb::Ehlo)),
            (250, Some(Verb::Mail)),
            (250, Some(Verb::Rcpt)),
            (550, Some(Verb::Rcpt)),
            (354, Some(Verb::Data)),
            (250, Some(Verb::Data)),
            (221, Some(Verb::Quit)),
        ]
    );
    let t = &transactions(&ev)[0];
    assert_eq!(t.state, TransactionState::Delivered);
    assert_eq!(
        t.rcpt_to,
        [
            Recipient {
                path: "<ok@example.net>".into(),
                reply_code: Some(250)
            },
            Recipient {
                path: "<nobody@example.net>".into(),
                reply_code: Some(550)
            }
        ]
    );
    assert_eq!(
        t.email.as_ref().and_then(|e| e.subject.as_deref()),
        Some("hi")
    );
}

#[test]
fn gmail_style_ehlo_with_lowercase_client() {
    let ev = run(&[
        (Down, b"220 mx.google.com ESMTP a1-20020a05600c000000b0040000000000si123456wmb.1 - gsmtp\r\n"),
        (Up, b"ehlo sender.example\r\n"),
        (Down, b"250-mx.google.com at your service, [198.51.100.7]\r\n250-SIZE 157286400\r\n250-8BITMIME\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n"),
        (Up, b"mail from:<x@sender.example> SMTPUTF8\r\n"),
        (Down, b"250 2.1.0 OK a1-20020a05600c000000b0040000000000si123456wmb.1 - gsmtp\r\n"),
        (Up, b"rcpt to:<user@gmail.com>\r\n"),
        (Down, b"550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n550-5.1.1 double-checking the recipient's email address for typos or\r\n550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser\r\n"),
        (Up, b"quit\r\n"),
        (Down, b"221 2.0.0 closing connection\r\n"),
    ]);
    assert_eq!(verbs(&ev), [Verb::Ehlo, Verb::Mail, Verb::Rcpt, Verb::Quit]);
    assert_eq!(responses(&ev)[3].lines.len(), 3);
    let t = &transactions(&ev)[0];
    assert_eq!(t.state, TransactionState::Aborted);
    assert_eq!(t.mail_params, ["SMTPUTF8"]);
    assert_eq!(t.rcpt_to[0].reply_code, Some(550));
    assert_eq!(t.email, None);
    assert_eq!(anomalies(&ev), []);
}

#[test]
fn outlook_auth_login_answers_are_never_logged() {
    let ev = run(&[
        (
            Down,
            b"220 smtp.office365.com Microsoft ESMTP MAIL Service ready\r\n",
        ),
        (Up, b"EHLO DESKTOP-OUTLOOK\r\n"),
        (
            Down,
            b"250-smtp.office365.com Hello\r\n250-AUTH LOGIN XOAUTH2\r\n250 8BITMIME\r\n",
        ),
        (Up, b"AUTH LOGIN\r\n"),
        (Down, b"334 VXNlcm5hbWU6\r\n"),
        (Up, b"c2VjcmV0dXNlcg==\r\n"),
        (Down, b"334 UGFzc3dvcmQ6\r\n"),
        (Up, b"c2VjcmV0cGFzcw==\r\n"),
        (Down, b"235 2.7.0 Authentication successful\r\n"),
        (Up, b"MAIL FROM:<me@corp.example>\r\n"),
        (Down, b"250 2.1.0 Sender OK\r\n"),
        (Up, b"QUIT\r\n"),
        (Down, b"221 2.0.0 Service closing transmission channel\r\n"),
    ]);
    assert_eq!(verbs(&ev), [Verb::Ehlo, Verb::Auth, Verb::Mail, Verb::Quit]);
    assert_eq!(
        reply_codes(&ev),
        [
            (220, None),
            (250, Some(Verb::Ehlo)),
            (334, Some(Verb::Auth)),
            (334, Some(Verb::Auth)),
            (235, Some(Verb::Auth)),
            (250, Some(Verb::Mail)),
            (221, Some(Verb::Quit))
        ]
    );
    assert_eq!(anomalies(&ev), []);
    let all = format!("{ev:?}");
    assert!(!all.contains("c2VjcmV0"), "credentials leaked into events");
}

#[test]
fn auth_plain_initial_response_is_masked_and_pipelined_answer_held() {
    let ev = run(&[
        (Down, b"220 ready\r\n"),
        (Up, b"EHLO a\r\n"),
        (Down, b"250 ok\r\n"),
        (
            Up,
            b"AUTH PLAIN AHVzZXIAcGFzc3dvcmQ=\r\nMAIL FROM:<a@b>\r\n",
        ),
        (Down, b"235 ok\r\n250 ok\r\n"),
        (Up, b"AUTH LOGIN\r\nc2VjcmV0dXNlcg==\r\n"),
        (Down, b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"),
        (Up, b"c2VjcmV0cGFzcw==\r\n"),
        (Down, b"535 5.7.8 authentication failed\r\n"),
        // A desynchronised client sends another answer: reported without its content.
        (Up, b"c2VjcmV0dG9v\r\n"),
    ]);
    let c = commands(&ev);
    assert_eq!(c[1].args, "PLAIN ***");
    assert_eq!(c[3].args, "LOGIN");
    assert_eq!(verbs(&ev), [Verb::Ehlo, Verb::Auth, Verb::Mail, Verb::Auth]);
    let all = format!("{ev:?}");
    assert!(
        !all.contains("AHVzZXI") && !all.contains("c2VjcmV0"),
        "{all}"
    );
    // The MAIL sent before the 235 was held, then read as a command: not allowed by RFC 2920.
    assert_eq!(
        anomalies(&ev),
        [
            AnomalyKind::InvalidPipelinedSequence,
            AnomalyKind::InvalidCommand
        ]
    );
    assert_eq!(reply_codes(&ev).last(), Some(&(535, Some(Verb::Auth))));
}

#[test]
fn bare_lf_client_commands_are_parsed() {
    let ev = run(&[
        (Down, b"220 haka.example ESMTP\r\n"),
        (Up, b"HELO workshop\n"),
        (Down, b"250 haka.example\r\n"),
        (Up, b"MAIL FROM: <a@haka>\nRCPT TO: <b@haka>\n"),
        (Down, b"250 ok\r\n250 ok\r\n"),
        (Up, b"DATA\n"),
        (Down, b"354 go\r\n"),
        (Up, b"hello\r\n.\r\n"),
        (Down, b"250 queued\r\n"),
        (Up, b"QUIT\n"),
        (Down, b"221 bye\r\n"),
    ]);
    assert_eq!(
        verbs(&ev),
        [Verb::Helo, Verb::Mail, Verb::Rcpt, Verb::Data, Verb::Quit]
    );
    let t = &transactions(&ev)[0];
    assert_eq!(
        (t.state, t.mail_from.as_deref(), t.size),
        (TransactionState::Delivered, Some("<a@haka>"), 7)
    );
    assert_eq!(t.rcpt_to[0].path, "<b@haka>");
    assert_eq!(anomalies(&ev), []);
}

#[test]
fn bdat_chunks_with_next_command_in_the_same_segment() {
    let ev = run(&[
        (Down, b"220 ready\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250-ready\r\n250 CHUNKING\r\n"),
        (Up, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 11\r\nSubject: x\rBDAT 9 LAST\r\n\n\r\nbody\r\nMAIL FROM:<e@f>\r\n"),
        (Down, b"250 ok\r\n250 ok\r\n250 11 octets\r\n250 delivered\r\n250 ok\r\n"),
        (Up, b"RCPT TO:<g@h>\r\nBDAT 0 LAST\r\n"),
        (Down, b"250 ok\r\n554 empty message\r\n"),
        (Up, b"QUIT\r\n"),
        (Down, b"221 bye\r\n"),
    ]);
    assert_eq!(
        verbs(&ev),
        [
            Verb::Ehlo,
            Verb::Mail,
            Verb::Rcpt,
            Verb::Bdat,
            Verb::Bdat,
            Verb::Mail,
            Verb::Rcpt,
            Verb::Bdat,
            Verb::Quit
        ]
    );
    assert_eq!(
        content(&ev, 0, ContentPart::Raw),
        b"Subject: x\r\n\r\nbody\r\n".to_vec()
    );
    assert_eq!(
        content(&ev, 0, ContentPart::DecodedBody),
        b"body\r\n".to_vec()
    );
    let t = transactions(&ev);
    assert_eq!(t.len(), 2);
    assert_eq!(
        (t[0].id, t[0].state, t[0].size, t[0].reply_code),
        (0, TransactionState::Delivered, 20, Some(250))
    );
    assert_eq!(
        t[0].email.as_ref().and_then(|e| e.subject.as_deref()),
        Some("x")
    );
    assert_eq!(
        (t[1].id, t[1].state, t[1].size, t[1].reply_code),
        (1, TransactionState::Rejected, 0, Some(554))
    );
    assert_eq!(t[1].mail_from.as_deref(), Some("<e@f>"));
    assert_eq!(anomalies(&ev), []);
    assert_eq!(
        trace(&ev).iter().filter(|t| t.starts_with("M:End")).count(),
        2
    );
}

#[test]
fn starttls_then_only_bytes_are_counted() {
    let (s, ev) = run_open(&[
        (Down, b"220 ready\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250-ready\r\n250 STARTTLS\r\n"),
        (Up, b"STARTTLS\r\n\x16\x03\x01\x02\x00\x01\x00\x01\xfc"),
        (
            Down,
            b"220 2.0.0 Ready to start TLS\r\n\x16\x03\x03\x00\x7a\x02",
        ),
        (Up, b"\x17\x03\x03\x00\x20garbage"),
    ]);
    assert!(s.is_tls());
    assert_eq!(s.state(), State::Tls);
    assert_eq!(verbs(&ev), [Verb::Ehlo, Verb::StartTls]);
    assert_eq!(anomalies(&ev), []);
    assert_eq!(s.unparsed_bytes(Direction::Up), 9 + 12);
    assert_eq!(s.unparsed_bytes(Direction::Down), 6);
    assert_eq!(s.bytes(Direction::Up), 8 + 19 + 12);
}

#[test]
fn starttls_refused_keeps_parsing_commands() {
    let ev = run(&[
        (Down, b"220 ready\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 ready\r\n"),
        (Up, b"STARTTLS\r\n"),
        (
            Down,
            b"454 4.7.0 TLS not available due to local problem\r\n",
        ),
        (Up, b"MAIL FROM:<a@b>\r\n"),
        (Down, b"250 ok\r\n"),
    ]);
    assert_eq!(anomalies(&ev), [AnomalyKind::TlsRejected]);
    assert_eq!(verbs(&ev), [Verb::Ehlo, Verb::StartTls, Verb::Mail]);
    assert_eq!(transactions(&ev)[0].state, TransactionState::Aborted);
}

#[test]
fn rset_and_second_ehlo_reset_transactions() {
    let ev = run(&[
        (Down, b"220 ready\r\n"),
        (Up, b"EHLO one\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"MAIL FROM:<a@b>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"RSET\r\n"),
        (Down, b"250 reset\r\n"),
        (Up, b"MAIL FROM:<c@d>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"EHLO two\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"MAIL FROM:<e@f>\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"QUIT\r\n"),
        (Down, b"221 bye\r\n"),
    ]);
    let t = transactions(&ev);
    let got: Vec<_> = t
        .iter()
        .map(|t| (t.id, t.state, t.helo.clone(), t.mail_from.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                0,
                TransactionState::Reset,
                Some("one".into()),
                Some("<a@b>".into())
            ),
            (
                1,
                TransactionState::Reset,
                Some("one".into()),
                Some("<c@d>".into())
            ),
            (
                2,
                TransactionState::Aborted,
                Some("two".into()),
                Some("<e@f>".into())
            ),
        ]
    );
    let tr = trace(&ev);
    assert_eq!(
        tr[5..8],
        ["C:RSET".to_string(), "R:250".into(), "T:0:Reset".into()]
    );
}

#[test]
fn all_recipients_and_data_rejected() {
    let ev = run(&[
        (Down, b"220 ready\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"MAIL FROM:<spam@x>\r\nRCPT TO:<a@y>\r\nRCPT TO:<b@y>\r\nDATA\r\n"),
        (Down, b"250 ok\r\n550 5.7.1 rejected\r\n550 5.7.1 rejected\r\n554 5.5.1 Error: no valid recipients\r\n"),
        (Up, b"RSET\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"MAIL FROM:<spam@x>\r\n"),
        (Down, b"553 5.7.1 sender rejected\r\n"),
    ]);
    let t = transactions(&ev);
    assert_eq!(
        (t[0].state, t[0].reply_code, t[0].email.is_none()),
        (TransactionState::Rejected, Some(554), true)
    );
    assert_eq!(
        t[0].rcpt_to
            .iter()
            .map(|r| r.reply_code)
            .collect::<Vec<_>>(),
        [Some(550), Some(550)]
    );
    assert_eq!(
        (t[1].state, t[1].reply_code),
        (TransactionState::Rejected, Some(553))
    );
    assert_eq!(anomalies(&ev), []);
    // DATA refused: the server still holds the transaction until the RSET.
    assert_eq!(
        trace(&ev)[10..14],
        ["R:554", "C:RSET", "R:250", "T:0:Rejected"].map(String::from)
    );
}

#[test]
fn service_closing_421_aborts_the_transaction() {
    let (s, ev) = run_open(&[
        (Down, b"220 ready\r\n"),
        (Up, b"HELO c\r\nMAIL FROM:<a@b>\r\n"),
        (Down, b"250 ok\r\n250 ok\r\n"),
        (Up, b"RCPT TO:<x@y>\r\n"),
        (Down, b"421 4.4.2 mx timeout exceeded, closing\r\n"),
        // The client had no QUIT to send: not data after QUIT.
        (Up, b"DATA\r\n"),
    ]);
    assert_eq!(s.state(), State::Finish);
    let t = transactions(&ev);
    assert_eq!(
        (t.len(), t[0].state, t[0].rcpt_to[0].reply_code),
        (1, TransactionState::Aborted, Some(421))
    );
    assert_eq!(reply_codes(&ev).last(), Some(&(421, Some(Verb::Rcpt))));
    assert_eq!(anomalies(&ev), [AnomalyKind::InvalidPipelinedSequence]);
}

#[test]
fn close_during_data_aborts_with_partial_email() {
    let ev = run(&[
        (Down, b"220 ready\r\n"),
        (
            Up,
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
        ),
        (Down, b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        (Up, b"Subject: cut\r\n\r\nhalf a bo"),
    ]);
    let t = &transactions(&ev)[0];
    assert_eq!(t.state, TransactionState::Aborted);
    assert_eq!(t.email_status.as_deref(), Some("BODY_STARTED"));
    assert_eq!(
        t.email.as_ref().and_then(|e| e.subject.as_deref()),
        Some("cut")
    );
    assert_eq!(t.size, 25);
    assert!(!trace(&ev).iter().any(|t| t.starts_with("M:End")));
}

#[test]
fn content_before_354_is_held_then_read_as_content() {
    let ev = run(&[
        (Down, b"220 ready\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 ok\r\n"),
        (Up, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: early\r\n\r\nMAIL FROM:<not@command>\r\n.\r\nQUIT\r\n"),
        (Down, b"250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n"),
    ]);
    assert_eq!(
        verbs(&ev),
        [Verb::Ehlo, Verb::Mail, Verb::Rcpt, Verb::Data, Verb::Quit]
    );
    assert_eq!(
        content(&ev, 0, ContentPart::Raw),
        b"Subject: early\r\n\r\nMAIL FROM:<not@command>\r\n".to_vec()
    );
    assert_eq!(transactions(&ev)[0].state, TransactionState::Delivered);
    // RFC 2920 §3.1: the client must wait for the 354.
    assert_eq!(anomalies(&ev), [AnomalyKind::ContentBefore354]);
}

#[test]
fn data_refused_then_held_lines_are_commands_again() {
    let ev = run(&[
        (Down, b"220 ready\r\n"),
        (Up, b"EHLO c\r\nMAIL FROM:<a@b>\r\n"),
        (Down, b"250 ok\r\n250 ok\r\n"),
        (Up, b"DATA\r\nRSET\r\n"),
        (Down, b"503 5.5.1 need RCPT\r\n250 reset\r\n"),
    ]);
    assert_eq!(verbs(&ev), [Verb::Ehlo, Verb::Mail, Verb::Data, Verb::Rset]);
    // The refused DATA leaves the transaction open (RFC 5321 §4.1.4); the
    // RSET ends it, rejected with the DATA's code.
    assert_eq!(
        trace(&ev)[6..],
        [
            "C:DATA",
            "R:503",
            "A:out_of_sequence",
            "A:invalid_pipelined_sequence",
            "C:RSET",
            "R:250",
            "T:0:Rejected"
        ]
        .map(String::from)
    );
    assert_eq!(transactions(&ev)[0].reply_code, Some(503));
}

#[test]
fn invalid_reply_takes_the_error_transition() {
    let (mut s, mut ev) = run_open(&[
        (Down, b"220 ready\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"HTTP/1.1 400 Bad Request\r\n"),
        (Up, b"MAIL FROM:<a@b>\r\n"),
        (Down, b"250 ok\r\n"),
    ]);
    // The drop is requested; the session went on, so the dissector
    // resynchronised at the next command (issue 9: no blind spot).
    assert!(s.drop_requested());
    assert_eq!(s.state(), State::Command);
    assert_eq!(verbs(&ev), [Verb::Ehlo, Verb::Mail]);
    let a: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            OwnedEvent::Anomaly(a) => Some((a.kind, a.severity, a.drop_requested)),
            _ => None,
        })
        .collect();
    assert_eq!(
        a,
        [(
            AnomalyKind::InvalidReply,
            smtp_user::smtp::Severity::High,
            true
        )]
    );
    assert_eq!(s.unparsed_bytes(Direction::Up), 0);
    s.finish(&mut ev);
    let t = transactions(&ev);
    assert_eq!(
        (t[0].mail_from.as_deref(), t[0].state),
        (Some("<a@b>"), TransactionState::Aborted)
    );
}

#[test]
fn gaps_resynchronise() {
    let mut s = Session::new();
    let mut ev = Vec::new();
    let up = Direction::Up;
    s.feed(Down, b"220 ready\r\n", &mut ev);
    s.feed(up, b"EHLO c\r\n", &mut ev);
    s.feed(Down, b"250 ok\r\n", &mut ev);
    s.feed(up, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", &mut ev);
    s.feed(Down, b"250 ok\r\n250 ok\r\n354 go\r\n", &mut ev);
    s.feed(up, b"Subject: gap\r\n\r\nline one\r\nli", &mut ev);
    s.gap(up, 100, &mut ev);
    s.feed(up, b"ne two\r\n.\r\n", &mut ev);
    s.feed(Down, b"250 ok\r\n", &mut ev);
    // A gap inside a command line: the rest of that line is skipped.
    s.feed(up, b"MAIL FR", &mut ev);
    s.gap(up, 5, &mut ev);
    s.feed(
        up,
        b"b>\r\nMAIL FROM:<x@y>\r\nBDAT 10 LAST\r\n0123",
        &mut ev,
    );
    s.gap(up, 3, &mut ev);
    s.feed(up, b"789QUIT\r\n", &mut ev);
    s.feed(Down, b"250 ok\r\n250 ok\r\n221 bye\r\n", &mut ev);
    s.finish(&mut ev);
    assert_eq!(anomalies(&ev), [AnomalyKind::StreamGap; 3]);
    let t = transactions(&ev);
    assert_eq!(
        (t[0].state, t[0].email_status.as_deref()),
        (TransactionState::Delivered, Some("BODY_STARTED"))
    );
    assert_eq!(t[0].size, 28 + 8);
    assert_eq!(
        (t[1].mail_from.as_deref(), t[1].size, t[1].state),
        (Some("<x@y>"), 7, TransactionState::Delivered)
    );
    assert_eq!(verbs(&ev).last(), Some(&Verb::Quit));
    // Everything fed was parsed but the rest of the command line cut by
    // the gap ("b>\r\n", skipped); the 108 lost bytes are unparsed.
    assert_eq!((s.bytes(up), s.unparsed_bytes(up)), (140 + 108, 108 + 4));
}

#[test]
fn gap_while_waiting_for_354_is_replayed_in_place() {
    let mut s = Session::new();
    let mut ev = Vec::new();
    s.feed(Down, b"220 ready\r\n", &mut ev);
    s.feed(Up, b"EHLO c\r\n", &mut ev);
    s.feed(Down, b"250 ok\r\n", &mut ev);
    s.feed(
        Up,
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: a\r\n",
        &mut ev,
    );
    s.gap(Up, 50, &mut ev);
    s.feed(Up, b"tail\r\n.\r\n", &mut ev);
    s.feed(Down, b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n", &mut ev);
    assert_eq!(
        trace(&ev)[4..],
        [
            "C:RCPT",
            "C:DATA",
            "R:250",
            "R:250",
            "A:content_before_354",
            "R:354",
            "A:stream_gap",
            "M:End:0",
            "R:250",
            "T:0:Delivered"
        ]
        .map(String::from)
    );
    assert_eq!(
        content(&ev, 0, ContentPart::Raw),
        b"Subject: a\r\ntail\r\n".to_vec()
    );
    let t = &transactions(&ev)[0];
    assert_eq!(t.email_status.as_deref(), Some("HEADER_READY"));
    assert_eq!((s.bytes(Up), s.unparsed_bytes(Up)), (8 + 50 + 50 + 9, 50));
}

#[test]
fn rset_abandons_a_bdat_message_without_last() {
    let ev = run(&[
        (Down, b"220 ready\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 ok\r\n"),
        (
            Up,
            b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 12\r\nSubject: x\r\nRSET\r\n",
        ),
        (Down, b"250 ok\r\n250 ok\r\n250 12 octets\r\n250 reset\r\n"),
        (Up, b"NOOP\r\n"),
        (Down, b"250 ok\r\n"),
    ]);
    assert_eq!(
        trace(&ev)[6..],
        [
            "C:RSET",
            "R:250",
            "R:250",
            "R:250",
            "R:250",
            "T:0:Reset",
            "C:NOOP",
            "R:250"
        ]
        .map(String::from)
    );
    let t = &transactions(&ev)[0];
    assert_eq!(
        (t.size, t.email_status.as_deref()),
        (12, Some("HEADER_READY"))
    );
    assert_eq!(
        t.email.as_ref().and_then(|e| e.subject.as_deref()),
        Some("x")
    );
}

#[test]
fn over_long_command_line_keeps_replies_aligned() {
    // A MAIL line beyond the 4096-byte limit is skipped, but the server
    // answers it: the replies must still meet the commands they answer.
    let mut up = b"MAIL FROM:<".to_vec();
    up.extend(std::iter::repeat_n(b'x', 5000));
    up.extend_from_slice(b"@example.com>\r\nRSET\r\nNOOP\r\n");
    let ev = run(&[
        (Direction::Down, b"220 mx ESMTP\r\n"),
        (Direction::Up, b"EHLO c\r\n"),
        (Direction::Down, b"250 mx\r\n"),
        (Direction::Up, &up[..3000]),
        (Direction::Up, &up[3000..]),
        (
            Direction::Down,
            b"500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n",
        ),
    ]);
    let to: Vec<Option<Verb>> = responses(&ev).into_iter().map(|r| r.to).collect();
    assert_eq!(
        to,
        [
            None,
            Some(Verb::Ehlo),
            Some(Verb::Unknown("MAIL".into())),
            Some(Verb::Rset),
            Some(Verb::Noop)
        ]
    );
    assert_eq!(anomalies(&ev), [AnomalyKind::LineTooLong]);
    assert_eq!(verbs(&ev), [Verb::Ehlo, Verb::Rset, Verb::Noop]);
}

#[test]
fn capture_started_after_the_greeting() {
    // sv-smtp-rset-starttls: the greeting is missing; the first reply (250)
    // answers the EHLO the client already sent, then STARTTLS succeeds.
    let (s, ev) = run_open(&[
        (Direction::Up, b"EHLO\r\n"),
        (Direction::Down, b"250\r\n"),
        (Direction::Up, b"rset\r\nstaRttLs\r\n"),
        (Direction::Down, b"250\r\n"),
        (Direction::Down, b"220\r\n"),
    ]);
    assert_eq!(anomalies(&ev), [AnomalyKind::CommandBeforeGreeting]);
    assert_eq!(
        reply_codes(&ev),
        [
            (250, Some(Verb::Ehlo)),
            (250, Some(Verb::Rset)),
            (220, Some(Verb::StartTls))
        ]
    );
    assert!(s.is_tls());
    assert_eq!(s.state(), State::Tls);
    // The handoff is reported: a transaction with the HELO name, tls: true.
    let t = transactions(&ev);
    assert_eq!(
        (t.len(), t[0].tls, t[0].helo.as_deref()),
        (1, true, Some(""))
    );
}

#[test]
fn greeting_after_early_commands_is_still_the_greeting() {
    // The client spoke first, then the 220 greeting: the next reply answers EHLO.
    let ev = run(&[
        (Direction::Up, b"EHLO c\r\nNOOP\r\n"),
        (Direction::Down, b"220 mx ESMTP\r\n250 mx\r\n250 ok\r\n"),
    ]);
    assert_eq!(
        reply_codes(&ev),
        [
            (220, None),
            (250, Some(Verb::Ehlo)),
            (250, Some(Verb::Noop))
        ]
    );
    assert_eq!(anomalies(&ev), [AnomalyKind::CommandBeforeGreeting]);
}

/// Client side of a session whose server side was not captured.
const CLIENT_ONLY: &[(Direction, &[u8])] = &[
    (Direction::Up, b"ehlo c.example.org\r\n"),
    (Direction::Up, b"mail FROM:<a@example.org> size=9\r\n"),
    (Direction::Up, b"rcpt TO:<b@example.org>\r\n"),
    (Direction::Up, b"data\r\n"),
    (
        Direction::Up,
        b"From: a@example.org\r\nSubject: Hello1!\r\n\r\nbody one\r\n.\r\n",
    ),
    (Direction::Up, b"mail FROM:<a@example.org>\r\n"),
    (Direction::Up, b"rcpt TO:<c@example.org>\r\n"),
    (Direction::Up, b"data\r\n"),
    (
        Direction::Up,
        b"From: a@example.org\r\nSubject: Hello2!\r\n\r\nbody two\r\n.\r\n",
    ),
    (Direction::Up, b"quit\r\n"),
];

#[test]
fn one_sided_capture_parses_every_message() {
    let ev = run(CLIENT_ONLY);
    assert_eq!(anomalies(&ev), [AnomalyKind::CommandBeforeGreeting]);
    // The first transaction ends (aborted: no reply seen) when the next MAIL starts.
    assert_eq!(
        trace(&ev),
        [
            "C:EHLO",
            "A:command_before_greeting",
            "C:MAIL",
            "C:RCPT",
            "C:DATA",
            "M:End:0",
            "C:MAIL",
            "T:0:Aborted",
            "C:RCPT",
            "C:DATA",
            "M:End:1",
            "C:QUIT",
            "T:1:Aborted"
        ]
        .map(String::from)
    );
    let t = transactions(&ev);
    let summary: Vec<_> = t
        .iter()
        .map(|t| {
            (
                t.helo.as_deref(),
                t.rcpt_to[0].path.as_str(),
                t.reply_code,
                t.email.as_ref().and_then(|e| e.subject.as_deref()),
                t.email_status.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                Some("c.example.org"),
                "<b@example.org>",
                None,
                Some("Hello1!"),
                Some("PARSE_DONE")
            ),
            (
                Some("c.example.org"),
                "<c@example.org>",
                None,
                Some("Hello2!"),
                Some("PARSE_DONE")
            )
        ]
    );
    assert_eq!(content(&ev, 1, ContentPart::DecodedBody), b"body two\r\n");
}

#[test]
fn server_heard_late_returns_to_reply_matching() {
    // Nothing from the server while EHLO and MAIL go out (no pipelining
    // verdict), then its replies appear: they answer the queued commands and
    // DATA waits for its 354 again.
    let ev = run(&[
        (Direction::Up, b"EHLO c\r\nMAIL FROM:<a@b>\r\n"),
        (Direction::Down, b"250 mx\r\n250 ok\r\n"),
        (
            Direction::Up,
            b"RCPT TO:<c@d>\r\nDATA\r\nSubject: s\r\n\r\nx\r\n.\r\n",
        ),
        (Direction::Down, b"250 ok\r\n354 go\r\n250 queued\r\n"),
    ]);
    assert_eq!(
        anomalies(&ev),
        [
            AnomalyKind::CommandBeforeGreeting,
            AnomalyKind::ContentBefore354
        ]
    );
    assert_eq!(
        reply_codes(&ev),
        [
            (250, Some(Verb::Ehlo)),
            (250, Some(Verb::Mail)),
            (250, Some(Verb::Rcpt)),
            (354, Some(Verb::Data)),
            (250, Some(Verb::Data))
        ]
    );
    let t = &transactions(&ev)[0];
    assert_eq!(
        (t.state, t.reply_code),
        (TransactionState::Delivered, Some(250))
    );
}

#[test]
fn auth_without_a_server_hides_the_credentials() {
    let ev = run(&[(
        Direction::Up,
        b"EHLO c\r\nAUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\nMAIL FROM:<a@b>\r\n",
    )]);
    assert_eq!(verbs(&ev), [Verb::Ehlo, Verb::Auth, Verb::Mail]);
    let shown = format!("{ev:?}");
    assert!(
        !shown.contains("dXNlcg") && !shown.contains("cGFzcw"),
        "{shown}"
    );
}

#[test]
fn server_heard_during_data_taken_at_once() {
    // DATA went out while the server was unheard: content starts at once.
    // The server's replies then appear (the capture's server side started
    // late): they answer the queued commands, the 354 included, without
    // disturbing the content, and the end of data is answered normally.
    let ev = run(&[
        (
            Direction::Up,
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
        ),
        (Direction::Down, b"250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        (Direction::Up, b"Subject: s\r\n\r\nx\r\n.\r\n"),
        (Direction::Down, b"250 queued\r\n"),
    ]);
    assert_eq!(anomalies(&ev), [AnomalyKind::CommandBeforeGreeting]);
    assert_eq!(
        reply_codes(&ev),
        [
            (250, Some(Verb::Ehlo)),
            (250, Some(Verb::Mail)),
            (250, Some(Verb::Rcpt)),
            (354, Some(Verb::Data)),
            (250, Some(Verb::Data))
        ]
    );
    let t = &transactions(&ev)[0];
    assert_eq!(
        (t.state, t.reply_code, t.rcpt_to[0].reply_code),
        (TransactionState::Delivered, Some(250), Some(250))
    );
    assert_eq!(
        t.email.as_ref().and_then(|e| e.subject.as_deref()),
        Some("s")
    );
    assert_eq!(content(&ev, 0, ContentPart::DecodedBody), b"x\r\n");
}

#[test]
fn midstream_joined_inside_data_skips_to_the_next_transaction() {
    // The flow had no SYN: we joined inside a message. Its lines (one looks
    // like a command but is not well-formed) are skipped silently, the lone
    // "." ends it and "250 queued" answers that end, not the MAIL after it.
    let body: &[u8] = b"Data is attached below.\r\nQuit it\r\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYX\r\n";
    let mut s = Session::midstream();
    let mut ev = Vec::new();
    assert_eq!(s.state(), State::Midstream);
    s.feed(Up, body, &mut ev);
    assert_eq!(s.state(), State::Midstream);
    assert_eq!(s.unparsed_bytes(Up), body.len() as u64);
    s.feed(Up, b".\r\n", &mut ev);
    s.feed(Down, b"250 2.0.0 Ok: queued as 1\r\n", &mut ev);
    assert_eq!(s.state(), State::Command);
    s.feed(
        Up,
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n",
        &mut ev,
    );
    s.feed(Down, b"250 ok\r\n250 ok\r\n354 go\r\n", &mut ev);
    s.feed(Up, b"Subject: next\r\n\r\nhi\r\n.\r\nQUIT\r\n", &mut ev);
    s.feed(Down, b"250 queued as 2\r\n221 bye\r\n", &mut ev);
    s.finish(&mut ev);
    assert_eq!(anomalies(&ev), []);
    assert_eq!(
        trace(&ev),
        [
            "R:250",
            "C:MAIL",
            "C:RCPT",
            "C:DATA",
            "R:250",
            "R:250",
            "R:354",
            "M:End:0",
            "C:QUIT",
            "R:250",
            "T:0:Delivered",
            "R:221"
        ]
        .map(String::from)
    );
    assert_eq!(
        reply_codes(&ev)[..2],
        [(250, Some(Verb::Data)), (250, Some(Verb::Mail))]
    );
    let t = &transactions(&ev)[0];
    assert_eq!(t.id, 0);
    assert_eq!(t.helo, None);
    assert_eq!(t.mail_from.as_deref(), Some("<a@example.org>"));
    assert_eq!(t.rcpt_to[0].reply_code, Some(250));
    assert_eq!(t.reply_code, Some(250));
    assert_eq!(t.size, 21);
    // Only the skipped message lines are unparsed.
    assert_eq!(s.unparsed_bytes(Up), body.len() as u64);
    // The same bytes in a session that expects a greeting: "Data is…" is
    // taken for a DATA sent before the greeting.
    let mut fresh = Session::new();
    let mut ev = Vec::new();
    fresh.feed(Up, body, &mut ev);
    fresh.feed(Up, b".\r\n", &mut ev);
    fresh.feed(Down, b"250 2.0.0 Ok: queued as 1\r\n", &mut ev);
    assert_eq!(anomalies(&ev), [AnomalyKind::CommandBeforeGreeting]);
    assert_eq!(verbs(&ev), [Verb::Data]);
}

#[test]
fn midstream_joined_in_the_envelope_reports_only_complete_transactions() {
    // Joined after MAIL FROM: its 250 answers nothing we saw (ignored), the
    // RCPT synchronises, the message is parsed but its transaction (MAIL
    // FROM unseen) is not reported; the next one is, as tx 0.
    let ev = {
        let mut s = Session::midstream();
        let mut ev = Vec::new();
        for (dir, bytes) in [
            (Down, &b"250 2.1.0 Ok\r\n"[..]),
            (Up, b"RCPT TO:<x@example.net>\r\n"),
            (Down, b"250 2.1.5 Ok\r\n"),
            (Up, b"DATA\r\n"),
            (Down, b"354 go\r\n"),
            (Up, b"Subject: joined\r\n\r\nbody\r\n.\r\n"),
            (Down, b"250 queued\r\n"),
            (Up, b"MAIL FROM:<a@b>\r\n"),
            (Down, b"250 ok\r\n"),
            (Up, b"RCPT TO:<c@d>\r\n"),
            (Down, b"550 no\r\n"),
            (Up, b"RSET\r\n"),
            (Down, b"250 ok\r\n"),
        ] {
            s.feed(dir, bytes, &mut ev);
        }
        s.finish(&mut ev);
        assert_eq!(s.unparsed_bytes(Up), 0);
        ev
    };
    assert_eq!(anomalies(&ev), []);
    assert_eq!(
        reply_codes(&ev),
        [
            (250, None),
            (250, Some(Verb::Rcpt)),
            (354, Some(Verb::Data)),
            (250, Some(Verb::Data)),
            (250, Some(Verb::Mail)),
            (550, Some(Verb::Rcpt)),
            (250, Some(Verb::Rset))
        ]
    );
    let t = transactions(&ev);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].id, t[0].state), (0, TransactionState::Reset));
    assert_eq!(
        t[0].rcpt_to,
        [Recipient {
            path: "<c@d>".into(),
            reply_code: Some(550)
        }]
    );
    // The joined message's content was not attributed to any transaction.
    assert!(!ev.iter().any(|e| matches!(e, OwnedEvent::MailContent(_))));
}

/// Greeting, EHLO and a pipelined envelope whose replies will be lost.
fn pipelined_envelope(s: &mut Session, ev: &mut Vec<OwnedEvent>) {
    s.feed(Down, b"220 mx\r\n", ev);
    s.feed(Up, b"EHLO c\r\n", ev);
    s.feed(Down, b"250-mx\r\n250 PIPELINING\r\n", ev);
    s.feed(
        Up,
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n",
        ev,
    );
}

#[test]
fn lost_replies_then_the_message_is_content_and_250_ends_it() {
    // The server segment "250/250/250/354" is lost. The client sent its
    // message: it got the 354. Whether the gap is known before or after the
    // message arrives, the message is content and "250 queued" answers it.
    let message: &[u8] = b"Subject: s\r\n\r\nRSET is a word here\r\n.\r\n";
    for gap_first in [false, true] {
        let mut s = Session::new();
        let mut ev = Vec::new();
        pipelined_envelope(&mut s, &mut ev);
        if gap_first {
            s.gap(Down, 40, &mut ev);
            s.feed(Up, message, &mut ev);
        } else {
            s.feed(Up, message, &mut ev);
            s.gap(Down, 40, &mut ev);
        }
        s.feed(Down, b"250 queued\r\n", &mut ev);
        s.feed(Up, b"QUIT\r\n", &mut ev);
        s.feed(Down, b"221 bye\r\n", &mut ev);
        s.finish(&mut ev);
        assert_eq!(anomalies(&ev), [AnomalyKind::StreamGap], "{gap_first}");
        assert_eq!(
            reply_codes(&ev)[2..],
            [(250, Some(Verb::Data)), (221, Some(Verb::Quit))],
            "{gap_first}"
        );
        let t = transactions(&ev);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].state, t[0].reply_code, t[0].size),
            (TransactionState::Delivered, Some(250), 35)
        );
        assert_eq!(
            t[0].rcpt_to
                .iter()
                .map(|r| r.reply_code)
                .collect::<Vec<_>>(),
            [None, None]
        );
        assert_eq!(
            content(&ev, 0, ContentPart::DecodedBody),
            b"RSET is a word here\r\n"
        );
        assert_eq!(s.unparsed_bytes(Down), 40);
    }
}

#[test]
fn after_a_down_gap_354_answers_data_by_meaning() {
    // Only "250 ok" to MAIL and the first RCPT's reply survive... then the
    // 354: the second RCPT lost its reply, the 354 still answers DATA.
    let mut s = Session::new();
    let mut ev = Vec::new();
    pipelined_envelope(&mut s, &mut ev);
    s.feed(Down, b"250 ok\r\n", &mut ev);
    s.gap(Down, 10, &mut ev);
    s.feed(Down, b"354 go\r\n", &mut ev);
    s.feed(Up, b"Subject: s\r\n\r\nx\r\n.\r\n", &mut ev);
    s.feed(Down, b"250 queued\r\n", &mut ev);
    s.finish(&mut ev);
    assert_eq!(anomalies(&ev), [AnomalyKind::StreamGap]);
    assert_eq!(
        reply_codes(&ev)[2..],
        [
            (250, Some(Verb::Mail)),
            (354, Some(Verb::Data)),
            (250, Some(Verb::Data))
        ]
    );
    let t = &transactions(&ev)[0];
    assert_eq!(
        (t.state, t.reply_code, t.size),
        (TransactionState::Delivered, Some(250), 17)
    );
    assert_eq!(
        t.rcpt_to.iter().map(|r| r.reply_code).collect::<Vec<_>>(),
        [None, None]
    );
}

#[test]
fn after_a_down_gap_221_answers_quit_and_cut_lines_are_skipped() {
    // The gap cuts a reply line: its tail is skipped silently, the replies
    // to RSET/NOOP are lost and the 221 answers the QUIT.
    let mut s = Session::new();
    let mut ev = Vec::new();
    s.feed(Down, b"220 mx\r\n", &mut ev);
    s.feed(Up, b"EHLO c\r\n", &mut ev);
    s.feed(Down, b"250 mx\r\n", &mut ev);
    s.feed(Up, b"RSET\r\nNOOP\r\nQUIT\r\n", &mut ev);
    s.feed(Down, b"250 r", &mut ev);
    s.gap(Down, 20, &mut ev);
    s.feed(Down, b"x ok\r\n221 bye\r\n", &mut ev);
    assert_eq!(anomalies(&ev), [AnomalyKind::StreamGap]);
    assert_eq!(
        reply_codes(&ev),
        [
            (220, None),
            (250, Some(Verb::Ehlo)),
            (221, Some(Verb::Quit))
        ]
    );
    assert_eq!(s.state(), State::Finish);
    // "250 r" before the gap, the gap, "x ok\r\n" after it.
    assert_eq!(s.unparsed_bytes(Down), 5 + 20 + 6);
}

#[test]
fn lost_reply_to_data_then_a_command_means_data_was_refused() {
    // After the lost replies the client sends RSET, not a message: the
    // DATA was refused. RSET is a command, its 250 resets the transaction.
    let mut s = Session::new();
    let mut ev = Vec::new();
    pipelined_envelope(&mut s, &mut ev);
    s.gap(Down, 40, &mut ev);
    s.feed(Up, b"RSET\r\n", &mut ev);
    s.feed(Down, b"250 reset\r\n", &mut ev);
    s.finish(&mut ev);
    assert_eq!(anomalies(&ev), [AnomalyKind::StreamGap]);
    assert_eq!(verbs(&ev)[4..], [Verb::Data, Verb::Rset]);
    assert_eq!(reply_codes(&ev)[2..], [(250, Some(Verb::Rset))]);
    let t = &transactions(&ev)[0];
    assert_eq!(
        (t.state, t.reply_code),
        (TransactionState::Reset, Some(250))
    );
    assert_eq!(t.email, None);
}

#[test]
fn down_gap_before_data_then_content_means_354_was_lost() {
    // Overload: a client gap took the RCPT, a down gap its reply, the
    // MAIL's and the 354; DATA is dissected after the down gap. The client
    // sends content before any reply: the 354 was lost, the lines are
    // content, not commands (no invalid_command).
    let mut s = Session::new();
    let mut ev = Vec::new();
    s.feed(Down, b"220 mx\r\n", &mut ev);
    s.feed(Up, b"EHLO c\r\n", &mut ev);
    s.feed(Down, b"250 mx\r\n", &mut ev);
    s.feed(Up, b"MAIL FROM:<a@b.example>\r\n", &mut ev);
    s.gap(Up, 28, &mut ev);
    s.gap(Down, 65, &mut ev);
    s.feed(Up, b"DATA\r\n", &mut ev);
    s.feed(
        Up,
        b"From: <a@b.example>\r\nSubject: x\r\n\r\nbody\r\n.\r\n",
        &mut ev,
    );
    s.feed(Down, b"250 queued\r\n", &mut ev);
    s.finish(&mut ev);
    assert_eq!(
        anomalies(&ev),
        [AnomalyKind::StreamGap, AnomalyKind::StreamGap]
    );
    assert_eq!(s.state(), State::Command);
}

#[test]
fn midstream_joined_inside_tls_is_only_counted() {
    // Joined after STARTTLS: neither side is SMTP. Nothing is reported, no
    // error transition (no drop request), every byte is counted unparsed.
    let client: &[u8] = b"\x16\x03\x01\x00\x05hello\x17\x03\x03\x00\x02\n\x01";
    let server: &[u8] = b"\x16\x03\x03\x00\x02\r\n\x17\x03\x03\x00\x10abcdefghijklmnop\n";
    let mut s = Session::midstream();
    let mut ev = Vec::new();
    s.feed(Up, client, &mut ev);
    s.feed(Down, server, &mut ev);
    s.feed(Down, &[b'z'; 5000], &mut ev);
    s.feed(Down, b"\n", &mut ev);
    assert_eq!(ev, []);
    assert!(!s.drop_requested());
    assert_eq!(s.state(), State::Midstream);
    assert_eq!(s.unparsed_bytes(Down), server.len() as u64 + 5001);
    // The client's last line is incomplete ("\x01"): not counted yet.
    assert_eq!(s.unparsed_bytes(Up), client.len() as u64 - 1);
}

#[test]
fn after_a_down_gap_354_answers_a_data_sent_after_it() {
    // The replies to MAIL and RCPT are lost; DATA goes out after the gap;
    // the 354 answers it, not the MAIL.
    let mut s = Session::new();
    let mut ev = Vec::new();
    s.feed(Down, b"220 mx\r\n", &mut ev);
    s.feed(Up, b"EHLO c\r\n", &mut ev);
    s.feed(Down, b"250 mx\r\n", &mut ev);
    s.feed(Up, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", &mut ev);
    s.gap(Down, 20, &mut ev);
    s.feed(Up, b"DATA\r\n", &mut ev);
    s.feed(Down, b"354 go\r\n", &mut ev);
    s.feed(Up, b"x\r\n.\r\n", &mut ev);
    s.feed(Down, b"250 queued\r\n", &mut ev);
    s.finish(&mut ev);
    assert_eq!(anomalies(&ev), [AnomalyKind::StreamGap]);
    assert_eq!(
        reply_codes(&ev)[2..],
        [(354, Some(Verb::Data)), (250, Some(Verb::Data))]
    );
    let t = &transactions(&ev)[0];
    assert_eq!(
        (t.state, t.reply_code, t.size, t.rcpt_to[0].reply_code),
        (TransactionState::Delivered, Some(250), 3, None)
    );
}

#[test]
fn command_after_a_lost_ehlo_reply_is_not_a_pipelining_violation() {
    // The EHLO reply was in a server-side gap: MAIL after it is what the
    // client does after a 250 we did not see, not "MAIL before the reply".
    let mut s = Session::new();
    let mut ev = Vec::new();
    s.feed(Down, b"220 mx\r\n", &mut ev);
    s.feed(Up, b"EHLO c\r\n", &mut ev);
    s.gap(Down, 83, &mut ev);
    s.feed(Up, b"MAIL FROM:<a@example.org>\r\n", &mut ev);
    s.feed(Down, b"250 ok\r\n", &mut ev);
    assert_eq!(anomalies(&ev), [AnomalyKind::StreamGap]);
    // Without the gap the same order is reported.
    let ev = run(&[
        (Down, b"220 mx\r\n"),
        (Up, b"EHLO c\r\n"),
        (Up, b"MAIL FROM:<a@example.org>\r\n"),
        (Down, b"250 mx\r\n250 ok\r\n"),
    ]);
    assert_eq!(anomalies(&ev), [AnomalyKind::InvalidPipelinedSequence]);
}
