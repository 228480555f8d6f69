//! The `smtp-user run` binary: attaches, pins, refuses a second instance,
//! detaches and unpins on SIGTERM, and fails cleanly on bad input.

use std::{path::PathBuf, time::Duration};

use aya::programs::{SchedClassifier, TcAttachType};
use smtp_e2e::{
    in_netns,
    process::{run_to_end, run_to_end_with, wait_path, Daemon},
    require_root, NetPair,
};
use smtp_user::datapath::DEFAULT_PIN_ROOT;

/// Number of tcx programs on `iface` for `at`, queried inside `ns`.
fn tcx_count(ns: &str, iface: &str, at: TcAttachType) -> usize {
    let iface = iface.to_string();
    in_netns(ns, move || {
        SchedClassifier::query_tcx(&iface, at)
            .map(|(_, progs)| progs.len())
            .expect("query tcx")
    })
    .join()
    .expect("query thread")
}

fn xdp_attached(pair: &NetPair) -> bool {
    pair.server_ip(&["-d", "link", "show", &pair.server_if])
        .contains("prog/xdp")
}

fn pin_dir(iface: &str) -> PathBuf {
    PathBuf::from(DEFAULT_PIN_ROOT).join(iface)
}

fn assert_clean(pair: &NetPair) {
    assert!(!pin_dir(&pair.server_if).exists(), "pins left behind");
    assert!(!xdp_attached(pair), "XDP program left attached");
    assert_eq!(
        tcx_count(&pair.server_ns, &pair.server_if, TcAttachType::Ingress),
        0
    );
    assert_eq!(
        tcx_count(&pair.server_ns, &pair.server_if, TcAttachType::Egress),
        0
    );
}

fn lifecycle(ingress: &str, tag: &str) {
    let pair = NetPair::new(tag);
    let iface = pair.server_if.clone();
    let mut d = Daemon::spawn(
        &pair.server_ns,
        &["run", "--iface", &iface, "--ingress", ingress],
    );
    assert!(
        wait_path(&pin_dir(&iface).join("VERDICTS"), Duration::from_secs(20)),
        "pins never appeared"
    );
    assert!(d.running());
    for m in ["RECORDS", "CONFIG", "VERDICTS", "STATS"] {
        assert!(pin_dir(&iface).join(m).exists(), "{m} not pinned");
    }
    assert_eq!(tcx_count(&pair.server_ns, &iface, TcAttachType::Egress), 1);
    if ingress == "tc" {
        assert_eq!(tcx_count(&pair.server_ns, &iface, TcAttachType::Ingress), 1);
        assert!(!xdp_attached(&pair));
    } else {
        assert_eq!(tcx_count(&pair.server_ns, &iface, TcAttachType::Ingress), 0);
        assert!(xdp_attached(&pair), "no XDP program on the interface");
    }

    // A second instance on the same interface is refused and changes nothing.
    let second = run_to_end(
        &pair.server_ns,
        &["run", "--iface", &iface],
        Duration::from_secs(20),
    );
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already runs"), "unexpected: {err}");
    assert!(d.running());
    assert!(pin_dir(&iface).join("VERDICTS").exists());

    let (status, stderr) = d.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert_clean(&pair);
}

#[test]
fn run_attaches_and_cleans_up_tc() {
    if !require_root("run_attaches_and_cleans_up_tc") {
        return;
    }
    lifecycle("tc", "ltc");
}

#[test]
fn run_attaches_and_cleans_up_xdp() {
    if !require_root("run_attaches_and_cleans_up_xdp") {
        return;
    }
    lifecycle("xdp", "lxdp");
    lifecycle("xdp-generic", "lxg");
}

#[test]
fn run_defaults_to_default_route_interface() {
    if !require_root("run_defaults_to_default_route_interface") {
        return;
    }
    let pair = NetPair::new("dflt");
    let d = Daemon::spawn(&pair.server_ns, &["run"]);
    assert!(
        wait_path(
            &pin_dir(&pair.server_if).join("STATS"),
            Duration::from_secs(20)
        ),
        "did not attach to the default-route interface {}",
        pair.server_if
    );
    let (status, stderr) = d.terminate(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert_clean(&pair);
}

#[test]
fn bad_input_fails_with_one_line_and_attaches_nothing() {
    if !require_root("bad_input_fails_with_one_line_and_attaches_nothing") {
        return;
    }
    let pair = NetPair::new("bad");
    let iface = pair.server_if.clone();
    let cases: [(&[&str], &str); 5] = [
        (
            &["run", "--iface", &iface, "--ports", "abc"],
            "invalid value",
        ),
        (&["run", "--iface", "nosuchif0"], "not found"),
        (
            &["run", "--iface", &iface, "--ringbuf-size", "1000"],
            "power of two",
        ),
        (
            &["run", "--iface", &iface, "--ports", "1,2,3,4,5,6,7,8,9"],
            "1 to 8",
        ),
        (
            &["run", "--iface", &iface, "--ingress", "bogus"],
            "unknown ingress",
        ),
    ];
    for (args, needle) in cases {
        let out = run_to_end(&pair.server_ns, args, Duration::from_secs(20));
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_clean(&pair);
    }
}

#[test]
fn unprivileged_run_fails_with_one_line() {
    if !require_root("unprivileged_run_fails_with_one_line") {
        return;
    }
    let pair = NetPair::new("priv");
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ];
    let out = run_to_end_with(
        &pair.server_ns,
        &nobody,
        &["run", "--iface", &pair.server_if],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("insufficient privileges"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("error")).count(),
        1,
        "{err}"
    );
    assert_clean(&pair);
}
