//! RFC 2047 encoded words (`=?charset?B|Q?text?=`) in header values, in any
//! charset the WHATWG Encoding Standard knows (through `encoding_rs`) plus
//! UTF-7 (through `charset`, which mail still uses).
//!
//! Adjacent encoded words — separated by whitespace only — are joined
//! without that whitespace (RFC 2047 §6.2), and their octets are decoded
//! together when they share a charset, so a multi-byte character split
//! across two words (common with B encoding) comes out whole. A word that
//! does not parse, or names a charset nobody knows, is kept as written.
//! RFC 2231 language tags (`=?utf-8*en?Q?…?=`) are ignored.

use charset::Charset;

use crate::smtp::decode::{Base64, QuotedPrintable};

/// Longest charset name looked up.
const MAX_CHARSET: usize = 40;

/// Decodes `octets` in `charset` (a MIME label; empty or unknown: UTF-8,
/// invalid sequences replaced).
pub fn decode_charset(charset: &str, octets: &[u8]) -> String {
    match lookup(charset) {
        Some(cs) => cs.decode_without_bom_handling(octets).0.into_owned(),
        None => crate::text::lossy_string(octets),
    }
}

/// The charset for a MIME label (`utf-8*en` → UTF-8); `None` when unknown.
fn lookup(label: &str) -> Option<Charset> {
    let label = label.split('*').next().unwrap_or("").trim();
    if label.is_empty() || label.len() > MAX_CHARSET {
        return None;
    }
    Charset::for_label_no_replacement(label.as_bytes())
}

/// One parsed encoded word.
struct Word<'a> {
    charset: Charset,
    octets: Vec<u8>,
    /// Bytes of the input the word spans (`=?` … `?=`).
    len: usize,
    /// The charset label as written (adjacent words are joined when equal).
    label: &'a str,
}

/// Decodes every encoded word of a header value.
pub fn decode_words(value: &str) -> String {
    if !value.contains("=?") {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    // Octets of the run of adjacent words being joined, and their charset.
    let mut run: Option<(Charset, &str, Vec<u8>)> = None;
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        let Some(word) = encoded_word(&rest[start..]) else {
            flush(&mut run, &mut out);
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            continue;
        };
        let adjacent = run.is_some() && before.bytes().all(|c| c.is_ascii_whitespace());
        match &mut run {
            Some((_, label, octets)) if adjacent && label.eq_ignore_ascii_case(word.label) => {
                octets.extend_from_slice(&word.octets);
            }
            _ => {
                flush(&mut run, &mut out);
                if !adjacent {
                    out.push_str(before);
                }
                run = Some((word.charset, word.label, word.octets));
            }
        }
        rest = &rest[start + word.len..];
    }
    flush(&mut run, &mut out);
    out.push_str(rest);
    out
}

fn flush(run: &mut Option<(Charset, &str, Vec<u8>)>, out: &mut String) {
    if let Some((cs, _, octets)) = run.take() {
        out.push_str(&cs.decode_without_bom_handling(&octets).0);
    }
}

/// Parses the encoded word at the start of `s`.
fn encoded_word(s: &str) -> Option<Word<'_>> {
    let body = s.strip_prefix("=?")?;
    let q1 = body.find('?')?;
    let label = &body[..q1];
    if label.bytes().any(|c| c.is_ascii_whitespace() || c == b'=') {
        return None;
    }
    let charset = lookup(label)?;
    let after = &body[q1 + 1..];
    let (enc, text_start) = match after.as_bytes() {
        [e, b'?', ..] => (*e, &after[2..]),
        _ => return None,
    };
    let end = text_start.find("?=")?;
    let text = &text_start[..end];
    if text.bytes().any(|c| c.is_ascii_whitespace()) {
        return None;
    }
    let mut octets = Vec::with_capacity(text.len());
    match enc.to_ascii_lowercase() {
        b'b' => Base64::default().feed(text.as_bytes(), &mut octets),
        b'q' => {
            let t = text.replace('_', " ");
            QuotedPrintable::default().feed(t.as_bytes(), &mut octets);
        }
        _ => return None,
    }
    Some(Word {
        charset,
        octets,
        len: 2 + q1 + 1 + 2 + end + 2,
        label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charsets() {
        for (raw, want) in [
            ("=?windows-1251?B?z/Do4uXy?=", "Привет"),
            ("=?koi8-r?B?8NLJ18XU?=", "Привет"),
            ("=?iso-2022-jp?B?GyRCJDMkcyRLJEEkTxsoQg==?=", "こんにちは"),
            ("=?gb2312?B?xOO6ww==?=", "你好"),
            ("=?utf-7?Q?+ZeVnLIqe-?=", "日本語"),
            ("=?ISO-8859-1*fr?Q?=E9t=E9?=", "été"),
            ("=?Shift_JIS?B?g26DjYFb?=", "ハロー"),
        ] {
            assert_eq!(decode_words(raw), want, "{raw}");
        }
    }

    #[test]
    fn adjacent_words_join_and_split_characters_survive() {
        // "é" (C3 A9) split across two B words.
        assert_eq!(
            decode_words("=?utf-8?B?Y2Fmww==?= =?utf-8?B?qQ==?="),
            "café"
        );
        assert_eq!(
            decode_words("a =?utf-8?Q?x?=\r\n =?utf-8?Q?y?= b"),
            "a xy b"
        );
        // Different charsets: each decoded alone, whitespace still dropped.
        assert_eq!(decode_words("=?utf-8?Q?a?= =?iso-8859-1?Q?=E9?="), "aé");
        // Text between words is kept.
        assert_eq!(decode_words("=?utf-8?Q?a?= - =?utf-8?Q?b?="), "a - b");
        assert_eq!(decode_words("=?utf-8?Q?a_b?="), "a b");
    }

    #[test]
    fn malformed_words_are_kept() {
        for raw in [
            "=?utf-8?B?",
            "=?é?Q?x?= tail",
            "=?x-unknown?Q?x?=",
            "=?utf-8?x?abc?=",
            "=?utf-8?Q?a b?=",
            "=??Q?a?=",
            "=?",
        ] {
            assert_eq!(decode_words(raw), raw);
        }
    }
}
