//! The smuggling speculation of a session: forking the shadow reading at
//! a bare-LF dot line, feeding both readings, adopting the one the
//! server's replies confirm (see [`crate::smtp::smuggling`]).

use super::*;

/// An open smuggling speculation (see [`super::smuggling`]): the shadow
/// reading and its held events; the main reading is the session itself.
#[derive(Debug, Clone)]
pub(super) struct Speculation {
    /// The session in which the data ended at the candidate.
    shadow: Session,
    /// The shadow's events since the fork; at most about
    /// `MAX_SPECULATION_EVENTS` (then the speculation is decided).
    events: Vec<OwnedEvent>,
    /// Bytes fed to both readings since the fork.
    bytes: u64,
    /// The transaction whose data the candidate may have ended.
    tx: Option<u32>,
    /// Unexplained-reply counts of each reading at the fork.
    main_base: u64,
    shadow_base: u64,
    /// Transaction ids from this one on were given after the fork: the
    /// shadow's are renumbered past the main reading's when it is adopted.
    pub(super) next_tx: u32,
    /// `events[..covered]` hold no reply the main reading did not report.
    covered: usize,
}

impl Session {
    // ----- smuggling speculation (see `smuggling.rs`) -----

    /// At a bare-LF dot line: the shadow reading ends the data here, the
    /// main reading (this session) keeps `piece` as content.
    pub(super) fn fork(&mut self, piece: &'static [u8], sink: &mut impl EventSink) {
        let mut shadow = self.clone();
        shadow.speculative = true;
        let mut events = Vec::new();
        let tx = shadow.content_tx;
        shadow.dots.reset();
        let ended = shadow.end_content(&mut events);
        shadow.push_pending(Awaiting::EndOfData, ended, None, &mut events);
        shadow.apply(Direction::Up, Message::EndOfData, &mut events);
        self.content(piece, sink);
        tracing::debug!("smuggling candidate: speculation forked");
        self.speculation = Some(Box::new(Speculation {
            next_tx: self.next_tx,
            main_base: self.unexplained,
            shadow_base: shadow.unexplained,
            shadow,
            events,
            bytes: 0,
            tx,
            covered: 0,
        }));
    }

    /// Bytes of this chunk after the fork point: both readings counted them.
    pub(super) fn speculate_uncounted(
        &mut self,
        dir: Direction,
        data: &[u8],
        sink: &mut impl EventSink,
    ) {
        if let Some(spec) = self.speculation.as_mut() {
            spec.shadow.bytes[idx(dir)] -= data.len() as u64;
        }
        self.speculate(dir, Some(data), 0, sink);
    }

    /// Feeds both readings (`data`, or a gap of `gap` bytes), then decides
    /// if the replies allow it.
    pub(super) fn speculate(
        &mut self,
        dir: Direction,
        data: Option<&[u8]>,
        gap: u64,
        sink: &mut impl EventSink,
    ) {
        let Some(mut spec) = self.speculation.take() else {
            return;
        };
        match data {
            Some(bytes) if dir == Direction::Down => {
                // Reply by reply (line by line): the main reading's output
                // for a line is held until the line decided nothing, so a
                // reply that decides for the shadow is reported its way.
                let mut rest = bytes;
                while !rest.is_empty() {
                    let n = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
                    let (line, tail) = rest.split_at(n);
                    rest = tail;
                    spec.bytes += line.len() as u64;
                    let mut held = Vec::new();
                    self.process_down(line, &mut held);
                    spec.shadow.feed(dir, line, &mut spec.events);
                    let verdict = self.verdict(&spec);
                    if verdict == Verdict::Shadow {
                        self.adopt_shadow(*spec, sink);
                        // The shadow counted the lines it was fed.
                        self.bytes[idx(dir)] += rest.len() as u64;
                        return self.process_down(rest, sink);
                    }
                    for e in &held {
                        sink.event(e.as_event());
                    }
                    spec.covered = spec.events.len();
                }
            }
            Some(bytes) => {
                spec.bytes += bytes.len() as u64;
                self.process_up(bytes, sink);
                spec.shadow.feed(dir, bytes, &mut spec.events);
            }
            None => {
                spec.bytes += gap;
                self.gap_inner(dir, gap, sink);
                spec.shadow.gap(dir, gap, &mut spec.events);
            }
        }
        self.settle(spec, false, sink);
    }

    /// Ends the speculation when the replies (or its bounds, or the end of
    /// the session: `last`) decide; keeps it open otherwise.
    pub(super) fn verdict(&self, spec: &Speculation) -> Verdict {
        smuggling::verdict(
            self.unexplained - spec.main_base,
            spec.shadow.unexplained - spec.shadow_base,
            spec.bytes,
            spec.events.len(),
        )
    }

    pub(super) fn settle(&mut self, spec: Box<Speculation>, last: bool, sink: &mut impl EventSink) {
        match self.verdict(&spec) {
            Verdict::Open if !last => self.speculation = Some(spec),
            Verdict::Open | Verdict::Main => {
                tracing::debug!("smuggling candidate: data did not end there");
            }
            Verdict::Bounded => {
                let detail = format!(
                    "bare LF dot line: replies undecided after {} bytes, read as content",
                    spec.bytes
                );
                self.anomaly(AnomalyKind::LimitExceeded, detail, spec.tx, sink);
            }
            Verdict::Shadow => self.adopt_shadow(*spec, sink),
        }
    }

    /// The server ended the data at the candidate: the shadow reading
    /// becomes the session. What the main reading already reported stays
    /// (the first message, its replies); the shadow adds the commands and
    /// transactions it read in the bytes after the candidate.
    pub(super) fn adopt_shadow(&mut self, spec: Speculation, sink: &mut impl EventSink) {
        let mut spec = spec;
        // Ids both readings gave after the fork: the shadow's move past the
        // main reading's (already reported) ones.
        let shift = self.next_tx.saturating_sub(spec.next_tx);
        if shift > 0 {
            let base = spec.next_tx;
            let map = |id: u32| {
                if id >= base {
                    id.saturating_add(shift)
                } else {
                    id
                }
            };
            spec.shadow.renumber(&map);
            for e in &mut spec.events {
                renumber_event(e, &map);
            }
        }
        let first = spec.tx;
        // Transactions opened before the fork that the main reading
        // already reported (ended, or evicted at the open-transaction
        // bound) are not reported again.
        let base = spec.next_tx;
        let reported: Vec<u32> = spec
            .shadow
            .txs
            .iter()
            .map(|t| t.id)
            .chain(spec.events.iter().filter_map(|e| match e {
                OwnedEvent::Transaction(t) => Some(t.id),
                _ => None,
            }))
            .filter(|&id| id < base && Some(id) != first && !self.txs.iter().any(|t| t.id == id))
            .collect();
        let detail = "the server ended the data at a bare LF dot line: the bytes after it \
                      were read as commands (smuggled transaction)"
            .to_string();
        self.anomaly(AnomalyKind::SmugglingAccepted, detail, first, sink);
        // Whether the main reading still holds the first message (it never
        // saw its end): then the shadow's end of it is reported, with the
        // headers the main reading parsed (the shadow's parser started at
        // the candidate).
        let open = first.filter(|&id| self.txs.iter().any(|t| t.id == id));
        let email = open.map(|_| self.mime.take_email());
        for (k, e) in spec.events.iter().enumerate() {
            let of_first = |id: u32| Some(id) == first;
            match e {
                // Replies up to the deciding one were reported by the main reading.
                OwnedEvent::Response(_) if k < spec.covered => {}
                OwnedEvent::Transaction(t) if of_first(t.id) => {
                    if open.is_some() {
                        let mut t = t.clone();
                        if t.email.is_some() {
                            t.email = email.clone();
                        }
                        sink.event(Event::Transaction(t));
                    }
                }
                OwnedEvent::MailContent(m) if of_first(m.tx_id) => {
                    if open.is_some() && m.part == ContentPart::End {
                        sink.event(e.as_event());
                    }
                }
                OwnedEvent::Transaction(t) if reported.contains(&t.id) => {}
                OwnedEvent::Header(h) if of_first(h.tx_id) => {}
                OwnedEvent::MimePart(m) if of_first(m.tx_id) => {}
                OwnedEvent::File(f) if of_first(f.tx_id) => {}
                OwnedEvent::Url(u) if of_first(u.tx_id) => {}
                _ => sink.event(e.as_event()),
            }
        }
        let mut shadow = spec.shadow;
        shadow.speculative = false;
        shadow.txs.retain(|t| !reported.contains(&t.id));
        if let Some(id) = first {
            match (open, shadow.tx_mut(id)) {
                (Some(_), Some(t)) if t.email.is_some() => t.email = email,
                (Some(_), _) => {}
                // The main reading reported the first message already.
                (None, Some(_)) => shadow.txs.retain(|t| t.id != id),
                _ => {}
            }
        }
        shadow.next_tx = shadow.next_tx.max(self.next_tx);
        *self = shadow;
    }
}

impl Session {
    /// Applies `map` to every transaction id the session holds.
    fn renumber(&mut self, map: &impl Fn(u32) -> u32) {
        for t in &mut self.txs {
            t.id = map(t.id);
        }
        for p in self.pending.iter_mut() {
            p.tx = p.tx.map(map);
            if let Undo::Mail {
                open_before: Some(b),
            } = &mut p.undo
            {
                *b = map(*b);
            }
        }
        self.up_tx = self.up_tx.map(map);
        self.content_tx = self.content_tx.map(map);
        self.next_tx = map(self.next_tx);
    }
}

/// Applies `map` to the transaction id an event names.
fn renumber_event(e: &mut OwnedEvent, map: &impl Fn(u32) -> u32) {
    match e {
        OwnedEvent::Transaction(t) => t.id = map(t.id),
        OwnedEvent::MailContent(m) => m.tx_id = map(m.tx_id),
        OwnedEvent::Header(h) => h.tx_id = map(h.tx_id),
        OwnedEvent::MimePart(m) => m.tx_id = map(m.tx_id),
        OwnedEvent::Envelope(v) => v.tx_id = v.tx_id.map(map),
        OwnedEvent::File(f) => f.tx_id = map(f.tx_id),
        OwnedEvent::Url(u) => u.tx_id = map(u.tx_id),
        OwnedEvent::Anomaly(a) => a.tx_id = a.tx_id.map(map),
        OwnedEvent::Command(_) | OwnedEvent::Response(_) => {}
    }
}
