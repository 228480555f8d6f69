//! URLs in decoded message text (Suricata's `email.url`).
//!
//! A [`UrlScanner`] reads the decoded bytes of the text parts of a message
//! (text parts without a file name, as Suricata does; HTML included) as
//! they stream, and collects the URLs that start with one of the
//! [`UrlSchemes`]: `http://`, `https://`, `ftp://`, `mailto:` and those
//! `--url-schemes` adds, matched without regard to case. A URL ends, as in
//! Suricata's `mime_smtp_finish_url`, at a blank, a quote, `<`, `>` or `]`,
//! and also at a line end (a quoted-printable soft break was removed by the
//! decoder already). It is written as found, scheme included (Suricata's
//! `log-url-scheme: yes`).
//!
//! Streaming: a URL cannot contain a blank or a line end, so each chunk is
//! scanned up to its last one; the bytes after it wait for the next chunk
//! in a carry of at most [`MAX_URL`] bytes (a longer run is scanned as it
//! stands, and a URL in it is cut there). Bounds per message: URLs are kept
//! deduplicated, at most [`MAX_URLS`]; the others are counted in
//! [`UrlScanner::dropped`] (reported as `limit_exceeded`), each kept URL at
//! most [`MAX_URL`] bytes.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};

/// Most URLs kept per message.
pub const MAX_URLS: usize = 64;
/// Longest URL kept, in bytes (longer ones are cut).
pub const MAX_URL: usize = 2048;

/// Schemes always looked for.
pub const DEFAULT_SCHEMES: &[&str] = &["http", "https", "ftp", "mailto"];

/// The URL schemes looked for, compiled once and shared by every session.
#[derive(Debug)]
pub struct UrlSchemes {
    finder: AhoCorasick,
    /// The prefixes as searched (`http://`, `mailto:`), lower case.
    prefixes: Vec<String>,
}

impl UrlSchemes {
    /// The default schemes plus `extra` (names such as `sftp`, with or
    /// without `://`); names are lower-cased, duplicates ignored. `mailto`
    /// and `news`-like schemes without `//` are written `name:` as the
    /// default `mailto` is.
    pub fn new<S: AsRef<str>>(extra: &[S]) -> Result<UrlSchemes, String> {
        let mut prefixes: Vec<String> = Vec::new();
        let names = DEFAULT_SCHEMES
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(|s| s.as_ref().trim().to_ascii_lowercase()));
        for name in names {
            let bare = name.trim_end_matches("://").trim_end_matches(':');
            let valid = bare.len() <= 32
                && bare.starts_with(|c: char| c.is_ascii_alphabetic())
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if !valid {
                return Err(format!("invalid URL scheme {name:?}"));
            }
            let prefix = if bare == "mailto" || (name.ends_with(':') && !name.ends_with("://")) {
                format!("{bare}:")
            } else {
                format!("{bare}://")
            };
            if !prefixes.contains(&prefix) {
                prefixes.push(prefix);
            }
        }
        let finder = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&prefixes)
            .map_err(|e| format!("URL schemes: {e}"))?;
        Ok(UrlSchemes { finder, prefixes })
    }

    /// The defaults only.
    pub fn default_schemes() -> Arc<UrlSchemes> {
        static DEFAULT: std::sync::LazyLock<Arc<UrlSchemes>> = std::sync::LazyLock::new(|| {
            Arc::new(UrlSchemes::new::<&str>(&[]).expect("the default schemes are valid"))
        });
        Arc::clone(&DEFAULT)
    }

    /// The prefixes searched for (`http://`, `mailto:` …).
    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }
}

/// Where a URL ends (Suricata's terminators, and line ends).
fn is_end(c: u8) -> bool {
    matches!(
        c,
        b' ' | b'"' | b'\'' | b'<' | b'>' | b']' | b'\t' | b'\r' | b'\n'
    )
}

/// Collects the URLs of one message.
#[derive(Debug, Default)]
pub struct UrlScanner {
    /// Bytes after the last blank of the previous chunk; at most `MAX_URL`.
    carry: Vec<u8>,
    /// URLs found, deduplicated, in order; at most `MAX_URLS`.
    pub urls: Vec<String>,
    /// Distinct URLs found beyond `MAX_URLS`.
    pub dropped: u64,
}

impl UrlScanner {
    /// Forget the previous message, keeping buffers.
    pub fn reset(&mut self) {
        self.carry.clear();
        self.urls.clear();
        self.dropped = 0;
    }

    /// Decoded text bytes; `found` gets each new URL kept.
    pub fn feed(&mut self, schemes: &UrlSchemes, data: &[u8], found: &mut impl FnMut(&str)) {
        let Some(last) = memchr::memrchr3(b' ', b'\n', b'\t', data) else {
            if self.carry.len() + data.len() <= MAX_URL {
                self.carry.extend_from_slice(data);
            } else {
                let mut carry = std::mem::take(&mut self.carry);
                carry.extend_from_slice(data);
                self.scan(schemes, &carry, found);
                carry.clear();
                self.carry = carry;
            }
            return;
        };
        let (head, tail) = data.split_at(last + 1);
        if self.carry.is_empty() {
            self.scan(schemes, head, found);
        } else {
            let mut carry = std::mem::take(&mut self.carry);
            carry.extend_from_slice(head);
            self.scan(schemes, &carry, found);
            carry.clear();
            self.carry = carry;
        }
        if tail.len() <= MAX_URL {
            self.carry.extend_from_slice(tail);
        } else {
            self.scan(schemes, tail, found);
        }
    }

    /// The text part ended: scan what was carried.
    pub fn flush(&mut self, schemes: &UrlSchemes, found: &mut impl FnMut(&str)) {
        if !self.carry.is_empty() {
            let carry = std::mem::take(&mut self.carry);
            self.scan(schemes, &carry, found);
            self.carry = carry;
            self.carry.clear();
        }
    }

    fn scan(&mut self, schemes: &UrlSchemes, text: &[u8], found: &mut impl FnMut(&str)) {
        let mut at = 0;
        while let Some(m) = schemes.finder.find(text.get(at..).unwrap_or(&[])) {
            let start = at + m.start();
            let rest = text.get(start + m.len()..).unwrap_or(&[]);
            let len = m.len() + rest.iter().position(|&c| is_end(c)).unwrap_or(rest.len());
            at = start + len;
            if len == m.len() {
                continue; // a scheme alone is no URL
            }
            let url = text.get(start..start + len.min(MAX_URL)).unwrap_or(&[]);
            let url = String::from_utf8_lossy(url);
            if self.urls.iter().any(|u| *u == url) {
                continue;
            }
            if self.urls.len() < MAX_URLS {
                found(&url);
                self.urls.push(url.into_owned());
            } else {
                self.dropped += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_chunks(schemes: &UrlSchemes, chunks: &[&[u8]]) -> (Vec<String>, Vec<String>) {
        let mut s = UrlScanner::default();
        let mut seen = Vec::new();
        for c in chunks {
            s.feed(schemes, c, &mut |u| seen.push(u.to_string()));
        }
        s.flush(schemes, &mut |u| seen.push(u.to_string()));
        (s.urls, seen)
    }

    #[test]
    fn finds_schemes_dedups_and_ends_at_terminators() {
        let schemes = UrlSchemes::new(&["sftp"]).unwrap();
        let text = b"see HTTP://Example.com/a?b=1 and <a href=\"https://x.org/p\">x</a>\r\n\
ftp://f.net/file] mailto:bob@example.com HTTP://Example.com/a?b=1 sftp://s.io/k http:// nope\r\n";
        let want: Vec<String> = [
            "HTTP://Example.com/a?b=1",
            "https://x.org/p",
            "ftp://f.net/file",
            "mailto:bob@example.com",
            "sftp://s.io/k",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for cut in [1usize, 2, 3, 7, 16, text.len()] {
            let chunks: Vec<&[u8]> = text.chunks(cut).collect();
            let (urls, seen) = scan_chunks(&schemes, &chunks);
            assert_eq!(urls, want, "cut {cut}");
            assert_eq!(seen, want, "cut {cut}");
        }
    }

    #[test]
    fn url_at_end_without_line_end_is_found_on_flush() {
        let schemes = UrlSchemes::default_schemes();
        let (urls, _) = scan_chunks(&schemes, &[b"go to http://a.b/", b"c"]);
        assert_eq!(urls, vec!["http://a.b/c".to_string()]);
    }

    #[test]
    fn bounded_and_counted() {
        let schemes = UrlSchemes::default_schemes();
        let mut text = String::new();
        for i in 0..MAX_URLS + 10 {
            text.push_str(&format!("http://h{i}.example/ "));
        }
        let mut s = UrlScanner::default();
        s.feed(&schemes, text.as_bytes(), &mut |_| {});
        s.flush(&schemes, &mut |_| {});
        assert_eq!(s.urls.len(), MAX_URLS);
        assert_eq!(s.dropped, 10);
        // A long run without blanks is cut, not buffered without bound.
        let long = format!("http://{}", "a".repeat(3 * MAX_URL));
        let (urls, _) = scan_chunks(&schemes, &[long.as_bytes()]);
        assert_eq!(urls.len(), 1);
        assert_eq!(urls[0].len(), MAX_URL);
    }

    #[test]
    fn invalid_scheme_is_refused() {
        assert!(UrlSchemes::new(&["bad scheme"]).is_err());
        assert!(UrlSchemes::new(&["9p"]).is_err());
        let s = UrlSchemes::new(&["News:", "ssh://"]).unwrap();
        assert!(s.prefixes().contains(&"news:".to_string()));
        assert!(s.prefixes().contains(&"ssh://".to_string()));
    }
}
