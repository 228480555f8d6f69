//! Several workers: the reader's segments, copied into per-worker
//! [`Batch`]es, cross to worker threads over bounded channels; each worker
//! writes its EVE lines into its own buffer and hands the buffer, whole
//! lines only, to the output (the calling thread), which appends it.
//!
//! Order: a worker receives its batches in the order the reader filled
//! them, so a flow's segments and the expiry ticks between them keep the
//! capture's order, and a worker's lines reach the output in the order it
//! wrote them: the events of one flow stay in order; lines of flows on
//! different workers interleave only at line boundaries.
//!
//! Memory: at most [`QUEUED_BATCHES`] batches wait per worker (the reader
//! blocks beyond), each about [`BATCH_BYTES`]; at most
//! [`QUEUED_OUTPUTS`] line buffers per worker wait for the output.

use std::io::Write;
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::{Duration, Instant};

use crate::capture::decoder::TcpBytes;
use crate::capture::ipfrag::FragOverlap;
use crate::capture::Segment;

use super::super::shard::Sharder;
use super::worker::{Dispatch, ReplayWorker, WorkerStats};
use super::ReplayOptions;

/// A batch is sent once its bytes reach this size…
pub const BATCH_BYTES: usize = 256 << 10;
/// …or it holds this many items.
const BATCH_ITEMS: usize = 4096;
/// Batches waiting per worker before the reader waits.
pub const QUEUED_BATCHES: usize = 4;
/// Line buffers waiting per worker before the worker waits.
pub const QUEUED_OUTPUTS: usize = 4;

/// What the reader sends a worker, in capture order.
#[derive(Debug, Clone)]
enum Item {
    /// A segment whose TCP bytes are `tcp` and payload `payload` in
    /// [`Batch::bytes`] (`seg.payload` is empty).
    Segment {
        seg: Segment<'static>,
        tcp: Range<usize>,
        payload: Range<usize>,
        wire_len: usize,
        verify: bool,
    },
    Expire(u64),
    Overlap(FragOverlap),
}

/// Items for one worker and the bytes they refer to.
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    items: Vec<Item>,
}

impl Batch {
    fn full(&self) -> bool {
        self.bytes.len() >= BATCH_BYTES || self.items.len() >= BATCH_ITEMS
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }

    fn push_segment(&mut self, t: &TcpBytes<'_>, seg: &Segment<'_>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(t.tcp);
        let tcp = start..self.bytes.len();
        // The payload is a part of the TCP bytes: point into the copy.
        let off = (seg.payload.as_ptr() as usize).wrapping_sub(t.tcp.as_ptr() as usize);
        let payload = match off.checked_add(seg.payload.len()) {
            Some(end) if end <= t.tcp.len() => start + off..start + end,
            _ => {
                let p = self.bytes.len();
                self.bytes.extend_from_slice(seg.payload);
                p..self.bytes.len()
            }
        };
        self.items.push(Item::Segment {
            seg: Segment {
                payload: &[],
                ..*seg
            },
            tcp,
            payload,
            wire_len: t.wire_len,
            verify: t.verify,
        });
    }

    /// Gives every item to `w`, in order.
    fn feed<D: Dispatch>(&self, w: &mut D) {
        for item in &self.items {
            match item {
                Item::Segment {
                    seg,
                    tcp,
                    payload,
                    wire_len,
                    verify,
                } => {
                    let t = TcpBytes {
                        ts_micros: seg.ts_micros,
                        src: seg.src.ip(),
                        dst: seg.dst.ip(),
                        tcp: self.bytes.get(tcp.clone()).unwrap_or_default(),
                        wire_len: *wire_len,
                        verify: *verify,
                    };
                    let payload = self.bytes.get(payload.clone()).unwrap_or_default();
                    w.segment(&t, Segment { payload, ..*seg });
                }
                Item::Expire(now) => w.expire(*now),
                Item::Overlap(o) => w.overlap(o),
            }
        }
    }
}

/// The reader's side: one batch in filling per worker, sent when full.
pub struct Dispatcher {
    sharder: Sharder,
    filling: Vec<Batch>,
    /// Per worker; `None`: reader-only measurement, batches are dropped.
    to_workers: Option<Vec<SyncSender<Batch>>>,
    /// Emptied batches coming back from the workers.
    recycled: Receiver<Batch>,
    recycle: Sender<Batch>,
    /// Batches handed on (or dropped, reader only).
    pub batches: u64,
}

impl Dispatcher {
    fn new(sharder: Sharder, to_workers: Option<Vec<SyncSender<Batch>>>) -> Dispatcher {
        let (recycle, recycled) = mpsc::channel();
        Dispatcher {
            filling: (0..sharder.workers()).map(|_| Batch::default()).collect(),
            sharder,
            to_workers,
            recycled,
            recycle,
            batches: 0,
        }
    }

    /// A dispatcher that only fills batches and drops them: measures the
    /// reader alone (`replay --bench-reader`).
    pub fn reader_only(workers: usize) -> Dispatcher {
        Dispatcher::new(Sharder::new(workers), None)
    }

    fn send(&mut self, w: usize) {
        let fresh = self.recycled.try_recv().unwrap_or_default();
        let Some(slot) = self.filling.get_mut(w) else {
            return;
        };
        let mut batch = std::mem::replace(slot, fresh);
        self.batches += 1;
        match self.to_workers.as_ref().and_then(|t| t.get(w)) {
            // A worker gone (it panicked; the scope reports it) takes nothing.
            Some(tx) => {
                let _ = tx.send(batch);
            }
            None => {
                batch.clear();
                let _ = self.recycle.send(batch);
            }
        }
    }

    fn after_push(&mut self, w: usize) {
        if self.filling.get(w).is_some_and(Batch::full) {
            self.send(w);
        }
    }

    /// Sends every batch not yet sent (the end of the input).
    pub fn flush(&mut self) {
        for w in 0..self.filling.len() {
            if self.filling.get(w).is_some_and(|b| !b.items.is_empty()) {
                self.send(w);
            }
        }
    }
}

impl Dispatch for Dispatcher {
    fn segment(&mut self, t: &TcpBytes<'_>, seg: Segment<'_>) {
        let w = self.sharder.shard(seg.src, seg.dst);
        if let Some(b) = self.filling.get_mut(w) {
            b.push_segment(t, &seg);
        }
        self.after_push(w);
    }

    fn expire(&mut self, now: u64) {
        for w in 0..self.filling.len() {
            if let Some(b) = self.filling.get_mut(w) {
                b.items.push(Item::Expire(now));
            }
            self.after_push(w);
        }
    }

    fn overlap(&mut self, o: &FragOverlap) {
        let (sport, dport) = o.ports.unwrap_or((0, 0));
        let w = self
            .sharder
            .shard((o.src, sport).into(), (o.dst, dport).into());
        if let Some(b) = self.filling.get_mut(w) {
            b.items.push(Item::Overlap(*o));
        }
        self.after_push(w);
    }
}

/// Lines a worker wrote, for the output.
pub struct Lines {
    pub worker: usize,
    pub bytes: Vec<u8>,
}

/// Runs the reader's `read` on a thread of `scope` feeding `n` worker
/// threads, and appends the workers' lines to `out` on the calling thread.
/// Returns what `read` returned, the workers' stats in worker order, and
/// the first output error.
pub fn run<'scope, 'env, R: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    opts: &'env ReplayOptions,
    n: usize,
    out: &mut impl Write,
    read: impl FnOnce(&mut Dispatcher) -> R + Send + 'scope,
) -> (R, Vec<WorkerStats>, std::io::Result<()>) {
    let (lines_tx, lines_rx) = mpsc::sync_channel::<Lines>(QUEUED_OUTPUTS * n);
    let mut to_workers = Vec::with_capacity(n);
    let mut returns = Vec::with_capacity(n);
    let mut workers = Vec::with_capacity(n);
    let sharder = Sharder::new(n);
    for id in 0..n {
        let (tx, rx) = mpsc::sync_channel::<Batch>(QUEUED_BATCHES);
        let (ret_tx, ret_rx) = mpsc::channel::<Vec<u8>>();
        to_workers.push(tx);
        returns.push(ret_tx);
        let lines = lines_tx.clone();
        workers.push((id, rx, ret_rx, lines));
    }
    drop(lines_tx);
    let mut dispatcher = Dispatcher::new(sharder, Some(to_workers));
    let recycle = dispatcher.recycle.clone();
    let handles: Vec<_> = workers
        .into_iter()
        .map(|(id, rx, ret_rx, lines)| {
            let recycle = recycle.clone();
            scope.spawn(move || worker_loop(opts, n, id, rx, ret_rx, lines, recycle))
        })
        .collect();
    drop(recycle);
    let reader = scope.spawn(move || {
        let r = read(&mut dispatcher);
        dispatcher.flush();
        r
    });
    // The output: whole line buffers, appended as they come.
    let mut result = Ok(());
    for l in lines_rx {
        if result.is_ok() {
            result = out.write_all(&l.bytes);
        }
        let mut bytes = l.bytes;
        bytes.clear();
        if let Some(r) = returns.get(l.worker) {
            let _ = r.send(bytes);
        }
    }
    let read_result = match reader.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    };
    let mut stats = Vec::with_capacity(n);
    for h in handles {
        match h.join() {
            Ok((s, r)) => {
                stats.push(s);
                if result.is_ok() {
                    result = r;
                }
            }
            Err(p) => std::panic::resume_unwind(p),
        }
    }
    if result.is_ok() {
        result = out.flush();
    }
    (read_result, stats, result)
}

/// One worker thread: batches in, line buffers out, stats at the end.
fn worker_loop(
    opts: &ReplayOptions,
    n: usize,
    id: usize,
    batches: Receiver<Batch>,
    buffers: Receiver<Vec<u8>>,
    lines: SyncSender<Lines>,
    recycle: Sender<Batch>,
) -> (WorkerStats, std::io::Result<()>) {
    let mut worker = ReplayWorker::new(opts, n, Vec::with_capacity(BATCH_BYTES));
    let mut busy = Duration::ZERO;
    let ship = |worker: &mut ReplayWorker<Vec<u8>>| {
        let out = worker.writer_mut();
        if out.is_empty() {
            return;
        }
        let fresh = buffers
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_BYTES));
        let bytes = std::mem::replace(out, fresh);
        let _ = lines.send(Lines { worker: id, bytes });
    };
    for mut batch in batches {
        let start = Instant::now();
        batch.feed(&mut worker);
        busy += start.elapsed();
        batch.clear();
        let _ = recycle.send(batch);
        ship(&mut worker);
    }
    // Flows still open close now; their last lines follow the others.
    let start = Instant::now();
    let (mut stats, result, rest) = worker.finish();
    stats.busy = busy + start.elapsed();
    if !rest.is_empty() {
        let _ = lines.send(Lines {
            worker: id,
            bytes: rest,
        });
    }
    (stats, result)
}
