//! Answering the client on the server's behalf and freeing the server: the
//! `reject` action.
//!
//! The gate holds the client segment that ends a blocked message (dropped
//! in the kernel, or never accepted from the netfilter queue), so the server
//! never gets the end of data. [`reject_connection`] then
//!
//! 1. sends the client, as if from the server, the reply (`550 5.7.1 …`)
//!    with FIN, its sequence number the server's next one and its ACK
//!    covering everything the client sent: the client reads a permanent
//!    failure for the message (a sending MTA bounces it, no retry) and no
//!    longer retransmits the held segment;
//! 2. resets the server side only: the local server socket is destroyed
//!    (`SOCK_DESTROY`, the kernel's RST to the client carries an old
//!    sequence number and is ignored), or, when the server is not local, an
//!    RST forged from the client at the server's `RCV.NXT` (the start of
//!    the held segment). smtpd is freed at once and aborts the transaction;
//!    nothing is queued.

use std::net::SocketAddr;

use super::{diag, raw, segment, ResetError, ResetMethod};

/// The connection to reject, as the monitor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectTarget {
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// The server's next sequence number (the client's `RCV.NXT`): where the
    /// forged reply starts.
    pub server_next_seq: u32,
    /// End of the client bytes the reply acknowledges (the end of the held
    /// segment and of anything pipelined with it).
    pub client_ack: u32,
    /// The server's `RCV.NXT`: the first client byte it did not get (the
    /// start of the held segment). Used for the forged RST when the server
    /// is not local.
    pub server_rcv_next: u32,
    /// The reply line(s), CRLF-terminated.
    pub reply: Vec<u8>,
}

/// Sends the reply to the client and resets the server side (see the
/// [module docs](self)).
pub fn reject_connection(t: &RejectTarget) -> Result<ResetMethod, ResetError> {
    let client = diag::canonical(t.client);
    let server = diag::canonical(t.server);
    if client.is_ipv4() != server.is_ipv4() {
        return Err(ResetError::MixedFamilies { client, server });
    }
    let reply = segment::data_packet(
        server,
        client,
        t.server_next_seq,
        t.client_ack,
        &t.reply,
        true,
    )
    .ok_or(ResetError::MixedFamilies { client, server })?;
    raw::send_packet(client, &reply).map_err(|(op, source)| ResetError::Raw {
        op,
        src: server,
        dst: client,
        source,
    })?;
    let mut sd = diag::SockDiag::open().map_err(|source| ResetError::Netlink {
        op: "socket",
        local: server,
        remote: client,
        source,
    })?;
    if let Some(sock) = sd.find(server, client)? {
        if sock.state.is_open() && sd.destroy(&sock)? {
            return Ok(ResetMethod::SocketDestroyed);
        }
        return Err(ResetError::AlreadyClosed {
            local: server,
            remote: client,
            state: sock.state.name(),
        });
    }
    let rst = segment::rst_packet(client, server, t.server_rcv_next, t.server_next_seq)
        .ok_or(ResetError::MixedFamilies { client, server })?;
    raw::send_packet(server, &rst).map_err(|(op, source)| ResetError::Raw {
        op,
        src: client,
        dst: server,
        source,
    })?;
    Ok(ResetMethod::RstInjected)
}
