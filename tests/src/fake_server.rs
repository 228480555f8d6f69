//! A fake SMTP server for protocol-error tests: `socat` listening in the
//! server namespace, running a small shell script per connection that
//! sends a given greeting and then answers `250 ok` to every line.
//! The script and its processes (socat forks one per connection) are
//! removed and killed on drop.

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::mail::tool;

/// `socat TCP-LISTEN` + script, in its own process group.
pub struct FakeServer {
    child: Child,
    script: PathBuf,
}

impl FakeServer {
    /// Listens on `addr:port` in `ns`; every connection first receives
    /// `greeting` (raw bytes, line endings included), then `250 ok\r\n`
    /// for each line it sends.
    pub fn start(ns: &str, addr: &str, port: u16, greeting: &[u8]) -> FakeServer {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let script = std::env::temp_dir().join(format!("fake-smtp-{}-{n}.sh", std::process::id()));
        let escaped: String = greeting.iter().map(|b| format!("\\{b:03o}")).collect();
        let text = format!(
            "#!/bin/sh\nprintf '{escaped}'\nwhile IFS= read -r line; do printf '250 ok\\r\\n'; done\n"
        );
        std::fs::write(&script, text).expect("write fake server script");
        let socat = tool("socat").expect("socat");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(socat)
            .arg(format!("TCP-LISTEN:{port},bind={addr},reuseaddr,fork"))
            .arg(format!("EXEC:/bin/sh {}", script.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn socat");
        let server = FakeServer { child, script };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "ss", "-ltnH"])
                .output()
                .expect("ss");
            if String::from_utf8_lossy(&out.stdout).contains(&format!("{addr}:{port} ")) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("socat did not start listening on {addr}:{port}");
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // The group socat leads: socat and the per-connection children.
        let pgid = self.child.id() as i32;
        // SAFETY: signalling the process group of our own child.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.script);
    }
}
