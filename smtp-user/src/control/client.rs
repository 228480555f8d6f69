//! The client's end of the control socket: one blocking request/response
//! exchange with a deadline, for `smtp-user ctl` and tests.

use std::{
    io::{self, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::protocol::{decode_response, encode_request, Request, Response};

/// Largest response line accepted (a flow table of a busy server).
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no monitor running (socket {} not found)", path.display())]
    NotRunning { path: PathBuf },
    #[error("no monitor answering on {} (stale socket: connection refused)", path.display())]
    Stale { path: PathBuf },
    #[error("permission denied on {}: the control socket is root-only", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("no answer from the monitor on {} within {timeout:?}", path.display())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid response on {}: {reason}", path.display())]
    Protocol { path: PathBuf, reason: String },
}

impl ControlError {
    /// True when no daemon is there to answer (missing or stale socket).
    pub fn is_not_running(&self) -> bool {
        matches!(
            self,
            ControlError::NotRunning { .. } | ControlError::Stale { .. }
        )
    }
}

/// Sends `req` to the daemon listening on `path` and waits at most
/// `timeout` (in total) for its answer. A [`Response::Error`] is a
/// successful exchange: the caller decides what it means.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ControlError> {
    let deadline = Instant::now() + timeout;
    let p = || path.to_path_buf();
    let io_err = |source: io::Error| match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            ControlError::Timeout { path: p(), timeout }
        }
        _ => ControlError::Io { path: p(), source },
    };
    let mut stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ControlError::NotRunning { path: p() },
        io::ErrorKind::ConnectionRefused => ControlError::Stale { path: p() },
        io::ErrorKind::PermissionDenied => ControlError::PermissionDenied { path: p() },
        _ => io_err(e),
    })?;
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(ControlError::Timeout { path: p(), timeout })
    };
    stream
        .set_write_timeout(Some(remaining()?))
        .map_err(io_err)?;
    match stream.write_all(encode_request(req).as_bytes()) {
        Ok(()) => {}
        // The server may answer (e.g. refuse the peer) and close before
        // reading: its answer is still readable.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(io_err(e)),
    }
    let mut line = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        stream
            .set_read_timeout(Some(remaining()?))
            .map_err(io_err)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        let got = chunk.get(..n).unwrap_or_default();
        let (part, done) = match memchr::memchr(b'\n', got) {
            Some(pos) => (got.get(..pos).unwrap_or_default(), true),
            None => (got, n == 0),
        };
        if line.len() + part.len() > MAX_RESPONSE {
            return Err(ControlError::Protocol {
                path: p(),
                reason: format!("response larger than {MAX_RESPONSE} bytes"),
            });
        }
        line.extend_from_slice(part);
        if done {
            break;
        }
    }
    if line.is_empty() {
        return Err(ControlError::Protocol {
            path: p(),
            reason: "connection closed without a response".into(),
        });
    }
    decode_response(&line).map_err(|e| ControlError::Protocol {
        path: p(),
        reason: e.to_string(),
    })
}
