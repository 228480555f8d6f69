//! Files of a message (Suricata's `fileinfo`): the decoded content of every
//! leaf MIME part that has a file name or is not text, hashed as it
//! streams.
//!
//! The MIME parser opens a [`FileTracker`] entry when such a part's header
//! block ends, gives it the part's decoded bytes as they come, and closes
//! it when the part ends (a boundary, the end of the message). Closing
//! emits one [`FileInfo`] event: size, MD5, SHA-1, SHA-256 (computed
//! incrementally: a file is never buffered whole), the media type sniffed
//! from its first [`SNIFF_BYTES`] bytes (the `infer` crate's signatures;
//! `text/plain` for text it does not know, else `application/octet-stream`)
//! and its state: `TRUNCATED` when bytes of it were lost (a capture gap) or
//! the message was cut short, else `CLOSED`.
//!
//! Line ends: in a part sent as is (7bit, 8bit, binary) or
//! quoted-printable, the line end before the next boundary belongs to the
//! boundary (RFC 2046 §5.1.1), not to the file: the last line end seen is
//! held back and written only when more content follows, as Suricata does.
//! Memory: one file is open at a time per parser, with its hash states and
//! the sniff buffer.

use md5::Md5;
use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Bytes of a file's start kept for type sniffing.
pub const SNIFF_BYTES: usize = 4096;

/// How a file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FileState {
    /// Seen whole.
    #[serde(rename = "CLOSED")]
    Closed,
    /// Bytes were lost, or the message ended before the part did.
    #[serde(rename = "TRUNCATED")]
    Truncated,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Closed => "CLOSED",
            FileState::Truncated => "TRUNCATED",
        }
    }
}

/// One file of a message, emitted when its part ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    pub tx_id: u32,
    /// The MIME part (numbered as [`super::super::events::MimePart::part`]).
    pub part: u32,
    /// The name a mail client shows, if the part has one.
    pub filename: Option<String>,
    /// The part's declared Content-Type (lower case).
    pub content_type: String,
    /// Decoded bytes.
    pub size: u64,
    /// Lower-case hex digests of the decoded bytes.
    pub md5: String,
    pub sha1: String,
    pub sha256: String,
    /// The media type sniffed from the first bytes.
    pub mimetype: &'static str,
    pub state: FileState,
    /// Bytes of the file were lost in a capture gap.
    pub gaps: bool,
    /// The transaction's envelope when the file ended (Suricata puts the
    /// `smtp` object on `fileinfo` events); filled by the session.
    pub helo: Option<String>,
    pub mail_from: Option<String>,
    pub rcpt_to: Vec<String>,
}

/// The file being read.
#[derive(Debug)]
struct OpenFile {
    part: u32,
    filename: Option<String>,
    content_type: String,
    size: u64,
    md5: Md5,
    sha1: Sha1,
    sha256: Sha256,
    /// The first bytes, at most `SNIFF_BYTES`.
    head: Vec<u8>,
    /// The part is sent as is or quoted-printable: its last line end is held.
    hold_eol: bool,
    /// The line end held back (`\r`, `\n` or `\r\n`), written if more follows.
    held: [u8; 2],
    held_len: usize,
    /// Bytes of it were lost.
    gap: bool,
}

impl OpenFile {
    fn write(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.size += data.len() as u64;
        self.md5.update(data);
        self.sha1.update(data);
        self.sha256.update(data);
        let room = SNIFF_BYTES.saturating_sub(self.head.len());
        if room > 0 {
            self.head
                .extend_from_slice(data.get(..room.min(data.len())).unwrap_or(&[]));
        }
    }

    fn write_held(&mut self) {
        let held = self.held;
        self.write(held.get(..self.held_len).unwrap_or(&[]));
        self.held_len = 0;
    }

    fn data(&mut self, data: &[u8]) {
        if !self.hold_eol {
            self.write(data);
            return;
        }
        match data {
            [] => {}
            [b'\n'] if self.held_len == 1 && self.held[0] == b'\r' => {
                self.held = *b"\r\n";
                self.held_len = 2;
            }
            _ => {
                self.write_held();
                let eol = if data.ends_with(b"\r\n") {
                    2
                } else if data.ends_with(b"\n") || data.ends_with(b"\r") {
                    1
                } else {
                    0
                };
                let (body, end) = data.split_at(data.len() - eol);
                self.write(body);
                self.held[..eol].copy_from_slice(end);
                self.held_len = eol;
            }
        }
    }

    fn close(self, tx_id: u32, cut: bool) -> FileInfo {
        FileInfo {
            tx_id,
            part: self.part,
            filename: self.filename,
            content_type: self.content_type,
            size: self.size,
            md5: hex(&self.md5.finalize()),
            sha1: hex(&self.sha1.finalize()),
            sha256: hex(&self.sha256.finalize()),
            mimetype: sniff(&self.head),
            state: if cut || self.gap {
                FileState::Truncated
            } else {
                FileState::Closed
            },
            gaps: self.gap,
            helo: None,
            mail_from: None,
            rcpt_to: Vec::new(),
        }
    }
}

/// The media type of a file starting with `head`.
pub fn sniff(head: &[u8]) -> &'static str {
    match infer::get(head) {
        Some(t) => t.mime_type(),
        None if looks_like_text(head) => "text/plain",
        None => "application/octet-stream",
    }
}

/// UTF-8 without control characters other than blanks and line ends.
fn looks_like_text(head: &[u8]) -> bool {
    // The sniff buffer may cut a character: judge the complete ones.
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(head.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or("")
        }
        Err(_) => return false,
    };
    valid
        .bytes()
        .all(|c| c >= 0x20 || matches!(c, b'\t' | b'\n' | b'\r' | 0x0c))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The file of the part being decoded, if it is one.
#[derive(Debug, Default)]
pub struct FileTracker {
    open: Option<Box<OpenFile>>,
}

impl FileTracker {
    /// A file part starts. `hold_eol`: sent as is or quoted-printable.
    pub fn open(
        &mut self,
        part: u32,
        filename: Option<String>,
        content_type: &str,
        hold_eol: bool,
    ) {
        self.open = Some(Box::new(OpenFile {
            part,
            filename,
            content_type: content_type.to_string(),
            size: 0,
            md5: Md5::new(),
            sha1: Sha1::new(),
            sha256: Sha256::new(),
            head: Vec::new(),
            hold_eol,
            held: [0; 2],
            held_len: 0,
            gap: false,
        }));
    }

    /// A file is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Decoded bytes of the open file (none open: ignored).
    pub fn data(&mut self, data: &[u8]) {
        if let Some(f) = &mut self.open {
            f.data(data);
        }
    }

    /// Bytes of the open file were lost.
    pub fn gap(&mut self) {
        if let Some(f) = &mut self.open {
            f.gap = true;
        }
    }

    /// The part ended: the file, if one was open. `cut`: the message
    /// ended before the part did.
    pub fn close(&mut self, tx_id: u32, cut: bool) -> Option<FileInfo> {
        self.open.take().map(|f| f.close(tx_id, cut))
    }

    /// Forget the open file (new message).
    pub fn reset(&mut self) {
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(hold: bool, chunks: &[&[u8]]) -> FileInfo {
        let mut t = FileTracker::default();
        t.open(1, Some("a.bin".into()), "application/octet-stream", hold);
        for c in chunks {
            t.data(c);
        }
        t.close(0, false).unwrap()
    }

    #[test]
    fn hashes_known_vectors() {
        let f = file(false, &[b"ab", b"c"]);
        assert_eq!(f.size, 3);
        assert_eq!(f.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(f.sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            f.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(f.state, FileState::Closed);
        assert_eq!(f.mimetype, "text/plain");
    }

    #[test]
    fn last_line_end_is_held_back_in_any_cut() {
        let text = b"line one\r\nline two\r\n";
        for cut in 1..text.len() {
            let chunks: Vec<&[u8]> = text.chunks(cut).collect();
            let f = file(true, &chunks);
            assert_eq!(f.size, text.len() as u64 - 2, "cut {cut}");
            let want = file(false, &[&text[..text.len() - 2]]);
            assert_eq!(f.sha256, want.sha256, "cut {cut}");
        }
        // Base64 parts keep every byte.
        assert_eq!(file(false, &[text]).size, text.len() as u64);
    }

    #[test]
    fn sniffs_types_from_the_first_bytes() {
        assert_eq!(sniff(b"%PDF-1.7\n..."), "application/pdf");
        assert_eq!(sniff(b"PK\x03\x04\x14\x00\x00\x00"), "application/zip");
        assert_eq!(
            sniff(b"MZ\x90\x00\x03\x00\x00\x00"),
            "application/vnd.microsoft.portable-executable"
        );
        assert_eq!(sniff(b"\x00\x01\x02\xff"), "application/octet-stream");
        assert_eq!(sniff("caf\u{e9}".as_bytes()), "text/plain");
    }

    #[test]
    fn gap_truncates() {
        let mut t = FileTracker::default();
        t.open(2, None, "image/png", false);
        t.data(b"\x89PNG\r\n\x1a\n");
        t.gap();
        let f = t.close(3, false).unwrap();
        assert_eq!((f.state, f.tx_id, f.part), (FileState::Truncated, 3, 2));
        assert_eq!(f.mimetype, "image/png");
        assert!(t.close(3, false).is_none());
    }
}
