//! SMTP dissector: grammar, state machine and the events it produces.
//!
//! Entry point: [`Session`] takes the two byte streams of one SMTP session
//! in chunks of any size and emits [`Event`]s to an [`EventSink`].
//!
//! Modules, from bytes to events: [`lines`] (bounded line splitter),
//! [`grammar`] (nom parsers for one line), [`data`] (dot-unstuffing, end of
//! data), [`decode`] and [`mime`] (headers, base64/QP bodies, attachments),
//! [`machine`] (the state table), [`transaction`] and [`session`] (glue).

pub mod data;
pub mod decode;
pub mod events;
pub mod grammar;
pub mod lines;
pub mod machine;
pub mod mime;
pub mod session;
pub mod transaction;

pub use events::*;
pub use machine::State;
pub use session::{Session, SessionConfig};
