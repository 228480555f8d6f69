//! SMTP dissector: grammar, state machine and the events it produces.
//!
//! Entry point: [`Session`] (in `session.rs`, to be written) takes the two byte
//! streams of one SMTP session in chunks of any size and emits [`Event`]s to an
//! [`EventSink`].

pub mod events;

pub use events::*;
