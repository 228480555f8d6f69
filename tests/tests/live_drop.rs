//! The tutorial's `error` transition enforced live: with the default policy
//! a session that breaks the protocol fatally (an invalid BDAT command) is
//! alerted on and dropped by the kernel in both directions, while another
//! session on the same server keeps working; with `protocol_error = "alert"`
//! in the rules file the same session only alerts.

use std::time::Duration;

use serde_json::Value;
use smtp_e2e::{
    in_netns,
    mail::{require_tools, SmtpSink},
    process::Daemon,
    require_root,
    smtp_client::SmtpClient,
    NetPair,
};

fn session(addr: &str) -> SmtpClient {
    let (c, greeting) = SmtpClient::connect(addr.parse().expect("addr"), Duration::from_secs(2))
        .expect("connect and greeting");
    assert!(greeting.starts_with("220"), "{greeting}");
    c
}

/// Runs the scenario; returns (did the bad session still get a reply after
/// its violation, did the good session, EVE events).
fn scenario(protocol_error_drops: bool, tag: &str) -> (bool, bool, Vec<Value>) {
    let rules = std::env::temp_dir().join(format!("smtp-drop-{tag}-{}.toml", std::process::id()));
    let pair = NetPair::new(tag);
    let out = std::env::temp_dir().join(format!("smtp-drop-{tag}-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let _sink = SmtpSink::start(&pair.server_ns, "198.18.0.2:25", &["-c"]);
    let mut args = vec!["--output"];
    let out_s = out.to_string_lossy().into_owned();
    args.push(&out_s);
    let rules_s = rules.to_string_lossy().into_owned();
    if !protocol_error_drops {
        std::fs::write(&rules, "[defaults]\nprotocol_error = \"alert\"\n").expect("rules file");
        args.extend(["--rules", &rules_s]);
    }
    let daemon = Daemon::monitor(&pair, &args);
    let (bad_alive, good_alive) = in_netns(&pair.client_ns, || {
        let mut good = session("198.18.0.2:25");
        assert!(good.cmd("EHLO good.example\r\n").is_some());

        let mut bad = session("198.18.0.2:25");
        assert!(bad.cmd("EHLO bad.example\r\n").is_some());
        assert!(bad.cmd("MAIL FROM:<a@example.org>\r\n").is_some());
        assert!(bad.cmd("RCPT TO:<b@example.net>\r\n").is_some());
        // Fatal for the dissector: BDAT needs an octet count.
        let _ = bad.cmd("BDAT SCRAMBLE\r\n");
        std::thread::sleep(Duration::from_millis(500));
        let bad_alive = bad.cmd("NOOP\r\n").is_some();
        let good_alive = good.cmd("NOOP\r\n").is_some();
        (bad_alive, good_alive)
    })
    .join()
    .expect("client thread");
    let (st, err) = daemon.terminate(Duration::from_secs(20));
    assert!(st.success(), "{err}");
    let events = std::fs::read_to_string(&out)
        .expect("output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&rules);
    (bad_alive, good_alive, events)
}

fn protocol_error_alert(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|e| e["event_type"] == "alert" && e["alert"]["signature_id"] == 1)
        .expect("protocol-error alert")
}

fn bdat_anomaly(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|e| e["event_type"] == "anomaly" && e["anomaly"]["event"] == "bdat_invalid")
        .expect("bdat_invalid anomaly")
}

#[test]
fn protocol_error_drops_the_violating_session_only() {
    if !require_root("protocol_error_drops_the_violating_session_only")
        || !require_tools(
            "protocol_error_drops_the_violating_session_only",
            &["smtp-sink"],
        )
    {
        return;
    }
    let (bad_alive, good_alive, events) = scenario(true, "drop");
    assert!(!bad_alive, "the violating session must be dropped");
    assert!(good_alive, "the other session must keep working");
    let a = bdat_anomaly(&events);
    assert_eq!(a["anomaly"]["severity"], "high");
    assert_eq!(a["anomaly"]["drop_requested"], true);
    let alert = protocol_error_alert(&events);
    assert_eq!(alert["alert"]["action"], "blocked");
    assert_eq!(alert["alert"]["rule_name"], "protocol-error");
    assert_eq!(alert["alert"]["severity"], 1);
}

#[test]
fn protocol_error_set_to_alert_only_alerts() {
    if !require_root("protocol_error_set_to_alert_only_alerts")
        || !require_tools("protocol_error_set_to_alert_only_alerts", &["smtp-sink"])
    {
        return;
    }
    let (bad_alive, good_alive, events) = scenario(false, "alrt");
    assert!(bad_alive, "alert only: the session goes on");
    assert!(good_alive);
    assert_eq!(bdat_anomaly(&events)["anomaly"]["drop_requested"], true);
    assert_eq!(protocol_error_alert(&events)["alert"]["action"], "allowed");
}
