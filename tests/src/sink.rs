//! Postfix's `smtp-sink -d DIR/%M.` as the mail server of a test: every
//! message it accepts is stored as one file, so a test can tell which mails
//! were delivered and compare them byte for byte with what the client sent.
//!
//! Semantics of `-d` (Postfix 3.7, Debian 12), checked by experiment:
//! * the file is created when the server answers `354` to DATA (nothing is
//!   created for a transaction that never reaches DATA);
//! * the content is written as it arrives (stdio-buffered, so a partial
//!   message shows up in 4 KiB steps) and the file stays open until the end
//!   of data, when smtp-sink appends one empty line and closes it;
//! * when the session dies mid-DATA the partial file is removed, but only
//!   when smtp-sink notices (seconds later; never, while a dropped session
//!   waits for its 100 s read timeout).
//!
//! So a message counts as delivered only when its file is closed (no
//! longer among smtp-sink's open descriptors) and ends with the empty line.
//! Content as stored: smtp-sink's own header lines (`X-Client-Addr` ...
//! `Received:` and its two continuation lines), then the message with LF
//! line endings and dot-unstuffed, then the empty line.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::mail::SmtpSink;

/// One message smtp-sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `X-Mail-Args` (the MAIL FROM arguments, e.g. `<a@example.org>`).
    pub mail_from: String,
    /// `X-Rcpt-Args`, one per RCPT command, in order.
    pub rcpt_to: Vec<String>,
    /// The message (header and body) as received, LF line endings,
    /// dot-unstuffed; smtp-sink's own headers and final empty line removed.
    pub message: Vec<u8>,
}

/// `smtp-sink` storing messages in a private directory; the process is
/// killed and the directory removed on drop.
pub struct MailSink {
    sink: SmtpSink,
    dir: PathBuf,
}

impl MailSink {
    /// Starts smtp-sink on `listen` (`addr:port`) in namespace `ns`,
    /// storing into a new directory under the system temp dir.
    pub fn start(ns: &str, listen: &str) -> MailSink {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("smtp-sink-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("sink dir");
        let template = format!("{}/%M.", dir.display());
        let sink = SmtpSink::start(ns, listen, &["-d", &template]);
        MailSink { sink, dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files smtp-sink holds open: transactions in progress.
    fn open_files(&self) -> HashSet<PathBuf> {
        let fd_dir = PathBuf::from(format!("/proc/{}/fd", self.sink.pid()));
        let Ok(rd) = std::fs::read_dir(fd_dir) else {
            return HashSet::new();
        };
        rd.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|p| p.starts_with(&self.dir))
            .collect()
    }

    /// (complete messages, files of transactions still in progress).
    fn scan(&self) -> (Vec<(PathBuf, Stored)>, usize) {
        let open = self.open_files();
        let mut done = Vec::new();
        let mut pending = 0;
        // File names are random past the minute: order by the time of the
        // last write (the end of data), then name.
        let mut names: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| {
                    let e = e.ok()?;
                    Some((e.metadata().ok()?.modified().ok()?, e.path()))
                })
                .collect()
            })
            .unwrap_or_default();
        names.sort();
        for (_, p) in names {
            if open.contains(&p) {
                pending += 1;
                continue;
            }
            match std::fs::read(&p).ok().and_then(|b| parse_dump(&b)) {
                Some(s) => done.push((p, s)),
                // Closed but without the final empty line: an aborted
                // transaction smtp-sink has not removed yet.
                None => pending += 1,
            }
        }
        (done, pending)
    }

    /// The messages delivered so far (complete ones only), in the order
    /// they were completed.
    pub fn stored(&self) -> Vec<Stored> {
        self.scan().0.into_iter().map(|(_, s)| s).collect()
    }

    /// The delivered messages' content (see [`Stored::message`]).
    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.stored().into_iter().map(|s| s.message).collect()
    }

    /// Transactions past DATA whose message is not complete (in progress,
    /// held back, or aborted and not yet cleaned up by smtp-sink).
    pub fn partial(&self) -> usize {
        self.scan().1
    }

    /// Waits (at most `timeout`) until at least `n` messages are delivered;
    /// returns the messages then.
    pub fn wait_count(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let end = Instant::now() + timeout;
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() >= end {
                return m;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes every stored file (between scenarios on one sink).
    pub fn clear(&self) {
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Splits a complete dump file; `None` when it lacks the final empty line
/// or smtp-sink's header block.
pub fn parse_dump(bytes: &[u8]) -> Option<Stored> {
    let body = bytes.strip_suffix(b"\n")?;
    if !body.ends_with(b"\n") {
        return None;
    }
    let mut mail_from = None;
    let mut rcpt_to = Vec::new();
    let mut rest = body;
    let mut in_received = false;
    loop {
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let line = rest.get(..nl)?;
        if in_received && !line.starts_with(b"\t") {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if let Some(v) = text.strip_prefix("X-Mail-Args: ") {
            mail_from = Some(v.to_string());
        } else if let Some(v) = text.strip_prefix("X-Rcpt-Args: ") {
            rcpt_to.push(v.to_string());
        } else if text.starts_with("Received: ") {
            in_received = true;
        } else if !in_received && !text.starts_with("X-") {
            return None;
        }
        rest = rest.get(nl + 1..)?;
    }
    Some(Stored {
        mail_from: mail_from?,
        rcpt_to,
        message: rest.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_is_split_into_envelope_and_message() {
        let dump = b"X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: x\n\
X-Mail-Args: <a@b>\nX-Rcpt-Args: <c@d>\nX-Rcpt-Args: <e@f>\nReceived: from x ([127.0.0.1])\n\
\tby smtp-sink (smtp-sink) with ESMTP id 78ebac34;\n\tWed, 25 Nov 2026 14:13:52 +0000 (UTC)\n\
Subject: y\n\nfull\n.dot\n\n";
        let s = parse_dump(dump).expect("complete");
        assert_eq!(s.mail_from, "<a@b>");
        assert_eq!(s.rcpt_to, ["<c@d>", "<e@f>"]);
        assert_eq!(s.message, b"Subject: y\n\nfull\n.dot\n");
        // Cut anywhere before the final empty line: not complete.
        assert_eq!(parse_dump(&dump[..dump.len() - 1]), None);
        assert_eq!(parse_dump(&dump[..120]), None);
        assert_eq!(parse_dump(b""), None);
    }
}
