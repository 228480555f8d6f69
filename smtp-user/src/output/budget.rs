//! Bounded output: how many anomalies of each kind a flow may write.
//!
//! An attacker controls how often a flow misbehaves; without a bound every
//! occurrence is a line, and a few megabytes of capture become gigabytes of
//! EVE that bury the alerts. Per flow, each anomaly kind is written at most
//! [`AnomalyBudget::limit`] times; later occurrences are counted in an
//! [`AnomalyTally`] by kind, reported on the flow's `flow` event
//! (`anomalies_suppressed`) and in the totals (`ctl stats`, replay summary).
//! Only the lines are bounded: the policy still sees every anomaly, so an
//! alert on a suppressed anomaly is never lost.

use serde::ser::{Serialize, SerializeMap, Serializer};
use strum::{EnumCount, VariantArray};

use crate::smtp::AnomalyKind;

/// Anomalies of one kind written per flow by default.
pub const DEFAULT_ANOMALIES_PER_KIND: u32 = 10;

/// A count per anomaly kind (indexed by the kind's declaration order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnomalyTally([u64; AnomalyKind::COUNT]);

impl Default for AnomalyTally {
    fn default() -> Self {
        AnomalyTally([0; AnomalyKind::COUNT])
    }
}

impl AnomalyTally {
    pub fn get(&self, kind: AnomalyKind) -> u64 {
        self.0.get(kind as usize).copied().unwrap_or(0)
    }

    pub fn add(&mut self, kind: AnomalyKind, n: u64) {
        if let Some(c) = self.0.get_mut(kind as usize) {
            *c = c.saturating_add(n);
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &AnomalyTally) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |t, c| t.saturating_add(*c))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|c| *c == 0)
    }

    /// The non-zero counts, by kind, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (AnomalyKind, u64)> + '_ {
        AnomalyKind::VARIANTS
            .iter()
            .map(|k| (*k, self.get(*k)))
            .filter(|(_, n)| *n > 0)
    }
}

/// Serialised as `{"stream_gap": 4480000, …}` with the non-zero counts only.
impl Serialize for AnomalyTally {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (kind, n) in self.iter() {
            map.serialize_entry(kind.as_str(), &n)?;
        }
        map.end()
    }
}

/// One flow's anomaly budget.
#[derive(Debug, Clone)]
pub struct AnomalyBudget {
    /// Lines allowed per kind; 0 writes none (all are counted).
    limit: u32,
    /// Lines written so far, per kind; never above `limit`.
    written: [u32; AnomalyKind::COUNT],
    /// Occurrences not written, per kind.
    suppressed: AnomalyTally,
}

impl AnomalyBudget {
    pub fn new(limit: u32) -> AnomalyBudget {
        AnomalyBudget {
            limit,
            written: [0; AnomalyKind::COUNT],
            suppressed: AnomalyTally::default(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// True if an anomaly of `kind` may be written now (and counts it as
    /// written); false if it is to be suppressed (and counts it so).
    pub fn admit(&mut self, kind: AnomalyKind) -> bool {
        match self.written.get_mut(kind as usize) {
            Some(w) if *w < self.limit => {
                *w += 1;
                true
            }
            _ => {
                self.suppressed.add(kind, 1);
                false
            }
        }
    }

    pub fn suppressed(&self) -> &AnomalyTally {
        &self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_budget() {
        let mut b = AnomalyBudget::new(2);
        assert!(b.admit(AnomalyKind::StreamGap));
        assert!(b.admit(AnomalyKind::StreamGap));
        assert!(!b.admit(AnomalyKind::StreamGap));
        assert!(!b.admit(AnomalyKind::StreamGap));
        assert!(b.admit(AnomalyKind::InvalidCommand));
        assert_eq!(b.suppressed().get(AnomalyKind::StreamGap), 2);
        assert_eq!(b.suppressed().get(AnomalyKind::InvalidCommand), 0);
        assert_eq!(b.suppressed().total(), 2);
        assert_eq!(
            serde_json::to_string(b.suppressed()).unwrap(),
            r#"{"stream_gap":2}"#
        );
    }

    #[test]
    fn zero_limit_writes_nothing() {
        let mut b = AnomalyBudget::new(0);
        assert!(!b.admit(AnomalyKind::GateMissed));
        assert_eq!(b.suppressed().get(AnomalyKind::GateMissed), 1);
    }

    #[test]
    fn every_kind_has_a_slot() {
        let mut t = AnomalyTally::default();
        for k in AnomalyKind::VARIANTS {
            t.add(*k, 1);
        }
        assert_eq!(t.total(), AnomalyKind::COUNT as u64);
        let mut u = AnomalyTally::default();
        u.merge(&t);
        u.merge(&t);
        assert_eq!(u.get(AnomalyKind::LimitExceeded), 2);
    }
}
