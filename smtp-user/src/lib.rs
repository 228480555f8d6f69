//! smtp-monitor userspace library.
//!
//! Data flows one way through the modules, as in the datapath:
//! `capture` (kernel ring buffer records, pcap/pcapng files) → `flow`
//! (flow table, TCP reassembly) → `smtp` (grammar, state machine, events)
//! → `output` (EVE-style JSON lines). No module reaches back upstream.

pub mod capture;
pub mod flow;
pub mod output;
pub mod smtp;
