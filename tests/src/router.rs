//! Three namespaces in a line, client — router — server, the router
//! forwarding between two subnets: the topology of a monitor running on a
//! gateway, where neither end of a connection is local. Removed on drop.
//!
//! [`SeqTracker`] watches the router's server-side interface with an
//! AF_PACKET socket and keeps, per direction, the next sequence number the
//! sender will use and the last acknowledgement it sent: what a gateway
//! monitor knows from the segments it forwards.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use smtp_user::capture::{parse_frame, wire::linktype};

use crate::netns::{in_netns, run, unique_names};

/// Client 198.18.1.2 / 2001:2:0:1::2 — router .1 on both subnets —
/// server 198.18.2.2 / 2001:2:0:2::2.
pub struct Routed {
    pub client_ns: String,
    pub router_ns: String,
    pub server_ns: String,
    /// Router interface facing the client.
    pub router_client_if: String,
    /// Router interface facing the server.
    pub router_server_if: String,
}

pub const CLIENT_V4: &str = "198.18.1.2";
pub const SERVER_V4: &str = "198.18.2.2";
pub const CLIENT_V6: &str = "2001:2:0:1::2";
pub const SERVER_V6: &str = "2001:2:0:2::2";

impl Routed {
    pub fn new(tag: &str) -> Routed {
        let (tag, id) = unique_names(tag);
        let ns = |role: &str| format!("smtpr-{tag}-{id}-{role}");
        let t = Routed {
            client_ns: ns("c"),
            router_ns: ns("r"),
            server_ns: ns("s"),
            router_client_if: format!("sr{id}rc"),
            router_server_if: format!("sr{id}rs"),
        };
        // From here on, Drop removes whatever was created.
        for ns in [&t.client_ns, &t.router_ns, &t.server_ns] {
            run("ip", &["netns", "add", ns]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        let client_if = format!("sr{id}c");
        let server_if = format!("sr{id}s");
        for (end_ns, end_if, router_if) in [
            (&t.client_ns, &client_if, &t.router_client_if),
            (&t.server_ns, &server_if, &t.router_server_if),
        ] {
            run(
                "ip",
                &[
                    "link",
                    "add",
                    end_if,
                    "netns",
                    end_ns,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    router_if,
                    "netns",
                    &t.router_ns,
                ],
            );
        }
        for (ns, dev, v4, v6, gw4, gw6) in [
            (
                &t.client_ns,
                &client_if,
                "198.18.1.2/24",
                "2001:2:0:1::2/64",
                Some("198.18.1.1"),
                Some("2001:2:0:1::1"),
            ),
            (
                &t.router_ns,
                &t.router_client_if,
                "198.18.1.1/24",
                "2001:2:0:1::1/64",
                None,
                None,
            ),
            (
                &t.router_ns,
                &t.router_server_if,
                "198.18.2.1/24",
                "2001:2:0:2::1/64",
                None,
                None,
            ),
            (
                &t.server_ns,
                &server_if,
                "198.18.2.2/24",
                "2001:2:0:2::2/64",
                Some("198.18.2.1"),
                Some("2001:2:0:2::1"),
            ),
        ] {
            run("ip", &["-n", ns, "addr", "add", v4, "dev", dev]);
            run("ip", &["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
            if let (Some(gw4), Some(gw6)) = (gw4, gw6) {
                run("ip", &["-n", ns, "route", "add", "default", "via", gw4]);
                run(
                    "ip",
                    &["-n", ns, "-6", "route", "add", "default", "via", gw6],
                );
            }
        }
        for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            run("ip", &["netns", "exec", &t.router_ns, "sysctl", "-qw", key]);
        }
        t
    }

    pub fn client_ip(&self, v6: bool) -> IpAddr {
        if v6 { CLIENT_V6 } else { CLIENT_V4 }
            .parse()
            .expect("addr")
    }

    pub fn server_addr(&self, v6: bool, port: u16) -> SocketAddr {
        let a: IpAddr = if v6 { SERVER_V6 } else { SERVER_V4 }
            .parse()
            .expect("addr");
        SocketAddr::new(a, port)
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends in it, and so the pairs.
        for ns in [&self.client_ns, &self.router_ns, &self.server_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// What the tracker knows about one direction of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirSeqs {
    /// Sequence number of the sender's SYN (None when not seen).
    pub syn_seq: Option<u32>,
    /// Next sequence number the sender will use: the furthest (wrapping)
    /// `seq + payload + SYN + FIN` seen (RSTs use no sequence space and
    /// are ignored: they may be forged).
    pub next_seq: u32,
    /// Acknowledgement number of the last segment with ACK (None before).
    pub last_ack: Option<u32>,
}

type Table = HashMap<(SocketAddr, SocketAddr), DirSeqs>;

/// Tracks TCP sequence numbers of the segments crossing one interface of
/// a namespace; stops (and closes its socket) on drop.
pub struct SeqTracker {
    table: Arc<Mutex<Table>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Upper bound of a tracker's life, whatever the test does.
const TRACK_MAX: Duration = Duration::from_secs(60);

impl SeqTracker {
    /// Starts watching `iface` in namespace `ns` (ready when this returns).
    pub fn start(ns: &str, iface: &str) -> SeqTracker {
        let table = Arc::new(Mutex::new(Table::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let iface = iface.to_string();
        let (t, s) = (table.clone(), stop.clone());
        let thread = in_netns(ns, move || {
            let fd = packet_socket(&iface);
            tx.send(()).expect("tracker ready");
            track(&fd, &t, &s);
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("tracker ready");
        SeqTracker {
            table,
            stop,
            thread: Some(thread),
        }
    }

    pub fn get(&self, src: SocketAddr, dst: SocketAddr) -> Option<DirSeqs> {
        self.table.lock().expect("table").get(&(src, dst)).copied()
    }

    /// Waits (at most `timeout`) until this tracker has seen the whole
    /// connection so far: both SYNs, `sent.0` payload bytes from the client
    /// and `sent.1` from the server, and each side acknowledging all the
    /// other sent. Returns (client next seq, server next seq), as taken
    /// from the capture.
    pub fn settled(
        &self,
        client: SocketAddr,
        server: SocketAddr,
        sent: (u32, u32),
        timeout: Duration,
    ) -> Option<(u32, u32)> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let (Some(c), Some(s)) = (self.get(client, server), self.get(server, client)) {
                let complete = |d: DirSeqs, n: u32| {
                    d.syn_seq.map(|isn| isn.wrapping_add(1).wrapping_add(n)) == Some(d.next_seq)
                };
                if complete(c, sent.0)
                    && complete(s, sent.1)
                    && c.last_ack == Some(s.next_seq)
                    && s.last_ack == Some(c.next_seq)
                {
                    return Some((c.next_seq, s.next_seq));
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Drop for SeqTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An AF_PACKET datagram socket (IP packets, no link header) bound to
/// `iface`, with a 50 ms receive timeout.
fn packet_socket(iface: &str) -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(iface).expect("ifname");
    // SAFETY: NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(ifindex != 0, "no interface {iface}");
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: valid fd and address of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: valid fd, timeval of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    fd
}

fn track(fd: &OwnedFd, table: &Mutex<Table>, stop: &AtomicBool) {
    let started = Instant::now();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) && started.elapsed() < TRACK_MAX {
        // SAFETY: valid fd; buf writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Ok(n) = usize::try_from(n) else {
            continue; // timeout (or EINTR): look at the stop flag
        };
        let Ok(seg) = parse_frame(linktype::RAW, 0, &buf[..n.min(buf.len())]) else {
            continue;
        };
        if seg.flags.rst() {
            continue;
        }
        let len = seg.payload.len() as u32
            + seg.uncaptured
            + u32::from(seg.flags.syn())
            + u32::from(seg.flags.fin());
        let end = seg.seq.wrapping_add(len);
        let mut t = table.lock().expect("table");
        let e = t.entry((seg.src, seg.dst)).or_insert(DirSeqs {
            syn_seq: None,
            next_seq: end,
            last_ack: None,
        });
        if seg.flags.syn() {
            e.syn_seq = Some(seg.seq);
        }
        if (end.wrapping_sub(e.next_seq) as i32) > 0 {
            e.next_seq = end;
        }
        if seg.flags.ack() {
            e.last_ack = Some(seg.ack);
        }
    }
}
