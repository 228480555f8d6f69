//! Helpers shared by the SMTP dissector tests: run transcripts, pick events.
#![allow(dead_code)]

#[path = "../corpus/mod.rs"]
pub mod corpus;
pub mod pcap;

use smtp_user::smtp::{
    AnomalyKind, Command, ContentPart, OwnedEvent, OwnedMailContent, Response, Session,
    Transaction, Verb,
};
use smtp_user::Direction;

pub use Direction::{Down, Up};

/// Feeds the transcript segment by segment, then `finish`.
pub fn run(script: &[(Direction, &[u8])]) -> Vec<OwnedEvent> {
    let mut s = Session::new();
    let mut ev = Vec::new();
    for (dir, bytes) in script {
        s.feed(*dir, bytes, &mut ev);
    }
    s.finish(&mut ev);
    ev
}

/// Like [`run`] but returns the session too (for state/flags checks), without `finish`.
pub fn run_open(script: &[(Direction, &[u8])]) -> (Session, Vec<OwnedEvent>) {
    let mut s = Session::new();
    let mut ev = Vec::new();
    for (dir, bytes) in script {
        s.feed(*dir, bytes, &mut ev);
    }
    (s, ev)
}

/// Normalises content pieces (their boundaries follow the input chunking):
/// all Raw and all DecodedBody bytes of a message are merged into one event
/// each, placed just before the message's End marker (or at the end).
pub fn coalesce(events: Vec<OwnedEvent>) -> Vec<OwnedEvent> {
    let mut out: Vec<OwnedEvent> = Vec::new();
    let mut raw: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut dec: Vec<(u32, Vec<u8>)> = Vec::new();
    fn take(acc: &mut Vec<(u32, Vec<u8>)>, tx: u32) -> Option<Vec<u8>> {
        let i = acc.iter().position(|(t, _)| *t == tx)?;
        Some(acc.remove(i).1)
    }
    fn add(acc: &mut Vec<(u32, Vec<u8>)>, tx: u32, data: &[u8]) {
        match acc.iter_mut().find(|(t, _)| *t == tx) {
            Some((_, d)) => d.extend_from_slice(data),
            None => acc.push((tx, data.to_vec())),
        }
    }
    let flush = |out: &mut Vec<OwnedEvent>,
                 raw: &mut Vec<(u32, Vec<u8>)>,
                 dec: &mut Vec<(u32, Vec<u8>)>,
                 tx: u32| {
        if let Some(data) = take(raw, tx) {
            out.push(OwnedEvent::MailContent(OwnedMailContent {
                tx_id: tx,
                part: ContentPart::Raw,
                data,
            }));
        }
        if let Some(data) = take(dec, tx) {
            out.push(OwnedEvent::MailContent(OwnedMailContent {
                tx_id: tx,
                part: ContentPart::DecodedBody,
                data,
            }));
        }
    };
    for e in events {
        match &e {
            OwnedEvent::MailContent(m) if m.part == ContentPart::Raw => {
                add(&mut raw, m.tx_id, &m.data)
            }
            OwnedEvent::MailContent(m) if m.part == ContentPart::DecodedBody => {
                add(&mut dec, m.tx_id, &m.data)
            }
            OwnedEvent::MailContent(m) => {
                flush(&mut out, &mut raw, &mut dec, m.tx_id);
                out.push(e);
            }
            _ => out.push(e),
        }
    }
    let txs: Vec<u32> = raw.iter().chain(dec.iter()).map(|(t, _)| *t).collect();
    for tx in txs {
        flush(&mut out, &mut raw, &mut dec, tx);
    }
    out
}

pub fn anomalies(ev: &[OwnedEvent]) -> Vec<AnomalyKind> {
    ev.iter()
        .filter_map(|e| match e {
            OwnedEvent::Anomaly(a) => Some(a.kind),
            _ => None,
        })
        .collect()
}

pub fn commands(ev: &[OwnedEvent]) -> Vec<Command> {
    ev.iter()
        .filter_map(|e| match e {
            OwnedEvent::Command(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

pub fn verbs(ev: &[OwnedEvent]) -> Vec<Verb> {
    commands(ev).into_iter().map(|c| c.verb).collect()
}

pub fn responses(ev: &[OwnedEvent]) -> Vec<Response> {
    ev.iter()
        .filter_map(|e| match e {
            OwnedEvent::Response(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// (code, answered verb) of every response.
pub fn reply_codes(ev: &[OwnedEvent]) -> Vec<(u16, Option<Verb>)> {
    responses(ev).into_iter().map(|r| (r.code, r.to)).collect()
}

pub fn transactions(ev: &[OwnedEvent]) -> Vec<Transaction> {
    ev.iter()
        .filter_map(|e| match e {
            OwnedEvent::Transaction(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// Concatenated content of one part kind for a transaction.
pub fn content(ev: &[OwnedEvent], tx: u32, part: ContentPart) -> Vec<u8> {
    ev.iter()
        .filter_map(|e| match e {
            OwnedEvent::MailContent(OwnedMailContent {
                tx_id,
                part: p,
                data,
            }) if *tx_id == tx && *p == part => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// A compact, ordered trace of the events: `C:VERB`, `R:code`, `T:id:state`,
/// `A:kind`, `M:End` — for checking event order.
pub fn trace(ev: &[OwnedEvent]) -> Vec<String> {
    ev.iter()
        .filter_map(|e| match e {
            OwnedEvent::Command(c) => Some(format!("C:{}", c.verb.as_str())),
            OwnedEvent::Response(r) => Some(format!("R:{}", r.code)),
            OwnedEvent::Transaction(t) => Some(format!("T:{}:{:?}", t.id, t.state)),
            OwnedEvent::Anomaly(a) => Some(format!("A:{}", a.kind.as_str())),
            OwnedEvent::MailContent(m) if m.part == ContentPart::End => {
                Some(format!("M:End:{}", m.tx_id))
            }
            OwnedEvent::MailContent(_)
            | OwnedEvent::Header(_)
            | OwnedEvent::MimePart(_)
            | OwnedEvent::Envelope(_)
            | OwnedEvent::File(_)
            | OwnedEvent::Url(_) => None,
        })
        .collect()
}

/// Postfix-style session: greeting, EHLO, one message delivered, QUIT.
pub const POSTFIX: &[(Direction, &[u8])] = &[
    (Down, b"220 mx.example.org ESMTP Postfix (Debian/GNU)\r\n"),
    (Up, b"EHLO client.example.com\r\n"),
    (Down, b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"),
    (Up, b"MAIL FROM:<alice@example.com> SIZE=321 BODY=8BITMIME\r\n"),
    (Down, b"250 2.1.0 Ok\r\n"),
    (Up, b"RCPT TO:<bob@example.org>\r\n"),
    (Down, b"250 2.1.5 Ok\r\n"),
    (Up, b"DATA\r\n"),
    (Down, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
    (Up, b"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: Lunch\r\nDate: Tue, 3 Oct 2023 10:00:00 +0200\r\nMessage-ID: <abc@example.com>\r\n\r\nSee you at noon.\r\n..and a stuffed dot.\r\n.\r\n"),
    (Down, b"250 2.0.0 Ok: queued as 4RzXyZ1abc\r\n"),
    (Up, b"QUIT\r\n"),
    (Down, b"221 2.0.0 Bye\r\n"),
];
