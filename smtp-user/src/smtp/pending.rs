//! The commands awaiting their reply, oldest first (RFC 2920 pipelining):
//! each reply answers the oldest entry, or — after server bytes were lost
//! — the entry its code names (see [`PendingQueue::position_named`]).
//!
//! An entry also says what to undo if the server refuses the command: a
//! command answered 4xx/5xx changes nothing (RFC 5321 §4.1.4), so the
//! session restores the transaction and HELO it had before the command.

use std::collections::VecDeque;

use super::events::Verb;

/// What the reply to a pending command will be matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Awaiting {
    /// A command line.
    Command(Verb),
    /// The end of DATA content.
    EndOfData,
    /// A DATA sent while the server was unheard: its content started at once.
    DataStarted,
    /// A BDAT chunk (`last`: BDAT … LAST).
    Bdat { last: bool },
    /// `count` commands sent while the queue was full: not kept, but
    /// their replies are counted off so later replies stay aligned.
    Unqueued { count: u64 },
}

/// What a refused command must not have changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Undo {
    #[default]
    Nothing,
    /// MAIL: the transaction that was open when it was sent (a refused
    /// nested MAIL leaves it open; later RCPTs belong to it).
    Mail { open_before: Option<u32> },
    /// HELO/EHLO/RSET: the HELO name before it, and the argument it sets
    /// (`None` for RSET). The transaction it would end is [`Pending::tx`].
    Helo {
        before: Option<String>,
        arg: Option<String>,
    },
}

/// A command awaiting its reply.
#[derive(Debug, Clone)]
pub struct Pending {
    pub what: Awaiting,
    /// Transaction the command belongs to; it holds one `refs` count for this entry.
    pub tx: Option<u32>,
    /// Index into that transaction's `rcpt_to` (RCPT only).
    pub rcpt: Option<usize>,
    pub undo: Undo,
    /// Its envelope change was already reported (taken as accepted because
    /// the server was unheard when it was sent).
    pub announced: bool,
    /// Sent while other commands awaited their reply (pipelined behind
    /// them): a 503 to it may just follow from their refusal.
    pub behind: bool,
}

impl Pending {
    pub fn new(what: Awaiting, tx: Option<u32>) -> Pending {
        Pending {
            what,
            tx,
            rcpt: None,
            undo: Undo::Nothing,
            announced: false,
            behind: false,
        }
    }

    pub fn verb(&self) -> Verb {
        match &self.what {
            Awaiting::Command(v) => v.clone(),
            Awaiting::EndOfData | Awaiting::DataStarted => Verb::Data,
            Awaiting::Bdat { .. } => Verb::Bdat,
            Awaiting::Unqueued { .. } => Verb::Unknown(String::new()),
        }
    }

    /// Commands after which client bytes cannot be interpreted before the reply.
    pub fn blocks_client(&self) -> bool {
        matches!(
            self.what,
            Awaiting::Command(Verb::Data | Verb::Auth | Verb::StartTls | Verb::Quit)
        )
    }
}

/// The commands awaiting replies, oldest first. When it is full, further
/// commands are counted in one [`Awaiting::Unqueued`] entry (memory stays
/// bounded, replies stay aligned).
#[derive(Debug, Clone)]
pub struct PendingQueue {
    /// At most `limit + 1` entries (the last may be `Unqueued`).
    entries: VecDeque<Pending>,
    /// The first `lost` entries were queued when server bytes were lost:
    /// their replies may be gone. Invariant: `lost <= entries.len()`.
    lost: usize,
    limit: usize,
}

impl PendingQueue {
    pub fn new(limit: usize) -> PendingQueue {
        PendingQueue {
            entries: VecDeque::new(),
            lost: 0,
            limit,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// No more commands are kept (later ones are only counted).
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.limit
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn front(&self) -> Option<&Pending> {
        self.entries.front()
    }

    pub fn back(&self) -> Option<&Pending> {
        self.entries.back()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Pending> {
        self.entries.iter_mut()
    }

    /// Queues a command; when the queue is full it is only counted (and
    /// `false` is returned: nothing refers to its transaction).
    pub fn push(&mut self, p: Pending) -> bool {
        if let Some(Awaiting::Unqueued { count }) = self.entries.back_mut().map(|b| &mut b.what) {
            *count = count.saturating_add(1);
            return false;
        }
        if self.is_full() {
            self.entries
                .push_back(Pending::new(Awaiting::Unqueued { count: 1 }, None));
            return false;
        }
        self.entries.push_back(p);
        true
    }

    /// Takes the oldest entry (keeps `lost` in step); an unqueued command
    /// comes out as a command of unknown verb.
    pub fn pop(&mut self) -> Option<Pending> {
        if let Some(front) = self.entries.front_mut() {
            if let Awaiting::Unqueued { count } = &mut front.what {
                if *count > 1 {
                    *count -= 1;
                    return Some(Pending::new(
                        Awaiting::Command(Verb::Unknown(String::new())),
                        None,
                    ));
                }
            }
        }
        let p = self.entries.pop_front()?;
        self.lost = self.lost.saturating_sub(1);
        Some(match p.what {
            Awaiting::Unqueued { .. } => {
                Pending::new(Awaiting::Command(Verb::Unknown(String::new())), None)
            }
            _ => p,
        })
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.lost = 0;
    }

    /// A MAIL or RCPT awaits its reply and was not taken as accepted.
    pub fn envelope_undecided(&self) -> bool {
        self.entries
            .iter()
            .any(|p| !p.announced && matches!(p.what, Awaiting::Command(Verb::Mail | Verb::Rcpt)))
    }

    /// Server bytes were lost: every queued command may have lost its reply.
    pub fn mark_all_lost(&mut self) {
        self.lost = self.entries.len();
    }

    /// Entries whose reply may have been lost.
    pub fn lost(&self) -> usize {
        self.lost
    }

    /// Every queued command may have lost its reply (and there is one).
    pub fn all_lost(&self) -> bool {
        self.lost > 0 && self.lost == self.entries.len()
    }

    /// The position of the entry a reply names by its code (354 DATA, 221
    /// QUIT, 334 AUTH, 220 STARTTLS): only that command can be answered so,
    /// and the server answers in order, so the replies of the entries
    /// before it were lost. `None` if no entry is named (or the oldest is).
    pub fn position_named(&self, code: u16) -> Option<usize> {
        let verb = match code {
            354 => Verb::Data,
            221 => Verb::Quit,
            334 => Verb::Auth,
            220 => Verb::StartTls,
            _ => return None,
        };
        let what = Awaiting::Command(verb);
        self.entries.iter().position(|p| p.what == what)
    }
}
