//! TCP endpoints for the tests, each on a thread inside a namespace, with
//! timeouts on every socket operation.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    thread::JoinHandle,
    time::Duration,
};

use crate::netns::in_netns;

pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A server that accepts `conns` connections; on each, sends `greeting`,
/// reads until EOF, then closes. Returns what each connection received.
pub fn one_shot_server(
    ns: &str,
    addr: SocketAddr,
    conns: usize,
    greeting: Vec<u8>,
) -> JoinHandle<Vec<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = in_netns(ns, move || {
        let l = TcpListener::bind(addr).expect("bind");
        tx.send(()).expect("ready");
        let mut got = Vec::new();
        for _ in 0..conns {
            let (mut s, _) = l.accept().expect("accept");
            s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            s.write_all(&greeting).expect("greet");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).expect("read");
            got.push(buf);
        }
        got
    });
    rx.recv_timeout(IO_TIMEOUT).expect("server ready");
    h
}

/// Like [`client`], with an IPv6 hop-by-hop options header (PadN) on every
/// packet the client sends (exercises extension-header parsing).
pub fn client_with_hopopts(
    ns: &str,
    server: SocketAddr,
    data: Vec<u8>,
    expect_greeting: usize,
) -> JoinHandle<(SocketAddr, Vec<u8>)> {
    in_netns(ns, move || {
        // The option must be set before connecting to cover the SYN, so the
        // socket is made with libc.
        // SAFETY: plain socket syscalls on a socket we own.
        let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0, "socket");
        // Hop-by-hop header: next header (kernel fills), length 0 (8 bytes),
        // PadN option of 4 bytes.
        let hbh: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_HOPOPTS,
                hbh.as_ptr() as *const libc::c_void,
                hbh.len() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "IPV6_HOPOPTS: {}", std::io::Error::last_os_error());
        let SocketAddr::V6(v6) = server else {
            panic!("IPv6 server address expected")
        };
        let sa = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: v6.port().to_be(),
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr {
                s6_addr: v6.ip().octets(),
            },
            sin6_scope_id: 0,
        };
        let rc = unsafe {
            libc::connect(
                fd,
                &sa as *const libc::sockaddr_in6 as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        // SAFETY: fd is a connected socket we own.
        let mut s = unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut greet = vec![0u8; expect_greeting];
        s.read_exact(&mut greet).expect("greeting");
        s.write_all(&data).expect("send");
        s.shutdown(Shutdown::Write).expect("shutdown");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("read");
        greet.extend(rest);
        (s.local_addr().expect("local"), greet)
    })
}

/// Connects from namespace `ns`, reads `expect_greeting` bytes, sends
/// `data` in one write, shuts down writing, reads to EOF. Returns (local
/// address, bytes received).
pub fn client(
    ns: &str,
    server: SocketAddr,
    data: Vec<u8>,
    expect_greeting: usize,
) -> JoinHandle<(SocketAddr, Vec<u8>)> {
    in_netns(ns, move || {
        let mut s = TcpStream::connect_timeout(&server, IO_TIMEOUT).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut greet = vec![0u8; expect_greeting];
        s.read_exact(&mut greet).expect("greeting");
        s.write_all(&data).expect("send");
        s.shutdown(Shutdown::Write).expect("shutdown");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("read");
        greet.extend(rest);
        (s.local_addr().expect("local"), greet)
    })
}
