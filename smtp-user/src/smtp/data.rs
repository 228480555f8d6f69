//! DATA content framing (RFC 5321 §4.5.2): dot-unstuffing and end-of-data
//! detection, streamed over chunks of any size.
//!
//! The end of data is `CRLF . CRLF` only. A dot line with a bare LF on either
//! side (`\n.\n`, `\r\n.\n`, `\n.\r\n`) is the ambiguity behind SMTP
//! smuggling: it is reported and kept as content, the message does not end.
//! Lines are not buffered: content is returned as slices of the input, found
//! with `memmem` on `"\n."` (only dot lines need a closer look).

use memchr::memmem;

/// Where the decoder is within a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    /// At the first byte of a line.
    LineStart,
    /// Saw `.` at a line start.
    Dot,
    /// Saw `.` then CR at a line start.
    DotCr,
    /// Inside a line.
    Mid,
}

/// One piece of decoded content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Message bytes (leading dots removed).
    Content(&'a [u8]),
    /// A bare-LF dot line (`pattern` names it); `content` is its unstuffed bytes.
    Smuggling {
        pattern: &'static str,
        content: &'static [u8],
    },
    /// `CRLF . CRLF`: the message ended; bytes after it are commands again.
    End,
    /// All input consumed.
    NeedMore,
}

/// Streaming dot-unstuffer for one message.
#[derive(Debug, Clone)]
pub struct DotDecoder {
    pos: Pos,
    /// The line before the current one ended with CRLF (the DATA line counts as one).
    prev_crlf: bool,
    /// The last content byte returned was CR.
    last_cr: bool,
}

impl Default for DotDecoder {
    fn default() -> Self {
        DotDecoder {
            pos: Pos::LineStart,
            prev_crlf: true,
            last_cr: false,
        }
    }
}

static FINDER: std::sync::LazyLock<memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memmem::Finder::new(b"\n."));

impl DotDecoder {
    pub fn reset(&mut self) {
        *self = DotDecoder::default();
    }

    /// The transport lost bytes: we are somewhere inside a line.
    pub fn gap(&mut self) {
        self.pos = Pos::Mid;
        self.last_cr = false;
    }

    /// Next piece of `input`: returns the bytes consumed and the piece.
    pub fn next<'a>(&mut self, input: &'a [u8]) -> (usize, Piece<'a>) {
        let Some(&first) = input.first() else {
            return (0, Piece::NeedMore);
        };
        match self.pos {
            Pos::LineStart => {
                if first == b'.' {
                    self.pos = Pos::Dot;
                    return (1, Piece::Content(&[]));
                }
                self.pos = Pos::Mid;
                (0, Piece::Content(&[]))
            }
            Pos::Dot => match first {
                b'\r' => {
                    self.pos = Pos::DotCr;
                    (1, Piece::Content(&[]))
                }
                b'\n' => {
                    let pattern = if self.prev_crlf {
                        "\\r\\n.\\n"
                    } else {
                        "\\n.\\n"
                    };
                    self.prev_crlf = false;
                    self.last_cr = false;
                    self.pos = Pos::LineStart;
                    (
                        1,
                        Piece::Smuggling {
                            pattern,
                            content: b"\n",
                        },
                    )
                }
                _ => {
                    // Dot-stuffed line: the dot is dropped.
                    self.pos = Pos::Mid;
                    (0, Piece::Content(&[]))
                }
            },
            Pos::DotCr => {
                if first == b'\n' {
                    if self.prev_crlf {
                        self.reset();
                        return (1, Piece::End);
                    }
                    self.prev_crlf = true;
                    self.last_cr = false;
                    self.pos = Pos::LineStart;
                    return (
                        1,
                        Piece::Smuggling {
                            pattern: "\\n.\\r\\n",
                            content: b"\r\n",
                        },
                    );
                }
                self.pos = Pos::Mid;
                self.last_cr = true;
                (0, Piece::Content(b"\r"))
            }
            Pos::Mid => match FINDER.find(input) {
                Some(k) => {
                    // input[..=k] ends a line; a dot line starts at k + 1.
                    self.prev_crlf = if k == 0 {
                        self.last_cr
                    } else {
                        input.get(k - 1) == Some(&b'\r')
                    };
                    self.last_cr = false;
                    self.pos = Pos::Dot;
                    (k + 2, Piece::Content(&input[..=k]))
                }
                None => {
                    let n = input.len();
                    match input.last() {
                        Some(b'\n') => {
                            self.prev_crlf = if n >= 2 {
                                input.get(n - 2) == Some(&b'\r')
                            } else {
                                self.last_cr
                            };
                            self.last_cr = false;
                            self.pos = Pos::LineStart;
                        }
                        last => self.last_cr = last == Some(&b'\r'),
                    }
                    (n, Piece::Content(input))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (content, smuggling patterns, consumed up to End)
    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<&'static str>, Option<usize>) {
        let mut d = DotDecoder::default();
        let (mut content, mut smug, mut total) = (Vec::new(), Vec::new(), 0usize);
        for chunk in chunks {
            let mut rest = *chunk;
            loop {
                let (n, piece) = d.next(rest);
                total += n;
                rest = &rest[n..];
                match piece {
                    Piece::Content(c) => content.extend_from_slice(c),
                    Piece::Smuggling {
                        pattern,
                        content: c,
                    } => {
                        smug.push(pattern);
                        content.extend_from_slice(c);
                    }
                    Piece::End => return (content, smug, Some(total)),
                    Piece::NeedMore => break,
                }
            }
        }
        (content, smug, None)
    }

    #[test]
    fn unstuffs_and_ends_at_crlf_dot_crlf() {
        let msg: &[u8] = b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n";
        for size in 1..msg.len() {
            let chunks: Vec<&[u8]> = msg.chunks(size).collect();
            assert_eq!(
                run(&chunks),
                (
                    b"Subject: x\r\n\r\n.dot\r\n".to_vec(),
                    vec![],
                    Some(msg.len() - 6)
                )
            );
        }
        assert_eq!(run(&[b".\r\n"]), (vec![], vec![], Some(3)));
    }

    #[test]
    fn bare_lf_dot_lines_are_smuggling_not_end() {
        let (c, s, end) = run(&[b"a\n.\nb\r\n.\nc\n.\r\nd\r\n.\r\n"]);
        assert_eq!(c, b"a\n\nb\r\n\nc\n\r\nd\r\n".to_vec());
        assert_eq!(s, vec!["\\n.\\n", "\\r\\n.\\n", "\\n.\\r\\n"]);
        assert!(end.is_some());
    }
}
