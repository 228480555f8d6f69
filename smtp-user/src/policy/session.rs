//! [`PolicySession`]: evaluates a [`RuleSet`] on one flow's dissector events.
//!
//! Each rule keeps a bit mask of its satisfied conditions. An event sets
//! (or, for HELO, recomputes) the bits of the conditions it concerns and
//! a rule fires when its mask becomes complete: at the moment the last
//! condition becomes true. A rule with transaction conditions fires at
//! most once per transaction; its transaction bits and its "fired" flag
//! reset on MAIL, RSET and HELO/EHLO. Other rules fire at most once per
//! session.
//!
//! Content conditions are decided while the message streams and at the
//! latest at its `ContentPart::End` event (regexes matching at the very
//! end are reported then). Memory per session: a few strings (HELO, MAIL
//! FROM, up to [`MAX_CONTEXT_RCPTS`] recipients and
//! [`MAX_CONTEXT_ATTACHMENTS`] attachment names for alert context), one
//! `u32` mask per rule, one pattern-seen bit per body pattern and the
//! regex cache (see [`super::content`]).

use std::net::SocketAddr;
use std::sync::Arc;

use super::content::{Matchers, ScanState, Source};
use super::matchers::{bare_address, domain_of};
use super::ruleset::{Cond, HeaderTest, RuleSet};
use super::{Alert, AlertContext};
use crate::smtp::{
    Anomaly, ContentPart, Envelope, EnvelopeChange, Event, FileInfo, Header, MimePart,
};

/// Recipients kept for the alert context (the count is always exact).
pub const MAX_CONTEXT_RCPTS: usize = 32;
/// Attachment names kept for the alert context.
pub const MAX_CONTEXT_ATTACHMENTS: usize = 16;
/// Longest `matched` description, in bytes.
pub const MAX_MATCHED: usize = 512;

/// Per-rule evaluation state.
#[derive(Debug, Clone, Default)]
struct RuleState {
    /// Bit i set = condition i holds.
    sat: u32,
    /// Fired in this transaction (or session, for session rules).
    fired: bool,
    /// What made each condition true (index = condition), for `Alert::matched`.
    why: Vec<Option<String>>,
}

/// Evaluates a rule set on one flow.
#[derive(Debug)]
pub struct PolicySession {
    rules: Arc<RuleSet>,
    client: SocketAddr,
    server: SocketAddr,
    state: Vec<RuleState>,
    /// Transaction in progress (MAIL seen), as the dissector numbers them.
    tx: Option<u32>,
    /// Id the next MAIL opens.
    next_tx: u32,
    helo: Option<String>,
    mail_from: Option<String>,
    rcpts: Vec<String>,
    rcpt_count: u32,
    /// Raw message bytes of the transaction.
    size: u64,
    /// Content (or header/MIME events) of the current transaction was seen.
    content_seen: bool,
    subject: Option<String>,
    attachments: Vec<String>,
    /// Some rule with body conditions admits this client.
    scan_body: bool,
    scan: ScanState,
    /// Pattern hits of the current chunk (reused buffer).
    hits: Vec<(Source, usize)>,
    /// The first event was seen (rules holding from the start, e.g. only
    /// `client_ip`, fire on it).
    started: bool,
}

impl RuleSet {
    /// Per-flow evaluator.
    pub fn session(self: &Arc<Self>, client: SocketAddr, server: SocketAddr) -> PolicySession {
        PolicySession::new(Arc::clone(self), client, server)
    }
}

impl PolicySession {
    pub(crate) fn new(rules: Arc<RuleSet>, client: SocketAddr, server: SocketAddr) -> Self {
        let ip = client.ip();
        let mut state: Vec<RuleState> = rules
            .rules
            .iter()
            .map(|r| RuleState {
                sat: 0,
                fired: false,
                why: vec![None; r.conds.len()],
            })
            .collect();
        for (r, st) in rules.rules.iter().zip(state.iter_mut()) {
            for (i, c) in r.conds.iter().enumerate() {
                if let Cond::ClientIp(nets) = c {
                    if let Some(n) = nets.iter().find(|n| n.contains(ip)) {
                        st.sat |= 1 << i;
                        st.why[i] = Some(format!("client_ip {ip} in {n}"));
                    }
                }
            }
        }
        let scan_body = !rules.matchers.is_empty()
            && rules.rules.iter().any(|r| {
                r.admits(ip)
                    && r.conds
                        .iter()
                        .any(|c| matches!(c, Cond::BodyKeyword | Cond::BodyRegex))
            });
        PolicySession {
            rules,
            client,
            server,
            state,
            tx: None,
            next_tx: 0,
            helo: None,
            mail_from: None,
            rcpts: Vec::new(),
            rcpt_count: 0,
            size: 0,
            content_seen: false,
            subject: None,
            attachments: Vec::new(),
            scan_body,
            scan: ScanState::default(),
            hits: Vec::new(),
            started: false,
        }
    }

    /// Regex scan counters (restarts after undecidable bytes, given-up messages).
    pub fn regex_counters(&self) -> (u64, u64) {
        (self.scan.regex_restarts, self.scan.regex_failures)
    }

    /// Every dissector event of the flow, in order; pushes the alerts that fire now.
    pub fn event(&mut self, ev: &Event<'_>, out: &mut Vec<Alert>) {
        if !self.started {
            self.started = true;
            self.check_all(out);
        }
        match ev {
            Event::Envelope(e) => self.envelope(e, out),
            Event::MailContent(m) => {
                self.sync_tx(m.tx_id);
                match m.part {
                    ContentPart::Raw => {
                        self.size = self.size.saturating_add(m.data.len() as u64);
                        self.size_check(self.size, out);
                    }
                    ContentPart::DecodedBody => {
                        if self.scan_body {
                            self.body(m.data, out);
                        }
                    }
                    ContentPart::End => {
                        if self.scan_body {
                            let (hits, state) = (&mut self.hits, &self.state);
                            let m = &self.rules.matchers;
                            m.finish(&mut self.scan, |s, p| keep_hit(m, state, hits, s, p));
                            self.apply_hits(out);
                        }
                    }
                }
            }
            Event::Header(h) => {
                self.sync_tx(h.tx_id);
                self.header(h, out);
            }
            Event::MimePart(p) => {
                self.sync_tx(p.tx_id);
                self.mime_part(p, out);
            }
            Event::Anomaly(a) => self.anomaly(a, out),
            Event::File(f) => {
                self.sync_tx(f.tx_id);
                self.file(f, out);
            }
            Event::Url(u) => {
                self.sync_tx(u.tx_id);
                self.url(&u.url, out);
            }
            Event::Command(_) | Event::Response(_) | Event::Transaction(_) => {}
        }
    }

    /// Follows the dissector's transaction numbering. Content of another
    /// transaction than the one whose content we saw starts a new one (e.g.
    /// DATA without MAIL); the first content after MAIL only relabels the
    /// transaction (its envelope is kept) should the numbering differ.
    fn sync_tx(&mut self, id: u32) {
        if self.tx == Some(id) {
            self.content_seen = true;
        } else {
            if self.tx.is_some() && self.content_seen {
                self.reset_tx();
            }
            self.content_seen = true;
            self.tx = Some(id);
            self.next_tx = self.next_tx.max(id.saturating_add(1));
        }
    }

    fn reset_tx(&mut self) {
        self.tx = None;
        self.content_seen = false;
        self.mail_from = None;
        self.rcpts.clear();
        self.rcpt_count = 0;
        self.size = 0;
        self.subject = None;
        self.attachments.clear();
        self.scan.reset_message();
        for (r, st) in self.rules.rules.iter().zip(self.state.iter_mut()) {
            if r.per_transaction {
                st.sat &= !r.tx_mask;
                st.fired = false;
                for (i, w) in st.why.iter_mut().enumerate() {
                    if r.tx_mask & (1 << i) != 0 {
                        *w = None;
                    }
                }
            }
        }
    }

    /// The envelope as the dissector's transaction has it: changes the
    /// server accepted (refused commands never reach here).
    fn envelope(&mut self, e: &Envelope, out: &mut Vec<Alert>) {
        match &e.change {
            EnvelopeChange::Helo(arg) => {
                self.reset_tx();
                let helo = arg.trim().to_string();
                for ri in 0..self.rules.rules.len() {
                    for ci in 0..self.rules.rules[ri].conds.len() {
                        if let Cond::Helo(globs) = &self.rules.rules[ri].conds[ci] {
                            let hit = globs.iter().find(|g| g.matches(&helo));
                            let why =
                                hit.map(|g| format!("helo {helo:?} matches {:?}", g.as_str()));
                            self.set(ri, ci, why, false);
                        }
                    }
                }
                self.helo = Some(helo);
                self.check_all(out);
            }
            EnvelopeChange::Reset => self.reset_tx(),
            EnvelopeChange::MailFrom {
                path,
                declared_size,
            } => {
                self.reset_tx();
                let id = e.tx_id.unwrap_or(self.next_tx);
                self.tx = Some(id);
                self.next_tx = self.next_tx.max(id.saturating_add(1));
                let (path, declared) = (path.clone(), *declared_size);
                let addr = bare_address(&path);
                let domain = domain_of(&addr);
                for ri in 0..self.rules.rules.len() {
                    for ci in 0..self.rules.rules[ri].conds.len() {
                        let why = match &self.rules.rules[ri].conds[ci] {
                            Cond::MailFrom(list) => {
                                list.contains(&addr).then(|| format!("mail_from {addr:?}"))
                            }
                            Cond::MailFromDomain(set) => domain
                                .and_then(|d| set.find(d))
                                .map(|d| format!("mail_from_domain {d:?}")),
                            _ => continue,
                        };
                        self.set(ri, ci, why, true);
                    }
                }
                self.mail_from = Some(path);
                if let Some(n) = declared {
                    self.size_check(n, out);
                }
                self.check_all(out);
            }
            EnvelopeChange::Rcpt(path) => {
                let path = path.clone();
                self.rcpt_count = self.rcpt_count.saturating_add(1);
                let addr = bare_address(&path);
                let domain = domain_of(&addr);
                for ri in 0..self.rules.rules.len() {
                    for ci in 0..self.rules.rules[ri].conds.len() {
                        let why = match &self.rules.rules[ri].conds[ci] {
                            Cond::RcptTo(list) => {
                                list.contains(&addr).then(|| format!("rcpt_to {addr:?}"))
                            }
                            Cond::RcptDomain(set) => domain
                                .and_then(|d| set.find(d))
                                .map(|d| format!("rcpt_domain {d:?}")),
                            Cond::RcptCountOver(n) => (self.rcpt_count > *n)
                                .then(|| format!("rcpt_count {} > {n}", self.rcpt_count)),
                            _ => continue,
                        };
                        if why.is_some() {
                            self.set(ri, ci, why, true);
                        }
                    }
                }
                if self.rcpts.len() < MAX_CONTEXT_RCPTS {
                    self.rcpts.push(path);
                }
                self.check_all(out);
            }
        }
    }

    fn size_check(&mut self, size: u64, out: &mut Vec<Alert>) {
        let mut any = false;
        for ri in 0..self.rules.rules.len() {
            for ci in 0..self.rules.rules[ri].conds.len() {
                if let Cond::SizeOver(n) = self.rules.rules[ri].conds[ci] {
                    if size > n && self.state[ri].sat & (1 << ci) == 0 {
                        self.set(ri, ci, Some(format!("size {size} > {n}")), true);
                        any = true;
                    }
                }
            }
        }
        if any {
            self.check_all(out);
        }
    }

    fn header(&mut self, h: &Header, out: &mut Vec<Alert>) {
        if h.part == 0 && h.name.eq_ignore_ascii_case("subject") && self.subject.is_none() {
            self.subject = Some(h.value.clone());
        }
        let mut lower: Option<String> = None;
        let mut any = false;
        for ri in 0..self.rules.rules.len() {
            for ci in 0..self.rules.rules[ri].conds.len() {
                let Cond::Header(hs) = &self.rules.rules[ri].conds[ci] else {
                    continue;
                };
                if self.state[ri].sat & (1 << ci) != 0 {
                    continue;
                }
                let hit = hs.iter().find(|c| {
                    c.name.eq_ignore_ascii_case(&h.name)
                        && match &c.test {
                            HeaderTest::Contains(s) => lower
                                .get_or_insert_with(|| h.value.to_ascii_lowercase())
                                .contains(s.as_str()),
                            HeaderTest::Regex(r) => r.is_match(&h.value),
                        }
                });
                if let Some(c) = hit {
                    let how = match &c.test {
                        HeaderTest::Contains(s) => format!("contains {s:?}"),
                        HeaderTest::Regex(r) => format!("matches /{}/", r.as_str()),
                    };
                    self.set(ri, ci, Some(format!("header {} {how}", c.name)), true);
                    any = true;
                }
            }
        }
        if any {
            self.check_all(out);
        }
    }

    fn mime_part(&mut self, p: &MimePart, out: &mut Vec<Alert>) {
        if let Some(f) = &p.filename {
            if self.attachments.len() < MAX_CONTEXT_ATTACHMENTS {
                self.attachments.push(f.clone());
            }
        }
        // Every name a client could show for the part (see `MimePart::other_filenames`).
        let names = || p.filename.iter().chain(&p.other_filenames);
        let ext = |f: &str| f.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        let mut any = false;
        for ri in 0..self.rules.rules.len() {
            for ci in 0..self.rules.rules[ri].conds.len() {
                let why = match &self.rules.rules[ri].conds[ci] {
                    Cond::AttachmentName(globs) => names().find_map(|f| {
                        globs
                            .iter()
                            .find(|g| g.matches(f))
                            .map(|g| format!("attachment_name {f:?} matches {:?}", g.as_str()))
                    }),
                    Cond::AttachmentExt(exts) => names()
                        .filter_map(|f| ext(f))
                        .find(|e| exts.iter().any(|x| x == e))
                        .map(|e| format!("attachment_ext {e:?}")),
                    Cond::ContentType(globs) => globs
                        .iter()
                        .find(|g| g.matches(&p.content_type))
                        .map(|_| format!("content_type {:?}", p.content_type)),
                    _ => continue,
                };
                if why.is_some() && self.state[ri].sat & (1 << ci) == 0 {
                    self.set(ri, ci, why, true);
                    any = true;
                }
            }
        }
        if any {
            self.check_all(out);
        }
    }

    /// A file of the message ended: hash, sniffed type and size conditions.
    fn file(&mut self, f: &FileInfo, out: &mut Vec<Alert>) {
        let name = f.filename.as_deref().unwrap_or("(unnamed part)");
        let mut any = false;
        for ri in 0..self.rules.rules.len() {
            for ci in 0..self.rules.rules[ri].conds.len() {
                let why = match &self.rules.rules[ri].conds[ci] {
                    Cond::AttachmentHash(set) => {
                        [("sha256", &f.sha256), ("sha1", &f.sha1), ("md5", &f.md5)]
                            .into_iter()
                            .find(|(_, h)| set.contains(h.as_str()))
                            .map(|(kind, h)| {
                                format!(
                                    "attachment {name:?} {kind} {h} listed (sha256 {})",
                                    f.sha256
                                )
                            })
                    }
                    Cond::AttachmentType(globs) => {
                        globs.iter().find(|g| g.matches(f.mimetype)).map(|_| {
                            format!(
                                "attachment {name:?} type {} (sha256 {})",
                                f.mimetype, f.sha256
                            )
                        })
                    }
                    Cond::AttachmentSizeOver(n) => (f.size > *n).then(|| {
                        format!(
                            "attachment {name:?} size {} > {n} (sha256 {})",
                            f.size, f.sha256
                        )
                    }),
                    _ => continue,
                };
                if why.is_some() && self.state[ri].sat & (1 << ci) == 0 {
                    self.set(ri, ci, why, true);
                    any = true;
                }
            }
        }
        if any {
            self.check_all(out);
        }
    }

    /// A URL of the message text: domain conditions.
    fn url(&mut self, url: &str, out: &mut Vec<Alert>) {
        let Some(host) = url_host(url) else { return };
        let mut any = false;
        for ri in 0..self.rules.rules.len() {
            for ci in 0..self.rules.rules[ri].conds.len() {
                let why = match &self.rules.rules[ri].conds[ci] {
                    Cond::UrlDomain(set) => set
                        .find(&host)
                        .map(|d| format!("url {url:?} in url_domain {d:?}")),
                    _ => continue,
                };
                if why.is_some() && self.state[ri].sat & (1 << ci) == 0 {
                    self.set(ri, ci, why, true);
                    any = true;
                }
            }
        }
        if any {
            self.check_all(out);
        }
    }

    fn anomaly(&mut self, a: &Anomaly, out: &mut Vec<Alert>) {
        let mut any = false;
        for ri in 0..self.rules.rules.len() {
            for ci in 0..self.rules.rules[ri].conds.len() {
                let hit = match &self.rules.rules[ri].conds[ci] {
                    Cond::ProtocolError => a.drop_requested,
                    Cond::Anomaly {
                        kinds,
                        min_severity,
                    } => {
                        kinds.as_ref().is_none_or(|k| k.contains(&a.kind))
                            && min_severity.is_none_or(|m| a.severity >= m)
                    }
                    _ => continue,
                };
                if hit && self.state[ri].sat & (1 << ci) == 0 {
                    self.set(ri, ci, Some(format!("anomaly {}", a.kind.as_str())), true);
                    any = true;
                }
            }
        }
        if any {
            self.check_all(out);
        }
    }

    /// Decoded body bytes: runs the shared automata, then applies the hits.
    fn body(&mut self, data: &[u8], out: &mut Vec<Alert>) {
        let (hits, state) = (&mut self.hits, &self.state);
        let m = &self.rules.matchers;
        m.scan(&mut self.scan, data, |s, p| keep_hit(m, state, hits, s, p));
        if !self.hits.is_empty() {
            self.apply_hits(out);
        }
    }

    fn apply_hits(&mut self, out: &mut Vec<Alert>) {
        if self.hits.is_empty() {
            return;
        }
        let rules = Arc::clone(&self.rules);
        let mut any = false;
        let mut hits = std::mem::take(&mut self.hits);
        for &(src, pid) in &hits {
            let Some((owner, text)) = rules.matchers.pattern(src, pid) else {
                continue;
            };
            let Some(st) = self.state.get(owner.rule) else {
                continue;
            };
            if st.sat & (1 << owner.cond) != 0 {
                continue;
            }
            let why = match src {
                Source::Regex => format!("body regex /{text}/"),
                Source::Keyword => format!("body keyword {text:?}"),
            };
            self.set(owner.rule, owner.cond, Some(why), true);
            any = true;
        }
        hits.clear();
        self.hits = hits;
        if any {
            self.check_all(out);
        }
    }

    /// Sets (`why` is `Some`) or clears (`None`, only if `only_set` is false) a condition bit.
    fn set(&mut self, rule: usize, cond: usize, why: Option<String>, only_set: bool) {
        let Some(st) = self.state.get_mut(rule) else {
            return;
        };
        match why {
            Some(w) if st.sat & (1 << cond) == 0 => {
                st.sat |= 1 << cond;
                if let Some(slot) = st.why.get_mut(cond) {
                    *slot = Some(w);
                }
            }
            Some(_) => {}
            None if !only_set => {
                st.sat &= !(1 << cond);
                if let Some(slot) = st.why.get_mut(cond) {
                    *slot = None;
                }
            }
            None => {}
        }
    }

    /// Fires every rule whose conditions all hold and that has not fired yet.
    fn check_all(&mut self, out: &mut Vec<Alert>) {
        for ri in 0..self.rules.rules.len() {
            let rule = &self.rules.rules[ri];
            let st = &mut self.state[ri];
            if st.fired || st.sat != rule.all_mask() {
                continue;
            }
            st.fired = true;
            let mut matched = String::new();
            for w in st.why.iter().flatten() {
                if !matched.is_empty() {
                    matched.push_str(", ");
                }
                matched.push_str(w);
            }
            truncate(&mut matched, MAX_MATCHED);
            out.push(Alert::new(
                rule,
                if rule.per_transaction { self.tx } else { None },
                matched,
                AlertContext {
                    helo: self.helo.clone(),
                    mail_from: self.mail_from.clone(),
                    rcpt_to: self.rcpts.clone(),
                    subject: self.subject.clone(),
                    attachments: self.attachments.clone(),
                },
            ));
        }
    }

    /// The envelope rules evaluate now: the transaction id, MAIL FROM path,
    /// the first [`MAX_CONTEXT_RCPTS`] accepted recipients and their count.
    /// It follows the dissector's `Envelope` events only.
    pub fn current_envelope(&self) -> (Option<u32>, Option<&str>, &[String], u32) {
        (
            self.tx,
            self.mail_from.as_deref(),
            &self.rcpts,
            self.rcpt_count,
        )
    }

    /// The client address this session evaluates.
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// The server address of the flow.
    pub fn server(&self) -> SocketAddr {
        self.server
    }
}

/// Records a pattern hit unless it cannot change anything (its rule fired
/// or its condition already holds) or repeats the previous one: a frequent
/// keyword does not fill the hit buffer.
#[inline]
fn keep_hit(
    m: &Matchers,
    state: &[RuleState],
    hits: &mut Vec<(Source, usize)>,
    src: Source,
    pid: usize,
) {
    if hits.last() == Some(&(src, pid)) {
        return;
    }
    let Some((o, _)) = m.pattern(src, pid) else {
        return;
    };
    if state
        .get(o.rule)
        .is_some_and(|st| !st.fired && st.sat & (1 << o.cond) == 0)
    {
        hits.push((src, pid));
    }
}

/// The host of a URL (`scheme://[user@]host[:port][/…]`) or the domain of
/// a `mailto:` address, lower case, without a trailing dot; `None` when
/// there is none.
pub fn url_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once(':')?;
    let host = if scheme.eq_ignore_ascii_case("mailto") {
        let addr = rest.split(['?', ',']).next()?;
        addr.rsplit_once('@')?.1
    } else {
        let rest = rest.strip_prefix("//")?;
        let authority = rest.split(['/', '?', '#', '\\']).next()?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next()?,
            None => host.split(':').next()?,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}
