//! The events the SMTP dissector produces: the interface used by policy and output.
//!
//! `Command`, `Response` and `MailContent` are the Haka tutorial's `command`,
//! `response` and (streamed) `mail_content` events; `Transaction` is emitted
//! once per mail transaction (MAIL FROM … end of message / RSET / abort);
//! `Anomaly` names a protocol oddity (Zeek's "weird").

use serde::Serialize;

pub use super::mime::files::{FileInfo, FileState};

/// Receives events as the dissector produces them.
pub trait EventSink {
    fn event(&mut self, event: Event<'_>);
}

/// Collects owned copies of events (tests, simple consumers).
impl EventSink for Vec<OwnedEvent> {
    fn event(&mut self, event: Event<'_>) {
        self.push(event.to_owned_event());
    }
}

/// One dissector event. `MailContent` borrows the dissector's buffer so that
/// streaming content costs no allocation.
// `Transaction` is large but emitted once per mail; boxing it would cost an
// allocation per transaction for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    Command(Command),
    Response(Response),
    MailContent(MailContent<'a>),
    Transaction(Transaction),
    Anomaly(Anomaly),
    Header(Header),
    MimePart(MimePart),
    Envelope(Envelope),
    File(FileInfo),
    Url(Url),
}

/// [`Event`] with owned content.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedEvent {
    Command(Command),
    Response(Response),
    MailContent(OwnedMailContent),
    Transaction(Transaction),
    Anomaly(Anomaly),
    Header(Header),
    MimePart(MimePart),
    Envelope(Envelope),
    File(FileInfo),
    Url(Url),
}

impl OwnedEvent {
    /// The event, borrowing this one's content.
    pub fn as_event(&self) -> Event<'_> {
        match self {
            OwnedEvent::Command(c) => Event::Command(c.clone()),
            OwnedEvent::Response(r) => Event::Response(r.clone()),
            OwnedEvent::MailContent(m) => Event::MailContent(MailContent {
                tx_id: m.tx_id,
                part: m.part,
                data: &m.data,
            }),
            OwnedEvent::Transaction(t) => Event::Transaction(t.clone()),
            OwnedEvent::Anomaly(a) => Event::Anomaly(a.clone()),
            OwnedEvent::Header(h) => Event::Header(h.clone()),
            OwnedEvent::MimePart(m) => Event::MimePart(m.clone()),
            OwnedEvent::Envelope(e) => Event::Envelope(e.clone()),
            OwnedEvent::File(f) => Event::File(f.clone()),
            OwnedEvent::Url(u) => Event::Url(u.clone()),
        }
    }
}

impl Event<'_> {
    pub fn to_owned_event(&self) -> OwnedEvent {
        match self {
            Event::Command(c) => OwnedEvent::Command(c.clone()),
            Event::Response(r) => OwnedEvent::Response(r.clone()),
            Event::MailContent(m) => OwnedEvent::MailContent(OwnedMailContent {
                tx_id: m.tx_id,
                part: m.part,
                data: m.data.to_vec(),
            }),
            Event::Transaction(t) => OwnedEvent::Transaction(t.clone()),
            Event::Anomaly(a) => OwnedEvent::Anomaly(a.clone()),
            Event::Header(h) => OwnedEvent::Header(h.clone()),
            Event::MimePart(m) => OwnedEvent::MimePart(m.clone()),
            Event::Envelope(e) => OwnedEvent::Envelope(e.clone()),
            Event::File(f) => OwnedEvent::File(f.clone()),
            Event::Url(u) => OwnedEvent::Url(u.clone()),
        }
    }
}

/// One complete header field of the message or of a MIME part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    pub tx_id: u32,
    /// 0 = the message's own header block, n = the n-th MIME part header
    /// block in order of appearance (nested multiparts included).
    pub part: u32,
    /// Field name as written (lossy UTF-8, surrounding whitespace removed).
    pub name: String,
    /// Value unfolded, RFC 2047 encoded-words decoded; at most
    /// [`super::mime::MAX_HEADER`] bytes of the raw field.
    pub value: String,
}

/// Emitted at the end of every header block (message and MIME parts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MimePart {
    pub tx_id: u32,
    /// Same numbering as [`Header::part`].
    pub part: u32,
    /// Lower-cased `type/subtype` of Content-Type; `text/plain` when absent.
    pub content_type: String,
    /// The file name a mail client shows: Content-Disposition `filename`,
    /// else Content-Type `name`; RFC 2231 forms reassembled and decoded
    /// (extended form first), RFC 2047 words decoded.
    pub filename: Option<String>,
    /// Other names a client could show for this part, when the forms
    /// disagree (`filename` vs `filename*`, a repeated parameter, continuation
    /// gaps, Content-Type `name` ≠ `filename`); attachment rules match them too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_filenames: Vec<String>,
}

/// A URL found in a text part of the message, the first time it is seen
/// in the message (see [`super::mime::urls`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Url {
    pub tx_id: u32,
    /// As written, scheme included, at most [`super::mime::urls::MAX_URL`] bytes.
    pub url: String,
}

/// A change of the envelope the server took: emitted when the server
/// accepts the command (2xx reply), or when the command is taken as
/// accepted because no reply can tell (server unheard, reply lost in a
/// gap). A command the server refuses changes nothing and produces no
/// `Envelope` event. Together these events are the transaction's envelope
/// as [`Transaction`] reports it (accepted recipients): policy and
/// `ctl flows` follow them rather than parse command text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Envelope {
    /// The transaction changed (`None` for HELO/EHLO outside a transaction).
    pub tx_id: Option<u32>,
    pub change: EnvelopeChange,
}

/// What changed in the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeChange {
    /// HELO/EHLO accepted: its argument; any open transaction is over.
    Helo(String),
    /// MAIL accepted: a transaction starts (path as in [`Transaction::mail_from`]).
    MailFrom {
        path: String,
        /// SIZE= parameter, if given.
        declared_size: Option<u64>,
    },
    /// RCPT accepted (path as in [`Recipient::path`]).
    Rcpt(String),
    /// RSET accepted: the transaction is over.
    Reset,
}

/// A client command (tutorial event `command`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Command {
    pub verb: Verb,
    /// Parameters as written after the verb (without the separating space and CRLF),
    /// lossily decoded as UTF-8. For AUTH the initial response is replaced by `"***"`.
    pub args: String,
}

/// A server reply (tutorial event `response`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    /// The 3-digit code (of the first line).
    pub code: u16,
    /// Text of each line, without code, separator and CRLF.
    pub lines: Vec<String>,
    /// The command this reply answers; `None` for the greeting or an unmatched reply.
    pub to: Option<Verb>,
}

/// Streamed message content (tutorial event `mail_content`).
#[derive(Debug, Clone, PartialEq)]
pub struct MailContent<'a> {
    /// Transaction the content belongs to (0-based within the session).
    pub tx_id: u32,
    pub part: ContentPart,
    /// Bytes of this piece (empty for `ContentPart::End`).
    pub data: &'a [u8],
}

#[derive(Debug, Clone, PartialEq)]
pub struct OwnedMailContent {
    pub tx_id: u32,
    pub part: ContentPart,
    pub data: Vec<u8>,
}

/// What a piece of mail content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentPart {
    /// Raw message bytes after dot-unstuffing (headers and body as sent).
    Raw,
    /// Decoded body bytes of a MIME part (base64 / quoted-printable removed).
    DecodedBody,
    /// The message ended (end of DATA or BDAT LAST); `data` is empty.
    End,
}

/// SMTP verbs (RFC 5321 and common extensions); anything else is `Unknown`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub enum Verb {
    Helo,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Vrfy,
    Expn,
    Help,
    Noop,
    Quit,
    StartTls,
    Auth,
    Etrn,
    Turn,
    Atrn,
    Xclient,
    Xforward,
    /// A verb we do not know, upper-cased as written (bounded length).
    Unknown(String),
}

impl Verb {
    pub fn as_str(&self) -> &str {
        match self {
            Verb::Helo => "HELO",
            Verb::Ehlo => "EHLO",
            Verb::Mail => "MAIL",
            Verb::Rcpt => "RCPT",
            Verb::Data => "DATA",
            Verb::Bdat => "BDAT",
            Verb::Rset => "RSET",
            Verb::Vrfy => "VRFY",
            Verb::Expn => "EXPN",
            Verb::Help => "HELP",
            Verb::Noop => "NOOP",
            Verb::Quit => "QUIT",
            Verb::StartTls => "STARTTLS",
            Verb::Auth => "AUTH",
            Verb::Etrn => "ETRN",
            Verb::Turn => "TURN",
            Verb::Atrn => "ATRN",
            Verb::Xclient => "XCLIENT",
            Verb::Xforward => "XFORWARD",
            Verb::Unknown(v) => v,
        }
    }
}

impl From<Verb> for String {
    fn from(v: Verb) -> String {
        v.as_str().to_string()
    }
}

/// How a mail transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionState {
    /// The message was accepted (2xx after end of data / BDAT LAST).
    Delivered,
    /// MAIL, all RCPTs, DATA or the message itself were refused.
    Rejected,
    /// RSET or a new HELO/EHLO ended it.
    Reset,
    /// The session ended (QUIT, close, 421, TLS, gap) before the transaction completed.
    Aborted,
}

/// One recipient and what the server said to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recipient {
    /// The path as written, angle brackets kept, ESMTP parameters removed.
    pub path: String,
    /// Reply code to this RCPT, `None` if no reply was seen.
    pub reply_code: Option<u16>,
}

/// What the message headers and MIME structure say (Suricata's `email` object).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Email {
    pub from: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: Option<String>,
    pub date: Option<String>,
    pub message_id: Option<String>,
    pub x_mailer: Option<String>,
    /// File names of attachments (MIME parts with a filename / name parameter).
    pub attachment: Vec<String>,
    /// URLs of the text parts, deduplicated, at most [`super::mime::urls::MAX_URLS`].
    pub url: Vec<String>,
    /// MD5 (hex) of the raw body after the message's header block, as
    /// Suricata computes it; set when the message ended (not when cut short).
    pub body_md5: Option<String>,
    /// MD5 (hex) of the Subject value as written (Suricata's `subject_md5`).
    pub subject_md5: Option<String>,
    /// Received fields as written, in order, at most [`super::mime::MAX_LIST`].
    pub received: Vec<String>,
    pub reply_to: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    pub x_originating_ip: Option<String>,
}

/// One mail transaction, emitted when it ends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transaction {
    /// 0-based index of the transaction within the session (Suricata's tx_id).
    pub id: u32,
    /// Argument of the last HELO/EHLO before this transaction.
    pub helo: Option<String>,
    /// MAIL FROM path as written, angle brackets kept, parameters removed.
    pub mail_from: Option<String>,
    /// ESMTP parameters of MAIL FROM (`SIZE=123`, `BODY=8BITMIME`, …).
    pub mail_params: Vec<String>,
    pub rcpt_to: Vec<Recipient>,
    pub state: TransactionState,
    /// The last reply that decided the state (end of data, or the rejection).
    pub reply_code: Option<u16>,
    /// Message size in bytes after dot-unstuffing (or sum of BDAT chunks).
    pub size: u64,
    /// Whether the session had switched to TLS (the transaction then is only counted).
    pub tls: bool,
    /// `Some` when message content was seen.
    pub email: Option<Email>,
    /// Suricata's `email.status`: "PARSE_DONE" when the message parsed completely,
    /// "HEADER_READY"/"BODY_STARTED" when cut short, "PARSE_ERROR" when cut
    /// before the headers ended; MIME warnings are anomalies, not a status.
    pub email_status: Option<String>,
}

/// How bad an anomaly is (Haka's severities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

/// A protocol anomaly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub severity: Severity,
    /// Human-readable detail; never contains credentials.
    pub detail: String,
    /// Transaction in progress when it happened, if any.
    pub tx_id: Option<u32>,
    /// True when this anomaly is the tutorial's `error` transition: the
    /// dissector stopped parsing the session and asks for it to be dropped.
    pub drop_requested: bool,
}

/// Stable, snake_case anomaly names (they appear in JSON and in policy rules).
/// Lists of every kind (rule names, per-kind counters) are derived from this
/// enum (`strum::VariantArray`, `strum::EnumCount`): add a kind here only.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::VariantArray,
    strum::EnumCount,
    strum::IntoStaticStr,
)]
#[strum(serialize_all = "snake_case")]
pub enum AnomalyKind {
    InvalidReply,
    UnexpectedServerGreeting,
    CommandBeforeGreeting,
    NoHelo,
    InvalidCommand,
    UnknownCommand,
    LineTooLong,
    ReplyCodeMismatch,
    UnmatchedReply,
    InvalidPipelinedSequence,
    SmugglingBareLfEndOfData,
    BdatInvalid,
    BdatChunkOverflow,
    TlsRejected,
    DataAfterQuit,
    MimeInvalidBase64,
    MimeHeaderTooLong,
    /// A header block longer than the cap: read as headers to its end, only
    /// the fields rules and output use were reported past the cap.
    MimeHeaderBlockTooLong,
    /// Multiparts / forwarded messages nested deeper than followed: the
    /// deeper container is read as body text.
    MimeNestingTooDeep,
    /// A Content-Type / Content-Disposition parameter reads two ways (plain
    /// and RFC 2231 forms disagree, repeated, continuation gaps): clients may
    /// show another value than the first.
    MimeAmbiguousParameter,
    /// A line without a colon inside a header block (RFC 5322 §2.2: not a
    /// header field). Mail servers (Postfix's cleanup, Exim) and clients
    /// take it as the first line of the body: the block ends there and the
    /// line and what follows are read as body.
    MimeHeaderMalformed,
    /// A `message/rfc822` part with a base64 / quoted-printable transfer
    /// encoding (RFC 2046 §5.2.1 forbids it): its content is not entered.
    MimeEncodedMessage,
    /// The transport lost bytes (capture gap); parsing resynchronised.
    StreamGap,
    /// Overlapping TCP segments of one direction carried different bytes;
    /// the stream holds what the receiver (Linux) kept. Once per flow and
    /// direction.
    StreamOverlapConflict,
    /// The global memory cap for reassembly and dissection was reached and
    /// this flow was shed (its buffered data given up).
    Memcap,
    /// A per-session bound (commands awaiting replies, recipients, reply
    /// lines, open transactions, client bytes held before a reply) was
    /// reached; the excess was counted and dropped.
    LimitExceeded,
    /// With the end-of-data gate on, the segment that ended a message
    /// reached the server before its content was inspected (it carried more
    /// than the end of the message, e.g. a pipelined command, or the end was
    /// split oddly): a content verdict can no longer stop that message.
    GateMissed,
    /// The server answered a command 503 (bad sequence of commands): a
    /// nested MAIL, RCPT before MAIL, DATA without recipients… The command
    /// changed nothing (Suricata's `DATA_COMMAND_REJECTED` is one case).
    OutOfSequence,
    /// A command line longer than 512 octets with its CRLF (RFC 5321
    /// §4.5.3.1.4; AUTH excepted: RFC 4954 allows 12288).
    CommandLineTooLong,
    /// A message line longer than 998 octets without its CRLF (RFC 5322 §2.1.1).
    MessageLineTooLong,
    /// The server answered STARTTLS with 220 but the client's next bytes
    /// are no TLS record: the session goes on in clear (STARTTLS stripping,
    /// or command injection around the handoff).
    CleartextAfterStarttls,
    /// The server's replies show it ended the data at a bare-LF dot line
    /// and read the bytes after it as commands: a smuggled transaction.
    SmugglingAccepted,
    /// A reply code outside `[2-5][0-5][0-9]` (RFC 5321 §4.2).
    InvalidReplyCode,
    /// The client sent message content before the server's 354 (RFC 2920 §3.1).
    #[strum(serialize = "content_before_354")]
    ContentBefore354,
}

/// JSON writes the kind's one name ([`AnomalyKind::as_str`]).
impl Serialize for AnomalyKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl AnomalyKind {
    /// The kind's stable snake_case name, derived from the variant.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The severity the dissector reports this anomaly with (Haka's levels):
    /// `high` for what breaks parsing or hides content from the monitor
    /// (invalid replies, invalid BDAT, smuggling-style end of data), `medium`
    /// for malformed but survivable input, `low` for oddities.
    pub fn default_severity(self) -> Severity {
        use AnomalyKind as A;
        match self {
            A::InvalidReply
            | A::BdatInvalid
            | A::SmugglingBareLfEndOfData
            | A::StreamOverlapConflict
            | A::SmugglingAccepted => Severity::High,
            A::InvalidCommand
            | A::LineTooLong
            | A::ReplyCodeMismatch
            | A::InvalidPipelinedSequence
            | A::BdatChunkOverflow
            | A::MimeHeaderTooLong
            | A::MimeHeaderBlockTooLong
            | A::MimeHeaderMalformed
            | A::MimeNestingTooDeep
            | A::MimeAmbiguousParameter
            | A::MimeEncodedMessage
            | A::StreamGap
            | A::Memcap
            | A::LimitExceeded
            | A::InvalidReplyCode
            | A::CleartextAfterStarttls
            | A::ContentBefore354
            | A::GateMissed => Severity::Medium,
            A::UnexpectedServerGreeting
            | A::CommandBeforeGreeting
            | A::NoHelo
            | A::UnknownCommand
            | A::UnmatchedReply
            | A::TlsRejected
            | A::DataAfterQuit
            | A::OutOfSequence
            | A::CommandLineTooLong
            | A::MessageLineTooLong
            | A::MimeInvalidBase64 => Severity::Low,
        }
    }
}
