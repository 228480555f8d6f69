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
//! **A refused command changes nothing** (RFC 5321 §4.1.4): each pending
//! entry says what it would undo ([`super::pending::Undo`]); the envelope
//! changes are reported (`Envelope` events) when the server accepts them.
//! **After the `error` transition** the drop is requested and the session
//! resynchronises as when joined midstream (see [`State::Error`]).
//! **Smuggling**: at a bare-LF dot line both readings are followed until
//! the replies decide (see [`super::smuggling`]).
//!
//! Files: this one holds the state, the public API and the machine's
//! `enter`/`leave` hooks; `session/commands.rs` the client stream,
//! `session/replies.rs` the server stream, `session/content.rs` message
//! content, `session/transactions.rs` the pending queue's transactions and
//! envelope events, `session/speculation.rs` the smuggling speculation.
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
    MailContent, OwnedEvent, Recipient, Response, TransactionState, Verb,
};
use super::grammar;
use super::lines::{LineBuffer, Split};
use super::machine::{self, Answers, Class, Message, State};
use super::mime::{ContentOptions, MimeParser};
use super::smuggling::{self, Verdict};
use super::transaction::{TxBuilder, MAX_PATH, MAX_RECIPIENTS};

mod commands;
mod content;
mod replies;
mod speculation;
mod transactions;

use speculation::Speculation;

/// First byte of a TLS handshake record (RFC 8446 §5.1), what a client
/// sends first after the 220 to STARTTLS.
const TLS_HANDSHAKE: u8 = 0x16;

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
    /// What message content yields besides structure (files, URLs).
    pub content: ContentOptions,
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
            content: ContentOptions::default(),
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
#[derive(Debug, Clone)]
struct ReplyBuilder {
    code: u16,
    /// At most `max_reply_lines` entries.
    lines: Vec<String>,
    /// A continuation line had another code (reported once).
    mismatch: bool,
    /// Lines beyond the limit were dropped (reported once).
    truncated: bool,
}

/// The MIME parser of the message in transfer. A copy of a session (the
/// shadow reading of a smuggling candidate, see [`super::smuggling`]) starts
/// with a fresh parser: in it the message ended at the candidate.
#[derive(Debug)]
struct MimeSlot(MimeParser);

impl Clone for MimeSlot {
    fn clone(&self) -> Self {
        MimeSlot(MimeParser::with_options(self.0.options().clone()))
    }
}

impl std::ops::Deref for MimeSlot {
    type Target = MimeParser;
    fn deref(&self) -> &MimeParser {
        &self.0
    }
}

impl std::ops::DerefMut for MimeSlot {
    fn deref_mut(&mut self) -> &mut MimeParser {
        &mut self.0
    }
}

/// The SMTP dissector for one TCP session.
#[derive(Debug, Clone)]
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
    /// Bytes of either side were lost and no 354 or end-of-data reply has
    /// since been matched in step: the client may be sending message
    /// content the monitor takes for commands (a command or reply lost,
    /// the replies matched one off). A line that is not a command then
    /// starts a resynchronisation instead of an `invalid_command`.
    gap_unsettled: bool,
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
    mime: MimeSlot,
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
    /// Replies the session could not explain (see
    /// [`smuggling::unexplained`]); how a speculation is decided.
    unexplained: u64,
    /// Open smuggling speculation, if any (at most one).
    speculation: Option<Box<Speculation>>,
    /// In `Tls`: the first client bytes were checked (TLS or not).
    tls_checked: bool,
    /// This session is the shadow reading of a speculation: it forks none.
    speculative: bool,
    /// A smuggling candidate may fork a speculation now (top-level client bytes).
    fork_ok: bool,
    /// A candidate was met: `process_up` stopped right after its dot line;
    /// the bytes of the dot line's content still to add to the main reading.
    fork_at: Option<&'static [u8]>,
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
    crate::text::lossy_string(b)
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
        let mime = MimeSlot(MimeParser::with_options(cfg.content.clone()));
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
            gap_unsettled: false,
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
            mime,
            bdat_remaining: 0,
            bdat_last: false,
            tls: false,
            drop_requested: false,
            quit_reported: false,
            last_refused: false,
            queue_overflowed: false,
            line_len: 0,
            unexplained: 0,
            speculation: None,
            tls_checked: false,
            speculative: false,
            fork_ok: false,
            fork_at: None,
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

    /// Whether bytes still matter to the dissector: not once the client
    /// started TLS (its first bytes after the 220 to STARTTLS are checked).
    pub fn wants_bytes(&self) -> bool {
        !(self.state == State::Tls && self.tls_checked)
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
        if self.speculation.is_some() {
            return self.speculate(dir, Some(data), 0, sink);
        }
        match dir {
            Direction::Up => {
                self.fork_ok = !self.speculative;
                let used = self.process_up(data, sink);
                self.fork_ok = false;
                if let Some(piece) = self.fork_at.take() {
                    self.fork(piece, sink);
                    let rest = data.get(used..).unwrap_or(&[]);
                    // Already counted by both readings.
                    self.speculate_uncounted(dir, rest, sink);
                }
            }
            Direction::Down => self.process_down(data, sink),
        }
    }

    /// The transport lost `len` bytes in `dir`.
    pub fn gap(&mut self, dir: Direction, len: u64, sink: &mut impl EventSink) {
        self.bytes[idx(dir)] += len;
        if self.speculation.is_some() {
            return self.speculate(dir, None, len, sink);
        }
        self.gap_inner(dir, len, sink);
    }

    /// [`Session::gap`], bytes counted.
    fn gap_inner(&mut self, dir: Direction, len: u64, sink: &mut impl EventSink) {
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
        self.gap_unsettled = true;
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
        if let Some(spec) = self.speculation.take() {
            self.settle(spec, true, sink);
        }
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
        match state {
            // Whatever ended the chunk (its last octet, 421, an error), it is over.
            State::BdatTransmission => self.bdat_remaining = 0,
            // The client did not start TLS after all: commands in clear again.
            State::Tls => self.tls = false,
            _ => {}
        }
    }

    /// `enter` hooks.
    fn enter(&mut self, state: State, sink: &mut impl EventSink) {
        match state {
            State::Tls => {
                self.tls = true;
                self.tls_checked = false;
                self.pending.clear();
                // The handoff is reported as Suricata and Zeek do: the open
                // transaction (tls: true), or one with just the HELO name.
                let open = !self.txs.is_empty();
                self.abort_all(sink);
                if !open {
                    let id = self.new_tx_quiet();
                    if let Some(mut tx) = self.txs.pop_back().filter(|t| t.id == id) {
                        tx.decide(TransactionState::Aborted, None);
                        sink.event(Event::Transaction(tx.into_transaction(true)));
                    }
                }
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
}
