//! Helpers shared by the pipeline tests: a realistic scripted SMTP session,
//! pcap writing, replay through `replay_files`, and EVE line selection.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

#[path = "../eve_schema/mod.rs"]
pub mod eve_schema;

use serde_json::Value;
use smtp_user::capture::synth::{render, Conversation, Packet, PcapWriter, RenderOptions};
use smtp_user::capture::wire::linktype;
use smtp_user::flow::FlowConfig;
use smtp_user::pipeline::{replay_files, ReplayOptions, ReplaySummary};
use smtp_user::Direction::{self, Down, Up};

/// Base64 of `data` with 76-character lines (what a mail client writes).
pub fn base64_lines(data: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 8);
    let mut col = 0;
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63]);
            } else {
                out.push(b'=');
            }
        }
        col += 4;
        if col == 76 {
            out.extend_from_slice(b"\r\n");
            col = 0;
        }
    }
    if col != 0 {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The message of the first transaction: MIME, text part with a
/// dot-stuffed line, base64 attachment `report.pdf` of `attachment_len`
/// bytes. Returned as sent on the wire (dot-stuffed, ending in `.\r\n`)
/// together with its size after unstuffing (without the final dot line).
pub fn mime_message(attachment_len: usize) -> (Vec<u8>, u64) {
    let mut m = Vec::new();
    m.extend_from_slice(
        b"From: Alice Example <alice@example.org>\r\n\
To: Bob <bob@example.net>\r\n\
Cc: carol@example.net\r\n\
Subject: Quarterly report\r\n\
Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <20261124100000.1234@client.example.org>\r\n\
X-Mailer: TestMailer 1.0\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1_xyz\"\r\n\
\r\n\
This is a multi-part message in MIME format.\r\n\
--b1_xyz\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello Bob,\r\n\
..a line that starts with a dot\r\n\
please find the report attached.\r\n\
--b1_xyz\r\n\
Content-Type: application/pdf; name=\"report.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
\r\n",
    );
    let attachment: Vec<u8> = (0..attachment_len)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    m.extend_from_slice(&base64_lines(&attachment));
    m.extend_from_slice(b"--b1_xyz--\r\n");
    // One stuffed dot in the text part: unstuffed size is one byte less.
    let size = m.len() as u64 - 1;
    m.extend_from_slice(b".\r\n");
    (m, size)
}

/// A realistic session: greeting, EHLO with a multi-line 250, pipelined
/// MAIL/RCPT/RCPT/DATA, a MIME message with a base64 attachment, a second
/// transaction whose only RCPT is rejected, RSET, QUIT/221. Also returns
/// the first message's unstuffed size.
pub fn realistic_script() -> (Vec<(Direction, Vec<u8>)>, u64) {
    let (message, size) = mime_message(6000);
    let s = |d, t: &[u8]| (d, t.to_vec());
    let script = vec![
        s(Down, b"220 mx.example.net ESMTP Postfix\r\n"),
        s(Up, b"EHLO client.example.org\r\n"),
        s(
            Down,
            b"250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
        ),
        s(
            Up,
            b"MAIL FROM:<alice@example.org> SIZE=9000 BODY=8BITMIME\r\n\
RCPT TO:<bob@example.net>\r\n\
RCPT TO:<carol@example.net>\r\n\
DATA\r\n",
        ),
        s(
            Down,
            b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
        ),
        (Up, message),
        s(Down, b"250 2.0.0 Ok: queued as 4Xyz1234\r\n"),
        s(Up, b"MAIL FROM:<alice@example.org>\r\n"),
        s(Down, b"250 2.1.0 Ok\r\n"),
        s(Up, b"RCPT TO:<nobody@example.net>\r\n"),
        s(Down, b"550 5.1.1 <nobody@example.net>: Recipient address rejected\r\n"),
        s(Up, b"RSET\r\n"),
        s(Down, b"250 2.0.0 Ok\r\n"),
        s(Up, b"QUIT\r\n"),
        s(Down, b"221 2.0.0 Bye\r\n"),
    ];
    (script, size)
}

/// A conversation of the realistic session with the given MSS.
pub fn realistic_conversation(mss: usize) -> Conversation {
    let (steps, _) = realistic_script();
    let mut c = Conversation::new(steps);
    c.mss = mss;
    c
}

/// Little-endian microsecond pcap of `packets` of `conv`.
pub fn pcap_of(conv: &Conversation, packets: &[Packet]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), linktype::ETHERNET).expect("write to Vec");
    for (ts, f) in render(conv, packets, RenderOptions::default()) {
        w.write_frame(ts, &f, f.len() as u32).expect("write to Vec");
    }
    w.into_inner()
}

/// A fresh, empty directory for one test's files.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "smtp-user-pipeline-{}-{}",
        name,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// Writes `bytes` to `dir/name`, returns the path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write test file");
    p
}

/// Parses EVE output into JSON values, one per line; panics on a bad line
/// or on one that does not validate against the EVE schemas.
pub fn parse_lines(out: &[u8]) -> Vec<Value> {
    eve_schema::parse(out)
}

/// Replays files with the CLI's default ports (25, 587, 2525).
pub fn replay_paths(paths: &[PathBuf]) -> (ReplaySummary, Vec<Value>) {
    let opts = ReplayOptions {
        flow: FlowConfig {
            monitored_ports: vec![25, 587, 2525],
            ..FlowConfig::default()
        },
        log_commands: false,
        ..ReplayOptions::default()
    };
    let mut out = Vec::new();
    let (summary, res) = replay_files(paths, &opts, &mut out, |_| {});
    res.expect("output to a Vec cannot fail");
    (summary, parse_lines(&out))
}

/// Writes `pcap` to a file in a fresh directory named `name` and replays it.
pub fn replay_pcap(name: &str, pcap: &[u8]) -> (ReplaySummary, Vec<Value>) {
    let dir = test_dir(name);
    let path = write_file(&dir, "capture.pcap", pcap);
    let r = replay_paths(&[path]);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// The lines with `event_type == t`.
pub fn of_type<'a>(lines: &'a [Value], t: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event_type"] == t).collect()
}

/// The content of an `smtp` line that does not depend on capture timing or
/// addressing: `tx_id`, `smtp`, `email`, `transaction`.
pub fn transaction_view(line: &Value) -> Value {
    serde_json::json!({
        "tx_id": line["tx_id"],
        "smtp": line["smtp"],
        "email": line["email"],
        "transaction": line["transaction"],
    })
}

/// `transaction_view` of every `smtp` line, in output order.
pub fn transactions(lines: &[Value]) -> Vec<Value> {
    of_type(lines, "smtp")
        .into_iter()
        .map(transaction_view)
        .collect()
}

/// `anomaly.event` of every anomaly line, in output order.
pub fn anomaly_events(lines: &[Value]) -> Vec<String> {
    of_type(lines, "anomaly")
        .into_iter()
        .map(|l| l["anomaly"]["event"].as_str().unwrap_or("?").to_string())
        .collect()
}
