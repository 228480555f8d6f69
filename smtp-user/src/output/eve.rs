//! EVE JSON lines: one object per event, Suricata 8's field names and forms.
//!
//! Every line carries `timestamp` (Suricata's `…+0000` form), `flow_id`,
//! `community_id` (Community ID v1), `event_type`, `src_ip`, `src_port`,
//! `dest_ip`, `dest_port` (client → server orientation), `proto` and
//! `app_proto`; transaction-scoped events add `tx_id`. As Suricata does,
//! absent values, empty strings and empty lists are left out rather than
//! written empty. The schema is `smtp-user/schema/eve.json` (Suricata's EVE
//! schema extended with our fields); every output test validates against it.
//!
//! Decoder anomalies (replay's discarded overlapping IP fragments) are
//! written as Suricata writes packet events: no flow, `anomaly.type`
//! `decode`, the packet's addresses, and ports and `community_id` only when
//! the fragments showed the TCP ports.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use super::budget::{AnomalyBudget, AnomalyTally, DEFAULT_ANOMALIES_PER_KIND};
use super::timestamp::eve_micros;
use crate::capture::ipfrag::FragOverlap;
use crate::policy::Alert;
use crate::smtp::{Anomaly, Command, Email, Event, FileInfo, Response, Transaction};

/// Suricata's generator id for rule (signature) alerts.
pub const ALERT_GID: u32 = 1;

/// Length of a Community ID v1 string: `1:` and base64 of a SHA-1 digest.
const COMMUNITY_ID_LEN: usize = 30;

/// Community ID v1 (seed 0) of a TCP 5-tuple, written into `out`; false
/// (and `out` untouched) if it could not be computed.
fn tcp_community_id(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    out: &mut [u8; COMMUNITY_ID_LEN],
) -> bool {
    match community_id::calculate_community_id(0, src, dst, Some(sport), Some(dport), 6, false) {
        Ok(id) if id.len() == COMMUNITY_ID_LEN => {
            out.copy_from_slice(id.as_bytes());
            true
        }
        _ => false,
    }
}

/// The flow an event belongs to, oriented client → server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowContext {
    /// Stable per flow (same input, same id).
    pub flow_id: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Community ID v1 (seed 0) of the TCP 5-tuple, computed once per flow;
    /// all zero bytes when it could not be computed (never, for TCP).
    community_id: [u8; COMMUNITY_ID_LEN],
}

impl FlowContext {
    pub fn new(flow_id: u64, client: SocketAddr, server: SocketAddr) -> FlowContext {
        let mut community_id = [0u8; COMMUNITY_ID_LEN];
        tcp_community_id(
            client.ip(),
            server.ip(),
            client.port(),
            server.port(),
            &mut community_id,
        );
        FlowContext {
            flow_id,
            client,
            server,
            community_id,
        }
    }

    /// The flow's Community ID v1 (`1:` + base64 of SHA-1), as Zeek and
    /// Suricata write it; `None` only if it could not be computed.
    pub fn community_id(&self) -> Option<&str> {
        std::str::from_utf8(&self.community_id)
            .ok()
            .filter(|s| s.starts_with("1:"))
    }
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
    /// Bytes of the next connection on the 5-tuple seen before it was
    /// recognised (its SYN lost): neither delivered nor counted as gaps.
    pub next_connection_bytes: u64,
    /// First and last packet time, microseconds since the epoch.
    pub start_micros: u64,
    pub end_micros: u64,
    /// How the flow ended: "closed", "reset", "timeout", "evicted", "shutdown", "memcap".
    pub state: String,
    /// The session switched to TLS (content not inspected after that).
    pub tls: bool,
    /// Transactions seen on the flow.
    pub transactions: u32,
    /// A rule fired on the flow (Suricata's `flow.alerted`).
    pub alerted: bool,
    /// Anomalies not written because their kind reached the per-flow limit.
    pub anomalies_suppressed: AnomalyTally,
}

/// Lines written, by event type (for the summary line and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputCounters {
    pub smtp: u64,
    pub anomaly: u64,
    /// Decoder anomalies (`anomaly.type` `decode`), also in `anomaly`.
    pub decode_anomaly: u64,
    pub smtp_command: u64,
    pub smtp_reply: u64,
    pub flow: u64,
    pub alert: u64,
    pub fileinfo: u64,
    /// Bytes written (all lines, newlines included).
    pub bytes: u64,
}

impl OutputCounters {
    /// Adds another writer's counts.
    pub fn merge(&mut self, o: &OutputCounters) {
        // Every field named: a new counter cannot be forgotten here.
        let OutputCounters {
            smtp,
            anomaly,
            decode_anomaly,
            smtp_command,
            smtp_reply,
            flow,
            alert,
            fileinfo,
            bytes,
        } = o;
        self.smtp += *smtp;
        self.anomaly += *anomaly;
        self.decode_anomaly += *decode_anomaly;
        self.smtp_command += *smtp_command;
        self.smtp_reply += *smtp_reply;
        self.flow += *flow;
        self.alert += *alert;
        self.fileinfo += *fileinfo;
        self.bytes += *bytes;
    }
}

/// Writes EVE JSON lines to any `Write` (stdout, a file, a `Vec<u8>` in tests).
pub struct EveWriter<W: Write> {
    out: W,
    log_commands: bool,
    /// Anomaly lines of one kind written per flow (see [`super::budget`]).
    anomalies_per_kind: u32,
    counters: OutputCounters,
    /// Serialisation buffer of the line being written (reused).
    buf: Vec<u8>,
}

/// For `skip_serializing_if`: counters written only when something happened.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `Some(s)` unless `s` is absent or empty: Suricata leaves such keys out.
fn text(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// Non-empty strings of `items`, or `None` when none is left.
fn list<'a, I: IntoIterator<Item = &'a str>>(items: I) -> Option<Vec<&'a str>> {
    let v: Vec<&str> = items.into_iter().filter(|s| !s.is_empty()).collect();
    (!v.is_empty()).then_some(v)
}

#[derive(Serialize)]
struct Header<'a> {
    timestamp: String,
    flow_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_id: Option<&'a str>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    rcpt_to: Option<Vec<&'a str>>,
}

impl SmtpObject<'_> {
    fn is_empty(&self) -> bool {
        self.helo.is_none() && self.mail_from.is_none() && self.rcpt_to.is_none()
    }
}

#[derive(Serialize)]
struct EmailObject<'a> {
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cc: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    date: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x_mailer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attachment: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_md5: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject_md5: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    received: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    references: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x_originating_ip: Option<&'a str>,
}

/// A `fileinfo` line: Suricata's event for a file of a transaction, with
/// the transaction's `smtp` envelope.
#[derive(Serialize)]
struct FileLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    #[serde(skip_serializing_if = "SmtpObject::is_empty")]
    smtp: SmtpObject<'a>,
    fileinfo: FileObject<'a>,
}

#[derive(Serialize)]
struct FileObject<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<&'a str>,
    gaps: bool,
    state: &'static str,
    md5: &'a str,
    sha1: &'a str,
    sha256: &'a str,
    stored: bool,
    size: u64,
    tx_id: u32,
    /// Ours: the media type sniffed from the first bytes, and the one declared.
    mimetype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'a str>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    mail_params: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
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
    /// Suricata's anomaly class: `applayer` for protocol-parser events.
    #[serde(rename = "type")]
    kind_type: &'static str,
    app_proto: &'static str,
    event: &'static str,
    layer: &'static str,
    severity: crate::smtp::Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    drop_requested: bool,
}

/// A packet-level anomaly, as Suricata writes decoder events: no flow,
/// ports only when known.
#[derive(Serialize)]
struct DecodeAnomalyLine<'a> {
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_id: Option<&'a str>,
    event_type: &'static str,
    src_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_port: Option<u16>,
    dest_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_port: Option<u16>,
    proto: &'static str,
    anomaly: DecodeAnomalyObject<'a>,
}

#[derive(Serialize)]
struct DecodeAnomalyObject<'a> {
    /// Suricata's anomaly class for decoder events.
    #[serde(rename = "type")]
    kind_type: &'static str,
    /// Suricata's event name (`decoder.ipv4.frag_overlap`, …).
    event: &'static str,
    severity: crate::smtp::Severity,
    detail: &'a str,
}

/// Suricata's event names for a datagram discarded for overlapping
/// fragments (`src/decode-events.c`).
pub const IPV4_FRAG_OVERLAP: &str = "decoder.ipv4.frag_overlap";
pub const IPV6_FRAG_OVERLAP: &str = "decoder.ipv6.frag_overlap";

#[derive(Serialize)]
struct CommandLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    smtp_command: CommandObject<'a>,
}

#[derive(Serialize)]
struct CommandObject<'a> {
    verb: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a str>,
}

#[derive(Serialize)]
struct ReplyLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    smtp_reply: ReplyObject<'a>,
}

#[derive(Serialize)]
struct ReplyObject<'a> {
    code: u16,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    lines: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
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
    alerted: bool,
    gaps: u64,
    gap_bytes: u64,
    #[serde(skip_serializing_if = "is_zero")]
    next_connection_bytes: u64,
    tls: bool,
    transactions: u32,
    #[serde(skip_serializing_if = "AnomalyTally::is_empty")]
    anomalies_suppressed: &'a AnomalyTally,
}

#[derive(Serialize)]
struct AlertLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    alert: AlertObject<'a>,
    #[serde(skip_serializing_if = "SmtpObject::is_empty")]
    smtp: SmtpObject<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<AlertEmail<'a>>,
}

#[derive(Serialize)]
struct AlertObject<'a> {
    action: &'static str,
    gid: u32,
    signature_id: u32,
    rev: u32,
    signature: &'a str,
    category: &'a str,
    severity: u8,
    /// The rule's text as written in the rules file (Suricata: the rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    /// Our additions: the rule's name, what it asks for, what matched.
    rule_name: &'a str,
    enforcement: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    matched: Option<&'a str>,
}

#[derive(Serialize)]
struct AlertEmail<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attachment: Option<Vec<&'a str>>,
}

impl<W: Write> EveWriter<W> {
    /// `log_commands` enables the `smtp_command` / `smtp_reply` events.
    pub fn new(out: W, log_commands: bool) -> Self {
        EveWriter {
            out,
            log_commands,
            anomalies_per_kind: DEFAULT_ANOMALIES_PER_KIND,
            counters: OutputCounters::default(),
            buf: Vec::with_capacity(1024),
        }
    }

    /// Sets how many anomalies of one kind a flow writes (the rest are counted).
    pub fn with_anomalies_per_kind(mut self, limit: u32) -> Self {
        self.anomalies_per_kind = limit;
        self
    }

    /// A fresh anomaly budget for a flow that starts now.
    pub fn anomaly_budget(&self) -> AnomalyBudget {
        AnomalyBudget::new(self.anomalies_per_kind)
    }

    /// `smtp_command` / `smtp_reply` lines are written.
    pub fn logs_commands(&self) -> bool {
        self.log_commands
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

    /// The output, between two events (every line written is whole).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    fn header<'a>(
        ts_micros: u64,
        flow: &'a FlowContext,
        tx_id: Option<u32>,
        event_type: &'a str,
    ) -> Header<'a> {
        Header {
            timestamp: eve_micros(ts_micros),
            flow_id: flow.flow_id,
            community_id: flow.community_id(),
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

    /// Serialises `value` as one line, whole, before writing any of it (a
    /// serialisation error writes nothing).
    fn line<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, value).map_err(io::Error::other)?;
        self.buf.push(b'\n');
        self.out.write_all(&self.buf)?;
        self.counters.bytes += self.buf.len() as u64;
        Ok(())
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
            Event::Command(c) if self.log_commands => self.command(ts_micros, flow, c),
            Event::Response(r) if self.log_commands => self.reply(ts_micros, flow, r),
            Event::File(f) => self.file(ts_micros, flow, f),
            Event::Command(_)
            | Event::Response(_)
            | Event::MailContent(_)
            | Event::Header(_)
            | Event::MimePart(_)
            | Event::Envelope(_)
            | Event::Url(_) => Ok(()),
        }
    }

    fn command(&mut self, ts_micros: u64, flow: &FlowContext, c: &Command) -> io::Result<()> {
        self.counters.smtp_command += 1;
        self.line(&CommandLine {
            header: Self::header(ts_micros, flow, None, "smtp_command"),
            smtp_command: CommandObject {
                verb: c.verb.as_str(),
                args: text(Some(&c.args)),
            },
        })
    }

    fn reply(&mut self, ts_micros: u64, flow: &FlowContext, r: &Response) -> io::Result<()> {
        self.counters.smtp_reply += 1;
        self.line(&ReplyLine {
            header: Self::header(ts_micros, flow, None, "smtp_reply"),
            smtp_reply: ReplyObject {
                code: r.code,
                lines: &r.lines,
                to: text(r.to.as_ref().map(|v| v.as_str())),
            },
        })
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
            from: text(e.from.as_deref()),
            to: list(e.to.iter().map(String::as_str)),
            cc: list(e.cc.iter().map(String::as_str)),
            subject: text(e.subject.as_deref()),
            date: text(e.date.as_deref()),
            message_id: text(e.message_id.as_deref()),
            x_mailer: text(e.x_mailer.as_deref()),
            attachment: list(e.attachment.iter().map(String::as_str)),
            url: list(e.url.iter().map(String::as_str)),
            body_md5: text(e.body_md5.as_deref()),
            subject_md5: text(e.subject_md5.as_deref()),
            received: list(e.received.iter().map(String::as_str)),
            reply_to: text(e.reply_to.as_deref()),
            in_reply_to: text(e.in_reply_to.as_deref()),
            references: text(e.references.as_deref()),
            x_originating_ip: text(e.x_originating_ip.as_deref()),
        });
        let line = SmtpLine {
            header: Self::header(ts_micros, flow, Some(tx.id), "smtp"),
            smtp: SmtpObject {
                helo: text(tx.helo.as_deref()),
                mail_from: text(tx.mail_from.as_deref()),
                rcpt_to: list(tx.rcpt_to.iter().map(|r| r.path.as_str())),
            },
            email,
            transaction: TransactionObject {
                id: tx.id,
                state: tx.state,
                reply_code: tx.reply_code,
                size: tx.size,
                tls: tx.tls,
                mail_params: list(tx.mail_params.iter().map(String::as_str)),
                recipients: tx
                    .rcpt_to
                    .iter()
                    .filter(|r| !r.path.is_empty())
                    .map(|r| RecipientObject {
                        path: &r.path,
                        reply_code: r.reply_code,
                    })
                    .collect(),
            },
        };
        self.line(&line)
    }

    fn file(&mut self, ts_micros: u64, flow: &FlowContext, f: &FileInfo) -> io::Result<()> {
        self.counters.fileinfo += 1;
        let line = FileLine {
            header: Self::header(ts_micros, flow, Some(f.tx_id), "fileinfo"),
            smtp: SmtpObject {
                helo: text(f.helo.as_deref()),
                mail_from: text(f.mail_from.as_deref()),
                rcpt_to: list(f.rcpt_to.iter().map(String::as_str)),
            },
            fileinfo: FileObject {
                filename: text(f.filename.as_deref()),
                gaps: f.gaps,
                state: f.state.as_str(),
                md5: &f.md5,
                sha1: &f.sha1,
                sha256: &f.sha256,
                stored: false,
                size: f.size,
                tx_id: f.tx_id,
                mimetype: f.mimetype,
                content_type: text(Some(&f.content_type)),
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
                app_proto: "smtp",
                event: a.kind.as_str(),
                layer: "proto_parser",
                severity: a.severity,
                detail: text(Some(&a.detail)),
                drop_requested: a.drop_requested,
            },
        };
        self.line(&line)
    }

    /// Writes the `anomaly` event of a datagram discarded because its
    /// fragments overlapped in part (`decoder.ipv4.frag_overlap` /
    /// `decoder.ipv6.frag_overlap`, as Suricata names them).
    pub fn frag_overlap(&mut self, o: &FragOverlap) -> io::Result<()> {
        self.counters.anomaly += 1;
        self.counters.decode_anomaly += 1;
        let mut cid = [0u8; COMMUNITY_ID_LEN];
        let community_id = o
            .ports
            .filter(|(sp, dp)| tcp_community_id(o.src, o.dst, *sp, *dp, &mut cid))
            .and_then(|_| std::str::from_utf8(&cid).ok());
        let v6 = o.src.is_ipv6();
        let detail = format!(
            "fragments of IPv{} datagram id {:#x} overlap in part: datagram discarded, as Linux does",
            if v6 { 6 } else { 4 },
            o.ident
        );
        let line = DecodeAnomalyLine {
            timestamp: eve_micros(o.ts_micros),
            community_id,
            event_type: "anomaly",
            src_ip: o.src.to_string(),
            src_port: o.ports.map(|p| p.0),
            dest_ip: o.dst.to_string(),
            dest_port: o.ports.map(|p| p.1),
            proto: "TCP",
            anomaly: DecodeAnomalyObject {
                kind_type: "decode",
                event: if v6 {
                    IPV6_FRAG_OVERLAP
                } else {
                    IPV4_FRAG_OVERLAP
                },
                severity: crate::smtp::Severity::Medium,
                detail: &detail,
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
                start: eve_micros(summary.start_micros),
                end: eve_micros(summary.end_micros),
                age: summary.end_micros.saturating_sub(summary.start_micros) / 1_000_000,
                state: &summary.state,
                alerted: summary.alerted,
                gaps: summary.gaps,
                gap_bytes: summary.gap_bytes,
                next_connection_bytes: summary.next_connection_bytes,
                tls: summary.tls,
                transactions: summary.transactions,
                anomalies_suppressed: &summary.anomalies_suppressed,
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
        let attachment = list(c.attachments.iter().map(String::as_str));
        let subject = text(c.subject.as_deref());
        let email = (subject.is_some() || attachment.is_some()).then_some(AlertEmail {
            subject,
            attachment,
        });
        let line = AlertLine {
            header: Self::header(ts_micros, flow, alert.tx_id, "alert"),
            alert: AlertObject {
                action: if blocked { "blocked" } else { "allowed" },
                gid: ALERT_GID,
                signature_id: alert.signature_id,
                rev: alert.rev,
                signature: &alert.signature,
                category: &alert.category,
                severity: alert.severity,
                rule: alert.rule_text.as_deref().and_then(|t| text(Some(t))),
                rule_name: &alert.rule_name,
                enforcement: alert.action.as_str(),
                matched: text(Some(&alert.matched)),
            },
            smtp: SmtpObject {
                helo: text(c.helo.as_deref()),
                mail_from: text(c.mail_from.as_deref()),
                rcpt_to: list(c.rcpt_to.iter().map(String::as_str)),
            },
            email,
        };
        self.line(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(client: &str, server: &str) -> String {
        let c = FlowContext::new(1, client.parse().unwrap(), server.parse().unwrap());
        c.community_id().unwrap().to_string()
    }

    /// The TCP vector of the Community ID specification (corelight's
    /// community-id-spec, baseline `tcp.pcap`), in both orientations.
    #[test]
    fn community_id_spec_vector() {
        let want = "1:LQU9qZlK+B5F3KDmev6m5PMibrg=";
        assert_eq!(cid("128.232.110.120:34855", "66.35.250.204:80"), want);
        assert_eq!(cid("66.35.250.204:80", "128.232.110.120:34855"), want);
    }

    /// Vectors computed independently (Python: SHA-1 over seed, ordered
    /// addresses, protocol, pad, ordered ports; base64), IPv6 and equal ports.
    #[test]
    fn community_id_independent_vectors() {
        assert_eq!(
            cid("[2001:2::1]:40000", "[2001:2::2]:25"),
            "1:hnSR+rdWLXFxU7qQR1TpoSbWEY0="
        );
        assert_eq!(
            cid("198.18.0.1:40000", "198.18.0.2:25"),
            "1:BdcLZH0zm7T897yf2DX226rQOVA="
        );
        assert_eq!(
            cid("198.18.0.2:25", "198.18.0.1:25"),
            "1:xctR0wNgzu83mNqyrBEg9hstIU4="
        );
    }
}
