//! Policy: rules decide on the dissector's events.
//!
//! [`alert`] holds what a match produces; [`rules`] compiles a rules file
//! into a [`RuleSet`]; [`session`] evaluates it per flow
//! ([`PolicySession::event`]); [`content`] holds the streaming body
//! automata; [`matchers`] the small value matchers; [`spec`] the file
//! format as serde types; [`error`] the `PATH:LINE:COLUMN: reason` error.
//!
//! # Rules file (TOML)
//!
//! ```toml
//! [defaults]
//! protocol_error = "drop"      # action of the built-in rule sid 1: alert | reject | drop | reset
//!
//! [[rule]]
//! sid = 1001                   # unique, 1 is reserved (protocol-error rule)
//! rev = 2                      # optional revision (EVE alert.rev), default 1
//! name = "forbidden-sender-domain"
//! message = "MAIL FROM a forbidden domain"   # optional, default: name
//! category = "policy-violation"              # optional, default "policy"
//! severity = "high"            # high|medium|low or 1..3 (1 = high); default medium
//! action = "drop"              # alert|reject|drop|reset; default alert
//! block_ip_for = "10m"         # optional: put the client on the kernel blocklist (90, 45s, 10m, 1h30m, 2d)
//! [rule.when]                  # all conditions must hold (AND); entries of a list are ORed
//! mail_from_domain = ["forbidden.example"]
//! ```
//!
//! Conditions (`[rule.when]` keys):
//!
//! | key | matches |
//! |---|---|
//! | `client_ip` | client address in one of the CIDRs (IPv4, IPv6, IPv4-mapped) |
//! | `helo` | HELO/EHLO argument, glob (`*`, `?`), ASCII case-insensitive |
//! | `mail_from` / `rcpt_to` | address (brackets removed), case-insensitive |
//! | `mail_from_domain` / `rcpt_domain` | domain, suffix match on labels (`example.org` matches `mx.example.org`) |
//! | `mail_from_domain_file` / `rcpt_domain_file` | same, one domain per line, `#` comments, path relative to the rules file (merged with the inline list) |
//! | `rcpt_count_over` | more than N RCPT commands in the transaction |
//! | `size_over` | message bytes (dot-unstuffed) or MAIL FROM `SIZE=` above N |
//! | `header` | `[{ name = "Subject", contains = "x" }, { name = "From", regex = "..." }]`: a header field (message or MIME part, unfolded, RFC 2047 decoded) whose name matches case-insensitively and whose value contains the text (ASCII case-insensitive) or matches the regex |
//! | `body_keywords` (+ `body_nocase = true`) | a keyword in the decoded body of any part (Aho-Corasick) |
//! | `body_regex` | a regex matching in the decoded body (lazy DFA; `(?i)` etc. allowed) |
//! | `attachment_name` | file name (Content-Disposition `filename`, else Content-Type `name`), glob, case-insensitive |
//! | `attachment_ext` | file name extension (`exe`, `js`), case-insensitive |
//! | `content_type` | lower-cased `type/subtype` of any part, glob |
//! | `attachment_sha256` / `attachment_md5` | a file of the message (see [`crate::smtp::FileInfo`]) whose digest is listed (hex, case-insensitive) |
//! | `attachment_hash_file` | same, a list file of MD5, SHA-1 or SHA-256 digests, one per line, `#` comments; a bad line is an error at `FILE:LINE` |
//! | `attachment_type` | a file's media type sniffed from its first bytes, glob, lower case |
//! | `attachment_size_over` | a file of more than N decoded bytes |
//! | `url_domain` / `url_domain_file` | a URL of the message text whose host (or `mailto:` domain) is listed, suffix match on labels |
//! | `anomaly` / `anomaly_severity` | a dissector anomaly of one of these kinds and/or at least this severity |
//!
//! Body conditions are matched on the decoded, dot-unstuffed content as it
//! streams, across chunk boundaries, without buffering it (see
//! [`content`]). A rule with any transaction condition (envelope or
//! content) fires at most once per mail transaction; others (client_ip,
//! helo, anomaly only) at most once per session. The built-in rule sid 1
//! `protocol-error` fires on the dissector's error transition.
//!
//! Every error (syntax, unknown key, wrong type, bad CIDR/regex/duration/
//! severity/anomaly name, unreadable list file, duplicate sid) is reported
//! as `PATH:LINE:COLUMN: reason`.
//!
//! Modules, each importing only those listed before it: `spec` (the file as
//! written), `error`, `matchers` (CIDR, glob, domain, duration), `content` (body
//! automata), `alert`, `ruleset` (the compiled rules), `rules` (the
//! compiler), `session` (per-flow evaluation).

pub mod alert;
pub mod content;
pub mod error;
pub mod matchers;
pub mod rules;
pub mod ruleset;
pub mod session;
pub mod spec;

pub use alert::{Action, Alert, AlertContext};
pub use error::RulesError;
pub use ruleset::RuleSet;
pub use session::PolicySession;
