//! smtp-monitor userspace library.
//!
//! Data flows one way through the modules, as in the datapath:
//! `capture` (kernel ring buffer records, pcap/pcapng files) → `flow`
//! (flow table, TCP reassembly) → `smtp` (grammar, state machine, events)
//! → `policy` (rules → alerts) → `output` (EVE-style JSON lines).
//! `pipeline` wires these stages and says what the datapath should do
//! (`pipeline::Enforcement`); `daemon` carries that out on the kernel maps
//! of `datapath`, with `enforce` for connection resets; `control` is the
//! running daemon's socket for `ctl`; `metrics` serves the daemon's
//! counters to Prometheus; `redis_link` is how `output::redis` (EVE to
//! Redis) and `fleet` (one blocklist for many hosts) reach Redis; `config`
//! reads `run`'s options from a configuration file. No module reaches back
//! upstream.

pub mod capture;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod enforce;
pub mod fleet;
pub mod flow;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod policy;
pub mod redis_link;
pub mod smtp;
pub mod text;

/// Which way bytes travel in a TCP session, in the tutorial's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Client → server (commands, mail data).
    Up,
    /// Server → client (greeting, replies).
    Down,
}

impl Direction {
    /// The other direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::Up => Direction::Down,
            Direction::Down => Direction::Up,
        }
    }
}
