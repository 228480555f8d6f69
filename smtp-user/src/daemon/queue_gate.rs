//! The netfilter-queue gate of the live daemon: the queue socket, the
//! thread reading it into the pipeline, the netfilter rule, and the verdict
//! callback the pipeline worker calls.
//!
//! Start-up: the socket binds the queue, then the rule is installed, then
//! (by the caller) the kernel starts marking (`Config::gate_mark`). When any
//! step fails the gate falls back to the kernel hold (message ends dropped
//! until TCP retransmits them after release, ~200 ms per message), with a
//! log line saying why.
//!
//! Stopping ([`QueueGate::stop_accepting`], on SIGTERM): from then on every
//! verdict is drop, so nothing held is released by the monitor stopping;
//! the pipeline answers the gated sessions still open `421` and resets
//! their server side; when the socket closes the kernel drops whatever
//! still waits, and marked packets arriving with no reader are dropped too
//! (the rule has no bypass) until the kernel program is detached and the
//! rule removed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::enforce::netfilter::{NetfilterError, QueueRule};
use crate::enforce::nfqueue::NfQueue;
use crate::pipeline::QueueFeed;

/// Packets the kernel keeps waiting in the queue at most (beyond, it drops:
/// TCP resends).
const QUEUE_MAX_LEN: u32 = 8192;
/// How often the reader looks at its stop flag.
const READ_TIMEOUT: Duration = Duration::from_millis(200);

/// Why the queue gate could not start.
#[derive(Debug, thiserror::Error)]
pub enum QueueGateError {
    #[error("cannot bind netfilter queue {queue}: {source}")]
    Bind { queue: u16, source: std::io::Error },
    #[error("cannot install the NFQUEUE rule: {0}")]
    Rule(#[from] NetfilterError),
}

/// A running queue gate.
pub struct QueueGate {
    queue: Arc<NfQueue>,
    rule: QueueRule,
    /// Set: the reader thread ends.
    stop: Arc<AtomicBool>,
    /// Set: verdicts are drop from now on.
    stopping: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl QueueGate {
    /// Binds queue `queue` and installs the rule queueing packets with
    /// mark bits `mark`.
    pub fn open(queue: u16, mark: u32) -> Result<QueueGate, QueueGateError> {
        let q = NfQueue::open(queue, QUEUE_MAX_LEN)
            .map_err(|source| QueueGateError::Bind { queue, source })?;
        q.set_timeout(READ_TIMEOUT)
            .map_err(|source| QueueGateError::Bind { queue, source })?;
        let rule = QueueRule { mark, queue };
        rule.install()?;
        Ok(QueueGate {
            queue: Arc::new(q),
            rule,
            stop: Arc::new(AtomicBool::new(false)),
            stopping: Arc::new(AtomicBool::new(false)),
            reader: None,
        })
    }

    /// The installed rule (removed by [`QueueGate::remove_rule`]).
    pub fn rule(&self) -> QueueRule {
        self.rule
    }

    /// The callback giving queued packets their verdicts (drop once
    /// stopping).
    pub fn verdict_fn(&self) -> Box<dyn FnMut(u32, bool) + Send> {
        let q = self.queue.clone();
        let stopping = self.stopping.clone();
        Box::new(move |id, accept| {
            let accept = accept && !stopping.load(Ordering::Relaxed);
            if let Err(e) = q.verdict(id, accept) {
                tracing::error!(id, accept, error = %e, "cannot send a queue verdict");
            }
        })
    }

    /// Starts the thread reading the queue into the pipeline.
    pub fn start_reader(&mut self, feed: QueueFeed) -> std::io::Result<()> {
        let q = self.queue.clone();
        let stop = self.stop.clone();
        let handle = std::thread::Builder::new()
            .name("smtp-nfqueue".into())
            .spawn(move || {
                let mut buf = Vec::new();
                let mut packets = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = q.recv(&mut buf, &mut packets) {
                        // ENOBUFS: the socket overflowed; those packets are
                        // lost to us and dropped by the kernel (TCP resends).
                        tracing::warn!(error = %e, "netfilter queue read failed");
                    }
                    if !packets.is_empty() && !feed.send(std::mem::take(&mut packets)) {
                        break;
                    }
                }
            })?;
        self.reader = Some(handle);
        Ok(())
    }

    /// From now on every verdict is drop.
    pub fn stop_accepting(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Stops the reader thread (bounded by the read timeout).
    pub fn stop_reader(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }

    /// Removes the netfilter rule; call after the kernel stopped marking.
    pub fn remove_rule(&self) {
        self.rule.remove();
    }
}
