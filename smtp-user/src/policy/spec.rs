//! The rules file as written: serde structures mirroring the TOML format
//! (see the module docs of [`super`]). Values the compiler checks further
//! keep their source span so errors point at them.

use serde::Deserialize;
use serde_spanned::Spanned;

/// A string list with the span of each entry.
pub type List = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Doc {
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub rule: Vec<RuleDoc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Action of the built-in protocol-error rule (sid 1).
    pub protocol_error: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    pub sid: Spanned<u32>,
    /// Revision of the rule (Suricata's `rev`); 1 when absent.
    pub rev: Option<u32>,
    pub name: Spanned<String>,
    pub message: Option<String>,
    pub category: Option<String>,
    /// `"high"|"medium"|"low"` or `1..=3`.
    pub severity: Option<Spanned<toml::Value>>,
    pub action: Option<Spanned<String>>,
    pub block_ip_for: Option<Spanned<String>>,
    /// `"allow"` (default) | `"reject"`: what the rule does with a session
    /// that turns to TLS, whose content it cannot inspect.
    pub tls: Option<Spanned<String>>,
    pub when: Spanned<When>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    pub client_ip: Option<List>,
    pub helo: Option<List>,
    pub mail_from: Option<List>,
    pub mail_from_domain: Option<List>,
    pub mail_from_domain_file: Option<Spanned<String>>,
    pub rcpt_to: Option<List>,
    pub rcpt_domain: Option<List>,
    pub rcpt_domain_file: Option<Spanned<String>>,
    pub rcpt_count_over: Option<u32>,
    pub size_over: Option<u64>,
    pub header: Option<Spanned<Vec<Spanned<HeaderDoc>>>>,
    pub body_keywords: Option<List>,
    pub body_nocase: Option<Spanned<bool>>,
    pub body_regex: Option<List>,
    pub attachment_name: Option<List>,
    pub attachment_ext: Option<List>,
    pub content_type: Option<List>,
    pub attachment_sha256: Option<List>,
    pub attachment_md5: Option<List>,
    /// A file of MD5, SHA-1 or SHA-256 hex digests, one per line.
    pub attachment_hash_file: Option<Spanned<String>>,
    pub attachment_type: Option<List>,
    pub attachment_size_over: Option<u64>,
    pub url_domain: Option<List>,
    pub url_domain_file: Option<Spanned<String>>,
    pub anomaly: Option<List>,
    pub anomaly_severity: Option<Spanned<String>>,
}

/// `{ name = "Subject", contains = "invoice" }` or `{ name = "From", regex = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderDoc {
    pub name: String,
    pub contains: Option<String>,
    pub regex: Option<Spanned<String>>,
}
