//! Timestamps from microseconds since the Unix epoch, in the two forms the
//! product writes: Suricata's EVE form ([`eve_micros`],
//! `2026-12-01T15:12:50.123456+0000`, which Suricata's schema requires) and
//! RFC 3339 ([`rfc3339_micros`], `…+00:00`, for `ctl stats`).
//!
//! Written by hand (no calendar crate): the conversion is Howard Hinnant's
//! `civil_from_days`, exact for every date the u64 input can express.

/// Formats `micros` since the Unix epoch as Suricata writes EVE times:
/// `YYYY-MM-DDTHH:MM:SS.ffffff+0000` (strftime `%Y-%m-%dT%H:%M:%S.%06u%z`, UTC).
pub fn eve_micros(micros: u64) -> String {
    utc_micros(micros, "+0000")
}

/// Formats `micros` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`.
pub fn rfc3339_micros(micros: u64) -> String {
    utc_micros(micros, "+00:00")
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` in UTC, then `offset`. Written digit by
/// digit (once per EVE line: `format!` with padding cost 3 % of replay time
/// on small messages); years beyond 9999 take the general path.
fn utc_micros(micros: u64, offset: &str) -> String {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let (hh, mm, ss) = (rem / 3600, (rem / 60) % 60, rem % 60);
    let Ok(y @ 0..=9999) = u64::try_from(y) else {
        return format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{frac:06}{offset}");
    };
    let mut out = String::with_capacity(26 + offset.len());
    let mut digits = |v: u64, n: u32, sep: Option<char>| {
        for i in (0..n).rev() {
            let digit = (v / 10u64.pow(i)) % 10;
            out.push(char::from(b'0' + digit as u8));
        }
        if let Some(c) = sep {
            out.push(c);
        }
    };
    digits(y, 4, Some('-'));
    digits(u64::from(m), 2, Some('-'));
    digits(u64::from(d), 2, Some('T'));
    digits(hh, 2, Some(':'));
    digits(mm, 2, Some(':'));
    digits(ss, 2, Some('.'));
    digits(frac, 6, None);
    out.push_str(offset);
    out
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_writer_matches_format() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Up to year 9999 and beyond.
            let micros = x % 300_000_000_000_000_000;
            let secs = micros / 1_000_000;
            let (y, m, d) = civil_from_days((secs / 86_400) as i64);
            let rem = secs % 86_400;
            let want = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+0000",
                rem / 3600,
                (rem / 60) % 60,
                rem % 60,
                micros % 1_000_000
            );
            assert_eq!(eve_micros(micros), want);
        }
    }

    #[test]
    fn epoch() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(eve_micros(0), "1970-01-01T00:00:00.000000+0000");
    }

    #[test]
    fn known_dates() {
        // 2009-03-02T13:17:51.123456Z (date of a classic SMTP capture)
        assert_eq!(
            rfc3339_micros(1_235_999_871_123_456),
            "2009-03-02T13:17:51.123456+00:00"
        );
        // leap day
        assert_eq!(
            rfc3339_micros(951_782_400_000_001),
            "2000-02-29T00:00:00.000001+00:00"
        );
        assert_eq!(
            rfc3339_micros(1_796_083_199_999_999),
            "2026-11-30T23:59:59.999999+00:00"
        );
    }

    #[test]
    fn eve_form_is_suricatas() {
        // Suricata 8 writes e.g. "2026-12-01T15:12:50.123456+0000".
        assert_eq!(
            eve_micros(1_796_137_970_123_456),
            "2026-12-01T15:12:50.123456+0000"
        );
    }
}
