//! The daemon's end of the control socket: binds the Unix socket safely,
//! checks who connects, reads one bounded request per connection and hands
//! it to the daemon's event loop with a [`Responder`] for the answer.
//!
//! Connections are served by background tasks (at most
//! [`MAX_CONNECTIONS`] at a time, each bounded by a deadline), so a slow or
//! hostile client never stalls the daemon; the daemon only sees decoded
//! requests from trusted peers through [`ControlServer::next`]. Everything
//! refused is answered with an error line and counted in
//! [`ControlCounters`].

use std::{
    io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use serde::Serialize;
use tokio::{
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
    task::{JoinHandle, JoinSet},
    time::Instant,
};

use super::protocol::{decode_request, encode_response, Request, Response};

/// Largest request line accepted, newline excluded.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Time a connection may take from accept to the last byte of the reply,
/// the daemon's own answer included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are answered "busy" and closed.
pub const MAX_CONNECTIONS: usize = 16;
/// Decoded requests waiting for [`ControlServer::next`].
const QUEUE: usize = 16;

/// Counters of the control socket, monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ControlCounters {
    /// Connections accepted.
    pub connections: u64,
    /// Requests handed to the daemon.
    pub requests: u64,
    /// Peers refused because their uid is not trusted.
    pub refused_peers: u64,
    /// Request lines that were not a valid request.
    pub malformed: u64,
    /// Requests longer than [`MAX_REQUEST`].
    pub oversize: u64,
    /// Connections closed at their deadline.
    pub timeouts: u64,
    /// Connections refused because [`MAX_CONNECTIONS`] were being served.
    pub busy: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    refused_peers: AtomicU64,
    malformed: AtomicU64,
    oversize: AtomicU64,
    timeouts: AtomicU64,
    busy: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ControlCounters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ControlCounters {
            connections: g(&self.connections),
            requests: g(&self.requests),
            refused_peers: g(&self.refused_peers),
            malformed: g(&self.malformed),
            oversize: g(&self.oversize),
            timeouts: g(&self.timeouts),
            busy: g(&self.busy),
        }
    }
}

/// Answers one request. Dropping it unanswered sends the client an error.
#[derive(Debug)]
pub struct Responder {
    tx: oneshot::Sender<Response>,
}

impl Responder {
    /// Sends the answer; the connection's task writes it. Never blocks.
    pub fn reply(self, resp: Response) {
        // The client may have gone (deadline passed): nothing to tell it.
        let _ = self.tx.send(resp);
    }
}

/// A bound control socket. Removes its socket file when dropped.
pub struct ControlServer {
    path: PathBuf,
    /// (device, inode) of the socket file we bound: only that file is removed.
    ident: (u64, u64),
    requests: mpsc::Receiver<(Request, Responder)>,
    accept: JoinHandle<()>,
    counters: Arc<Counters>,
}

/// `e` with the action and path in its message, kind kept.
fn in_path(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Clears the way for binding at `path`: removes a stale socket (nobody
/// answers on it), refuses a live one or anything that is not a socket.
fn clear_stale(path: &Path) -> io::Result<()> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !md.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another process is serving {}: is a monitor already running?",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale control socket");
            std::fs::remove_file(path)
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("probing existing socket {}: {e}", path.display()),
        )),
    }
}

impl ControlServer {
    /// Binds the control socket at `path` with [`CONNECTION_TIMEOUT`]. See
    /// [`ControlServer::bind_with_timeout`].
    pub fn bind(path: &Path) -> io::Result<ControlServer> {
        ControlServer::bind_with_timeout(path, CONNECTION_TIMEOUT)
    }

    /// Binds the control socket at `path`: creates a missing parent
    /// directory with mode 0700, replaces a stale socket (one nobody
    /// answers on) but refuses a live one or a non-socket file, binds and
    /// sets mode 0600. Only peers with uid 0 or this process's effective uid
    /// are served. Must be called inside a tokio runtime (the accept task is
    /// spawned on it).
    pub fn bind_with_timeout(path: &Path, timeout: Duration) -> io::Result<ControlServer> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| in_path("creating directory", parent, e))?;
            }
        }
        clear_stale(path)?;
        let std_listener = std::os::unix::net::UnixListener::bind(path)
            .map_err(|e| in_path("binding", path, e))?;
        // Between bind and chmod the socket has the umask's mode; the 0700
        // directory and the peer uid check cover that window.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| in_path("setting mode 0600 on", path, e))?;
        let md = std::fs::metadata(path).map_err(|e| in_path("reading", path, e))?;
        std_listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(std_listener)?;
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let accept = tokio::spawn(accept_loop(listener, tx, counters.clone(), timeout));
        tracing::info!(path = %path.display(), "control socket listening");
        Ok(ControlServer {
            path: path.to_path_buf(),
            ident: (md.dev(), md.ino()),
            requests: rx,
            accept,
            counters,
        })
    }

    /// The next request from a trusted peer. Cancel-safe: a request is
    /// never lost when this future is dropped (e.g. in `tokio::select!`).
    /// `None` only if the accept task has died.
    pub async fn next(&mut self) -> Option<(Request, Responder)> {
        self.requests.recv().await
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters so far.
    pub fn counters(&self) -> ControlCounters {
        self.counters.snapshot()
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.accept.abort();
        match std::fs::symlink_metadata(&self.path) {
            Ok(md) if (md.dev(), md.ino()) == self.ident => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "control socket not removed");
                }
            }
            // Replaced by someone else, or already gone: not ours to remove.
            _ => {}
        }
    }
}

async fn accept_loop(
    listener: UnixListener,
    tx: mpsc::Sender<(Request, Responder)>,
    counters: Arc<Counters>,
    timeout: Duration,
) {
    // Dropping this task (server dropped) drops the set: every connection
    // task is aborted with it.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    Counters::bump(&counters.connections);
                    if conns.len() >= MAX_CONNECTIONS {
                        Counters::bump(&counters.busy);
                        tracing::warn!("control socket busy: connection refused");
                        let line = encode_response(&Response::Error("busy: too many control connections".into()));
                        let _ = stream.try_write(line.as_bytes());
                        continue;
                    }
                    conns.spawn(serve(stream, tx.clone(), counters.clone(), timeout));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Uids allowed to talk to the daemon: root and the daemon's own user.
fn trusted(uid: u32) -> bool {
    // SAFETY: geteuid cannot fail.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

async fn serve(
    stream: UnixStream,
    tx: mpsc::Sender<(Request, Responder)>,
    counters: Arc<Counters>,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    let answer = tokio::time::timeout_at(deadline, exchange(&stream, &tx, &counters)).await;
    let resp = match answer {
        Ok(Some(resp)) => resp,
        Ok(None) => return,
        Err(_) => {
            Counters::bump(&counters.timeouts);
            tracing::debug!("control connection timed out");
            // Best effort: the client may still read this.
            let line = encode_response(&Response::Error(format!(
                "timeout: the exchange did not complete within {timeout:?}"
            )));
            let _ = stream.try_write(line.as_bytes());
            return;
        }
    };
    let line = encode_response(&resp);
    if tokio::time::timeout_at(deadline, write_all(&stream, line.as_bytes()))
        .await
        .is_err()
    {
        Counters::bump(&counters.timeouts);
    }
}

/// Reads, checks and dispatches one request; the response to write, or
/// `None` when there is nobody to answer.
async fn exchange(
    stream: &UnixStream,
    tx: &mpsc::Sender<(Request, Responder)>,
    counters: &Counters,
) -> Option<Response> {
    match stream.peer_cred() {
        Ok(cred) if trusted(cred.uid()) => {}
        Ok(cred) => {
            Counters::bump(&counters.refused_peers);
            tracing::warn!(uid = cred.uid(), pid = ?cred.pid(), "control peer refused");
            return Some(Response::Error(format!(
                "permission denied: uid {} may not control the monitor (root only)",
                cred.uid()
            )));
        }
        Err(e) => {
            Counters::bump(&counters.refused_peers);
            return Some(Response::Error(format!(
                "peer credentials unavailable: {e}"
            )));
        }
    }
    let line = match read_line(stream).await {
        Ok(Some(line)) => line,
        Ok(None) => return None,
        Err(ReadError::TooLarge) => {
            Counters::bump(&counters.oversize);
            return Some(Response::Error(format!(
                "request larger than {MAX_REQUEST} bytes"
            )));
        }
        Err(ReadError::Io(e)) => {
            tracing::debug!(error = %e, "control connection read failed");
            return None;
        }
    };
    let req = match decode_request(&line) {
        Ok(req) => req,
        Err(e) => {
            Counters::bump(&counters.malformed);
            return Some(Response::Error(format!("malformed request: {e}")));
        }
    };
    Counters::bump(&counters.requests);
    let (rtx, rrx) = oneshot::channel();
    if tx.send((req, Responder { tx: rtx })).await.is_err() {
        return Some(Response::Error("the monitor is shutting down".into()));
    }
    Some(
        rrx.await
            .unwrap_or_else(|_| Response::Error("the monitor dropped the request".into())),
    )
}

enum ReadError {
    TooLarge,
    Io(io::Error),
}

/// Reads up to the first newline (excluded) or EOF; `None` on EOF before
/// any byte. Bytes after the newline are ignored.
async fn read_line(stream: &UnixStream) -> Result<Option<Vec<u8>>, ReadError> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        stream.readable().await.map_err(ReadError::Io)?;
        let n = match stream.try_read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        let got = chunk.get(..n).unwrap_or_default();
        if n == 0 {
            return Ok((!line.is_empty()).then_some(line));
        }
        let (part, done) = match memchr::memchr(b'\n', got) {
            Some(pos) => (got.get(..pos).unwrap_or_default(), true),
            None => (got, false),
        };
        if line.len() + part.len() > MAX_REQUEST {
            return Err(ReadError::TooLarge);
        }
        line.extend_from_slice(part);
        if done {
            return Ok(Some(line));
        }
    }
}

async fn write_all(stream: &UnixStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        match stream.try_write(buf) {
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
