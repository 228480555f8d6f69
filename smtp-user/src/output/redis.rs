//! EVE lines to Redis (`--eve-redis URL`), beside the file output, with the
//! modes and key semantics of Suricata's `eve-log` Redis output so that
//! consumers written for Suricata read ours unchanged:
//!
//! | `mode=` (URL query)        | command                                   |
//! |----------------------------|-------------------------------------------|
//! | `list`, `lpush` (default)  | `LPUSH key line`                          |
//! | `rpush`                    | `RPUSH key line`                          |
//! | `channel`, `publish`       | `PUBLISH key line`                        |
//! | `stream`, `xadd`           | `XADD key MAXLEN ~ N * eve line` (`maxlen=N`, default 100000) |
//!
//! The key is the URL's path (`redis://host:6379/KEY`, default `suricata`,
//! as in Suricata). The pipeline worker never waits on Redis: [`RedisTee`]
//! copies each complete line into an [`EveQueue`] in memory, bounded in
//! events and bytes — on overflow the *oldest* lines are dropped and
//! counted — and one thread ([`RedisOutput`]) sends them in pipelined
//! batches, reconnecting with [`Backoff`]. A batch that fails goes back to
//! the front of the queue: nothing is lost while Redis is away unless the
//! bound is reached, and then it is counted (`dropped`).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use crate::redis_link::{Backoff, RedisUrl, RedisUrlError};

/// Lines sent in one pipelined round trip at most.
pub const BATCH: usize = 512;
/// Default bound of the queue, in events.
pub const DEFAULT_QUEUE_EVENTS: usize = 100_000;
/// Bound of the queue in bytes (whatever the event bound).
pub const QUEUE_BYTES: usize = 128 << 20;
/// Default `MAXLEN ~` of stream mode (Suricata's `stream-maxlen`).
pub const DEFAULT_STREAM_MAXLEN: u64 = 100_000;
/// A partial line longer than this is cut off and counted (EVE lines are
/// far shorter: the writer bounds them).
const MAX_LINE: usize = 16 << 20;
/// At exit, how long the thread may take to send what is queued.
const DRAIN: Duration = Duration::from_secs(3);

/// How lines are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    Lpush,
    Rpush,
    Publish,
    /// `XADD key MAXLEN ~ maxlen * eve line`.
    Xadd {
        maxlen: u64,
    },
}

/// Why `--eve-redis` was refused.
#[derive(Debug, Error)]
pub enum EveRedisError {
    #[error(transparent)]
    Url(#[from] RedisUrlError),
    #[error("unknown mode {0:?} (list, lpush, rpush, channel, publish, stream, xadd)")]
    Mode(String),
    #[error("cannot start the Redis output thread: {0}")]
    Thread(io::Error),
}

/// Where and how EVE lines go.
#[derive(Debug, Clone)]
pub struct EveRedisConfig {
    pub url: RedisUrl,
    pub key: String,
    pub mode: RedisMode,
    /// Bound of the queue in events.
    pub queue_events: usize,
}

impl EveRedisConfig {
    /// Reads key and mode from the URL (`/KEY?mode=..&maxlen=..`).
    pub fn from_url(url: RedisUrl, queue_events: usize) -> Result<Self, EveRedisError> {
        let mode = match url.query.get("mode").map(String::as_str) {
            None | Some("list") | Some("lpush") => RedisMode::Lpush,
            Some("rpush") => RedisMode::Rpush,
            Some("channel") | Some("publish") => RedisMode::Publish,
            Some("stream") | Some("xadd") => RedisMode::Xadd {
                maxlen: url.param("maxlen", DEFAULT_STREAM_MAXLEN)?,
            },
            Some(m) => return Err(EveRedisError::Mode(m.to_string())),
        };
        let key = if url.path.is_empty() {
            "suricata".to_string()
        } else {
            url.path.clone()
        };
        Ok(EveRedisConfig {
            url,
            key,
            mode,
            queue_events: queue_events.max(1),
        })
    }
}

/// The queue's counters (`ctl stats`, metrics), owned by the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EveRedisCounters {
    /// Events waiting now.
    pub queued: u64,
    /// Events accepted into the queue since start.
    pub enqueued: u64,
    /// Events Redis acknowledged.
    pub sent: u64,
    /// Oldest events dropped on overflow, and at exit when Redis was away.
    pub dropped: u64,
    /// Failed connection attempts and failed batches.
    pub errors: u64,
    /// Connected right now.
    pub connected: bool,
}

#[derive(Default)]
struct Lines {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    closed: bool,
}

/// The bounded queue between the pipeline worker and the Redis thread.
pub struct EveQueue {
    lines: Mutex<Lines>,
    ready: Condvar,
    max_events: usize,
    max_bytes: usize,
    enqueued: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    connected: AtomicBool,
}

impl EveQueue {
    pub fn new(max_events: usize, max_bytes: usize) -> EveQueue {
        EveQueue {
            lines: Mutex::new(Lines::default()),
            ready: Condvar::new(),
            max_events: max_events.max(1),
            max_bytes: max_bytes.max(1),
            enqueued: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lines> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one line (never waits on Redis); drops the oldest beyond the bound.
    pub fn push(&self, line: Vec<u8>) {
        let mut q = self.lock();
        q.bytes += line.len();
        q.lines.push_back(line);
        self.enqueued.fetch_add(1, Ordering::Relaxed);
        self.trim(&mut q);
        drop(q);
        self.ready.notify_one();
    }

    fn trim(&self, q: &mut Lines) {
        while q.lines.len() > self.max_events || (q.bytes > self.max_bytes && q.lines.len() > 1) {
            if let Some(old) = q.lines.pop_front() {
                q.bytes -= old.len();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Up to `max` lines, waiting at most `wait` for the first.
    fn take(&self, max: usize, wait: Duration) -> (Vec<Vec<u8>>, bool) {
        let mut q = self.lock();
        if q.lines.is_empty() && !q.closed {
            q = match self.ready.wait_timeout(q, wait) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        let n = q.lines.len().min(max);
        let batch: Vec<Vec<u8>> = q.lines.drain(..n).collect();
        q.bytes -= batch.iter().map(Vec::len).sum::<usize>();
        (batch, q.closed)
    }

    /// Puts a batch Redis did not take back in front (oldest first), within the bound.
    fn requeue(&self, batch: Vec<Vec<u8>>) {
        let mut q = self.lock();
        for line in batch.into_iter().rev() {
            q.bytes += line.len();
            q.lines.push_front(line);
        }
        self.trim(&mut q);
    }

    /// Sleeps `d` unless the queue is closed meanwhile.
    fn pause(&self, d: Duration) {
        let q = self.lock();
        if !q.closed {
            let _ = self.ready.wait_timeout(q, d);
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    pub fn counters(&self) -> EveRedisCounters {
        EveRedisCounters {
            queued: self.lock().lines.len() as u64,
            enqueued: self.enqueued.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

/// A writer that passes everything to `inner` and copies each complete
/// line (without its newline) into the queue. Never fails because of Redis.
pub struct RedisTee<W: Write> {
    inner: W,
    partial: Vec<u8>,
    queue: Arc<EveQueue>,
}

impl<W: Write> RedisTee<W> {
    pub fn new(inner: W, queue: Arc<EveQueue>) -> Self {
        RedisTee {
            inner,
            partial: Vec::new(),
            queue,
        }
    }
}

impl<W: Write> Write for RedisTee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let mut rest = buf.get(..n).unwrap_or_default();
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(i);
            self.partial.extend_from_slice(line);
            self.queue.push(std::mem::take(&mut self.partial));
            rest = after.get(1..).unwrap_or_default();
        }
        if self.partial.len() + rest.len() > MAX_LINE {
            self.partial.clear();
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.partial.extend_from_slice(rest);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The Redis sender thread.
pub struct RedisOutput {
    queue: Arc<EveQueue>,
    thread: Option<JoinHandle<()>>,
}

impl RedisOutput {
    /// Starts the sender; lines reach it through [`RedisOutput::queue`].
    pub fn start(config: EveRedisConfig) -> Result<RedisOutput, EveRedisError> {
        let queue = Arc::new(EveQueue::new(config.queue_events, QUEUE_BYTES));
        let q = queue.clone();
        let thread = std::thread::Builder::new()
            .name("eve-redis".into())
            .spawn(move || send_loop(&config, &q))
            .map_err(EveRedisError::Thread)?;
        Ok(RedisOutput {
            queue,
            thread: Some(thread),
        })
    }

    pub fn queue(&self) -> Arc<EveQueue> {
        self.queue.clone()
    }

    /// Sends what is queued (bounded in time), then stops the thread.
    pub fn finish(mut self) -> EveRedisCounters {
        self.stop();
        self.queue.counters()
    }

    fn stop(&mut self) {
        self.queue.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RedisOutput {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The commands of one batch.
fn pipeline(config: &EveRedisConfig, batch: &[Vec<u8>]) -> redis::Pipeline {
    let mut p = redis::pipe();
    for line in batch {
        let key = config.key.as_str();
        match config.mode {
            RedisMode::Lpush => p.cmd("LPUSH").arg(key).arg(line.as_slice()),
            RedisMode::Rpush => p.cmd("RPUSH").arg(key).arg(line.as_slice()),
            RedisMode::Publish => p.cmd("PUBLISH").arg(key).arg(line.as_slice()),
            RedisMode::Xadd { maxlen } => p
                .cmd("XADD")
                .arg(key)
                .arg("MAXLEN")
                .arg("~")
                .arg(maxlen)
                .arg("*")
                .arg("eve")
                .arg(line.as_slice()),
        }
        .ignore();
    }
    p
}

fn send_loop(config: &EveRedisConfig, q: &EveQueue) {
    let mut con: Option<redis::Connection> = None;
    let mut backoff = Backoff::default();
    let mut drain_until: Option<Instant> = None;
    loop {
        if con.is_none() {
            match config.url.connect() {
                Ok(c) => {
                    tracing::info!(redis = %config.url.endpoint(), key = %config.key, "EVE output to Redis connected");
                    q.connected.store(true, Ordering::Relaxed);
                    backoff.reset();
                    con = Some(c);
                }
                Err(e) => {
                    q.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(redis = %config.url.endpoint(), error = %e, "EVE output: Redis unreachable, events queue in memory");
                    if past(drain_until) {
                        break;
                    }
                    q.pause(backoff.next_delay());
                    if q.lock().closed && drain_until.is_none() {
                        drain_until = Some(Instant::now() + DRAIN);
                    }
                    continue;
                }
            }
        }
        let (batch, closed) = q.take(BATCH, Duration::from_millis(200));
        if closed && drain_until.is_none() {
            drain_until = Some(Instant::now() + DRAIN);
        }
        if batch.is_empty() {
            if closed {
                break;
            }
            continue;
        }
        let n = batch.len() as u64;
        let Some(c) = con.as_mut() else {
            q.requeue(batch);
            continue;
        };
        match pipeline(config, &batch).query::<()>(c) {
            Ok(()) => {
                q.sent.fetch_add(n, Ordering::Relaxed);
            }
            // Redis refused the commands (e.g. the key holds another
            // type): sending them again would fail again. Counted, dropped.
            Err(e) if !e.is_io_error() && !e.is_connection_dropped() && !e.is_timeout() => {
                q.errors.fetch_add(1, Ordering::Relaxed);
                q.dropped.fetch_add(n, Ordering::Relaxed);
                tracing::error!(error = %e, events = n, key = %config.key, "EVE output: Redis refused the batch; dropped");
            }
            Err(e) => {
                q.errors.fetch_add(1, Ordering::Relaxed);
                q.connected.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "EVE output: Redis write failed, reconnecting");
                con = None;
                q.requeue(batch);
                if past(drain_until) {
                    break;
                }
                q.pause(backoff.next_delay());
            }
        }
        if past(drain_until) {
            break;
        }
    }
    q.connected.store(false, Ordering::Relaxed);
    // What could not be sent before the deadline is lost: counted.
    let mut left = q.lock();
    let n = left.lines.len() as u64;
    left.lines.clear();
    left.bytes = 0;
    if n > 0 {
        q.dropped.fetch_add(n, Ordering::Relaxed);
        tracing::warn!(
            events = n,
            "EVE output: events still queued for Redis at exit were dropped"
        );
    }
}

fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> RedisUrl {
        RedisUrl::parse(s).unwrap()
    }

    #[test]
    fn modes_follow_suricata() {
        let m =
            |q: &str| EveRedisConfig::from_url(url(&format!("redis://h/k{q}")), 10).map(|c| c.mode);
        assert_eq!(m("").unwrap(), RedisMode::Lpush);
        assert_eq!(m("?mode=list").unwrap(), RedisMode::Lpush);
        assert_eq!(m("?mode=rpush").unwrap(), RedisMode::Rpush);
        assert_eq!(m("?mode=channel").unwrap(), RedisMode::Publish);
        assert_eq!(
            m("?mode=stream").unwrap(),
            RedisMode::Xadd {
                maxlen: DEFAULT_STREAM_MAXLEN
            }
        );
        assert_eq!(
            m("?mode=xadd&maxlen=7").unwrap(),
            RedisMode::Xadd { maxlen: 7 }
        );
        assert!(m("?mode=bogus").is_err());
        let c = EveRedisConfig::from_url(url("redis://h"), 10).unwrap();
        assert_eq!(c.key, "suricata");
    }

    #[test]
    fn tee_queues_complete_lines_across_writes() {
        let q = Arc::new(EveQueue::new(10, 1 << 20));
        let mut t = RedisTee::new(Vec::new(), q.clone());
        t.write_all(b"{\"a\":1}\n{\"b\"").unwrap();
        t.write_all(b":2}\n").unwrap();
        assert_eq!(t.inner, b"{\"a\":1}\n{\"b\":2}\n");
        let (lines, _) = q.take(10, Duration::ZERO);
        assert_eq!(lines, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
    }

    #[test]
    fn overflow_drops_the_oldest_and_counts() {
        let q = EveQueue::new(3, 1 << 20);
        for i in 0..5u8 {
            q.push(vec![b'0' + i]);
        }
        let c = q.counters();
        assert_eq!((c.queued, c.enqueued, c.dropped), (3, 5, 2));
        let (lines, _) = q.take(2, Duration::ZERO);
        assert_eq!(lines, vec![b"2".to_vec(), b"3".to_vec()]);
        // A failed batch goes back in front, oldest first.
        q.requeue(lines);
        q.push(b"5".to_vec());
        let (lines, _) = q.take(10, Duration::ZERO);
        assert_eq!(lines, vec![b"3".to_vec(), b"4".to_vec(), b"5".to_vec()]);
        assert_eq!(q.counters().dropped, 3);
        // The byte bound too.
        let q = EveQueue::new(100, 10);
        q.push(vec![b'x'; 6]);
        q.push(vec![b'y'; 6]);
        assert_eq!(q.counters().dropped, 1);
    }
}
