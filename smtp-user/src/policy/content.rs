//! Streaming body matchers: keywords (Aho-Corasick DFA) and regexes (lazy
//! DFA), one automaton of each kind for the whole rule set, stepped byte by
//! byte over `DecodedBody` chunks with the automaton state carried from one
//! chunk to the next. A match spanning any number of chunk boundaries is
//! found exactly as in one contiguous buffer, and the content is never
//! buffered. Memory per session: one state id per automaton, at most
//! `longest keyword - 1` bytes of tail (only when case-sensitive and
//! case-insensitive keywords are mixed, to confirm case-sensitive hits of
//! the case-insensitive automaton), and the lazy DFA's transition cache,
//! created at the session's first body byte and bounded by
//! [`REGEX_CACHE_BYTES`] (states are recomputed when it fills; matching
//! stays exact). Per chunk nothing is allocated once the hit buffer has grown.
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

/// A body keyword as the rules give it.
#[derive(Debug, Clone)]
pub struct KeywordSpec {
    pub text: String,
    /// ASCII case-insensitive (`body_nocase = true`).
    pub nocase: bool,
    pub owner: Owner,
}

/// The bytes an automaton's start state loops on: while nothing is in
/// progress, those bytes cannot begin a match and are skipped without
/// stepping the automaton (with `memchr` when at most three bytes leave the
/// start state, else with a table), which is exact and much cheaper than a
/// transition per byte.
#[derive(Debug, Clone)]
pub struct StartSkip {
    /// `stays[b]`: the start state goes to itself on `b`.
    stays: [bool; 256],
    /// The bytes leaving the start state, when there are at most three.
    leave: Option<Vec<u8>>,
}

/// Skipping is used when at most this many byte values leave the start
/// state: with more (many patterns, look-arounds), most bytes leave it at
/// once and the extra check per byte costs more than the skips save.
const MAX_LEAVE_BYTES: usize = 16;

impl StartSkip {
    /// `None` when more than [`MAX_LEAVE_BYTES`] byte values leave the start.
    fn new(stays: [bool; 256]) -> Option<StartSkip> {
        let leave: Vec<u8> = (0..=255u8).filter(|&b| !stays[usize::from(b)]).collect();
        (leave.len() <= MAX_LEAVE_BYTES).then(|| StartSkip {
            stays,
            leave: (leave.len() <= 3).then_some(leave),
        })
    }

    /// Index of the first byte of `data[from..]` that leaves the start
    /// state (`data.len()` when none does).
    #[inline(always)]
    fn next(&self, data: &[u8], mut from: usize) -> usize {
        if let Some(leave) = self.leave.as_deref() {
            let rest = data.get(from..).unwrap_or(&[]);
            let off = match leave {
                [a] => memchr::memchr(*a, rest),
                [a, b] => memchr::memchr2(*a, *b, rest),
                [a, b, c] => memchr::memchr3(*a, *b, *c, rest),
                _ => None,
            };
            return off.map_or(data.len(), |o| from + o);
        }
        // Inline, no call per byte: most bytes leave at once when many do.
        while let Some(&b) = data.get(from) {
            if !self.stays[usize::from(b)] {
                break;
            }
            from += 1;
        }
        from
    }
}

/// All keywords of the rule set in one Aho-Corasick DFA. When some
/// keywords are case-insensitive the automaton is built case-insensitive
/// and hits of case-sensitive keywords are confirmed against the exact
/// bytes (the last `longest - 1` bytes of earlier chunks are kept for
/// that): one pass over the content whatever the mix.
#[derive(Debug)]
pub struct Keywords {
    dfa: aho_corasick::dfa::DFA,
    start: StateID,
    /// Indexed by pattern id.
    pub owners: Vec<Owner>,
    /// Indexed by pattern id: the keyword as written.
    pub texts: Vec<String>,
    /// Indexed by pattern id: a hit must be confirmed case-sensitively.
    verify: Vec<bool>,
    /// Some hit needs confirming (the automaton is case-insensitive and
    /// some keyword is not).
    verify_any: bool,
    /// Longest keyword, in bytes.
    longest: usize,
    /// Bytes the start state loops on, when few bytes leave it.
    skip: Option<StartSkip>,
}

/// Keyword scan state of one message.
#[derive(Debug, Clone, Default)]
pub struct KeywordState {
    sid: Option<StateID>,
    /// Last bytes of the previous chunks, at most `longest - 1` (kept only
    /// when hits need confirming).
    tail: Vec<u8>,
}

impl Keywords {
    pub fn build(patterns: Vec<KeywordSpec>) -> Result<Keywords, String> {
        let nocase = patterns.iter().any(|p| p.nocase);
        let texts: Vec<String> = patterns.iter().map(|p| p.text.clone()).collect();
        let verify: Vec<bool> = patterns.iter().map(|p| nocase && !p.nocase).collect();
        let owners = patterns.iter().map(|p| p.owner).collect();
        let dfa = aho_corasick::dfa::DFA::builder()
            .ascii_case_insensitive(nocase)
            .match_kind(AcMatchKind::Standard)
            .build(&texts)
            .map_err(|e| format!("keyword automaton: {e}"))?;
        let start = dfa
            .start_state(AcAnchored::No)
            .map_err(|e| format!("keyword automaton: {e}"))?;
        let mut stays = [false; 256];
        for (b, stay) in stays.iter_mut().enumerate() {
            *stay = dfa.next_state(AcAnchored::No, start, b as u8) == start;
        }
        Ok(Keywords {
            skip: StartSkip::new(stays),
            dfa,
            start,
            owners,
            longest: texts.iter().map(String::len).max().unwrap_or(0),
            texts,
            verify_any: verify.iter().any(|&v| v),
            verify,
        })
    }

    /// The bytes ending at `data[end]` (inclusive) equal keyword `p` exactly.
    fn confirm(&self, p: usize, tail: &[u8], data: &[u8], end: usize) -> bool {
        let Some(pat) = self.texts.get(p).map(String::as_bytes) else {
            return false;
        };
        let in_data = pat.len().min(end + 1);
        let from_tail = pat.len() - in_data;
        let (Some(head), Some(rest)) = (
            tail.get(tail.len().saturating_sub(from_tail)..),
            data.get(end + 1 - in_data..=end),
        ) else {
            return false;
        };
        head.len() == from_tail
            && pat.get(..from_tail) == Some(head)
            && pat.get(from_tail..) == Some(rest)
    }

    /// Steps over `data`; calls `hit(pattern)` for every keyword ending in it.
    #[inline]
    pub fn scan(&self, st: &mut KeywordState, data: &[u8], mut hit: impl FnMut(usize)) {
        let dfa = &self.dfa;
        let mut sid = st.sid.unwrap_or(self.start);
        let mut i = 0;
        while i < data.len() {
            if sid == self.start {
                if let Some(skip) = &self.skip {
                    i = skip.next(data, i);
                }
            }
            let Some(&b) = data.get(i) else {
                break;
            };
            sid = dfa.next_state(AcAnchored::No, sid, b);
            if dfa.is_special(sid) && dfa.is_match(sid) {
                for m in 0..dfa.match_len(sid) {
                    let p = dfa.match_pattern(sid, m).as_usize();
                    if !self.verify.get(p).copied().unwrap_or(false)
                        || self.confirm(p, &st.tail, data, i)
                    {
                        hit(p);
                    }
                }
            }
            i += 1;
        }
        st.sid = Some(sid);
        if self.verify_any {
            let keep = self.longest.saturating_sub(1);
            if data.len() >= keep {
                st.tail.clear();
                st.tail
                    .extend_from_slice(data.get(data.len() - keep..).unwrap_or(&[]));
            } else {
                st.tail.extend_from_slice(data);
                let excess = st.tail.len().saturating_sub(keep);
                st.tail.drain(..excess);
            }
        }
    }
}

/// All body regexes of the rule set in one lazy DFA (every pattern reported).
#[derive(Debug)]
pub struct Regexes {
    dfa: DFA,
    /// Bytes the start state loops on (`None`: many bytes leave it, or it
    /// could not be computed).
    skip: Option<StartSkip>,
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
    regex::bytes::Regex::new(pattern).map_err(|e| regex_reason(pattern, &e))?;
    builder()
        .build(pattern)
        .map(|_| ())
        .map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

/// One-line reason for a regex error (the `regex` crate's syntax errors
/// span several lines with a caret diagram; their last line says why).
pub fn regex_reason(pattern: &str, e: &regex::Error) -> String {
    let why = match e {
        regex::Error::Syntax(s) => s
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(s)
            .to_string(),
        other => other.to_string(),
    };
    format!("invalid regex {pattern:?}: {why}")
}

impl Regexes {
    pub fn build(patterns: Vec<(String, Owner)>) -> Result<Regexes, String> {
        let texts: Vec<String> = patterns.iter().map(|(p, _)| p.clone()).collect();
        let owners = patterns.into_iter().map(|(_, o)| o).collect();
        let dfa = builder()
            .build_many(&texts)
            .map_err(|e| format!("regex automaton: {e}"))?;
        let skip = start_skip(&dfa);
        Ok(Regexes {
            dfa,
            skip,
            owners,
            texts,
        })
    }

    fn start(&self, cache: &mut Cache) -> Option<LazyStateID> {
        start_state(&self.dfa, cache)
    }
}

fn start_state(dfa: &DFA, cache: &mut Cache) -> Option<LazyStateID> {
    dfa.start_state(cache, &start::Config::new().anchored(Anchored::No))
        .ok()
}

/// The start state's self-loop bytes, computed once with a cache of its own
/// (which bytes loop is a property of the automaton, not of a cache).
fn start_skip(dfa: &DFA) -> Option<StartSkip> {
    let mut cache = dfa.create_cache();
    let start = start_state(dfa, &mut cache)?;
    let mut stays = [false; 256];
    for (b, stay) in stays.iter_mut().enumerate() {
        let next = dfa.next_state(&mut cache, start, b as u8).ok()?;
        // Re-read the start: a cache clear would have renumbered it.
        *stay = Some(next) == start_state(dfa, &mut cache);
    }
    StartSkip::new(stays)
}

/// Per-session scanning state for one message.
#[derive(Debug, Default)]
pub struct ScanState {
    kw: KeywordState,
    /// Lazy DFA cache (created at the message's first body byte, freed at its end).
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
    pub regexes: Option<Regexes>,
}

/// Which automaton a hit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Keyword,
    Regex,
}

impl Matchers {
    pub fn is_empty(&self) -> bool {
        self.keywords.is_none() && self.regexes.is_none()
    }

    /// Owner and text of a hit.
    pub fn pattern(&self, src: Source, id: usize) -> Option<(Owner, &str)> {
        let (owners, texts) = match src {
            Source::Keyword => self.keywords.as_ref().map(|k| (&k.owners, &k.texts))?,
            Source::Regex => self.regexes.as_ref().map(|r| (&r.owners, &r.texts))?,
        };
        Some((*owners.get(id)?, texts.get(id)?.as_str()))
    }

    /// Scans one chunk of decoded body; `hit` receives every pattern match.
    pub fn scan(&self, st: &mut ScanState, data: &[u8], mut hit: impl FnMut(Source, usize)) {
        if let Some(k) = &self.keywords {
            k.scan(&mut st.kw, data, |p| hit(Source::Keyword, p));
        }
        if let Some(r) = &self.regexes {
            if st.rx_failed {
                return;
            }
            let cache = st.cache.get_or_insert_with(|| r.dfa.create_cache());
            let Some(mut start) = r.start(cache) else {
                st.rx_failed = true;
                st.regex_failures += 1;
                return;
            };
            // A full cache is cleared inside `next_state`, which renumbers
            // states: `start` is looked up again after each clear.
            let mut clears = cache.clear_count();
            let mut sid = st.rx.unwrap_or(start);
            let mut i = 0;
            while i < data.len() {
                if sid == start {
                    if let Some(skip) = &r.skip {
                        i = skip.next(data, i);
                    }
                }
                let Some(&b) = data.get(i) else {
                    break;
                };
                i += 1;
                sid = match r.dfa.next_state(cache, sid, b) {
                    Ok(s) => s,
                    Err(_) => {
                        st.rx_failed = true;
                        st.regex_failures += 1;
                        return;
                    }
                };
                if cache.clear_count() != clears {
                    clears = cache.clear_count();
                    match r.start(cache) {
                        Some(s) => start = s,
                        None => {
                            st.rx_failed = true;
                            st.regex_failures += 1;
                            return;
                        }
                    }
                }
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
    /// Forget the message in progress. The regex cache goes too: only
    /// sessions transferring a message hold one, so memory follows the
    /// messages in flight, not the sessions open.
    pub fn reset_message(&mut self) {
        self.kw.sid = None;
        self.kw.tail.clear();
        self.rx = None;
        self.rx_failed = false;
        self.cache = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner { rule: 0, cond: 0 }
    }

    fn matchers(kws: &[(&str, bool)], res: &[&str]) -> Matchers {
        let specs = kws
            .iter()
            .map(|&(t, nocase)| KeywordSpec {
                text: t.to_string(),
                nocase,
                owner: owner(),
            })
            .collect();
        let rx: Vec<(String, Owner)> = res.iter().map(|r| (r.to_string(), owner())).collect();
        Matchers {
            keywords: Some(Keywords::build(specs).expect("keywords")),
            regexes: (!rx.is_empty()).then(|| Regexes::build(rx).expect("regexes")),
        }
    }

    /// Hits (source, pattern) of `chunks` as one message.
    fn hits(m: &Matchers, chunks: &[&[u8]]) -> Vec<(Source, usize)> {
        let mut st = ScanState::default();
        let mut out = Vec::new();
        for c in chunks {
            m.scan(&mut st, c, |s, p| out.push((s, p)));
        }
        m.finish(&mut st, |s, p| out.push((s, p)));
        out
    }

    #[test]
    fn every_split_finds_the_same_hits() {
        let m = matchers(&[("Abc", false), ("bcd", true)], &["c[0-9]+d"]);
        let text = b"xxABCD abcd Abcd c123d";
        let whole = hits(&m, &[text]);
        assert_eq!(
            whole,
            vec![
                (Source::Keyword, 1),
                (Source::Keyword, 1),
                (Source::Keyword, 0),
                (Source::Keyword, 1),
                (Source::Regex, 0),
            ]
        );
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(
                    hits(&m, &[&text[..i], &text[i..j], &text[j..]]),
                    whole,
                    "{i} {j}"
                );
            }
        }
    }

    #[test]
    fn state_resets_between_messages() {
        let m = matchers(&[("Secret", false), ("x", true)], &[]);
        let mut st = ScanState::default();
        let mut out = Vec::new();
        m.scan(&mut st, b"Sec", |s, p| out.push((s, p)));
        m.finish(&mut st, |s, p| out.push((s, p)));
        m.scan(&mut st, b"ret", |s, p| out.push((s, p)));
        assert!(out.is_empty(), "a keyword does not span two messages");
    }
}
