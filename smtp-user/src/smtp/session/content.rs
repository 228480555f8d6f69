//! Message content of a session: the transaction it belongs to, the
//! MIME parser it feeds, RFC 5322 line lengths, its end.

use super::*;

impl Session {
    // ----- content -----

    /// The transaction a DATA/BDAT adds to: the current one; none when it
    /// belongs to the transaction we joined midstream; else a new one (DATA
    /// or BDAT without MAIL FROM).
    pub(super) fn data_tx(&mut self, sink: &mut impl EventSink) -> Option<u32> {
        if self.up_tx.is_none() && !self.joined {
            let id = self.new_tx(sink);
            self.up_tx = Some(id);
        }
        self.up_tx
    }

    /// Content starts; `None`: content of the transaction we joined
    /// midstream (parsed for framing only, not reported).
    pub(super) fn start_content(&mut self, id: Option<u32>) {
        self.content_tx = id;
        self.dots.reset();
        self.mime.reset();
        self.line_len = 0;
        if let Some(tx) = id.and_then(|id| self.tx_mut(id)) {
            tx.email = Some(Default::default());
        }
    }

    pub(super) fn content(&mut self, data: &[u8], sink: &mut impl EventSink) {
        if data.is_empty() {
            return;
        }
        if self.line_len != u64::MAX && self.long_message_line(data) {
            self.line_len = u64::MAX;
            let detail = format!("message line longer than {} octets", MAX_MESSAGE_LINE - 1);
            self.anomaly(
                AnomalyKind::MessageLineTooLong,
                detail,
                self.content_tx,
                sink,
            );
        }
        let Some(id) = self.content_tx else { return };
        if let Some(tx) = self.tx_mut(id) {
            tx.size += data.len() as u64;
        }
        sink.event(Event::MailContent(MailContent {
            tx_id: id,
            part: ContentPart::Raw,
            data,
        }));
        let tx = self.txs.iter().find(|t| t.id == id);
        self.mime.feed(data, id, &mut WithEnvelope { sink, tx });
    }

    /// Follows the length of the current message line over `data`; true
    /// when a line is longer than RFC 5322 allows.
    pub(super) fn long_message_line(&mut self, data: &[u8]) -> bool {
        // Each step looks only as far as the current line may still reach
        // and jumps to the *last* line end in that window (`memrchr`): the
        // lines before it are shorter than the window, so short lines
        // (base64's 76) cost one search per ~1,000 bytes, not one each.
        let mut pos = 0;
        while pos < data.len() {
            let Some(room) = MAX_MESSAGE_LINE.checked_sub(self.line_len) else {
                return true;
            };
            let end = usize::try_from(room)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
                .saturating_add(pos)
                .min(data.len());
            let window = data.get(pos..end).unwrap_or(&[]);
            match memchr::memrchr(b'\n', window) {
                Some(i) => {
                    self.line_len = 0;
                    pos += i + 1;
                }
                None => {
                    self.line_len += window.len() as u64;
                    pos = end;
                }
            }
        }
        self.line_len > MAX_MESSAGE_LINE
    }

    /// End of message: record what MIME parsing found; returns the transaction.
    pub(super) fn end_content(&mut self, sink: &mut impl EventSink) -> Option<u32> {
        // The message we joined midstream (if any) is over.
        self.joined = false;
        let id = self.content_tx.take()?;
        let tx = self.txs.iter().find(|t| t.id == id);
        let mut with = WithEnvelope { sink, tx };
        self.mime.finish(id, &mut with);
        self.mime.end_body(id, &mut with);
        let email = self.mime.take_email();
        let (headers, body) = (self.mime.headers_done, self.mime.body_started);
        if let Some(tx) = self.tx_mut(id) {
            tx.email = Some(email);
            tx.email_status = Some(status(tx.incomplete, headers, body).to_string());
        }
        sink.event(Event::MailContent(MailContent {
            tx_id: id,
            part: ContentPart::End,
            data: &[],
        }));
        if self.up_tx == Some(id) {
            self.up_tx = None;
        }
        Some(id)
    }

    /// Content cut short (abort): keep what the headers said.
    pub(super) fn cut_content(&mut self, sink: &mut impl EventSink) {
        let Some(id) = self.content_tx.take() else {
            return;
        };
        self.mime.cut();
        let tx = self.txs.iter().find(|t| t.id == id);
        self.mime.finish(id, &mut WithEnvelope { sink, tx });
        let email = self.mime.take_email();
        let (headers, body) = (self.mime.headers_done, self.mime.body_started);
        if let Some(tx) = self.tx_mut(id) {
            tx.email = Some(email);
            tx.email_status = Some(status(true, headers, body).to_string());
        }
    }

    pub(super) fn mark_incomplete(&mut self) {
        if let Some(tx) = self.content_tx.and_then(|id| self.tx_mut(id)) {
            tx.incomplete = true;
        }
    }
}

/// Passes the MIME parser's events on, with the transaction's envelope
/// on each [`FileInfo`] (files are rare: the copies cost nothing else).
struct WithEnvelope<'a, S: EventSink> {
    sink: &'a mut S,
    tx: Option<&'a TxBuilder>,
}

impl<S: EventSink> EventSink for WithEnvelope<'_, S> {
    fn event(&mut self, event: Event<'_>) {
        match (event, self.tx) {
            (Event::File(mut f), Some(tx)) => {
                f.helo.clone_from(&tx.helo);
                f.mail_from.clone_from(&tx.mail_from);
                f.rcpt_to = tx.rcpt_to.iter().map(|r| r.path.clone()).collect();
                self.sink.event(Event::File(f));
            }
            (event, _) => self.sink.event(event),
        }
    }
}

/// Suricata's `email.status` for a message: `PARSE_DONE` once the end of
/// data was reached, whatever MIME warnings were reported (they are
/// anomalies: invalid base64, over-long headers); when content was lost or
/// cut short, how far parsing got.
pub(super) fn status(incomplete: bool, headers_done: bool, body_started: bool) -> &'static str {
    if !incomplete {
        "PARSE_DONE"
    } else if body_started {
        "BODY_STARTED"
    } else if headers_done {
        "HEADER_READY"
    } else {
        "PARSE_ERROR"
    }
}
