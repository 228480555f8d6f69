//! Sharding: which worker owns a flow.
//!
//! With `--workers N`, every flow belongs to one worker for its whole
//! life, chosen by a hash of its normalised 5-tuple ([`FlowKey`]): both
//! directions land on the same worker, and a flow's packets reach it in
//! the order the dispatcher saw them, so per-flow behaviour is the same as
//! with one worker. The hash is keyed per process ([`RandomState`]): an
//! attacker cannot choose addresses that all land on one worker.
//!
//! IP fragments after the first carry no ports: `replay` reassembles them
//! in its reader, before dispatch, so every dispatched segment has its
//! 5-tuple; the kernel copies no fragment to the ring live.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;

use crate::flow::{FlowConfig, FlowKey};

/// Maps flows to one of `n` workers.
#[derive(Debug, Clone)]
pub struct Sharder {
    hasher: RandomState,
    /// Number of workers, at least 1.
    n: usize,
}

impl Sharder {
    pub fn new(n: usize) -> Sharder {
        Sharder {
            hasher: RandomState::new(),
            n: n.max(1),
        }
    }

    pub fn workers(&self) -> usize {
        self.n
    }

    /// The worker of the flow between `a` and `b` (either order).
    pub fn shard(&self, a: SocketAddr, b: SocketAddr) -> usize {
        if self.n == 1 {
            return 0;
        }
        let h = self.hasher.hash_one(FlowKey::new(a, b));
        // Multiply-shift: the high bits of a 64×64 product, uniform in 0..n.
        ((u128::from(h) * self.n as u128) >> 64) as usize
    }
}

/// The worker count `--workers` defaults to: one per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The flow limits of one of `n` workers: each gets an equal share of the
/// configured totals, so that the replay as a whole stays within them.
pub fn flow_share(config: &FlowConfig, n: usize) -> FlowConfig {
    let n = n.max(1);
    let part = |v: usize| if v == 0 { 0 } else { (v / n).max(1) };
    FlowConfig {
        max_flows: part(config.max_flows),
        max_buffer_total: part(config.max_buffer_total),
        memcap: part(config.memcap),
        ..config.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_same_worker_and_all_workers_used() {
        let s = Sharder::new(4);
        let server: SocketAddr = "198.18.0.1:25".parse().unwrap();
        let mut seen = [0u32; 4];
        for port in 1024..2048u16 {
            let client = SocketAddr::from(([198, 18, 1, 2], port));
            let w = s.shard(client, server);
            assert_eq!(w, s.shard(server, client));
            seen[w] += 1;
        }
        // 1024 flows over 4 workers: each gets a fair share.
        assert!(seen.iter().all(|n| (150..=362).contains(n)), "{seen:?}");
        assert_eq!(Sharder::new(1).shard(server, server), 0);
    }
}
