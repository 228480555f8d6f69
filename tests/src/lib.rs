//! Harness for real-kernel end-to-end tests of the datapath.
//!
//! * [`NetPair`]: two network namespaces (client, server) joined by a veth
//!   pair, with 198.18.0.0/15 and 2001:2::/48 test addresses; removed on drop.
//! * [`in_netns`]: runs a closure on a thread that entered a namespace
//!   (sockets created there live in it).
//! * [`MonitorThread`]: the library `Monitor` attached to the server veth,
//!   collecting records on its own thread.
//! * [`mail`]: real SMTP software (smtp-sink, swaks, smtp-source).
//! * [`live`]: namespaces + smtp-sink + `smtp-user run --rules`, for policy tests.
//! * [`sink`]: smtp-sink storing each delivered message as a file.
//! * [`redis`]: a real redis-server for the Redis output and fleet tests.
//! * [`postfix`]: real Postfix instances (server, relaying client) and a
//!   monitored MX ([`postfix::MxLive`]) for the end-of-data gate tests.
//! * [`fake_server`]: a socat-driven server with a chosen greeting.
//! * [`streams`]: rebuilds each direction's byte stream from records.
//!
//! Tests call [`require_root`] first and print "skipped: needs root" when
//! not root. Every wait is bounded in time.

pub mod attacker;
pub mod fake_server;
pub mod frames;
pub mod live;
pub mod mail;
pub mod monitor;
pub mod netns;
pub mod postfix;
pub mod process;
pub mod reassemble;
pub mod redis;
pub mod router;
pub mod sink;
pub mod smtp_client;
pub mod traffic;

pub use monitor::{MonitorThread, OwnedRecord};
pub use netns::{in_netns, NetPair};
pub use reassemble::{streams, Stream};

/// True when the tests can touch the kernel; prints the skip line otherwise.
pub fn require_root(test: &str) -> bool {
    // SAFETY: trivial libc call.
    if unsafe { libc::geteuid() } != 0 {
        println!("{test}: skipped: needs root");
        return false;
    }
    true
}

/// Path of the `smtp-user` binary, built (once per test process, by a
/// nested `cargo build --release`, a no-op when up to date) in the target
/// directory of the running test: `cargo test` alone does not build other
/// packages' binaries. Always the release build, the one `cargo xtask run`
/// runs: the live tests measure enforcement against real SMTP software,
/// whose timing (a verdict lands ~60 µs after the deciding segment) is the
/// product's, not a debug build's (~5× slower).
pub fn smtp_user_bin() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/deps/<test> → target
        let target_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .and_then(|d| d.parent())
            .expect("target dir");
        let manifest =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../smtp-user/Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--release",
                "--bin",
                "smtp-user",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .expect("run cargo build for smtp-user");
        assert!(status.success(), "building smtp-user failed");
        let bin = target_dir.join("release").join("smtp-user");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}
