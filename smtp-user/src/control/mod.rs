//! Runtime control of a running daemon over a Unix stream socket readable
//! only by root: `status`, `stats`, `flows`, `reload` and flow lookups for
//! `smtp-user ctl`. (Map changes — verdicts, enforce, IP blocklist — do not
//! go through here: `ctl` writes the pinned maps itself, so they work even
//! when the daemon is stuck.)
//!
//! * [`protocol`]: the messages and their JSON-lines wire form (examples
//!   there).
//! * [`server`]: [`ControlServer`], the daemon's end, driven from its
//!   event loop:
//!
//! ```no_run
//! # async fn f(status: smtp_user::control::Status) -> std::io::Result<()> {
//! use smtp_user::control::{default_socket_path, ControlServer, Request, Response};
//! let mut server = ControlServer::bind(&default_socket_path("eth0"))?;
//! while let Some((req, responder)) = server.next().await {
//!     match req {
//!         Request::Status => responder.reply(Response::Status(status.clone())),
//!         _ => responder.reply(Response::Error("not supported".into())),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! * [`client`]: [`request`], one blocking exchange with a deadline.

pub mod client;
pub mod protocol;
pub mod server;

use std::path::PathBuf;

pub use client::{request, ControlError};
pub use protocol::{FlowRow, IpBlockReply, ReloadReply, Request, Response, Status};
pub use server::{ControlCounters, ControlServer, Responder};

/// Directory of the control sockets.
pub const SOCKET_DIR: &str = "/run/smtp-monitor";

/// Control socket of the daemon monitoring `iface`:
/// `/run/smtp-monitor/<iface>.sock`.
pub fn default_socket_path(iface: &str) -> PathBuf {
    PathBuf::from(SOCKET_DIR).join(format!("{iface}.sock"))
}
