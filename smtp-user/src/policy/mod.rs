//! Policy: rules decide on the dissector's events.
//!
//! [`alert`] holds what a match produces. The rule language, its compiler
//! and the per-session evaluator live in the sibling modules.

pub mod alert;

pub use alert::{Action, Alert, AlertContext};
