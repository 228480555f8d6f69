//! What the pipeline asks of the datapath: enforcement requests produced by
//! policy decisions and by the end-of-data gate, in the order they were
//! decided.
//!
//! The flow handler only describes what should happen; the live monitor
//! turns each request into a map write (verdict, IP blocklist, gate) or a
//! connection reset, and replay just counts them. Keeping the handler free
//! of kernel handles is what lets replay and live share it.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::policy::Action;

/// One request to the datapath, about the flow between `client` and `server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    /// A rule (or the protocol-error default) asked to end the session.
    Block {
        flow_id: u64,
        client: SocketAddr,
        server: SocketAddr,
        /// `Drop` or `Reset`.
        action: Action,
        /// Next sequence number of each direction (`[client, server]`), to
        /// aim resets.
        next_seq: [Option<u32>; 2],
        /// Capture time (µs since the epoch) of the segment that decided it,
        /// to measure the verdict latency.
        decided_at_micros: u64,
    },
    /// Answer the client with `reply` on the server's behalf and reset the
    /// server side (the `reject` action at a held message end, and every
    /// gated session when the monitor stops).
    Reject {
        flow_id: u64,
        client: SocketAddr,
        server: SocketAddr,
        /// The reply line, CRLF-terminated (`550 5.7.1 …`).
        reply: String,
        /// The server's next sequence number (where the reply starts).
        server_next_seq: u32,
        /// End of the client bytes the reply acknowledges.
        client_ack: u32,
        /// The first client byte the server did not get (start of the held
        /// segment).
        server_rcv_next: u32,
        /// Capture time (µs since the epoch) of the segment that decided it.
        decided_at_micros: u64,
    },
    /// Put the client address on the kernel blocklist for `duration`.
    BlockIp { ip: IpAddr, duration: Duration },
    /// Hold the client segment that ends a message on this flow until released.
    ArmGate {
        client: SocketAddr,
        server: SocketAddr,
    },
    /// Everything the client sent up to `end_seq` was inspected and passes.
    ReleaseGate {
        client: SocketAddr,
        server: SocketAddr,
        end_seq: u32,
    },
    /// A `BDAT … LAST` chunk ends at `end_seq`: hold the segment reaching it.
    GateBdat {
        client: SocketAddr,
        server: SocketAddr,
        end_seq: u32,
    },
    /// The flow ended: forget its gate.
    DisarmGate {
        client: SocketAddr,
        server: SocketAddr,
    },
}

/// Global enforcement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Alerts only; actions are recorded as `"allowed"`.
    Monitor,
    /// Drop/reset actions are carried out; alerts say `"blocked"`.
    #[default]
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Monitor => "monitor",
            Mode::Enforce => "enforce",
        }
    }
}

/// The mode as the pipeline sees it right now, shared with whoever can
/// switch it (the live monitor mirrors the kernel's `enforce` switch, which
/// `ctl enforce` flips at run time).
#[derive(Debug, Clone, Default)]
pub struct ModeSwitch(Arc<AtomicBool>);

impl ModeSwitch {
    pub fn new(mode: Mode) -> ModeSwitch {
        ModeSwitch(Arc::new(AtomicBool::new(mode == Mode::Enforce)))
    }

    pub fn enforcing(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn mode(&self) -> Mode {
        if self.enforcing() {
            Mode::Enforce
        } else {
            Mode::Monitor
        }
    }

    pub fn set(&self, mode: Mode) {
        self.0.store(mode == Mode::Enforce, Ordering::Relaxed);
    }
}
