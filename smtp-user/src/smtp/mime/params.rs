//! Header parameters: `type/subtype; name=value; …` (RFC 2045 §5.1) with
//! RFC 2231 extensions — continuations (`filename*0=…; filename*1=…`),
//! charsets and percent-encoding (`filename*=utf-8'en'%E2%82%AC.txt`),
//! both combined (`filename*0*=…`), in any order.
//!
//! What a mail client shows is what we report: for one parameter the
//! RFC 2231 extended form wins over a continuation, which wins over the
//! plain form (RFC 2231 §4 and what Thunderbird, Outlook and Gmail do).
//! When the forms disagree, or a parameter is given twice with different
//! values, or continuations have gaps, the other readings are kept as
//! [`Param::others`] and the value is flagged [`Param::ambiguous`], so that
//! a rule can match every name a client could show (attackers split or
//! double names to slip past filename rules).
//!
//! Bounded: at most [`MAX_PARAMS`] `name=value` items are read (the rest is
//! reported through [`Params::dropped`]), continuation indexes above
//! [`MAX_SEGMENTS`] are dropped, values are cut to [`MAX_VALUE`] bytes and at
//! most [`MAX_OTHERS`] other readings are kept. The input itself is one
//! header, already bounded by the caller.

use std::borrow::Cow;

use super::words::{decode_charset, decode_words};

/// Most `name=value` items read from one header.
pub const MAX_PARAMS: usize = 32;
/// Highest continuation index followed (`name*63`), exclusive.
pub const MAX_SEGMENTS: usize = 64;
/// Longest parameter value kept, in bytes (after decoding).
pub const MAX_VALUE: usize = 1024;
/// Most other readings kept for one parameter.
pub const MAX_OTHERS: usize = 4;

/// A parsed `value; params` header.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Params {
    /// The value before the first `;`, trimmed (e.g. `Multipart/Mixed`).
    pub value: String,
    /// Parameters in order of first appearance; names lower-cased, without `*`.
    pub params: Vec<Param>,
    /// Items not read: beyond [`MAX_PARAMS`], or continuation index ≥ [`MAX_SEGMENTS`].
    pub dropped: usize,
    /// Some value was longer than [`MAX_VALUE`] and was cut.
    pub cut: bool,
}

/// One parameter, all its forms reassembled.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Param {
    /// Lower-cased name without RFC 2231 markers (`filename` for `filename*0*`).
    pub name: String,
    /// The reading a client shows: extended > continuation > plain, first of each.
    pub value: String,
    /// Other readings that differ from `value` (bounded by [`MAX_OTHERS`]).
    pub others: Vec<String>,
    /// Forms disagree, a name is repeated with another value, or continuation
    /// segments are missing or repeated.
    pub ambiguous: bool,
}

impl Params {
    /// The value of parameter `name` (lower-case), as a client shows it.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// One `name[*N][*]=value` item as written.
struct Item<'a> {
    base: String,
    /// Continuation index, if any.
    index: Option<usize>,
    /// `*` after the name / index: the value is percent-encoded (with a
    /// `charset'lang'` prefix on a single or first segment).
    extended: bool,
    /// The value with quotes and backslash escapes removed.
    value: Cow<'a, str>,
}

/// Parses `value; name=value; …`.
pub fn parse(header: &str) -> Params {
    let mut out = Params::default();
    let mut tokens = split_unquoted(header);
    out.value = tokens.next().unwrap_or("").trim().to_string();
    let mut items: Vec<Item<'_>> = Vec::new();
    for token in tokens {
        let Some((key, value)) = token.split_once('=') else {
            continue;
        };
        if items.len() == MAX_PARAMS {
            out.dropped += 1;
            continue;
        }
        let Some((base, index, extended)) = split_key(key.trim()) else {
            out.dropped += 1;
            continue;
        };
        items.push(Item {
            base,
            index,
            extended,
            value: unquote(value.trim()),
        });
    }
    let mut names: Vec<&str> = Vec::new();
    for it in &items {
        if !names.contains(&it.base.as_str()) {
            names.push(&it.base);
        }
    }
    for name in names {
        let group: Vec<&Item<'_>> = items.iter().filter(|i| i.base == name).collect();
        let param = assemble(name, &group, &mut out.cut);
        out.params.push(param);
    }
    out
}

/// `filename`, `filename*`, `filename*2`, `filename*2*` → (base, index, extended).
fn split_key(key: &str) -> Option<(String, Option<usize>, bool)> {
    let (key, extended) = match key.strip_suffix('*') {
        Some(k) => (k, true),
        None => (key, false),
    };
    let (base, index) = match key.rsplit_once('*') {
        Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => {
            // Leading zeros are not allowed (RFC 2231 §7: `*0` or `*[1-9][0-9]*`).
            let index = match n.parse::<usize>() {
                Ok(i) if i < MAX_SEGMENTS && (n == "0" || !n.starts_with('0')) => i,
                _ => return None,
            };
            (b, Some(index))
        }
        _ => (key, None),
    };
    if base.is_empty() || base.contains(['*', ' ', '\t', '"']) {
        return None;
    }
    Some((base.to_ascii_lowercase(), index, extended))
}

/// Reassembles every form of one parameter.
fn assemble(name: &str, group: &[&Item<'_>], cut: &mut bool) -> Param {
    let mut readings: Vec<String> = Vec::new();
    let mut ambiguous = false;
    // 1. Single extended forms (`name*=charset'lang'%xx`).
    for it in group.iter().filter(|i| i.index.is_none() && i.extended) {
        let (charset, text) = strip_charset(&it.value);
        readings.push(decode_charset(charset, &percent_decode(text)));
    }
    // 2. Continuations, in index order.
    let mut segs: Vec<&Item<'_>> = group
        .iter()
        .copied()
        .filter(|i| i.index.is_some())
        .collect();
    if !segs.is_empty() {
        segs.sort_by_key(|i| i.index);
        readings.push(join_segments(&segs));
        let upto = segs
            .iter()
            .enumerate()
            .take_while(|(n, i)| i.index == Some(*n))
            .count();
        if upto < segs.len() {
            // Gaps or repeated indexes: clients keep every segment or stop at
            // the first gap; keep both readings.
            ambiguous = true;
            if upto > 0 {
                readings.push(join_segments(&segs[..upto]));
            }
        }
    }
    // 3. Plain forms (RFC 2047 words decoded: many mailers write them so).
    for it in group.iter().filter(|i| i.index.is_none() && !i.extended) {
        readings.push(decode_words(&it.value));
    }
    let mut readings = readings.into_iter().map(|mut r| {
        if r.len() > MAX_VALUE {
            *cut = true;
            let mut end = MAX_VALUE;
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r.truncate(end);
        }
        r
    });
    let value = readings.next().unwrap_or_default();
    let mut others: Vec<String> = Vec::new();
    for r in readings {
        if r != value && !others.contains(&r) {
            ambiguous = true;
            if others.len() < MAX_OTHERS {
                others.push(r);
            }
        }
    }
    Param {
        name: name.to_string(),
        value,
        others,
        ambiguous,
    }
}

/// Concatenates continuation segments: percent-decoded octets for extended
/// ones, literal text for the others, decoded once with the charset of the
/// first segment (a character may be split across segments, RFC 2231 §4.1).
fn join_segments(segs: &[&Item<'_>]) -> String {
    let mut charset = "";
    let mut octets: Vec<u8> = Vec::new();
    for (n, it) in segs.iter().enumerate() {
        if it.extended {
            let text = if n == 0 {
                let (cs, text) = strip_charset(&it.value);
                charset = cs;
                text
            } else {
                &it.value
            };
            octets.extend_from_slice(&percent_decode(text));
        } else {
            octets.extend_from_slice(it.value.as_bytes());
        }
        if octets.len() > 4 * MAX_VALUE {
            break;
        }
    }
    decode_charset(charset, &octets)
}

/// `charset'language'text` → (charset, text); no quotes → ("", whole).
fn strip_charset(value: &str) -> (&str, &str) {
    let mut it = value.splitn(3, '\'');
    match (it.next(), it.next(), it.next()) {
        (Some(cs), Some(_lang), Some(text)) => (cs, text),
        _ => ("", value),
    }
}

/// `%xx` → byte; a `%` not followed by two hex digits is kept.
fn percent_decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = |j: usize| b.get(j).and_then(|&h| (h as char).to_digit(16));
            if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Splits at `;` outside quoted strings (a backslash escapes inside quotes).
fn split_unquoted(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, c) in s.bytes().enumerate() {
            match c {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b';' if !quoted => {
                    rest = s.get(i + 1..);
                    return s.get(..i);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// Removes surrounding quotes and backslash escapes; an unclosed quote runs
/// to the end. Unquoted values are kept as written.
fn unquote(v: &str) -> Cow<'_, str> {
    let Some(inner) = v.strip_prefix('"') else {
        return Cow::Borrowed(v);
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        match c {
            _ if escaped => {
                out.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            '"' => break,
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(h: &str, name: &str) -> Option<String> {
        parse(h).get(name).map(|p| p.value.clone())
    }

    #[test]
    fn plain_quoted_and_escaped() {
        let p = parse("Multipart/Mixed; boundary=\"a;b\\\"c\"; charset = utf-8 ;x");
        assert_eq!(p.value, "Multipart/Mixed");
        assert_eq!(
            value("a; boundary=\"a;b\\\"c\"", "boundary").as_deref(),
            Some("a;b\"c")
        );
        assert_eq!(p.get("charset").map(|p| p.value.as_str()), Some("utf-8"));
        assert_eq!(p.params.len(), 2);
    }

    #[test]
    fn continuations_in_any_order_and_charsets() {
        let h = "attachment; filename*1=\"il.\"; filename*0=\"ev\"; filename*2=exe";
        assert_eq!(value(h, "filename").as_deref(), Some("evil.exe"));
        let h = "attachment; filename*=utf-8''%E2%82%AC%20rate.exe";
        assert_eq!(value(h, "filename").as_deref(), Some("€ rate.exe"));
        let h = "attachment; filename*=iso-8859-1'fr'r%E9sum%E9.pdf";
        assert_eq!(value(h, "filename").as_deref(), Some("résumé.pdf"));
        // A UTF-8 character split across two encoded segments.
        let h = "attachment; filename*1*=%AC.exe; filename*0*=UTF-8''%E2%82";
        assert_eq!(value(h, "filename").as_deref(), Some("€.exe"));
        // Encoded and literal segments mixed.
        let h = "attachment; filename*0*=utf-8''%65v; filename*1=\"il.\"; filename*2*=%65xe";
        let p = parse(h);
        let f = p.get("filename").unwrap();
        assert_eq!(f.value, "evil.exe");
        assert!(!f.ambiguous);
    }

    #[test]
    fn extended_wins_and_other_readings_are_kept() {
        let h = "attachment; filename=\"invoice.pdf\"; filename*=utf-8''evil.exe";
        let p = parse(h);
        let f = p.get("filename").unwrap();
        assert_eq!(f.value, "evil.exe");
        assert_eq!(f.others, vec!["invoice.pdf".to_string()]);
        assert!(f.ambiguous);
        // The same name twice in both forms is not ambiguous.
        let h = "attachment; filename=\"a.pdf\"; filename*=utf-8''a.pdf";
        assert!(!parse(h).get("filename").unwrap().ambiguous);
        // Repeated plain parameter with another value.
        let h = "attachment; filename=a.txt; filename=b.exe";
        let f = parse(h).params.remove(0);
        assert_eq!(
            (f.value.as_str(), f.others.as_slice()),
            ("a.txt", &["b.exe".to_string()][..])
        );
    }

    #[test]
    fn continuation_gaps_keep_both_readings() {
        let h = "attachment; filename*0=\"ev\"; filename*2=\"il.exe\"";
        let f = parse(h).params.remove(0);
        assert_eq!(f.value, "evil.exe");
        assert_eq!(f.others, vec!["ev".to_string()]);
        assert!(f.ambiguous);
    }

    #[test]
    fn bounds() {
        let mut h = String::from("a");
        for i in 0..100 {
            h.push_str(&format!("; p{i}=v"));
        }
        let p = parse(&h);
        assert_eq!((p.params.len(), p.dropped), (MAX_PARAMS, 100 - MAX_PARAMS));
        let p = parse("a; f*64=x; f*007=y; f*99999999999999999999999=z; f*0=ok");
        assert_eq!((p.params.len(), p.dropped), (1, 3));
        let long = "x".repeat(3000);
        let p = parse(&format!("a; filename=\"{long}\""));
        assert!(p.cut);
        assert_eq!(p.params[0].value.len(), MAX_VALUE);
    }

    #[test]
    fn hostile_shapes_do_not_panic() {
        for h in [
            "",
            ";",
            "=",
            ";=",
            "a;=b",
            "a; *=x",
            "a; f*=''",
            "a; f*='",
            "a; f*0*=%",
            "a; f*0*=%e",
            "a; f=\"",
            "a; f=\"\\",
            "a; f*=x'y'%ZZ",
            "a; f*0*=utf-16''%00",
            "a; f* 0=x",
        ] {
            let _ = parse(h);
        }
    }
}
