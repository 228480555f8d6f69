//! Chunking independence: any split of a session's segments into smaller
//! chunks (order of bytes kept) gives the same events, content pieces
//! normalised by [`smtp_common::coalesce`].

mod smtp_common;

use proptest::prelude::*;
use smtp_common::*;
use smtp_user::smtp::{OwnedEvent, Session};
use smtp_user::Direction;

const MIME: &[u8] = b"From: a@b\r\nTo: c@d, e@f\r\nSubject: =?utf-8?q?t=C3=A9st?=\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nsoft=\r\nbreak =3D\r\n..dot\r\n\
--b1\r\nContent-Type: application/zip; name=\"x.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\nUEsDBAoAAAAAAA==\r\nQUJD*\r\n\
--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y\r\nSubject: =?koi8-r?B?8NLJ18XU?=\r\nContent-Type: multipart/mixed; boundary=b2\r\n\r\n\
--b2\r\nContent-Disposition: attachment; filename*1=\"il.exe\"; filename*0*=utf-8''%65v\r\n\r\nMZ\r\n--b2--\r\n--b1--\r\n.\r\n";

fn transcripts() -> Vec<Vec<(Direction, Vec<u8>)>> {
    let own =
        |s: &[(Direction, &[u8])]| s.iter().map(|(d, b)| (*d, b.to_vec())).collect::<Vec<_>>();
    let mut mime_session = own(&[
        (Down, b"220 mx\r\n"),
        (Up, b"EHLO c\r\n"),
        (Down, b"250-mx\r\n250 PIPELINING\r\n"),
        (
            Up,
            b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n",
        ),
        (Down, b"250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n"),
    ]);
    mime_session.push((Up, MIME.to_vec()));
    mime_session.extend(own(&[
        (Down, b"250 ok\r\n"),
        (Up, b"QUIT\r\n"),
        (Down, b"221 bye\r\n"),
    ]));
    vec![
        own(POSTFIX),
        mime_session,
        own(&[
            (Down, b"220 mx\r\n"),
            (Up, b"EHLO c\r\n"),
            (Down, b"250 ok\r\n"),
            (Up, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 7\r\nabc\r\n.\rBDAT 5 LAST\r\n\n\r\n.\nMAIL FROM:<x@y>\r\nDATA\r\nearly\r\n.\r\nRSET\r\n"),
            (Down, b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n250 ok\r\n"),
            (Up, b"AUTH LOGIN\r\ndXNlcg==\r\n"),
            (Down, b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"),
            (Up, b"cGFzcw==\r\n"),
            (Down, b"235 ok\r\n"),
            (Up, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
            (Down, b"250 ok\r\n250 ok\r\n354 go\r\n"),
            (Up, b"x\n.\ny\r\n.\r\nSTARTTLS\r\n"),
            (Down, b"250 ok\r\n220 go ahead\r\n\x16\x03\x03"),
            (Up, b"\x16\x03\x01\x00"),
        ]),
        own(&[
            (Up, b"helo early\n"),
            (Down, b"220-mx\r\n221-mismatch\r\n220 mx\r\n250 hi\r\n"),
            (Up, b"xyzzy\r\n\x01\x02\r\nDATA\r\n"),
            (Down, b"502 what\r\n500 bad\r\n503 no\r\n"),
            (Up, b"QUIT\r\nNOOP\r\n"),
            (Down, b"221 bye\r\n"),
        ]),
        // Errors, then the session goes on: an invalid BDAT (501), a
        // garbage reply line; the dissector resynchronises after each.
        own(&[
            (Down, b"220 mx\r\n"),
            (Up, b"EHLO c\r\nMAIL FROM:<a@b>\r\nBDAT 5 X\r\n"),
            (Down, b"250 ok\r\n250 ok\r\n501 syntax\r\n"),
            (Up, b"hello\r\nRSET\r\nMAIL FROM:<evil@bad.example>\r\nRCPT TO:<v@x>\r\nDATA\r\n"),
            (Down, b"500 what\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            (Up, b"Subject: s\r\n\r\nbody\r\n.\r\nNOOP\r\n"),
            (Down, b"250 queued\r\n\x80garbage\r\n"),
            (Up, b"MAIL FROM:<evil2@bad.example>\r\nRCPT TO:<v@x>\r\nBDAT 3 LAST\r\nabc"),
            (Down, b"250 ok\r\n250 ok\r\n250 queued\r\n"),
        ]),
        smuggling(b"250 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued 2\r\n"),
        smuggling(b"250 queued\r\n"),
    ]
}

/// A bare-LF dot line followed by a second transaction; the server's
/// replies accept the smuggled end or not.
fn smuggling(replies: &[u8]) -> Vec<(Direction, Vec<u8>)> {
    vec![
        (Down, b"220 mx\r\n".to_vec()),
        (Up, b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n".to_vec()),
        (Down, b"250 ok\r\n250 ok\r\n250 ok\r\n".to_vec()),
        (Up, b"DATA\r\n".to_vec()),
        (Down, b"354 go\r\n".to_vec()),
        (Up, b"Subject: one\r\n\r\nx\n.\nMAIL FROM:<evil@bad.example>\r\nRCPT TO:<v@x>\r\nDATA\r\nSubject: two\r\n\r\ny\r\n.\r\n".to_vec()),
        (Down, replies.to_vec()),
        (Up, b"QUIT\r\n".to_vec()),
        (Down, b"221 bye\r\n".to_vec()),
    ]
}

/// Sessions joined midstream (no SYN): inside DATA (a body line longer than
/// the line limit, lines that look like commands), and in the envelope.
fn midstream_transcripts() -> Vec<Vec<(Direction, Vec<u8>)>> {
    let mut body = b"Data follows\r\nQuit it\r\n".to_vec();
    body.extend_from_slice(&[b'x'; 5000]);
    body.extend_from_slice(b"\r\n..\r\n.\r\n");
    vec![
        vec![
            (Up, body),
            (Down, b"250 queued\r\n".to_vec()),
            (Up, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n".to_vec()),
            (Down, b"250 ok\r\n250 ok\r\n354 go\r\n".to_vec()),
            (Up, b"Subject: s\r\n\r\nx\r\n.\r\nQUIT\r\n".to_vec()),
            (Down, b"250 ok\r\n221 bye\r\n".to_vec()),
        ],
        vec![
            (Down, b"250-more\r\n250 ok\r\n".to_vec()),
            (Up, b"RCPT TO:<x@y>\r\nDATA\r\n".to_vec()),
            (Down, b"250 ok\r\n354 go\r\n".to_vec()),
            (
                Up,
                b"Subject: joined\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@b>\r\n".to_vec(),
            ),
            (Down, b"250 queued\r\n250 ok\r\n".to_vec()),
            (Up, b"RCPT TO:<c@d>\r\nBDAT 4 LAST\r\nabcd".to_vec()),
            (Down, b"250 ok\r\n250 ok\r\n".to_vec()),
        ],
    ]
}

fn feed_split(script: &[(Direction, Vec<u8>)], sizes: &[usize]) -> Vec<OwnedEvent> {
    feed_split_in(Session::new(), script, sizes)
}

fn feed_split_in(
    mut s: Session,
    script: &[(Direction, Vec<u8>)],
    sizes: &[usize],
) -> Vec<OwnedEvent> {
    let mut ev = Vec::new();
    let mut k = 0;
    for (dir, bytes) in script {
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = sizes
                .get(k % sizes.len().max(1))
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            k += 1;
            s.feed(*dir, &rest[..n], &mut ev);
            rest = &rest[n..];
        }
    }
    s.finish(&mut ev);
    coalesce(ev)
}

#[test]
fn byte_by_byte_equals_whole_segments() {
    for script in transcripts() {
        let whole = feed_split(&script, &[usize::MAX]);
        assert!(whole.len() > 10);
        assert_eq!(feed_split(&script, &[1]), whole);
    }
}

#[test]
fn midstream_byte_by_byte_equals_whole_segments() {
    use smtp_user::smtp::TransactionState::Delivered;
    for (script, size) in midstream_transcripts().into_iter().zip([17, 4]) {
        let whole = feed_split_in(Session::midstream(), &script, &[usize::MAX]);
        assert_eq!(anomalies(&whole), []);
        // Only the complete transaction after the one we joined, as tx 0.
        let txs: Vec<_> = transactions(&whole)
            .iter()
            .map(|t| (t.id, t.state, t.size))
            .collect();
        assert_eq!(txs, [(0, Delivered, size)]);
        assert_eq!(feed_split_in(Session::midstream(), &script, &[1]), whole);
    }
}

#[test]
fn transcripts_produce_what_they_are_about() {
    let t = transcripts();
    let ev = feed_split(&t[1], &[usize::MAX]);
    let tx = &transactions(&ev)[0];
    let email = tx
        .email
        .as_ref()
        .map(|e| (e.subject.clone(), e.attachment.clone(), e.to.len()));
    assert_eq!(
        email,
        Some((
            Some("tést".to_string()),
            vec!["x.zip".to_string(), "evil.exe".to_string()],
            2
        ))
    );
    assert_eq!(
        anomalies(&ev),
        [smtp_user::smtp::AnomalyKind::MimeInvalidBase64]
    );
    let ev = feed_split(&t[2], &[usize::MAX]);
    let states: Vec<_> = transactions(&ev)
        .iter()
        .map(|t| (t.id, t.state, t.size))
        .collect();
    use smtp_user::smtp::TransactionState::Delivered;
    // The last one is the handoff to TLS.
    use smtp_user::smtp::TransactionState::Aborted;
    assert_eq!(
        states,
        [
            (0, Delivered, 12),
            (1, Delivered, 7),
            (2, Delivered, 6),
            (3, Aborted, 0)
        ]
    );
    assert_eq!(
        anomalies(&ev),
        [
            smtp_user::smtp::AnomalyKind::ContentBefore354,
            smtp_user::smtp::AnomalyKind::SmugglingBareLfEndOfData
        ]
    );
    // Smuggling followed both ways.
    let froms = |ev: &[OwnedEvent]| -> Vec<String> {
        transactions(ev)
            .iter()
            .map(|t| t.mail_from.clone().unwrap_or_default())
            .collect()
    };
    let ev = feed_split(&t[5], &[usize::MAX]);
    assert_eq!(froms(&ev), ["<a@b>", "<evil@bad.example>"]);
    let ev = feed_split(&t[6], &[usize::MAX]);
    assert_eq!(froms(&ev), ["<a@b>"]);
    // Resynchronised after each error: the later mails are reported.
    let ev = feed_split(&t[4], &[usize::MAX]);
    let froms: Vec<_> = transactions(&ev)
        .iter()
        .map(|t| (t.mail_from.clone().unwrap_or_default(), t.state))
        .collect();
    use smtp_user::smtp::TransactionState::Reset;
    assert_eq!(
        froms,
        [
            ("<a@b>".to_string(), Reset),
            ("<evil@bad.example>".to_string(), Delivered),
            ("<evil2@bad.example>".to_string(), Delivered)
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn any_chunking_gives_the_same_events(which in 0usize..7, sizes in proptest::collection::vec(1usize..40, 1..16)) {
        let script = &transcripts()[which];
        let whole = feed_split(script, &[usize::MAX]);
        prop_assert_eq!(feed_split(script, &sizes), whole);
    }

    #[test]
    fn midstream_any_chunking_gives_the_same_events(which in 0usize..2, sizes in proptest::collection::vec(1usize..40, 1..16)) {
        let script = &midstream_transcripts()[which];
        let whole = feed_split_in(Session::midstream(), script, &[usize::MAX]);
        prop_assert_eq!(feed_split_in(Session::midstream(), script, &sizes), whole);
    }
}
