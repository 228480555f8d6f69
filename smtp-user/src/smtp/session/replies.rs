//! The server stream of a session: reply lines, replies matched to the
//! pending commands (in order, or by the command their code names), and
//! what a reply does to the transaction (a refused command changes nothing).

use super::*;

impl Session {
    // ----- down stream -----

    pub(super) fn process_down(&mut self, data: &[u8], sink: &mut impl EventSink) {
        let mut input = data;
        while !input.is_empty() {
            if self.state == State::Tls {
                self.unparsed[1] += input.len() as u64;
                return;
            }
            let buffered = self.down_lines.pending_len();
            let used = match self.down_lines.split(input) {
                Split::NeedMore => input.len(),
                Split::InInput {
                    start,
                    end,
                    consumed,
                    ..
                } => {
                    self.on_reply_line(&input[start..end], consumed, sink);
                    consumed
                }
                Split::Buffered { consumed, .. } => {
                    let line = self.down_lines.line().to_vec();
                    self.on_reply_line(&line, buffered + consumed, sink);
                    consumed
                }
                Split::TooLong { consumed, .. } if self.unsynced() => {
                    self.unparsed[1] += (buffered + consumed) as u64;
                    consumed
                }
                Split::TooLong { consumed, .. } => {
                    let detail = format!(
                        "reply line longer than {} bytes: its excess skipped",
                        self.cfg.line_limit
                    );
                    self.anomaly(AnomalyKind::LineTooLong, detail, self.up_tx, sink);
                    // Its first bytes say what it is (code and separator):
                    // still one line of one reply, so replies stay aligned.
                    let head = self.down_lines.too_long_head().to_vec();
                    if grammar::reply_line(&head).is_ok() {
                        self.on_reply_line(&head, buffered + consumed, sink);
                    }
                    consumed
                }
                Split::Skipped { consumed, .. } if self.unsynced() => {
                    self.unparsed[1] += consumed as u64;
                    consumed
                }
                Split::Skipped { consumed, .. } => consumed,
            };
            input = input.get(used..).unwrap_or(&[]);
        }
    }

    /// One server line; `wire_len`: its length with the line ending.
    pub(super) fn on_reply_line(
        &mut self,
        line: &[u8],
        wire_len: usize,
        sink: &mut impl EventSink,
    ) {
        let parsed = grammar::reply_line(line);
        if self.down_resync || self.unsynced() {
            if parsed.is_err() {
                // The rest of a line cut by the gap (already reported), or
                // joined midstream: the rest of a line, or TLS.
                self.unparsed[1] += wire_len as u64;
                return;
            }
            self.down_resync = false;
        }
        let Ok((_, r)) = parsed else {
            let shown = lossy(&line[..line.len().min(32)]);
            // The line stands where a reply was due: the oldest command's
            // reply is garbled (taken as lost), later replies stay aligned.
            self.greeted = true;
            if self.reply.is_none() {
                if let Some(p) = self.pending.pop() {
                    if let Some(tx) = p.tx.and_then(|id| self.tx_mut(id)) {
                        tx.refs = tx.refs.saturating_sub(1);
                    }
                    self.reply_lost(&p, sink);
                }
            }
            self.fatal(
                AnomalyKind::InvalidReply,
                format!("not a reply line: {shown:?}"),
                sink,
            );
            return;
        };
        if self.reply.is_none() && (r.code / 10) % 10 > 5 {
            let detail = format!("reply code {} outside [2-5][0-5][0-9]", r.code);
            self.anomaly(AnomalyKind::InvalidReplyCode, detail, self.up_tx, sink);
        }
        let max_lines = self.cfg.max_reply_lines;
        let builder = self.reply.get_or_insert_with(|| ReplyBuilder {
            code: r.code,
            lines: Vec::new(),
            mismatch: false,
            truncated: false,
        });
        let mismatch = builder.code != r.code && !builder.mismatch;
        builder.mismatch |= mismatch;
        let overflow = builder.lines.len() == max_lines && !builder.truncated;
        builder.truncated |= overflow;
        if builder.lines.len() < max_lines {
            builder.lines.push(lossy(r.text));
        }
        if mismatch {
            let detail = format!(
                "reply line with code {} inside a {} reply",
                r.code, builder.code
            );
            self.anomaly(AnomalyKind::ReplyCodeMismatch, detail, self.up_tx, sink);
        }
        if overflow {
            self.anomaly(
                AnomalyKind::LimitExceeded,
                format!("reply longer than {max_lines} lines"),
                self.up_tx,
                sink,
            );
        }
        if !r.more {
            if let Some(reply) = self.reply.take() {
                self.on_reply(reply.code, reply.lines, sink);
            }
        }
    }

    pub(super) fn on_reply(&mut self, code: u16, lines: Vec<String>, sink: &mut impl EventSink) {
        let class = Class::of(code);
        // The first reply is the greeting, unless the client already sent
        // commands and it is not a 220: then the capture started after the
        // greeting and the reply answers the first queued command.
        let greeting = !self.greeted && (class == Class::Ready || self.pending.is_empty());
        self.greeted = true;
        self.down_gap_unanswered = false;
        if !greeting {
            self.drop_lost_replies(code, sink);
        }
        let (entry, answers) = if greeting {
            (None, Answers::Greeting)
        } else if code == 334
            && self
                .pending
                .front()
                .is_some_and(|p| p.what == Awaiting::Command(Verb::Auth))
        {
            // AUTH continues: the command stays pending until a non-334 reply.
            (None, Answers::Auth)
        } else {
            // A 354 to DATA, or the reply to an end of data, with no reply
            // possibly lost before it: client and server agree where the
            // message is again.
            let settles = match self.pending.front().map(|p| &p.what) {
                Some(Awaiting::Command(Verb::Data)) => code == 354,
                Some(Awaiting::EndOfData) => true,
                _ => false,
            };
            if settles && self.pending.lost() == 0 {
                self.gap_unsettled = false;
            }
            match self.pending.pop() {
                Some(p) => {
                    let answers = match p.what {
                        Awaiting::Command(Verb::Data) => Answers::Data,
                        Awaiting::Command(Verb::Auth) => Answers::Auth,
                        Awaiting::Command(Verb::StartTls) => Answers::StartTls,
                        Awaiting::Command(Verb::Quit) => Answers::Quit,
                        _ => Answers::Other,
                    };
                    (Some(p), answers)
                }
                None => (None, Answers::Nothing),
            }
        };
        let continued_auth = entry.is_none() && answers == Answers::Auth;
        if !greeting
            && !continued_auth
            && smuggling::unexplained(code, entry.as_ref().map(|p| &p.what))
        {
            self.unexplained += 1;
        }
        let to = match (&entry, answers) {
            (Some(p), _) => Some(p.verb()),
            (None, Answers::Auth) => Some(Verb::Auth),
            _ => None,
        };
        self.after_auth = answers == Answers::Auth;
        if answers == Answers::Data && class == Class::Intermediate && !self.hold.is_empty() {
            let detail = format!("{} bytes sent after DATA before the 354", self.hold.len());
            self.anomaly(AnomalyKind::ContentBefore354, detail, self.up_tx, sink);
        }
        let refused =
            entry.as_ref().is_some_and(|p| p.blocks_client()) && class != Class::Intermediate;
        sink.event(Event::Response(Response {
            code,
            lines,
            to: to.clone(),
        }));
        if let Some(p) = entry {
            self.reply_effects(&p, code, class, sink);
            if let Some(id) = p.tx {
                if let Some(tx) = self.tx_mut(id) {
                    tx.refs = tx.refs.saturating_sub(1);
                }
                self.try_emit(id, sink);
            }
        }
        let more_pending = !self.pending.is_empty();
        self.apply(
            Direction::Down,
            Message::Reply {
                to: answers,
                class,
                more_pending,
            },
            sink,
        );
        if refused
            && !self.hold.is_empty()
            && matches!(self.state, State::Command | State::Response)
        {
            self.replay_after = to;
        }
        self.replay_held(sink);
    }

    /// What a reply means for the transaction of the command it answers.
    /// A refused command changes nothing (RFC 5321 §4.1.4): the
    /// transaction and HELO name it would have changed are restored.
    pub(super) fn reply_effects(
        &mut self,
        p: &Pending,
        code: u16,
        class: Class,
        sink: &mut impl EventSink,
    ) {
        let ok = matches!(class, Class::Positive | Class::Ready);
        let id = p.tx;
        // A 503 to a command pipelined behind a refused one follows from
        // that refusal (RFC 2920 §3.1): the client could not know.
        let consequence = p.behind && self.last_refused;
        self.last_refused = !ok && class != Class::Intermediate;
        if code == 503 && !consequence {
            let detail = format!(
                "{} answered 503 (bad sequence of commands)",
                p.verb().as_str()
            );
            self.anomaly(AnomalyKind::OutOfSequence, detail, id.or(self.up_tx), sink);
        }
        match (&p.what, &p.undo) {
            (Awaiting::Command(Verb::Mail), Undo::Mail { open_before }) if ok => {
                // A server that takes a nested MAIL dropped the open transaction.
                if let Some(prev) = open_before.filter(|&prev| Some(prev) != id) {
                    self.decide(Some(prev), TransactionState::Reset, code);
                    self.try_emit(prev, sink);
                }
                self.announce(p, sink);
            }
            (Awaiting::Command(Verb::Mail), Undo::Mail { open_before }) => {
                match (id, open_before.filter(|&prev| self.is_open(prev))) {
                    // A nested MAIL refused: the open transaction goes on.
                    (Some(id), Some(prev)) => self.merge_refused_mail(id, prev),
                    _ => self.decide(id, TransactionState::Rejected, code),
                }
            }
            (Awaiting::Command(Verb::Rcpt), _) => {
                if let (Some(tx), Some(i)) = (id.and_then(|id| self.tx_mut(id)), p.rcpt) {
                    if let Some(r) = tx.rcpt_to.get_mut(i) {
                        r.reply_code = Some(code);
                    }
                }
                if ok {
                    self.announce(p, sink);
                }
            }
            (Awaiting::Command(Verb::Data), _) if class == Class::Intermediate => {
                let id = match id {
                    Some(id) => Some(id),
                    None if self.joined => None,
                    None => Some(self.new_tx_quiet()),
                };
                self.start_content(id);
            }
            // DATA refused: the transaction stays open (the client may RSET,
            // add recipients, or try again); it ends rejected unless a later
            // DATA delivers it.
            (Awaiting::Command(Verb::Data), _) => {
                if let Some(tx) = id.and_then(|id| self.tx_mut(id)) {
                    tx.refused = Some(code);
                }
            }
            // BDAT refused without an accepted MAIL (503): the transaction
            // it opened never existed for the server.
            (Awaiting::Bdat { .. }, _) if !ok && id.is_some_and(|i| self.is_implicit(i)) => {
                if let Some(i) = id {
                    self.forget_tx(i);
                }
            }
            (Awaiting::EndOfData | Awaiting::Bdat { last: true }, _) => {
                let state = if ok {
                    TransactionState::Delivered
                } else {
                    TransactionState::Rejected
                };
                self.decide(id, state, code);
            }
            // The content was taken at once; the server refused it after all.
            (Awaiting::DataStarted, _) if class != Class::Intermediate => {
                self.decide(id, TransactionState::Rejected, code)
            }
            (Awaiting::Bdat { last: false }, _) if !ok => {
                self.decide(id, TransactionState::Rejected, code)
            }
            (Awaiting::Command(Verb::Rset | Verb::Helo | Verb::Ehlo), _) if ok => {
                self.decide(id, TransactionState::Reset, code);
                self.announce(p, sink);
            }
            // HELO/EHLO/RSET refused: same HELO name, same transaction.
            (
                Awaiting::Command(Verb::Rset | Verb::Helo | Verb::Ehlo),
                Undo::Helo { before, arg },
            ) => {
                if arg.is_some() && self.helo == *arg {
                    self.helo = before.clone();
                }
                if let Some(prev) = id.filter(|&prev| self.up_tx.is_none() && self.is_open(prev)) {
                    self.up_tx = Some(prev);
                }
            }
            _ => {}
        }
    }

    /// Whether transaction `id` was opened by DATA/BDAT without a MAIL
    /// and is still undecided.
    pub(super) fn is_implicit(&self, id: u32) -> bool {
        self.txs
            .iter()
            .any(|t| t.id == id && t.state.is_none() && t.mail_from.is_none())
    }

    /// Drops transaction `id` unreported (it never existed for the server):
    /// nothing refers to it any more.
    pub(super) fn forget_tx(&mut self, id: u32) {
        self.txs.retain(|t| t.id != id);
        for p in self.pending.iter_mut().filter(|p| p.tx == Some(id)) {
            p.tx = None;
            p.rcpt = None;
        }
        if self.up_tx == Some(id) {
            self.up_tx = None;
        }
        if self.content_tx == Some(id) {
            self.content_tx = None;
        }
        // Its id is not reused: content events may already carry it.
    }

    /// Whether transaction `id` is still being built and undecided.
    pub(super) fn is_open(&self, id: u32) -> bool {
        self.txs.iter().any(|t| t.id == id && t.state.is_none())
    }

    /// A nested MAIL (transaction `id`) was refused while `prev` was open:
    /// `id` never existed for the server; the commands queued after it
    /// (recipients, DATA, BDAT) belong to `prev`.
    pub(super) fn merge_refused_mail(&mut self, id: u32, prev: u32) {
        let Some(pos) = self.txs.iter().position(|t| t.id == id) else {
            return;
        };
        let Some(refused) = self.txs.remove(pos) else {
            return;
        };
        let mut rcpts = refused.rcpt_to.into_iter().map(Some).collect::<Vec<_>>();
        let Some(tx) = self.txs.iter_mut().find(|t| t.id == prev) else {
            return;
        };
        // Entries move in queue order; recipients are appended to `prev`.
        for p in self.pending.iter_mut().filter(|p| p.tx == Some(id)) {
            p.tx = Some(prev);
            tx.refs += 1;
            let r = p.rcpt.take().and_then(|i| rcpts.get_mut(i)?.take());
            if let Some(r) = r.filter(|_| tx.rcpt_to.len() < MAX_RECIPIENTS) {
                tx.rcpt_to.push(r);
                p.rcpt = Some(tx.rcpt_to.len() - 1);
            }
        }
        if self.up_tx == Some(id) {
            self.up_tx = Some(prev);
        }
        if self.content_tx == Some(id) {
            self.content_tx = Some(prev);
        }
        if self.next_tx == id.saturating_add(1) {
            self.next_tx = id;
        }
    }
}
