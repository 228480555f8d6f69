//! The EVE JSON schema documented in README.md ("Output schema"), checked field by field.

use smtp_user::output::{EveWriter, FlowContext, FlowSummary};
use smtp_user::smtp::{
    Anomaly, AnomalyKind, Command, Email, Event, Recipient, Response, Severity, Transaction,
    TransactionState, Verb,
};

fn ctx() -> FlowContext {
    FlowContext {
        flow_id: 1234567890123,
        client: "198.18.0.1:40000".parse().unwrap(),
        server: "[2001:2::2]:25".parse().unwrap(),
    }
}

fn lines(buf: Vec<u8>) -> Vec<serde_json::Value> {
    String::from_utf8(buf)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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
    assert_eq!(v["timestamp"], "2009-03-02T13:17:51.123456+00:00");
    assert_eq!(v["flow_id"], 1234567890123u64);
    assert_eq!(v["tx_id"], 2);
    assert_eq!(v["event_type"], "smtp");
    assert_eq!(v["src_ip"], "198.18.0.1");
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
    assert_eq!(v["email"]["cc"], serde_json::json!([]));
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
    assert_eq!(v["timestamp"], "1970-01-01T00:00:04.500000+00:00");
}
