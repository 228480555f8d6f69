//! Streaming body matchers: keywords (Aho-Corasick DFA) and regexes (lazy
//! DFA), each one automaton for the whole rule set, stepped byte by byte
//! over `DecodedBody` chunks with the automaton state carried from one
//! chunk to the next. A match spanning any number of chunk boundaries is
//! found exactly as in one contiguous buffer, and no content is buffered:
//! the per-message state is one state id per automaton. The lazy DFA's
//! transition cache is per session, bounded by [`REGEX_CACHE_BYTES`]
//! (states are recomputed when it fills; matching stays exact).
//!
//! Regexes follow `regex` syntax. `\b` (Unicode word boundary) is
//! supported on ASCII text; on a non-ASCII byte the lazy DFA cannot decide
//! it and the scan restarts at the next byte (a match straddling that byte
//! may be missed; counted in [`ScanState::regex_restarts`]). Use `(?-u:\b)`
//! for an exact ASCII word boundary.

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::{Anchored as AcAnchored, MatchKind as AcMatchKind};
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};

/// Upper bound of one session's lazy-DFA transition cache.
pub const REGEX_CACHE_BYTES: usize = 1 << 20;

/// Who owns a pattern: rule index and condition index within the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub rule: usize,
    pub cond: usize,
}

/// One keyword automaton (all case-sensitive or all ASCII case-insensitive keywords).
#[derive(Debug)]
pub struct Keywords {
    dfa: aho_corasick::dfa::DFA,
    start: StateID,
    /// Indexed by pattern id.
    pub owners: Vec<Owner>,
    /// Indexed by pattern id: the keyword as written.
    pub texts: Vec<String>,
}

impl Keywords {
    pub fn build(patterns: Vec<(String, Owner)>, nocase: bool) -> Result<Keywords, String> {
        let texts: Vec<String> = patterns.iter().map(|(p, _)| p.clone()).collect();
        let owners = patterns.into_iter().map(|(_, o)| o).collect();
        let dfa = aho_corasick::dfa::DFA::builder()
            .ascii_case_insensitive(nocase)
            .match_kind(AcMatchKind::Standard)
            .build(&texts)
            .map_err(|e| format!("keyword automaton: {e}"))?;
        let start = dfa
            .start_state(AcAnchored::No)
            .map_err(|e| format!("keyword automaton: {e}"))?;
        Ok(Keywords {
            dfa,
            start,
            owners,
            texts,
        })
    }

    pub fn start(&self) -> StateID {
        self.start
    }

    /// Steps over `data` from `*state`; calls `hit(pattern)` for every keyword ending in it.
    #[inline]
    pub fn scan(&self, state: &mut StateID, data: &[u8], mut hit: impl FnMut(usize)) {
        let dfa = &self.dfa;
        let mut sid = *state;
        for &b in data {
            sid = dfa.next_state(AcAnchored::No, sid, b);
            if dfa.is_special(sid) && dfa.is_match(sid) {
                for i in 0..dfa.match_len(sid) {
                    hit(dfa.match_pattern(sid, i).as_usize());
                }
            }
        }
        *state = sid;
    }
}

/// All body regexes of the rule set in one lazy DFA (every pattern reported).
#[derive(Debug)]
pub struct Regexes {
    dfa: DFA,
    /// Indexed by pattern id.
    pub owners: Vec<Owner>,
    /// Indexed by pattern id: the regex as written.
    pub texts: Vec<String>,
}

fn builder() -> regex_automata::hybrid::dfa::Builder {
    let mut b = DFA::builder();
    b.configure(
        DFA::config()
            .match_kind(MatchKind::All)
            .unicode_word_boundary(true)
            .cache_capacity(REGEX_CACHE_BYTES),
    );
    b
}

/// Checks one regex; the error text is the reason shown to the user.
pub fn check_regex(pattern: &str) -> Result<(), String> {
    builder()
        .build(pattern)
        .map(|_| ())
        .map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

impl Regexes {
    pub fn build(patterns: Vec<(String, Owner)>) -> Result<Regexes, String> {
        let texts: Vec<String> = patterns.iter().map(|(p, _)| p.clone()).collect();
        let owners = patterns.into_iter().map(|(_, o)| o).collect();
        let dfa = builder()
            .build_many(&texts)
            .map_err(|e| format!("regex automaton: {e}"))?;
        Ok(Regexes { dfa, owners, texts })
    }

    fn start(&self, cache: &mut Cache) -> Option<LazyStateID> {
        self.dfa
            .start_state(cache, &start::Config::new().anchored(Anchored::No))
            .ok()
    }
}

/// Per-session scanning state for one message.
#[derive(Debug, Default)]
pub struct ScanState {
    /// Case-sensitive keyword automaton state.
    kw: Option<StateID>,
    /// Case-insensitive keyword automaton state.
    kw_nocase: Option<StateID>,
    /// Lazy DFA cache (created at the first body byte of the session).
    cache: Option<Cache>,
    /// Regex DFA state; `None` before the message's first body byte or after giving up.
    rx: Option<LazyStateID>,
    /// The regex scan of this message stopped (cache failure): counted.
    rx_failed: bool,
    /// Restarts after a byte the lazy DFA could not decide (`\b` on non-ASCII).
    pub regex_restarts: u64,
    /// Messages whose regex scan stopped early (lazy DFA cache failure).
    pub regex_failures: u64,
}

/// The automata of a rule set.
#[derive(Debug, Default)]
pub struct Matchers {
    pub keywords: Option<Keywords>,
    pub keywords_nocase: Option<Keywords>,
    pub regexes: Option<Regexes>,
}

/// Which automaton a hit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Keyword,
    KeywordNocase,
    Regex,
}

impl Matchers {
    pub fn is_empty(&self) -> bool {
        self.keywords.is_none() && self.keywords_nocase.is_none() && self.regexes.is_none()
    }

    /// Owner and text of a hit.
    pub fn pattern(&self, src: Source, id: usize) -> Option<(Owner, &str)> {
        let (owners, texts) = match src {
            Source::Keyword => self.keywords.as_ref().map(|k| (&k.owners, &k.texts))?,
            Source::KeywordNocase => self
                .keywords_nocase
                .as_ref()
                .map(|k| (&k.owners, &k.texts))?,
            Source::Regex => self.regexes.as_ref().map(|r| (&r.owners, &r.texts))?,
        };
        Some((*owners.get(id)?, texts.get(id)?.as_str()))
    }

    /// Scans one chunk of decoded body; `hit` receives every pattern match.
    pub fn scan(&self, st: &mut ScanState, data: &[u8], mut hit: impl FnMut(Source, usize)) {
        if let Some(k) = &self.keywords {
            let s = st.kw.get_or_insert(k.start());
            k.scan(s, data, |p| hit(Source::Keyword, p));
        }
        if let Some(k) = &self.keywords_nocase {
            let s = st.kw_nocase.get_or_insert(k.start());
            k.scan(s, data, |p| hit(Source::KeywordNocase, p));
        }
        if let Some(r) = &self.regexes {
            if st.rx_failed {
                return;
            }
            let cache = st.cache.get_or_insert_with(|| r.dfa.create_cache());
            let Some(start) = r.start(cache) else {
                st.rx_failed = true;
                st.regex_failures += 1;
                return;
            };
            let mut sid = st.rx.unwrap_or(start);
            for &b in data {
                sid = match r.dfa.next_state(cache, sid, b) {
                    Ok(s) => s,
                    Err(_) => {
                        st.rx_failed = true;
                        st.regex_failures += 1;
                        return;
                    }
                };
                if sid.is_tagged() {
                    if sid.is_match() {
                        for i in 0..r.dfa.match_len(cache, sid) {
                            hit(Source::Regex, r.dfa.match_pattern(cache, sid, i).as_usize());
                        }
                    } else if sid.is_quit() {
                        st.regex_restarts += 1;
                        sid = start;
                    }
                }
            }
            st.rx = Some(sid);
        }
    }

    /// End of the message: reports regex matches ending at the last byte
    /// and resets the per-message state.
    pub fn finish(&self, st: &mut ScanState, mut hit: impl FnMut(Source, usize)) {
        if let (Some(r), Some(sid), Some(cache)) = (&self.regexes, st.rx, st.cache.as_mut()) {
            if !st.rx_failed {
                if let Ok(eoi) = r.dfa.next_eoi_state(cache, sid) {
                    if eoi.is_match() {
                        for i in 0..r.dfa.match_len(cache, eoi) {
                            hit(Source::Regex, r.dfa.match_pattern(cache, eoi, i).as_usize());
                        }
                    }
                }
            }
        }
        st.reset_message();
    }
}

impl ScanState {
    /// Forget the message in progress (keeps the regex cache).
    pub fn reset_message(&mut self) {
        self.kw = None;
        self.kw_nocase = None;
        self.rx = None;
        self.rx_failed = false;
    }
}
