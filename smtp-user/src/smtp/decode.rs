//! Streaming content-transfer-encoding decoders (RFC 2045): base64 and
//! quoted-printable. Both keep only a few bytes of state between chunks, so a
//! body is decoded piece by piece whatever the chunk boundaries.

/// Streaming base64 decoder; whitespace is skipped, other invalid bytes are
/// counted and skipped.
#[derive(Debug, Default, Clone)]
pub struct Base64 {
    /// Bits of the current quantum, `sextets` of them (0..=3) are valid.
    acc: u32,
    sextets: u8,
    /// Bytes that are neither base64 alphabet, padding nor whitespace.
    pub invalid: u64,
}

/// Base64 alphabet value of each byte; `INVALID` outside the alphabet.
const INVALID: u8 = 0xff;
static SEXTETS: [u8; 256] = {
    let mut t = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

impl Base64 {
    /// Decodes `input`, appending bytes to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &c in input {
            match SEXTETS[usize::from(c)] {
                v if v != INVALID => {
                    self.acc = (self.acc << 6) | u32::from(v);
                    self.sextets += 1;
                    if self.sextets == 4 {
                        out.extend_from_slice(&[
                            (self.acc >> 16) as u8,
                            (self.acc >> 8) as u8,
                            self.acc as u8,
                        ]);
                        self.acc = 0;
                        self.sextets = 0;
                    }
                }
                _ if c == b'=' => self.flush_padding(out),
                _ if c.is_ascii_whitespace() => {}
                _ => self.invalid += 1,
            }
        }
    }

    /// Padding ends the quantum: emit the bytes its sextets carry.
    fn flush_padding(&mut self, out: &mut Vec<u8>) {
        match self.sextets {
            2 => out.push((self.acc >> 4) as u8),
            3 => out.extend_from_slice(&[(self.acc >> 10) as u8, (self.acc >> 2) as u8]),
            _ => {}
        }
        self.acc = 0;
        self.sextets = 0;
    }

    pub fn reset(&mut self) {
        *self = Base64::default();
    }
}

/// Streaming quoted-printable decoder.
#[derive(Debug, Default, Clone)]
pub struct QuotedPrintable {
    /// Bytes after a pending `=`: `None` = no escape in progress.
    escape: Option<Escape>,
}

#[derive(Debug, Clone, Copy)]
enum Escape {
    /// Saw `=`.
    Start,
    /// Saw `=` and one hex digit.
    Hex(u8),
    /// Saw `=` then CR (soft line break in progress).
    Cr,
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

impl QuotedPrintable {
    /// Decodes `input`, appending bytes to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while let Some((&c, tail)) = rest.split_first() {
            match self.escape {
                None => {
                    // Copy the run up to the next `=` at once.
                    let run = memchr::memchr(b'=', rest).unwrap_or(rest.len());
                    out.extend_from_slice(&rest[..run]);
                    if run < rest.len() {
                        self.escape = Some(Escape::Start);
                        rest = &rest[run + 1..];
                    } else {
                        rest = &[];
                    }
                    continue;
                }
                Some(Escape::Start) => {
                    self.escape = match c {
                        b'\r' => Some(Escape::Cr),
                        b'\n' => None,
                        _ => match hex(c) {
                            Some(h) => Some(Escape::Hex(h)),
                            None => {
                                out.extend_from_slice(&[b'=', c]);
                                None
                            }
                        },
                    };
                }
                Some(Escape::Hex(h)) => {
                    match hex(c) {
                        Some(l) => out.push((h << 4) | l),
                        None => {
                            let first = if h < 10 { b'0' + h } else { b'A' + h - 10 };
                            out.extend_from_slice(&[b'=', first, c]);
                        }
                    }
                    self.escape = None;
                }
                Some(Escape::Cr) => {
                    self.escape = None;
                    if c != b'\n' {
                        // `=\r` without LF: treat as a soft break and keep this byte.
                        continue;
                    }
                }
            }
            rest = tail;
        }
    }

    pub fn reset(&mut self) {
        self.escape = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(chunks: &[&[u8]]) -> (Vec<u8>, u64) {
        let mut d = Base64::default();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out);
        }
        (out, d.invalid)
    }

    #[test]
    fn base64_across_chunks() {
        assert_eq!(
            b64(&[b"aGVsbG8gd29y", b"bGQ=\r\n"]),
            (b"hello world".to_vec(), 0)
        );
        assert_eq!(
            b64(&[b"aGV", b"sbG", b"8h\r\n", b"IQ="]),
            (b"hello!!".to_vec(), 0)
        );
        assert_eq!(b64(&[b"aG!V*sbG8="]), (b"hello".to_vec(), 2));
    }

    fn qp(chunks: &[&[u8]]) -> Vec<u8> {
        let mut d = QuotedPrintable::default();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out);
        }
        out
    }

    #[test]
    fn quoted_printable_across_chunks() {
        assert_eq!(
            qp(&[b"caf=C3=A9 =\r\nau lait\r\n"]),
            "café au lait\r\n".as_bytes()
        );
        assert_eq!(
            qp(&[b"caf=", b"C", b"3=A9 =\r", b"\nx"]),
            "café x".as_bytes()
        );
        assert_eq!(qp(&[b"a=zz b=\nc"]), b"a=zz bc".to_vec());
    }
}
