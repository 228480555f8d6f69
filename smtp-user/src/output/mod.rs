//! Output: events written as EVE-style JSON lines (Suricata's format), so that
//! existing SIEM pipelines read smtp-monitor's logs unchanged.
//!
//! `eve` turns dissector events and flow summaries into one JSON object per
//! line; `timestamp` formats capture times as RFC 3339 with microseconds.

pub mod eve;
pub mod timestamp;

pub use eve::{EveWriter, FlowContext, FlowSummary, OutputCounters};
