//! The service manager's notification protocol (systemd's `sd_notify(3)`):
//! one datagram of `KEY=VALUE` lines sent to the unix socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract name written `@name`).
//!
//! `run` sends `READY=1` once its programs are attached and pinned and the
//! control socket answers, `RELOADING=1` … `READY=1` around a SIGHUP reload,
//! `STOPPING=1` when it stops, and `WATCHDOG=1` from the pipeline worker at
//! half the period of `$WATCHDOG_USEC` (so a wedged pipeline stops the
//! pings and the manager restarts the service). Without `$NOTIFY_SOCKET`
//! (not started by a manager) there is no [`Notifier`] and nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `$WATCHDOG_USEC` when set (and meant for this process).
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`/`$WATCHDOG_PID`; `None`
    /// when not started by a service manager (or the socket is unusable,
    /// which is logged).
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog = watchdog_from(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        match Notifier::connect(std::path::Path::new(&path), watchdog) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(socket = ?path, error = %e, "cannot use the service manager's notification socket");
                None
            }
        }
    }

    /// A notifier sending to `path` (`@name`: abstract socket).
    pub fn connect(
        path: &std::path::Path,
        watchdog: Option<Duration>,
    ) -> std::io::Result<Notifier> {
        let addr = match path.to_str().and_then(|s| s.strip_prefix('@')) {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())?
            }
            None => SocketAddr::from_pathname(path)?,
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
            watchdog,
        })
    }

    /// How often to send `WATCHDOG=1`: half the manager's timeout.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Started: programs attached and pinned, control socket open.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A reload (SIGHUP) begins; [`Self::ready`] ends it.
    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// Stopping (detaching, unpinning).
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Still alive.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    fn send(&self, msg: &str) {
        if let Err(e) = self.socket.send_to_addr(msg.as_bytes(), &self.addr) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }
}

/// The watchdog period, when `$WATCHDOG_USEC` is a positive number and
/// `$WATCHDOG_PID` (if set) is this process.
fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    match usec?.trim().parse::<u64>() {
        Ok(0) | Err(_) => None,
        Ok(us) => Some(Duration::from_micros(us)),
    }
}

/// A status text on one line (the protocol is line-based).
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c == '\n' { ' ' } else { c }).collect()
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we own; the result is checked.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(ts.tv_nsec as u64 / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_period_is_for_this_process_only() {
        assert_eq!(
            watchdog_from(Some("2000000"), None, 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            watchdog_from(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(watchdog_from(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_from(None, None, 7), None);
    }

    #[test]
    fn datagrams_reach_the_socket() {
        let dir = std::env::temp_dir().join(format!("notify-unit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).expect("bind");
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = Notifier::connect(&path, Some(Duration::from_secs(4))).expect("connect");
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
        n.ready("monitoring\neth0");
        n.watchdog();
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).expect("ready");
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=monitoring eth0");
        let len = listener.recv(&mut buf).expect("watchdog");
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
