//! EVE JSON lines: one object per event, Suricata's field names.
//!
//! Every line carries `timestamp`, `flow_id`, `event_type`, `src_ip`,
//! `src_port`, `dest_ip`, `dest_port` (client → server orientation), `proto`
//! and `app_proto`; transaction-scoped events add `tx_id`. The schema is the
//! table in README.md ("Output schema"); tests in `tests/output_eve.rs` check it.

use std::io::{self, Write};
use std::net::SocketAddr;

use serde::Serialize;

use super::timestamp::rfc3339_micros;
use crate::policy::Alert;
use crate::smtp::{Anomaly, Command, Email, Event, Response, Transaction};

/// The flow an event belongs to, oriented client → server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowContext {
    /// Stable per flow (same input, same id).
    pub flow_id: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// What a `flow` event reports when a flow ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowSummary {
    pub pkts_toserver: u64,
    pub pkts_toclient: u64,
    pub bytes_toserver: u64,
    pub bytes_toclient: u64,
    /// Number of reassembly gaps (lost bytes) in both directions.
    pub gaps: u64,
    /// Bytes lost in those gaps.
    pub gap_bytes: u64,
    /// First and last packet time, microseconds since the epoch.
    pub start_micros: u64,
    pub end_micros: u64,
    /// How the flow ended: "closed", "reset", "timeout", "evicted", "shutdown".
    pub state: String,
    /// The session switched to TLS (content not inspected after that).
    pub tls: bool,
    /// Transactions seen on the flow.
    pub transactions: u32,
}

/// Lines written, by event type (for the summary line and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputCounters {
    pub smtp: u64,
    pub anomaly: u64,
    pub smtp_command: u64,
    pub smtp_reply: u64,
    pub flow: u64,
    pub alert: u64,
}

/// Writes EVE JSON lines to any `Write` (stdout, a file, a `Vec<u8>` in tests).
pub struct EveWriter<W: Write> {
    out: W,
    log_commands: bool,
    counters: OutputCounters,
}

#[derive(Serialize)]
struct Header<'a> {
    timestamp: String,
    flow_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tx_id: Option<u32>,
    event_type: &'a str,
    src_ip: String,
    src_port: u16,
    dest_ip: String,
    dest_port: u16,
    proto: &'static str,
    app_proto: &'static str,
}

#[derive(Serialize)]
struct SmtpLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    smtp: SmtpObject<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<EmailObject<'a>>,
    transaction: TransactionObject<'a>,
}

#[derive(Serialize)]
struct SmtpObject<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    helo: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mail_from: Option<&'a str>,
    rcpt_to: Vec<&'a str>,
}

#[derive(Serialize)]
struct EmailObject<'a> {
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    to: &'a [String],
    cc: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    date: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x_mailer: Option<&'a str>,
    attachment: &'a [String],
}

#[derive(Serialize)]
struct RecipientObject<'a> {
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_code: Option<u16>,
}

#[derive(Serialize)]
struct TransactionObject<'a> {
    id: u32,
    state: crate::smtp::TransactionState,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_code: Option<u16>,
    size: u64,
    tls: bool,
    mail_params: &'a [String],
    recipients: Vec<RecipientObject<'a>>,
}

#[derive(Serialize)]
struct AnomalyLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    anomaly: AnomalyObject<'a>,
}

#[derive(Serialize)]
struct AnomalyObject<'a> {
    #[serde(rename = "type")]
    kind_type: &'static str,
    event: &'static str,
    layer: &'static str,
    severity: crate::smtp::Severity,
    detail: &'a str,
    drop_requested: bool,
}

#[derive(Serialize)]
struct CommandLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    smtp_command: &'a Command,
}

#[derive(Serialize)]
struct ReplyLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    smtp_reply: &'a Response,
}

#[derive(Serialize)]
struct FlowLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    flow: FlowObject<'a>,
}

#[derive(Serialize)]
struct FlowObject<'a> {
    pkts_toserver: u64,
    pkts_toclient: u64,
    bytes_toserver: u64,
    bytes_toclient: u64,
    start: String,
    end: String,
    age: u64,
    state: &'a str,
    gaps: u64,
    gap_bytes: u64,
    tls: bool,
    transactions: u32,
}

#[derive(Serialize)]
struct AlertLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    alert: AlertObject<'a>,
    smtp: SmtpObject<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<AlertEmail<'a>>,
}

#[derive(Serialize)]
struct AlertObject<'a> {
    action: &'static str,
    signature_id: u32,
    signature: &'a str,
    category: &'a str,
    severity: u8,
    rule: &'a str,
    enforcement: &'static str,
    matched: &'a str,
}

#[derive(Serialize)]
struct AlertEmail<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    attachment: &'a [String],
}

impl<W: Write> EveWriter<W> {
    /// `log_commands` enables the `smtp_command` / `smtp_reply` events.
    pub fn new(out: W, log_commands: bool) -> Self {
        EveWriter {
            out,
            log_commands,
            counters: OutputCounters::default(),
        }
    }

    pub fn counters(&self) -> OutputCounters {
        self.counters
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn header<'a>(
        ts_micros: u64,
        flow: &FlowContext,
        tx_id: Option<u32>,
        event_type: &'a str,
    ) -> Header<'a> {
        Header {
            timestamp: rfc3339_micros(ts_micros),
            flow_id: flow.flow_id,
            tx_id,
            event_type,
            src_ip: flow.client.ip().to_string(),
            src_port: flow.client.port(),
            dest_ip: flow.server.ip().to_string(),
            dest_port: flow.server.port(),
            proto: "TCP",
            app_proto: "smtp",
        }
    }

    fn line<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value).map_err(io::Error::other)?;
        self.out.write_all(b"\n")
    }

    /// Writes the line(s) for one dissector event. `MailContent` produces no
    /// line (it is streamed to policy, not logged).
    pub fn event(
        &mut self,
        ts_micros: u64,
        flow: &FlowContext,
        event: &Event<'_>,
    ) -> io::Result<()> {
        match event {
            Event::Transaction(tx) => self.transaction(ts_micros, flow, tx),
            Event::Anomaly(a) => self.anomaly(ts_micros, flow, a),
            Event::Command(c) if self.log_commands => {
                self.counters.smtp_command += 1;
                let header = Self::header(ts_micros, flow, None, "smtp_command");
                self.line(&CommandLine {
                    header,
                    smtp_command: c,
                })
            }
            Event::Response(r) if self.log_commands => {
                self.counters.smtp_reply += 1;
                let header = Self::header(ts_micros, flow, None, "smtp_reply");
                self.line(&ReplyLine {
                    header,
                    smtp_reply: r,
                })
            }
            Event::Command(_)
            | Event::Response(_)
            | Event::MailContent(_)
            | Event::Header(_)
            | Event::MimePart(_)
            | Event::Envelope(_) => Ok(()),
        }
    }

    fn transaction(
        &mut self,
        ts_micros: u64,
        flow: &FlowContext,
        tx: &Transaction,
    ) -> io::Result<()> {
        self.counters.smtp += 1;
        let email = tx.email.as_ref().map(|e: &Email| EmailObject {
            status: tx.email_status.as_deref().unwrap_or("PARSE_DONE"),
            from: e.from.as_deref(),
            to: &e.to,
            cc: &e.cc,
            subject: e.subject.as_deref(),
            date: e.date.as_deref(),
            message_id: e.message_id.as_deref(),
            x_mailer: e.x_mailer.as_deref(),
            attachment: &e.attachment,
        });
        let line = SmtpLine {
            header: Self::header(ts_micros, flow, Some(tx.id), "smtp"),
            smtp: SmtpObject {
                helo: tx.helo.as_deref(),
                mail_from: tx.mail_from.as_deref(),
                rcpt_to: tx.rcpt_to.iter().map(|r| r.path.as_str()).collect(),
            },
            email,
            transaction: TransactionObject {
                id: tx.id,
                state: tx.state,
                reply_code: tx.reply_code,
                size: tx.size,
                tls: tx.tls,
                mail_params: &tx.mail_params,
                recipients: tx
                    .rcpt_to
                    .iter()
                    .map(|r| RecipientObject {
                        path: &r.path,
                        reply_code: r.reply_code,
                    })
                    .collect(),
            },
        };
        self.line(&line)
    }

    fn anomaly(&mut self, ts_micros: u64, flow: &FlowContext, a: &Anomaly) -> io::Result<()> {
        self.counters.anomaly += 1;
        let line = AnomalyLine {
            header: Self::header(ts_micros, flow, a.tx_id, "anomaly"),
            anomaly: AnomalyObject {
                kind_type: "applayer",
                event: a.kind.as_str(),
                layer: "proto_parser",
                severity: a.severity,
                detail: &a.detail,
                drop_requested: a.drop_requested,
            },
        };
        self.line(&line)
    }

    /// Writes the `flow` event that ends a flow.
    pub fn flow(&mut self, flow: &FlowContext, summary: &FlowSummary) -> io::Result<()> {
        self.counters.flow += 1;
        let line = FlowLine {
            header: Self::header(summary.end_micros, flow, None, "flow"),
            flow: FlowObject {
                pkts_toserver: summary.pkts_toserver,
                pkts_toclient: summary.pkts_toclient,
                bytes_toserver: summary.bytes_toserver,
                bytes_toclient: summary.bytes_toclient,
                start: rfc3339_micros(summary.start_micros),
                end: rfc3339_micros(summary.end_micros),
                age: summary.end_micros.saturating_sub(summary.start_micros) / 1_000_000,
                state: &summary.state,
                gaps: summary.gaps,
                gap_bytes: summary.gap_bytes,
                tls: summary.tls,
                transactions: summary.transactions,
            },
        };
        self.line(&line)
    }

    /// Writes an `alert` event. `blocked`: the alert's action was enforced
    /// (Suricata's `"action": "blocked"`), else `"allowed"`.
    pub fn alert(
        &mut self,
        ts_micros: u64,
        flow: &FlowContext,
        alert: &Alert,
        blocked: bool,
    ) -> io::Result<()> {
        self.counters.alert += 1;
        let c = &alert.context;
        let email = (c.subject.is_some() || !c.attachments.is_empty()).then(|| AlertEmail {
            subject: c.subject.as_deref(),
            attachment: &c.attachments,
        });
        let line = AlertLine {
            header: Self::header(ts_micros, flow, alert.tx_id, "alert"),
            alert: AlertObject {
                action: if blocked { "blocked" } else { "allowed" },
                signature_id: alert.signature_id,
                signature: &alert.signature,
                category: &alert.category,
                severity: alert.severity,
                rule: &alert.rule,
                enforcement: alert.action.as_str(),
                matched: &alert.matched,
            },
            smtp: SmtpObject {
                helo: c.helo.as_deref(),
                mail_from: c.mail_from.as_deref(),
                rcpt_to: c.rcpt_to.iter().map(String::as_str).collect(),
            },
            email,
        };
        self.line(&line)
    }
}
