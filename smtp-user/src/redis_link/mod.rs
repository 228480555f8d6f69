//! Where a Redis server is and how to log in: the `redis://` URLs of
//! `--eve-redis` and `--fleet` ([`RedisUrl`]), the AUTH password read from
//! a file (`--redis-password-file`: secrets never come from the command
//! line, where every local user can read them), and the reconnection
//! [`Backoff`] both links use.
//!
//! A URL is `redis://[USER@]HOST[:PORT][/PATH][?QUERY]`; `PATH` and `QUERY`
//! belong to the user of the link (the EVE key and mode, the fleet's key
//! prefix). A password in the URL is refused. `rediss://` (TLS) is not
//! supported.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use thiserror::Error;

/// Default Redis port.
pub const DEFAULT_PORT: u16 = 6379;
/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Read and write timeout of an established connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a Redis URL or password file was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RedisUrlError {
    #[error("{0}: only redis:// URLs are supported (no TLS)")]
    Scheme(String),
    #[error("the URL carries a password: give it with --redis-password-file instead")]
    PasswordInUrl,
    #[error("no host in {0}")]
    NoHost(String),
    #[error("bad port in {0}")]
    Port(String),
    #[error("bad query parameter {0:?}")]
    Query(String),
    #[error("cannot read the password file {path}: {reason}")]
    PasswordFile { path: String, reason: String },
}

/// A parsed `redis://` URL plus the password from its file.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    /// ACL user (`USER@` in the URL); `None`: the default user.
    pub username: Option<String>,
    /// AUTH password (from the password file).
    pub password: Option<String>,
    /// The path without its leading `/` (percent-decoding not applied).
    pub path: String,
    /// Query parameters, `key=value` (a bare `key` has an empty value).
    pub query: BTreeMap<String, String>,
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("RedisUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("path", &self.path)
            .field("query", &self.query)
            .finish()
    }
}

impl RedisUrl {
    /// Parses `url` (no password yet: see [`RedisUrl::with_password_file`]).
    pub fn parse(url: &str) -> Result<RedisUrl, RedisUrlError> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| RedisUrlError::Scheme(url.to_string()))?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let username = match userinfo {
            Some(u) if u.contains(':') => return Err(RedisUrlError::PasswordInUrl),
            Some("") | None => None,
            Some(u) => Some(u.to_string()),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| {
            if hostport.is_empty() {
                RedisUrlError::NoHost(url.to_string())
            } else {
                RedisUrlError::Port(url.to_string())
            }
        })?;
        let mut params = BTreeMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k.is_empty() {
                return Err(RedisUrlError::Query(pair.to_string()));
            }
            params.insert(k.to_string(), v.to_string());
        }
        Ok(RedisUrl {
            host,
            port,
            username,
            password: None,
            path: path.to_string(),
            query: params,
        })
    }

    /// Reads the AUTH password from the first line of `path`.
    pub fn with_password_file(mut self, path: Option<&Path>) -> Result<RedisUrl, RedisUrlError> {
        let Some(path) = path else {
            return Ok(self);
        };
        let err = |reason: String| RedisUrlError::PasswordFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let pw = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if pw.is_empty() {
            return Err(err("the first line is empty".into()));
        }
        self.password = Some(pw.to_string());
        Ok(self)
    }

    /// The query parameter `key` parsed, `default` when absent.
    pub fn param<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, RedisUrlError> {
        match self.query.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| RedisUrlError::Query(format!("{key}={v}"))),
        }
    }

    /// `HOST:PORT`, for logs (no credentials).
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A client for this server (`db` from the `db` query parameter).
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        let db: i64 = self.param("db", 0).unwrap_or(0);
        let mut settings = redis::RedisConnectionInfo::default().set_db(db);
        if let Some(u) = &self.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &self.password {
            settings = settings.set_password(p);
        }
        use redis::IntoConnectionInfo;
        let info = redis::ConnectionAddr::Tcp(self.host.clone(), self.port)
            .into_connection_info()?
            .set_redis_settings(settings);
        redis::Client::open(info)
    }

    /// A connected, authenticated connection with I/O timeouts.
    pub fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let con = self
            .client()?
            .get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return None,
        };
        return (!host.is_empty()).then(|| (host.to_string(), port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (s, DEFAULT_PORT),
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Exponential reconnection delay: 100 ms doubling to 5 s, reset once a
/// connection works.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// The delay before the next attempt (and doubles the one after).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    /// A connection worked: the next failure waits the shortest delay.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = RedisUrl::parse("redis://10.0.0.1:6380/eve?mode=stream&maxlen=5").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("10.0.0.1", 6380));
        assert_eq!(u.path, "eve");
        assert_eq!(u.param("maxlen", 0u64), Ok(5));
        assert_eq!(u.query.get("mode").map(String::as_str), Some("stream"));
        let u = RedisUrl::parse("redis://mon@[2001:2::1]/").unwrap();
        assert_eq!(u.username.as_deref(), Some("mon"));
        assert_eq!((u.host.as_str(), u.port), ("2001:2::1", 6379));
        assert_eq!(u.endpoint(), "[2001:2::1]:6379");
        assert_eq!(RedisUrl::parse("redis://h").unwrap().path, "");
    }

    #[test]
    fn refuses_bad_urls_and_passwords() {
        assert_eq!(
            RedisUrl::parse("redis://u:secret@h/k"),
            Err(RedisUrlError::PasswordInUrl)
        );
        assert!(matches!(
            RedisUrl::parse("rediss://h"),
            Err(RedisUrlError::Scheme(_))
        ));
        assert!(matches!(
            RedisUrl::parse("redis://:1/"),
            Err(RedisUrlError::NoHost(_)) | Err(RedisUrlError::Port(_))
        ));
        assert!(matches!(
            RedisUrl::parse("redis://h:x/"),
            Err(RedisUrlError::Port(_))
        ));
        assert!(matches!(
            RedisUrl::parse("redis://h/k?=1"),
            Err(RedisUrlError::Query(_))
        ));
        let u = RedisUrl::parse("redis://h/k?maxlen=lots").unwrap();
        assert!(u.param("maxlen", 0u64).is_err());
    }

    #[test]
    fn password_comes_from_the_file_and_is_not_printed() {
        let p = std::env::temp_dir().join(format!("redis-pw-{}", std::process::id()));
        std::fs::write(&p, "s3cret\nignored\n").unwrap();
        let u = RedisUrl::parse("redis://h")
            .unwrap()
            .with_password_file(Some(&p))
            .unwrap();
        assert_eq!(u.password.as_deref(), Some("s3cret"));
        assert!(!format!("{u:?}").contains("s3cret"));
        std::fs::write(&p, "\n").unwrap();
        assert!(RedisUrl::parse("redis://h")
            .unwrap()
            .with_password_file(Some(&p))
            .is_err());
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let d: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(d, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
