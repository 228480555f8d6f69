//! Options shared by `run` and `replay`: what the dissector derives from
//! message content (`fileinfo` events and hashes, URLs).

use clap::Args;
use smtp_user::policy::RuleSet;
use smtp_user::smtp::mime::urls::UrlSchemes;
use smtp_user::smtp::ContentOptions;
use std::sync::Arc;

#[derive(Debug, Clone, Args)]
pub struct ContentArgs {
    /// Hash message content: `fileinfo` events (md5, sha1, sha256, size,
    /// sniffed type) and `email.body_md5`. Off by default, as in Suricata
    /// (`force-hash`, `body-md5`): it costs several times the CPU of the
    /// rest of the analysis (README, "Content features"). Turned on by
    /// itself when the rules have attachment hash, type or size conditions.
    #[arg(long)]
    pub hashes: bool,
    /// No URL extraction: no `email.url` (`url_domain` rules then cannot load).
    #[arg(long)]
    pub no_urls: bool,
    /// URL schemes looked for besides http, https, ftp and mailto
    /// (comma-separated names: `sftp,ssh`; `name:` for schemes without `//`).
    #[arg(long, value_delimiter = ',', value_name = "SCHEME,...")]
    pub url_schemes: Vec<String>,
}

impl ContentArgs {
    /// The options, given what the rules need.
    pub fn options(&self, rules: &RuleSet) -> anyhow::Result<ContentOptions> {
        if self.no_urls && rules.needs_urls() {
            anyhow::bail!("--no-urls: the rules have url_domain conditions");
        }
        let urls = match self.no_urls {
            true => None,
            false if self.url_schemes.is_empty() => Some(UrlSchemes::default_schemes()),
            false => Some(Arc::new(
                UrlSchemes::new(&self.url_schemes)
                    .map_err(|e| anyhow::anyhow!("--url-schemes: {e}"))?,
            )),
        };
        Ok(ContentOptions {
            files: self.hashes || rules.needs_files(),
            urls,
        })
    }

    /// Checks rules loaded while running against what the dissector was
    /// started with (`hashing`: whether it computes file hashes).
    pub fn check_reload(&self, hashing: bool, rules: &RuleSet) -> anyhow::Result<()> {
        if !hashing && rules.needs_files() {
            anyhow::bail!(
                "the rules have attachment hash, type or size conditions and the monitor \
                 runs without --hashes: restart it with --hashes"
            );
        }
        self.options(rules).map(|_| ())
    }
}
