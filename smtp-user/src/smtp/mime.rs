//! Streaming MIME parser (RFC 5322 headers, RFC 2045/2046 bodies).
//!
//! Fed the unstuffed message bytes chunk by chunk, it fills an [`Email`]
//! (From/To/Cc/Subject/Date/Message-ID/X-Mailer of the top-level header,
//! attachment names of every part, nested multiparts included) and emits
//! decoded body bytes as [`ContentPart::DecodedBody`] events.
//!
//! Limits (memory per message is bounded, nothing is dropped silently):
//! - one header, unfolded, is kept up to [`MAX_HEADER`] bytes; beyond, the
//!   value is truncated and `mime_header_too_long` is reported;
//! - one header block is at most [`MAX_HEADER_BLOCK`] bytes; beyond,
//!   `mime_header_too_long` is reported and the rest is treated as body;
//! - multipart nesting is followed to [`MAX_DEPTH`] levels (deeper boundaries
//!   are body text); address lists and attachment names keep
//!   [`MAX_LIST`] entries.
//!
//! Body lines are never buffered, except lines starting with `-` inside a
//! multipart (boundary candidates), up to [`MAX_BOUNDARY_LINE`] bytes.

use super::decode::{Base64, QuotedPrintable};
use super::events::{
    Anomaly, AnomalyKind, ContentPart, Email, Event, EventSink, Header, MailContent, MimePart,
};

/// Longest header (unfolded) kept, in bytes.
pub const MAX_HEADER: usize = 4096;
/// Longest header block, in bytes.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Deepest multipart nesting followed.
pub const MAX_DEPTH: usize = 8;
/// Most entries kept in To, Cc and attachment lists.
pub const MAX_LIST: usize = 64;
/// Longest line buffered when looking for a boundary.
pub const MAX_BOUNDARY_LINE: usize = 1024;

/// Finds the start of a line beginning with `-` (a boundary candidate).
static DASH_LINE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\n-"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a header block (top-level or a part's).
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

/// What the current part's headers said.
#[derive(Debug, Default)]
struct PartInfo {
    encoding: Encoding,
    /// `boundary=` of a multipart Content-Type.
    boundary: Option<Vec<u8>>,
    /// Content-Disposition filename, else Content-Type name.
    filename: Option<String>,
    name: Option<String>,
    /// Lower-cased `type/subtype` of Content-Type, if the header was seen.
    content_type: Option<String>,
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
    part: PartInfo,
    /// Open multipart boundaries, innermost last; at most `MAX_DEPTH`.
    boundaries: Vec<Vec<u8>>,
    /// In a multipart body: the next byte starts a line.
    at_line_start: bool,
    /// In a multipart body: the current line is a boundary candidate being buffered.
    candidate: bool,
    b64: Base64,
    qp: QuotedPrintable,
    /// Scratch buffer for decoded bytes (reused).
    out: Vec<u8>,
    email: Email,
    /// Number of the header block being read or the body being decoded
    /// (0 = message, n = n-th MIME part in order of appearance).
    part_no: u32,
    /// Parts opened so far (the next part gets `parts_seen + 1`).
    parts_seen: u32,
    /// A MIME error was seen (and reported as an anomaly).
    pub error: bool,
    /// The top-level header block ended.
    pub headers_done: bool,
    /// Body bytes were seen.
    pub body_started: bool,
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

    fn mime_part(&mut self, part: u32, content_type: String, filename: Option<String>) {
        self.sink.event(Event::MimePart(MimePart {
            tx_id: self.tx_id,
            part,
            content_type,
            filename,
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
            part: PartInfo::default(),
            boundaries: Vec::new(),
            at_line_start: true,
            candidate: false,
            b64: Base64::default(),
            qp: QuotedPrintable::default(),
            out: Vec::new(),
            email: Email::default(),
            part_no: 0,
            parts_seen: 0,
            error: false,
            headers_done: false,
            body_started: false,
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
        *self = MimeParser {
            line,
            header,
            out,
            ..MimeParser::new()
        };
    }

    /// The transport lost bytes: drop the partial line and continue at the next one.
    pub fn gap(&mut self) {
        self.line.clear();
        self.candidate = false;
        self.at_line_start = false;
        self.b64.reset();
        self.qp.reset();
    }

    /// What the headers said so far (the message may be incomplete).
    pub fn take_email(&mut self) -> Email {
        std::mem::take(&mut self.email)
    }

    /// Feeds message bytes (after dot-unstuffing).
    pub fn feed<S: EventSink>(&mut self, data: &[u8], tx_id: u32, sink: &mut S) {
        let mut out = Out { tx_id, sink };
        let mut rest = data;
        while !rest.is_empty() {
            let used = match self.phase {
                Phase::Headers => self.feed_headers(rest, &mut out),
                Phase::Body => self.feed_body(rest, &mut out),
            };
            rest = rest.get(used..).unwrap_or(&[]);
        }
    }

    /// End of message: flush a header block cut short.
    pub fn finish<S: EventSink>(&mut self, tx_id: u32, sink: &mut S) {
        let mut out = Out { tx_id, sink };
        if self.phase == Phase::Headers {
            if !self.line.is_empty() {
                let line = std::mem::take(&mut self.line);
                self.header_line(&line, &mut out);
                self.line = line;
            }
            self.end_of_headers(&mut out);
        } else if self.candidate {
            // A last line without line ending (BDAT content may end so).
            let line = std::mem::take(&mut self.line);
            if !self.boundary_line(&line, &mut out) {
                self.decode(&line, &mut out);
            }
            self.line = line;
            self.line.clear();
            self.candidate = false;
        }
    }

    fn feed_headers<S: EventSink>(&mut self, data: &[u8], out: &mut Out<'_, S>) -> usize {
        let (chunk, complete) = match memchr::memchr(b'\n', data) {
            Some(i) => (&data[..i], true),
            None => (data, false),
        };
        let used = chunk.len() + usize::from(complete);
        self.block_len += used;
        let room = MAX_HEADER.saturating_sub(self.line.len());
        if chunk.len() > room {
            self.line_truncated = true;
        }
        self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if complete {
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.header_line(&line, out);
            line.clear();
            self.line = line;
            self.line_truncated = false;
        }
        if self.phase == Phase::Headers && self.block_len > MAX_HEADER_BLOCK {
            out.anomaly(
                AnomalyKind::MimeHeaderTooLong,
                format!("header block longer than {MAX_HEADER_BLOCK} bytes; rest treated as body"),
            );
            self.error = true;
            self.line.clear();
            self.end_of_headers(out);
        }
        used
    }

    /// One header line (line ending removed).
    fn header_line<S: EventSink>(&mut self, line: &[u8], out: &mut Out<'_, S>) {
        match line.first() {
            None => self.end_of_headers(out),
            // Folded continuation: unfolded by dropping the line break.
            Some(b' ' | b'\t') => self.append_header(line, out),
            Some(_) => {
                self.finish_header(out);
                self.append_header(line, out);
            }
        }
        if self.line_truncated && !self.header_truncated {
            self.report_long_header(out);
        }
    }

    fn append_header<S: EventSink>(&mut self, bytes: &[u8], out: &mut Out<'_, S>) {
        let room = MAX_HEADER.saturating_sub(self.header.len());
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
        let name = String::from_utf8_lossy(&name[..name.len().min(64)]).into_owned();
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
            let value = String::from_utf8_lossy(header[colon + 1..].trim_ascii());
            self.header_field(name, &value);
            out.header(
                self.part_no,
                String::from_utf8_lossy(name).into_owned(),
                decode_words(&value),
            );
        }
        self.header = header;
        self.header.clear();
        self.header_truncated = false;
    }

    fn header_field(&mut self, name: &[u8], value: &str) {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if self.top_level {
            let e = &mut self.email;
            if is("from") {
                e.from.get_or_insert_with(|| value.to_string());
            } else if is("to") {
                push_addresses(&mut e.to, value);
            } else if is("cc") {
                push_addresses(&mut e.cc, value);
            } else if is("subject") {
                e.subject.get_or_insert_with(|| decode_words(value));
            } else if is("date") {
                e.date.get_or_insert_with(|| value.to_string());
            } else if is("message-id") {
                e.message_id.get_or_insert_with(|| value.to_string());
            } else if is("x-mailer") {
                e.x_mailer.get_or_insert_with(|| value.to_string());
            }
        }
        if is("content-type") {
            let (kind, params) = split_params(value);
            self.part.content_type = Some(kind.to_ascii_lowercase());
            for (k, v) in params {
                if k.eq_ignore_ascii_case("boundary")
                    && kind.to_ascii_lowercase().starts_with("multipart/")
                {
                    self.part.boundary = Some(v.into_bytes());
                } else if k.eq_ignore_ascii_case("name") || k.eq_ignore_ascii_case("name*") {
                    self.part.name = Some(decode_words(&v));
                }
            }
        } else if is("content-transfer-encoding") {
            let v = value.trim();
            self.part.encoding = if v.eq_ignore_ascii_case("base64") {
                Encoding::Base64
            } else if v.eq_ignore_ascii_case("quoted-printable") {
                Encoding::QuotedPrintable
            } else {
                Encoding::Identity
            };
        } else if is("content-disposition") {
            let (_, params) = split_params(value);
            for (k, v) in params {
                if k.eq_ignore_ascii_case("filename") || k.eq_ignore_ascii_case("filename*") {
                    self.part.filename = Some(decode_words(&v));
                }
            }
        }
    }

    fn end_of_headers<S: EventSink>(&mut self, out: &mut Out<'_, S>) {
        self.finish_header(out);
        let part = std::mem::take(&mut self.part);
        let filename = part.filename.or(part.name);
        if let Some(name) = &filename {
            if self.email.attachment.len() < MAX_LIST {
                self.email.attachment.push(name.clone());
            }
        }
        let content_type = part
            .content_type
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "text/plain".to_string());
        out.mime_part(self.part_no, content_type, filename);
        self.top_level = false;
        self.headers_done = true;
        self.phase = Phase::Body;
        self.block_len = 0;
        self.at_line_start = true;
        self.candidate = false;
        self.b64.reset();
        self.qp.reset();
        match part.boundary {
            Some(b) if self.boundaries.len() < MAX_DEPTH && !b.is_empty() => {
                self.boundaries.push(b);
                self.part.encoding = Encoding::Skip;
            }
            _ => self.part.encoding = part.encoding,
        }
    }

    fn feed_body<S: EventSink>(&mut self, data: &[u8], out: &mut Out<'_, S>) -> usize {
        self.body_started = true;
        if self.boundaries.is_empty() {
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
    fn boundary_line<S: EventSink>(&mut self, line: &[u8], out: &mut Out<'_, S>) -> bool {
        let Some(rest) = line.strip_prefix(b"--") else {
            return false;
        };
        let rest = rest.trim_ascii_end();
        for level in (0..self.boundaries.len()).rev() {
            let Some(b) = self.boundaries.get(level) else {
                continue;
            };
            let Some(tail) = rest.strip_prefix(b.as_slice()) else {
                continue;
            };
            if tail == b"--" {
                // Close delimiter: the epilogue of this multipart is skipped.
                self.boundaries.truncate(level);
                self.flush_decoder(out);
                self.part.encoding = Encoding::Skip;
                return true;
            }
            if tail.is_empty() {
                self.boundaries.truncate(level + 1);
                self.flush_decoder(out);
                self.parts_seen = self.parts_seen.saturating_add(1);
                self.part_no = self.parts_seen;
                self.phase = Phase::Headers;
                self.part = PartInfo::default();
                self.block_len = 0;
                return true;
            }
        }
        false
    }

    fn flush_decoder<S: EventSink>(&mut self, out: &mut Out<'_, S>) {
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
    }

    fn decode<S: EventSink>(&mut self, data: &[u8], out: &mut Out<'_, S>) {
        match self.part.encoding {
            Encoding::Skip => {}
            Encoding::Identity => out.body(data),
            Encoding::Base64 => {
                self.out.clear();
                self.b64.feed(data, &mut self.out);
                out.body(&self.out);
            }
            Encoding::QuotedPrintable => {
                self.out.clear();
                self.qp.feed(data, &mut self.out);
                out.body(&self.out);
            }
        }
    }

    /// End of the message body: report decoder errors of the last part.
    pub fn end_body<S: EventSink>(&mut self, tx_id: u32, sink: &mut S) {
        let mut out = Out { tx_id, sink };
        self.flush_decoder(&mut out);
    }
}

/// Splits an address list at commas outside quotes, angle brackets and comments.
fn push_addresses(list: &mut Vec<String>, value: &str) {
    let (mut depth_angle, mut depth_paren, mut quoted) = (0i32, 0i32, false);
    let mut start = 0;
    let bytes = value.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            b'<' if !quoted => depth_angle += 1,
            b'>' if !quoted => depth_angle -= 1,
            b'(' if !quoted => depth_paren += 1,
            b')' if !quoted => depth_paren -= 1,
            b',' if !quoted && depth_angle <= 0 && depth_paren <= 0 => {
                push_one(list, &value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    push_one(list, &value[start..]);
}

fn push_one(list: &mut Vec<String>, addr: &str) {
    let addr = addr.trim();
    if !addr.is_empty() && list.len() < MAX_LIST {
        list.push(addr.to_string());
    }
}

/// `type/subtype; k=v; k="quoted v"` → (`type/subtype`, [(k, v)]).
fn split_params(value: &str) -> (&str, Vec<(String, String)>) {
    let mut parts = Vec::new();
    let (kind, mut rest) = match value.find(';') {
        Some(i) => (value[..i].trim(), &value[i + 1..]),
        None => (value.trim(), ""),
    };
    while parts.len() < 16 {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let val;
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            val = q[..end].to_string();
            rest = q.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            val = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        parts.push((key, val));
    }
    (kind, parts)
}

/// Decodes RFC 2047 encoded-words (`=?charset?B|Q?text?=`) for UTF-8,
/// US-ASCII and ISO-8859-1; other charsets are left as written.
pub fn decode_words(value: &str) -> String {
    if !value.contains("=?") {
        return value.to_string();
    }
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        let Some(decoded) = encoded_word(&rest[start..]) else {
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            last_was_word = false;
            continue;
        };
        // Whitespace between two encoded words is dropped (RFC 2047 §6.2).
        if !(last_was_word && before.trim().is_empty()) {
            out.push_str(before);
        }
        out.push_str(&decoded.0);
        rest = &rest[start + decoded.1..];
        last_was_word = true;
    }
    out.push_str(rest);
    out
}

/// Decodes one encoded word at the start of `s`: (text, length consumed).
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix("=?")?;
    let q1 = body.find('?')?;
    let charset = &body[..q1];
    let after = &body[q1 + 1..];
    let enc = after.get(..1)?;
    let text_start = after.get(1..2).filter(|q| *q == "?").map(|_| &after[2..])?;
    let end = text_start.find("?=")?;
    let text = &text_start[..end];
    let mut bytes = Vec::new();
    if enc.eq_ignore_ascii_case("b") {
        let mut d = Base64::default();
        d.feed(text.as_bytes(), &mut bytes);
    } else if enc.eq_ignore_ascii_case("q") {
        let t = text.replace('_', " ");
        let mut d = QuotedPrintable::default();
        d.feed(t.as_bytes(), &mut bytes);
    } else {
        return None;
    }
    let cs = charset.split('*').next().unwrap_or("").to_ascii_lowercase();
    let decoded = match cs.as_str() {
        "utf-8" | "utf8" | "us-ascii" => String::from_utf8_lossy(&bytes).into_owned(),
        "iso-8859-1" | "latin1" | "iso-8859-15" => bytes.iter().map(|&b| b as char).collect(),
        _ => return None,
    };
    let consumed = 2 + q1 + 1 + 2 + end + 2;
    Some((decoded, consumed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::events::{Header, MimePart, OwnedEvent};

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
                other => others.push(other),
            }
        }
        (p.take_email(), body, others, structure)
    }

    fn part(part: u32, content_type: &str, filename: Option<&str>) -> OwnedEvent {
        OwnedEvent::MimePart(MimePart {
            tx_id: 0,
            part,
            content_type: content_type.to_string(),
            filename: filename.map(str::to_string),
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
            part(4, "application/zip", Some("résumé.zip")),
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
