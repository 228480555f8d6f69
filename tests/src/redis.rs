//! A real `redis-server` (Debian's) run by a test inside a namespace, in a
//! temporary directory, stopped on drop; `redis-cli` against it.

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// A running redis-server; SIGTERM (which saves the data set) on stop/drop.
pub struct RedisServer {
    child: Option<Child>,
    /// What runs redis-server and redis-cli (`ip netns exec NS`, `taskset`).
    launcher: Vec<String>,
    /// Addresses it listens on (the first is used by `cli`).
    pub bind: Vec<String>,
    pub port: u16,
    pub password: Option<String>,
    pub dir: PathBuf,
}

impl RedisServer {
    /// Starts redis-server in `ns` listening on `bind`:`port`, with data in
    /// `dir` (kept across [`RedisServer::restart`]); waits until it answers.
    pub fn start(
        ns: &str,
        bind: &[&str],
        port: u16,
        password: Option<&str>,
        dir: PathBuf,
    ) -> RedisServer {
        Self::launch(&["ip", "netns", "exec", ns], bind, port, password, dir)
    }

    /// Like [`RedisServer::start`] in this namespace, run by `prefix`
    /// (e.g. `taskset -c 1`), without a password.
    pub fn start_with_prefix(
        prefix: &[&str],
        bind: &[&str],
        port: u16,
        dir: PathBuf,
    ) -> RedisServer {
        Self::launch(prefix, bind, port, None, dir)
    }

    fn launch(
        launcher: &[&str],
        bind: &[&str],
        port: u16,
        password: Option<&str>,
        dir: PathBuf,
    ) -> RedisServer {
        let mut r = RedisServer {
            child: None,
            launcher: launcher.iter().map(|s| s.to_string()).collect(),
            bind: bind.iter().map(|s| s.to_string()).collect(),
            port,
            password: password.map(str::to_string),
            dir,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("redis dir");
        let mut args: Vec<String> = vec!["--port".into(), self.port.to_string(), "--bind".into()];
        args.extend(self.bind.iter().cloned());
        args.extend(
            [
                "--dir",
                self.dir.to_str().expect("utf-8 dir"),
                "--save",
                "3600 1",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        if let Some(p) = &self.password {
            args.extend(["--requirepass".to_string(), p.clone()]);
        }
        let child = Command::new(&self.launcher[0])
            .args(&self.launcher[1..])
            .arg("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (cargo xtask prereqs installs it)");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.cli(&["PING"]);
            if String::from_utf8_lossy(&out.stdout).trim() == "PONG" {
                return;
            }
            assert!(Instant::now() < end, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis-cli ARGS` against the server (raw output, one reply line each).
    pub fn cli(&self, args: &[&str]) -> Output {
        let port = self.port.to_string();
        let mut c = Command::new(&self.launcher[0]);
        c.args(&self.launcher[1..]);
        c.args(["redis-cli", "--raw", "-h", &self.bind[0], "-p", &port]);
        if let Some(p) = &self.password {
            c.args(["--no-auth-warning", "-a", p]);
        }
        c.args(args).output().expect("redis-cli")
    }

    /// `cli`'s stdout as text.
    pub fn cli_text(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.cli(args).stdout).into_owned()
    }

    /// Stops the server (SIGTERM: it saves the data set and exits).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child (`ip netns exec` and
            // `taskset` exec redis-server).
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same address and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
