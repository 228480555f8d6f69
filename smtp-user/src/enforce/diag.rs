//! TCP sockets of the caller's network namespace through NETLINK_SOCK_DIAG,
//! as `ss` sees them: exact 4-tuple lookup ([`SockDiag::find`]) and
//! destruction ([`SockDiag::destroy`], what `ss -K` does).
//!
//! Destroying a socket runs the kernel's `tcp_abort`: the peer gets an RST
//! (with the socket's own, correct sequence numbers) and the local
//! application's next call fails with `ECONNABORTED`. It needs
//! `CAP_NET_ADMIN` and a kernel built with `CONFIG_INET_DIAG_DESTROY`.
//!
//! Messages are encoded and decoded byte by byte (`linux/inet_diag.h`
//! layouts); every reply field is read with a checked access, reads are
//! bounded in size, count and time.

use std::{
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use super::ResetError;

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h): look up or dump sockets.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `SOCK_DESTROY` (linux/sock_diag.h): abort a socket.
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// `struct nlmsghdr`.
const NLMSG_HDR_LEN: usize = 16;
/// `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// `struct inet_diag_msg` (without attributes).
const MSG_LEN: usize = 72;
/// Offset of `struct inet_diag_sockid` in `inet_diag_req_v2`.
const REQ_SOCKID: usize = 8;
/// Offset of `struct inet_diag_sockid` in `inet_diag_msg`.
const MSG_SOCKID: usize = 4;
/// `INET_DIAG_NOCOOKIE` twice: match whatever the socket's cookie is.
const NO_COOKIE: [u8; 8] = [0xff; 8];

/// Receive buffer: one exact-lookup reply (message + a few attributes) is
/// well under 1 KiB.
const RECV_BUF: usize = 8192;
/// At most this many datagrams are read while waiting for one answer
/// (stale answers to an earlier, timed-out request are skipped).
const MAX_RECVS: usize = 16;
/// Time the kernel has to answer one request.
const RECV_TIMEOUT: Duration = Duration::from_secs(1);

/// A TCP state as `inet_diag_msg.idiag_state` reports it (`net/tcp_states.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpState(pub u8);

impl TcpState {
    pub const TIME_WAIT: TcpState = TcpState(6);
    pub const CLOSE: TcpState = TcpState(7);
    pub const LISTEN: TcpState = TcpState(10);

    /// Name as `ss` prints it.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "ESTAB",
            2 => "SYN-SENT",
            3 => "SYN-RECV",
            4 => "FIN-WAIT-1",
            5 => "FIN-WAIT-2",
            6 => "TIME-WAIT",
            7 => "CLOSE",
            8 => "CLOSE-WAIT",
            9 => "LAST-ACK",
            10 => "LISTEN",
            11 => "CLOSING",
            12 => "NEW-SYN-RECV",
            _ => "UNKNOWN",
        }
    }

    /// The connection still exists: aborting it means something (sends an
    /// RST to the peer, fails the local application).
    pub fn is_open(self) -> bool {
        !matches!(self, Self::TIME_WAIT | Self::CLOSE | Self::LISTEN)
    }
}

/// One connected TCP socket found by an exact lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSocket {
    /// The socket's own address, IPv4-mapped addresses shown as IPv4.
    pub local: SocketAddr,
    /// The peer's address, IPv4-mapped addresses shown as IPv4.
    pub remote: SocketAddr,
    /// Address family of the lookup that found the socket (`AF_INET` or
    /// `AF_INET6`); the destroy request uses the same one.
    family: u8,
    /// `local` and `remote` as the lookup sent them (IPv4-mapped when
    /// `family` is `AF_INET6` and the connection is IPv4).
    query: (SocketAddr, SocketAddr),
    pub state: TcpState,
    /// The kernel's socket cookie, echoed in the destroy request so that
    /// only this very socket is destroyed (not a new one with the same
    /// 4-tuple).
    cookie: [u8; 8],
}

/// A NETLINK_SOCK_DIAG socket in the caller's network namespace.
pub struct SockDiag {
    fd: OwnedFd,
    /// Sequence number of the last request sent.
    seq: u32,
}

impl SockDiag {
    pub fn open() -> io::Result<SockDiag> {
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: RECV_TIMEOUT.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: valid fd, option value points to a timeval of the given size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SockDiag { fd, seq: 0 })
    }

    /// The connected socket whose own address is `local` and whose peer is
    /// `remote`, if one exists in this namespace (any state but LISTEN).
    /// IPv4 tuples are also looked up as IPv4-mapped IPv6 (sockets accepted
    /// by a dual-stack listener).
    pub fn find(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<Option<LocalSocket>, ResetError> {
        let queries = match (local, remote) {
            (SocketAddr::V4(l), SocketAddr::V4(r)) => vec![
                (libc::AF_INET as u8, local, remote),
                (
                    libc::AF_INET6 as u8,
                    SocketAddr::new(IpAddr::V6(l.ip().to_ipv6_mapped()), l.port()),
                    SocketAddr::new(IpAddr::V6(r.ip().to_ipv6_mapped()), r.port()),
                ),
            ],
            _ => vec![(libc::AF_INET6 as u8, local, remote)],
        };
        for (family, l, r) in queries {
            let req = request(family, l, r, &NO_COOKIE);
            let seq = self.send(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, &req, l, r, "lookup")?;
            match self.answer(seq, l, r, "lookup")? {
                Answer::Error(0) => {
                    return Err(ResetError::BadReply {
                        op: "lookup",
                        reason: "acknowledgement without a socket",
                    })
                }
                Answer::Error(e) if e == libc::ENOENT => continue,
                Answer::Error(e) => {
                    return Err(ResetError::Netlink {
                        op: "lookup",
                        local,
                        remote,
                        source: io::Error::from_raw_os_error(e),
                    })
                }
                Answer::Socket(msg) => {
                    let found = parse_msg(&msg)?;
                    // The kernel's lookup falls back to a listener on the
                    // local port: only the exact 4-tuple counts.
                    if found.state == TcpState::LISTEN
                        || !same(found.local, local)
                        || !same(found.remote, remote)
                    {
                        tracing::debug!(%local, %remote, state = found.state.name(),
                            found_local = %found.local, found_remote = %found.remote,
                            "sock_diag lookup matched another socket; ignored");
                        continue;
                    }
                    return Ok(Some(LocalSocket {
                        local,
                        remote,
                        family,
                        query: (l, r),
                        state: found.state,
                        cookie: found.cookie,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Aborts `sock` (found by [`find`](Self::find)). Returns false when the
    /// socket no longer exists.
    pub fn destroy(&mut self, sock: &LocalSocket) -> Result<bool, ResetError> {
        let (l, r) = sock.query;
        let req = request(sock.family, l, r, &sock.cookie);
        let seq = self.send(
            SOCK_DESTROY,
            NLM_F_REQUEST | NLM_F_ACK,
            &req,
            l,
            r,
            "destroy",
        )?;
        match self.answer(seq, l, r, "destroy")? {
            Answer::Error(0) => Ok(true),
            Answer::Error(e) if e == libc::ENOENT => Ok(false),
            Answer::Error(e) => Err(ResetError::Netlink {
                op: "destroy",
                local: sock.local,
                remote: sock.remote,
                source: io::Error::from_raw_os_error(e),
            }),
            Answer::Socket(_) => Err(ResetError::BadReply {
                op: "destroy",
                reason: "socket description instead of an acknowledgement",
            }),
        }
    }

    /// Sends one request; returns its sequence number.
    fn send(
        &mut self,
        kind: u16,
        flags: u16,
        payload: &[u8],
        local: SocketAddr,
        remote: SocketAddr,
        op: &'static str,
    ) -> Result<u32, ResetError> {
        self.seq = self.seq.wrapping_add(1);
        let len = NLMSG_HDR_LEN + payload.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns ours
        msg.extend_from_slice(payload);
        // SAFETY: zeroed sockaddr_nl is valid; nl_pid 0 = the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: valid fd; buffer and address pointers with their lengths.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(ResetError::Netlink {
                op,
                local,
                remote,
                source: io::Error::last_os_error(),
            });
        }
        Ok(self.seq)
    }

    /// Reads until the answer to request `seq`: an `inet_diag_msg` or an
    /// error/acknowledgement code (0 = success, else a positive errno).
    fn answer(
        &mut self,
        seq: u32,
        local: SocketAddr,
        remote: SocketAddr,
        op: &'static str,
    ) -> Result<Answer, ResetError> {
        let mut buf = vec![0u8; RECV_BUF];
        for _ in 0..MAX_RECVS {
            // SAFETY: valid fd; buf is writable for its length. MSG_TRUNC
            // makes the result the datagram's real length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let source = io::Error::last_os_error();
                if source.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ResetError::Netlink {
                    op,
                    local,
                    remote,
                    source,
                });
            }
            let n = n as usize;
            if n > buf.len() {
                return Err(ResetError::BadReply {
                    op,
                    reason: "reply larger than the receive buffer",
                });
            }
            let mut rest = buf.get(..n).unwrap_or_default();
            while !rest.is_empty() {
                let (
                    NlMessage {
                        kind,
                        seq: msg_seq,
                        body,
                    },
                    next,
                ) = split_message(rest, op)?;
                rest = next;
                if msg_seq != seq {
                    continue; // answer to an earlier request
                }
                match kind {
                    NLMSG_ERROR => {
                        let code = read_i32(body, 0).ok_or(ResetError::BadReply {
                            op,
                            reason: "truncated error message",
                        })?;
                        return Ok(Answer::Error(code.saturating_neg()));
                    }
                    SOCK_DIAG_BY_FAMILY => return Ok(Answer::Socket(body.to_vec())),
                    NLMSG_DONE => {
                        return Err(ResetError::BadReply {
                            op,
                            reason: "end of dump without an answer",
                        })
                    }
                    _ => continue,
                }
            }
        }
        Err(ResetError::BadReply {
            op,
            reason: "no answer among the datagrams read",
        })
    }
}

/// What the kernel answered to one request.
enum Answer {
    /// `nlmsgerr.error` negated: 0 = acknowledgement, else an errno.
    Error(i32),
    /// An `inet_diag_msg` with its attributes.
    Socket(Vec<u8>),
}

/// One netlink message of a datagram.
struct NlMessage<'a> {
    /// `nlmsg_type`.
    kind: u16,
    /// `nlmsg_seq`: the request this answers.
    seq: u32,
    /// The payload after the header, `nlmsg_len` bounded.
    body: &'a [u8],
}

/// First netlink message of `buf`, and the rest of `buf` after it.
fn split_message<'a>(
    buf: &'a [u8],
    op: &'static str,
) -> Result<(NlMessage<'a>, &'a [u8]), ResetError> {
    let bad = |reason| ResetError::BadReply { op, reason };
    let len = read_u32(buf, 0).ok_or(bad("truncated message header"))? as usize;
    let kind = read_u16(buf, 4).ok_or(bad("truncated message header"))?;
    let seq = read_u32(buf, 8).ok_or(bad("truncated message header"))?;
    if len < NLMSG_HDR_LEN {
        return Err(bad("message length shorter than its header"));
    }
    let body = buf
        .get(NLMSG_HDR_LEN..len)
        .ok_or(bad("message length beyond the datagram"))?;
    // Messages are 4-byte aligned; the last one may lack its padding.
    let next = len.saturating_add(3) & !3;
    let msg = NlMessage { kind, seq, body };
    Ok((msg, buf.get(next..).unwrap_or_default()))
}

/// An `inet_diag_req_v2` for the exact 4-tuple (`local` is the socket's
/// own address: `idiag_src`).
fn request(family: u8, local: SocketAddr, remote: SocketAddr, cookie: &[u8; 8]) -> Vec<u8> {
    let mut req = vec![0u8; REQ_LEN];
    req[0] = family;
    req[1] = libc::IPPROTO_TCP as u8;
    // idiag_ext 0: no extra attributes. idiag_states: all.
    req[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    let id = REQ_SOCKID;
    req[id..id + 2].copy_from_slice(&local.port().to_be_bytes());
    req[id + 2..id + 4].copy_from_slice(&remote.port().to_be_bytes());
    put_addr(&mut req[id + 4..id + 20], local.ip());
    put_addr(&mut req[id + 20..id + 36], remote.ip());
    let ifindex = match local {
        SocketAddr::V6(v6) => v6.scope_id(),
        SocketAddr::V4(_) => 0,
    };
    req[id + 36..id + 40].copy_from_slice(&ifindex.to_ne_bytes());
    req[id + 40..id + 48].copy_from_slice(cookie);
    req
}

fn put_addr(dst: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => dst[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => dst[..16].copy_from_slice(&v6.octets()),
    }
}

/// The fields of an `inet_diag_msg` we use.
struct Found {
    local: SocketAddr,
    remote: SocketAddr,
    state: TcpState,
    cookie: [u8; 8],
}

fn parse_msg(msg: &[u8]) -> Result<Found, ResetError> {
    let bad = |reason| ResetError::BadReply {
        op: "lookup",
        reason,
    };
    let msg = msg.get(..MSG_LEN).ok_or(bad("truncated inet_diag_msg"))?;
    let id = msg.get(MSG_SOCKID..).ok_or(bad("truncated socket id"))?;
    let port = |at: usize| read_be16(id, at).ok_or(bad("truncated socket id"));
    let addr = |at: usize| -> Result<IpAddr, ResetError> {
        let raw: [u8; 16] = id
            .get(at..at + 16)
            .and_then(|b| b.try_into().ok())
            .ok_or(bad("truncated socket id"))?;
        match i32::from(msg.first().copied().unwrap_or_default()) {
            libc::AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
            libc::AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(raw)).to_canonical()),
            _ => Err(bad("address family neither AF_INET nor AF_INET6")),
        }
    };
    let cookie: [u8; 8] = id
        .get(40..48)
        .and_then(|b| b.try_into().ok())
        .ok_or(bad("truncated socket id"))?;
    Ok(Found {
        local: SocketAddr::new(addr(4)?, port(0)?),
        remote: SocketAddr::new(addr(20)?, port(2)?),
        state: TcpState(msg.get(1).copied().unwrap_or_default()),
        cookie,
    })
}

/// Same address and port (scope ids and flow labels aside).
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip() == b.ip() && a.port() == b.port()
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn read_be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// `addr` with an IPv4-mapped IPv6 address turned into IPv4 (scope ids of
/// real IPv6 addresses are kept).
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, v6.scope_id())),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn request_layout_v4() {
        let r = request(2, sa("198.18.0.2:25"), sa("198.18.0.1:40000"), &NO_COOKIE);
        assert_eq!(r.len(), REQ_LEN);
        assert_eq!(r[0..2], [2, 6]);
        assert_eq!(r[4..8], [0xff; 4]);
        assert_eq!(r[8..10], [0, 25]);
        assert_eq!(r[10..12], 40000u16.to_be_bytes());
        assert_eq!(r[12..16], [198, 18, 0, 2]);
        assert_eq!(r[16..28], [0; 12]);
        assert_eq!(r[28..32], [198, 18, 0, 1]);
        assert_eq!(r[44..48], [0; 4]);
        assert_eq!(r[48..56], [0xff; 8]);
    }

    /// A reply as the kernel writes it for a v4-mapped socket parses back
    /// to IPv4 endpoints; truncated replies are errors, not panics.
    #[test]
    fn parse_reply_and_truncation() {
        let l = sa("[::ffff:198.18.0.2]:25");
        let r = sa("[::ffff:198.18.0.1]:40000");
        // inet_diag_msg: family, state, timer, retrans, then the socket id
        // (laid out as in the request), then five u32 and attributes.
        let req = request(10, l, r, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut msg = vec![10, 1, 0, 0];
        msg.extend_from_slice(&req[REQ_SOCKID..]);
        msg.resize(MSG_LEN + 8, 0);
        let f = parse_msg(&msg).unwrap();
        assert_eq!(f.local, sa("198.18.0.2:25"));
        assert_eq!(f.remote, sa("198.18.0.1:40000"));
        assert_eq!(f.state, TcpState(1));
        assert_eq!(f.cookie, [1, 2, 3, 4, 5, 6, 7, 8]);
        for n in 0..MSG_LEN {
            assert!(parse_msg(&msg[..n]).is_err(), "len {n}");
        }
    }

    #[test]
    fn split_messages_checks_lengths() {
        let mut two = Vec::new();
        for (seq, body) in [(7u32, &[1u8, 2, 3][..]), (8, &[4u8; 4][..])] {
            two.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
            two.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            two.extend_from_slice(&0u16.to_ne_bytes());
            two.extend_from_slice(&seq.to_ne_bytes());
            two.extend_from_slice(&0u32.to_ne_bytes());
            two.extend_from_slice(body);
            while two.len() % 4 != 0 {
                two.push(0);
            }
        }
        let (m, rest) = split_message(&two, "t").unwrap();
        assert_eq!((m.kind, m.seq, m.body), (NLMSG_ERROR, 7, &[1u8, 2, 3][..]));
        let (m, rest) = split_message(rest, "t").unwrap();
        assert_eq!((m.seq, m.body, rest.len()), (8, &[4u8; 4][..], 0));
        // Length beyond the datagram, shorter than a header, truncated header.
        let mut bad = two.clone();
        bad[0] = 200;
        assert!(split_message(&bad, "t").is_err());
        bad[0] = 3;
        assert!(split_message(&bad, "t").is_err());
        assert!(split_message(&two[..10], "t").is_err());
    }

    #[test]
    fn canonical_unmaps() {
        assert_eq!(canonical(sa("[::ffff:1.2.3.4]:5")), sa("1.2.3.4:5"));
        assert_eq!(canonical(sa("[2001:2::1]:5")), sa("[2001:2::1]:5"));
        assert_eq!(canonical(sa("1.2.3.4:5")), sa("1.2.3.4:5"));
    }
}
