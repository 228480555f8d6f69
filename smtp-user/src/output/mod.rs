//! Output: events written as EVE JSON lines (Suricata's format), so that
//! existing SIEM pipelines and EVE browsers read smtp-monitor's logs unchanged.
//!
//! `eve` turns dissector events and flow summaries into one JSON object per
//! line; `budget` bounds how many anomalies a flow writes; `timestamp`
//! formats capture times. `reopen` is the `--output` file, reopened for
//! logrotate (SIGHUP, `ctl reopen`); `redis` copies the lines to Redis
//! (`--eve-redis`). The schema of the lines is `smtp-user/schema/eve.json`.

pub mod budget;
pub mod eve;
pub mod redis;
pub mod reopen;
pub mod timestamp;

pub use budget::{AnomalyBudget, AnomalyTally, DEFAULT_ANOMALIES_PER_KIND};
pub use eve::{EveWriter, FlowContext, FlowSummary, OutputCounters, ALERT_GID};
