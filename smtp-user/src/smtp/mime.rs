//! Streaming MIME parser (RFC 5322 headers, RFC 2045/2046 bodies, RFC 2231
//! parameters, RFC 2047 encoded words, `message/rfc822` parts).
//!
//! Fed the unstuffed message bytes chunk by chunk, it fills an [`Email`]
//! (From/To/Cc/Subject/Date/Message-ID/X-Mailer of the top-level header,
//! attachment names of every part, nested multiparts and forwarded messages
//! included), emits every header field as a [`Header`] event and every
//! header block as a [`MimePart`] event, and emits decoded body bytes as
//! [`ContentPart::DecodedBody`] events.
//!
//! Structure: the open containers form a stack of [`Level`]s — a multipart
//! (its boundary) or a `message/rfc822` part (RFC 2046 §5.2.1, entered: its
//! header block is read as headers and numbered as a part, its attachments
//! are attachments). A boundary of an enclosing multipart closes every level
//! above it, also in the middle of a header block (a client ends the part
//! there too). In a `multipart/digest` a part without Content-Type is a
//! `message/rfc822` (RFC 2046 §5.1.5). A forwarded message sent base64 or
//! quoted-printable (forbidden by RFC 2046 §5.2.1, decoded by clients
//! anyway) is reported (`mime_encoded_message`) and entered: its decoded
//! bytes feed a nested parser, whose depth counts against ours.
//!
//! A header block ends at the empty line, or at a line that is not a header
//! field (RFC 5322 §2.2: a name of printable ASCII other than `:`, then
//! `:`; the obsolete blanks before the colon are accepted). Such a line is
//! where Postfix's cleanup (`is_header`) and Exim start the body, and where
//! clients start showing text: it is read, with everything after it, as
//! body, and reported (`mime_header_malformed`) when header fields came
//! before it (content without any header field is just a body).
//!
//! Limits (memory per message is bounded, nothing is dropped silently):
//! - one header, unfolded, is kept up to [`MAX_HEADER`] bytes; beyond, the
//!   value is truncated and `mime_header_too_long` is reported;
//! - one header block is read as headers to its end, however long: past
//!   [`MAX_HEADER_BLOCK`] bytes only the fields rules and output use
//!   ([`KEY_FIELDS`], at most [`MAX_LATE_FIELDS`] of them) are still
//!   reported, the others are counted, and `mime_header_block_too_long` says
//!   how many were skipped. Headers are never read as body;
//! - containers are followed to [`MAX_DEPTH`] levels (multiparts and
//!   `message/rfc822` together); a deeper one is body text of its part and
//!   `mime_nesting_too_deep` is reported;
//! - parameters are bounded by [`params`]; address lists and attachment
//!   names keep [`MAX_LIST`] entries; what is cut is reported as
//!   `limit_exceeded`.
//!
//! Body lines are never buffered, except lines starting with `-` inside a
//! multipart (boundary candidates), up to [`MAX_BOUNDARY_LINE`] bytes.

pub mod files;
pub mod params;
pub mod urls;
pub mod words;

pub use words::decode_words;

use std::sync::Arc;

use md5::{Digest, Md5};

use super::decode::{Base64, QuotedPrintable};
use super::events::{
    Anomaly, AnomalyKind, ContentPart, Email, Event, EventSink, Header, MailContent, MimePart, Url,
};
use files::FileTracker;
use params::Param;
use urls::{UrlScanner, UrlSchemes};

/// What the parser derives from content beyond structure: `fileinfo`
/// events (hashes, sniffed type) and URLs. Both on by default; off, the
/// parser costs what it did without them.
#[derive(Debug, Clone)]
pub struct ContentOptions {
    /// Hash and sniff file parts, emit [`Event::File`]; compute `body_md5`.
    pub files: bool,
    /// Look for URLs in text parts with these schemes, emit [`Event::Url`].
    pub urls: Option<Arc<UrlSchemes>>,
}

impl Default for ContentOptions {
    fn default() -> Self {
        ContentOptions {
            files: true,
            urls: Some(UrlSchemes::default_schemes()),
        }
    }
}

impl ContentOptions {
    /// Neither files nor URLs.
    pub fn off() -> ContentOptions {
        ContentOptions {
            files: false,
            urls: None,
        }
    }
}

/// Longest header (unfolded) kept, in bytes.
pub const MAX_HEADER: usize = 4096;
/// Header block size past which only [`KEY_FIELDS`] are reported.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Deepest container nesting followed (multiparts and forwarded messages).
pub const MAX_DEPTH: usize = 8;
/// Most entries kept in To, Cc and attachment lists.
pub const MAX_LIST: usize = 64;
/// Longest line buffered when looking for a boundary.
pub const MAX_BOUNDARY_LINE: usize = 1024;
/// Most [`KEY_FIELDS`] reported per header block past [`MAX_HEADER_BLOCK`].
pub const MAX_LATE_FIELDS: u32 = 64;
/// Other readings of a part's file name kept (see [`MimePart::other_filenames`]).
pub const MAX_OTHER_FILENAMES: usize = 8;

/// The header fields policy rules and output read; reported even past
/// [`MAX_HEADER_BLOCK`] (lower case).
pub const KEY_FIELDS: &[&str] = &[
    "from",
    "to",
    "cc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "x-mailer",
    "content-type",
    "content-disposition",
    "content-transfer-encoding",
];

/// What a header-block line (or its start) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldLine {
    /// A header field: a name, optional blanks, a colon.
    Field,
    /// Not a header field, whatever follows.
    NotField,
    /// No colon yet: the rest of the line decides.
    Undecided,
}

/// Reads `bytes`, the start of a line that is not a continuation, as
/// Postfix's `is_header_buf` does: printable ASCII other than `:` (at
/// least one), optional blanks, then `:`.
fn field_line(bytes: impl IntoIterator<Item = u8>) -> FieldLine {
    let (mut name, mut blanks) = (false, false);
    for c in bytes {
        match c {
            b':' if name => return FieldLine::Field,
            b' ' | b'\t' if name => blanks = true,
            33..=126 if !blanks && c != b':' => name = true,
            _ => return FieldLine::NotField,
        }
    }
    FieldLine::Undecided
}

/// Finds the start of a line beginning with `-` (a boundary candidate).
static DASH_LINE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\n-"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a header block (top-level, a part's or a forwarded message's).
    Headers,
    /// Reading a body.
    Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Encoding {
    #[default]
    Identity,
    Base64,
    QuotedPrintable,
    /// Multipart preamble/epilogue: not decoded, not emitted.
    Skip,
}

/// One open container.
#[derive(Debug)]
enum Level {
    /// A multipart body: its parts start at `--boundary` lines.
    Multipart {
        boundary: Vec<u8>,
        /// `multipart/digest`: parts default to `message/rfc822`.
        digest: bool,
    },
    /// A `message/rfc822` part: a whole message (headers, body) as content.
    Message,
}

/// What the current part's headers said.
#[derive(Debug, Default)]
struct PartInfo {
    encoding: Encoding,
    /// Content-Transfer-Encoding as written (lower case), if seen.
    encoding_name: Option<String>,
    /// `boundary=` of a multipart Content-Type.
    boundary: Option<Vec<u8>>,
    /// Content-Disposition `filename`.
    filename: Option<Param>,
    /// Content-Type `name`.
    name: Option<Param>,
    /// Lower-cased `type/subtype` of Content-Type, if the header was seen.
    content_type: Option<String>,
    /// The part's text is searched for URLs.
    scan_urls: bool,
}

/// Streaming MIME parser for one message.
#[derive(Debug)]
pub struct MimeParser {
    phase: Phase,
    /// True while the header block being read is the message's own (top level).
    top_level: bool,
    /// Current header line / boundary candidate; at most `MAX_HEADER` / `MAX_BOUNDARY_LINE` bytes.
    line: Vec<u8>,
    /// True when bytes of the current line were dropped (too long).
    line_truncated: bool,
    /// The header being unfolded; at most `MAX_HEADER` bytes.
    header: Vec<u8>,
    /// True once the current header was reported too long.
    header_truncated: bool,
    /// Bytes of the current header block so far.
    block_len: usize,
    /// The transport lost bytes in this header block and no line ended
    /// since: the line being read may be the tail of a lost one, and is
    /// not read as the start of the body (the gap is reported already).
    after_gap: bool,
    /// The current header block holds a header field: a line that is not
    /// one is malformed (without any, the content simply has no header
    /// block and starts with its body).
    block_fields: bool,
    /// Key fields reported past `MAX_HEADER_BLOCK` in this block (≤ `MAX_LATE_FIELDS`).
    late_fields: u32,
    /// Fields past `MAX_HEADER_BLOCK` in this block that were not reported.
    late_skipped: u64,
    part: PartInfo,
    /// Open containers, outermost first; at most `MAX_DEPTH`.
    levels: Vec<Level>,
    /// Number of `Level::Multipart` in `levels` (0: no boundary to look for).
    multiparts: usize,
    /// In a multipart body: the next byte starts a line.
    at_line_start: bool,
    /// In a multipart body: the current line is a boundary candidate being buffered.
    candidate: bool,
    b64: Base64,
    qp: QuotedPrintable,
    /// Scratch buffer for decoded bytes (reused).
    out: Vec<u8>,
    email: Email,
    /// More than `MAX_LIST` attachment names were seen (reported once).
    attachments_cut: bool,
    /// Number of the header block being read or the body being decoded
    /// (0 = message, n = n-th header block after it in order of appearance:
    /// MIME parts and forwarded messages).
    part_no: u32,
    /// Header blocks opened so far after the message's (the next gets `parts_seen + 1`).
    parts_seen: u32,
    /// A MIME error was seen (and reported as an anomaly).
    pub error: bool,
    /// The top-level header block ended.
    pub headers_done: bool,
    /// Body bytes were seen.
    pub body_started: bool,
    /// A base64 / quoted-printable `message/rfc822` part being read: its
    /// decoded bytes are parsed by this parser (boxed: at most `MAX_DEPTH`
    /// deep, through `depth_base`).
    inner: Option<Box<MimeParser>>,
    /// Containers open around this parser: 0 for the message, the parent's
    /// depth + 1 for an `inner` parser. `depth_base + levels.len() ≤ MAX_DEPTH`.
    depth_base: usize,
    opts: ContentOptions,
    /// The file part being decoded, if any.
    files: FileTracker,
    /// URLs of the message's text parts.
    urls: UrlScanner,
    /// MD5 of the raw body after the message's own header block (Suricata's
    /// `body_md5`); `None` until that block ends.
    body_md5: Option<Md5>,
    /// Offsets in `header` of the first byte of each folded continuation
    /// line (Suricata drops it when unfolding: `subject_md5` follows).
    folds: Vec<usize>,
    /// The message was cut short: open files are truncated.
    cut: bool,
    /// Bytes of the message were lost: no `body_md5`.
    body_lost: bool,
    /// Received fields of the message's header block beyond `MAX_LIST`.
    received_dropped: u64,
}

impl Default for MimeParser {
    fn default() -> Self {
        MimeParser::new()
    }
}

/// Where decoded bytes and anomalies go.
struct Out<'s, S: EventSink> {
    tx_id: u32,
    sink: &'s mut S,
}

impl<S: EventSink> Out<'_, S> {
    fn body(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.sink.event(Event::MailContent(MailContent {
                tx_id: self.tx_id,
                part: ContentPart::DecodedBody,
                data,
            }));
        }
    }

    fn header(&mut self, part: u32, name: String, value: String) {
        self.sink.event(Event::Header(Header {
            tx_id: self.tx_id,
            part,
            name,
            value,
        }));
    }

    fn anomaly(&mut self, kind: AnomalyKind, detail: String) {
        self.sink.event(Event::Anomaly(Anomaly {
            kind,
            severity: kind.default_severity(),
            detail,
            tx_id: Some(self.tx_id),
            drop_requested: false,
        }));
    }
}

impl MimeParser {
    pub fn new() -> MimeParser {
        MimeParser {
            phase: Phase::Headers,
            top_level: true,
            line: Vec::new(),
            line_truncated: false,
            header: Vec::new(),
            header_truncated: false,
            block_len: 0,
            block_fields: false,
            after_gap: false,
            late_fields: 0,
            late_skipped: 0,
            part: PartInfo::default(),
            levels: Vec::new(),
            multiparts: 0,
            at_line_start: true,
            candidate: false,
            b64: Base64::default(),
            qp: QuotedPrintable::default(),
            out: Vec::new(),
            email: Email::default(),
            attachments_cut: false,
            part_no: 0,
            parts_seen: 0,
            error: false,
            headers_done: false,
            body_started: false,
            inner: None,
            depth_base: 0,
            opts: ContentOptions::default(),
            files: FileTracker::default(),
            urls: UrlScanner::default(),
            body_md5: None,
            folds: Vec::new(),
            cut: false,
            body_lost: false,
            received_dropped: 0,
        }
    }

    /// A parser deriving what `opts` asks for.
    pub fn with_options(opts: ContentOptions) -> MimeParser {
        MimeParser {
            opts,
            ..MimeParser::new()
        }
    }

    /// Prepare for a new message, keeping allocated buffers.
    pub fn reset(&mut self) {
        let (mut line, mut header, mut out) = (
            std::mem::take(&mut self.line),
            std::mem::take(&mut self.header),
            std::mem::take(&mut self.out),
        );
        line.clear();
        header.clear();
        out.clear();
        let (opts, mut urls) = (self.opts.clone(), std::mem::take(&mut self.urls));
        urls.reset();
        *self = MimeParser {
            line,
            header,
            out,
            opts,
            urls,
            ..MimeParser::new()
        };
    }

    /// What this parser derives.
    pub fn options(&self) -> &ContentOptions {
        &self.opts
    }

    /// The message was cut short (aborted): files still open are truncated.
    pub fn cut(&mut self) {
        self.cut = true;
        if let Some(inner) = &mut self.inner {
            inner.cut();
        }
    }

    /// The transport lost bytes: drop the partial line and continue at the next one.
    pub fn gap(&mut self) {
        if let Some(inner) = &mut self.inner {
            inner.gap();
        }
        self.line.clear();
        self.files.gap();
        self.body_md5 = None;
        self.body_lost = true;
        self.after_gap = self.phase == Phase::Headers;
        self.candidate = false;
        self.at_line_start = false;
        self.b64.reset();
        self.qp.reset();
    }

    /// What the headers said so far (the message may be incomplete), with
    /// the URLs found and `body_md5` once the body is complete.
    pub fn take_email(&mut self) -> Email {
        let mut email = std::mem::take(&mut self.email);
        email.url = std::mem::take(&mut self.urls.urls);
        email
    }

    /// Feeds message bytes (after dot-unstuffing).
    pub fn feed<S: EventSink>(&mut self, data: &[u8], tx_id: u32, sink: &mut S) {
        let out = &mut Out { tx_id, sink };
        if !self.opts.files || self.body_lost {
            self.feed_out(data, out);
            return;
        }
        if let Some(md5) = &mut self.body_md5 {
            md5.update(data);
            self.feed_out(data, out);
            return;
        }
        // Until the message's header block ends: the body hash starts after it.
        let mut rest = data;
        while !rest.is_empty() {
            if self.headers_done {
                // (Started already when a line that is no header field began the body.)
                self.body_md5.get_or_insert_with(Md5::new).update(rest);
                self.feed_out(rest, out);
                return;
            }
            let used = match self.phase {
                Phase::Headers => self.feed_headers(rest, out),
                Phase::Body => self.feed_body(rest, out),
            };
            rest = rest.get(used..).unwrap_or(&[]);
        }
    }

    fn feed_out<S: EventSink>(&mut self, data: &[u8], out: &mut Out<'_, S>) {
        let mut rest = data;
        while !rest.is_empty() {
            let used = match self.phase {
                Phase::Headers => self.feed_headers(rest, out),
                Phase::Body => self.feed_body(rest, out),
            };
            rest = rest.get(used..).unwrap_or(&[]);
        }
    }

    /// End of message: flush a header block cut short.
    pub fn finish<S: EventSink>(&mut self, tx_id: u32, sink: &mut S) {
        self.finish_out(&mut Out { tx_id, sink });
    }

    fn finish_out<S: EventSink>(&mut self, out: &mut Out<'_, S>) {
        if self.phase == Phase::Headers {
            if !self.line.is_empty() {
                let mut line = std::mem::take(&mut self.line);
                self.header_line(&line, b"", out);
                if self.line.is_empty() {
                    line.clear();
                    self.line = line;
                }
            }
            // A forwarded message may open another header block: bounded by MAX_DEPTH.
            while self.phase == Phase::Headers {
                self.end_of_headers(out);
            }
        }
        if self.candidate {
            // A last line without line ending (BDAT content may end so).
            let line = std::mem::take(&mut self.line);
            if !self.boundary_line(&line, out) {
                self.decode(&line, out);
            }
            self.line = line;
            self.line.clear();
            self.candidate = false;
        }
        // The last part ends: its decoder's tail, its file, its URLs.
        self.flush_decoder(out);
        if self.urls.dropped > 0 {
            out.anomaly(
                AnomalyKind::LimitExceeded,
                format!(
                    "more than {} URLs in the message: {} not listed",
                    urls::MAX_URLS,
                    self.urls.dropped
                ),
            );
            self.urls.dropped = 0;
        }
        if let Some(md5) = self.body_md5.take().filter(|_| !self.cut) {
            self.email.body_md5 = Some(format!("{:x}", md5.finalize()));
        }
    }

    /// The part being decoded ended: its file (if it is one) is closed and
    /// reported, its URL scan finished.
    fn end_part<S: EventSink>(&mut self, out: &mut Out<'_, S>) {
        if let Some(f) = self.files.close(out.tx_id, self.cut) {
            out.sink.event(Event::File(f));
        }
        if self.part.scan_urls {
            self.part.scan_urls = false;
            if let Some(schemes) = &self.opts.urls {
                let tx_id = out.tx_id;
                self.urls.flush(schemes, &mut |url| {
                    out.sink.event(Event::Url(Url {
                        tx_id,
                        url: url.to_string(),
                    }))
                });
            }
        }
    }

    /// The encoded forwarded message ended: finish it, take its attachments
    /// and part numbers.
    fn close_inner<S: EventSink>(&mut self, out: &mut Out<'_, S>) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        inner.finish_out(out);
        inner.flush_decoder(out);
        for name in inner.email.attachment.drain(..) {
            if self.email.attachment.len() < MAX_LIST {
                self.email.attachment.push(name);
            } else if !self.attachments_cut {
                self.attachments_cut = true;
                out.anomaly(
                    AnomalyKind::LimitExceeded,
                    format!("more than {MAX_LIST} attachments: names from {name:?} on not listed"),
                );
            }
        }
        for url in inner.urls.urls.drain(..) {
            if self.urls.urls.len() < urls::MAX_URLS {
                if !self.urls.urls.contains(&url) {
                    self.urls.urls.push(url);
                }
            } else {
                self.urls.dropped += 1;
            }
        }
        self.urls.dropped += inner.urls.dropped;
        self.parts_seen = self.parts_seen.max(inner.parts_seen);
        self.error |= inner.error;
    }

    fn feed_headers<S: EventSink>(&mut self, data: &[u8], out: &mut Out<'_, S>) -> usize {
        let (chunk, complete) = match memchr::memchr(b'\n', data) {
            Some(i) => (&data[..i], true),
            None => (data, false),
        };
        let used = chunk.len() + usize::from(complete);
        let room = MAX_HEADER.saturating_sub(self.line.len());
        if chunk.len() > room {
            // Too long to keep whole: a header field is truncated; any other
            // line is body, none of it dropped.
            let start = self.line.iter().chain(&chunk[..room]).copied();
            let continuation = matches!(self.line.first().or(chunk.first()), Some(b' ' | b'\t'));
            if !self.line_truncated
                && !self.after_gap
                && !continuation
                && field_line(start) != FieldLine::Field
            {
                let head = std::mem::take(&mut self.line);
                self.malformed_line(&head, data.get(..used).unwrap_or(data), out);
                if self.line.is_empty() {
                    self.line = head;
                    self.line.clear();
                }
                return used;
            }
            self.line_truncated = true;
        }
        self.block_len = self.block_len.saturating_add(used);
        self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if complete {
            let mut line = std::mem::take(&mut self.line);
            let ending: &[u8] = if line.last() == Some(&b'\r') {
                line.pop();
                b"\r\n"
            } else {
                b"\n"
            };
            self.header_line(&line, ending, out);
            self.after_gap = false;
            if self.line.is_empty() {
                line.clear();
                self.line = line;
            }
            self.line_truncated = false;
        }
        used
    }

    /// A line of a header block that is not a header field (`head`, then
    /// `rest`, its remaining bytes): the block ends, as after an empty line,
    /// and the line is the first of the body (as Postfix and clients read
    /// it). Reported when header fields came before it; content that starts
    /// with such a line has no header block (its body is all there is).
    fn malformed_line<S: EventSink>(&mut self, head: &[u8], rest: &[u8], out: &mut Out<'_, S>) {
        if self.top_level && !self.headers_done && self.opts.files && !self.body_lost {
            // The message's body starts with this line.
            let mut md5 = Md5::new();
            md5.update(head);
            md5.update(rest);
            self.body_md5 = Some(md5);
        }
        self.finish_header(out);
        if self.block_fields {
            self.error = true;
            let shown = head.get(..64).unwrap_or(head);
            out.anomaly(
            AnomalyKind::MimeHeaderMalformed,
            format!(
                "line without a header field name in header block {}: {:?}; read as the first body line",
                self.part_no,
                String::from_utf8_lossy(shown)
            ),
            );
        }
        self.end_of_headers(out);
        self.feed_out(head, out);
        self.feed_out(rest, out);
    }

    /// One header line (line ending removed; `ending` is it, empty for a
    /// last line without one).
    fn header_line<S: EventSink>(&mut self, line: &[u8], ending: &[u8], out: &mut Out<'_, S>) {
        match line.first() {
            None => self.end_of_headers(out),
            // Folded continuation: unfolded by dropping the line break.
            Some(b' ' | b'\t') => self.append_header(line, out),
            // A boundary of an enclosing multipart ends the header block too.
            Some(b'-') if self.multiparts > 0 && self.is_boundary(line) => {
                self.end_of_headers(out);
                while self.phase == Phase::Headers {
                    self.end_of_headers(out);
                }
                self.boundary_line(line, out);
            }
            // The tail of a line cut by a gap: lost with the gap.
            Some(_) if self.after_gap && field_line(line.iter().copied()) != FieldLine::Field => {}
            Some(_) if field_line(line.iter().copied()) != FieldLine::Field => {
                self.malformed_line(line, ending, out);
                return;
            }
            Some(_) => {
                self.block_fields = true;
                self.finish_header(out);
                self.append_header(line, out);
            }
        }
        if self.line_truncated && !self.header_truncated && !self.header.is_empty() {
            self.report_long_header(out);
        }
    }

    fn append_header<S: EventSink>(&mut self, bytes: &[u8], out: &mut Out<'_, S>) {
        let room = MAX_HEADER.saturating_sub(self.header.len());
        if matches!(bytes.first(), Some(b' ' | b'\t')) && room > 0 && !self.header.is_empty() {
            self.folds.push(self.header.len());
        }
        if bytes.len() > room && !self.header_truncated {
            self.report_long_header(out);
        }
        self.header
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn report_long_header<S: EventSink>(&mut self, out: &mut Out<'_, S>) {
        self.header_truncated = true;
        self.error = true;
        let name = self.header.split(|&c| c == b':').next().unwrap_or(&[]);
        let name = crate::text::lossy_string(&name[..name.len().min(64)]);
        out.anomaly(
            AnomalyKind::MimeHeaderTooLong,
            format!("header {name:?} longer than {MAX_HEADER} bytes; truncated"),
        );
    }

    /// Interprets the header collected in `self.header`.
    fn finish_header<S: EventSink>(&mut self, out: &mut Out<'_, S>) {
        if self.header.is_empty() {
            return;
        }
        let header = std::mem::take(&mut self.header);
        if let Some(colon) = memchr::memchr(b':', &header) {
            let name = header[..colon].trim_ascii();
            let late = self.block_len > MAX_HEADER_BLOCK;
            let key = || {
                KEY_FIELDS
                    .iter()
                    .any(|k| name.eq_ignore_ascii_case(k.as_bytes()))
            };
            if late && (self.late_fields >= MAX_LATE_FIELDS || !key()) {
                self.late_skipped += 1;
            } else {
                self.late_fields += u32::from(late);
                if self.top_level
                    && self.email.subject_md5.is_none()
                    && name.eq_ignore_ascii_case(b"subject")
                {
                    self.email.subject_md5 = Some(subject_md5(&header, colon, &self.folds));
                }
                let value = crate::text::lossy(header[colon + 1..].trim_ascii());
                self.header_field(name, &value, out);
                out.header(
                    self.part_no,
                    crate::text::lossy_string(name),
                    decode_words(&value),
                );
            }
        }
        self.header = header;
        self.header.clear();
        self.folds.clear();
        self.header_truncated = false;
    }

    fn header_field<S: EventSink>(&mut self, name: &[u8], value: &str, out: &mut Out<'_, S>) {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if self.top_level {
            let e = &mut self.email;
            if is("from") {
                e.from.get_or_insert_with(|| value.to_string());
            } else if is("to") {
                push_addresses(&mut e.to, value, out);
            } else if is("cc") {
                push_addresses(&mut e.cc, value, out);
            } else if is("subject") {
                e.subject.get_or_insert_with(|| decode_words(value));
            } else if is("date") {
                e.date.get_or_insert_with(|| value.to_string());
            } else if is("message-id") {
                e.message_id.get_or_insert_with(|| value.to_string());
            } else if is("x-mailer") {
                e.x_mailer.get_or_insert_with(|| value.to_string());
            } else if is("received") {
                if e.received.len() < MAX_LIST {
                    e.received.push(value.to_string());
                } else {
                    self.received_dropped += 1;
                }
            } else if is("reply-to") {
                e.reply_to.get_or_insert_with(|| value.to_string());
            } else if is("in-reply-to") {
                e.in_reply_to.get_or_insert_with(|| value.to_string());
            } else if is("references") {
                e.references.get_or_insert_with(|| value.to_string());
            } else if is("x-originating-ip") {
                e.x_originating_ip.get_or_insert_with(|| value.to_string());
            }
        }
        if is("content-type") {
            let mut p = self.parameters("Content-Type", value, out);
            let kind = p.value.to_ascii_lowercase();
            self.part.boundary = None;
            if kind.starts_with("multipart/") {
                self.part.boundary = p.get("boundary").map(|b| b.value.clone().into_bytes());
            }
            self.part.name = take_param(&mut p.params, "name");
            self.part.content_type = Some(kind);
        } else if is("content-transfer-encoding") {
            let v = value.trim().to_ascii_lowercase();
            self.part.encoding = match v.as_str() {
                "base64" => Encoding::Base64,
                "quoted-printable" => Encoding::QuotedPrintable,
                _ => Encoding::Identity,
            };
            self.part.encoding_name = Some(v);
        } else if is("content-disposition") {
            let mut p = self.parameters("Content-Disposition", value, out);
            self.part.filename = take_param(&mut p.params, "filename");
        }
    }

    /// Parses parameters; reports what was cut and what is ambiguous.
    fn parameters<S: EventSink>(
        &mut self,
        field: &str,
        value: &str,
        out: &mut Out<'_, S>,
    ) -> params::Params {
        let p = params::parse(value);
        if p.dropped > 0 || p.cut {
            out.anomaly(
                AnomalyKind::LimitExceeded,
                format!(
                    "{field}: {} parameters not read (beyond {}, malformed name, or continuation index ≥ {}){}",
                    p.dropped,
                    params::MAX_PARAMS,
                    params::MAX_SEGMENTS,
                    if p.cut {
                        ", a value cut to 1024 bytes"
                    } else {
                        ""
                    }
                ),
            );
        }
        for a in p.params.iter().filter(|a| a.ambiguous) {
            out.anomaly(
                AnomalyKind::MimeAmbiguousParameter,
                format!(
                    "{field}: parameter {:?} reads {:?} and also {:?}",
                    a.name, a.value, a.others
                ),
            );
        }
        p
    }

    fn end_of_headers<S: EventSink>(&mut self, out: &mut Out<'_, S>) {
        self.finish_header(out);
        if self.block_len > MAX_HEADER_BLOCK {
            out.anomaly(
                AnomalyKind::MimeHeaderBlockTooLong,
                format!(
                    "header block {} of {} bytes, longer than {MAX_HEADER_BLOCK}: {} fields after the limit skipped ({} key fields kept)",
                    self.part_no, self.block_len, self.late_skipped, self.late_fields
                ),
            );
        }
        if self.top_level && self.received_dropped > 0 {
            out.anomaly(
                AnomalyKind::LimitExceeded,
                format!(
                    "more than {MAX_LIST} Received fields: {} not listed",
                    self.received_dropped
                ),
            );
        }
        self.block_len = 0;
        self.block_fields = false;
        self.late_fields = 0;
        self.late_skipped = 0;
        let part = std::mem::take(&mut self.part);
        let (filename, other_filenames) = file_names(part.filename, part.name);
        if let Some(name) = &filename {
            if self.email.attachment.len() < MAX_LIST {
                self.email.attachment.push(name.clone());
            } else if !self.attachments_cut {
                self.attachments_cut = true;
                out.anomaly(
                    AnomalyKind::LimitExceeded,
                    format!("more than {MAX_LIST} attachments: names from {name:?} on not listed"),
                );
            }
        }
        let digest = matches!(
            self.levels.last(),
            Some(Level::Multipart { digest: true, .. })
        );
        let content_type = match part.content_type.filter(|t| !t.is_empty()) {
            Some(t) => t,
            None if digest && !self.top_level => "message/rfc822".to_string(),
            None => "text/plain".to_string(),
        };
        let is_message = content_type == "message/rfc822" || content_type == "message/global";
        let container =
            is_message || (content_type.starts_with("multipart/") && part.boundary.is_some());
        let text = content_type.starts_with("text/");
        if !container && self.opts.files && (filename.is_some() || !text) {
            let hold_eol = matches!(
                part.encoding,
                Encoding::Identity | Encoding::QuotedPrintable
            );
            self.files
                .open(self.part_no, filename.clone(), &content_type, hold_eol);
        }
        self.part.scan_urls = text && filename.is_none() && self.opts.urls.is_some();
        out.sink.event(Event::MimePart(MimePart {
            tx_id: out.tx_id,
            part: self.part_no,
            content_type: content_type.clone(),
            filename,
            other_filenames,
        }));
        self.top_level = false;
        self.headers_done = true;
        self.phase = Phase::Body;
        self.at_line_start = true;
        self.candidate = false;
        self.b64.reset();
        self.qp.reset();
        self.part.encoding = part.encoding;
        let room = self.depth_base + self.levels.len() < MAX_DEPTH;
        match part.boundary {
            Some(b) if !b.is_empty() => {
                if room {
                    self.levels.push(Level::Multipart {
                        digest: content_type == "multipart/digest",
                        boundary: b,
                    });
                    self.multiparts += 1;
                    self.part.encoding = Encoding::Skip;
                } else {
                    self.too_deep(&content_type, out);
                }
                return;
            }
            _ => {}
        }
        if !is_message {
            return;
        }
        if !room {
            self.too_deep(&content_type, out);
            return;
        }
        if part.encoding != Encoding::Identity {
            // RFC 2046 §5.2.1: only 7bit, 8bit or binary; clients decode it
            // anyway. Its decoded bytes go to a parser of their own.
            out.anomaly(
                AnomalyKind::MimeEncodedMessage,
                format!(
                    "{content_type} part {} with Content-Transfer-Encoding {}: entered after decoding",
                    self.part_no,
                    part.encoding_name.as_deref().unwrap_or("?")
                ),
            );
            self.parts_seen = self.parts_seen.saturating_add(1);
            let mut inner = MimeParser::with_options(self.opts.clone());
            inner.top_level = false;
            inner.cut = self.cut;
            inner.depth_base = self.depth_base + self.levels.len() + 1;
            inner.part_no = self.parts_seen;
            inner.parts_seen = self.parts_seen;
            self.inner = Some(Box::new(inner));
            return;
        }
        // Enter the forwarded message: its header block is the next part.
        self.levels.push(Level::Message);
        self.parts_seen = self.parts_seen.saturating_add(1);
        self.part_no = self.parts_seen;
        self.phase = Phase::Headers;
    }

    fn too_deep<S: EventSink>(&mut self, content_type: &str, out: &mut Out<'_, S>) {
        out.anomaly(
            AnomalyKind::MimeNestingTooDeep,
            format!(
                "{content_type} part {} nested deeper than {MAX_DEPTH} levels: read as body text",
                self.part_no
            ),
        );
    }

    fn feed_body<S: EventSink>(&mut self, data: &[u8], out: &mut Out<'_, S>) -> usize {
        self.body_started = true;
        if self.multiparts == 0 {
            self.decode(data, out);
            return data.len();
        }
        if self.candidate {
            // Buffering a line that may be a boundary.
            let (chunk, complete) = match memchr::memchr(b'\n', data) {
                Some(i) => (&data[..=i], true),
                None => (data, false),
            };
            if self.line.len() + chunk.len() > MAX_BOUNDARY_LINE {
                // Too long for a boundary: it is body text.
                let line = std::mem::take(&mut self.line);
                self.decode(&line, out);
                self.line = line;
                self.line.clear();
                self.candidate = false;
                self.at_line_start = false;
                return 0;
            }
            self.line.extend_from_slice(chunk);
            if complete {
                self.candidate = false;
                self.at_line_start = true;
                let line = std::mem::take(&mut self.line);
                if !self.boundary_line(&line, out) {
                    self.decode(&line, out);
                }
                self.line = line;
                self.line.clear();
            }
            return chunk.len();
        }
        if self.at_line_start && data.first() == Some(&b'-') {
            self.candidate = true;
            return 0;
        }
        // Only lines starting with `-` can be boundaries: decode up to the next one.
        match DASH_LINE.find(data) {
            Some(i) => {
                self.decode(&data[..=i], out);
                self.at_line_start = true;
                i + 1
            }
            None => {
                self.decode(data, out);
                self.at_line_start = data.last() == Some(&b'\n');
                data.len()
            }
        }
    }

    /// If `line` is a boundary of an open multipart, act on it and return true.
    /// The open multipart level whose boundary `line` is, and whether it is
    /// the close delimiter (`--boundary--`).
    fn boundary_level(&self, line: &[u8]) -> Option<(usize, bool)> {
        let rest = line.strip_prefix(b"--")?.trim_ascii_end();
        self.levels
            .iter()
            .enumerate()
            .rev()
            .find_map(|(level, l)| match l {
                Level::Multipart { boundary, .. } => match rest.strip_prefix(boundary.as_slice()) {
                    Some(b"--") => Some((level, true)),
                    Some(b"") => Some((level, false)),
                    _ => None,
                },
                Level::Message => None,
            })
    }

    fn is_boundary(&self, line: &[u8]) -> bool {
        self.boundary_level(line).is_some()
    }

    /// Closes the levels above `level` (and `level` itself when `close`).
    fn truncate_levels(&mut self, len: usize) {
        self.levels.truncate(len);
        self.multiparts = self
            .levels
            .iter()
            .filter(|l| matches!(l, Level::Multipart { .. }))
            .count();
    }

    /// If `line` is a boundary of an open multipart, act on it and return true.
    fn boundary_line<S: EventSink>(&mut self, line: &[u8], out: &mut Out<'_, S>) -> bool {
        let Some((level, close)) = self.boundary_level(line) else {
            return false;
        };
        self.flush_decoder(out);
        if close {
            // Close delimiter: the epilogue of this multipart is skipped.
            self.truncate_levels(level);
            self.part.encoding = Encoding::Skip;
        } else {
            self.truncate_levels(level + 1);
            self.parts_seen = self.parts_seen.saturating_add(1);
            self.part_no = self.parts_seen;
            self.phase = Phase::Headers;
            self.part = PartInfo::default();
            self.block_len = 0;
        }
        true
    }

    fn flush_decoder<S: EventSink>(&mut self, out: &mut Out<'_, S>) {
        if self.part.encoding == Encoding::Base64 {
            let mut tail = std::mem::take(&mut self.out);
            tail.clear();
            self.b64.finish(&mut tail);
            if !tail.is_empty() {
                match &mut self.inner {
                    Some(inner) => inner.feed_out(&tail, out),
                    None => {
                        self.derive(&tail, out);
                        out.body(&tail);
                    }
                }
            }
            self.out = tail;
        }
        if self.b64.invalid > 0 {
            self.error = true;
            out.anomaly(
                AnomalyKind::MimeInvalidBase64,
                format!(
                    "{} bytes outside the base64 alphabet in a base64 part",
                    self.b64.invalid
                ),
            );
        }
        self.b64.reset();
        self.qp.reset();
        self.close_inner(out);
        self.end_part(out);
    }

    fn decode<S: EventSink>(&mut self, data: &[u8], out: &mut Out<'_, S>) {
        match self.part.encoding {
            Encoding::Skip => {}
            Encoding::Identity => {
                self.derive(data, out);
                out.body(data);
            }
            Encoding::Base64 | Encoding::QuotedPrintable => {
                let mut decoded = std::mem::take(&mut self.out);
                decoded.clear();
                if self.part.encoding == Encoding::Base64 {
                    self.b64.feed(data, &mut decoded);
                } else {
                    self.qp.feed(data, &mut decoded);
                }
                match &mut self.inner {
                    Some(inner) => inner.feed_out(&decoded, out),
                    None => {
                        self.derive(&decoded, out);
                        out.body(&decoded);
                    }
                }
                self.out = decoded;
            }
        }
    }

    /// Decoded bytes of the current part: hashed if it is a file, searched
    /// for URLs if it is text.
    fn derive<S: EventSink>(&mut self, data: &[u8], out: &mut Out<'_, S>) {
        if self.files.is_open() {
            self.files.data(data);
        }
        if self.part.scan_urls {
            if let Some(schemes) = &self.opts.urls {
                let tx_id = out.tx_id;
                self.urls.feed(schemes, data, &mut |url| {
                    out.sink.event(Event::Url(Url {
                        tx_id,
                        url: url.to_string(),
                    }))
                });
            }
        }
    }

    /// End of the message body: report decoder errors of the last part.
    pub fn end_body<S: EventSink>(&mut self, tx_id: u32, sink: &mut S) {
        let mut out = Out { tx_id, sink };
        self.flush_decoder(&mut out);
    }
}

/// Suricata's `subject_md5`: MD5 of the Subject value as written (RFC 2047
/// words not decoded), blanks after the colon skipped, unfolded as
/// Suricata unfolds (the first blank of each continuation line dropped).
fn subject_md5(header: &[u8], colon: usize, folds: &[usize]) -> String {
    let mut md5 = Md5::new();
    let mut start = colon + 1;
    while matches!(header.get(start), Some(b' ' | b'\t')) {
        start += 1;
    }
    let first = start;
    for &f in folds.iter().filter(|&&f| f >= first) {
        md5.update(header.get(start..f).unwrap_or(&[]));
        start = f + 1;
    }
    md5.update(header.get(start..).unwrap_or(&[]));
    format!("{:x}", md5.finalize())
}

/// Removes parameter `name` from `params`.
fn take_param(params: &mut Vec<Param>, name: &str) -> Option<Param> {
    let i = params.iter().position(|p| p.name == name)?;
    Some(params.swap_remove(i))
}

/// The file name a client shows (Content-Disposition `filename`, else
/// Content-Type `name`) and the other readings that differ from it.
fn file_names(filename: Option<Param>, name: Option<Param>) -> (Option<String>, Vec<String>) {
    let mut all = Vec::new();
    for p in [filename, name].into_iter().flatten() {
        all.push(p.value);
        all.extend(p.others);
    }
    let mut all = all.into_iter().filter(|n| !n.is_empty());
    let first = all.next();
    let mut others: Vec<String> = Vec::new();
    for n in all {
        if Some(&n) != first.as_ref() && !others.contains(&n) && others.len() < MAX_OTHER_FILENAMES
        {
            others.push(n);
        }
    }
    (first, others)
}

/// Splits an address list at commas outside quotes, angle brackets and comments.
fn push_addresses<S: EventSink>(list: &mut Vec<String>, value: &str, out: &mut Out<'_, S>) {
    let (mut depth_angle, mut depth_paren, mut quoted) = (0i32, 0i32, false);
    let mut start = 0;
    let mut dropped = 0usize;
    let mut push = |list: &mut Vec<String>, addr: &str| {
        let addr = addr.trim();
        if addr.is_empty() {
        } else if list.len() < MAX_LIST {
            list.push(addr.to_string());
        } else {
            dropped += 1;
        }
    };
    for (i, &c) in value.as_bytes().iter().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            b'<' if !quoted => depth_angle += 1,
            b'>' if !quoted => depth_angle -= 1,
            b'(' if !quoted => depth_paren += 1,
            b')' if !quoted => depth_paren -= 1,
            b',' if !quoted && depth_angle <= 0 && depth_paren <= 0 => {
                push(list, &value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    push(list, &value[start..]);
    if dropped > 0 {
        out.anomaly(
            AnomalyKind::LimitExceeded,
            format!("address list longer than {MAX_LIST}: {dropped} addresses not listed"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::events::{FileInfo, FileState, Header, MimePart, OwnedEvent};

    fn parse(chunks: &[&[u8]]) -> (Email, Vec<u8>, Vec<OwnedEvent>) {
        let (email, body, others, _) = parse_all(chunks);
        (email, body, others)
    }

    /// Like `parse`, also returning the Header / MimePart events in order.
    fn parse_all(chunks: &[&[u8]]) -> (Email, Vec<u8>, Vec<OwnedEvent>, Vec<OwnedEvent>) {
        let mut p = MimeParser::new();
        let mut ev: Vec<OwnedEvent> = Vec::new();
        for c in chunks {
            p.feed(c, 0, &mut ev);
        }
        p.finish(0, &mut ev);
        p.end_body(0, &mut ev);
        let mut body = Vec::new();
        let mut others = Vec::new();
        let mut structure = Vec::new();
        for e in ev {
            match e {
                OwnedEvent::MailContent(m) if m.part == ContentPart::DecodedBody => {
                    body.extend(m.data)
                }
                e @ (OwnedEvent::Header(_) | OwnedEvent::MimePart(_)) => structure.push(e),
                // Files and URLs: see `derived`.
                OwnedEvent::File(_) | OwnedEvent::Url(_) => {}
                other => others.push(other),
            }
        }
        (p.take_email(), body, others, structure)
    }

    /// The email, the files and the URL events of a message cut in `cut`-byte chunks.
    fn derived(msg: &[u8], cut: usize) -> (Email, Vec<FileInfo>, Vec<String>) {
        let mut p = MimeParser::new();
        let mut ev: Vec<OwnedEvent> = Vec::new();
        for c in msg.chunks(cut.max(1)) {
            p.feed(c, 0, &mut ev);
        }
        p.finish(0, &mut ev);
        p.end_body(0, &mut ev);
        let (mut files, mut urls) = (Vec::new(), Vec::new());
        for e in ev {
            match e {
                OwnedEvent::File(f) => files.push(f),
                OwnedEvent::Url(u) => urls.push(u.url),
                _ => {}
            }
        }
        (p.take_email(), files, urls)
    }

    fn md5_hex(data: &[u8]) -> String {
        format!("{:x}", Md5::digest(data))
    }

    fn sha256_hex(data: &[u8]) -> String {
        format!("{:x}", sha2::Sha256::digest(data))
    }

    #[test]
    fn files_are_hashed_as_they_stream() {
        for split in [1usize, 3, 7, 64, MSG.len()] {
            let (_, files, _) = derived(MSG, split);
            assert_eq!(files.len(), 1, "split {split}");
            let f = &files[0];
            assert_eq!(f.filename.as_deref(), Some("report.pdf"));
            assert_eq!((f.part, f.size), (2, 5));
            assert_eq!(f.md5, md5_hex(b"Hello"));
            assert_eq!(f.sha256, sha256_hex(b"Hello"));
            assert_eq!(f.state, FileState::Closed);
            assert_eq!(f.content_type, "application/pdf");
            assert_eq!(f.mimetype, "text/plain");
        }
    }

    /// Parts sent as is: the line end before the boundary is the
    /// boundary's. Unnamed non-text parts are files; text parts are not.
    /// Files inside forwarded messages (plain and base64) are found.
    #[test]
    fn files_of_identity_parts_and_forwarded_messages() {
        let inner = b"Content-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\n\r\ntext\r\n\
--in\r\nContent-Type: application/x-thing\r\n\r\nBIN\r\n--in--\r\n";
        let b64 = {
            use std::fmt::Write;
            // base64 of `inner`, 76 columns.
            const T: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut s = String::new();
            for (i, c) in inner.chunks(3).enumerate() {
                let n = c.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)) << (8 * (3 - c.len()));
                for k in 0..4 {
                    let ch = if k <= c.len() {
                        T[((n >> (18 - 6 * k)) & 63) as usize] as char
                    } else {
                        '='
                    };
                    let _ = write!(s, "{ch}");
                }
                if i % 19 == 18 {
                    s.push_str("\r\n");
                }
            }
            s
        };
        let msg = format!(
            "Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n\
Content-Type: text/csv; name=a.csv\r\n\r\na,b\r\nc,d\r\n--XX\r\n\
Content-Type: message/rfc822\r\n\r\n{}\r\n--XX\r\n\
Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--XX--\r\n",
            String::from_utf8_lossy(inner)
        );
        for split in [1usize, 5, 33, msg.len()] {
            let (_, files, _) = derived(msg.as_bytes(), split);
            let got: Vec<(Option<&str>, u64, &str)> = files
                .iter()
                .map(|f| (f.filename.as_deref(), f.size, f.sha256.as_str()))
                .collect();
            let (csv, bin) = (sha256_hex(b"a,b\r\nc,d"), sha256_hex(b"BIN"));
            assert_eq!(
                got,
                vec![
                    (Some("a.csv"), 8, csv.as_str()),
                    (None, 3, bin.as_str()),
                    (None, 3, bin.as_str())
                ],
                "split {split}"
            );
        }
    }

    #[test]
    fn urls_in_plain_qp_base64_and_html_parts_not_in_files() {
        let msg = b"Subject: links\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\n\
plain http://plain.example/a\r\n--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
qp https://q=\r\np.example/b?x=3D1\r\n--B\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n\
PGEgaHJlZj0iaHR0cDovL2I2NC5leGFtcGxlL2MiPmM8L2E+\r\n--B\r\n\
Content-Type: text/plain; name=notes.txt\r\n\r\nhttp://in-file.example/\r\n--B--\r\n";
        let want = vec![
            "http://plain.example/a".to_string(),
            "https://qp.example/b?x=1".to_string(),
            "http://b64.example/c".to_string(),
        ];
        for split in [1usize, 4, 9, msg.len()] {
            let (email, files, urls) = derived(msg, split);
            assert_eq!(urls, want, "split {split}");
            assert_eq!(email.url, want, "split {split}");
            assert_eq!(files.len(), 1);
        }
    }

    #[test]
    fn suricata_email_fields() {
        let msg = b"Received: from a by b\r\n\tid 1\r\nReceived: from c by d\r\nSubject: fold\r\n ed\r\n\
Reply-To: r@x.org\r\nIn-Reply-To: <p@x>\r\nReferences: <o@x> <p@x>\r\nX-Originating-IP: [198.18.0.9]\r\n\r\n\
body line\r\n";
        for split in [1usize, 6, msg.len()] {
            let (email, _, _) = derived(msg, split);
            assert_eq!(email.received, vec!["from a by b\tid 1", "from c by d"]);
            assert_eq!(email.reply_to.as_deref(), Some("r@x.org"));
            assert_eq!(email.in_reply_to.as_deref(), Some("<p@x>"));
            assert_eq!(email.references.as_deref(), Some("<o@x> <p@x>"));
            assert_eq!(email.x_originating_ip.as_deref(), Some("[198.18.0.9]"));
            // Suricata unfolds by dropping the continuation's first blank.
            assert_eq!(email.subject_md5, Some(md5_hex(b"folded")));
            assert_eq!(
                email.body_md5,
                Some(md5_hex(b"body line\r\n")),
                "split {split}"
            );
        }
        // Content without a header block is all body.
        let bare = b"BLA BLA BLA ...\r\nMORE BLA BLA BLA ...\r\n";
        for split in [1usize, 7, bare.len()] {
            let (email, _, _) = derived(bare, split);
            assert_eq!(email.body_md5, Some(md5_hex(bare)), "split {split}");
        }
        // Cut short: no body_md5; a file open then is truncated.
        let mut p = MimeParser::new();
        let mut ev: Vec<OwnedEvent> = Vec::new();
        p.feed(
            b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n",
            0,
            &mut ev,
        );
        p.cut();
        p.finish(0, &mut ev);
        let email = p.take_email();
        assert_eq!(email.body_md5, None);
        let state: Vec<FileState> = ev
            .iter()
            .filter_map(|e| match e {
                OwnedEvent::File(f) => Some(f.state),
                _ => None,
            })
            .collect();
        assert_eq!(state, vec![FileState::Truncated]);
    }

    #[test]
    fn options_off_derive_nothing() {
        let mut p = MimeParser::with_options(ContentOptions::off());
        let mut ev: Vec<OwnedEvent> = Vec::new();
        p.feed(MSG, 0, &mut ev);
        p.feed(b"http://x.example/\r\n", 0, &mut ev);
        p.finish(0, &mut ev);
        p.end_body(0, &mut ev);
        assert!(!ev
            .iter()
            .any(|e| matches!(e, OwnedEvent::File(_) | OwnedEvent::Url(_))));
        assert!(p.take_email().url.is_empty());
    }

    fn part(part: u32, content_type: &str, filename: Option<&str>) -> OwnedEvent {
        OwnedEvent::MimePart(MimePart {
            tx_id: 0,
            part,
            content_type: content_type.to_string(),
            filename: filename.map(str::to_string),
            other_filenames: Vec::new(),
        })
    }

    fn header(part: u32, name: &str, value: &str) -> OwnedEvent {
        OwnedEvent::Header(Header {
            tx_id: 0,
            part,
            name: name.to_string(),
            value: value.to_string(),
        })
    }

    #[test]
    fn header_and_part_events_number_nested_parts() {
        let msg = b"Subject: =?UTF-8?B?Y2Fmw6k=?=\r\n =?UTF-8?Q?_ok?=\r\nContent-Type: Multipart/Mixed; boundary=a\r\n\r\n\
--a\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
--b\r\n\r\nplain\r\n--b\r\nContent-Type: TEXT/HTML\r\n\r\n<p>x</p>\r\n--b--\r\n\
--a\r\nContent-Type: application/zip; name=\"by-name.zip\"\r\nContent-Disposition: attachment; filename=\"=?UTF-8?Q?r=C3=A9sum=C3=A9.zip?=\"\r\n\r\nPK\r\n\
--a\r\nContent-Type: application/octet-stream; name=only-name.bin\r\n\r\nzz\r\n--a--\r\n";
        let expected = vec![
            header(0, "Subject", "café ok"),
            header(0, "Content-Type", "Multipart/Mixed; boundary=a"),
            part(0, "multipart/mixed", None),
            header(1, "Content-Type", "multipart/alternative; boundary=b"),
            part(1, "multipart/alternative", None),
            part(2, "text/plain", None),
            header(3, "Content-Type", "TEXT/HTML"),
            part(3, "text/html", None),
            header(4, "Content-Type", "application/zip; name=\"by-name.zip\""),
            header(
                4,
                "Content-Disposition",
                "attachment; filename=\"résumé.zip\"",
            ),
            OwnedEvent::MimePart(MimePart {
                tx_id: 0,
                part: 4,
                content_type: "application/zip".to_string(),
                filename: Some("résumé.zip".to_string()),
                other_filenames: vec!["by-name.zip".to_string()],
            }),
            header(
                5,
                "Content-Type",
                "application/octet-stream; name=only-name.bin",
            ),
            part(5, "application/octet-stream", Some("only-name.bin")),
        ];
        for split in [1usize, 2, 5, 13, msg.len()] {
            let chunks: Vec<&[u8]> = msg.chunks(split).collect();
            let (_, body, others, structure) = parse_all(&chunks);
            assert_eq!(structure, expected, "split {split}");
            assert_eq!(body, b"plain\r\n<p>x</p>\r\nPK\r\nzz\r\n".to_vec());
            assert!(others.is_empty());
        }
    }

    #[test]
    fn message_without_headers_is_text_plain_part_zero() {
        let (_, body, _, structure) = parse_all(&[b"\r\nbody only\r\n"]);
        assert_eq!(structure, vec![part(0, "text/plain", None)]);
        assert_eq!(body, b"body only\r\n".to_vec());
    }

    const MSG: &[u8] = b"From: Alice <a@x.org>\r\nTo: b@y.org, \"Last, First\" <c@z.org>\r\nSubject: =?UTF-8?B?Y2Fmw6k=?= =?UTF-8?Q?_ok?=\r\n\
Cc: d@w\r\nMessage-ID: <1@x>\r\nX-Mailer: Outlook\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Content-Type: multipart/mixed;\r\n boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nh=C3=A9llo\r\n--XX\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment;\r\n\tfilename=\"report.pdf\"\r\n\r\nSGVs\r\nbG8=\r\n--XX--\r\nepilogue\r\n";

    #[test]
    fn headers_attachments_and_decoded_body() {
        for split in [1usize, 3, 7, 64, MSG.len()] {
            let chunks: Vec<&[u8]> = MSG.chunks(split).collect();
            let (email, body, others) = parse(&chunks);
            assert_eq!(email.from.as_deref(), Some("Alice <a@x.org>"));
            assert_eq!(
                email.to,
                vec![
                    "b@y.org".to_string(),
                    "\"Last, First\" <c@z.org>".to_string()
                ]
            );
            assert_eq!(email.cc, vec!["d@w".to_string()]);
            assert_eq!(email.subject.as_deref(), Some("café ok"));
            assert_eq!(email.message_id.as_deref(), Some("<1@x>"));
            assert_eq!(email.x_mailer.as_deref(), Some("Outlook"));
            assert_eq!(email.attachment, vec!["report.pdf".to_string()]);
            assert_eq!(body, "héllo\r\nHello".as_bytes(), "split {split}");
            assert!(others.is_empty());
        }
    }

    #[test]
    fn nested_multipart_names() {
        let msg = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n--a\r\nContent-Type: image/png; name=pic.png\r\n\r\n--not-a-boundary\r\n--a--\r\n";
        let (email, body, _) = parse(&[msg]);
        assert_eq!(email.attachment, vec!["pic.png".to_string()]);
        assert_eq!(body, b"x\r\n--not-a-boundary\r\n".to_vec());
    }

    /// Lines too long for the header line cap, in one chunk or cut: a
    /// field (also a folded continuation) is truncated, any other line is
    /// body, whole.
    #[test]
    fn long_lines_in_the_header_block() {
        let long = "a".repeat(MAX_HEADER + 10);
        let kinds = |others: &[OwnedEvent]| -> Vec<AnomalyKind> {
            others
                .iter()
                .filter_map(|e| match e {
                    OwnedEvent::Anomaly(a) => Some(a.kind),
                    _ => None,
                })
                .collect()
        };
        let folded = format!("Subject: hi\r\n {long}\r\n\r\nbody\r\n");
        let colon_less = format!("Subject: hi\r\n{long} x\r\nX: y\r\n\r\nbody\r\n");
        for cut in [1, 7, 977, usize::MAX] {
            let chunks = |m: &str| -> Vec<Vec<u8>> {
                m.as_bytes()
                    .chunks(cut.min(m.len()))
                    .map(<[u8]>::to_vec)
                    .collect()
            };
            let c = chunks(&folded);
            let refs: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
            let (email, body, others) = parse(&refs);
            assert_eq!(body, b"body\r\n".to_vec(), "cut {cut}");
            assert!(email.subject.is_some_and(|s| s.starts_with("hi a")));
            assert_eq!(kinds(&others), vec![AnomalyKind::MimeHeaderTooLong]);

            let c = chunks(&colon_less);
            let refs: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
            let (email, body, others) = parse(&refs);
            let want = format!("{long} x\r\nX: y\r\n\r\nbody\r\n");
            assert_eq!(String::from_utf8_lossy(&body), want, "cut {cut}");
            assert_eq!(email.subject.as_deref(), Some("hi"));
            assert_eq!(kinds(&others), vec![AnomalyKind::MimeHeaderMalformed]);
        }
    }

    #[test]
    fn invalid_base64_and_long_header() {
        let long = vec![b'a'; MAX_HEADER + 10];
        let mut msg = b"Subject: ".to_vec();
        msg.extend_from_slice(&long);
        msg.extend_from_slice(b"\r\nContent-Transfer-Encoding: base64\r\n\r\nSGV*sbG8=\r\n");
        let (email, body, others) = parse(&[&msg]);
        assert_eq!(body, b"Hello".to_vec());
        assert_eq!(
            email.subject.map(|s| s.len()),
            Some(MAX_HEADER - "Subject:".len() - 1)
        );
        let kinds: Vec<AnomalyKind> = others
            .iter()
            .filter_map(|e| match e {
                OwnedEvent::Anomaly(a) => Some(a.kind),
                _ => None,
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                AnomalyKind::MimeHeaderTooLong,
                AnomalyKind::MimeInvalidBase64
            ]
        );
    }
}
