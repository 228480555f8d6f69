//! Sending forged packets through a raw IP socket: the caller supplies the
//! whole packet, IP header included (`IPPROTO_RAW`, which implies
//! `IP_HDRINCL` for IPv4 and, since Linux 4.5, `IPV6_HDRINCL` for IPv6), so
//! the source address can be the peer's. Needs `CAP_NET_RAW`.

use std::{
    io,
    mem::size_of,
    net::SocketAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// Sends `packet` (a complete IPv4 or IPv6 packet) towards `dst`, routed
/// by the caller's network namespace.
pub fn send_packet(dst: SocketAddr, packet: &[u8]) -> Result<(), (&'static str, io::Error)> {
    let family = match dst {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(("socket", io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Port 0: the destination port is in the packet's TCP header; a raw
    // socket's "port" would be a protocol number.
    let n = match dst {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: valid fd; packet and address with their lengths.
            unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&sin as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above.
            unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&sin6 as *const libc::sockaddr_in6).cast(),
                    size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if n < 0 {
        return Err(("sendto", io::Error::last_os_error()));
    }
    if n as usize != packet.len() {
        return Err((
            "sendto",
            io::Error::new(io::ErrorKind::WriteZero, "packet sent in part"),
        ));
    }
    Ok(())
}
