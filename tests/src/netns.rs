//! Network namespaces and veth pairs made for one test, removed on drop.

use std::{
    fs::File,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Client and server namespaces joined by a veth pair.
///
/// Addresses: client 198.18.0.1 / 2001:2::1, server 198.18.0.2 / 2001:2::2
/// (each pair lives in its own namespaces, so tests can run in parallel).
pub struct NetPair {
    pub client_ns: String,
    pub server_ns: String,
    /// Veth end in the client namespace.
    pub client_if: String,
    /// Veth end in the server namespace (the monitor attaches here).
    pub server_if: String,
}

pub const CLIENT_V4: &str = "198.18.0.1";
pub const SERVER_V4: &str = "198.18.0.2";
pub const CLIENT_V6: &str = "2001:2::1";
pub const SERVER_V6: &str = "2001:2::2";

/// Runs `program args`, panicking with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    run("ip", args);
}

/// A short tag (≤ 4 alphanumerics of `tag`) and an id unique to this
/// process and call, to name namespaces and interfaces of one test.
pub fn unique_names(tag: &str) -> (String, String) {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = format!("{:x}{}", std::process::id() % 0xffff, n);
    let tag = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(4)
        .collect();
    (tag, id)
}

impl NetPair {
    /// Creates the namespaces, the veth pair, addresses, default routes.
    pub fn new(tag: &str) -> NetPair {
        let (tag, id) = unique_names(tag);
        let pair = NetPair {
            client_ns: format!("smtpe-{tag}-{id}-c"),
            server_ns: format!("smtpe-{tag}-{id}-s"),
            client_if: format!("se{id}c"),
            server_if: format!("se{id}s"),
        };
        // From here on, Drop cleans up whatever was created.
        ip(&["netns", "add", &pair.client_ns]);
        ip(&["netns", "add", &pair.server_ns]);
        ip(&[
            "link",
            "add",
            &pair.client_if,
            "netns",
            &pair.client_ns,
            "type",
            "veth",
            "peer",
            "name",
            &pair.server_if,
            "netns",
            &pair.server_ns,
        ]);
        for (ns, dev, v4, v6, gw) in [
            (
                &pair.client_ns,
                &pair.client_if,
                CLIENT_V4,
                CLIENT_V6,
                SERVER_V4,
            ),
            (
                &pair.server_ns,
                &pair.server_if,
                SERVER_V4,
                SERVER_V6,
                CLIENT_V4,
            ),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "route", "add", "default", "via", gw]);
        }
        pair
    }

    pub fn server_addr(&self, v6: bool, port: u16) -> SocketAddr {
        let a: IpAddr = if v6 { SERVER_V6 } else { SERVER_V4 }
            .parse()
            .expect("addr");
        SocketAddr::new(a, port)
    }

    /// Runs `ip -n <server_ns> args...` and returns stdout.
    pub fn server_ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.server_ns])
            .args(args)
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it (and so the pair).
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // Pins a killed monitor left behind (they would keep their maps,
        // ring buffer included, alive). Tests that check cleanup look
        // before this runs.
        let pins =
            std::path::Path::new(smtp_user::datapath::DEFAULT_PIN_ROOT).join(&self.server_if);
        if pins.exists() {
            let _ = std::fs::remove_dir_all(&pins);
            let _ = std::fs::remove_dir(smtp_user::datapath::DEFAULT_PIN_ROOT);
        }
        let lock = std::path::Path::new(smtp_user::datapath::pins::LOCK_DIR)
            .join(format!("{}.lock", self.server_if));
        let _ = std::fs::remove_file(lock);
    }
}

/// Runs `f` on a new thread that entered network namespace `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        enter_netns(&path);
        f()
    })
}

/// Moves the calling thread into the namespace at `path`.
pub fn enter_netns(path: &str) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: valid fd; affects the calling thread only.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}
