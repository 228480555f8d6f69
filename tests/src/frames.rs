//! Hand-built Ethernet frames sent with an AF_PACKET socket, to exercise the
//! kernel parser on what a TCP socket never produces (VLAN tags, IPv4
//! options, IPv6 extension headers, fragments, truncation).
//!
//! Whole segments with right checksums, and IP fragments of them, come from
//! the product's one frame builder, re-exported here ([`TcpPacket`],
//! [`ethernet_frame`]): a frame the server must accept is built there. The
//! header-chain pieces below (`tcp`, `ipv4`, `ipv6`, extension headers)
//! write no checksums: they craft chains the receiving stack drops anyway.
//! TCP checksums of those pieces are left zero: the kernel program finds
//! them bad (and drops them while enforcing), as the receiving stack does.
//! `attacker.rs` builds frames with checksums, for a real server.

use std::net::{Ipv4Addr, Ipv6Addr};

pub use smtp_user::capture::builder::{ethernet_frame, TcpPacket};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

/// A 20-byte TCP header (data offset 5) followed by `payload`.
pub fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(20 + payload.len());
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.push(5 << 4);
    v.push(flags);
    v.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    v.extend_from_slice(payload);
    v
}

/// IPv4 header (with `options`, a multiple of 4 bytes) around `l4`.
/// `frag` is the flags+fragment offset field.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, options: &[u8], frag: u16, l4: &[u8]) -> Vec<u8> {
    let ihl = (20 + options.len()) / 4;
    let tot = (ihl * 4 + l4.len()) as u16;
    let mut v = vec![0x40 | ihl as u8, 0];
    v.extend_from_slice(&tot.to_be_bytes());
    v.extend_from_slice(&[0x12, 0x34]);
    v.extend_from_slice(&frag.to_be_bytes());
    v.extend_from_slice(&[64, 6, 0, 0]);
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(options);
    v.extend_from_slice(l4);
    v
}

/// IPv6 header with `next` header, around `rest` (extension headers + L4).
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    v.extend_from_slice(&[next, 64]);
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(rest);
    v
}

/// An 8-byte options-style extension header (hop-by-hop, destination
/// options, routing) with a PadN option.
pub fn ext8(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}

/// A 16-byte options-style extension header (length field 1).
pub fn ext16(next: u8) -> Vec<u8> {
    let mut v = vec![next, 1, 1, 12];
    v.extend_from_slice(&[0; 12]);
    v
}

/// IPv6 fragment header; `offset` in 8-byte units.
pub fn frag6(next: u8, offset: u16, more: bool) -> Vec<u8> {
    let fo = (offset << 3) | more as u16;
    let mut v = vec![next, 0];
    v.extend_from_slice(&fo.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 9]);
    v
}

/// Ethernet frame to broadcast with VLAN `tags` (TPIDs, VID 7) then `ethertype`.
pub fn eth(tags: &[u16], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff; 6];
    v.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    for t in tags {
        v.extend_from_slice(&t.to_be_bytes());
        v.extend_from_slice(&7u16.to_be_bytes());
    }
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(l3);
    v
}

/// Sends `frames` out of `iface` (in the calling thread's namespace).
pub fn send(iface: &str, frames: &[Vec<u8>]) {
    let name = std::ffi::CString::new(iface).expect("iface");
    // SAFETY: plain syscalls with valid arguments on a socket we own.
    unsafe {
        let idx = libc::if_nametoindex(name.as_ptr());
        assert_ne!(idx, 0, "no interface {iface}");
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = idx as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        for f in frames {
            let n = libc::sendto(
                fd,
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
        libc::close(fd);
    }
}
