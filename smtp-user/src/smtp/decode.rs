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
    /// The SIMD path refused the current line (a stray byte or padding in
    /// it): the table paths take it up to its line break, so that a long
    /// line with many stray bytes is not scanned again after each one.
    refused_line: bool,
}

/// Marks in [`SEXTET`] for bytes outside the alphabet (all ≥ 64).
const PAD: u8 = 0x40;
const SPACE: u8 = 0x80;
const INVALID: u8 = 0xff;

/// Value of every byte: 0..=63 for the alphabet, else `PAD`, `SPACE` or `INVALID`.
static SEXTET: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        if i < 10 {
            t[b'0' as usize + i] = 52 + i as u8;
        }
        i += 1;
    }
    t[b'+' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'=' as usize] = PAD;
    // `u8::is_ascii_whitespace`: space, \t, \n, \x0c, \r.
    t[b' ' as usize] = SPACE;
    t[b'\t' as usize] = SPACE;
    t[b'\n' as usize] = SPACE;
    t[0x0c] = SPACE;
    t[b'\r' as usize] = SPACE;
    t
};

impl Base64 {
    /// Decodes `input`, appending bytes to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() / 4 * 3 + 3);
        let mut rest = input;
        loop {
            // Fastest path at a quantum boundary: a line's whole groups,
            // decoded with SIMD; the paths below decide every odd case
            // (padding, stray bytes, a quantum split across chunks).
            if self.sextets == 0 && !self.refused_line {
                match line_groups(rest, out) {
                    Some(used) => rest = rest.get(used..).unwrap_or_default(),
                    None => self.refused_line = true,
                }
            }
            // Fast path at a quantum boundary: whole groups of four
            // alphabet bytes (a base64 line is made of them).
            if self.sextets == 0 {
                while let Some((&[a, b, c, d], tail)) = rest.split_first_chunk::<4>() {
                    let (a, b, c, d) = (
                        SEXTET[usize::from(a)],
                        SEXTET[usize::from(b)],
                        SEXTET[usize::from(c)],
                        SEXTET[usize::from(d)],
                    );
                    if (a | b | c | d) >= 64 {
                        break;
                    }
                    let n =
                        u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
                    out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
                    rest = tail;
                }
            }
            let Some((&c, tail)) = rest.split_first() else {
                return;
            };
            rest = tail;
            match SEXTET[usize::from(c)] {
                v if v < 64 => {
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
                PAD => self.flush_padding(out),
                SPACE => {
                    if c == b'\n' {
                        self.refused_line = false;
                    }
                }
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

    /// The part ended: a last quantum without its padding is decoded as if
    /// padded (as clients, Suricata and Python's decoder do).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.flush_padding(out);
    }

    pub fn reset(&mut self) {
        *self = Base64::default();
    }
}

/// Decodes the whole groups of plain alphabet bytes that start `input` and
/// end before its first line break (SIMD, `base64-simd`); appends the bytes
/// to `out` and returns how many input bytes were used (0: too short, or
/// not a line of base64), `None` when the line holds anything else
/// (padding, stray bytes): it is left to the table paths.
fn line_groups(input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    /// Shorter runs go the table path: the call costs more.
    const MIN_RUN: usize = 16;
    if input.first().is_none_or(|&c| SEXTET[usize::from(c)] >= 64) {
        return Some(0);
    }
    let line = memchr::memchr2(b'\r', b'\n', input).unwrap_or(input.len());
    let mut run = line / 4 * 4;
    // A padded last group is left to the table path.
    if run >= 4 && input.get(run - 1) == Some(&b'=') {
        run -= 4;
    }
    let Some(groups) = input.get(..run).filter(|g| g.len() >= MIN_RUN) else {
        return Some(0);
    };
    let start = out.len();
    out.resize(start + run / 4 * 3, 0);
    let decoded = out.get_mut(start..).map(|dst| {
        base64_simd::STANDARD
            .decode(groups, base64_simd::Out::from_slice(dst))
            .map(|d| d.len())
    });
    match decoded {
        Some(Ok(n)) if n == run / 4 * 3 => Some(run),
        _ => {
            out.truncate(start);
            None
        }
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

    /// Byte-at-a-time decoder (the specification): alphabet bytes
    /// accumulate, `=` flushes the quantum, whitespace is skipped, the rest
    /// is counted invalid.
    fn reference(input: &[u8]) -> (Vec<u8>, u64) {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let (mut out, mut invalid, mut acc, mut n) = (Vec::new(), 0, 0u32, 0);
        for &c in input {
            if let Some(v) = alphabet.iter().position(|&a| a == c) {
                acc = acc << 6 | v as u32;
                n += 1;
                if n == 4 {
                    out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
                    (acc, n) = (0, 0);
                }
            } else if c == b'=' {
                match n {
                    2 => out.push((acc >> 4) as u8),
                    3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
                    _ => {}
                }
                (acc, n) = (0, 0);
            } else if !c.is_ascii_whitespace() {
                invalid += 1;
            }
        }
        (out, invalid)
    }

    #[test]
    fn base64_lines_match_reference() {
        use base64::Engine as _;
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..400 {
            // Real base64 text in lines of 76 (or another width), then
            // mutated: a stray byte, padding or a space inside a line.
            let raw: Vec<u8> = (0..(next() % 700)).map(|_| next() as u8).collect();
            let text = base64::engine::general_purpose::STANDARD.encode(&raw);
            let width = [76, 64, 20, 17, 4][round % 5];
            let mut input: Vec<u8> = text
                .as_bytes()
                .chunks(width)
                .flat_map(|l| l.iter().copied().chain(*b"\r\n"))
                .collect();
            for _ in 0..(round % 4) {
                if input.is_empty() {
                    break;
                }
                let at = next() as usize % input.len();
                input[at] = b"=* \n-\xff"[next() as usize % 6];
            }
            let at = next() as usize % (input.len() + 1);
            let (a, b) = input.split_at(at);
            let want = reference(&input);
            assert_eq!(b64(&[&input]), want, "input {input:?}");
            assert_eq!(b64(&[a, b]), want, "input {input:?} cut at {at}");
            if round % 4 == 0 {
                assert_eq!(want.0, raw);
            }
        }
    }

    #[test]
    fn base64_fast_path_matches_reference() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pool = b"ABCxyz019+/AAAAwxyzQUJD=\r\n \t\x0c*-\xff";
        for round in 0..300 {
            // Mostly well-formed lines, with the odd stray byte.
            let len = (next() % 400) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if round % 3 == 0 || r % 16 == 0 {
                        pool[(r >> 8) as usize % pool.len()]
                    } else {
                        pool[(r >> 8) as usize % 11]
                    }
                })
                .collect();
            let mut cuts: Vec<usize> = (0..4).map(|_| (next() as usize) % (len + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for c in cuts {
                chunks.push(&input[from..c]);
                from = c;
            }
            chunks.push(&input[from..]);
            assert_eq!(b64(&chunks), reference(&input), "input {input:?}");
        }
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
