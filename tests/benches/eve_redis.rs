//! EVE output to Redis: events per second one core sends (`--eve-redis`),
//! against a real redis-server on loopback pinned to another core.
//!
//! Method: the benchmark process is pinned to CPU 0 (the pipeline worker
//! and the Redis sender thread share it); redis-server runs on CPU 1. Per
//! run, `--events` EVE lines (a real 700-byte `smtp` line) go through the
//! writers the daemon uses (`BufWriter` → [`RedisTee`] → the `--output`
//! file); the time runs until Redis acknowledged the last one. The
//! worker's cost per event is measured too, against the baseline of the
//! same lines written to the file alone in the same command: the tee only
//! adds a queue push (Redis never blocks the worker). 150,000 events fit
//! the queue's 128 MiB bound, so none is dropped. Medians of
//! `--reps` runs per mode (`list` = LPUSH, `stream` = XADD MAXLEN ~,
//! `channel` = PUBLISH).
//!
//! Run: `cargo bench -p smtp-e2e --bench eve_redis` (needs redis-server,
//! installed by `cargo xtask prereqs`). Options: `--events N`, `--reps N`.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use smtp_e2e::{live::TempDir, redis::RedisServer};
use smtp_user::output::redis::{EveRedisConfig, RedisOutput, RedisTee};
use smtp_user::redis_link::RedisUrl;

const LINE: &str = r#"{"timestamp":"2026-12-01T18:00:00.123456+0000","flow_id":1234567890123,"event_type":"smtp","src_ip":"198.18.0.1","src_port":40000,"dest_ip":"198.18.0.2","dest_port":25,"proto":"TCP","pkt_src":"wire/pcap","community_id":"1:LQU9qZlK+B5F3KDmev6m5PMibrg=","smtp":{"helo":"client.example.org","mail_from":"<alice@example.org>","rcpt_to":["<bob@example.net>","<carol@example.net>"],"state":"delivered"},"email":{"status":"PARSE_DONE","from":"Alice <alice@example.org>","to":["Bob <bob@example.net>"],"subject":"Quarterly report","message_id":"<20261201180000.1234@example.org>","date":"Tue, 01 Dec 2026 18:00:00 +0000","attachment":["report.pdf"],"url":[],"body_md5":"9e107d9d372bb6826bd81d3542a419d6"}}"#;

fn opt(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// (events/s acknowledged by Redis, worker ns/event, dropped).
fn run(redis: &RedisServer, mode: &str, events: usize, file: &Path) -> (f64, f64, u64) {
    redis.cli(&["FLUSHALL"]);
    let url = RedisUrl::parse(&format!(
        "redis://127.0.0.1:{}/bench?mode={mode}&maxlen=1000000",
        redis.port
    ))
    .expect("url");
    let out =
        RedisOutput::start(EveRedisConfig::from_url(url, events).expect("config")).expect("start");
    // Wait for the connection, so the time is sending, not connecting.
    let end = Instant::now() + Duration::from_secs(10);
    while !out.queue().counters().connected && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    let queue = out.queue();
    let f = File::create(file).expect("file");
    let mut tee = BufWriter::new(RedisTee::new(f, Arc::clone(&queue)));
    let mut line = LINE.as_bytes().to_vec();
    line.push(b'\n');
    let start = Instant::now();
    for _ in 0..events {
        tee.write_all(&line).expect("write");
    }
    tee.flush().expect("flush");
    let worker = start.elapsed();
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let c = queue.counters();
        if c.sent + c.dropped >= events as u64 || Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let total = start.elapsed();
    let c = out.finish();
    (
        c.sent as f64 / total.as_secs_f64(),
        worker.as_nanos() as f64 / events as f64,
        c.dropped,
    )
}

fn main() {
    let events = opt("--events", 150_000).max(1000);
    let reps = opt("--reps", 5).max(1);
    pin_to_cpu0();
    let dir = TempDir::new("bench-redis");
    // redis-server on CPU 1 (taskset), in this (host) namespace on loopback.
    let redis = RedisServer::start_with_prefix(
        &["taskset", "-c", "1"],
        &["127.0.0.1"],
        6399,
        dir.0.join("redis"),
    );

    // Baseline: the file output alone (the worker's cost without Redis).
    let mut line = LINE.as_bytes().to_vec();
    line.push(b'\n');
    let mut base = Vec::new();
    let file = dir.0.join("eve.json");
    for _ in 0..reps {
        let mut w = BufWriter::new(File::create(&file).expect("file"));
        let t = Instant::now();
        for _ in 0..events {
            w.write_all(&line).expect("write");
        }
        w.flush().expect("flush");
        base.push(t.elapsed().as_nanos() as f64 / events as f64);
    }
    println!("eve_redis: {events} events of {} bytes, {reps} runs per mode, medians; sender on CPU 0, redis-server on CPU 1", line.len());
    println!("| mode | events/s to Redis | worker ns/event, file + Redis | file only | dropped |");
    println!("|---|---|---|---|---|");
    let base = median(base);
    for mode in ["list", "stream", "channel"] {
        let mut rates = Vec::new();
        let mut worker = Vec::new();
        let mut dropped = 0;
        for _ in 0..reps {
            let (r, w, d) = run(&redis, mode, events, &file);
            rates.push(r);
            worker.push(w);
            dropped += d;
        }
        println!(
            "| {mode} | {:.0} | {:.0} | {:.0} | {dropped} |",
            median(rates),
            median(worker),
            base
        );
    }
}
