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
