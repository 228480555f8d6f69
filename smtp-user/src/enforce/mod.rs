//! Resetting a TCP connection so that both ends learn at once that it is
//! gone: the `reset` action.
//!
//! [`reset_connection`] picks the method from where the monitor runs:
//!
//! * **On an end host** (the mail server itself, or a client host): a socket
//!   of the connection lives in the caller's network namespace. It is
//!   destroyed as `ss -K` does (NETLINK_SOCK_DIAG `SOCK_DESTROY`): the kernel
//!   aborts it, sends the peer an RST with the socket's own sequence
//!   numbers, and the local application's next call fails with
//!   `ECONNABORTED`. Needs `CAP_NET_ADMIN` and `CONFIG_INET_DIAG_DESTROY`.
//! * **On a gateway** (neither end is local): two RST|ACK segments are forged
//!   and sent through a raw socket, one to each end, each spoofing the other
//!   end and carrying the sequence number that end would send next (a
//!   receiver accepts an RST only at exactly its `RCV.NXT`, RFC 5961). The
//!   caller knows those numbers from the segments it saw. Needs
//!   `CAP_NET_RAW`, and the RSTs must not be dropped on the way (the
//!   kernel program lets payload-less RSTs of a dropped flow pass).
//!
//! # Examples
//!
//! ```no_run
//! use smtp_user::enforce::{reset_connection, ResetMethod, TcpEndpoints};
//!
//! let ep = TcpEndpoints {
//!     client: "198.18.1.2:40000".parse().unwrap(),
//!     server: "198.18.2.2:25".parse().unwrap(),
//!     client_next_seq: Some(1_000_001),
//!     server_next_seq: Some(2_000_001),
//! };
//! match reset_connection(&ep) {
//!     Ok(ResetMethod::SocketDestroyed) => println!("local socket destroyed"),
//!     Ok(ResetMethod::RstInjected) => println!("RSTs sent to both ends"),
//!     Err(e) => eprintln!("reset failed: {e}"),
//! }
//! ```

mod diag;
mod error;
pub mod netfilter;
pub mod nfqueue;
mod raw;
mod reject;
mod segment;

use std::net::SocketAddr;

pub use error::ResetError;
pub use reject::{reject_connection, RejectTarget};

/// The connection to reset, as the monitor saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEndpoints {
    /// The side that opened the connection (sent the SYN).
    pub client: SocketAddr,
    /// The side that accepted it.
    pub server: SocketAddr,
    /// The next sequence number the client will send, which is what the
    /// server expects next (its `RCV.NXT`): the end (`seq + payload
    /// length`, +1 for SYN/FIN) of the furthest client segment that reached
    /// the server. Segments the kernel dropped (a drop verdict) do not
    /// count; the server's latest ACK number is the same value once
    /// nothing is in flight. An RST one off is answered with a challenge
    /// ACK and resets nothing (RFC 5961). Needed only when no end of the
    /// connection is local.
    pub client_next_seq: Option<u32>,
    /// The next sequence number the server will send (the client's
    /// `RCV.NXT`), likewise.
    pub server_next_seq: Option<u32>,
}

/// How [`reset_connection`] reset the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetMethod {
    /// A socket of the connection lived in this network namespace and was
    /// destroyed; the kernel sent the RST to the peer.
    SocketDestroyed,
    /// No end was local: forged RSTs were sent to both ends.
    RstInjected,
}

impl ResetMethod {
    /// Name for logs and JSON: `"socket_destroyed"` or `"rst_injected"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetMethod::SocketDestroyed => "socket_destroyed",
            ResetMethod::RstInjected => "rst_injected",
        }
    }
}

/// Resets the connection `ep` (see the [module docs](self) for the two
/// methods). IPv4-mapped IPv6 addresses are treated as IPv4; an IPv4
/// connection accepted by a dual-stack (`[::]`) listener is found too.
///
/// Local sockets are looked up with the server's address as the local one
/// first (the monitor on the mail host), then the client's (the monitor on
/// the sending host). A socket that exists but is already closed
/// (TIME-WAIT, CLOSE) gives [`ResetError::AlreadyClosed`]; no local socket
/// and a missing sequence number gives [`ResetError::UnknownSeq`], before
/// anything is sent.
///
/// Blocking, and normally fast (a few netlink round trips, two `sendto`):
/// about 0.2 ms (debug build, tests/tests/reset.rs). A kernel that does not
/// answer a sock_diag request makes it fail after at most a few seconds
/// (bounded receive timeouts).
pub fn reset_connection(ep: &TcpEndpoints) -> Result<ResetMethod, ResetError> {
    let client = diag::canonical(ep.client);
    let server = diag::canonical(ep.server);
    if client.is_ipv4() != server.is_ipv4() {
        return Err(ResetError::MixedFamilies { client, server });
    }

    let mut sd = diag::SockDiag::open().map_err(|source| ResetError::Netlink {
        op: "socket",
        local: server,
        remote: client,
        source,
    })?;
    for (local, remote) in [(server, client), (client, server)] {
        let Some(sock) = sd.find(local, remote)? else {
            continue;
        };
        if !sock.state.is_open() {
            return Err(ResetError::AlreadyClosed {
                local,
                remote,
                state: sock.state.name(),
            });
        }
        if !sd.destroy(&sock)? {
            // Closed between the lookup and the destroy request.
            return Err(ResetError::AlreadyClosed {
                local,
                remote,
                state: "gone before the destroy request",
            });
        }
        tracing::info!(%local, %remote, state = sock.state.name(),
            method = ResetMethod::SocketDestroyed.as_str(),
            "reset: local socket destroyed, the kernel sent an RST to the peer");
        return Ok(ResetMethod::SocketDestroyed);
    }

    let (client_seq, server_seq) = match (ep.client_next_seq, ep.server_next_seq) {
        (Some(c), Some(s)) => (c, s),
        (c, s) => {
            let missing = match (c, s) {
                (None, None) => "client and server",
                (None, _) => "client",
                _ => "server",
            };
            return Err(ResetError::UnknownSeq {
                client,
                server,
                missing,
            });
        }
    };
    // To the client as if from the server, then to the server as if from
    // the client.
    for (src, dst, seq, ack) in [
        (server, client, server_seq, client_seq),
        (client, server, client_seq, server_seq),
    ] {
        let packet = segment::rst_packet(src, dst, seq, ack)
            .ok_or(ResetError::MixedFamilies { client, server })?;
        raw::send_packet(dst, &packet).map_err(|(op, source)| ResetError::Raw {
            op,
            src,
            dst,
            source,
        })?;
    }
    tracing::info!(%client, %server, client_seq, server_seq,
        method = ResetMethod::RstInjected.as_str(),
        "reset: no local socket, RSTs injected to both ends");
    Ok(ResetMethod::RstInjected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked before any socket is opened: no privileges needed.
    #[test]
    fn mixed_families_are_refused() {
        let ep = TcpEndpoints {
            client: "198.18.0.1:40000".parse().unwrap(),
            server: "[2001:2::2]:25".parse().unwrap(),
            client_next_seq: Some(1),
            server_next_seq: Some(2),
        };
        match reset_connection(&ep) {
            Err(ResetError::MixedFamilies { client, server }) => {
                assert_eq!((client, server), (ep.client, ep.server));
            }
            other => panic!("expected MixedFamilies, got {other:?}"),
        }
        // An IPv4-mapped server address is IPv4: not mixed with an IPv4 client
        // (the same pair with an IPv6 client is).
        let ep = TcpEndpoints {
            client: "[2001:2::1]:40000".parse().unwrap(),
            server: "[::ffff:198.18.0.2]:25".parse().unwrap(),
            ..ep
        };
        assert!(matches!(
            reset_connection(&ep),
            Err(ResetError::MixedFamilies { .. })
        ));
    }
}
