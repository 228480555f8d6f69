//! MIME evasions, tried from the attacker's side: header padding past the
//! header-block cap, file names split with RFC 2231, subjects in non-UTF-8
//! charsets (RFC 2047), attachments inside forwarded messages
//! (`message/rfc822`). For each, the rule that must fire and what the
//! dissector must report (the `email` object the EVE output writes).

mod policy_common;

use policy_common::*;
use smtp_user::smtp::{AnomalyKind, ContentPart, Email, OwnedEvent, Session};

fn rule(sid: u32, when: &str) -> String {
    format!("[[rule]]\nsid = {sid}\nname = \"r{sid}\"\naction = \"drop\"\n[rule.when]\n{when}\n")
}

/// Runs `message` through one delivered transaction; returns the events.
fn dissect(message: &str) -> Vec<OwnedEvent> {
    let script = mail("a@example.com", &["b@example.org"], message);
    let mut s = Session::new();
    let mut ev: Vec<OwnedEvent> = Vec::new();
    for (dir, bytes) in &script {
        // Odd-sized pieces: nothing may depend on where segments end.
        for piece in bytes.chunks(977) {
            s.feed(*dir, piece, &mut ev);
        }
    }
    s.finish(&mut ev);
    ev
}

fn email(ev: &[OwnedEvent]) -> Email {
    ev.iter()
        .find_map(|e| match e {
            OwnedEvent::Transaction(t) => t.email.clone(),
            _ => None,
        })
        .expect("a transaction with content")
}

fn anomalies(ev: &[OwnedEvent]) -> Vec<AnomalyKind> {
    ev.iter()
        .filter_map(|e| match e {
            OwnedEvent::Anomaly(a) => Some(a.kind),
            _ => None,
        })
        .collect()
}

fn body(ev: &[OwnedEvent]) -> String {
    let mut out = Vec::new();
    for e in ev {
        if let OwnedEvent::MailContent(m) = e {
            if m.part == ContentPart::DecodedBody {
                out.extend_from_slice(&m.data);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// sids that fire on `message`.
fn fired(rules_text: &str, message: &str) -> Vec<u32> {
    let r = rules(rules_text);
    let mut s = sids(&run(
        &r,
        &view(&mail("a@example.com", &["b@example.org"], message)),
    ));
    s.sort_unstable();
    s
}

/// sid 101: attachment named `evil.exe`; sid 102: extension `exe`.
fn attachment_rules() -> String {
    format!(
        "{}{}",
        rule(101, "attachment_name = [\"evil.exe\"]"),
        rule(102, "attachment_ext = [\"exe\"]")
    )
}

// ---------------------------------------------------------------- padding

/// 600 `Received:` lines (~116 KB) push From/To/Subject past the 64 KiB cap.
fn padded_message() -> String {
    let mut m = String::new();
    for i in 0..600 {
        m.push_str(&format!(
            "Received: from relay{i}.example.net (relay{i}.example.net [198.18.{}.{}])\r\n\tby mx{i}.example.org (Postfix) with ESMTPS id PAD{i:05}\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)); Mon, 1 Jan 2024 00:00:00 +0000\r\n",
            i / 256,
            i % 256
        ));
    }
    m.push_str(
        "From: Evil <evil@bad.example>\r\nTo: victim@example.org\r\nSubject: Urgent invoice\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"PAD\"\r\n\r\n\
--PAD\r\nContent-Type: text/plain\r\n\r\nplease wire the ransom today\r\n\
--PAD\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--PAD--\r\n",
    );
    m
}

#[test]
fn header_padding_does_not_blind_header_rules() {
    let msg = padded_message();
    assert!(msg.len() > 110_000, "{}", msg.len());
    let text = format!(
        "{}{}{}{}{}",
        rule(
            10,
            "header = [{ name = \"Subject\", contains = \"urgent invoice\" }]"
        ),
        rule(
            11,
            "header = [{ name = \"From\", regex = \"evil@bad\\\\.example\" }]"
        ),
        rule(12, "header = [{ name = \"To\", contains = \"victim@\" }]"),
        rule(13, "body_keywords = [\"ransom\"]"),
        attachment_rules(),
    );
    assert_eq!(fired(&text, &msg), vec![10, 11, 12, 13, 101, 102]);

    let ev = dissect(&msg);
    let e = email(&ev);
    assert_eq!(e.from.as_deref(), Some("Evil <evil@bad.example>"));
    assert_eq!(e.to, vec!["victim@example.org".to_string()]);
    assert_eq!(e.subject.as_deref(), Some("Urgent invoice"));
    assert_eq!(e.attachment, vec!["evil.exe".to_string()]);
    // The Received fields past the 64 listed are counted (email.received).
    assert_eq!(
        anomalies(&ev),
        vec![
            AnomalyKind::MimeHeaderBlockTooLong,
            AnomalyKind::LimitExceeded
        ]
    );
    // The body is the body: no header line was read as body.
    let b = body(&ev);
    assert!(
        !b.contains("Received:") && !b.contains("Subject:"),
        "{b:.200}"
    );
    assert!(
        b.starts_with("please wire the ransom today\r\n"),
        "{b:.200}"
    );
}

#[test]
fn padding_past_the_cap_reports_only_key_fields() {
    let mut msg = String::new();
    for i in 0..3000 {
        msg.push_str(&format!("X-Junk-{i}: {}\r\n", "j".repeat(20)));
    }
    // Far past the cap: the key fields are still reported, at most 64 of them.
    for i in 0..100 {
        msg.push_str(&format!("Cc: c{i}@example.org\r\n"));
    }
    msg.push_str("Subject: late\r\n\r\nbody\r\n");
    let ev = dissect(&msg);
    let headers: Vec<(String, String)> = ev
        .iter()
        .filter_map(|e| match e {
            OwnedEvent::Header(h) => Some((h.name.clone(), h.value.clone())),
            _ => None,
        })
        .collect();
    let junk = headers
        .iter()
        .filter(|(n, _)| n.starts_with("X-Junk"))
        .count();
    // 30- to 35-byte lines: those within the first 64 KiB are reported.
    assert!((64 * 1024 / 35..64 * 1024 / 30).contains(&junk), "{junk}");
    let cc = headers.iter().filter(|(n, _)| n == "Cc").count();
    assert_eq!(cc, 64);
    // Cc 64..99 and Subject are past the 64 late key fields: Subject is the
    // 101st key field, so not reported; the anomaly says how many were skipped.
    let detail = ev
        .iter()
        .find_map(|e| match e {
            OwnedEvent::Anomaly(a) if a.kind == AnomalyKind::MimeHeaderBlockTooLong => {
                Some(a.detail.clone())
            }
            _ => None,
        })
        .expect("mime_header_block_too_long");
    assert!(detail.contains("64 key fields kept"), "{detail}");
    assert_eq!(body(&ev), "body\r\n\r\n");
}

// ---------------------------------------------------------------- RFC 2231

fn with_disposition(disposition: &str) -> String {
    format!(
        "From: a@example.com\r\nSubject: docs\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--B\r\nContent-Type: application/octet-stream\r\nContent-Disposition: {disposition}\r\n\
Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--B--\r\n"
    )
}

#[test]
fn rfc2231_split_names_are_reassembled() {
    for d in [
        "attachment; filename*0=\"ev\"; filename*1=\"il.exe\"",
        "attachment; filename*1=\"il.exe\"; filename*0=\"ev\"",
        "attachment;\r\n filename*2=\"exe\";\r\n filename*0=ev;\r\n filename*1=\"il.\"",
        "attachment; filename*=utf-8''evil%2Eexe",
        "attachment; filename*=UTF-8'en'%65%76%69%6C.%65%78%65",
        "attachment; filename*0*=utf-8''ev; filename*1*=%69l.exe",
        "attachment; filename*0*=iso-8859-1''ev; filename*1=\"il.exe\"",
    ] {
        let msg = with_disposition(d);
        assert_eq!(fired(&attachment_rules(), &msg), vec![101, 102], "{d}");
        let ev = dissect(&msg);
        assert_eq!(email(&ev).attachment, vec!["evil.exe".to_string()], "{d}");
        assert_eq!(anomalies(&ev), vec![], "{d}");
    }
}

#[test]
fn names_that_read_two_ways_match_both_and_are_reported() {
    for (d, shown) in [
        // Clients show the extended form; old ones the plain one.
        (
            "attachment; filename=\"invoice.pdf\"; filename*=utf-8''evil.exe",
            "evil.exe",
        ),
        (
            "attachment; filename*=utf-8''invoice.pdf; filename=\"evil.exe\"",
            "invoice.pdf",
        ),
        (
            "attachment; filename=invoice.pdf; filename=evil.exe",
            "invoice.pdf",
        ),
        // A gap in the continuation: "evil.exe" or "evil" depending on the client.
        (
            "attachment; filename*0=\"evil\"; filename*2=\".exe\"",
            "evil.exe",
        ),
    ] {
        let msg = with_disposition(d);
        assert_eq!(fired(&attachment_rules(), &msg), vec![101, 102], "{d}");
        let ev = dissect(&msg);
        assert_eq!(email(&ev).attachment, vec![shown.to_string()], "{d}");
        assert_eq!(
            anomalies(&ev),
            vec![AnomalyKind::MimeAmbiguousParameter],
            "{d}"
        );
    }
    // Content-Type name and Content-Disposition filename disagree.
    let msg = with_disposition("attachment; filename=\"notes.txt\"").replace(
        "application/octet-stream",
        "application/octet-stream; name=\"evil.exe\"",
    );
    assert_eq!(fired(&attachment_rules(), &msg), vec![101, 102]);
}

#[test]
fn legitimate_rfc2231_names_do_not_fire() {
    for d in [
        "attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf",
        "attachment; filename*0*=utf-8''Quarterly%20; filename*1=\"report.pdf\"",
        "attachment; filename=\"report.pdf\"; filename*=utf-8''report.pdf",
        "attachment; filename=\"evil.exe.txt\"",
    ] {
        let msg = with_disposition(d);
        assert_eq!(fired(&attachment_rules(), &msg), Vec::<u32>::new(), "{d}");
        assert_eq!(anomalies(&dissect(&msg)), vec![], "{d}");
    }
    let ev = dissect(&with_disposition(
        "attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf",
    ));
    assert_eq!(email(&ev).attachment, vec!["résumé.pdf".to_string()]);
}

#[test]
fn parameter_floods_are_bounded_and_reported() {
    let mut d = String::from("attachment");
    for i in 0..200 {
        d.push_str(&format!("; p{i}=v"));
    }
    d.push_str("; filename=evil.exe");
    let ev = dissect(&with_disposition(&d));
    assert!(anomalies(&ev).contains(&AnomalyKind::LimitExceeded));
    // Continuation indexes past the bound are dropped, not allocated.
    let ev = dissect(&with_disposition(
        "attachment; filename*0=a; filename*4000000000=b; filename*63=c",
    ));
    assert_eq!(email(&ev).attachment.len(), 1);
    assert!(anomalies(&ev).contains(&AnomalyKind::LimitExceeded));
}

// ---------------------------------------------------------------- RFC 2047

#[test]
fn encoded_subjects_in_any_charset_match_header_rules() {
    for (subject, decoded) in [
        ("=?windows-1251?B?z/Do4uXy?=", "Привет"),
        ("=?koi8-r?B?8NLJ18XU?=", "Привет"),
        ("=?iso-2022-jp?B?GyRCJDMkcyRLJEEkTxsoQg==?=", "こんにちは"),
        ("=?gb2312?B?xOO6ww==?=", "你好"),
        ("=?windows-1251?Q?=CF=F0=E8=E2=E5=F2?=", "Привет"),
        // Split over two words, a UTF-8 character cut between them.
        (
            "=?utf-8?B?0J/RgNA=?=\r\n =?utf-8?B?uNCy0LXRgg==?=",
            "Привет",
        ),
    ] {
        let msg = format!("From: a@example.com\r\nSubject: {subject}\r\n\r\nhi\r\n");
        let ev = dissect(&msg);
        assert_eq!(email(&ev).subject.as_deref(), Some(decoded), "{subject}");
        let text = rule(
            20,
            &format!("header = [{{ name = \"Subject\", contains = \"{decoded}\" }}]"),
        );
        assert_eq!(fired(&text, &msg), vec![20], "{subject}");
        let text = rule(
            21,
            &format!("header = [{{ name = \"Subject\", regex = \"^{decoded}$\" }}]"),
        );
        assert_eq!(fired(&text, &msg), vec![21], "{subject}");
    }
}

#[test]
fn encoded_attachment_names_in_other_charsets() {
    // Content-Type name as RFC 2047 (Outlook) in windows-1251: "Счет.exe".
    let msg = with_disposition("attachment").replace(
        "application/octet-stream",
        "application/octet-stream; name=\"=?windows-1251?B?0ffl8i5leGU=?=\"",
    );
    assert_eq!(
        fired(&rule(102, "attachment_ext = [\"exe\"]"), &msg),
        vec![102]
    );
    assert_eq!(
        email(&dissect(&msg)).attachment,
        vec!["Счет.exe".to_string()]
    );
}

// ---------------------------------------------------------------- message/rfc822

/// An .exe attachment inside a forwarded message inside a multipart.
fn forwarded() -> String {
    "From: friend@example.com\r\nSubject: Fwd: invoice\r\nContent-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\n\
--OUT\r\nContent-Type: text/plain\r\n\r\nsee the forwarded mail\r\n\
--OUT\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n\
From: Evil <evil@bad.example>\r\nSubject: Your invoice\r\nContent-Type: multipart/mixed; boundary=\"IN\"\r\n\r\n\
--IN\r\nContent-Type: text/plain\r\n\r\nopen the attachment\r\n\
--IN\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*0=\"ev\"; filename*1=\"il.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--IN--\r\n\
--OUT\r\nContent-Type: text/plain; name=\"notes.txt\"\r\n\r\nlast part\r\n--OUT--\r\n"
        .to_string()
}

#[test]
fn attachment_inside_a_forwarded_message_is_seen() {
    let msg = forwarded();
    let text = format!(
        "{}{}{}",
        attachment_rules(),
        rule(
            30,
            "header = [{ name = \"From\", contains = \"evil@bad.example\" }]"
        ),
        rule(31, "content_type = [\"message/rfc822\"]"),
    );
    assert_eq!(fired(&text, &msg), vec![30, 31, 101, 102]);
    let ev = dissect(&msg);
    let e = email(&ev);
    // The message's own headers stay the top-level ones.
    assert_eq!(e.from.as_deref(), Some("friend@example.com"));
    assert_eq!(e.subject.as_deref(), Some("Fwd: invoice"));
    assert_eq!(
        e.attachment,
        vec!["evil.exe".to_string(), "notes.txt".to_string()]
    );
    assert_eq!(anomalies(&ev), vec![]);
    // The forwarded message's header block is a part of its own.
    let parts: Vec<(u32, String)> = ev
        .iter()
        .filter_map(|e| match e {
            OwnedEvent::MimePart(p) => Some((p.part, p.content_type.clone())),
            _ => None,
        })
        .collect();
    let want: Vec<(u32, String)> = [
        (0, "multipart/mixed"),
        (1, "text/plain"),
        (2, "message/rfc822"),
        (3, "multipart/mixed"),
        (4, "text/plain"),
        (5, "application/octet-stream"),
        (6, "text/plain"),
    ]
    .iter()
    .map(|(n, t)| (*n, t.to_string()))
    .collect();
    assert_eq!(parts, want);
    assert_eq!(
        body(&ev),
        "see the forwarded mail\r\nopen the attachment\r\nMZ\u{fffd}\0\u{3}\0\0\0\u{4}\0\0\0last part\r\n"
    );
}

#[test]
fn forwarded_message_at_top_level_and_in_a_digest() {
    // A bounce-like message whose whole body is a message.
    let msg = "Content-Type: message/rfc822\r\n\r\nFrom: evil@bad.example\r\n\
Content-Type: application/x-msdownload; name=evil.exe\r\n\r\nMZ\r\n";
    assert_eq!(fired(&attachment_rules(), msg), vec![101, 102]);
    // multipart/digest: parts without Content-Type are messages.
    let msg = "Content-Type: multipart/digest; boundary=D\r\n\r\n--D\r\n\r\n\
From: evil@bad.example\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\r\nMZ\r\n--D--\r\n";
    assert_eq!(fired(&attachment_rules(), msg), vec![101, 102]);
}

#[test]
fn enclosing_boundary_ends_an_unterminated_forwarded_header_block() {
    // The forwarded message never ends its header block: the outer boundary
    // ends it, and the next part's attachment is the next part's.
    let msg = "Content-Type: multipart/mixed; boundary=\"O\"\r\n\r\n\
--O\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@example.com\r\nSubject: cut\r\n\
--O\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\r\nMZ\r\n--O--\r\n";
    assert_eq!(fired(&attachment_rules(), msg), vec![101, 102]);
    let ev = dissect(msg);
    assert_eq!(email(&ev).attachment, vec!["evil.exe".to_string()]);
    assert_eq!(body(&ev), "MZ\r\n");
}

#[test]
fn nesting_deeper_than_followed_is_reported() {
    let mut msg = String::new();
    for _ in 0..10 {
        msg.push_str("Content-Type: message/rfc822\r\n\r\n");
    }
    msg.push_str("Content-Type: text/plain; name=\"deep.txt\"\r\n\r\ndeep body\r\n");
    let ev = dissect(&msg);
    assert_eq!(anomalies(&ev), vec![AnomalyKind::MimeNestingTooDeep]);
    // 8 levels followed: the 9th message is body text of the 8th.
    let b = body(&ev);
    assert!(
        b.starts_with("Content-Type: message/rfc822\r\n\r\nContent-Type: text/plain"),
        "{b}"
    );
    assert!(b.ends_with("deep body\r\n\r\n"), "{b}");
}

#[test]
fn encoded_forwarded_message_is_entered_and_reported() {
    // base64 of "From: evil@bad.example\r\nContent-Type: multipart/mixed;
    // boundary=I\r\n\r\n--I\r\nContent-Type: application/octet-stream;
    // name=evil.exe\r\n\r\nMZ\r\n--I--\r\n", in 76-column lines.
    let inner = "From: evil@bad.example\r\nContent-Type: multipart/mixed; boundary=I\r\n\r\n\
--I\r\nContent-Type: application/octet-stream; name=evil.exe\r\n\r\nMZ\r\n--I--\r\n";
    let b64 = base64(inner.as_bytes());
    let mut msg = String::from(
        "Content-Type: multipart/mixed; boundary=\"O\"\r\n\r\n\
--O\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    for line in b64.as_bytes().chunks(76) {
        msg.push_str(std::str::from_utf8(line).unwrap());
        msg.push_str("\r\n");
    }
    msg.push_str("--O\r\nContent-Type: text/plain; name=after.txt\r\n\r\nafter\r\n--O--\r\n");
    let text = format!(
        "{}{}",
        attachment_rules(),
        rule(
            30,
            "header = [{ name = \"From\", contains = \"evil@bad.example\" }]"
        )
    );
    assert_eq!(fired(&text, &msg), vec![30, 101, 102]);
    let ev = dissect(&msg);
    assert_eq!(anomalies(&ev), vec![AnomalyKind::MimeEncodedMessage]);
    assert_eq!(
        email(&ev).attachment,
        vec!["evil.exe".to_string(), "after.txt".to_string()]
    );
    let parts: Vec<(u32, String)> = ev
        .iter()
        .filter_map(|e| match e {
            OwnedEvent::MimePart(p) => Some((p.part, p.content_type.clone())),
            _ => None,
        })
        .collect();
    let want: Vec<(u32, String)> = [
        (0, "multipart/mixed"),
        (1, "message/rfc822"),
        (2, "multipart/mixed"),
        (3, "application/octet-stream"),
        (4, "text/plain"),
    ]
    .iter()
    .map(|(n, t)| (*n, t.to_string()))
    .collect();
    assert_eq!(parts, want);
    assert_eq!(body(&ev), "MZ\r\nafter\r\n");
}

#[test]
fn encoded_forwarded_messages_nest_within_the_depth_bound() {
    // Each level: a base64 message/rfc822 wrapping the previous one.
    let mut msg = "Content-Type: text/plain; name=evil.exe\r\n\r\nMZ\r\n".to_string();
    for _ in 0..12 {
        let mut wrapped = String::from(
            "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        );
        for line in base64(msg.as_bytes()).as_bytes().chunks(76) {
            wrapped.push_str(std::str::from_utf8(line).unwrap());
            wrapped.push_str("\r\n");
        }
        msg = wrapped;
    }
    let ev = dissect(&msg);
    let a = anomalies(&ev);
    assert_eq!(
        a.iter()
            .filter(|k| **k == AnomalyKind::MimeEncodedMessage)
            .count(),
        8
    );
    assert_eq!(a.last(), Some(&AnomalyKind::MimeNestingTooDeep));
}

/// Standard base64 (test helper).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ------------------------------------------------------ malformed header lines

/// sid 20: body keyword `ransom`; sid 21: Subject contains `invoice`.
fn malformed_rules() -> String {
    format!(
        "{}{}",
        rule(20, "body_keywords = [\"ransom\"]"),
        rule(
            21,
            "header = [{ name = \"Subject\", contains = \"invoice\" }]"
        )
    )
}

fn malformed(ev: &[OwnedEvent]) -> usize {
    anomalies(ev)
        .iter()
        .filter(|k| **k == AnomalyKind::MimeHeaderMalformed)
        .count()
}

/// A line without a colon inside the header block is where Postfix's
/// cleanup and mail clients start the body: a keyword on it, or on the
/// header-looking lines after it, must reach the body rules, and the line
/// is reported. Headers before it stay headers.
#[test]
fn colon_less_header_line_starts_the_body() {
    let long = format!("{} ransom", "x".repeat(5000));
    for line in [
        "pay the ransom today",
        "ransom",
        // A blank in the name: not a field name (Postfix's is_header).
        "Pay the ransom: today",
        // Longer than the 4 KiB header line cap: kept whole as body.
        long.as_str(),
    ] {
        let msg = format!(
            "From: a@example.com\r\nSubject: Urgent invoice\r\n{line}\r\nX-Note: see below\r\n\r\nhello\r\n"
        );
        assert_eq!(fired(&malformed_rules(), &msg), vec![20, 21], "{line:.40}");
        let ev = dissect(&msg);
        assert_eq!(malformed(&ev), 1, "{line:.40}");
        let b = body(&ev);
        let want = format!("{line}\r\nX-Note: see below\r\n\r\nhello\r\n");
        assert!(b.starts_with(&want), "{line:.40}: {b:.100}");
        assert_eq!(email(&ev).subject.as_deref(), Some("Urgent invoice"));
    }
    // The keyword on a header-looking line after the colon-less one.
    let msg =
        "From: a@example.com\r\nSubject: Urgent invoice\r\nhello\r\nX-Note: ransom\r\n\r\nbody\r\n";
    assert_eq!(fired(&malformed_rules(), msg), vec![20, 21]);
}

/// The same inside a MIME part's header block: the line is the part's body.
#[test]
fn colon_less_line_in_a_part_header_block_is_part_body() {
    let msg = "From: a@example.com\r\nSubject: docs\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: text/plain\r\nthe ransom is due\r\n\r\nsee attached\r\n--B--\r\n";
    assert_eq!(fired(&malformed_rules(), msg), vec![20]);
    let ev = dissect(msg);
    assert_eq!(malformed(&ev), 1);
    assert!(body(&ev).contains("the ransom is due\r\n"), "{}", body(&ev));
}

/// Legitimate headers (folded, obsolete blank before the colon, 8-bit free
/// text in values, multipart parts) are not reported.
#[test]
fn legitimate_headers_are_not_malformed() {
    let msg = "Received: from relay.example.net (relay.example.net [198.18.0.9])\r\n\tby mx.example.org (Postfix)\r\n\
From: Alice <a@example.com>\r\nTo: b@example.org\r\nSubject : quarterly invoice\r\n\
X-Folded: first part\r\n  second part\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative;\r\n\tboundary=\"ALT\"\r\n\r\n\
--ALT\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n\
--ALT\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>hello</p>\r\n--ALT--\r\n";
    let ev = dissect(msg);
    assert_eq!(malformed(&ev), 0, "{:?}", anomalies(&ev));
    assert_eq!(anomalies(&ev), vec![]);
    assert_eq!(fired(&malformed_rules(), msg), vec![21]);
}

/// Content with no header field at all is a body from its first line:
/// body rules see that line, and nothing is reported.
#[test]
fn headerless_content_is_body_from_its_first_line() {
    let msg = "pay the ransom today\r\nor else\r\n";
    assert_eq!(fired(&malformed_rules(), msg), vec![20]);
    let ev = dissect(msg);
    assert_eq!(malformed(&ev), 0, "{:?}", anomalies(&ev));
    assert!(body(&ev).starts_with(msg), "{}", body(&ev));
}
