//! Compiles a rules file ([`super::spec`]) into a [`RuleSet`]: checks every
//! value (CIDR, glob, regex, duration, anomaly name, list file, unique sid)
//! and builds the shared body automata.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde_spanned::Spanned;
use sha2::{Digest, Sha256};
use strum::VariantArray;

use super::content::{check_regex, regex_reason, KeywordSpec, Keywords, Matchers, Owner, Regexes};
use super::error::RulesError;
use super::matchers::{bare_address, parse_duration, Cidr, DomainSet, Glob};
use super::ruleset::{Cond, HeaderCond, HeaderTest, Rule, RuleSet, PROTOCOL_ERROR_SID};
use super::spec::{Doc, List, RuleDoc, When};
use super::Action;
use crate::smtp::{AnomalyKind, Severity};

impl RuleSet {
    /// Loads a rules file; list files are read relative to its directory.
    pub fn from_file(path: &Path) -> Result<RuleSet, RulesError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RulesError::file(path, format!("cannot read rules file: {e}")))?;
        RuleSet::from_toml(&text, path)
    }

    /// Compiles rules text; `origin` names it in errors and anchors list files.
    pub fn from_toml(text: &str, origin: &Path) -> Result<RuleSet, RulesError> {
        let doc: Doc = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            RulesError::at(origin, text, span, e.message().trim_end().to_string())
        })?;
        let mut c = Compiler {
            origin,
            text,
            hasher: Sha256::new(),
            keywords: Vec::new(),
            regexes: Vec::new(),
        };
        c.hasher.update(text.as_bytes());
        let protocol_error = match &doc.defaults.protocol_error {
            None => Action::Drop,
            Some(a) => c.action(a)?,
        };
        let mut rules = vec![protocol_error_rule(protocol_error)];
        let mut sids: HashMap<u32, ()> = HashMap::new();
        sids.insert(PROTOCOL_ERROR_SID, ());
        for r in &doc.rule {
            if sids.insert(*r.sid.get_ref(), ()).is_some() {
                let why = if *r.sid.get_ref() == PROTOCOL_ERROR_SID {
                    "sid 1 is reserved for the built-in protocol-error rule".to_string()
                } else {
                    format!("duplicate sid {}", r.sid.get_ref())
                };
                return Err(c.err(r.sid.span(), why));
            }
            let idx = rules.len();
            let rule = c.rule(r, idx)?;
            rules.push(rule);
        }
        let matchers = c.matchers()?;
        let digest = format!("{:x}", c.hasher.finalize());
        Ok(RuleSet {
            rules,
            matchers,
            source: Some(origin.to_path_buf()),
            digest,
        })
    }

    /// No rules file: only the protocol-error rule (alert + drop).
    pub fn builtin() -> RuleSet {
        RuleSet {
            rules: vec![protocol_error_rule(Action::Drop)],
            matchers: Matchers::default(),
            source: None,
            digest: "builtin".to_string(),
        }
    }
}

/// Longest rule text carried into alerts.
pub const MAX_RULE_TEXT: usize = 4096;

/// The `[[rule]]` table around byte `at` of the rules file, as written: from
/// its header line to the line before the next table that is not one of its
/// own (`[rule.when]`, `[[rule.when.header]]`), trailing blank lines and
/// comments removed. `None` when the rule is not written as such a table
/// (inline array) or is longer than [`MAX_RULE_TEXT`].
fn rule_text(text: &str, at: usize) -> Option<&str> {
    let before = text.get(..at)?;
    let start = line_starts(before)
        .filter(|&i| text.get(i..).is_some_and(|l| l.starts_with("[[rule]]")))
        .last()?;
    let end = line_starts(text)
        .filter(|&i| i > at)
        .find(|&i| {
            let l = text.get(i..).unwrap_or("").trim_start();
            l.starts_with('[') && !(l.starts_with("[rule.") || l.starts_with("[[rule."))
        })
        .unwrap_or(text.len());
    let block = text.get(start..end)?;
    // Up to the end of its last line that is neither blank nor a comment.
    let (mut keep, mut pos) = (0, 0);
    for line in block.split_inclusive('\n') {
        pos += line.len();
        let t = line.trim();
        if !t.is_empty() && !t.starts_with('#') {
            keep = pos;
        }
    }
    let block = block.get(..keep)?.trim_end();
    (block.len() <= MAX_RULE_TEXT).then_some(block)
}

/// Byte offset of line `n` (0-based) of `s`.
fn line_offset(s: &str, n: usize) -> usize {
    line_starts(s).nth(n).unwrap_or(s.len())
}

/// Byte offsets at which the lines of `s` start.
fn line_starts(s: &str) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(s.match_indices('\n').map(|(i, _)| i + 1))
}

fn protocol_error_rule(action: Action) -> Rule {
    Rule {
        sid: PROTOCOL_ERROR_SID,
        rev: 1,
        name: "protocol-error".to_string(),
        text: None,
        message: "SMTP protocol error: the dissector took the error transition".to_string(),
        category: "protocol-error".to_string(),
        severity: 1,
        action,
        block_ip_for: None,
        action_defaulted: false,
        tls_reject: false,
        conds: vec![Cond::ProtocolError],
        per_transaction: false,
        tx_mask: 0,
        content: false,
    }
}

struct Compiler<'a> {
    origin: &'a Path,
    text: &'a str,
    hasher: Sha256,
    keywords: Vec<KeywordSpec>,
    regexes: Vec<(String, Owner)>,
}

impl Compiler<'_> {
    fn err(&self, span: Range<usize>, reason: impl Into<String>) -> RulesError {
        RulesError::at(self.origin, self.text, span, reason)
    }

    fn action(&self, a: &Spanned<String>) -> Result<Action, RulesError> {
        match a.get_ref().as_str() {
            "alert" => Ok(Action::Alert),
            "drop" => Ok(Action::Drop),
            "reset" => Ok(Action::Reset),
            "reject" => Ok(Action::Reject),
            other => Err(self.err(
                a.span(),
                format!(
                    "unknown action {other:?}: expected \"alert\", \"reject\", \"drop\" or \"reset\""
                ),
            )),
        }
    }

    fn severity(&self, s: &Spanned<toml::Value>) -> Result<u8, RulesError> {
        let v = match s.get_ref() {
            toml::Value::String(s) => match s.as_str() {
                "high" => Some(1),
                "medium" => Some(2),
                "low" => Some(3),
                _ => None,
            },
            toml::Value::Integer(n @ 1..=3) => u8::try_from(*n).ok(),
            _ => None,
        };
        v.ok_or_else(|| {
            self.err(
                s.span(),
                "invalid severity: expected \"high\", \"medium\", \"low\" or 1..3",
            )
        })
    }

    fn nonempty<'l>(&self, key: &str, l: &'l List) -> Result<&'l [Spanned<String>], RulesError> {
        if l.get_ref().is_empty() {
            return Err(self.err(l.span(), format!("`{key}` is an empty list")));
        }
        let l = l.get_ref();
        for v in l {
            if v.get_ref().trim().is_empty() {
                return Err(self.err(v.span(), format!("empty string in `{key}`")));
            }
        }
        Ok(l)
    }

    /// Reads a list file (one entry per line, `#` comments) relative to the rules file.
    fn list_file(&mut self, f: &Spanned<String>, set: &mut DomainSet) -> Result<(), RulesError> {
        let base = self.origin.parent().unwrap_or(Path::new("."));
        let path = base.join(f.get_ref());
        let bytes = std::fs::read(&path).map_err(|e| {
            self.err(
                f.span(),
                format!("cannot read list file {}: {e}", path.display()),
            )
        })?;
        self.hasher.update(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if !entry.is_empty() {
                set.insert(entry);
            }
        }
        Ok(())
    }

    /// Reads a hash list file: one MD5, SHA-1 or SHA-256 hex digest per
    /// line, `#` comments; an invalid line is an error naming FILE:LINE.
    fn hash_file(
        &mut self,
        f: &Spanned<String>,
        set: &mut HashSet<String>,
    ) -> Result<(), RulesError> {
        let base = self.origin.parent().unwrap_or(Path::new("."));
        let path = base.join(f.get_ref());
        let bytes = std::fs::read(&path).map_err(|e| {
            self.err(
                f.span(),
                format!("cannot read hash list file {}: {e}", path.display()),
            )
        })?;
        self.hasher.update(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let h = entry.to_ascii_lowercase();
            if !matches!(h.len(), 32 | 40 | 64) || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(RulesError::at(
                    &path,
                    &text,
                    line_offset(&text, n)..line_offset(&text, n),
                    format!("{entry:?} is not an MD5, SHA-1 or SHA-256 hex digest"),
                ));
            }
            set.insert(h);
        }
        Ok(())
    }

    fn rule(&mut self, r: &RuleDoc, idx: usize) -> Result<Rule, RulesError> {
        if r.name.get_ref().trim().is_empty() {
            return Err(self.err(r.name.span(), "empty rule name"));
        }
        let severity = match &r.severity {
            Some(s) => self.severity(s)?,
            None => 2,
        };
        let action = match &r.action {
            Some(a) => self.action(a)?,
            None => Action::Alert,
        };
        let block_ip_for = match &r.block_ip_for {
            Some(d) => Some(parse_duration(d.get_ref()).map_err(|e| self.err(d.span(), e))?),
            None => None,
        };
        let tls_reject = match r.tls.as_ref().map(|t| (t, t.get_ref().as_str())) {
            None | Some((_, "allow")) => false,
            Some((_, "reject")) => true,
            Some((t, other)) => {
                return Err(self.err(
                    t.span(),
                    format!("unknown tls option {other:?}: expected \"allow\" or \"reject\""),
                ))
            }
        };
        let conds = self.conds(r.when.get_ref(), idx)?;
        if conds.is_empty() {
            return Err(self.err(r.when.span(), "rule has no condition in [rule.when]"));
        }
        let mut tx_mask = 0;
        for (i, c) in conds.iter().enumerate() {
            if c.is_transaction() {
                tx_mask |= 1 << i;
            }
        }
        let per_transaction = tx_mask != 0;
        if per_transaction {
            // Anomaly conditions of a transaction rule count within the transaction.
            for (i, c) in conds.iter().enumerate() {
                if matches!(c, Cond::Anomaly { .. }) {
                    tx_mask |= 1 << i;
                }
            }
        }
        Ok(Rule {
            sid: *r.sid.get_ref(),
            rev: r.rev.unwrap_or(1),
            name: r.name.get_ref().clone(),
            text: rule_text(self.text, r.sid.span().start).map(Arc::from),
            message: r
                .message
                .clone()
                .unwrap_or_else(|| r.name.get_ref().clone()),
            category: r.category.clone().unwrap_or_else(|| "policy".to_string()),
            severity,
            action,
            block_ip_for,
            action_defaulted: r.action.is_none(),
            tls_reject,
            content: conds.iter().any(Cond::is_content),
            conds,
            per_transaction,
            tx_mask,
        })
    }

    fn conds(&mut self, w: &When, rule: usize) -> Result<Vec<Cond>, RulesError> {
        let mut conds = Vec::new();
        if let Some(l) = &w.client_ip {
            let l = self.nonempty("client_ip", l)?;
            let nets = l
                .iter()
                .map(|v| Cidr::parse(v.get_ref()).map_err(|e| self.err(v.span(), e)))
                .collect::<Result<_, _>>()?;
            conds.push(Cond::ClientIp(nets));
        }
        if let Some(l) = &w.helo {
            let l = self.nonempty("helo", l)?;
            conds.push(Cond::Helo(
                l.iter().map(|v| Glob::new(v.get_ref())).collect(),
            ));
        }
        if let Some(l) = &w.mail_from {
            let l = self.nonempty("mail_from", l)?;
            conds.push(Cond::MailFrom(
                l.iter().map(|v| bare_address(v.get_ref())).collect(),
            ));
        }
        if w.mail_from_domain.is_some() || w.mail_from_domain_file.is_some() {
            let mut set = DomainSet::default();
            if let Some(l) = &w.mail_from_domain {
                for v in self.nonempty("mail_from_domain", l)? {
                    set.insert(v.get_ref());
                }
            }
            if let Some(f) = &w.mail_from_domain_file {
                self.list_file(f, &mut set)?;
            }
            conds.push(Cond::MailFromDomain(set));
        }
        if let Some(l) = &w.rcpt_to {
            let l = self.nonempty("rcpt_to", l)?;
            conds.push(Cond::RcptTo(
                l.iter().map(|v| bare_address(v.get_ref())).collect(),
            ));
        }
        if w.rcpt_domain.is_some() || w.rcpt_domain_file.is_some() {
            let mut set = DomainSet::default();
            if let Some(l) = &w.rcpt_domain {
                for v in self.nonempty("rcpt_domain", l)? {
                    set.insert(v.get_ref());
                }
            }
            if let Some(f) = &w.rcpt_domain_file {
                self.list_file(f, &mut set)?;
            }
            conds.push(Cond::RcptDomain(set));
        }
        if let Some(n) = w.rcpt_count_over {
            conds.push(Cond::RcptCountOver(n));
        }
        if let Some(n) = w.size_over {
            conds.push(Cond::SizeOver(n));
        }
        if let Some(hs) = &w.header {
            if hs.get_ref().is_empty() {
                return Err(self.err(hs.span(), "`header` is an empty list"));
            }
            let mut out = Vec::new();
            for h in hs.get_ref() {
                let d = h.get_ref();
                let test = match (&d.contains, &d.regex) {
                    (Some(c), None) => HeaderTest::Contains(c.to_ascii_lowercase()),
                    (None, Some(r)) => HeaderTest::Regex(
                        regex::Regex::new(r.get_ref())
                            .map_err(|e| self.err(r.span(), regex_reason(r.get_ref(), &e)))?,
                    ),
                    _ => {
                        return Err(self.err(
                            h.span(),
                            "a header condition needs exactly one of `contains` or `regex`",
                        ))
                    }
                };
                out.push(HeaderCond {
                    name: d.name.clone(),
                    test,
                });
            }
            conds.push(Cond::Header(out));
        }
        if let Some(l) = &w.body_keywords {
            let l = self.nonempty("body_keywords", l)?;
            let owner = Owner {
                rule,
                cond: conds.len(),
            };
            let nocase = w.body_nocase.as_ref().is_some_and(|b| *b.get_ref());
            self.keywords.extend(l.iter().map(|v| KeywordSpec {
                text: v.get_ref().clone(),
                nocase,
                owner,
            }));
            conds.push(Cond::BodyKeyword);
        }
        if let Some(l) = &w.body_regex {
            let l = self.nonempty("body_regex", l)?;
            let owner = Owner {
                rule,
                cond: conds.len(),
            };
            for v in l {
                check_regex(v.get_ref()).map_err(|e| self.err(v.span(), e))?;
                self.regexes.push((v.get_ref().clone(), owner));
            }
            conds.push(Cond::BodyRegex);
        }
        if let Some(l) = &w.attachment_name {
            let l = self.nonempty("attachment_name", l)?;
            conds.push(Cond::AttachmentName(
                l.iter().map(|v| Glob::new(v.get_ref())).collect(),
            ));
        }
        if let Some(l) = &w.attachment_ext {
            let l = self.nonempty("attachment_ext", l)?;
            conds.push(Cond::AttachmentExt(
                l.iter()
                    .map(|v| {
                        v.get_ref()
                            .trim()
                            .trim_start_matches('.')
                            .to_ascii_lowercase()
                    })
                    .collect(),
            ));
        }
        if let Some(l) = &w.content_type {
            let l = self.nonempty("content_type", l)?;
            conds.push(Cond::ContentType(
                l.iter().map(|v| Glob::new(v.get_ref())).collect(),
            ));
        }
        if w.attachment_sha256.is_some()
            || w.attachment_md5.is_some()
            || w.attachment_hash_file.is_some()
        {
            let mut set = HashSet::new();
            for (key, l, len) in [
                ("attachment_sha256", &w.attachment_sha256, 64),
                ("attachment_md5", &w.attachment_md5, 32),
            ] {
                let Some(l) = l else { continue };
                for v in self.nonempty(key, l)? {
                    let h = v.get_ref().trim().to_ascii_lowercase();
                    if h.len() != len || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
                        return Err(self.err(
                            v.span(),
                            format!("{key}: {:?} is not {len} hex digits", v.get_ref()),
                        ));
                    }
                    set.insert(h);
                }
            }
            if let Some(f) = &w.attachment_hash_file {
                self.hash_file(f, &mut set)?;
            }
            conds.push(Cond::AttachmentHash(set));
        }
        if let Some(l) = &w.attachment_type {
            let l = self.nonempty("attachment_type", l)?;
            conds.push(Cond::AttachmentType(
                l.iter()
                    .map(|v| Glob::new(&v.get_ref().to_ascii_lowercase()))
                    .collect(),
            ));
        }
        if let Some(n) = w.attachment_size_over {
            conds.push(Cond::AttachmentSizeOver(n));
        }
        if w.url_domain.is_some() || w.url_domain_file.is_some() {
            let mut set = DomainSet::default();
            if let Some(l) = &w.url_domain {
                for v in self.nonempty("url_domain", l)? {
                    set.insert(v.get_ref());
                }
            }
            if let Some(f) = &w.url_domain_file {
                self.list_file(f, &mut set)?;
            }
            conds.push(Cond::UrlDomain(set));
        }
        if w.anomaly.is_some() || w.anomaly_severity.is_some() {
            let kinds = match &w.anomaly {
                Some(l) => {
                    let l = self.nonempty("anomaly", l)?;
                    let mut kinds = Vec::new();
                    for v in l {
                        let k = AnomalyKind::VARIANTS
                            .iter()
                            .find(|k| k.as_str() == v.get_ref().as_str())
                            .ok_or_else(|| {
                                let known: Vec<&str> =
                                    AnomalyKind::VARIANTS.iter().map(|k| k.as_str()).collect();
                                self.err(
                                    v.span(),
                                    format!(
                                        "unknown anomaly kind {:?} (known: {})",
                                        v.get_ref(),
                                        known.join(", ")
                                    ),
                                )
                            })?;
                        kinds.push(*k);
                    }
                    Some(kinds)
                }
                None => None,
            };
            let min_severity =
                match &w.anomaly_severity {
                    Some(s) => Some(match s.get_ref().as_str() {
                        "high" => Severity::High,
                        "medium" => Severity::Medium,
                        "low" => Severity::Low,
                        _ => return Err(self.err(
                            s.span(),
                            "invalid anomaly_severity: expected \"high\", \"medium\" or \"low\"",
                        )),
                    }),
                    None => None,
                };
            conds.push(Cond::Anomaly {
                kinds,
                min_severity,
            });
        }
        if let (Some(n), None) = (&w.body_nocase, &w.body_keywords) {
            return Err(self.err(n.span(), "`body_nocase` without `body_keywords`"));
        }
        Ok(conds)
    }

    fn matchers(&mut self) -> Result<Matchers, RulesError> {
        let whole = 0..0;
        let kw = std::mem::take(&mut self.keywords);
        let keywords = if kw.is_empty() {
            None
        } else {
            Some(Keywords::build(kw).map_err(|e| self.err(whole.clone(), e))?)
        };
        let rx = std::mem::take(&mut self.regexes);
        let regexes = if rx.is_empty() {
            None
        } else {
            Some(Regexes::build(rx).map_err(|e| self.err(whole, e))?)
        };
        Ok(Matchers { keywords, regexes })
    }
}
