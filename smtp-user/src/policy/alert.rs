//! What a rule match produces: an [`Alert`] with the rule's identity, the
//! action it asks for and the transaction fields known when it fired.
//!
//! The pipeline writes each alert as an EVE `alert` line and turns its
//! [`Action`] into kernel state (verdict, IP blocklist) in enforce mode.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// What a rule does when it matches. Ordered by strength: when several
/// rules fire on one flow, the strongest action wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Only write the alert.
    Alert,
    /// Answer the transaction's end of data on the server's behalf with a
    /// permanent failure (`550 5.7.1 …`, the rule's `reject_reply`) and reset
    /// the server side, so the sending MTA bounces the message instead of
    /// retrying; needs the end-of-data gate (without it: like `reset`).
    Reject,
    /// Drop the session silently in the kernel (the tutorial's `self:drop()`).
    Drop,
    /// Tear the connection down so both ends learn at once that it is gone.
    Reset,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Reject => "reject",
            Action::Drop => "drop",
            Action::Reset => "reset",
        }
    }

    /// True for the actions that end the session when enforced.
    pub fn blocks(self) -> bool {
        self != Action::Alert
    }
}

/// The transaction (or session) fields known when the rule fired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AlertContext {
    /// Argument of the last HELO/EHLO.
    pub helo: Option<String>,
    /// MAIL FROM path as written (angle brackets kept), if seen.
    pub mail_from: Option<String>,
    /// RCPT TO paths seen so far in the transaction.
    pub rcpt_to: Vec<String>,
    /// Subject header of the message, once the header was seen.
    pub subject: Option<String>,
    /// Attachment file names seen so far in the message.
    pub attachments: Vec<String>,
}

/// One rule match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// The rule's `sid` (Suricata's `signature_id`).
    pub signature_id: u32,
    /// The rule's `rev` (revision, 1 unless the rule says otherwise).
    pub rev: u32,
    /// The rule's `name`.
    pub rule_name: String,
    /// The rule as written in the rules file (`None` for built-in rules).
    pub rule_text: Option<Arc<str>>,
    /// The rule's `message` (Suricata's `signature`).
    pub signature: String,
    /// The rule's `category`.
    pub category: String,
    /// 1 = high, 2 = medium, 3 = low (Suricata's scale).
    pub severity: u8,
    pub action: Action,
    /// Put the client address on the kernel blocklist for this long.
    pub block_ip_for: Option<Duration>,
    /// Transaction the match belongs to; `None` for session-level matches.
    pub tx_id: Option<u32>,
    /// What matched, human-readable (`mail_from_domain "evil.test"`,
    /// `body keyword "invoice.exe"`, `anomaly bdat_invalid`), bounded length.
    pub matched: String,
    pub context: AlertContext,
}

impl Alert {
    /// The alert `rule` raises: the rule's identity and action, the match
    /// and what was known of the transaction.
    pub fn new(
        rule: &super::ruleset::Rule,
        tx_id: Option<u32>,
        matched: String,
        context: AlertContext,
    ) -> Alert {
        Alert {
            signature_id: rule.sid,
            rev: rule.rev,
            rule_name: rule.name.clone(),
            rule_text: rule.text.clone(),
            signature: rule.message.clone(),
            category: rule.category.clone(),
            severity: rule.severity,
            action: rule.action,
            block_ip_for: rule.block_ip_for,
            tx_id,
            matched,
            context,
        }
    }
}
