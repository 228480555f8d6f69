//! The fleet's wire form. The current set is a Redis hash
//! `PREFIX:blocklist` (field: the IP address; value: the expiry in Unix
//! milliseconds, `0` for none); every change is also published on the
//! channel `PREFIX:changes` as one line:
//!
//! ```text
//! block 198.51.100.7 1767225600000 mx1/eth0/4242
//! unblock 198.51.100.7 mx2/eth0/977
//! ```
//!
//! (the last word names the host that made it, so it ignores its own).
//! Everything read from Redis is hostile: a field, value or message that
//! does not parse — or names an address no client can have (unspecified,
//! multicast, broadcast) — is rejected (and counted by the caller).

use std::net::IpAddr;

/// A change of the fleet blocklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Block `ip` until `expiry_ms` (Unix ms; 0: no expiry).
    Block {
        ip: IpAddr,
        expiry_ms: u64,
    },
    Unblock {
        ip: IpAddr,
    },
}

impl Change {
    pub fn ip(&self) -> IpAddr {
        match self {
            Change::Block { ip, .. } | Change::Unblock { ip } => *ip,
        }
    }

    /// The channel message of this change made by `origin`.
    pub fn message(&self, origin: &str) -> String {
        match self {
            Change::Block { ip, expiry_ms } => format!("block {ip} {expiry_ms} {origin}"),
            Change::Unblock { ip } => format!("unblock {ip} {origin}"),
        }
    }
}

/// Longest message or hash entry accepted.
const MAX_TEXT: usize = 512;

/// A client address the blocklist may hold.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    if s.len() > 64 {
        return None;
    }
    let ip: IpAddr = s.parse().ok()?;
    let ip = ip.to_canonical();
    let bad = ip.is_unspecified()
        || ip.is_multicast()
        || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    (!bad).then_some(ip)
}

fn parse_expiry(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A hash entry (field, value) of the current set.
pub fn parse_entry(field: &[u8], value: &[u8]) -> Option<Change> {
    if field.len() > MAX_TEXT || value.len() > MAX_TEXT {
        return None;
    }
    let ip = parse_ip(std::str::from_utf8(field).ok()?)?;
    let expiry_ms = parse_expiry(std::str::from_utf8(value).ok()?)?;
    Some(Change::Block { ip, expiry_ms })
}

/// A channel message: the change and the host that made it.
pub fn parse_message(payload: &[u8]) -> Option<(Change, &str)> {
    if payload.len() > MAX_TEXT {
        return None;
    }
    let text = std::str::from_utf8(payload).ok()?;
    let words: Vec<&str> = text.split(' ').collect();
    match words.as_slice() {
        ["block", ip, expiry, origin] => Some((
            Change::Block {
                ip: parse_ip(ip)?,
                expiry_ms: parse_expiry(expiry)?,
            },
            origin,
        )),
        ["unblock", ip, origin] => Some((Change::Unblock { ip: parse_ip(ip)? }, origin)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        for c in [
            Change::Block {
                ip,
                expiry_ms: 1_767_225_600_000,
            },
            Change::Block {
                ip: "2001:db8::1".parse().unwrap(),
                expiry_ms: 0,
            },
            Change::Unblock { ip },
        ] {
            let m = c.message("mx1/eth0/1");
            assert_eq!(parse_message(m.as_bytes()), Some((c, "mx1/eth0/1")));
        }
    }

    #[test]
    fn hostile_input_is_rejected() {
        for bad in [
            &b"block 198.51.100.7 soon mx1"[..],
            b"block 0.0.0.0 0 mx1",
            b"block 255.255.255.255 0 mx1",
            b"block 224.0.0.1 0 mx1",
            b"block :: 0 mx1",
            b"block 198.51.100.7 -1 mx1",
            b"block 198.51.100.7 99999999999999999999999 mx1",
            b"unblock 198.51.100.0/24 mx1",
            b"block 198.51.100.7 0",
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(parse_message(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_entry(b"not-an-ip", b"0"), None);
        assert_eq!(parse_entry(b"198.51.100.7", b"x"), None);
        assert_eq!(parse_entry(b"198.51.100.7", &[b'1'; 600]), None);
        assert_eq!(
            parse_entry(b"::ffff:198.51.100.7", b"5"),
            Some(Change::Block {
                ip: "198.51.100.7".parse().unwrap(),
                expiry_ms: 5
            })
        );
    }
}
