//! The EVE JSON lines checked field by field, each line also validated
//! against `smtp-user/schema/eve.json` and Suricata 8's own EVE schema.

mod eve_schema;

use std::sync::Arc;

use smtp_user::output::{AnomalyBudget, EveWriter, FlowContext, FlowSummary};
use smtp_user::policy::{Action, Alert, AlertContext};
use smtp_user::smtp::{
    Anomaly, AnomalyKind, Command, Email, Event, Recipient, Response, Severity, Transaction,
    TransactionState, Verb,
};

fn ctx() -> FlowContext {
    FlowContext::new(
        1234567890123,
        "[2001:2::1]:40000".parse().unwrap(),
        "[2001:2::2]:25".parse().unwrap(),
    )
}

fn lines(buf: Vec<u8>) -> Vec<serde_json::Value> {
    eve_schema::parse(&buf)
}

fn transaction() -> Transaction {
    Transaction {
        id: 2,
        helo: Some("mail.example.org".into()),
        mail_from: Some("<alice@example.org>".into()),
        mail_params: vec!["SIZE=1234".into()],
        rcpt_to: vec![
            Recipient {
                path: "<bob@example.net>".into(),
                reply_code: Some(250),
            },
            Recipient {
                path: "<eve@example.net>".into(),
                reply_code: Some(550),
            },
        ],
        state: TransactionState::Delivered,
        reply_code: Some(250),
        size: 1234,
        tls: false,
        email: Some(Email {
            from: Some("Alice <alice@example.org>".into()),
            to: vec!["bob@example.net".into()],
            cc: vec![],
            subject: Some("hello".into()),
            date: None,
            message_id: Some("<1@example.org>".into()),
            x_mailer: None,
            attachment: vec!["a.pdf".into()],
            ..Default::default()
        }),
        email_status: Some("PARSE_DONE".into()),
    }
}

#[test]
fn smtp_transaction_line_has_suricata_fields() {
    let mut w = EveWriter::new(Vec::new(), false);
    w.event(
        1_235_999_871_123_456,
        &ctx(),
        &Event::Transaction(transaction()),
    )
    .unwrap();
    assert_eq!(w.counters().smtp, 1);
    let v = &lines(w.into_inner())[0];
    assert_eq!(v["timestamp"], "2009-03-02T13:17:51.123456+0000");
    assert_eq!(v["flow_id"], 1234567890123u64);
    assert_eq!(v["community_id"], "1:hnSR+rdWLXFxU7qQR1TpoSbWEY0=");
    assert_eq!(v["tx_id"], 2);
    assert_eq!(v["event_type"], "smtp");
    assert_eq!(v["src_ip"], "2001:2::1");
    assert_eq!(v["src_port"], 40000);
    assert_eq!(v["dest_ip"], "2001:2::2");
    assert_eq!(v["dest_port"], 25);
    assert_eq!(v["proto"], "TCP");
    assert_eq!(v["app_proto"], "smtp");
    assert_eq!(v["smtp"]["helo"], "mail.example.org");
    assert_eq!(v["smtp"]["mail_from"], "<alice@example.org>");
    assert_eq!(
        v["smtp"]["rcpt_to"],
        serde_json::json!(["<bob@example.net>", "<eve@example.net>"])
    );
    assert_eq!(v["email"]["status"], "PARSE_DONE");
    assert_eq!(v["email"]["from"], "Alice <alice@example.org>");
    assert_eq!(v["email"]["to"], serde_json::json!(["bob@example.net"]));
    assert!(v["email"].get("cc").is_none(), "empty lists are left out");
    assert_eq!(v["email"]["subject"], "hello");
    assert!(v["email"].get("date").is_none());
    assert_eq!(v["email"]["message_id"], "<1@example.org>");
    assert_eq!(v["email"]["attachment"], serde_json::json!(["a.pdf"]));
    assert_eq!(v["transaction"]["id"], 2);
    assert_eq!(v["transaction"]["state"], "delivered");
    assert_eq!(v["transaction"]["reply_code"], 250);
    assert_eq!(v["transaction"]["size"], 1234);
    assert_eq!(v["transaction"]["tls"], false);
    assert_eq!(
        v["transaction"]["mail_params"],
        serde_json::json!(["SIZE=1234"])
    );
    assert_eq!(v["transaction"]["recipients"][1]["reply_code"], 550);
}

#[test]
fn transaction_without_content_has_no_email_object() {
    let mut tx = transaction();
    tx.email = None;
    tx.state = TransactionState::Rejected;
    let mut w = EveWriter::new(Vec::new(), false);
    w.event(0, &ctx(), &Event::Transaction(tx)).unwrap();
    let v = &lines(w.into_inner())[0];
    assert!(v.get("email").is_none());
    assert_eq!(v["transaction"]["state"], "rejected");
}

#[test]
fn anomaly_line() {
    let mut w = EveWriter::new(Vec::new(), false);
    let a = Anomaly {
        kind: AnomalyKind::SmugglingBareLfEndOfData,
        severity: Severity::High,
        detail: "bare LF dot line in DATA".into(),
        tx_id: Some(0),
        drop_requested: false,
    };
    w.event(0, &ctx(), &Event::Anomaly(a)).unwrap();
    let v = &lines(w.into_inner())[0];
    assert_eq!(v["event_type"], "anomaly");
    assert_eq!(v["tx_id"], 0);
    assert_eq!(v["anomaly"]["type"], "applayer");
    assert_eq!(v["anomaly"]["app_proto"], "smtp");
    assert_eq!(v["anomaly"]["layer"], "proto_parser");
    assert_eq!(v["anomaly"]["event"], "smuggling_bare_lf_end_of_data");
    assert_eq!(v["anomaly"]["severity"], "high");
    assert_eq!(v["anomaly"]["detail"], "bare LF dot line in DATA");
    assert_eq!(v["anomaly"]["drop_requested"], false);
}

#[test]
fn commands_and_replies_only_with_log_commands() {
    let cmd = Event::Command(Command {
        verb: Verb::Ehlo,
        args: "client.example".into(),
    });
    let rep = Event::Response(Response {
        code: 250,
        lines: vec!["mx.example".into(), "PIPELINING".into()],
        to: Some(Verb::Ehlo),
    });
    let mut quiet = EveWriter::new(Vec::new(), false);
    quiet.event(0, &ctx(), &cmd).unwrap();
    quiet.event(0, &ctx(), &rep).unwrap();
    assert!(quiet.into_inner().is_empty());

    let mut w = EveWriter::new(Vec::new(), true);
    w.event(0, &ctx(), &cmd).unwrap();
    w.event(0, &ctx(), &rep).unwrap();
    let v = lines(w.into_inner());
    assert_eq!(v[0]["event_type"], "smtp_command");
    assert_eq!(v[0]["smtp_command"]["verb"], "EHLO");
    assert_eq!(v[0]["smtp_command"]["args"], "client.example");
    assert_eq!(v[1]["event_type"], "smtp_reply");
    assert_eq!(v[1]["smtp_reply"]["code"], 250);
    assert_eq!(v[1]["smtp_reply"]["lines"][1], "PIPELINING");
    assert_eq!(v[1]["smtp_reply"]["to"], "EHLO");
}

#[test]
fn flow_line() {
    let mut w = EveWriter::new(Vec::new(), false);
    let s = FlowSummary {
        pkts_toserver: 10,
        pkts_toclient: 8,
        bytes_toserver: 1000,
        bytes_toclient: 300,
        gaps: 1,
        gap_bytes: 100,
        start_micros: 1_000_000,
        end_micros: 4_500_000,
        state: "closed".into(),
        tls: false,
        transactions: 1,
        ..FlowSummary::default()
    };
    w.flow(&ctx(), &s).unwrap();
    let v = &lines(w.into_inner())[0];
    assert_eq!(v["event_type"], "flow");
    assert!(v.get("tx_id").is_none());
    assert_eq!(v["flow"]["pkts_toserver"], 10);
    assert_eq!(v["flow"]["bytes_toclient"], 300);
    assert_eq!(v["flow"]["age"], 3);
    assert_eq!(v["flow"]["gaps"], 1);
    assert_eq!(v["flow"]["state"], "closed");
    assert_eq!(v["timestamp"], "1970-01-01T00:00:04.500000+0000");
    assert_eq!(v["flow"]["start"], "1970-01-01T00:00:01.000000+0000");
    assert_eq!(v["flow"]["alerted"], false);
    assert!(v["flow"].get("anomalies_suppressed").is_none());
}

/// Suricata writes no key for an absent value, an empty string or an empty
/// list (its schema requires lists to be non-empty): neither do we.
#[test]
fn empty_values_are_left_out() {
    let tx = Transaction {
        id: 0,
        helo: Some(String::new()),
        mail_from: None,
        mail_params: vec![],
        rcpt_to: vec![],
        state: TransactionState::Aborted,
        reply_code: None,
        size: 0,
        tls: false,
        email: Some(Email {
            from: Some(String::new()),
            to: vec![],
            cc: vec![String::new()],
            subject: None,
            date: Some(String::new()),
            message_id: None,
            x_mailer: None,
            attachment: vec![],
            ..Default::default()
        }),
        email_status: Some("HEADER_READY".into()),
    };
    let mut w = EveWriter::new(Vec::new(), true);
    w.event(0, &ctx(), &Event::Transaction(tx)).unwrap();
    w.event(
        0,
        &ctx(),
        &Event::Command(Command {
            verb: Verb::Data,
            args: String::new(),
        }),
    )
    .unwrap();
    w.event(
        0,
        &ctx(),
        &Event::Response(Response {
            code: 220,
            lines: vec![],
            to: None,
        }),
    )
    .unwrap();
    let v = lines(w.into_inner());
    assert_eq!(v[0]["smtp"], serde_json::json!({}));
    assert_eq!(v[0]["email"], serde_json::json!({"status": "HEADER_READY"}));
    let t = v[0]["transaction"].as_object().unwrap();
    assert!(!t.contains_key("mail_params") && !t.contains_key("recipients"));
    assert_eq!(v[1]["smtp_command"], serde_json::json!({"verb": "DATA"}));
    assert_eq!(v[2]["smtp_reply"], serde_json::json!({"code": 220}));
    for line in &v {
        let text = line.to_string();
        assert!(!text.contains("\"\"") && !text.contains("[]"), "{text}");
    }
}

fn alert(rule_text: Option<&str>) -> Alert {
    Alert {
        signature_id: 1001,
        rev: 3,
        rule_name: "forbidden-sender-domain".into(),
        rule_text: rule_text.map(Arc::from),
        signature: "MAIL FROM a forbidden domain".into(),
        category: "policy".into(),
        severity: 1,
        action: Action::Drop,
        block_ip_for: None,
        tx_id: Some(0),
        matched: "mail_from_domain \"forbidden.example\"".into(),
        context: AlertContext {
            helo: Some("client.example".into()),
            mail_from: Some("<eve@forbidden.example>".into()),
            rcpt_to: vec![],
            subject: None,
            attachments: vec![],
        },
    }
}

/// `alert` as Suricata writes it (gid, rev, rule = the rule's text), with
/// our rule name, enforcement and match under their own keys.
#[test]
fn alert_line_has_suricata_fields() {
    let text = "[[rule]]\nsid = 1001\nname = \"forbidden-sender-domain\"";
    let mut w = EveWriter::new(Vec::new(), false);
    w.alert(5_000_000, &ctx(), &alert(Some(text)), true)
        .unwrap();
    w.alert(5_000_000, &ctx(), &alert(None), false).unwrap();
    let v = lines(w.into_inner());
    let a = &v[0]["alert"];
    assert_eq!(v[0]["event_type"], "alert");
    assert_eq!(v[0]["tx_id"], 0);
    assert_eq!(a["action"], "blocked");
    assert_eq!(a["gid"], 1);
    assert_eq!(a["signature_id"], 1001);
    assert_eq!(a["rev"], 3);
    assert_eq!(a["rule"], text);
    assert_eq!(a["rule_name"], "forbidden-sender-domain");
    assert_eq!(a["enforcement"], "drop");
    assert_eq!(a["matched"], "mail_from_domain \"forbidden.example\"");
    assert_eq!(v[0]["smtp"]["mail_from"], "<eve@forbidden.example>");
    assert!(v[0]["smtp"].get("rcpt_to").is_none());
    assert!(v[0].get("email").is_none());
    assert_eq!(v[1]["alert"]["action"], "allowed");
    assert!(
        v[1]["alert"].get("rule").is_none(),
        "built-in rules have no text"
    );
}

/// Suppressed anomalies show on the flow event, by kind.
#[test]
fn flow_line_reports_suppressed_anomalies() {
    let mut budget = AnomalyBudget::new(1);
    for _ in 0..5 {
        budget.admit(AnomalyKind::StreamGap);
    }
    budget.admit(AnomalyKind::InvalidCommand);
    budget.admit(AnomalyKind::InvalidCommand);
    let s = FlowSummary {
        state: "timeout".into(),
        alerted: true,
        anomalies_suppressed: *budget.suppressed(),
        ..FlowSummary::default()
    };
    let mut w = EveWriter::new(Vec::new(), false);
    w.flow(&ctx(), &s).unwrap();
    let v = &lines(w.into_inner())[0];
    assert_eq!(v["flow"]["alerted"], true);
    assert_eq!(
        v["flow"]["anomalies_suppressed"],
        serde_json::json!({"invalid_command": 1, "stream_gap": 4})
    );
}

/// Lines as written before Suricata parity (`+00:00` times, empty lists, no
/// `community_id`, no `anomaly.app_proto`) fail our schema, and Suricata's
/// too when it is there: the schema checks of every output test can fail.
#[test]
fn lines_of_the_old_format_fail_the_schemas() {
    let old = [
        r#"{"timestamp":"2014-06-11T12:49:45.176326+00:00","flow_id":8556828356795248,"tx_id":0,"event_type":"smtp","src_ip":"192.168.10.10","src_port":41155,"dest_ip":"192.168.20.1","dest_port":25,"proto":"TCP","app_proto":"smtp","smtp":{"helo":"some_domain","mail_from":"hacker@suspicious.org","rcpt_to":["backup"]},"email":{"status":"PARSE_DONE","to":[],"cc":[],"attachment":[]},"transaction":{"id":0,"state":"delivered","reply_code":250,"size":39,"tls":false,"mail_params":[],"recipients":[{"path":"backup","reply_code":250}]}}"#,
        r#"{"timestamp":"2014-02-19T19:02:39.520425+00:00","flow_id":3482489107572176,"event_type":"anomaly","src_ip":"172.16.2.159","src_port":49274,"dest_ip":"219.94.162.217","dest_port":25,"proto":"TCP","app_proto":"smtp","anomaly":{"type":"applayer","event":"unknown_command","layer":"proto_parser","severity":"low","detail":"unknown command \"G\"","drop_requested":false}}"#,
    ];
    for line in old {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ours = std::panic::catch_unwind(|| eve_schema::check(std::slice::from_ref(&v)));
        assert!(ours.is_err(), "old line passed: {line}");
        if let Some(s) = eve_schema::suricata() {
            assert!(eve_schema::errors(s, &v).is_some(), "{line}");
        }
    }
}
