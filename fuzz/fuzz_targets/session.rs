//! Feeds arbitrary interleaved byte streams (and gaps) to one SMTP session.
//!
//! Input format: a sequence of records `header, bytes…` where the header's
//! bit 0 is the direction (0 = up, 1 = down), bit 1 marks a gap of
//! `header >> 2` bytes, otherwise `(header >> 2) + 1` bytes follow.
//! An input starting with `!` runs with tiny limits so that every bound
//! (line length, hold buffer, pending queue, open transactions, reply lines)
//! is reached by short inputs; one starting with `~` is a session joined
//! midstream. The seeds (`fuzz/seeds`) include sessions that go on after
//! the `error` transition (resynchronisation) and bare-LF dot lines
//! (smuggling) with the server answering either way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;

use smtp_user::smtp::{Event, EventSink, Session, SessionConfig};
use smtp_user::Direction;

/// Checks event invariants without keeping events (bounded memory).
struct Check {
    events: u64,
    /// Ids of the transactions reported: each at most once.
    reported: HashSet<u32>,
}

impl EventSink for Check {
    fn event(&mut self, event: Event<'_>) {
        self.events += 1;
        match &event {
            Event::Anomaly(a) => assert!(!a.detail.is_empty()),
            Event::Transaction(t) => assert!(self.reported.insert(t.id), "tx {} twice", t.id),
            // An envelope change never concerns a transaction already reported.
            Event::Envelope(e) => {
                if let Some(id) = e.tx_id {
                    assert!(!self.reported.contains(&id), "envelope of reported tx {id}");
                }
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (mut s, mut rest) = match data.split_first() {
        Some((b'!', tail)) => {
            let tiny = SessionConfig {
                line_limit: 48,
                hold_limit: 64,
                max_pending: 6,
                max_open_transactions: 2,
                max_reply_lines: 3,
                max_bdat_chunk: 100,
                ..SessionConfig::default()
            };
            (Session::with_config(tiny), tail)
        }
        Some((b'~', tail)) => (Session::midstream(), tail),
        _ => (Session::new(), data),
    };
    let mut sink = Check {
        events: 0,
        reported: HashSet::new(),
    };
    while let Some((&h, tail)) = rest.split_first() {
        let dir = if h & 1 == 0 {
            Direction::Up
        } else {
            Direction::Down
        };
        if h & 2 != 0 {
            s.gap(dir, u64::from(h >> 2), &mut sink);
            rest = tail;
            continue;
        }
        let n = (usize::from(h >> 2) + 1).min(tail.len());
        s.feed(dir, &tail[..n], &mut sink);
        rest = &tail[n..];
    }
    s.finish(&mut sink);
    assert!(s.bytes(Direction::Up) >= s.unparsed_bytes(Direction::Up));
    assert!(s.bytes(Direction::Down) >= s.unparsed_bytes(Direction::Down));
});
