//! Small value matchers used by rule conditions: case-insensitive globs,
//! CIDR blocks, domain suffix sets, and the parsers for durations and
//! mail paths.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

/// A case-insensitive (ASCII) glob: `*` matches any run of bytes, `?` one byte.
#[derive(Debug, Clone)]
pub struct Glob {
    /// The pattern, ASCII lower-cased.
    pat: Vec<u8>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pat: pattern.as_bytes().to_ascii_lowercase(),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.pat).unwrap_or("")
    }

    /// Iterative matcher with single-star backtracking: O(len(text) * len(pattern)) worst case.
    pub fn matches(&self, text: &str) -> bool {
        let (p, t) = (self.pat.as_slice(), text.as_bytes());
        let (mut pi, mut ti) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some(b'*') => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(&c) if c == b'?' || t.get(ti).map(u8::to_ascii_lowercase) == Some(c) => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        pi = sp + 1;
                        ti = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        p.get(pi..)
            .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
    }
}

/// An IPv4 or IPv6 network (`198.18.0.0/15`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR[/PREFIX]`; the reason on error is human-readable.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("invalid IP address {a:?} in CIDR {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("invalid prefix length {p:?} in CIDR {s:?} (0..={max})"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Domains matched by label suffix: `example.org` matches `example.org` and
/// `mx.example.org`, not `badexample.org`. Lookups allocate nothing.
#[derive(Debug, Clone, Default)]
pub struct DomainSet {
    /// Lower-cased, without leading/trailing dots.
    set: HashSet<String>,
}

impl DomainSet {
    pub fn insert(&mut self, domain: &str) {
        let d = domain.trim().trim_matches('.').to_ascii_lowercase();
        if !d.is_empty() {
            self.set.insert(d);
        }
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The listed domain `domain` falls under, if any (checked label by
    /// label). Names up to 255 bytes are lower-cased on the stack; longer
    /// ones (not valid DNS names, but a client may send them) on the heap.
    pub fn find(&self, domain: &str) -> Option<&str> {
        let mut lower = [0u8; 255];
        let d = domain.trim_end_matches('.');
        let owned;
        let d = match lower.get_mut(..d.len()) {
            Some(out) => {
                for (o, c) in out.iter_mut().zip(d.bytes()) {
                    *o = c.to_ascii_lowercase();
                }
                std::str::from_utf8(out).ok()?
            }
            None => {
                owned = d.to_ascii_lowercase();
                owned.as_str()
            }
        };
        let mut rest = d;
        loop {
            if let Some(hit) = self.set.get(rest) {
                return Some(hit.as_str());
            }
            rest = rest.split_once('.')?.1;
        }
    }
}

/// Parses a duration as rules (`block_ip_for`) and `ctl` (`--for`,
/// `--timeout`) write it: `90`, `45s`, `10m`, `1h30m`, `2d` (units s, m, h,
/// d, summed; a bare number is seconds). Zero and overflow are refused.
/// The one duration parser of the product.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (examples: 30s, 10m, 1h30m, 2d)");
    if let Ok(secs) = s.parse::<u64>() {
        return (secs > 0)
            .then(|| Duration::from_secs(secs))
            .ok_or_else(bad);
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = num.unwrap_or(0);
            num = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(bad)?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let n = num.take().ok_or_else(bad)?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if num.is_some() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// `<user@Example.ORG>` → `user@example.org` (brackets and source route removed, lower-cased).
pub fn bare_address(path: &str) -> String {
    let p = path.trim();
    let p = p.strip_prefix('<').unwrap_or(p);
    let p = p.strip_suffix('>').unwrap_or(p);
    // A source route `@a,@b:user@host` keeps only the mailbox.
    let p = match p.rsplit_once(':') {
        Some((route, m)) if route.starts_with('@') => m,
        _ => p,
    };
    p.to_ascii_lowercase()
}

/// Domain part of a bare address (after the last `@`); `None` for `<>` or no `@`.
pub fn domain_of(addr: &str) -> Option<&str> {
    addr.rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = Glob::new("Invoice*.ZIP");
        assert!(g.matches("invoice-2024.zip"));
        assert!(g.matches("INVOICE.zip"));
        assert!(!g.matches("my-invoice.zip"));
        assert!(Glob::new("*.bad.example").matches("mx1.Bad.Example"));
        assert!(!Glob::new("*.bad.example").matches("bad.example"));
        assert!(Glob::new("a?c*").matches("abc"));
        assert!(!Glob::new("a?c").matches("ac"));
        assert!(Glob::new("*a*b*").matches("xxaxxbxx"));
        assert!(!Glob::new("*a*b").matches("xxaxxbxx"));
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("198.18.0.0/15").unwrap();
        assert!(c.contains("198.19.255.1".parse().unwrap()));
        assert!(!c.contains("198.20.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:198.18.0.9".parse().unwrap()));
        let c6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!c6.contains("198.18.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.1")
            .unwrap()
            .contains("10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0/8").is_err());
    }

    #[test]
    fn domains_and_addresses() {
        let mut s = DomainSet::default();
        s.insert("Forbidden.Example.");
        assert_eq!(s.find("x.FORBIDDEN.example"), Some("forbidden.example"));
        assert_eq!(s.find("forbidden.example"), Some("forbidden.example"));
        assert_eq!(s.find("notforbidden.example"), None);
        let long = format!("{}.Forbidden.Example", "a".repeat(300));
        assert_eq!(s.find(&long), Some("forbidden.example"));
        assert_eq!(bare_address("<@r1,@r2:Bob@X.org>"), "bob@x.org");
        assert_eq!(domain_of(&bare_address("<>")), None);
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in [
            "",
            "0",
            "0s",
            "m",
            "5w",
            "10x",
            "10m5",
            "-1s",
            " 10m",
            "10 minutes",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
