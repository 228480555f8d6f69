//! A netfilter queue (NFQUEUE, `nfnetlink_queue`) socket: packets a
//! netfilter rule sent to queue `N` wait in the kernel until this socket
//! gives each a verdict (accept or drop).
//!
//! The gate's use: the kernel program marks the client segments of gated
//! flows, the monitor's `NFQUEUE` rule (see [`super::netfilter`]) queues the
//! marked packets, and the pipeline accepts each one once every byte up to
//! its end was inspected — a clean message end passes microseconds after it
//! arrived, a blocked one never reaches the server.
//!
//! Wire format (`linux/netfilter/nfnetlink_queue.h`): netlink messages of
//! type `NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_*`, an `nfgenmsg` whose
//! `res_id` is the queue number (big endian), then netlink attributes.
//! Receiving (one thread, blocking with a timeout) and sending verdicts
//! (any thread) use the same socket: the kernel takes verdicts only from the
//! socket bound to the queue. Without a bound socket the kernel drops what
//! the rule queues (no `--queue-bypass`): the gate fails closed.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_PAYLOAD: u16 = 10;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_PACKET: u8 = 2;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
/// Attribute type bits that are flags, not the type.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Bytes of each packet copied to userspace: a GRO super-packet fits.
const COPY_RANGE: u32 = 0xffff;
/// Receive buffer: one such packet plus its netlink framing.
const RECV_BUF: usize = 0x10000 + 4096;

/// One packet waiting in the queue for a verdict.
#[derive(Debug, Clone)]
pub struct QueuedPacket {
    /// The kernel's id of the packet (what a verdict names).
    pub id: u32,
    /// The packet from its IP header on.
    pub packet: Vec<u8>,
}

/// A socket bound to one netfilter queue.
#[derive(Debug)]
pub struct NfQueue {
    fd: OwnedFd,
    queue: u16,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends a netlink attribute.
fn put_attr(msg: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(value);
    msg.resize(align4(msg.len()), 0);
}

/// A message of `kind` to queue `queue`, attributes to be appended; the
/// length is fixed by [`finish`].
fn message(kind: u16, flags: u16, queue: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
    m.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
                                              // nfgenmsg: family AF_UNSPEC, version 0, res_id = queue (big endian).
    m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
    m.extend_from_slice(&queue.to_be_bytes());
    m
}

fn finish(m: &mut [u8]) {
    let len = m.len() as u32;
    if let Some(head) = m.get_mut(0..4) {
        head.copy_from_slice(&len.to_ne_bytes());
    }
}

impl NfQueue {
    /// Binds queue `queue` (whole packets copied, at most `max_len` packets
    /// waiting; beyond, the kernel drops). Fails when another socket holds
    /// the queue (`EBUSY`) or netfilter queueing is not in the kernel.
    pub fn open(queue: u16, max_len: u32) -> io::Result<NfQueue> {
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: zeroed sockaddr_nl is valid (family set below).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: valid fd and address.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let q = NfQueue { fd, queue };
        // A bigger socket buffer: bursts of queued packets must not be lost
        // (ENOBUFS) before the reader gets to them.
        q.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20);
        let mut m = message(NFQNL_MSG_CONFIG, NLM_F_ACK, queue);
        put_attr(&mut m, NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0]);
        q.request(m)?;
        let mut m = message(NFQNL_MSG_CONFIG, NLM_F_ACK, queue);
        let mut params = COPY_RANGE.to_be_bytes().to_vec();
        params.push(NFQNL_COPY_PACKET);
        put_attr(&mut m, NFQA_CFG_PARAMS, &params);
        put_attr(&mut m, NFQA_CFG_QUEUE_MAXLEN, &max_len.to_be_bytes());
        q.request(m)?;
        Ok(q)
    }

    fn setsockopt(&self, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
        // SAFETY: valid fd, pointer to an int with its size.
        unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }

    /// The queue number.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    fn send(&self, mut m: Vec<u8>) -> io::Result<()> {
        finish(&mut m);
        // SAFETY: zeroed sockaddr_nl (pid 0: the kernel).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: valid fd, buffer and address with their lengths.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                m.as_ptr().cast(),
                m.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends a config request and waits for its acknowledgement (bounded:
    /// 2 s receive timeout).
    fn request(&self, m: Vec<u8>) -> io::Result<()> {
        self.send(m)?;
        self.set_timeout(Duration::from_secs(2))?;
        let mut buf = vec![0u8; 8192];
        for _ in 0..16 {
            let n = self.recv_raw(&mut buf)?;
            let mut rest = buf.get(..n).unwrap_or_default();
            while let Some((kind, body, next)) = split_message(rest) {
                if kind == NLMSG_ERROR {
                    let errno = body
                        .get(0..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(0);
                    return if errno == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-errno))
                    };
                }
                rest = next;
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no acknowledgement from nfnetlink_queue",
        ))
    }

    /// Sets the receive timeout of [`NfQueue::recv`].
    pub fn set_timeout(&self, t: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: valid fd, pointer to a timeval with its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv_raw(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: valid fd and buffer with its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Waits (at most the receive timeout: then `Ok` with nothing added)
    /// for queued packets and appends them to `out`.
    pub fn recv(&self, buf: &mut Vec<u8>, out: &mut Vec<QueuedPacket>) -> io::Result<()> {
        buf.resize(RECV_BUF, 0);
        let n = match self.recv_raw(buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut rest = buf.get(..n).unwrap_or_default();
        while let Some((kind, body, next)) = split_message(rest) {
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
                if let Some(p) = parse_packet(body) {
                    out.push(p);
                }
            }
            rest = next;
        }
        Ok(())
    }

    /// Gives packet `id` its verdict: pass on (`accept`) or drop.
    pub fn verdict(&self, id: u32, accept: bool) -> io::Result<()> {
        let mut m = message(NFQNL_MSG_VERDICT, 0, self.queue);
        let mut hdr = [0u8; 8];
        hdr[0..4].copy_from_slice(&(if accept { NF_ACCEPT } else { NF_DROP }).to_be_bytes());
        hdr[4..8].copy_from_slice(&id.to_be_bytes());
        put_attr(&mut m, NFQA_VERDICT_HDR, &hdr);
        self.send(m)
    }
}

/// Splits the first netlink message off `b`: (type, body after the netlink
/// header, rest).
fn split_message(b: &[u8]) -> Option<(u16, &[u8], &[u8])> {
    let len = b
        .get(0..4)
        .map(|x| u32::from_ne_bytes([x[0], x[1], x[2], x[3]]))? as usize;
    let kind = b.get(4..6).map(|x| u16::from_ne_bytes([x[0], x[1]]))?;
    if len < NLMSG_HDRLEN {
        return None;
    }
    let body = b.get(NLMSG_HDRLEN..len)?;
    let rest = b.get(align4(len).min(b.len())..).unwrap_or_default();
    Some((kind, body, rest))
}

/// A `NFQNL_MSG_PACKET` body (nfgenmsg + attributes) → the packet.
fn parse_packet(body: &[u8]) -> Option<QueuedPacket> {
    let mut attrs = body.get(4..)?; // past nfgenmsg
    let mut id = None;
    let mut packet = None;
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & NLA_TYPE_MASK;
        if len < 4 {
            break;
        }
        let value = attrs.get(4..len)?;
        match kind {
            NFQA_PACKET_HDR => {
                id = value
                    .get(0..4)
                    .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
            }
            NFQA_PAYLOAD => packet = Some(value.to_vec()),
            _ => {}
        }
        attrs = attrs.get(align4(len).min(attrs.len())..)?;
    }
    Some(QueuedPacket {
        id: id?,
        packet: packet.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_message_round_trip() {
        // A packet message as the kernel builds it: header, nfgenmsg, a
        // packet header attribute and a payload attribute.
        let mut m = message(NFQNL_MSG_PACKET, 0, 7);
        put_attr(&mut m, NFQA_PACKET_HDR, &[0, 0, 1, 2, 0x08, 0x00, 1]);
        put_attr(&mut m, NFQA_PAYLOAD, b"\x45abc");
        finish(&mut m);
        let (kind, body, rest) = split_message(&m).unwrap();
        assert_eq!(kind, (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET);
        assert!(rest.is_empty());
        let p = parse_packet(body).unwrap();
        assert_eq!(p.id, 0x102);
        assert_eq!(p.packet, b"\x45abc");
    }

    #[test]
    fn truncated_messages_are_refused() {
        assert!(split_message(&[1, 2, 3]).is_none());
        let mut m = message(NFQNL_MSG_PACKET, 0, 7);
        put_attr(&mut m, NFQA_PAYLOAD, b"xyz");
        finish(&mut m);
        // Length claims more than the buffer holds.
        assert!(split_message(&m[..m.len() - 2]).is_none());
        // No packet header: no id, nothing to give a verdict to.
        let (_, body, _) = split_message(&m).unwrap();
        assert!(parse_packet(body).is_none());
    }

    #[test]
    fn verdict_layout() {
        let mut m = message(NFQNL_MSG_VERDICT, 0, 0x0102);
        put_attr(&mut m, NFQA_VERDICT_HDR, &[0, 0, 0, 1, 0, 0, 0, 9]);
        finish(&mut m);
        assert_eq!(m.len(), 16 + 4 + 12);
        assert_eq!(&m[16..20], &[0, 0, 1, 2]);
        assert_eq!(&m[24..32], &[0, 0, 0, 1, 0, 0, 0, 9]);
    }
}
