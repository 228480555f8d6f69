//! A TCP client written from the attacker's side: every frame is crafted
//! here and sent with an AF_PACKET socket in the client namespace, so a
//! test can put what a normal TCP stack never sends (IP fragments, long
//! IPv6 header chains, stacked VLAN tags, URG data, bad checksums,
//! segments without ACK, data in a SYN) in front of a real server.
//!
//! The client speaks from an address the client namespace does not own
//! ([`ATTACKER_V4`], [`ATTACKER_V6`]): the client kernel drops the server's
//! answers (forwarding is off) instead of resetting the connection, and this
//! module reads them from the same packet socket. The server namespace gets
//! a permanent neighbour entry for that address. Checksums are computed
//! (except where a test asks for a bad one): the server's stack verifies
//! them, as AF_PACKET frames arrive with `CHECKSUM_NONE`.
//!
//! Every wait is bounded; the socket is closed on drop.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use crate::{in_netns, NetPair};

/// The attacker's IPv4 address (in the client veth's subnet, not assigned).
pub const ATTACKER_V4: &str = "198.18.0.9";
/// The attacker's IPv6 address.
pub const ATTACKER_V6: &str = "2001:2::9";

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_DSTOPTS: u8 = 60;

/// How a segment is put on the wire.
#[derive(Debug, Clone, Default)]
pub struct Craft {
    /// Send the IP packet as fragments, cut at these offsets of the IP
    /// payload (multiples of 8, increasing).
    pub fragment_at: Vec<usize>,
    /// IPv6: that many destination-options headers before TCP.
    pub dstopts: usize,
    /// That many 802.1ad tags with VID 0 (priority tags), outermost first.
    pub vlan0_tags: usize,
    /// Add this to the correct TCP checksum (0: correct).
    pub checksum_delta: u16,
    /// TCP urgent pointer (with [`URG`] in the flags).
    pub urg_ptr: u16,
}

/// The ones' complement sum of `data` added to `sum`.
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "link", "show", "dev", dev])
        .output()
        .expect("ip link show");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC for {dev} in {ns}: {text}"));
    let mut mac = [0u8; 6];
    for (i, part) in hex.split(':').take(6).enumerate() {
        mac[i] = u8::from_str_radix(part, 16).expect("MAC byte");
    }
    mac
}

/// One TCP connection crafted by hand (see the module doc).
pub struct RawTcp {
    fd: OwnedFd,
    ifindex: i32,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// Next sequence number to send.
    pub snd_nxt: u32,
    /// Next sequence number expected from the server.
    pub rcv_nxt: u32,
    /// The server's bytes, in order.
    pub received: Vec<u8>,
    /// The server sent a RST.
    pub reset: bool,
    ip_id: u16,
}

impl RawTcp {
    /// Prepares the namespaces for the attacker's address and opens the
    /// packet socket; no packet is sent yet.
    pub fn new(pair: &NetPair, v6: bool, sport: u16, dport: u16) -> RawTcp {
        let src: IpAddr = if v6 { ATTACKER_V6 } else { ATTACKER_V4 }
            .parse()
            .expect("addr");
        let dst = pair.server_addr(v6, dport).ip();
        let src_mac = mac_of(&pair.client_ns, &pair.client_if);
        let dst_mac = mac_of(&pair.server_ns, &pair.server_if);
        let lladdr = src_mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        crate::netns::run(
            "ip",
            &[
                "-n",
                &pair.server_ns,
                "neigh",
                "replace",
                &src.to_string(),
                "lladdr",
                &lladdr,
                "dev",
                &pair.server_if,
                "nud",
                "permanent",
            ],
        );
        let iface = pair.client_if.clone();
        let (fd, ifindex) = in_netns(&pair.client_ns, move || {
            let name = std::ffi::CString::new(iface).expect("iface");
            // SAFETY: plain syscalls with valid arguments; the fd is owned
            // by the returned OwnedFd.
            unsafe {
                let idx = libc::if_nametoindex(name.as_ptr()) as i32;
                assert_ne!(idx, 0, "no client interface");
                let fd = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW,
                    i32::from(ETH_P_ALL.to_be()),
                );
                assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
                let fd = OwnedFd::from_raw_fd(fd);
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_protocol = ETH_P_ALL.to_be();
                sll.sll_ifindex = idx;
                let r = libc::bind(
                    fd.as_raw_fd(),
                    &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                );
                assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 50_000,
                };
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const libc::timeval as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                );
                (fd, idx)
            }
        })
        .join()
        .expect("packet socket");
        RawTcp {
            fd,
            ifindex,
            src_mac,
            dst_mac,
            src,
            dst,
            sport,
            dport,
            snd_nxt: 0x1000_0000 ^ (u32::from(sport) << 8),
            rcv_nxt: 0,
            received: Vec::new(),
            reset: false,
            ip_id: sport,
        }
    }

    /// Three-way handshake; true when the server answered.
    pub fn connect(&mut self, wait: Duration) -> bool {
        let isn = self.snd_nxt;
        let end = Instant::now() + wait;
        while Instant::now() < end {
            self.send_raw(SYN, isn, 0, &[], &Craft::default());
            let got = self.poll(Duration::from_millis(500), |s, flags, seq, ack, _| {
                if flags & (SYN | ACK) == SYN | ACK && ack == isn.wrapping_add(1) {
                    s.rcv_nxt = seq.wrapping_add(1);
                    true
                } else {
                    false
                }
            });
            if got {
                self.snd_nxt = isn.wrapping_add(1);
                self.send_raw(ACK, self.snd_nxt, self.rcv_nxt, &[], &Craft::default());
                return true;
            }
        }
        false
    }

    /// Sends `payload` as the next bytes of the stream (PSH|ACK, crafted
    /// as `craft` says) and advances `snd_nxt`.
    pub fn send(&mut self, payload: &[u8], craft: &Craft) {
        let flags = if craft.urg_ptr != 0 {
            PSH | ACK | URG
        } else {
            PSH | ACK
        };
        self.send_raw(flags, self.snd_nxt, self.rcv_nxt, payload, craft);
        self.snd_nxt = self.snd_nxt.wrapping_add(payload.len() as u32);
    }

    /// Sends one segment exactly as given (does not touch `snd_nxt`).
    pub fn send_raw(&mut self, flags: u8, seq: u32, ack: u32, payload: &[u8], craft: &Craft) {
        let tcp = self.tcp_segment(flags, seq, ack, payload, craft);
        let frames = self.ip_frames(&tcp, craft);
        for f in frames {
            self.send_frame(&f, craft.vlan0_tags);
        }
    }

    /// Reads the server's segments (ACKing its data) until `done` holds
    /// for the bytes received so far, or `wait` passes. True when it held.
    pub fn read_until(&mut self, wait: Duration, done: impl Fn(&[u8]) -> bool) -> bool {
        let end = Instant::now() + wait;
        loop {
            if done(&self.received) {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || self.reset {
                return false;
            }
            self.poll(left.min(Duration::from_millis(100)), |_, _, _, _, _| false);
        }
    }

    /// Reads until a complete reply (a line whose 4th byte is a space)
    /// follows the bytes already received; returns it, or `None`.
    pub fn reply(&mut self, wait: Duration) -> Option<String> {
        let start = self.received.len();
        let ok = self.read_until(wait, |b| {
            b[start.min(b.len())..]
                .split(|&c| c == b'\n')
                .any(|l| l.len() >= 4 && l[3] == b' ')
        });
        ok.then(|| String::from_utf8_lossy(&self.received[start..]).into_owned())
    }

    /// Receives frames for at most `wait`; each segment of this connection
    /// is handled (in-order data appended and ACKed, FIN ACKed, RST noted)
    /// and passed to `stop`; returns true as soon as `stop` does.
    fn poll(
        &mut self,
        wait: Duration,
        mut stop: impl FnMut(&mut RawTcp, u8, u32, u32, &[u8]) -> bool,
    ) -> bool {
        let end = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            // SAFETY: buf is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n <= 0 {
                continue;
            }
            let Some((flags, seq, ack, payload)) = self.parse(&buf[..n as usize]) else {
                continue;
            };
            let payload = payload.to_vec();
            if flags & RST != 0 {
                self.reset = true;
            }
            if !payload.is_empty() && seq == self.rcv_nxt {
                self.received.extend_from_slice(&payload);
                self.rcv_nxt = self.rcv_nxt.wrapping_add(payload.len() as u32);
            }
            if flags & FIN != 0 && seq.wrapping_add(payload.len() as u32) == self.rcv_nxt {
                self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            }
            if !payload.is_empty() || flags & FIN != 0 {
                self.send_raw(ACK, self.snd_nxt, self.rcv_nxt, &[], &Craft::default());
            }
            if stop(self, flags, seq, ack, &payload) {
                return true;
            }
        }
        false
    }

    /// (flags, seq, ack, payload) of a frame from the server to us.
    fn parse<'a>(&self, f: &'a [u8]) -> Option<(u8, u32, u32, &'a [u8])> {
        let mut at = 12;
        let mut et = u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]);
        at += 2;
        while et == 0x8100 || et == ETH_P_8021AD {
            et = u16::from_be_bytes([*f.get(at + 2)?, *f.get(at + 3)?]);
            at += 4;
        }
        let (src, dst, proto, l4, end): (IpAddr, IpAddr, u8, usize, usize) = match et {
            ETH_P_IP => {
                let h = f.get(at..at + 20)?;
                let ihl = usize::from(h[0] & 0x0f) * 4;
                let tot = usize::from(u16::from_be_bytes([h[2], h[3]]));
                let s = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
                let d = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
                (s.into(), d.into(), h[9], at + ihl, at + tot)
            }
            ETH_P_IPV6 => {
                let h = f.get(at..at + 40)?;
                let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
                let s: [u8; 16] = h[8..24].try_into().ok()?;
                let d: [u8; 16] = h[24..40].try_into().ok()?;
                (
                    Ipv6Addr::from(s).into(),
                    Ipv6Addr::from(d).into(),
                    h[6],
                    at + 40,
                    at + 40 + plen,
                )
            }
            _ => return None,
        };
        if proto != IPPROTO_TCP || src != self.dst || dst != self.src {
            return None;
        }
        let t = f.get(l4..end.min(f.len()))?;
        let th = t.get(..20)?;
        let sport = u16::from_be_bytes([th[0], th[1]]);
        let dport = u16::from_be_bytes([th[2], th[3]]);
        if sport != self.dport || dport != self.sport {
            return None;
        }
        let seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]);
        let ack = u32::from_be_bytes([th[8], th[9], th[10], th[11]]);
        let doff = usize::from(th[12] >> 4) * 4;
        Some((th[13], seq, ack, t.get(doff..)?))
    }

    fn tcp_segment(&self, flags: u8, seq: u32, ack: u32, payload: &[u8], craft: &Craft) -> Vec<u8> {
        let mut t = Vec::with_capacity(20 + payload.len());
        t.extend_from_slice(&self.sport.to_be_bytes());
        t.extend_from_slice(&self.dport.to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&ack.to_be_bytes());
        t.push(5 << 4);
        t.push(flags);
        t.extend_from_slice(&0xffffu16.to_be_bytes());
        t.extend_from_slice(&[0, 0]);
        t.extend_from_slice(&craft.urg_ptr.to_be_bytes());
        t.extend_from_slice(payload);
        let mut sum = 0u32;
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                sum = sum16(sum, &s.octets());
                sum = sum16(sum, &d.octets());
                sum += u32::from(IPPROTO_TCP) + t.len() as u32;
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                sum = sum16(sum, &s.octets());
                sum = sum16(sum, &d.octets());
                sum += u32::from(IPPROTO_TCP) + t.len() as u32;
            }
            _ => unreachable!("one family"),
        }
        let check = !fold(sum16(sum, &t));
        let check = check.wrapping_add(craft.checksum_delta);
        t[16..18].copy_from_slice(&check.to_be_bytes());
        t
    }

    /// The IP packets (one, or fragments) carrying `tcp`.
    fn ip_frames(&mut self, tcp: &[u8], craft: &Craft) -> Vec<(u16, Vec<u8>)> {
        self.ip_id = self.ip_id.wrapping_add(1);
        let id = self.ip_id;
        let mut cuts = vec![0];
        cuts.extend(craft.fragment_at.iter().copied().filter(|&c| c < tcp.len()));
        cuts.push(tcp.len());
        let fragmented = cuts.len() > 2;
        let mut out = Vec::new();
        for w in cuts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let more = b < tcp.len();
            let part = &tcp[a..b];
            match (self.src, self.dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    let frag = if fragmented {
                        ((a / 8) as u16) | if more { 0x2000 } else { 0 }
                    } else {
                        0x4000 // DF
                    };
                    let mut h = vec![0x45, 0];
                    h.extend_from_slice(&((20 + part.len()) as u16).to_be_bytes());
                    h.extend_from_slice(&id.to_be_bytes());
                    h.extend_from_slice(&frag.to_be_bytes());
                    h.extend_from_slice(&[64, IPPROTO_TCP, 0, 0]);
                    h.extend_from_slice(&s.octets());
                    h.extend_from_slice(&d.octets());
                    let c = !fold(sum16(0, &h));
                    h[10..12].copy_from_slice(&c.to_be_bytes());
                    h.extend_from_slice(part);
                    out.push((ETH_P_IP, h));
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    let mut ext = Vec::new();
                    let mut first_next = IPPROTO_TCP;
                    // Destination options first (they are per-fragment
                    // only when before the fragment header: keep them in
                    // every packet, the unfragmentable part).
                    for i in 0..craft.dstopts {
                        if i == 0 {
                            first_next = IPPROTO_DSTOPTS;
                        }
                        let next = if i + 1 < craft.dstopts {
                            IPPROTO_DSTOPTS
                        } else if fragmented {
                            IPPROTO_FRAGMENT
                        } else {
                            IPPROTO_TCP
                        };
                        ext.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
                    }
                    if fragmented {
                        if craft.dstopts == 0 {
                            first_next = IPPROTO_FRAGMENT;
                        }
                        let fo = ((a / 8) as u16) << 3 | u16::from(more);
                        ext.extend_from_slice(&[IPPROTO_TCP, 0]);
                        ext.extend_from_slice(&fo.to_be_bytes());
                        ext.extend_from_slice(&u32::from(id).to_be_bytes());
                    }
                    let mut h = vec![0x60, 0, 0, 0];
                    h.extend_from_slice(&((ext.len() + part.len()) as u16).to_be_bytes());
                    h.extend_from_slice(&[first_next, 64]);
                    h.extend_from_slice(&s.octets());
                    h.extend_from_slice(&d.octets());
                    h.extend_from_slice(&ext);
                    h.extend_from_slice(part);
                    out.push((ETH_P_IPV6, h));
                }
                _ => unreachable!("one family"),
            }
        }
        out
    }

    fn send_frame(&self, (ethertype, l3): &(u16, Vec<u8>), vlan0_tags: usize) {
        let mut f = Vec::with_capacity(14 + 4 * vlan0_tags + l3.len());
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        for _ in 0..vlan0_tags {
            f.extend_from_slice(&ETH_P_8021AD.to_be_bytes());
            f.extend_from_slice(&0u16.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(l3);
        // SAFETY: valid buffer and address for the duration of the call.
        unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = self.ifindex;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&self.dst_mac);
            let n = libc::sendto(
                self.fd.as_raw_fd(),
                f.as_ptr() as *const libc::c_void,
                f.len(),
                0,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            );
            assert_eq!(
                n,
                f.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_header() {
        // RFC 1071's example words.
        let words = [0x00u8, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum16(0, &words)), 0xddf2);
        assert_eq!(fold(sum16(0, &[0xff, 0xff, 0x00, 0x01])), 0x0001);
    }
}
