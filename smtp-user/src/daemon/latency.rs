//! Verdict latency: from the capture of the segment that decided a verdict
//! to the moment the verdict is in the kernel map (after which the kernel
//! drops the flow's next packet). Kept as the most recent samples so the
//! median and 99th percentile describe current behaviour.

use std::collections::VecDeque;

/// Samples kept (the oldest are forgotten beyond).
const KEEP: usize = 4096;

/// Upper bounds (µs, inclusive) of the cumulative histogram's buckets
/// (the metrics' `smtp_monitor_verdict_latency_seconds`); `+Inf` is `count`.
pub const BUCKETS_MICROS: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 250_000, 1_000_000,
];

/// Recent latency samples in microseconds, and a histogram of all of them.
#[derive(Debug, Clone, Default)]
pub struct LatencySamples {
    recent: VecDeque<u64>,
    /// Samples recorded since start (including forgotten ones).
    pub count: u64,
    /// Sum of every sample since start, µs.
    pub sum_micros: u64,
    /// Samples since start at or below each bound of [`BUCKETS_MICROS`]
    /// (cumulative, as Prometheus wants them).
    pub buckets: [u64; BUCKETS_MICROS.len()],
}

impl LatencySamples {
    pub fn record(&mut self, micros: u64) {
        if self.recent.len() == KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(micros);
        self.count += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
        for (b, bound) in self.buckets.iter_mut().zip(BUCKETS_MICROS) {
            if micros <= bound {
                *b += 1;
            }
        }
    }

    /// The `q` quantile (0.0–1.0) of the recent samples, nearest rank.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.recent.is_empty() {
            return None;
        }
        let mut v: Vec<u64> = self.recent.iter().copied().collect();
        v.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).max(1);
        v.get(rank - 1).copied()
    }

    pub fn median(&self) -> Option<u64> {
        self.quantile(0.5)
    }

    pub fn p99(&self) -> Option<u64> {
        self.quantile(0.99)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut s = LatencySamples::default();
        assert_eq!(s.median(), None);
        for v in (1..=100).rev() {
            s.record(v);
        }
        assert_eq!(s.median(), Some(50));
        assert_eq!(s.p99(), Some(99));
        assert_eq!(s.quantile(1.0), Some(100));
        assert_eq!(s.count, 100);
        assert_eq!(s.sum_micros, 5050);
        // 1..=100 µs: 50 at or below 50, all 100 at or below 100 and beyond.
        assert_eq!(&s.buckets[..3], &[50, 100, 100]);
        assert_eq!(s.buckets[BUCKETS_MICROS.len() - 1], 100);
    }

    #[test]
    fn keeps_the_most_recent() {
        let mut s = LatencySamples::default();
        for _ in 0..KEEP {
            s.record(1_000);
        }
        for _ in 0..KEEP {
            s.record(5);
        }
        assert_eq!(s.p99(), Some(5));
        assert_eq!(s.count, 2 * KEEP as u64);
    }
}
