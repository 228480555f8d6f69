//! Wire grammar of SMTP lines (RFC 5321), as small nom parsers over one line.
//!
//! The [`super::lines`] splitter delivers complete lines (line ending
//! removed, length bounded); these parsers know nothing about sessions. They
//! are zero-copy: results borrow the line.

use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_till, take_while, take_while1, take_while_m_n};
use nom::character::complete::space0;
use nom::combinator::{eof, opt, rest};
use nom::{IResult, Parser};

use super::events::Verb;

/// Longest verb accepted (XFORWARD, STARTTLS, and extensions fit).
pub const MAX_VERB_LEN: usize = 20;

/// A command line split into verb and parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandLine<'a> {
    /// Verb as written (ASCII letters, digits, `-`, `_`), 1..=[`MAX_VERB_LEN`] bytes.
    pub verb: &'a [u8],
    /// Everything after the spaces following the verb.
    pub args: &'a [u8],
}

fn is_verb_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// `verb [SP+ args]` — the verb ends at a space or the end of line.
pub fn command_line(line: &[u8]) -> IResult<&[u8], CommandLine<'_>> {
    let (i, verb) = take_while_m_n(1, MAX_VERB_LEN, is_verb_char).parse(line)?;
    let (i, args) = alt((
        eof,
        (take_while1(|c| c == b' ' || c == b'\t'), rest).map(|(_, a)| a),
    ))
    .parse(i)?;
    Ok((i, CommandLine { verb, args }))
}

/// Maps a verb (any case) to [`Verb`].
pub fn verb(word: &[u8]) -> Verb {
    let mut up = [0u8; MAX_VERB_LEN];
    let n = word.len().min(MAX_VERB_LEN);
    for (d, s) in up.iter_mut().zip(word.iter().take(n)) {
        *d = s.to_ascii_uppercase();
    }
    match &up[..n] {
        b"HELO" => Verb::Helo,
        b"EHLO" => Verb::Ehlo,
        b"MAIL" => Verb::Mail,
        b"RCPT" => Verb::Rcpt,
        b"DATA" => Verb::Data,
        b"BDAT" => Verb::Bdat,
        b"RSET" => Verb::Rset,
        b"VRFY" => Verb::Vrfy,
        b"EXPN" => Verb::Expn,
        b"HELP" => Verb::Help,
        b"NOOP" => Verb::Noop,
        b"QUIT" => Verb::Quit,
        b"STARTTLS" => Verb::StartTls,
        b"AUTH" => Verb::Auth,
        b"ETRN" => Verb::Etrn,
        b"TURN" => Verb::Turn,
        b"ATRN" => Verb::Atrn,
        b"XCLIENT" => Verb::Xclient,
        b"XFORWARD" => Verb::Xforward,
        other => Verb::Unknown(crate::text::lossy_string(other)),
    }
}

/// Whether a command line is a known command with arguments of the right
/// shape for its verb: how a session joined midstream tells commands from
/// message content. Argument-less verbs (DATA, RSET, QUIT, STARTTLS, TURN)
/// have none, MAIL/RCPT have a `FROM:`/`TO:` path, HELO/EHLO one word, BDAT
/// a size, AUTH an upper-case mechanism; verbs taking free text (NOOP, HELP,
/// VRFY, …) must be written in upper case, as clients send them, so that a
/// body line like "Help is coming" is not taken for a command.
pub fn well_formed(cmd: &CommandLine<'_>) -> bool {
    let args = cmd.args.trim_ascii();
    let words = args.split(|&c| c == b' ').filter(|w| !w.is_empty()).count();
    match verb(cmd.verb) {
        Verb::Unknown(_) => false,
        Verb::Data | Verb::Rset | Verb::Quit | Verb::StartTls | Verb::Turn => args.is_empty(),
        Verb::Mail => path_args(args, "FROM:").is_ok(),
        Verb::Rcpt => path_args(args, "TO:").is_ok(),
        Verb::Helo | Verb::Ehlo => words == 1,
        Verb::Bdat => bdat_args(cmd.args).is_some(),
        Verb::Auth => {
            let mech = args.split(|&c| c == b' ').next().unwrap_or(&[]);
            (1..=2).contains(&words)
                && mech
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || b"-_".contains(c))
        }
        Verb::Vrfy
        | Verb::Expn
        | Verb::Help
        | Verb::Noop
        | Verb::Etrn
        | Verb::Atrn
        | Verb::Xclient
        | Verb::Xforward => cmd.verb.iter().all(|c| !c.is_ascii_lowercase()),
    }
}

/// A MAIL FROM / RCPT TO argument: the path as written and its ESMTP parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathArgs<'a> {
    /// The path, angle brackets kept as written (`<a@b>`, `<>`, or a bare address).
    pub path: &'a [u8],
    /// ESMTP parameters (`SIZE=123`, `BODY=8BITMIME`, `SMTPUTF8`), in order.
    pub params: Vec<&'a [u8]>,
}

/// `<...>` up to and including the `>` that closes it: a `>` inside a
/// quoted local part (`<"a>b"@example>`, RFC 5321 §4.1.2 Quoted-string,
/// backslash escapes included) does not close the path; a source route
/// (`<@relay,@relay2:user@example>`) is kept as written.
fn angle_path(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let fail = || nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Tag));
    if i.first() != Some(&b'<') {
        return Err(fail());
    }
    let (mut quoted, mut escaped) = (false, false);
    for (k, &c) in i.iter().enumerate().skip(1) {
        match c {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Ok((&i[k + 1..], &i[..=k])),
            _ => {}
        }
    }
    Err(fail())
}

fn path(i: &[u8]) -> IResult<&[u8], &[u8]> {
    alt((angle_path, take_till(|c| c == b' '))).parse(i)
}

/// `FROM:<path> params` (`keyword` = `FROM:`) or `TO:<path> params` (`TO:`);
/// spaces after the colon are tolerated as many clients send them.
pub fn path_args<'a>(args: &'a [u8], keyword: &'static str) -> IResult<&'a [u8], PathArgs<'a>> {
    let (i, _) = (tag_no_case(keyword), space0).parse(args)?;
    let (mut i, p) = path(i)?;
    let mut params = Vec::new();
    loop {
        let (r, _) = take_while(|c| c == b' ' || c == b'\t').parse(i)?;
        if r.is_empty() {
            break;
        }
        let (r, param) = take_till(|c| c == b' ' || c == b'\t').parse(r)?;
        params.push(param);
        i = r;
    }
    Ok((i, PathArgs { path: p, params }))
}

/// `BDAT chunk-size [SP LAST]` (RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BdatArgs {
    pub size: u64,
    pub last: bool,
}

/// What the BDAT parameter parser yields: digits, optional (spaces, "LAST"),
/// trailing spaces, end.
type BdatParts<'a> = (&'a [u8], Option<(&'a [u8], &'a [u8])>, &'a [u8], &'a [u8]);

/// Parses BDAT parameters; `None` when they are not `digits [LAST]` or the size overflows.
pub fn bdat_args(args: &[u8]) -> Option<BdatArgs> {
    let parsed: IResult<&[u8], BdatParts<'_>> = (
        take_while_m_n(1, 19, |c: u8| c.is_ascii_digit()),
        // Tabs separate as spaces do (Postfix accepts `BDAT 5<TAB>LAST`).
        opt((
            take_while1(|c| c == b' ' || c == b'\t'),
            tag_no_case("LAST"),
        )),
        space0,
        eof,
    )
        .parse(args);
    let (_, (digits, last, _, _)) = parsed.ok()?;
    let size = std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?;
    Some(BdatArgs {
        size,
        last: last.is_some(),
    })
}

/// One reply line: `CODE ("-" / SP / end) text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    pub code: u16,
    /// True for `CODE-text` (more lines of this reply follow).
    pub more: bool,
    pub text: &'a [u8],
}

/// Parses a reply line; the code is three digits, the first 2..=5.
pub fn reply_line(line: &[u8]) -> IResult<&[u8], ReplyLine<'_>> {
    let (i, digits) = take_while_m_n(3, 3, |c: u8| c.is_ascii_digit()).parse(line)?;
    let (i, sep) = alt((tag("-"), tag(" "), eof)).parse(i)?;
    let (i, text) = rest(i)?;
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if !(200..600).contains(&code) {
        return Err(nom::Err::Error(nom::error::Error::new(
            line,
            nom::error::ErrorKind::Verify,
        )));
    }
    Ok((
        i,
        ReplyLine {
            code,
            more: sep == b"-",
            text,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_verbs_and_args() {
        let (_, c) = command_line(b"mail FROM:<a@b> SIZE=10").unwrap();
        assert_eq!((c.verb, c.args), (&b"mail"[..], &b"FROM:<a@b> SIZE=10"[..]));
        assert_eq!(verb(c.verb), Verb::Mail);
        let (_, c) = command_line(b"QUIT").unwrap();
        assert_eq!((c.verb, c.args), (&b"QUIT"[..], &b""[..]));
        assert!(command_line(b"\x16\x03\x01").is_err());
        assert!(command_line(b"MAIL:FROM").is_err());
        assert_eq!(verb(b"xyzzy"), Verb::Unknown("XYZZY".into()));
    }

    #[test]
    fn well_formed_commands_versus_body_lines() {
        let ok = |l: &[u8]| command_line(l).is_ok_and(|(_, c)| well_formed(&c));
        for line in [
            &b"MAIL FROM:<a@b> SIZE=10"[..],
            b"rcpt to:<x@y>",
            b"DATA",
            b"rset",
            b"QUIT ",
            b"EHLO client.example.org",
            b"BDAT 12 LAST",
            b"AUTH PLAIN dGVzdA==",
            b"NOOP",
            b"HELP DATA",
        ] {
            assert!(ok(line), "{:?}", String::from_utf8_lossy(line));
        }
        for line in [
            &b"Data is attached"[..],
            b"Mail me back",
            b"Quit it",
            b"Help is coming",
            b"helo there friend",
            b"Auth failed for me",
            b"From: Alice <a@b>",
            b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v",
            b".",
            b"",
        ] {
            assert!(!ok(line), "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn mail_rcpt_paths_and_params() {
        let (_, p) = path_args(b"FROM:<a@b.c> SIZE=12 BODY=8BITMIME", "FROM:").unwrap();
        assert_eq!(p.path, b"<a@b.c>");
        assert_eq!(p.params, vec![&b"SIZE=12"[..], &b"BODY=8BITMIME"[..]]);
        let (_, p) = path_args(b"to: <x y@z>", "TO:").unwrap();
        assert_eq!(p.path, b"<x y@z>");
        let (_, p) = path_args(b"FROM:<>", "FROM:").unwrap();
        assert_eq!((p.path, p.params.len()), (&b"<>"[..], 0));
        let (_, p) = path_args(b"TO:bare@x SMTPUTF8", "TO:").unwrap();
        assert_eq!((p.path, p.params), (&b"bare@x"[..], vec![&b"SMTPUTF8"[..]]));
        assert!(path_args(b"<a@b>", "FROM:").is_err());
        let (_, p) = path_args(br#"FROM:<"a>b"@bad.example> SIZE=1"#, "FROM:").unwrap();
        assert_eq!(p.path, br#"<"a>b"@bad.example>"#);
        assert_eq!(p.params, vec![&b"SIZE=1"[..]]);
        let (_, p) = path_args(br#"TO:<"a\"> x"@b>"#, "TO:").unwrap();
        assert_eq!(p.path, br#"<"a\"> x"@b>"#);
        let (_, p) = path_args(b"TO:<@r1,@r2:u@d>", "TO:").unwrap();
        assert_eq!(p.path, b"<@r1,@r2:u@d>");
    }

    #[test]
    fn bdat() {
        assert_eq!(
            bdat_args(b"86 LAST"),
            Some(BdatArgs {
                size: 86,
                last: true
            })
        );
        assert_eq!(
            bdat_args(b"0"),
            Some(BdatArgs {
                size: 0,
                last: false
            })
        );
        assert_eq!(
            bdat_args(b"5\tLAST"),
            Some(BdatArgs {
                size: 5,
                last: true
            })
        );
        assert_eq!(bdat_args(b"x"), None);
        assert_eq!(bdat_args(b"12 FIRST"), None);
        assert_eq!(bdat_args(b"99999999999999999999"), None);
    }

    #[test]
    fn replies() {
        let (_, r) = reply_line(b"250-PIPELINING").unwrap();
        assert_eq!((r.code, r.more, r.text), (250, true, &b"PIPELINING"[..]));
        let (_, r) = reply_line(b"250").unwrap();
        assert_eq!((r.code, r.more, r.text), (250, false, &b""[..]));
        assert!(reply_line(b"25x ok").is_err());
        assert!(reply_line(b"2500 ok").is_err());
        assert!(reply_line(b"100 ok").is_err());
    }
}
