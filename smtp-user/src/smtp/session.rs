//! One SMTP session: glues the two byte streams, the grammar, the state
//! machine and transaction building together.
//!
//! The up (client → server) and down (server → client) streams are parsed
//! independently into messages (command lines, content, AUTH answers;
//! replies) which drive [`machine::transition`]. Commands wait in a queue
//! until their reply arrives (PIPELINING). When the client sends bytes while
//! the reply to DATA, AUTH, STARTTLS or QUIT is still unknown, the meaning of
//! those bytes depends on that reply, so they are held (bounded) and replayed
//! once the reply is known: 354 → content, 334 → AUTH answer, 220 to
//! STARTTLS → TLS, anything else → commands again.
//!
//! **Server unheard.** While the server direction has not produced a single
//! byte, client commands cannot have been answered: the capture holds only
//! the client side, or started on the client side only (in a two-sided
//! capture the greeting always precedes client commands). In that mode client
//! bytes are never held: DATA enters data mode at once (as if answered 354),
//! AUTH and QUIT do not wait for their reply (after AUTH an unknown line is
//! taken for a credential and not shown), and the pipelining order checks
//! (`invalid_pipelined_sequence`) are not judged since the server's answers
//! are unknown. STARTTLS still holds (bounded): what follows is most likely
//! TLS. Commands are still queued (DATA too), so if server bytes appear
//! later their replies are matched normally, even while content taken at
//! once streams; client bytes are then held again after DATA/AUTH/QUIT.
//! When the queue is full while the server is unheard, the oldest command is
//! forgotten (one `limit_exceeded` per session) instead of refusing new ones. Transactions of this mode get no reply, so they end
//! `aborted` with no reply code (we cannot claim `delivered`) when the next
//! MAIL/RSET/HELO/EHLO starts or when the session ends.
//!
//! **Lost server replies.** After a gap in the down stream, the replies
//! to the commands queued at that time may have been lost, so replies are
//! matched to them by meaning, not only by position: a 354 answers the
//! queued DATA, 221 QUIT, 334 AUTH, 220 STARTTLS, and the commands queued
//! before it lost their replies (recipients keep no reply code, nothing is
//! decided for them). Other replies still answer the oldest command. If the
//! client sends bytes after such a DATA before any reply, the 354 was lost:
//! with PIPELINING, DATA ends a command group (RFC 2920) and the client
//! waits for its reply, so bytes after it mean the server said 354 — unless
//! their first line is a well-formed command (the DATA was refused, e.g.
//! RSET/QUIT follow). The content is then taken at once as in the
//! server-unheard mode, and the reply that follows answers its end of data.
//!
//! **Midstream.** A session joined midstream ([`SessionConfig::midstream`]:
//! the flow table saw no SYN) starts in [`State::Midstream`]: no greeting is
//! expected (no `unexpected_server_greeting`, `command_before_greeting` or
//! `no_helo`: they happened before we looked). Until the session is
//! synchronised, client lines that are not well-formed commands
//! ([`grammar::well_formed`]) are skipped silently and counted in
//! [`Session::unparsed_bytes`] (we may have joined inside DATA); server
//! replies to nothing we saw are ignored (no `unmatched_reply`), and so are
//! server lines that are not replies (the rest of a line, or TLS: no
//! `invalid_reply`, no error transition). A lone `.` line ends the message
//! we joined: the next reply answers it, not a later command. The first
//! command, or the reply to that `.`, synchronises the session. The
//! transaction we joined is not reported (its MAIL FROM was not seen): a
//! DATA/BDAT before the next MAIL/RSET/HELO/EHLO is parsed but opens no
//! transaction, and the first complete transaction gets `tx_id` 0.
//!
//! Results do not depend on how the streams are chunked, except for the
//! boundaries between successive `MailContent` pieces.
//!
//! Memory per session is bounded by [`SessionConfig`] and the module limits:
//! two line buffers (4 KiB each), the hold buffer (64 KiB), at most 1024
//! pending commands, 4 open transactions of at most 1000 recipients (paths
//! kept up to 512 bytes), replies of at most 128 lines, and the MIME parser's
//! header limits (see `mime.rs`): about 2.5 MiB in the very worst case, a few
//! KiB for ordinary sessions. DATA content is never buffered.

use std::collections::VecDeque;

use crate::Direction;

use super::pending::{Awaiting, Pending, PendingQueue, Undo};

use super::data::{DotDecoder, Piece};
use super::events::{
    Anomaly, AnomalyKind, Command, ContentPart, Envelope, EnvelopeChange, Event, EventSink,
    MailContent, Recipient, Response, TransactionState, Verb,
};
use super::grammar;
use super::lines::{LineBuffer, Split};
use super::machine::{self, Answers, Class, Message, State};
use super::mime::MimeParser;
use super::transaction::{TxBuilder, MAX_PATH, MAX_RECIPIENTS};

/// Longest command line RFC 5321 allows, CRLF included (§4.5.3.1.4).
const MAX_COMMAND_LINE: usize = 512;

/// Longest message line RFC 5322 allows, CRLF excluded (§2.1.1); one more
/// for the CR of a CRLF line ending.
const MAX_MESSAGE_LINE: u64 = 998 + 1;

/// Bounds of one session (memory per session is bounded by these).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Longest command / reply line, excluding the line ending.
    pub line_limit: usize,
    /// Most client bytes held while waiting for the reply to DATA/AUTH/STARTTLS/QUIT.
    pub hold_limit: usize,
    /// Most commands awaiting a reply.
    pub max_pending: usize,
    /// Most transactions open at once (awaiting their final reply).
    pub max_open_transactions: usize,
    /// Most lines kept per reply (the excess is counted, not kept).
    pub max_reply_lines: usize,
    /// BDAT chunks larger than this are reported (`bdat_chunk_overflow`).
    pub max_bdat_chunk: u64,
    /// The session was joined midstream (no SYN seen): start in
    /// [`State::Midstream`] instead of waiting for the greeting.
    pub midstream: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            line_limit: 4096,
            hold_limit: 64 * 1024,
            max_pending: 1024,
            max_open_transactions: 4,
            max_reply_lines: 128,
            max_bdat_chunk: 128 * 1024 * 1024,
            midstream: false,
        }
    }
}

/// How the up stream is read right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpMode {
    Commands,
    AuthAnswer,
    Data,
    Chunk,
    /// Waiting for the reply to a blocking command: hold the bytes.
    Hold,
    /// After QUIT: anything is `data_after_quit`.
    AfterQuit,
    /// TLS or error: count only.
    Discard,
}

/// A multi-line reply being assembled.
#[derive(Debug)]
struct ReplyBuilder {
    code: u16,
    /// At most `max_reply_lines` entries.
    lines: Vec<String>,
    /// A continuation line had another code (reported once).
    mismatch: bool,
    /// Lines beyond the limit were dropped (reported once).
    truncated: bool,
}

/// The SMTP dissector for one TCP session.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    up_lines: LineBuffer,
    down_lines: LineBuffer,
    /// Reply whose final line has not arrived yet.
    reply: Option<ReplyBuilder>,
    /// A down gap ended at an unknown place: lines that are not reply lines
    /// (the rest of a line cut by the gap) are skipped, not fatal, until a
    /// reply line is seen. The gap may well end at a line boundary, so the
    /// first line after it is not thrown away blindly.
    down_resync: bool,
    /// A down gap was declared and no reply was parsed since: a DATA sent
    /// after the gap (its envelope replies lost in it) whose client then
    /// sends content before any reply lost its 354 in that gap too.
    down_gap_unanswered: bool,
    /// The greeting (first reply) was seen.
    greeted: bool,
    /// Argument of the last HELO/EHLO.
    helo: Option<String>,
    /// A HELO/EHLO command was seen (or the session was joined midstream:
    /// it may have been sent before).
    helo_seen: bool,
    /// Joined midstream and no transaction boundary (MAIL, RSET, HELO/EHLO,
    /// end of content) seen yet: a DATA/BDAT belongs to a transaction whose
    /// start we missed; its content is parsed but opens no transaction.
    joined: bool,
    /// Commands awaiting replies, oldest first; at most `cfg.max_pending`.
    /// Replies to the ones queued when server bytes were lost are matched
    /// by meaning (see the module doc).
    pending: PendingQueue,
    /// Client bytes held until the reply to a blocking command; at most `cfg.hold_limit`.
    hold: Vec<u8>,
    /// Client bytes dropped because `hold` was full (replayed as a gap).
    hold_lost: u64,
    /// Offset in `hold` where the lost bytes belong (first gap or overflow).
    hold_gap_at: Option<usize>,
    /// `limit_exceeded` was reported for the current hold.
    hold_overflowed: bool,
    /// Set when held bytes are replayed as commands after a refused blocking command.
    replay_after: Option<Verb>,
    /// Open transactions, oldest first; at most `cfg.max_open_transactions`.
    txs: VecDeque<TxBuilder>,
    /// Transaction that client commands / content currently add to.
    up_tx: Option<u32>,
    /// Number of transactions started (next id).
    next_tx: u32,
    /// Transaction whose content is streaming (DATA or BDAT), if any.
    content_tx: Option<u32>,
    dots: DotDecoder,
    mime: MimeParser,
    /// Octets left in the current BDAT chunk.
    bdat_remaining: u64,
    /// The current BDAT chunk is the LAST one.
    bdat_last: bool,
    tls: bool,
    drop_requested: bool,
    /// `data_after_quit` was reported.
    quit_reported: bool,
    /// The last reply to a command refused it (4xx/5xx).
    last_refused: bool,
    /// `limit_exceeded` was reported for the pending queue.
    queue_overflowed: bool,
    /// Octets of the current message line so far; `u64::MAX` once
    /// `message_line_too_long` was reported for the message.
    line_len: u64,
    /// Client bytes were lost while reading commands: until a well-formed
    /// command, client lines are skipped (they may be message content the
    /// gap hid the start of), as when joined midstream. The first complete
    /// line after the gap is kept if it is a command.
    up_resync: bool,
    /// `command_before_greeting` was reported.
    early_reported: bool,
    /// Pending commands forgotten because the queue was full while the
    /// server was unheard (`limit_exceeded` reported for the first).
    unheard_forgotten: u64,
    /// The client sent QUIT.
    quit_sent: bool,
    /// The last reply ended an AUTH exchange and no valid command followed yet:
    /// an unparsable client line may be a credential, its content is not shown.
    after_auth: bool,
    /// Per direction (Up, Down): bytes seen, bytes not parsed (TLS, error, after QUIT, lost).
    bytes: [u64; 2],
    unparsed: [u64; 2],
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

fn idx(dir: Direction) -> usize {
    match dir {
        Direction::Up => 0,
        Direction::Down => 1,
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Session {
    pub fn new() -> Session {
        Session::with_config(SessionConfig::default())
    }

    /// A session joined midstream (see the module doc).
    pub fn midstream() -> Session {
        Session::with_config(SessionConfig {
            midstream: true,
            ..SessionConfig::default()
        })
    }

    pub fn with_config(cfg: SessionConfig) -> Session {
        let midstream = cfg.midstream;
        let pending = PendingQueue::new(cfg.max_pending);
        Session {
            up_lines: LineBuffer::new(cfg.line_limit),
            down_lines: LineBuffer::new(cfg.line_limit),
            cfg,
            state: if midstream {
                State::Midstream
            } else {
                State::SessionInitiation
            },
            reply: None,
            down_resync: false,
            down_gap_unanswered: false,
            greeted: midstream,
            helo: None,
            helo_seen: midstream,
            joined: midstream,
            pending,
            hold: Vec::new(),
            hold_lost: 0,
            hold_gap_at: None,
            hold_overflowed: false,
            replay_after: None,
            txs: VecDeque::new(),
            up_tx: None,
            next_tx: 0,
            content_tx: None,
            dots: DotDecoder::default(),
            mime: MimeParser::new(),
            bdat_remaining: 0,
            bdat_last: false,
            tls: false,
            drop_requested: false,
            quit_reported: false,
            last_refused: false,
            queue_overflowed: false,
            line_len: 0,
            up_resync: false,
            early_reported: false,
            unheard_forgotten: 0,
            quit_sent: false,
            after_auth: false,
            bytes: [0; 2],
            unparsed: [0; 2],
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The session switched to TLS (STARTTLS + 220): bytes are only counted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// A fatal parse error happened (the tutorial's `error` transition).
    pub fn drop_requested(&self) -> bool {
        self.drop_requested
    }

    /// Mail transactions started (MAIL FROM commands, plus DATA/BDAT without one).
    pub fn transactions_seen(&self) -> u32 {
        self.next_tx
    }

    /// While the chunk of a `BDAT … LAST` command is being read: the chunk
    /// bytes still to come (the end-of-data gate holds the segment that
    /// completes it).
    pub fn bdat_last_remaining(&self) -> Option<u64> {
        (self.state == State::BdatTransmission && self.bdat_last && self.bdat_remaining > 0)
            .then_some(self.bdat_remaining)
    }

    /// A MAIL or RCPT awaits its reply: the envelope may still change
    /// (the end-of-data gate keeps holding a message end until it is known).
    pub fn envelope_undecided(&self) -> bool {
        self.pending.envelope_undecided()
    }

    /// Bytes seen in a direction (including gaps).
    pub fn bytes(&self, dir: Direction) -> u64 {
        self.bytes[idx(dir)]
    }

    /// Bytes of a direction that were counted but not parsed (TLS, after an
    /// error or QUIT, lost in gaps or beyond the hold limit).
    pub fn unparsed_bytes(&self, dir: Direction) -> u64 {
        self.unparsed[idx(dir)]
    }

    /// Heap bytes this session holds, approximately (its buffers and
    /// queues; each open transaction counted at a fixed 1 KiB), in O(1):
    /// for the global memory cap of reassembly and dissection.
    pub fn memory(&self) -> usize {
        std::mem::size_of::<Session>()
            + self.hold.capacity()
            + self.up_lines.pending_len()
            + self.down_lines.pending_len()
            + self.pending.len() * std::mem::size_of::<Pending>()
            + self.txs.len() * (std::mem::size_of::<TxBuilder>() + 1024)
    }

    /// Feeds bytes of one direction.
    pub fn feed(&mut self, dir: Direction, data: &[u8], sink: &mut impl EventSink) {
        self.bytes[idx(dir)] += data.len() as u64;
        match dir {
            Direction::Up => self.process_up(data, sink),
            Direction::Down => self.process_down(data, sink),
        }
    }

    /// The transport lost `len` bytes in `dir`.
    pub fn gap(&mut self, dir: Direction, len: u64, sink: &mut impl EventSink) {
        self.bytes[idx(dir)] += len;
        self.unparsed[idx(dir)] += len;
        if self.state == State::Tls {
            return;
        }
        if dir == Direction::Up && self.up_mode() == UpMode::Hold {
            // Reported when the held bytes are replayed, at the right place.
            self.hold_gap_at.get_or_insert(self.hold.len());
            self.hold_lost += len;
            self.take_lost_data(sink);
            return;
        }
        let tx_id = self.content_tx.or(self.up_tx);
        self.anomaly(
            AnomalyKind::StreamGap,
            format!("{len} bytes lost ({dir:?})"),
            tx_id,
            sink,
        );
        match dir {
            Direction::Down => {
                self.reply = None;
                // The partial line before the gap is dropped unparsed.
                self.unparsed[1] += self.down_lines.pending_len() as u64;
                self.down_lines.reset();
                self.down_resync = true;
                self.down_gap_unanswered = true;
                // Every queued command may have lost its reply.
                self.pending.mark_all_lost();
                self.take_lost_data(sink);
            }
            Direction::Up => match self.up_mode() {
                UpMode::Data => {
                    self.mark_incomplete();
                    self.dots.gap();
                    self.mime.gap();
                }
                UpMode::Chunk => {
                    self.mark_incomplete();
                    self.mime.gap();
                    if len < self.bdat_remaining {
                        self.bdat_remaining -= len;
                    } else {
                        // The gap swallowed the end of the chunk and some of what followed.
                        self.bdat_remaining = 0;
                        self.chunk_done(sink);
                        self.up_lines.reset();
                        self.up_resync = true;
                    }
                }
                UpMode::Hold => {}
                UpMode::Commands => {
                    self.up_lines.reset();
                    self.up_resync = true;
                }
                UpMode::AuthAnswer => self.up_lines.resync(),
                UpMode::AfterQuit | UpMode::Discard => {}
            },
        }
    }

    /// The connection closed (or the monitor stops): open transactions end as Aborted.
    pub fn finish(&mut self, sink: &mut impl EventSink) {
        if !self.hold.is_empty() {
            let quit = self
                .pending
                .back()
                .is_some_and(|p| p.what == Awaiting::Command(Verb::Quit));
            if quit && !self.quit_reported {
                self.quit_reported = true;
                self.anomaly(
                    AnomalyKind::DataAfterQuit,
                    format!("{} bytes after QUIT", self.hold.len()),
                    None,
                    sink,
                );
            }
            self.unparsed[0] += self.hold.len() as u64;
            self.hold.clear();
        }
        self.abort_all(sink);
    }

    // ----- up stream -----

    /// The server direction has not produced a byte yet (see the module doc).
    fn server_unheard(&self) -> bool {
        self.bytes[idx(Direction::Down)] == 0
    }

    /// Joined midstream, or after the `error` transition: not synchronised
    /// with the session (see the module doc).
    fn unsynced(&self) -> bool {
        matches!(self.state, State::Midstream | State::Error)
    }

    fn up_mode(&self) -> UpMode {
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

    fn process_up(&mut self, data: &[u8], sink: &mut impl EventSink) {
        let mut input = data;
        while !input.is_empty() {
            let used = match self.up_mode() {
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
    }

    /// Client bytes arrived after a DATA whose reply may have been lost in a
    /// down gap (see the module doc): the client got a 354 (content at once)
    /// or, if the first line is a command, a refusal. Waits for that first
    /// line (bounded by the hold limit).
    fn take_lost_data(&mut self, sink: &mut impl EventSink) {
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
    fn drop_lost_replies(&mut self, code: u16, sink: &mut impl EventSink) {
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
    fn reply_lost(&mut self, p: &Pending, sink: &mut impl EventSink) {
        self.announce(p, sink);
        if let Some(id) = p.tx {
            self.try_emit(id, sink);
        }
    }

    /// Once the reply to a blocking command is known, replay what was held
    /// (and the bytes lost while holding, as a gap at the place they were lost).
    fn replay_held(&mut self, sink: &mut impl EventSink) {
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

    fn up_line(&mut self, input: &[u8], sink: &mut impl EventSink) -> usize {
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
    fn up_line_unsynced(
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
    fn skip_up_line(&mut self, len: usize, sink: &mut impl EventSink) {
        self.unparsed[0] += len as u64;
        if self.unsynced() {
            self.apply(Direction::Up, Message::NotACommand, sink);
        }
    }

    fn on_command(&mut self, line: &[u8], sink: &mut impl EventSink) {
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

    fn on_bdat(&mut self, args: &[u8], sink: &mut impl EventSink) {
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

    fn up_data(&mut self, input: &[u8], sink: &mut impl EventSink) -> usize {
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

    fn up_chunk(&mut self, input: &[u8], sink: &mut impl EventSink) -> usize {
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

    fn chunk_done(&mut self, sink: &mut impl EventSink) {
        if self.bdat_last {
            self.end_content(sink);
        }
        self.apply(Direction::Up, Message::ChunkDone, sink);
    }

    // ----- content -----

    /// The transaction a DATA/BDAT adds to: the current one; none when it
    /// belongs to the transaction we joined midstream; else a new one (DATA
    /// or BDAT without MAIL FROM).
    fn data_tx(&mut self, sink: &mut impl EventSink) -> Option<u32> {
        if self.up_tx.is_none() && !self.joined {
            let id = self.new_tx(sink);
            self.up_tx = Some(id);
        }
        self.up_tx
    }

    /// Content starts; `None`: content of the transaction we joined
    /// midstream (parsed for framing only, not reported).
    fn start_content(&mut self, id: Option<u32>) {
        self.content_tx = id;
        self.dots.reset();
        self.mime.reset();
        self.line_len = 0;
        if let Some(tx) = id.and_then(|id| self.tx_mut(id)) {
            tx.email = Some(Default::default());
        }
    }

    fn content(&mut self, data: &[u8], sink: &mut impl EventSink) {
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
        self.mime.feed(data, id, sink);
    }

    /// Follows the length of the current message line over `data`; true
    /// when a line is longer than RFC 5322 allows.
    fn long_message_line(&mut self, data: &[u8]) -> bool {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            if self.line_len + (nl - start) as u64 > MAX_MESSAGE_LINE {
                return true;
            }
            self.line_len = 0;
            start = nl + 1;
        }
        self.line_len += (data.len() - start) as u64;
        self.line_len > MAX_MESSAGE_LINE
    }

    /// End of message: record what MIME parsing found; returns the transaction.
    fn end_content(&mut self, sink: &mut impl EventSink) -> Option<u32> {
        // The message we joined midstream (if any) is over.
        self.joined = false;
        let id = self.content_tx.take()?;
        self.mime.finish(id, sink);
        self.mime.end_body(id, sink);
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
    fn cut_content(&mut self, sink: &mut impl EventSink) {
        let Some(id) = self.content_tx.take() else {
            return;
        };
        self.mime.finish(id, sink);
        let email = self.mime.take_email();
        let (headers, body) = (self.mime.headers_done, self.mime.body_started);
        if let Some(tx) = self.tx_mut(id) {
            tx.email = Some(email);
            tx.email_status = Some(status(true, headers, body).to_string());
        }
    }

    fn mark_incomplete(&mut self) {
        if let Some(tx) = self.content_tx.and_then(|id| self.tx_mut(id)) {
            tx.incomplete = true;
        }
    }

    // ----- down stream -----

    fn process_down(&mut self, data: &[u8], sink: &mut impl EventSink) {
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
    fn on_reply_line(&mut self, line: &[u8], wire_len: usize, sink: &mut impl EventSink) {
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

    fn on_reply(&mut self, code: u16, lines: Vec<String>, sink: &mut impl EventSink) {
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
    fn reply_effects(&mut self, p: &Pending, code: u16, class: Class, sink: &mut impl EventSink) {
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

    /// Whether transaction `id` is still being built and undecided.
    fn is_open(&self, id: u32) -> bool {
        self.txs.iter().any(|t| t.id == id && t.state.is_none())
    }

    /// A nested MAIL (transaction `id`) was refused while `prev` was open:
    /// `id` never existed for the server; the commands queued after it
    /// (recipients, DATA, BDAT) belong to `prev`.
    fn merge_refused_mail(&mut self, id: u32, prev: u32) {
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

    // ----- state machine -----

    /// Runs one transition of the table and its `enter` hooks.
    fn apply(&mut self, dir: Direction, msg: Message, sink: &mut impl EventSink) {
        let step = machine::transition(self.state, dir, msg);
        if let Some(kind) = step.anomaly {
            // Reported once per session: every later byte would repeat them.
            let once = match kind {
                AnomalyKind::DataAfterQuit => Some(&mut self.quit_reported),
                AnomalyKind::CommandBeforeGreeting => Some(&mut self.early_reported),
                _ => None,
            };
            let repeated = once
                .map(|flag| std::mem::replace(flag, true))
                .unwrap_or(false);
            // After a 421 (no QUIT) the client may legitimately still talk.
            let excused = kind == AnomalyKind::DataAfterQuit && !self.quit_sent;
            if !repeated && !excused {
                let detail = match kind {
                    AnomalyKind::UnexpectedServerGreeting => "greeting is not 220".to_string(),
                    AnomalyKind::CommandBeforeGreeting => {
                        "client spoke before the greeting".to_string()
                    }
                    AnomalyKind::UnmatchedReply => "reply with no command awaiting it".to_string(),
                    AnomalyKind::TlsRejected => "STARTTLS refused".to_string(),
                    AnomalyKind::DataAfterQuit => "client sent bytes after QUIT".to_string(),
                    _ => format!("{msg:?} in state {}", self.state.name()),
                };
                let tx = self.content_tx.or(self.up_tx);
                self.anomaly(kind, detail, tx, sink);
            }
        }
        if step.next != self.state {
            tracing::trace!(
                "state={}→{} ({dir:?} {msg:?})",
                self.state.name(),
                step.next.name()
            );
            self.leave(self.state);
            self.state = step.next;
            self.enter(step.next, sink);
        }
    }

    /// `leave` hooks.
    fn leave(&mut self, state: State) {
        if state == State::BdatTransmission {
            // Whatever ended the chunk (its last octet, 421, an error), it is over.
            self.bdat_remaining = 0;
        }
    }

    /// `enter` hooks.
    fn enter(&mut self, state: State, sink: &mut impl EventSink) {
        match state {
            State::Tls => {
                self.tls = true;
                self.unparsed[0] += self.hold.len() as u64;
                self.hold.clear();
                self.pending.clear();
                self.abort_all(sink);
            }
            State::Finish => {
                self.pending.clear();
                self.abort_all(sink);
            }
            State::Error => {
                // The drop is requested; if the session goes on anyway
                // (monitor mode, an `alert` action, a replay), resynchronise
                // as when joining midstream. Transactions stay open: the
                // server may well deliver them. Replies of the queued
                // commands can no longer be trusted to come in order.
                self.drop_requested = true;
                self.reply = None;
                self.down_resync = true;
                self.pending.mark_all_lost();
            }
            _ => {}
        }
    }

    /// The `error` transition: a high-severity anomaly asking to drop the session.
    fn fatal(&mut self, kind: AnomalyKind, detail: String, sink: &mut impl EventSink) {
        let tx_id = self.content_tx.or(self.up_tx);
        sink.event(Event::Anomaly(Anomaly {
            kind,
            severity: kind.default_severity(),
            detail,
            tx_id,
            drop_requested: true,
        }));
        self.apply(Direction::Up, Message::Fatal, sink);
        self.replay_held(sink);
    }

    fn anomaly(
        &mut self,
        kind: AnomalyKind,
        detail: String,
        tx_id: Option<u32>,
        sink: &mut impl EventSink,
    ) {
        tracing::debug!(kind = kind.as_str(), %detail, "smtp anomaly");
        sink.event(Event::Anomaly(Anomaly {
            kind,
            severity: kind.default_severity(),
            detail,
            tx_id,
            drop_requested: false,
        }));
    }

    // ----- transactions -----

    fn push_pending(
        &mut self,
        what: Awaiting,
        tx: Option<u32>,
        rcpt: Option<usize>,
        sink: &mut impl EventSink,
    ) {
        let mut p = Pending::new(what, tx);
        p.rcpt = rcpt;
        self.queue(p, sink);
    }

    /// Queues a command until its reply. While the server is unheard no
    /// reply will tell whether it was accepted: its envelope change is
    /// reported at once.
    fn queue(&mut self, mut p: Pending, sink: &mut impl EventSink) {
        let tx = p.tx;
        if self.pending.is_full() && self.server_unheard() {
            // Nothing answers a one-sided capture: forget the oldest command
            // rather than refuse every new one (reported once per session).
            if let Some(old) = self.pending.pop() {
                if let Some(t) = old.tx.and_then(|id| self.tx_mut(id)) {
                    t.refs = t.refs.saturating_sub(1);
                }
            }
            self.unheard_forgotten += 1;
            if self.unheard_forgotten == 1 {
                let detail = format!(
                    "more than {} commands and no server reply: oldest forgotten",
                    self.cfg.max_pending
                );
                self.anomaly(AnomalyKind::LimitExceeded, detail, tx, sink);
            }
        }
        if self.pending.is_full() && !std::mem::replace(&mut self.queue_overflowed, true) {
            // Later commands are counted, not kept: their replies are
            // counted off and later replies stay aligned. Reported once.
            let detail = format!(
                "more than {} commands awaiting replies: later ones not recorded",
                self.cfg.max_pending
            );
            self.anomaly(AnomalyKind::LimitExceeded, detail, tx, sink);
        }
        if self.server_unheard() {
            self.announce(&p, sink);
            p.announced = true;
        }
        p.behind = !self.pending.is_empty();
        if self.pending.push(p) {
            if let Some(t) = tx.and_then(|id| self.tx_mut(id)) {
                t.refs += 1;
            }
        }
    }

    /// Reports the envelope change of an accepted command (once).
    fn announce(&mut self, p: &Pending, sink: &mut impl EventSink) {
        if p.announced {
            return;
        }
        let tx = p.tx.and_then(|id| self.txs.iter().find(|t| t.id == id));
        let change = match (&p.what, &p.undo) {
            (Awaiting::Command(Verb::Mail), _) => match tx {
                Some(t) => EnvelopeChange::MailFrom {
                    path: t.mail_from.clone().unwrap_or_default(),
                    declared_size: t.declared_size,
                },
                None => return,
            },
            (Awaiting::Command(Verb::Rcpt), _) => {
                match tx.zip(p.rcpt).and_then(|(t, i)| t.rcpt_to.get(i)) {
                    Some(r) => EnvelopeChange::Rcpt(r.path.clone()),
                    None => return,
                }
            }
            (Awaiting::Command(Verb::Helo | Verb::Ehlo), Undo::Helo { arg: Some(a), .. }) => {
                EnvelopeChange::Helo(a.clone())
            }
            (Awaiting::Command(Verb::Rset), _) => EnvelopeChange::Reset,
            _ => return,
        };
        sink.event(Event::Envelope(Envelope {
            tx_id: p.tx,
            change,
        }));
    }

    fn tx_mut(&mut self, id: u32) -> Option<&mut TxBuilder> {
        self.txs.iter_mut().find(|t| t.id == id)
    }

    fn new_tx(&mut self, sink: &mut impl EventSink) -> u32 {
        if self.txs.len() >= self.cfg.max_open_transactions {
            if let Some(mut oldest) = self.txs.pop_front() {
                let detail = format!(
                    "more than {} open transactions",
                    self.cfg.max_open_transactions
                );
                self.anomaly(AnomalyKind::LimitExceeded, detail, Some(oldest.id), sink);
                oldest.decide(TransactionState::Aborted, None);
                sink.event(Event::Transaction(oldest.into_transaction(self.tls)));
            }
        }
        self.new_tx_quiet()
    }

    fn new_tx_quiet(&mut self) -> u32 {
        let id = self.next_tx;
        self.next_tx = self.next_tx.saturating_add(1);
        self.txs.push_back(TxBuilder::new(id, self.helo.clone()));
        id
    }

    fn decide(&mut self, id: Option<u32>, state: TransactionState, code: u16) {
        if let Some(tx) = id.and_then(|id| self.tx_mut(id)) {
            tx.decide(state, Some(code));
        }
        if id.is_some() && self.up_tx == id && state != TransactionState::Delivered {
            self.up_tx = None;
        }
    }

    /// Emits the transaction if it is decided and no pending command refers to it.
    fn try_emit(&mut self, id: u32, sink: &mut impl EventSink) {
        let Some(pos) = self.txs.iter().position(|t| t.id == id) else {
            return;
        };
        let ready = self
            .txs
            .get(pos)
            .is_some_and(|t| t.state.is_some() && t.refs == 0);
        if ready && self.content_tx != Some(id) {
            if let Some(tx) = self.txs.remove(pos) {
                sink.event(Event::Transaction(tx.into_transaction(self.tls)));
            }
        }
    }

    /// Ends every open transaction (QUIT, close, 421, TLS).
    fn abort_all(&mut self, sink: &mut impl EventSink) {
        self.cut_content(sink);
        self.up_tx = None;
        while let Some(mut tx) = self.txs.pop_front() {
            tx.decide(TransactionState::Aborted, None);
            sink.event(Event::Transaction(tx.into_transaction(self.tls)));
        }
    }
}

/// Suricata's `email.status` for a message: `PARSE_DONE` once the end of
/// data was reached, whatever MIME warnings were reported (they are
/// anomalies: invalid base64, over-long headers); when content was lost or
/// cut short, how far parsing got.
fn status(incomplete: bool, headers_done: bool, body_started: bool) -> &'static str {
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

/// The verb of an over-long command line from its first bytes (upper-cased
/// letters up to the first space or end), or "" when they are not a verb.
fn head_verb(head: &[u8]) -> String {
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
fn mask_auth(args: &[u8]) -> String {
    let mut parts = args.splitn(2, |&c| c == b' ');
    let mech = lossy(parts.next().unwrap_or(&[]));
    match parts.next() {
        Some(rest) if !rest.trim_ascii().is_empty() => format!("{mech} ***"),
        _ => mech,
    }
}
