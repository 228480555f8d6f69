//! Bytes from the network as text: UTF-8 where valid, U+FFFD for the rest.
//!
//! [`lossy`] is `String::from_utf8_lossy` with a fast path: almost every
//! command, reply and header is valid UTF-8 (mostly ASCII), which
//! `str::from_utf8` checks a word at a time, while the lossy decoder walks
//! byte by byte (it was 4 % of replay time on small messages).

use std::borrow::Cow;

/// `b` as text, invalid sequences replaced by U+FFFD; borrows when valid.
pub fn lossy(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

/// [`lossy`], owned.
pub fn lossy_string(b: &[u8]) -> String {
    lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_lossy_conversion() {
        for b in [
            &b"MAIL FROM:<a@b>"[..],
            "Grüße".as_bytes(),
            b"\xff\xfeok",
            b"caf\xc3",
            b"",
        ] {
            assert_eq!(lossy(b), String::from_utf8_lossy(b));
            assert_eq!(lossy_string(b), String::from_utf8_lossy(b));
        }
        assert!(matches!(lossy(b"ascii"), Cow::Borrowed(_)));
    }
}
