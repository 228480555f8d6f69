//! Bounded line splitter for one direction of the command/reply streams.
//!
//! Bytes arrive in chunks of any size; [`LineBuffer::split`] returns complete
//! lines (terminated by LF, an optional CR before it is stripped) and keeps a
//! partial line until its end arrives. A line longer than the limit is never
//! buffered whole: the splitter reports [`Split::TooLong`] once, then discards
//! bytes up to the next LF. Bare-LF line endings are accepted here (clients
//! such as the Haka workshop capture use them for commands).

/// Result of one [`LineBuffer::split`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Everything was consumed and no line is complete yet.
    NeedMore,
    /// A complete line `input[start..end]` (without line ending) lies in the input.
    InInput {
        start: usize,
        end: usize,
        consumed: usize,
        crlf: bool,
    },
    /// A complete line is in the buffer (see [`LineBuffer::line`]).
    Buffered { consumed: usize, crlf: bool },
    /// The line exceeded the limit; its bytes are discarded up to the next LF
    /// (included in `consumed` when `ended`).
    TooLong { consumed: usize, ended: bool },
    /// `consumed` bytes of an over-long line were discarded (its LF included
    /// when `ended`).
    Skipped { consumed: usize, ended: bool },
}

/// Per-direction line splitter.
#[derive(Debug, Clone)]
pub struct LineBuffer {
    /// Bytes of the current, incomplete line; never longer than `limit + 1`.
    buf: Vec<u8>,
    /// Maximum line length in bytes, excluding the line ending.
    limit: usize,
    /// True while discarding the rest of an over-long line (up to its LF).
    skipping: bool,
    /// True when `buf` holds a complete line returned by the last `split`.
    complete: bool,
    /// First bytes of the last over-long line (`head[..head_len]`), so the
    /// caller can tell which command it was.
    head: [u8; HEAD],
    /// Valid bytes in `head`; at most `HEAD`.
    head_len: usize,
}

/// Bytes of an over-long line kept by [`LineBuffer::too_long_head`].
const HEAD: usize = 16;

impl LineBuffer {
    pub fn new(limit: usize) -> LineBuffer {
        LineBuffer {
            buf: Vec::new(),
            limit,
            skipping: false,
            complete: false,
            head: [0; HEAD],
            head_len: 0,
        }
    }

    /// The first bytes (at most 16) of the line last reported as [`Split::TooLong`].
    pub fn too_long_head(&self) -> &[u8] {
        self.head.get(..self.head_len).unwrap_or(&[])
    }

    /// Remembers the first bytes of `buf ++ input` as the over-long line's head.
    fn keep_head(&mut self, input: &[u8]) {
        let from_buf = self.buf.len().min(HEAD);
        let from_input = (HEAD - from_buf).min(input.len());
        self.head[..from_buf].copy_from_slice(&self.buf[..from_buf]);
        self.head[from_buf..from_buf + from_input].copy_from_slice(&input[..from_input]);
        self.head_len = from_buf + from_input;
    }

    /// The line returned by the last [`Split::Buffered`] (without line ending).
    pub fn line(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes of the incomplete line currently held.
    pub fn pending_len(&self) -> usize {
        if self.complete {
            0
        } else {
            self.buf.len()
        }
    }

    /// Drop any partial line and discard input up to the next LF (after a gap).
    pub fn resync(&mut self) {
        self.buf.clear();
        self.complete = false;
        self.skipping = true;
    }

    /// Forget all state (the stream now carries something else).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.complete = false;
        self.skipping = false;
    }

    /// Take the next line out of `input`. Call again with the unconsumed rest.
    pub fn split(&mut self, input: &[u8]) -> Split {
        if self.complete {
            self.buf.clear();
            self.complete = false;
        }
        let lf = memchr::memchr(b'\n', input);
        if self.skipping {
            return match lf {
                Some(i) => {
                    self.skipping = false;
                    Split::Skipped {
                        consumed: i + 1,
                        ended: true,
                    }
                }
                None => Split::Skipped {
                    consumed: input.len(),
                    ended: false,
                },
            };
        }
        match lf {
            Some(i) => {
                let total = self.buf.len() + i;
                if total > self.limit + 1
                    || (total == self.limit + 1 && !ends_cr(&self.buf, &input[..i]))
                {
                    // Over-long line completed in this chunk: report and drop it.
                    self.keep_head(&input[..i]);
                    self.buf.clear();
                    return Split::TooLong {
                        consumed: i + 1,
                        ended: true,
                    };
                }
                if self.buf.is_empty() {
                    let crlf = i > 0 && input.get(i - 1) == Some(&b'\r');
                    let end = if crlf { i - 1 } else { i };
                    Split::InInput {
                        start: 0,
                        end,
                        consumed: i + 1,
                        crlf,
                    }
                } else {
                    self.buf.extend_from_slice(&input[..i]);
                    let crlf = self.buf.last() == Some(&b'\r');
                    if crlf {
                        self.buf.pop();
                    }
                    self.complete = true;
                    Split::Buffered {
                        consumed: i + 1,
                        crlf,
                    }
                }
            }
            None => {
                if self.buf.len() + input.len() > self.limit + 1 {
                    // Do not keep the line: skip to its LF.
                    self.keep_head(input);
                    self.buf.clear();
                    self.skipping = true;
                    return Split::TooLong {
                        consumed: input.len(),
                        ended: false,
                    };
                }
                self.buf.extend_from_slice(input);
                Split::NeedMore
            }
        }
    }
}

/// Whether the last byte of `a ++ b` is CR.
fn ends_cr(a: &[u8], b: &[u8]) -> bool {
    match b.last() {
        Some(&c) => c == b'\r',
        None => a.last() == Some(&b'\r'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(limit: usize, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, &'static str>> {
        let mut lb = LineBuffer::new(limit);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut input = *chunk;
            while !input.is_empty() {
                let consumed = match lb.split(input) {
                    Split::NeedMore => input.len(),
                    Split::InInput {
                        start,
                        end,
                        consumed,
                        ..
                    } => {
                        out.push(Ok(input[start..end].to_vec()));
                        consumed
                    }
                    Split::Buffered { consumed, .. } => {
                        out.push(Ok(lb.line().to_vec()));
                        consumed
                    }
                    Split::TooLong { consumed, .. } => {
                        out.push(Err("too long"));
                        consumed
                    }
                    Split::Skipped { consumed, .. } => consumed,
                };
                input = &input[consumed..];
            }
        }
        out
    }

    #[test]
    fn splits_crlf_and_bare_lf_across_chunks() {
        let got = lines(10, &[b"EHLO a\r", b"\nMAIL\n", b"QU", b"IT\r\n"]);
        assert_eq!(
            got,
            vec![
                Ok(b"EHLO a".to_vec()),
                Ok(b"MAIL".to_vec()),
                Ok(b"QUIT".to_vec())
            ]
        );
    }

    #[test]
    fn over_long_line_is_reported_once_and_skipped() {
        let got = lines(4, &[b"abc", b"defgh", b"ij\r\nok\r\n"]);
        assert_eq!(got, vec![Err("too long"), Ok(b"ok".to_vec())]);
        let got = lines(4, &[b"abcd\r\nabcde\r\n"]);
        assert_eq!(got, vec![Ok(b"abcd".to_vec()), Err("too long")]);
    }

    #[test]
    fn over_long_line_keeps_its_first_bytes() {
        let mut lb = LineBuffer::new(20);
        assert_eq!(lb.split(b"MAIL FROM:<"), Split::NeedMore);
        let long = [b'x'; 30];
        assert!(matches!(
            lb.split(&long),
            Split::TooLong { ended: false, .. }
        ));
        assert_eq!(lb.too_long_head(), b"MAIL FROM:<xxxxx");
        let mut lb = LineBuffer::new(4);
        assert!(matches!(
            lb.split(b"RCPT TO:<a>\r\n"),
            Split::TooLong { ended: true, .. }
        ));
        assert_eq!(lb.too_long_head(), b"RCPT TO:<a>\r");
    }
}
