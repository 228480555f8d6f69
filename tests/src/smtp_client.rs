//! A minimal scripted SMTP client for tests and benchmarks that need exact
//! control over what is sent when (swaks and smtp-source decide that
//! themselves): connect, read the greeting, send lines, read whole replies.
//! Every read is bounded by the socket's read timeout.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// Lines read per reply at most (a reply longer than that counts as none).
const MAX_REPLY_LINES: usize = 64;

/// One SMTP client connection.
pub struct SmtpClient {
    /// The socket, for writes and socket options.
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl SmtpClient {
    /// Connects (within `timeout`), sets `timeout` as read timeout and
    /// TCP_NODELAY, and reads the greeting; `None` when any step fails.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Option<(SmtpClient, String)> {
        let stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
        stream.set_read_timeout(Some(timeout)).ok()?;
        stream.set_nodelay(true).ok()?;
        let reader = BufReader::new(stream.try_clone().ok()?);
        let mut c = SmtpClient { stream, reader };
        let greeting = c.reply()?;
        Some((c, greeting))
    }

    /// One complete reply (up to the `CODE SP` line); `None` on timeout,
    /// close or an endless reply.
    pub fn reply(&mut self) -> Option<String> {
        let mut all = String::new();
        for _ in 0..MAX_REPLY_LINES {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(all);
            }
        }
        None
    }

    /// Sends `bytes` as they are (no reply awaited).
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Sends `line` (which carries its own line ending) and reads the reply.
    pub fn cmd(&mut self, line: &str) -> Option<String> {
        if !self.send(line.as_bytes()) {
            return None;
        }
        self.reply()
    }
}
