//! Hostile MIME through a whole session: malformed encoded-words, nesting
//! deeper than followed, empty boundaries, header floods.

mod smtp_common;

use smtp_common::*;
use smtp_user::smtp::{AnomalyKind, ContentPart, Email, OwnedEvent};

/// Runs one message through EHLO/MAIL/RCPT/DATA and returns (email, events).
fn message(msg: &[u8]) -> (Email, Vec<OwnedEvent>) {
    let mut data = msg.to_vec();
    data.extend_from_slice(b"\r\n.\r\n");
    let ev = run(&[
        (Down, b"220 mx\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250 mx\r\n"),
        (Up, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
        (Down, b"250 ok\r\n250 ok\r\n354 go\r\n"),
        (Up, &data),
        (Down, b"250 ok\r\n"),
    ]);
    let email = transactions(&ev)[0].email.clone().unwrap_or_default();
    (email, ev)
}

#[test]
fn malformed_encoded_words_are_kept_as_written() {
    for (raw, expected) in [
        ("=?utf-8?B?", "=?utf-8?B?"),
        ("=?é?Q?x?= tail", "=?é?Q?x?= tail"),
        ("=?utf-8?Q?caf=C3?=", "caf\u{fffd}"),
        ("=?x-unknown?B?8NLJ18XU?=", "=?x-unknown?B?8NLJ18XU?="),
        ("a =?ISO-8859-1?Q?=E9t=E9?= b", "a été b"),
        ("=?utf-8?x?abc?=", "=?utf-8?x?abc?="),
    ] {
        let (email, ev) = message(format!("Subject: {raw}\r\n\r\nx").as_bytes());
        assert_eq!(email.subject.as_deref(), Some(expected), "{raw}");
        assert_eq!(anomalies(&ev), []);
    }
}

#[test]
fn nesting_deeper_than_followed_stays_bounded() {
    let mut msg = Vec::new();
    for i in 0..12 {
        msg.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                .as_bytes(),
        );
    }
    msg.extend_from_slice(b"Content-Type: text/plain; name=\"deep.txt\"\r\n\r\ndeep body\r\n");
    for i in (0..12).rev() {
        msg.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
    }
    let (email, ev) = message(&msg);
    // Only 8 levels are followed: the part declaring `b8` is a plain body, so
    // everything below it (the deep attachment included) is body text.
    assert_eq!(email.attachment, Vec::<String>::new());
    let body = content(&ev, 0, ContentPart::DecodedBody);
    assert!(body.starts_with(b"--b8\r\nContent-Type: multipart/mixed; boundary=\"b9\""));
    assert!(body.ends_with(b"deep body\r\n--b11--\r\n--b10--\r\n--b9--\r\n--b8--\r\n"));
    // What is not followed is said.
    assert_eq!(anomalies(&ev), [AnomalyKind::MimeNestingTooDeep]);
    assert_eq!(
        transactions(&ev)[0].email_status.as_deref(),
        Some("PARSE_DONE")
    );
}

#[test]
fn empty_boundary_is_not_a_multipart() {
    let (email, ev) =
        message(b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\nbody\r\n----\r\n");
    assert_eq!(email.attachment, Vec::<String>::new());
    assert_eq!(
        content(&ev, 0, ContentPart::DecodedBody),
        b"--\r\nbody\r\n----\r\n\r\n".to_vec()
    );
}

#[test]
fn header_flood_is_read_as_headers_to_its_end() {
    let mut msg = Vec::new();
    for i in 0..3000 {
        msg.extend_from_slice(format!("X-Junk-{i}: {}\r\n", "j".repeat(20)).as_bytes());
    }
    msg.extend_from_slice(b"Subject: late\r\n\r\nbody\r\n");
    let (email, ev) = message(&msg);
    assert_eq!(anomalies(&ev), [AnomalyKind::MimeHeaderBlockTooLong]);
    // Past the limit the key fields are still read; the body is the body.
    assert_eq!(email.subject.as_deref(), Some("late"));
    assert_eq!(
        transactions(&ev)[0].email_status.as_deref(),
        Some("PARSE_DONE"),
        "the end of data was reached: warnings are anomalies, not a status"
    );
    assert_eq!(
        content(&ev, 0, ContentPart::DecodedBody),
        b"body\r\n\r\n".to_vec()
    );
}
