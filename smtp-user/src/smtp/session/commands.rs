//! The client stream of a session: modes of reading it (commands, AUTH
//! answers, DATA content, BDAT chunks, held bytes), command lines and what
//! each command does to the pending queue and the transactions.

use super::*;

impl Session {
    // ----- up stream -----

    /// The server direction has not produced a byte yet (see the module doc).
    pub(super) fn server_unheard(&self) -> bool {
        self.bytes[idx(Direction::Down)] == 0
    }

    /// Joined midstream, or after the `error` transition: not synchronised
    /// with the session (see the module doc).
    pub(super) fn unsynced(&self) -> bool {
        matches!(self.state, State::Midstream | State::Error)
    }

    pub(super) fn up_mode(&self) -> UpMode {
        match self.state {
            State::Tls => UpMode::Discard,
            State::Finish => UpMode::AfterQuit,
            State::DataTransmission => UpMode::Data,
            State::BdatTransmission => UpMode::Chunk,
            State::AuthExchange => UpMode::AuthAnswer,
            _ if self.pending.back().is_some_and(|p| {
                p.blocks_client()
                    && (!self.server_unheard() || p.what == Awaiting::Command(Verb::StartTls))
            }) =>
            {
                UpMode::Hold
            }
            _ => UpMode::Commands,
        }
    }

    /// Reads client bytes; returns how many were read (all, unless a
    /// smuggling candidate stopped it to fork a speculation).
    pub(super) fn process_up(&mut self, data: &[u8], sink: &mut impl EventSink) -> usize {
        let mut input = data;
        while !input.is_empty() {
            if self.fork_at.is_some() {
                return data.len() - input.len();
            }
            let used = match self.up_mode() {
                UpMode::Discard if !self.tls_checked => {
                    // The first client bytes after the 220 to STARTTLS: a TLS
                    // handshake record, or the session goes on in clear.
                    self.tls_checked = true;
                    if input.first() != Some(&TLS_HANDSHAKE) {
                        self.apply(Direction::Up, Message::NotTls, sink);
                    }
                    0
                }
                UpMode::Discard => {
                    self.unparsed[0] += input.len() as u64;
                    input.len()
                }
                UpMode::AfterQuit => {
                    self.unparsed[0] += input.len() as u64;
                    self.apply(Direction::Up, Message::Command { bdat: false }, sink);
                    input.len()
                }
                UpMode::Hold => {
                    let room = self.cfg.hold_limit.saturating_sub(self.hold.len());
                    let take = room.min(input.len());
                    self.hold.extend_from_slice(&input[..take]);
                    if take < input.len() {
                        self.hold_gap_at.get_or_insert(self.hold.len());
                        if !std::mem::replace(&mut self.hold_overflowed, true) {
                            let verb = self.pending.back().map(Pending::verb).unwrap_or(Verb::Noop);
                            let detail = format!(
                                "client sent more than {} bytes before the reply to {}",
                                self.cfg.hold_limit,
                                verb.as_str()
                            );
                            self.anomaly(AnomalyKind::LimitExceeded, detail, self.up_tx, sink);
                        }
                        self.hold_lost += (input.len() - take) as u64;
                        self.unparsed[0] += (input.len() - take) as u64;
                    }
                    self.take_lost_data(sink);
                    input.len()
                }
                UpMode::Data => self.up_data(input, sink),
                UpMode::Chunk => self.up_chunk(input, sink),
                UpMode::Commands | UpMode::AuthAnswer => self.up_line(input, sink),
            };
            input = input.get(used..).unwrap_or(&[]);
        }
        data.len() - input.len()
    }

    /// Client bytes arrived after a DATA whose reply may have been lost in a
    /// down gap (see the module doc): the client got a 354 (content at once)
    /// or, if the first line is a command, a refusal. Waits for that first
    /// line (bounded by the hold limit).
    pub(super) fn take_lost_data(&mut self, sink: &mut impl EventSink) {
        let lost_data = (self.pending.all_lost() || self.down_gap_unanswered)
            && self
                .pending
                .back()
                .is_some_and(|p| p.what == Awaiting::Command(Verb::Data))
            && self.up_mode() == UpMode::Hold
            && (!self.hold.is_empty() || self.hold_lost > 0);
        if !lost_data {
            return;
        }
        let first_line = match memchr::memchr(b'\n', &self.hold) {
            Some(i) => self.hold.get(..i).unwrap_or(&[]),
            None if self.hold_lost > 0 || self.hold.len() >= self.cfg.hold_limit => &[][..],
            None => return,
        };
        let first_line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
        let refused = grammar::command_line(first_line)
            .ok()
            .is_some_and(|(_, c)| grammar::well_formed(&c));
        // Every queued command lost its reply, DATA included.
        let mut data = None;
        while let Some(p) = self.pending.pop() {
            if let Some(id) = p.tx {
                if let Some(tx) = self.tx_mut(id) {
                    tx.refs = tx.refs.saturating_sub(1);
                }
            }
            if self.pending.is_empty() {
                data = Some(p);
            } else {
                self.reply_lost(&p, sink);
            }
        }
        if let Some(p) = data.filter(|_| !refused) {
            tracing::debug!("reply to DATA lost: content taken at once");
            self.reply_effects(&p, 354, Class::Intermediate, sink);
            self.apply(Direction::Up, Message::DataReplyLost, sink);
        }
        self.replay_held(sink);
    }

    /// A reply that names its command (354, 334, 221, 220): the commands
    /// queued before that one lost their replies (a down gap, or a reply
    /// we could not read); drop them so later replies are not shifted.
    pub(super) fn drop_lost_replies(&mut self, code: u16, sink: &mut impl EventSink) {
        let Some(pos) = self.pending.position_named(code) else {
            return;
        };
        for _ in 0..pos {
            if let Some(p) = self.pending.pop() {
                if let Some(tx) = p.tx.and_then(|id| self.tx_mut(id)) {
                    tx.refs = tx.refs.saturating_sub(1);
                }
                self.reply_lost(&p, sink);
            }
        }
    }

    /// A command whose reply was lost: taken as accepted (what it added to
    /// the envelope stays, as the server most likely took it).
    pub(super) fn reply_lost(&mut self, p: &Pending, sink: &mut impl EventSink) {
        self.announce(p, sink);
        if let Some(id) = p.tx {
            self.try_emit(id, sink);
        }
    }

    /// Once the reply to a blocking command is known, replay what was held
    /// (and the bytes lost while holding, as a gap at the place they were lost).
    pub(super) fn replay_held(&mut self, sink: &mut impl EventSink) {
        // Held bytes are replayed whole: no speculation forks inside them.
        let fork_ok = std::mem::replace(&mut self.fork_ok, false);
        self.replay_held_inner(sink);
        self.fork_ok = fork_ok;
    }

    pub(super) fn replay_held_inner(&mut self, sink: &mut impl EventSink) {
        while (!self.hold.is_empty() || self.hold_lost > 0) && self.up_mode() != UpMode::Hold {
            let held = std::mem::take(&mut self.hold);
            let lost = std::mem::take(&mut self.hold_lost);
            let at = self
                .hold_gap_at
                .take()
                .unwrap_or(held.len())
                .min(held.len());
            self.hold_overflowed = false;
            let (before, after) = held.split_at(at);
            self.process_up(before, sink);
            if lost > 0 {
                // Already counted when lost: `gap` counts them again.
                self.bytes[0] = self.bytes[0].saturating_sub(lost);
                self.unparsed[0] = self.unparsed[0].saturating_sub(lost);
                self.gap(Direction::Up, lost, sink);
            }
            self.process_up(after, sink);
            self.replay_after = None;
            if self.hold.is_empty() {
                // Keep the allocation for next time.
                self.hold = held;
                self.hold.clear();
            }
        }
    }

    pub(super) fn up_line(&mut self, input: &[u8], sink: &mut impl EventSink) -> usize {
        let auth = self.up_mode() == UpMode::AuthAnswer;
        let buffered = self.up_lines.pending_len();
        let split = self.up_lines.split(input);
        if (self.unsynced() || self.up_resync) && !auth {
            return self.up_line_unsynced(split, buffered, input, sink);
        }
        match split {
            Split::NeedMore => input.len(),
            Split::InInput {
                start,
                end,
                consumed,
                ..
            } => {
                if auth {
                    self.apply(Direction::Up, Message::AuthAnswer, sink);
                } else {
                    self.on_command(&input[start..end], sink);
                }
                consumed
            }
            Split::Buffered { consumed, .. } => {
                if auth {
                    self.apply(Direction::Up, Message::AuthAnswer, sink);
                } else {
                    let line = self.up_lines.line().to_vec();
                    self.on_command(&line, sink);
                }
                consumed
            }
            Split::TooLong { consumed, ended } => {
                if !auth {
                    let detail = format!(
                        "command line longer than {} bytes skipped",
                        self.cfg.line_limit
                    );
                    self.anomaly(AnomalyKind::LineTooLong, detail, self.up_tx, sink);
                    // The server answers the skipped line too: keep replies aligned.
                    let verb = head_verb(self.up_lines.too_long_head());
                    self.push_pending(Awaiting::Command(Verb::Unknown(verb)), None, None, sink);
                    self.apply(Direction::Up, Message::Command { bdat: false }, sink);
                } else if ended {
                    self.apply(Direction::Up, Message::AuthAnswer, sink);
                }
                consumed
            }
            Split::Skipped { consumed, ended } => {
                if auth && ended {
                    self.apply(Direction::Up, Message::AuthAnswer, sink);
                }
                consumed
            }
        }
    }

    /// A client line while joined midstream and not synchronised: a
    /// well-formed command synchronises, a lone `.` ends the message we
    /// joined, anything else is skipped (counted as unparsed, not reported).
    pub(super) fn up_line_unsynced(
        &mut self,
        split: Split,
        buffered: usize,
        input: &[u8],
        sink: &mut impl EventSink,
    ) -> usize {
        let (line, consumed) = match split {
            Split::NeedMore => return input.len(),
            Split::InInput {
                start,
                end,
                consumed,
                ..
            } => (input.get(start..end).unwrap_or(&[]).to_vec(), consumed),
            Split::Buffered { consumed, .. } => (self.up_lines.line().to_vec(), consumed),
            Split::TooLong { consumed, .. } | Split::Skipped { consumed, .. } => {
                self.skip_up_line(buffered + consumed, sink);
                return consumed;
            }
        };
        let command = grammar::command_line(&line)
            .ok()
            .is_some_and(|(_, c)| grammar::well_formed(&c));
        if command {
            self.up_resync = false;
            self.on_command(&line, sink);
        } else if line == b"." && self.pending.is_empty() && self.unsynced() {
            // The end of the message we joined: its reply must not be
            // matched to a later command.
            self.joined = false;
            self.push_pending(Awaiting::EndOfData, None, None, sink);
            self.apply(Direction::Up, Message::EndOfData, sink);
        } else {
            self.skip_up_line(buffered + consumed, sink);
        }
        consumed
    }

    /// A client line skipped while not synchronised (counted, not reported).
    pub(super) fn skip_up_line(&mut self, len: usize, sink: &mut impl EventSink) {
        self.unparsed[0] += len as u64;
        if self.unsynced() {
            self.apply(Direction::Up, Message::NotACommand, sink);
        }
    }

    pub(super) fn on_command(&mut self, line: &[u8], sink: &mut impl EventSink) {
        if let Some(verb) = self.replay_after.take() {
            let detail = format!("command sent before the reply to {}", verb.as_str());
            self.anomaly(
                AnomalyKind::InvalidPipelinedSequence,
                detail,
                self.up_tx,
                sink,
            );
        }
        let parsed = grammar::command_line(line).ok().filter(|(_, c)| {
            !(self.after_auth && matches!(grammar::verb(c.verb), Verb::Unknown(_)))
        });
        let Some((_, cmd)) = parsed else {
            if self.gap_unsettled && !self.after_auth {
                // Likely message content after lost bytes: resynchronise.
                self.up_resync = true;
                self.skip_up_line(line.len() + 2, sink);
                return;
            }
            let detail = if self.after_auth {
                format!(
                    "not a command ({} bytes, content hidden after AUTH)",
                    line.len()
                )
            } else {
                format!("not a command: {:?}", lossy(&line[..line.len().min(32)]))
            };
            self.anomaly(AnomalyKind::InvalidCommand, detail, self.up_tx, sink);
            self.push_pending(
                Awaiting::Command(Verb::Unknown(String::new())),
                None,
                None,
                sink,
            );
            self.apply(Direction::Up, Message::Command { bdat: false }, sink);
            return;
        };
        let verb = grammar::verb(cmd.verb);
        if line.len() > MAX_COMMAND_LINE - 2 && verb != Verb::Auth {
            let detail = format!(
                "{} command line of {} octets (RFC 5321 limit: 512 with CRLF)",
                verb.as_str(),
                line.len() + 2
            );
            self.anomaly(AnomalyKind::CommandLineTooLong, detail, self.up_tx, sink);
        }
        self.after_auth = false;
        self.quit_sent |= verb == Verb::Quit;
        let args = match verb {
            Verb::Auth => mask_auth(cmd.args),
            _ => lossy(cmd.args),
        };
        sink.event(Event::Command(Command {
            verb: verb.clone(),
            args: args.clone(),
        }));
        if let Verb::Unknown(v) = &verb {
            let detail = format!("unknown command {v:?}");
            self.anomaly(AnomalyKind::UnknownCommand, detail, self.up_tx, sink);
        }
        // Not judged while the server is unheard, nor when the previous
        // command's reply may have been in a server-side gap.
        let unheard = self.server_unheard();
        let judged = !unheard && self.pending.lost() < self.pending.len();
        if let Some(prev) = self.pending.back().filter(|_| judged) {
            if matches!(prev.what, Awaiting::Command(Verb::Helo | Verb::Ehlo)) {
                let detail = format!(
                    "{} sent before the reply to {}",
                    verb.as_str(),
                    prev.verb().as_str()
                );
                self.anomaly(
                    AnomalyKind::InvalidPipelinedSequence,
                    detail,
                    self.up_tx,
                    sink,
                );
            }
        }
        if matches!(verb, Verb::Mail | Verb::Rcpt | Verb::Data | Verb::Bdat)
            && !self.helo_seen
            && self.greeted
        {
            let detail = format!("{} before HELO/EHLO", verb.as_str());
            self.anomaly(AnomalyKind::NoHelo, detail, self.up_tx, sink);
        }
        if unheard && matches!(verb, Verb::Mail | Verb::Rset | Verb::Helo | Verb::Ehlo) {
            // No reply will tell how the previous transactions ended.
            self.abort_all(sink);
        }
        let auth_unheard = unheard && verb == Verb::Auth;
        if matches!(verb, Verb::Mail | Verb::Rset | Verb::Helo | Verb::Ehlo) {
            self.joined = false;
        }
        match verb {
            Verb::Helo | Verb::Ehlo | Verb::Rset => {
                let before = self.helo.clone();
                let arg = (verb != Verb::Rset).then_some(args);
                if let Some(a) = &arg {
                    self.helo = Some(a.clone());
                    self.helo_seen = true;
                }
                // A BDAT message without its LAST chunk is abandoned.
                self.cut_content(sink);
                let tx = self.up_tx.take();
                let mut p = Pending::new(Awaiting::Command(verb), tx);
                p.undo = Undo::Helo { before, arg };
                self.queue(p, sink);
            }
            Verb::Mail => {
                let open_before = self.up_tx;
                let id = self.new_tx(sink);
                if let Some(tx) = self.tx_mut(id) {
                    match grammar::path_args(cmd.args, "FROM:") {
                        Ok((_, p)) => {
                            tx.mail_from = Some(lossy(p.path));
                            tx.mail_params = p.params.iter().map(|p| lossy(p)).collect();
                            tx.declared_size = p
                                .params
                                .iter()
                                .find_map(|p| {
                                    p.get(..5)
                                        .filter(|k| k.eq_ignore_ascii_case(b"SIZE="))
                                        .map(|_| &p[5..])
                                })
                                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
                        }
                        Err(_) => tx.mail_from = Some(args.clone()),
                    }
                }
                self.up_tx = Some(id);
                let mut p = Pending::new(Awaiting::Command(verb), Some(id));
                p.undo = Undo::Mail { open_before };
                self.queue(p, sink);
            }
            Verb::Rcpt => {
                let path = match grammar::path_args(cmd.args, "TO:") {
                    Ok((_, p)) => lossy(&p.path[..p.path.len().min(MAX_PATH)]),
                    Err(_) => lossy(&cmd.args[..cmd.args.len().min(MAX_PATH)]),
                };
                let mut rcpt = None;
                let mut dropped = false;
                if let Some(tx) = self.up_tx.and_then(|id| self.tx_mut(id)) {
                    if tx.rcpt_to.len() < MAX_RECIPIENTS {
                        tx.rcpt_to.push(Recipient {
                            path,
                            reply_code: None,
                        });
                        rcpt = Some(tx.rcpt_to.len() - 1);
                    } else {
                        dropped = true;
                    }
                }
                if dropped {
                    let detail = format!("more than {MAX_RECIPIENTS} recipients; not recorded");
                    self.anomaly(AnomalyKind::LimitExceeded, detail, self.up_tx, sink);
                }
                let tx = self.up_tx;
                self.push_pending(Awaiting::Command(verb), tx, rcpt, sink);
            }
            Verb::Data if unheard => {
                // As if the server had answered 354: no reply will come to wait for.
                let id = self.data_tx(sink);
                self.start_content(id);
                // Queued all the same: the server may be heard later.
                self.push_pending(Awaiting::DataStarted, id, None, sink);
                self.apply(Direction::Up, Message::DataUnheard, sink);
                return;
            }
            Verb::Data => {
                let tx = self.up_tx;
                self.push_pending(Awaiting::Command(verb), tx, None, sink);
            }
            Verb::Bdat => return self.on_bdat(cmd.args, sink),
            _ => self.push_pending(Awaiting::Command(verb), None, None, sink),
        }
        if auth_unheard {
            // The AUTH answers that may follow are not shown as commands.
            self.after_auth = true;
        }
        self.apply(Direction::Up, Message::Command { bdat: false }, sink);
    }

    pub(super) fn on_bdat(&mut self, args: &[u8], sink: &mut impl EventSink) {
        let Some(b) = grammar::bdat_args(args) else {
            // Without a valid size the rest of the up stream cannot be framed.
            let detail = format!(
                "invalid BDAT arguments {:?}",
                lossy(&args[..args.len().min(32)])
            );
            self.fatal(AnomalyKind::BdatInvalid, detail, sink);
            return;
        };
        let id = match self.content_tx {
            Some(id) => Some(id),
            None => {
                let id = self.data_tx(sink);
                self.start_content(id);
                id
            }
        };
        if b.size > self.cfg.max_bdat_chunk {
            let detail = format!(
                "BDAT chunk of {} bytes (limit {})",
                b.size, self.cfg.max_bdat_chunk
            );
            self.anomaly(AnomalyKind::BdatChunkOverflow, detail, id, sink);
        }
        self.bdat_remaining = b.size;
        self.bdat_last = b.last;
        self.push_pending(Awaiting::Bdat { last: b.last }, id, None, sink);
        self.apply(Direction::Up, Message::Command { bdat: true }, sink);
        if b.size == 0 {
            self.chunk_done(sink);
        }
    }

    pub(super) fn up_data(&mut self, input: &[u8], sink: &mut impl EventSink) -> usize {
        let mut used = 0;
        loop {
            let (n, piece) = self.dots.next(input.get(used..).unwrap_or(&[]));
            used += n;
            match piece {
                Piece::Content(c) => self.content(c, sink),
                Piece::Smuggling { pattern, content } => {
                    let detail = format!("bare LF dot line {pattern} in DATA (not end of data)");
                    self.anomaly(
                        AnomalyKind::SmugglingBareLfEndOfData,
                        detail,
                        self.content_tx,
                        sink,
                    );
                    if self.fork_ok && self.speculation.is_none() && self.content_tx.is_some() {
                        // Read on both ways until the replies decide.
                        self.fork_at = Some(content);
                        return used;
                    }
                    self.content(content, sink);
                }
                Piece::End => {
                    let tx = self.end_content(sink);
                    self.push_pending(Awaiting::EndOfData, tx, None, sink);
                    self.apply(Direction::Up, Message::EndOfData, sink);
                    return used;
                }
                Piece::NeedMore => return used,
            }
        }
    }

    pub(super) fn up_chunk(&mut self, input: &[u8], sink: &mut impl EventSink) -> usize {
        let take = usize::try_from(self.bdat_remaining)
            .unwrap_or(usize::MAX)
            .min(input.len());
        self.content(&input[..take], sink);
        self.bdat_remaining -= take as u64;
        if self.bdat_remaining == 0 {
            self.chunk_done(sink);
        }
        take
    }

    pub(super) fn chunk_done(&mut self, sink: &mut impl EventSink) {
        if self.bdat_last {
            self.end_content(sink);
        }
        self.apply(Direction::Up, Message::ChunkDone, sink);
    }
}

/// The verb of an over-long command line from its first bytes (upper-cased
/// letters up to the first space or end), or "" when they are not a verb.
pub(super) fn head_verb(head: &[u8]) -> String {
    let word = head.split(|&c| c == b' ').next().unwrap_or(&[]);
    if (1..=10).contains(&word.len())
        && word.iter().all(u8::is_ascii_alphabetic)
        && word.len() < head.len()
    {
        word.iter()
            .map(|&c| char::from(c.to_ascii_uppercase()))
            .collect()
    } else {
        String::new()
    }
}

/// `AUTH MECH [initial-response]` with the initial response replaced by `***`.
pub(super) fn mask_auth(args: &[u8]) -> String {
    let mut parts = args.splitn(2, |&c| c == b' ');
    let mech = lossy(parts.next().unwrap_or(&[]));
    match parts.next() {
        Some(rest) if !rest.trim_ascii().is_empty() => format!("{mech} ***"),
        _ => mech,
    }
}
