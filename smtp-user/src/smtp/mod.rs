//! SMTP dissector: grammar, state machine and the events it produces.
//!
//! Entry point: [`Session`] takes the two byte streams of one SMTP session
//! (`Up` = client → server, `Down` = server → client) in chunks of any size
//! and emits [`Event`]s to an [`EventSink`]:
//!
//! ```
//! use smtp_user::smtp::{OwnedEvent, Session};
//! use smtp_user::Direction::{Down, Up};
//!
//! let mut session = Session::new();
//! let mut events: Vec<OwnedEvent> = Vec::new();
//! session.feed(Down, b"220 mx ESMTP\r\n", &mut events);
//! session.feed(Up, b"EHLO client\r\n", &mut events);
//! session.feed(Down, b"250 mx\r\n", &mut events);
//! session.finish(&mut events);
//! assert_eq!(events.len(), 4); // Response, Command, Response, Envelope (HELO accepted)
//! ```
//!
//! A flow whose start was not seen (no SYN) uses [`Session::midstream`]:
//! no greeting expected, message lines skipped until the session is
//! synchronised (see [`session`]).
//!
//! Event order follows the protocol: a `Command` when its line is complete, a
//! `Response` when its last line is complete (then the `Envelope` change
//! when it accepts a HELO/EHLO, MAIL, RCPT or RSET), `MailContent` (Raw, then the
//! DecodedBody bytes of the same piece) while content streams, an `End`
//! piece at CRLF.CRLF / the last BDAT octet, and a `Transaction` once it is
//! decided (reply to end of data, rejection, RSET/HELO reply, QUIT reply,
//! 421, STARTTLS, [`Session::finish`]) and no pipelined command still refers
//! to it. Events do not depend on how the input was chunked, except for the
//! split of content into `MailContent` pieces.
//!
//! Modules, from bytes to events: [`lines`] (bounded line splitter),
//! [`grammar`] (nom parsers for one line), [`data`] (dot-unstuffing, end of
//! data), [`decode`] and [`mime`] (headers, base64/QP bodies, attachments),
//! [`machine`] (the state table), [`pending`] (commands awaiting replies),
//! [`transaction`], [`smuggling`] (bare-LF end of data followed both ways)
//! and [`session`] (glue).

pub mod data;
pub mod decode;
pub mod events;
pub mod grammar;
pub mod lines;
pub mod machine;
pub mod mime;
pub mod pending;
pub mod session;
pub mod smuggling;
pub mod transaction;

pub use events::*;
pub use machine::State;
pub use mime::ContentOptions;
pub use session::{Session, SessionConfig};
