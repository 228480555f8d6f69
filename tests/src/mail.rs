//! Real SMTP software in the test namespaces: Postfix's `smtp-sink` as the
//! server, `swaks` and Postfix's `smtp-source` as clients. Every process is
//! bounded in time and killed on drop.

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// Finds a tool on PATH or in /usr/sbin (where Debian puts smtp-sink).
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file());
    found
}

/// The tools a test needs, or a printed skip line naming the missing one
/// (`cargo xtask test` installs them: swaks, postfix).
pub fn require_tools(test: &str, names: &[&str]) -> bool {
    for n in names {
        if tool(n).is_none() {
            println!("{test}: skipped: `{n}` not installed (cargo xtask test installs it)");
            return false;
        }
    }
    true
}

/// `smtp-sink` listening in a namespace; killed on drop.
pub struct SmtpSink {
    child: Child,
}

impl SmtpSink {
    /// Starts `smtp-sink` on `addr:port` in `ns` with `backlog` and waits
    /// (bounded) until it accepts connections.
    pub fn start(ns: &str, listen: &str, extra: &[&str]) -> SmtpSink {
        let bin = tool("smtp-sink").expect("smtp-sink");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(bin)
            .args(extra)
            .args(["-u", "root", listen, "256"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn smtp-sink");
        let sink = SmtpSink { child };
        let end = Instant::now() + Duration::from_secs(10);
        let port = listen.rsplit(':').next().unwrap_or("25").to_string();
        while Instant::now() < end {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "ss", "-ltnH"])
                .output()
                .expect("ss");
            if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} ")) {
                return sink;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("smtp-sink did not start listening on {listen}");
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client tool in `ns` to completion, killed after `timeout`.
/// Its stdout is discarded (a client echoing a 5 MiB message would block
/// on a full pipe); stderr is returned.
pub fn run_in(ns: &str, tool_name: &str, args: &[&str], timeout: Duration) -> Output {
    let bin = tool(tool_name).unwrap_or_else(|| PathBuf::from(tool_name));
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("client output");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{tool_name} {args:?} did not finish within {timeout:?}");
}
