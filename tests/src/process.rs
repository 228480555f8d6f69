//! The `smtp-user` binary run inside a namespace (`nsenter --net`, which
//! keeps the mount namespace so pins are visible), killed on drop.

use std::{
    path::Path,
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

/// A running `smtp-user` process; SIGKILLed on drop if still alive.
pub struct Daemon {
    child: Child,
}

fn command(ns: &str, args: &[&str]) -> Command {
    command_with(ns, &[], args)
}

fn command_with(ns: &str, prefix: &[&str], args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}"))
        .args(prefix)
        .arg(crate::smtp_user_bin())
        .args(args)
        .env_remove("RUST_LOG");
    c
}

impl Daemon {
    pub fn spawn(ns: &str, args: &[&str]) -> Daemon {
        let child = command(ns, args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn smtp-user");
        Daemon { child }
    }

    /// `smtp-user run --iface <server veth> ARGS` in the server namespace
    /// of `pair`, once its pins exist (the datapath is attached); panics
    /// when it does not come up within 30 s.
    ///
    /// `SMTP_E2E_WORKERS=N` in the environment adds `--workers N` unless
    /// `args` choose: the whole live suite runs with N parsing workers
    /// (`run`'s default is one per core).
    pub fn monitor(pair: &crate::NetPair, args: &[&str]) -> Daemon {
        let mut full = vec!["run", "--iface", &pair.server_if];
        let workers = std::env::var("SMTP_E2E_WORKERS").unwrap_or_default();
        if !workers.is_empty() && !args.contains(&"--workers") {
            full.extend(["--workers", workers.as_str()]);
        }
        full.extend_from_slice(args);
        let mut d = Daemon::spawn(&pair.server_ns, &full);
        let pins = std::path::PathBuf::from(smtp_user::datapath::DEFAULT_PIN_ROOT)
            .join(&pair.server_if)
            .join(smtp_common::MAP_VERDICTS);
        let up = wait_path(&pins, Duration::from_secs(30));
        assert!(up && d.running(), "monitor did not start: {full:?}");
        d
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the exit.
    pub fn terminate(mut self, timeout: Duration) -> (ExitStatus, String) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return (st, err);
            }
            assert!(Instant::now() < end, "smtp-user did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    /// SIGTERM (so the daemon detaches and unpins), SIGKILL after 5 s.
    fn drop(&mut self) {
        if !self.running() {
            return;
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(5);
        while self.running() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs `smtp-user args` in `ns` to completion (killed after `timeout`).
pub fn run_to_end(ns: &str, args: &[&str], timeout: Duration) -> Output {
    run_to_end_with(ns, &[], args, timeout)
}

/// Like [`run_to_end`], with `prefix` (e.g. a `setpriv` command) before the
/// binary.
pub fn run_to_end_with(ns: &str, prefix: &[&str], args: &[&str], timeout: Duration) -> Output {
    let mut child = command_with(ns, prefix, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn smtp-user");
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("smtp-user {args:?} did not exit within {timeout:?}");
}

/// Waits (bounded) until `path` exists.
pub fn wait_path(path: &Path, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    path.exists()
}
