//! Why a reset did not happen: [`ResetError`].

use std::{io, net::SocketAddr};

/// A failed [`reset_connection`](super::reset_connection). Every variant
/// names the connection (or the kernel call) and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// The two endpoints are not of one address family (IPv4-mapped IPv6
    /// addresses count as IPv4).
    #[error("client {client} and server {server} are not of the same address family")]
    MixedFamilies {
        client: SocketAddr,
        server: SocketAddr,
    },
    /// No socket of this 4-tuple lives in the caller's network namespace,
    /// and forging RSTs needs the next sequence number of both sides.
    #[error(
        "no socket {client} <-> {server} in this network namespace, and RSTs cannot be forged: \
         the {missing} next sequence number is unknown"
    )]
    UnknownSeq {
        client: SocketAddr,
        server: SocketAddr,
        /// `"client"`, `"server"` or `"client and server"`.
        missing: &'static str,
    },
    /// The local socket of this 4-tuple exists but the connection is already
    /// over (TIME_WAIT, CLOSE): there is nothing left to reset.
    #[error("socket {local} <-> {remote} is already closed (state {state})")]
    AlreadyClosed {
        local: SocketAddr,
        remote: SocketAddr,
        state: &'static str,
    },
    /// A sock_diag netlink call failed (socket, send, receive, or an error
    /// code other than "no such socket" in the kernel's answer).
    #[error("sock_diag {op} for {local} <-> {remote}: {source}")]
    Netlink {
        op: &'static str,
        local: SocketAddr,
        remote: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The kernel's sock_diag answer does not have the expected layout.
    #[error("sock_diag {op}: malformed reply: {reason}")]
    BadReply {
        op: &'static str,
        reason: &'static str,
    },
    /// Sending a forged RST through a raw socket failed.
    #[error("sending RST {src} -> {dst}: {op}: {source}")]
    Raw {
        op: &'static str,
        src: SocketAddr,
        dst: SocketAddr,
        #[source]
        source: io::Error,
    },
}
