//! The compiled rules: a [`RuleSet`] of [`Rule`]s, each a list of
//! [`Cond`]itions, and the queries the pipeline asks of it. Built by the
//! compiler in [`super::rules`], evaluated by [`super::session`]; this
//! module depends on neither (it is the leaf both import).

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::content::Matchers;
use super::matchers::{Cidr, DomainSet, Glob};
use super::Action;
use crate::smtp::{AnomalyKind, Severity};

/// sid of the built-in protocol-error rule.
pub const PROTOCOL_ERROR_SID: u32 = 1;

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
    /// A file (attachment or non-text part) whose digest is listed
    /// (lower-case hex; MD5, SHA-1 and SHA-256 told apart by length).
    AttachmentHash(HashSet<String>),
    /// A file whose sniffed media type matches (glob, lower case).
    AttachmentType(Vec<Glob>),
    /// A file larger than N decoded bytes.
    AttachmentSizeOver(u64),
    /// A URL of the message text whose host (or `mailto:` domain) is in
    /// the set (suffix match on labels).
    UrlDomain(DomainSet),
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
                | Cond::AttachmentHash(_)
                | Cond::AttachmentType(_)
                | Cond::AttachmentSizeOver(_)
                | Cond::UrlDomain(_)
        )
    }

    /// Belongs to a mail transaction (reset by MAIL/RSET/HELO).
    pub(super) fn is_transaction(&self) -> bool {
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
    /// Revision (Suricata's `rev`).
    pub rev: u32,
    pub name: String,
    /// The rule's text in the rules file, at most [`MAX_RULE_TEXT`] bytes
    /// (`None` for the built-in rule, or a longer text).
    pub text: Option<Arc<str>>,
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
    /// The file gave no `action` (so it is `alert`, or `reject` for a
    /// content rule once [`RuleSet::gate_defaults`] ran).
    pub action_defaulted: bool,
    /// `tls = "reject"`: a session this rule may apply to (by `client_ip`)
    /// that starts TLS is blocked with the rule's action at the handshake
    /// (content behind TLS cannot be inspected); `"allow"` lets it go.
    pub tls_reject: bool,
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
    pub(super) source: Option<PathBuf>,
    pub(super) digest: String,
}

impl RuleSet {
    /// Some rule needs `fileinfo` (attachment hash, type or size).
    pub fn needs_files(&self) -> bool {
        self.rules.iter().flat_map(|r| &r.conds).any(|c| {
            matches!(
                c,
                Cond::AttachmentHash(_) | Cond::AttachmentType(_) | Cond::AttachmentSizeOver(_)
            )
        })
    }

    /// Some rule needs the URLs of message text.
    pub fn needs_urls(&self) -> bool {
        self.rules
            .iter()
            .flat_map(|r| &r.conds)
            .any(|c| matches!(c, Cond::UrlDomain(_)))
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

    /// Under `--gate`: content rules without an `action` reject (the end of
    /// their message is held, so the client can be answered `550 5.7.1`).
    pub fn gate_defaults(mut self) -> RuleSet {
        for r in &mut self.rules {
            if r.action_defaulted && r.content {
                r.action = Action::Reject;
            }
        }
        self
    }

    /// The first blocking rule with `tls = "reject"` that may apply to this
    /// client (by its `client_ip` condition).
    pub fn tls_rejecting_rule(&self, client: IpAddr) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.tls_reject && r.gates() && r.admits(client))
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
}
