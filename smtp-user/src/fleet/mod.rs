//! One blocklist for the fleet (`--fleet redis://HOST:6379[/PREFIX]`):
//! every monitor publishes the IP blocks it makes (a rule's
//! `block_ip_for`, `ctl block IP [--for D]`) and their removal, and applies
//! the others' to its kernel blocklist with the same expiry (the wire form
//! is in [`change`]).
//!
//! One thread ([`FleetLink`]) owns the link:
//!
//! 1. connect (with [`Backoff`]); subscribe to `PREFIX:changes` first, so
//!    nothing published meanwhile is missed;
//! 2. send the local changes queued while Redis was away (`HSET`/`HDEL`
//!    plus `PUBLISH`, pipelined: ours win over older state);
//! 3. load the current set (`HGETALL PREFIX:blocklist`): block what is in
//!    it, unblock what the fleet had blocked here but is gone from it;
//! 4. then apply each message within milliseconds, and send local changes
//!    as they come (polled every [`POLL`]).
//!
//! With Redis down, local enforcement goes on untouched; local changes
//! wait in a queue bounded at [`MAX_QUEUED`] (oldest dropped, counted).
//! Malformed entries are rejected and counted, never applied.

pub mod change;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::datapath::{Control, DatapathError};
use crate::redis_link::{Backoff, RedisUrl};

pub use change::Change;

/// Local changes kept while Redis is away.
pub const MAX_QUEUED: usize = 10_000;
/// Most entries applied from the fleet's set (the kernel map's capacity).
pub const MAX_ENTRIES: usize = smtp_common::BLOCKLIST_CAPACITY as usize;
/// How often the link looks for local changes while waiting for messages.
pub const POLL: Duration = Duration::from_millis(50);

/// The link's counters (`ctl stats`, `ctl status`, metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetCounters {
    pub connected: bool,
    /// Local changes waiting for Redis.
    pub queued: u64,
    /// Local changes sent.
    pub published: u64,
    /// Changes of other hosts applied to the kernel.
    pub applied: u64,
    /// Malformed entries and messages rejected.
    pub rejected: u64,
    /// Local changes dropped on queue overflow.
    pub dropped: u64,
    /// Full loads of the set (each connection starts with one).
    pub resyncs: u64,
    /// Failed connections and commands.
    pub errors: u64,
}

/// Where fleet changes land locally: the kernel blocklist.
pub trait Blocklist: Send {
    fn block(&mut self, ip: IpAddr, for_: Option<Duration>) -> Result<(), DatapathError>;
    fn unblock(&mut self, ip: IpAddr) -> Result<bool, DatapathError>;
}

impl Blocklist for Control {
    fn block(&mut self, ip: IpAddr, for_: Option<Duration>) -> Result<(), DatapathError> {
        self.block_ip(ip, for_)
    }

    fn unblock(&mut self, ip: IpAddr) -> Result<bool, DatapathError> {
        self.unblock_ip(ip)
    }
}

#[derive(Default)]
struct Shared {
    outbox: Mutex<VecDeque<Change>>,
    stop: AtomicBool,
    connected: AtomicBool,
    published: AtomicU64,
    applied: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    resyncs: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn outbox(&self) -> MutexGuard<'_, VecDeque<Change>> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Wall clock in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The expiry of a block lasting `for_` from now (0: none).
pub fn expiry_ms(for_: Option<Duration>) -> u64 {
    match for_ {
        None => 0,
        Some(d) => now_ms()
            .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .max(1),
    }
}

/// The link to the fleet's Redis.
pub struct FleetLink {
    shared: Arc<Shared>,
    endpoint: String,
    thread: Option<JoinHandle<()>>,
}

/// Where the fleet's keys are.
#[derive(Debug, Clone)]
struct Keys {
    set: String,
    channel: String,
}

impl FleetLink {
    /// Starts the link; `origin` names this host in messages.
    pub fn start(
        url: RedisUrl,
        blocklist: Box<dyn Blocklist>,
        origin: String,
    ) -> std::io::Result<FleetLink> {
        let prefix = if url.path.is_empty() {
            "smtp-monitor:fleet".to_string()
        } else {
            url.path.clone()
        };
        let keys = Keys {
            set: format!("{prefix}:blocklist"),
            channel: format!("{prefix}:changes"),
        };
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let endpoint = url.endpoint();
        let thread = std::thread::Builder::new()
            .name("fleet".into())
            .spawn(move || {
                let mut link = Link {
                    url,
                    keys,
                    origin,
                    blocklist,
                    known: HashMap::new(),
                    shared: s,
                };
                link.run();
            })?;
        Ok(FleetLink {
            shared,
            endpoint,
            thread: Some(thread),
        })
    }

    /// Queues a local change for the fleet (never waits).
    pub fn publish(&self, change: Change) {
        self.publisher().publish(change);
    }

    /// A handle for other threads (the pipeline worker) to publish with.
    pub fn publisher(&self) -> FleetPublisher {
        FleetPublisher(self.shared.clone())
    }

    pub fn counters(&self) -> FleetCounters {
        let s = &self.shared;
        FleetCounters {
            connected: s.connected.load(Ordering::Relaxed),
            queued: s.outbox().len() as u64,
            published: s.published.load(Ordering::Relaxed),
            applied: s.applied.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            resyncs: s.resyncs.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
        }
    }

    /// `connected to HOST:PORT` or `disconnected from HOST:PORT, N changes queued`.
    pub fn state(&self) -> String {
        let c = self.counters();
        if c.connected {
            format!("connected to {}", self.endpoint)
        } else {
            format!(
                "disconnected from {}, {} changes queued",
                self.endpoint, c.queued
            )
        }
    }
}

impl Drop for FleetLink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Publishes local changes from another thread.
#[derive(Clone)]
pub struct FleetPublisher(Arc<Shared>);

impl FleetPublisher {
    /// Queues a local change for the fleet (never waits); beyond
    /// [`MAX_QUEUED`] the oldest is dropped and counted.
    pub fn publish(&self, change: Change) {
        let mut q = self.0.outbox();
        if q.len() >= MAX_QUEUED {
            q.pop_front();
            Shared::count(&self.0.dropped);
        }
        q.push_back(change);
    }
}

struct Link {
    url: RedisUrl,
    keys: Keys,
    origin: String,
    blocklist: Box<dyn Blocklist>,
    /// What the fleet's set held at the last load or change (ip → expiry):
    /// entries gone from it at the next load are unblocked here.
    known: HashMap<IpAddr, u64>,
    shared: Arc<Shared>,
}

/// Why a session with Redis ended.
enum End {
    Stop,
    Lost(redis::RedisError),
}

impl Link {
    fn run(&mut self) {
        let mut backoff = Backoff::default();
        // One line per outage, not one per attempt.
        let mut logged = false;
        while !self.shared.stop.load(Ordering::Relaxed) {
            match self.session(&mut backoff) {
                End::Stop => break,
                End::Lost(e) => {
                    if self.shared.connected.swap(false, Ordering::Relaxed) {
                        logged = false;
                    }
                    Shared::count(&self.shared.errors);
                    if !logged {
                        tracing::warn!(redis = %self.url.endpoint(), error = %e,
                            "fleet: Redis unreachable; local blocks go on, changes are queued");
                        logged = true;
                    }
                }
            }
            let end = std::time::Instant::now() + backoff.next_delay();
            while std::time::Instant::now() < end && !self.shared.stop.load(Ordering::Relaxed) {
                std::thread::sleep(POLL);
            }
        }
        self.shared.connected.store(false, Ordering::Relaxed);
    }

    /// One connection's life: subscribe, flush, load, follow.
    fn session(&mut self, backoff: &mut Backoff) -> End {
        let mut sub = match self.url.connect() {
            Ok(c) => c,
            Err(e) => return End::Lost(e),
        };
        let mut cmd = match self.url.connect() {
            Ok(c) => c,
            Err(e) => return End::Lost(e),
        };
        let mut ps = sub.as_pubsub();
        if let Err(e) = ps.subscribe(&self.keys.channel) {
            return End::Lost(e);
        }
        if let Err(e) = ps.set_read_timeout(Some(POLL)) {
            return End::Lost(e);
        }
        if let Err(e) = self.flush(&mut cmd) {
            return End::Lost(e);
        }
        if let Err(e) = self.load(&mut cmd) {
            return End::Lost(e);
        }
        self.shared.connected.store(true, Ordering::Relaxed);
        backoff.reset();
        tracing::info!(redis = %self.url.endpoint(), entries = self.known.len(), "fleet: connected, blocklist loaded");
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                return End::Stop;
            }
            if let Err(e) = self.flush(&mut cmd) {
                return End::Lost(e);
            }
            match ps.get_message() {
                Ok(msg) => self.on_message(msg.get_payload_bytes()),
                Err(e) if e.is_timeout() => {}
                Err(e) => return End::Lost(e),
            }
        }
    }

    /// Sends the queued local changes; on failure they stay queued.
    fn flush(&mut self, con: &mut redis::Connection) -> redis::RedisResult<()> {
        let batch: Vec<Change> = self.shared.outbox().drain(..).collect();
        if batch.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        for c in &batch {
            match c {
                Change::Block { ip, expiry_ms } => {
                    p.cmd("HSET")
                        .arg(&self.keys.set)
                        .arg(ip.to_string())
                        .arg(*expiry_ms)
                        .ignore();
                }
                Change::Unblock { ip } => {
                    p.cmd("HDEL")
                        .arg(&self.keys.set)
                        .arg(ip.to_string())
                        .ignore();
                }
            }
            p.cmd("PUBLISH")
                .arg(&self.keys.channel)
                .arg(c.message(&self.origin))
                .ignore();
        }
        match p.query::<()>(con) {
            Ok(()) => {
                for c in &batch {
                    self.remember(c);
                }
                self.shared
                    .published
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let mut q = self.shared.outbox();
                for c in batch.into_iter().rev() {
                    q.push_front(c);
                }
                while q.len() > MAX_QUEUED {
                    q.pop_front();
                    Shared::count(&self.shared.dropped);
                }
                Err(e)
            }
        }
    }

    fn remember(&mut self, c: &Change) {
        match c {
            Change::Block { ip, expiry_ms } => {
                if self.known.len() < MAX_ENTRIES || self.known.contains_key(ip) {
                    self.known.insert(*ip, *expiry_ms);
                }
            }
            Change::Unblock { ip } => {
                self.known.remove(ip);
            }
        }
    }

    /// Loads the whole set and makes the kernel match it.
    fn load(&mut self, con: &mut redis::Connection) -> redis::RedisResult<()> {
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            redis::cmd("HGETALL").arg(&self.keys.set).query(con)?;
        Shared::count(&self.shared.resyncs);
        let now = now_ms();
        let mut current = HashMap::new();
        for (field, value) in entries {
            match change::parse_entry(&field, &value) {
                Some(Change::Block { ip, expiry_ms }) if current.len() < MAX_ENTRIES => {
                    if expiry_ms == 0 || expiry_ms > now {
                        current.insert(ip, expiry_ms);
                    }
                }
                Some(_) => Shared::count(&self.shared.rejected),
                None => {
                    Shared::count(&self.shared.rejected);
                    tracing::warn!(field = %String::from_utf8_lossy(&field).chars().take(64).collect::<String>(),
                        "fleet: malformed blocklist entry rejected");
                }
            }
        }
        let gone: Vec<IpAddr> = self
            .known
            .keys()
            .filter(|ip| !current.contains_key(ip))
            .copied()
            .collect();
        for ip in gone {
            self.apply(Change::Unblock { ip });
        }
        for (ip, expiry_ms) in current {
            if self.known.get(&ip) != Some(&expiry_ms) {
                self.apply(Change::Block { ip, expiry_ms });
            }
        }
        Ok(())
    }

    fn on_message(&mut self, payload: &[u8]) {
        match change::parse_message(payload) {
            Some((_, origin)) if origin == self.origin => {}
            Some((c, origin)) => {
                tracing::info!(ip = %c.ip(), origin, block = matches!(c, Change::Block { .. }), "fleet: change applied");
                self.apply(c);
            }
            None => {
                Shared::count(&self.shared.rejected);
                tracing::warn!(message = %String::from_utf8_lossy(payload).chars().take(64).collect::<String>(),
                    "fleet: malformed change rejected");
            }
        }
    }

    /// Applies a change of the fleet to the kernel.
    fn apply(&mut self, c: Change) {
        let r = match c {
            Change::Block { ip, expiry_ms } => {
                let for_ = match expiry_ms {
                    0 => None,
                    e => match e.checked_sub(now_ms()) {
                        Some(left) if left > 0 => Some(Duration::from_millis(left)),
                        // Expired already: nothing to block.
                        _ => {
                            self.known.remove(&ip);
                            return;
                        }
                    },
                };
                self.blocklist.block(ip, for_).map(|_| ())
            }
            Change::Unblock { ip } => self.blocklist.unblock(ip).map(|_| ()),
        };
        match r {
            Ok(()) => {
                self.remember(&c);
                Shared::count(&self.shared.applied);
            }
            Err(e) => {
                Shared::count(&self.shared.errors);
                tracing::error!(ip = %c.ip(), error = %e, "fleet: cannot update the kernel blocklist");
            }
        }
    }
}
