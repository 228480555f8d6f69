//! Writes a large capture of realistic SMTP sessions for the replay
//! benchmark (`scripts/bench-replay.sh`).
//!
//! ```text
//! cargo run --release --example gen_capture -- OUT.pcap [SIZE_MIB] [SEED] [MIX]
//! ```
//!
//! Sessions (ports 25 and 587, MSS 1460) are interleaved 16 at a time like
//! concurrent connections. Each session: greeting, EHLO with a multi-line
//! 250 advertising PIPELINING, 1–3 mail transactions, QUIT. A transaction
//! pipelines MAIL FROM (with SIZE/BODY), 1–5 RCPT TO (one in eight
//! rejected with 550) and DATA; the message is MIME with the usual headers.
//! Message sizes are a mix by count: 40 % ~1 KiB plain text, 35 % ~20 KiB,
//! 20 % ~200 KiB and 5 % ~2 MiB with a base64 attachment; MIX `small`
//! makes every message ~1 KiB (a transactions/s workload). The same
//! arguments give the same file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use smtp_user::capture::synth::{render, Conversation, PcapWriter, RenderOptions, TimedFrame};
use smtp_user::capture::wire::linktype;
use smtp_user::Direction::{self, Down, Up};

/// Sessions whose packets are interleaved at a time.
const CONCURRENT: usize = 16;

/// Deterministic xorshift64 generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Base64 with 76-character CRLF lines.
fn base64_lines(data: &[u8]) -> Vec<u8> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + data.len() / 28 + 4);
    for line in data.chunks(57) {
        for c in line.chunks(3) {
            let b = [
                c[0],
                c.get(1).copied().unwrap_or(0),
                c.get(2).copied().unwrap_or(0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
                out.push(if i <= c.len() {
                    A[(n >> shift) as usize & 63]
                } else {
                    b'='
                });
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Pre-encoded bodies shared by all sessions (content does not change
/// the work of the monitor; headers and envelopes vary per session).
struct Bodies {
    text: Vec<u8>,
    /// Base64 attachments of ~20 KiB, ~200 KiB, ~2 MiB (encoded sizes).
    attachments: [Vec<u8>; 3],
}

impl Bodies {
    fn new(rng: &mut Rng) -> Bodies {
        let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\r\n";
        let mut text = Vec::new();
        while text.len() < 900 {
            text.extend_from_slice(line);
        }
        let attachment = |rng: &mut Rng, encoded: usize| {
            let raw: Vec<u8> = (0..encoded * 57 / 78).map(|_| rng.next() as u8).collect();
            base64_lines(&raw)
        };
        Bodies {
            text,
            attachments: [
                attachment(rng, 20 << 10),
                attachment(rng, 200 << 10),
                attachment(rng, 2 << 20),
            ],
        }
    }
}

/// One message as sent after the 354 (dot-terminated).
fn message(
    rng: &mut Rng,
    bodies: &Bodies,
    small: bool,
    session: usize,
    tx: usize,
    rcpts: &[String],
) -> Vec<u8> {
    let class = if small { 0 } else { rng.below(100) };
    let mut m = Vec::with_capacity(4096);
    let to = rcpts.join(", ");
    let _ = write!(
        m,
        "From: Sender {session} <user{session}@client.example.org>\r\n\
To: {to}\r\n\
Subject: Benchmark message {session}.{tx}\r\n\
Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <{session}.{tx}@client.example.org>\r\n\
X-Mailer: gen_capture 1.0\r\n\
MIME-Version: 1.0\r\n"
    );
    if class < 40 {
        m.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n\r\n");
        m.extend_from_slice(&bodies.text);
    } else {
        let att = match class {
            40..=74 => &bodies.attachments[0],
            75..=94 => &bodies.attachments[1],
            _ => &bodies.attachments[2],
        };
        let _ = write!(
            m,
            "Content-Type: multipart/mixed; boundary=\"=_b{session}\"\r\n\r\n\
--=_b{session}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        m.extend_from_slice(&bodies.text);
        let _ = write!(
            m,
            "--=_b{session}\r\n\
Content-Type: application/octet-stream; name=\"file{session}.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"file{session}.bin\"\r\n\r\n"
        );
        m.extend_from_slice(att);
        let _ = write!(m, "--=_b{session}--\r\n");
    }
    m.extend_from_slice(b".\r\n");
    m
}

/// The scripted steps of session `i`.
fn script(rng: &mut Rng, bodies: &Bodies, small: bool, i: usize) -> Vec<(Direction, Vec<u8>)> {
    let s = |d, t: String| (d, t.into_bytes());
    let mut steps = vec![
        s(Down, "220 mx.example.net ESMTP\r\n".into()),
        s(Up, format!("EHLO client{i}.example.org\r\n")),
        s(
            Down,
            "250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
                .into(),
        ),
    ];
    for tx in 0..1 + rng.below(3) as usize {
        let n = 1 + rng.below(5) as usize;
        let rcpts: Vec<String> = (0..n)
            .map(|r| format!("<rcpt{}@example.net>", (i * 7 + r) % 10_000))
            .collect();
        let rejected: Vec<bool> = (0..n).map(|_| rng.below(8) == 0).collect();
        let msg = message(rng, bodies, small, i, tx, &rcpts);
        let mut cmds = format!(
            "MAIL FROM:<user{i}@client.example.org> SIZE={} BODY=8BITMIME\r\n",
            msg.len()
        );
        let mut replies = String::from("250 2.1.0 Ok\r\n");
        for (r, rej) in rcpts.iter().zip(&rejected) {
            cmds.push_str(&format!("RCPT TO:{r}\r\n"));
            replies.push_str(if *rej {
                "550 5.1.1 Recipient address rejected\r\n"
            } else {
                "250 2.1.5 Ok\r\n"
            });
        }
        cmds.push_str("DATA\r\n");
        if rejected.iter().all(|r| *r) {
            replies.push_str("554 5.5.1 Error: no valid recipients\r\n");
            steps.push(s(Up, cmds));
            steps.push(s(Down, replies));
            steps.push(s(Up, "RSET\r\n".into()));
            steps.push(s(Down, "250 2.0.0 Ok\r\n".into()));
            continue;
        }
        replies.push_str("354 End data with <CR><LF>.<CR><LF>\r\n");
        steps.push(s(Up, cmds));
        steps.push(s(Down, replies));
        steps.push((Up, msg));
        steps.push(s(Down, format!("250 2.0.0 Ok: queued as {i:X}T{tx}\r\n")));
    }
    steps.push(s(Up, "QUIT\r\n".into()));
    steps.push(s(Down, "221 2.0.0 Bye\r\n".into()));
    steps
}

fn run(path: &str, size_mib: u64, seed: u64, small: bool) -> std::io::Result<(u64, usize, u64)> {
    let target = size_mib << 20;
    let mut rng = Rng(seed | 1);
    let bodies = Bodies::new(&mut rng);
    let mut w = PcapWriter::new(
        BufWriter::with_capacity(1 << 20, File::create(path)?),
        linktype::ETHERNET,
    )?;
    let (mut written, mut sessions, mut frames) = (24u64, 0usize, 0u64);
    let mut ts = 1_700_000_000_000_000u64;
    while written < target {
        let batch: Vec<Vec<TimedFrame>> = (sessions..sessions + CONCURRENT)
            .map(|i| {
                let mut c = Conversation::new(script(&mut rng, &bodies, small, i));
                c.client = SocketAddr::from((
                    [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                    1024 + (i % 60_000) as u16,
                ));
                c.server = SocketAddr::from(([192, 0, 2, 25], if i % 4 == 0 { 587 } else { 25 }));
                c.client_isn = rng.next() as u32;
                c.server_isn = rng.next() as u32;
                c.mss = 1460;
                render(&c, &c.packets(), RenderOptions::default())
            })
            .collect();
        sessions += batch.len();
        let longest = batch.iter().map(Vec::len).max().unwrap_or(0);
        for k in 0..longest {
            for s in &batch {
                if let Some((_, f)) = s.get(k) {
                    w.write_frame(ts, f, f.len() as u32)?;
                    ts += 10;
                    frames += 1;
                    written += 16 + f.len() as u64;
                }
            }
        }
    }
    w.into_inner().flush()?;
    Ok((written, sessions, frames))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: gen_capture OUT.pcap [SIZE_MIB=1024] [SEED=1] [MIX=mixed|small]");
        return ExitCode::from(2);
    };
    let size = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let seed = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1);
    let small = match args.get(4).map(String::as_str) {
        None | Some("mixed") => false,
        Some("small") => true,
        Some(other) => {
            eprintln!("gen_capture: unknown MIX {other:?} (mixed or small)");
            return ExitCode::from(2);
        }
    };
    match run(path, size, seed, small) {
        Ok((bytes, sessions, frames)) => {
            eprintln!("gen_capture: {path}: {bytes} bytes, {sessions} sessions, {frames} frames");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_capture: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
