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

impl SmtpSink {
    /// Process id of smtp-sink (`ip netns exec` execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a client run ended.
#[derive(Debug)]
pub struct Run {
    /// Exit status; `None` when it was killed at the timeout.
    pub status: Option<std::process::ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// From spawn to exit (or to the kill).
    pub elapsed: Duration,
}

impl Run {
    /// Exited by itself with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Exit code, `None` when killed.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

/// Runs `tool_name args` in `ns`, capturing both outputs (read on threads,
/// so a chatty client never blocks); killed after `timeout` (then
/// `status` is `None`). Never panics on the tool's behaviour.
pub fn run_timed(ns: &str, tool_name: &str, args: &[&str], timeout: Duration) -> Run {
    use std::io::Read;
    let bin = tool(tool_name).unwrap_or_else(|| PathBuf::from(tool_name));
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let end = start + timeout;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(st);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    Run {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed,
    }
}

/// `swaks --server SERVER ARGS --timeout T` in `ns`: swaks gives up after
/// `swaks_timeout` per step, the process is killed 10 s after that.
pub fn swaks(ns: &str, server: &str, args: &[&str], swaks_timeout: Duration) -> Run {
    let t = format!("{}s", swaks_timeout.as_secs().max(1));
    let mut all = vec!["--server", server, "--timeout", &t];
    all.extend_from_slice(args);
    run_timed(
        ns,
        "swaks",
        &all,
        swaks_timeout * 3 + Duration::from_secs(10),
    )
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
