//! `smtp-user ctl` changes a running monitor through its pinned maps.

use std::time::Duration;

use smtp_common::Verdict;
use smtp_e2e::{
    process::{run_to_end, Daemon},
    require_root, NetPair,
};
use smtp_user::datapath::{Control, DEFAULT_PIN_ROOT};
use smtp_user::pipeline::kernel_flow_key;

fn ctl(pair: &NetPair, args: &[&str]) -> (bool, String, String) {
    let mut full = vec!["ctl", "--iface", &pair.server_if];
    full.extend_from_slice(args);
    let out = run_to_end(&pair.server_ns, &full, Duration::from_secs(20));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ctl_enforce_verdicts_and_stats() {
    if !require_root("ctl_enforce_verdicts_and_stats") {
        return;
    }
    let pair = NetPair::new("ctl");
    let (ok, _, err) = ctl(&pair, &["stats"]);
    assert!(!ok, "ctl without a monitor must fail");
    assert!(err.contains("no monitor running on"), "{err}");

    let d = Daemon::monitor(&pair, &[]);

    let (ok, out, err) = ctl(&pair, &["stats"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("enforce=true") && out.contains("records_lost="),
        "{out}"
    );

    let (ok, _, err) = ctl(&pair, &["enforce", "off"]);
    assert!(ok, "{err}");
    let control = Control::open_pinned(DEFAULT_PIN_ROOT.as_ref(), &pair.server_if).expect("pins");
    assert_eq!(control.config().expect("config").enforce, 0);
    let (_, out, _) = ctl(&pair, &["stats"]);
    assert!(out.contains("enforce=false"), "{out}");

    let c = "198.18.0.1:40000".parse().expect("addr");
    let s = "198.18.0.2:25".parse().expect("addr");
    let (ok, _, err) = ctl(&pair, &["drop", "198.18.0.1:40000", "198.18.0.2:25"]);
    assert!(ok, "{err}");
    assert_eq!(control.verdict(&kernel_flow_key(c, s)), Verdict::Drop);
    // The key is normalised: the reverse order names the same flow.
    let (ok, _, err) = ctl(&pair, &["pass", "198.18.0.2:25", "198.18.0.1:40000"]);
    assert!(ok, "{err}");
    assert_eq!(control.verdict(&kernel_flow_key(c, s)), Verdict::Pass);

    // `blocked` lists the blocklist (time left) and the drop verdicts.
    let (ok, _, err) = ctl(&pair, &["block", "198.18.0.9", "--for", "10m"]);
    assert!(ok, "{err}");
    let (ok, _, err) = ctl(&pair, &["block", "2001:2::9"]);
    assert!(ok, "{err}");
    let (ok, _, err) = ctl(&pair, &["drop", "198.18.0.1:40000", "198.18.0.2:25"]);
    assert!(ok, "{err}");
    let (ok, out, err) = ctl(&pair, &["blocked"]);
    assert!(ok, "{err}");
    assert!(out.contains("blocked_ips=2 drop_verdicts=1"), "{out}");
    assert!(
        out.contains("ip 198.18.0.9  expires in 9m")
            || out.contains("ip 198.18.0.9  expires in 10m"),
        "{out}"
    );
    assert!(out.contains("ip 2001:2::9  no expiry"), "{out}");
    assert!(
        out.contains("flow 198.18.0.2:25 <-> 198.18.0.1:40000"),
        "{out}"
    );
    let (ok, out, err) = ctl(&pair, &["--json", "blocked"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(v["ips"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["flows"][0], "198.18.0.2:25 <-> 198.18.0.1:40000", "{v}");
    for args in [
        &["unblock", "198.18.0.9"][..],
        &["unblock", "2001:2::9"],
        &["pass", "198.18.0.1:40000", "198.18.0.2:25"],
    ] {
        let (ok, _, err) = ctl(&pair, args);
        assert!(ok, "{err}");
    }
    let (_, out, _) = ctl(&pair, &["blocked"]);
    assert!(
        out.starts_with(&format!(
            "iface={} blocked_ips=0 drop_verdicts=0",
            pair.server_if
        )),
        "{out}"
    );

    let (ok, _, err) = ctl(&pair, &["drop", "198.18.0.1:1", "[2001:2::2]:25"]);
    assert!(!ok);
    assert!(err.contains("same address family"), "{err}");
    let (ok, _, _) = ctl(&pair, &["enforce", "maybe"]);
    assert!(!ok, "bad value refused");
    drop(control);
    let (st, err) = d.terminate(Duration::from_secs(20));
    assert!(st.success(), "{err}");
}
