//! Dissector throughput on one core (criterion) and allocations per
//! transaction (counting global allocator).
//!
//! Sessions: DATA-heavy (10 MiB plain-text body, 1000-byte lines),
//! command-heavy (1000 small pipelined transactions), BDAT (10 MiB in 1 MiB
//! chunks), MIME (10 MiB base64 attachment in a multipart), MIME headers
//! (1000 small multipart messages: header block, parameters, encoded words). Streams are fed
//! in 64 KiB segments, as reassembly would.
//!
//! The sink reads every `MailContent` byte (Raw and DecodedBody) into a
//! checksum, as a content-inspecting consumer would: the figures are
//! dissector + one pass of the consumer over the content, not the dissector
//! handing out slices nobody reads. `consumer_only_10MiB_x2` is that
//! consumer pass alone over a 10 MiB body read twice (Raw + DecodedBody, as
//! in data_heavy and bdat), to tell the two costs apart: the dissector's own
//! cost is the difference of the times. For BDAT the SMTP
//! layer does no per-byte work (chunks are framed by their length, content is
//! passed as slices); what is measured there is the MIME header parse, the
//! plain-text body pass-through and the consumer reading Raw and DecodedBody.
//! Throughput is wire bytes (both directions) per second.
//! Run: `cargo bench -p smtp-user --bench dissector -- --warm-up-time 1 --measurement-time 3`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput};
use smtp_user::smtp::{Event, EventSink, Session};
use smtp_user::Direction::{self, Down, Up};

/// Counts allocations (not frees) made through the global allocator.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts events and reads every content byte into a checksum.
#[derive(Default)]
struct CountSink {
    events: u64,
    content: u64,
    transactions: u64,
    /// Folds every `MailContent` byte (see [`checksum`]).
    sum: u64,
}

/// One pass over `data`, 8 bytes at a time: what a consumer reading the
/// content at least costs. `black_box` keeps the compiler from skipping it.
fn checksum(mut h: u64, data: &[u8]) -> u64 {
    let words = data.chunks_exact(8);
    let tail = words.remainder();
    for w in words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = h.rotate_left(5) ^ u64::from_le_bytes(b);
    }
    for &b in tail {
        h = h.rotate_left(5) ^ u64::from(b);
    }
    black_box(h)
}

impl EventSink for CountSink {
    fn event(&mut self, event: Event<'_>) {
        self.events += 1;
        match event {
            Event::MailContent(m) => {
                self.content += m.data.len() as u64;
                self.sum = checksum(self.sum, black_box(m.data));
            }
            Event::Transaction(_) => self.transactions += 1,
            _ => {}
        }
    }
}

type Script = Vec<(Direction, Vec<u8>)>;

fn opening() -> Script {
    vec![
        (Down, b"220 mx.example.org ESMTP Postfix\r\n".to_vec()),
        (Up, b"EHLO client.example.com\r\n".to_vec()),
        (Down, b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-CHUNKING\r\n250 8BITMIME\r\n".to_vec()),
    ]
}

fn body(size: usize) -> Vec<u8> {
    let mut line = b"Subject: bench\r\nFrom: a@example.com\r\nTo: b@example.org\r\n\r\n".to_vec();
    let text: Vec<u8> = (0..998).map(|i| b'a' + (i % 26) as u8).collect();
    while line.len() < size {
        line.extend_from_slice(&text);
        line.extend_from_slice(b"\r\n");
    }
    line
}

fn data_heavy() -> Script {
    let mut s = opening();
    s.push((
        Up,
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n".to_vec(),
    ));
    s.push((Down, b"250 ok\r\n250 ok\r\n354 go\r\n".to_vec()));
    let mut content = body(10 << 20);
    content.extend_from_slice(b".\r\n");
    s.push((Up, content));
    s.push((Down, b"250 2.0.0 Ok: queued\r\n".to_vec()));
    s.push((Up, b"QUIT\r\n".to_vec()));
    s.push((Down, b"221 bye\r\n".to_vec()));
    s
}

/// DATA with a multipart message carrying a ~10 MiB base64 attachment
/// (76-character lines): measures boundary scanning and base64 decoding.
fn mime_base64() -> Script {
    let mut s = opening();
    s.push((
        Up,
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n".to_vec(),
    ));
    s.push((Down, b"250 ok\r\n250 ok\r\n354 go\r\n".to_vec()));
    let mut msg = b"Subject: attachment\r\nContent-Type: multipart/mixed; boundary=\"XyZ\"\r\n\r\n--XyZ\r\n\
Content-Type: text/plain\r\n\r\nsee attached\r\n--XyZ\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let line: Vec<u8> = (0..76).map(|i| alphabet[(i * 7) % 64]).collect();
    while msg.len() < 10 << 20 {
        msg.extend_from_slice(&line);
        msg.extend_from_slice(b"\r\n");
    }
    msg.extend_from_slice(b"--XyZ--\r\n.\r\n");
    s.push((Up, msg));
    s.push((Down, b"250 2.0.0 Ok: queued\r\n".to_vec()));
    s
}

const SMALL_TXS: usize = 1000;

/// 1000 pipelined transactions, each a small multipart message with a
/// realistic header block (Received chain, encoded Subject, address lists)
/// and two named attachments (one RFC 2231 encoded): measures the header
/// path (unfolding, parameters, encoded words) rather than body streaming.
fn mime_headers() -> Script {
    let mut s = opening();
    for i in 0..SMALL_TXS {
        s.push((
            Up,
            format!("MAIL FROM:<s{i}@example.com>\r\nRCPT TO:<a{i}@example.org>\r\nDATA\r\n")
                .into_bytes(),
        ));
        s.push((Down, b"250 ok\r\n250 ok\r\n354 go\r\n".to_vec()));
        let mut msg = String::new();
        for hop in 0..6 {
            msg.push_str(&format!(
                "Received: from relay{hop}.example.net (relay{hop}.example.net [198.18.0.{hop}])\r\n\tby mx.example.org (Postfix) with ESMTPS id 4Q{i}X{hop}\r\n\tfor <a{i}@example.org>; Mon, 1 Jan 2024 00:00:0{hop} +0000\r\n"
            ));
        }
        msg.push_str(&format!(
            "From: \"Sender {i}\" <s{i}@example.com>\r\nTo: a{i}@example.org, \"Last, First\" <b@example.org>\r\n\
Cc: c@example.org\r\nSubject: =?UTF-8?B?UmU6IHLDqXN1bcOp?= =?ISO-8859-1?Q?_n=B0{i}?=\r\n\
Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{i}@example.com>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed;\r\n boundary=\"=_b{i}\"\r\n\r\n\
--=_b{i}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Hello =C3=A9, see attached.\r\n\
--=_b{i}\r\nContent-Type: application/pdf; name=\"report {i}.pdf\"\r\n\
Content-Disposition: attachment;\r\n filename*0*=utf-8''r%C3%A9sum%C3%A9;\r\n filename*1=\" {i}.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K\r\n\
--=_b{i}--\r\n.\r\n"
        ));
        s.push((Up, msg.into_bytes()));
        s.push((Down, b"250 2.0.0 Ok: queued as ABC\r\n".to_vec()));
    }
    s.push((Up, b"QUIT\r\n".to_vec()));
    s.push((Down, b"221 bye\r\n".to_vec()));
    s
}

fn command_heavy() -> Script {
    let mut s = opening();
    for i in 0..SMALL_TXS {
        let up = format!(
            "MAIL FROM:<sender{i}@example.com> SIZE=200\r\nRCPT TO:<a{i}@example.org>\r\nRCPT TO:<b{i}@example.org>\r\nDATA\r\n"
        );
        s.push((Up, up.into_bytes()));
        s.push((
            Down,
            b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 unknown\r\n354 go\r\n".to_vec(),
        ));
        let msg = format!("From: s{i}@example.com\r\nTo: a{i}@example.org\r\nSubject: n{i}\r\nMessage-ID: <{i}@x>\r\n\r\nshort body\r\n.\r\n");
        s.push((Up, msg.into_bytes()));
        s.push((Down, b"250 2.0.0 Ok: queued as ABC\r\n".to_vec()));
    }
    s.push((Up, b"QUIT\r\n".to_vec()));
    s.push((Down, b"221 bye\r\n".to_vec()));
    s
}

fn bdat() -> Script {
    let mut s = opening();
    s.push((
        Up,
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n".to_vec(),
    ));
    s.push((Down, b"250 ok\r\n250 ok\r\n".to_vec()));
    let content = body(10 << 20);
    let chunks: Vec<&[u8]> = content.chunks(1 << 20).collect();
    let mut up = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let last = if i + 1 == chunks.len() { " LAST" } else { "" };
        up.extend_from_slice(format!("BDAT {}{last}\r\n", c.len()).as_bytes());
        up.extend_from_slice(c);
    }
    s.push((Up, up));
    s.push((Down, b"250 ok\r\n".repeat(chunks.len())));
    s.push((Up, b"QUIT\r\n".to_vec()));
    s.push((Down, b"221 bye\r\n".to_vec()));
    s
}

fn run(script: &Script) -> CountSink {
    let mut session = Session::new();
    let mut sink = CountSink::default();
    for (dir, bytes) in script {
        for seg in bytes.chunks(64 * 1024) {
            session.feed(*dir, seg, &mut sink);
        }
    }
    session.finish(&mut sink);
    sink
}

fn total(script: &Script) -> u64 {
    script.iter().map(|(_, b)| b.len() as u64).sum()
}

fn report_allocations() {
    for (name, script) in [
        ("data_heavy", data_heavy()),
        ("command_heavy", command_heavy()),
        ("bdat", bdat()),
        ("mime_base64", mime_base64()),
        ("mime_headers", mime_headers()),
    ] {
        let before = ALLOCS.load(Ordering::Relaxed);
        let sink = run(&script);
        let allocs = ALLOCS.load(Ordering::Relaxed) - before;
        println!(
            "allocations {name}: {allocs} for {} transactions = {:.1} per transaction ({} events, {} content bytes read, checksum {:016x})",
            sink.transactions,
            allocs as f64 / sink.transactions.max(1) as f64,
            sink.events,
            sink.content,
            sink.sum
        );
    }
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("dissector");
    g.sample_size(20);
    for (name, script) in [
        ("data_heavy_10MiB", data_heavy()),
        ("command_heavy_1000tx", command_heavy()),
        ("bdat_10MiB", bdat()),
        ("mime_base64_10MiB", mime_base64()),
        ("mime_headers_1000tx", mime_headers()),
    ] {
        g.throughput(Throughput::Bytes(total(&script)));
        g.bench_function(name, |b| b.iter(|| black_box(run(black_box(&script)))));
    }
    // The consumer's pass alone: the same body read as Raw and as DecodedBody.
    let content = body(10 << 20);
    g.throughput(Throughput::Bytes(content.len() as u64));
    g.bench_function("consumer_only_10MiB_x2", |b| {
        b.iter(|| {
            let h = content
                .chunks(64 * 1024)
                .fold(0, |h, seg| checksum(h, black_box(seg)));
            content
                .chunks(64 * 1024)
                .fold(h, |h, seg| checksum(h, black_box(seg)))
        })
    });
    g.finish();
}

fn main() {
    report_allocations();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
