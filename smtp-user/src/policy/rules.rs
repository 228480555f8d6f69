//! Compiles a rules file ([`super::spec`]) into a [`RuleSet`]: checks every
//! value (CIDR, glob, regex, duration, anomaly name, list file, unique sid)
//! and builds the shared body automata.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_spanned::Spanned;
use sha2::{Digest, Sha256};

use super::content::{check_regex, regex_reason, KeywordSpec, Keywords, Matchers, Owner, Regexes};
use super::error::RulesError;
use super::matchers::{bare_address, parse_duration, Cidr, DomainSet, Glob};
use super::session::PolicySession;
use super::spec::{Doc, List, RuleDoc, When};
use super::Action;
use crate::smtp::{AnomalyKind, Severity};

/// sid of the built-in protocol-error rule.
pub const PROTOCOL_ERROR_SID: u32 = 1;

/// Every anomaly kind, for name lookup at load time.
const ANOMALY_KINDS: &[AnomalyKind] = &[
    AnomalyKind::InvalidReply,
    AnomalyKind::UnexpectedServerGreeting,
    AnomalyKind::CommandBeforeGreeting,
    AnomalyKind::NoHelo,
    AnomalyKind::InvalidCommand,
    AnomalyKind::UnknownCommand,
    AnomalyKind::LineTooLong,
    AnomalyKind::ReplyCodeMismatch,
    AnomalyKind::UnmatchedReply,
    AnomalyKind::InvalidPipelinedSequence,
    AnomalyKind::SmugglingBareLfEndOfData,
    AnomalyKind::BdatInvalid,
    AnomalyKind::BdatChunkOverflow,
    AnomalyKind::TlsRejected,
    AnomalyKind::DataAfterQuit,
    AnomalyKind::MimeInvalidBase64,
    AnomalyKind::MimeHeaderTooLong,
    AnomalyKind::StreamGap,
    AnomalyKind::LimitExceeded,
    AnomalyKind::GateMissed,
    AnomalyKind::OutOfSequence,
    AnomalyKind::CommandLineTooLong,
    AnomalyKind::MessageLineTooLong,
    AnomalyKind::InvalidReplyCode,
    AnomalyKind::ContentBefore354,
    AnomalyKind::SmugglingAccepted,
    AnomalyKind::CleartextAfterStarttls,
];

/// How a header condition matches the value.
#[derive(Debug)]
pub enum HeaderTest {
    /// ASCII case-insensitive substring (stored lower-cased).
    Contains(String),
    Regex(regex::Regex),
}

#[derive(Debug)]
pub struct HeaderCond {
    /// Field name, matched case-insensitively.
    pub name: String,
    pub test: HeaderTest,
}

/// One condition of a rule. A rule's conditions are ANDed; the entries of
/// each list are ORed.
#[derive(Debug)]
pub enum Cond {
    ClientIp(Vec<Cidr>),
    Helo(Vec<Glob>),
    /// Bare addresses, lower-cased.
    MailFrom(Vec<String>),
    MailFromDomain(DomainSet),
    RcptTo(Vec<String>),
    RcptDomain(DomainSet),
    RcptCountOver(u32),
    SizeOver(u64),
    Header(Vec<HeaderCond>),
    /// Patterns live in the rule set's keyword automata.
    BodyKeyword,
    /// Patterns live in the rule set's regex automaton.
    BodyRegex,
    AttachmentName(Vec<Glob>),
    /// Lower-cased, without dot.
    AttachmentExt(Vec<String>),
    ContentType(Vec<Glob>),
    Anomaly {
        kinds: Option<Vec<AnomalyKind>>,
        min_severity: Option<Severity>,
    },
    /// An anomaly with `drop_requested` (the built-in rule).
    ProtocolError,
}

impl Cond {
    /// Needs the message content (header, body, MIME structure or size).
    pub fn is_content(&self) -> bool {
        matches!(
            self,
            Cond::SizeOver(_)
                | Cond::Header(_)
                | Cond::BodyKeyword
                | Cond::BodyRegex
                | Cond::AttachmentName(_)
                | Cond::AttachmentExt(_)
                | Cond::ContentType(_)
        )
    }

    /// Belongs to a mail transaction (reset by MAIL/RSET/HELO).
    fn is_transaction(&self) -> bool {
        self.is_content()
            || matches!(
                self,
                Cond::MailFrom(_)
                    | Cond::MailFromDomain(_)
                    | Cond::RcptTo(_)
                    | Cond::RcptDomain(_)
                    | Cond::RcptCountOver(_)
            )
    }
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub sid: u32,
    pub name: String,
    pub message: String,
    pub category: String,
    /// 1 = high … 3 = low.
    pub severity: u8,
    pub action: Action,
    pub block_ip_for: Option<Duration>,
    /// At most 32 (bit `i` of a session's satisfied mask is `conds[i]`).
    pub conds: Vec<Cond>,
    /// Some condition belongs to a transaction: the rule fires at most once
    /// per transaction and its transaction conditions reset with it.
    pub per_transaction: bool,
    /// Bits of the conditions that reset with the transaction.
    pub tx_mask: u32,
    /// Some condition needs the content.
    pub content: bool,
}

impl Rule {
    pub fn all_mask(&self) -> u32 {
        if self.conds.len() >= 32 {
            u32::MAX
        } else {
            (1u32 << self.conds.len()) - 1
        }
    }

    /// A drop/reset rule of the file (not the protocol-error rule): holding
    /// the end of each message lets its verdict land before the server
    /// accepts the mail, whatever condition decides it (envelope, content,
    /// an anomaly inside the message).
    pub fn gates(&self) -> bool {
        self.action.blocks() && self.sid != PROTOCOL_ERROR_SID
    }

    /// The rule's client_ip condition admits `ip` (or it has none).
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.conds.iter().all(|c| match c {
            Cond::ClientIp(nets) => nets.iter().any(|n| n.contains(ip)),
            _ => true,
        })
    }
}

/// A loaded, immutable rule set, shared by all sessions (`Arc`).
#[derive(Debug)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) matchers: Matchers,
    source: Option<PathBuf>,
    digest: String,
}

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

    /// Some rule needs header/body/attachment/size inspection.
    pub fn has_content_rules(&self) -> bool {
        self.rules.iter().any(|r| r.content)
    }

    /// A content rule may apply to this client (its client_ip condition admits it).
    pub fn content_rules_for(&self, client: IpAddr) -> bool {
        self.rules.iter().any(|r| r.content && r.admits(client))
    }

    /// Some rule could stop a mail before it is accepted: a drop/reset
    /// rule of the file (the protocol-error rule aside). What the
    /// end-of-data gate is for.
    pub fn has_gate_rules(&self) -> bool {
        self.rules.iter().any(Rule::gates)
    }

    /// A rule [`RuleSet::has_gate_rules`] counts may apply to this client:
    /// the gate is armed on its flows.
    pub fn gate_rules_for(&self, client: IpAddr) -> bool {
        self.rules.iter().any(|r| r.gates() && r.admits(client))
    }

    /// sha256 (hex) of the rules file and its list files; "builtin" for [`RuleSet::builtin`].
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Number of rules, the protocol-error rule included.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Always false: the protocol-error rule is always there.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The compiled rules (the protocol-error rule first).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Per-flow evaluator.
    pub fn session(self: &Arc<Self>, client: SocketAddr, server: SocketAddr) -> PolicySession {
        PolicySession::new(Arc::clone(self), client, server)
    }
}

fn protocol_error_rule(action: Action) -> Rule {
    Rule {
        sid: PROTOCOL_ERROR_SID,
        name: "protocol-error".to_string(),
        message: "SMTP protocol error: the dissector took the error transition".to_string(),
        category: "protocol-error".to_string(),
        severity: 1,
        action,
        block_ip_for: None,
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
            other => Err(self.err(
                a.span(),
                format!("unknown action {other:?}: expected \"alert\", \"drop\" or \"reset\""),
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
            name: r.name.get_ref().clone(),
            message: r
                .message
                .clone()
                .unwrap_or_else(|| r.name.get_ref().clone()),
            category: r.category.clone().unwrap_or_else(|| "policy".to_string()),
            severity,
            action,
            block_ip_for,
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
        if w.anomaly.is_some() || w.anomaly_severity.is_some() {
            let kinds = match &w.anomaly {
                Some(l) => {
                    let l = self.nonempty("anomaly", l)?;
                    let mut kinds = Vec::new();
                    for v in l {
                        let k = ANOMALY_KINDS
                            .iter()
                            .find(|k| k.as_str() == v.get_ref().as_str())
                            .ok_or_else(|| {
                                self.err(
                                    v.span(),
                                    format!("unknown anomaly kind {:?}", v.get_ref()),
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
