//! The library [`Monitor`] run on a thread inside the server namespace,
//! collecting every record it reads.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use smtp_common::RecordHeader;
use smtp_user::datapath::{Control, IngressMode, KernelStats, Monitor, MonitorOptions, UserStats};
use tokio::sync::oneshot;

/// A record copied out of the ring buffer.
#[derive(Debug, Clone)]
pub struct OwnedRecord {
    pub header: RecordHeader,
    pub payload: Vec<u8>,
    pub src: std::net::SocketAddr,
    pub dst: std::net::SocketAddr,
}

pub struct MonitorThread {
    records: Arc<Mutex<Vec<OwnedRecord>>>,
    /// Records and payload bytes read (counted in both modes).
    counts: Arc<(AtomicU64, AtomicU64)>,
    /// While set, the thread does not read the ring buffer (benchmarks).
    paused: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<UserStats>>,
    pub iface: String,
    pub pin_root: PathBuf,
}

impl MonitorThread {
    /// Starts a monitor on `iface` in namespace `ns`, monitoring `ports`.
    pub fn start(ns: &str, iface: &str, ports: &[u16], ingress: IngressMode) -> MonitorThread {
        Self::start_with(ns, iface, ports, ingress, true)
    }

    /// Like [`MonitorThread::start`]; with `keep == false` records are only
    /// counted (benchmarks), not stored.
    pub fn start_with(
        ns: &str,
        iface: &str,
        ports: &[u16],
        ingress: IngressMode,
        keep: bool,
    ) -> MonitorThread {
        let opts = MonitorOptions {
            iface: Some(iface.to_string()),
            ports: ports.to_vec(),
            ingress,
            ..MonitorOptions::default()
        };
        Self::start_opts(ns, opts, keep)
    }

    /// Starts a monitor with full options (`opts.iface` must be set).
    pub fn start_opts(ns: &str, opts: MonitorOptions, keep: bool) -> MonitorThread {
        let iface = opts.iface.clone().expect("iface");
        let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let cnt = counts.clone();
        let paused = Arc::new(AtomicBool::new(false));
        let pause = paused.clone();
        let records = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let pin_root = opts.pin_root.clone();
        let recs = records.clone();
        let path = format!("/run/netns/{ns}");
        let thread = std::thread::spawn(move || {
            crate::netns::enter_netns(&path);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut mon = match Monitor::start(opts) {
                    Ok(m) => {
                        let _ = ready_tx.send(Ok(()));
                        m
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return UserStats::default();
                    }
                };
                loop {
                    if pause.load(Ordering::Relaxed) {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(1)) => continue,
                            _ = &mut stop_rx => break,
                        }
                    }
                    tokio::select! {
                        r = mon.next_batch(|rec| {
                            cnt.0.fetch_add(1, Ordering::Relaxed);
                            cnt.1.fetch_add(rec.payload.len() as u64, Ordering::Relaxed);
                            if !keep {
                                return;
                            }
                            let (src, dst) = rec.endpoints();
                            recs.lock().expect("lock").push(OwnedRecord {
                                header: rec.header,
                                payload: rec.payload.to_vec(),
                                src,
                                dst,
                            });
                        }) => { r.expect("ring buffer read"); }
                        _ = &mut stop_rx => break,
                    }
                }
                let s = mon.user_stats();
                mon.shutdown();
                s
            })
        });
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("monitor start failed: {e}"),
            Err(e) => panic!("monitor did not start: {e}"),
        }
        MonitorThread {
            records,
            counts,
            paused,
            stop: Some(stop_tx),
            thread: Some(thread),
            iface,
            pin_root,
        }
    }

    /// Stops (true) or resumes (false) reading the ring buffer.
    pub fn pause(&self, on: bool) {
        self.paused.store(on, Ordering::Relaxed);
    }

    /// (records, payload bytes) read so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.0.load(Ordering::Relaxed),
            self.counts.1.load(Ordering::Relaxed),
        )
    }

    /// Snapshot of the records read so far.
    pub fn records(&self) -> Vec<OwnedRecord> {
        self.records.lock().expect("lock").clone()
    }

    /// Waits (at most `timeout`) until `cond` holds on the records.
    pub fn wait_for(&self, timeout: Duration, cond: impl Fn(&[OwnedRecord]) -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if cond(&self.records.lock().expect("lock")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        cond(&self.records.lock().expect("lock"))
    }

    /// The monitor's maps, through their pins (as another process would).
    pub fn control(&self) -> Control {
        Control::open_pinned(&self.pin_root, &self.iface).expect("open pinned maps")
    }

    pub fn kernel_stats(&self) -> KernelStats {
        self.control().stats().expect("stats")
    }

    /// Stops the monitor; returns its userspace counters.
    pub fn stop(mut self) -> UserStats {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> UserStats {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for MonitorThread {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
