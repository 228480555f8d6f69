//! Harness for real-kernel end-to-end tests of the datapath.
//!
//! * [`NetPair`]: two network namespaces (client, server) joined by a veth
//!   pair, with 198.18.0.0/15 and 2001:2::/48 test addresses; removed on drop.
//! * [`in_netns`]: runs a closure on a thread that entered a namespace
//!   (sockets created there live in it).
//! * [`MonitorThread`]: the library `Monitor` attached to the server veth,
//!   collecting records on its own thread.
//! * [`streams`]: rebuilds each direction's byte stream from records.
//!
//! Tests call [`require_root`] first and print "skipped: needs root" when
//! not root. Every wait is bounded in time.

pub mod frames;
pub mod monitor;
pub mod netns;
pub mod process;
pub mod reassemble;
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

/// Path of the `smtp-user` binary built next to the running test.
pub fn smtp_user_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/smtp-user
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile dir");
    let bin = dir.join("smtp-user");
    assert!(
        bin.exists(),
        "{} missing: build it with `cargo build -p smtp-user` (cargo xtask test does)",
        bin.display()
    );
    bin
}
