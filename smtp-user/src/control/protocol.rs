//! The control protocol's messages and their wire form: one JSON object per
//! line, one request line answered by one response line.
//!
//! Requests carry their command in `"cmd"`:
//!
//! ```text
//! {"cmd":"status"}
//! {"cmd":"stats"}
//! {"cmd":"flows"}
//! {"cmd":"reload"}
//! {"cmd":"flow","flow_id":42}
//! {"cmd":"reopen"}
//! {"cmd":"block_ip","ip":"198.51.100.7","for_secs":600}
//! {"cmd":"unblock_ip","ip":"198.51.100.7"}
//! ```
//!
//! Responses carry `"ok"` (false only for errors) and one key naming the
//! payload:
//!
//! ```text
//! {"ok":true,"status":{"iface":"eth0","ingress":"tc","mode":"enforce",...}}
//! {"ok":true,"stats":{"records":12,...}}
//! {"ok":true,"flows":[{"flow_id":42,"client":"198.18.0.1:40000",...}]}
//! {"ok":true,"reloaded":{"rules_file":"/etc/rules.toml","rules_digest":"ab12..","rules":7}}
//! {"ok":true,"flow":{"flow_id":42,...}}
//! {"ok":true,"reopened":"/var/log/smtp-monitor/eve.json"}
//! {"ok":true,"ip_block":{"ip":"198.51.100.7","blocked":true,"changed":true,"fleet":true}}
//! {"ok":false,"error":"no flow with id 42"}
//! ```
//!
//! Unknown fields are ignored, unknown commands are errors.
//! [`encode_request`]/[`decode_request`] and [`encode_response`]/
//! [`decode_response`] are the only way messages meet the wire.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// What a client asks the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Configuration and uptime ([`Response::Status`]).
    Status,
    /// Userspace counters ([`Response::Stats`]).
    Stats,
    /// Every live SMTP session ([`Response::Flows`]).
    Flows,
    /// Re-read the rules file ([`Response::Reloaded`], or an error that
    /// leaves the old rules in force).
    Reload,
    /// One live session by its EVE `flow_id` ([`Response::Flow`]).
    Flow {
        /// The `flow_id` of the session's EVE lines.
        flow_id: u64,
    },
    /// Open the `--output` file again, for logrotate ([`Response::Reopened`]).
    Reopen,
    /// Put a client address on the kernel blocklist (and publish it to the
    /// fleet) ([`Response::IpBlock`]).
    BlockIp {
        ip: IpAddr,
        /// Expire after this many seconds; `None`: no expiry.
        #[serde(default)]
        for_secs: Option<u64>,
    },
    /// Remove a client address from the blocklist (and from the fleet's).
    UnblockIp { ip: IpAddr },
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Status(Status),
    /// Userspace counters as a JSON object (its shape belongs to the daemon).
    Stats(serde_json::Value),
    Flows(Vec<FlowRow>),
    Reloaded(ReloadReply),
    Flow(FlowRow),
    /// The output file reopened (its path; `None` when writing to stdout).
    Reopened(Option<String>),
    IpBlock(IpBlockReply),
    /// The request failed; the text says why.
    Error(String),
}

impl Response {
    /// `Err(text)` for [`Response::Error`], the response itself otherwise.
    pub fn into_result(self) -> Result<Response, String> {
        match self {
            Response::Error(e) => Err(e),
            r => Ok(r),
        }
    }
}

/// The daemon's configuration and uptime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Interface the datapath is attached to.
    pub iface: String,
    /// Ingress hook in effect (`tc`, `xdp`, `xdp-generic`).
    pub ingress: String,
    /// `"enforce"` or `"monitor"`.
    pub mode: String,
    /// End-of-data gate enabled (`--gate`).
    pub gate: bool,
    /// Monitored TCP ports, sorted.
    pub ports: Vec<u16>,
    /// Start time, RFC 3339.
    pub started: String,
    pub uptime_secs: u64,
    /// Rules file in force; `None` for the builtin rules.
    pub rules_file: Option<String>,
    /// sha256 hex of the rules in force, `"builtin"` without a file.
    pub rules_digest: String,
    /// Number of rules in force, including the protocol-error rule.
    pub rules: usize,
    /// Process id of the daemon.
    pub pid: u32,
    /// The fleet link's state (`--fleet`), e.g. `connected to 10.0.0.5:6379`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    /// The EVE Redis output's state (`--eve-redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eve_redis: Option<String>,
}

/// What a `block_ip` / `unblock_ip` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpBlockReply {
    pub ip: IpAddr,
    /// Blocked now (false after an unblock).
    pub blocked: bool,
    /// For an unblock: the address was on the blocklist.
    pub changed: bool,
    /// The change was queued for the fleet (`--fleet`).
    pub fleet: bool,
}

/// One live SMTP session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRow {
    /// The session's EVE `flow_id`.
    pub flow_id: u64,
    /// The endpoint that opened the connection.
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Dissector state name.
    pub state: String,
    pub helo: Option<String>,
    /// MAIL FROM of the current (or last) transaction.
    pub mail_from: Option<String>,
    pub rcpt_to: Vec<String>,
    /// Transactions started so far.
    pub transactions: u32,
    /// `"pass"`, `"drop"` or `"reset"`.
    pub verdict: String,
    /// The end-of-data gate is armed on this flow.
    pub gated: bool,
    pub bytes_toserver: u64,
    pub bytes_toclient: u64,
    /// Seconds since the first packet.
    pub age_secs: u64,
}

/// The rules in force after a successful reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReply {
    pub rules_file: Option<String>,
    /// sha256 hex of the new rules.
    pub rules_digest: String,
    /// Number of rules now in force.
    pub rules: usize,
}

/// A response on the wire: `ok` beside the externally tagged payload.
#[derive(Serialize, Deserialize)]
struct Envelope<R> {
    ok: bool,
    #[serde(flatten)]
    response: R,
}

/// The request as one line, newline included.
pub fn encode_request(req: &Request) -> String {
    // A Request is plain data (no maps with non-string keys): cannot fail.
    let mut s = serde_json::to_string(req).unwrap_or_else(|_| String::from("{}"));
    s.push('\n');
    s
}

/// Parses one request line (trailing newline and whitespace allowed).
pub fn decode_request(line: &[u8]) -> Result<Request, serde_json::Error> {
    serde_json::from_slice(line.trim_ascii())
}

/// The response as one line, newline included.
pub fn encode_response(resp: &Response) -> String {
    let env = Envelope {
        ok: !matches!(resp, Response::Error(_)),
        response: resp,
    };
    let mut s = serde_json::to_string(&env).unwrap_or_else(|e| {
        // Only a non-finite float in Stats could get here.
        serde_json::json!({"ok": false, "error": format!("unencodable response: {e}")}).to_string()
    });
    s.push('\n');
    s
}

/// Parses one response line. `ok` must agree with the payload.
pub fn decode_response(line: &[u8]) -> Result<Response, serde_json::Error> {
    let env: Envelope<Response> = serde_json::from_slice(line.trim_ascii())?;
    if env.ok == matches!(env.response, Response::Error(_)) {
        return Err(serde::de::Error::custom(format!(
            "\"ok\":{} contradicts the payload",
            env.ok
        )));
    }
    Ok(env.response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> FlowRow {
        FlowRow {
            flow_id: 42,
            client: "198.18.0.1:40000".parse().unwrap(),
            server: "[2001:2::2]:25".parse().unwrap(),
            state: "data".into(),
            helo: Some("client.example".into()),
            mail_from: None,
            rcpt_to: vec!["a@b.example".into()],
            transactions: 1,
            verdict: "pass".into(),
            gated: false,
            bytes_toserver: 10,
            bytes_toclient: 20,
            age_secs: 3,
        }
    }

    #[test]
    fn requests_have_the_documented_form() {
        assert_eq!(encode_request(&Request::Status), "{\"cmd\":\"status\"}\n");
        assert_eq!(
            encode_request(&Request::Flow { flow_id: 42 }),
            "{\"cmd\":\"flow\",\"flow_id\":42}\n"
        );
        for r in [
            Request::Status,
            Request::Stats,
            Request::Flows,
            Request::Reload,
            Request::Flow { flow_id: u64::MAX },
            Request::Reopen,
            Request::BlockIp {
                ip: "198.51.100.7".parse().unwrap(),
                for_secs: Some(600),
            },
            Request::BlockIp {
                ip: "2001:db8::1".parse().unwrap(),
                for_secs: None,
            },
            Request::UnblockIp {
                ip: "198.51.100.7".parse().unwrap(),
            },
        ] {
            assert_eq!(decode_request(encode_request(&r).as_bytes()).unwrap(), r);
        }
        assert!(decode_request(b"{\"cmd\":\"shutdown\"}").is_err());
        assert!(decode_request(b"{\"cmd\":\"flow\"}").is_err());
        // Unknown fields are ignored (newer clients, older daemons).
        assert_eq!(
            decode_request(b"{\"cmd\":\"status\",\"x\":1}").unwrap(),
            Request::Status
        );
        assert!(decode_request(b"status").is_err());
    }

    #[test]
    fn responses_have_the_documented_form() {
        assert_eq!(
            encode_response(&Response::Error("no".into())),
            "{\"ok\":false,\"error\":\"no\"}\n"
        );
        let line = encode_response(&Response::Flow(row()));
        assert!(
            line.starts_with("{\"ok\":true,\"flow\":{\"flow_id\":42,\"client\":\"198.18.0.1:40000\",\"server\":\"[2001:2::2]:25\""),
            "{line}"
        );
        for r in [
            Response::Flow(row()),
            Response::Flows(vec![row(), row()]),
            Response::Flows(vec![]),
            Response::Stats(serde_json::json!({"records": 3})),
            Response::Reloaded(ReloadReply {
                rules_file: Some("/r.toml".into()),
                rules_digest: "ab".into(),
                rules: 3,
            }),
            Response::Reopened(Some("/var/log/eve.json".into())),
            Response::IpBlock(IpBlockReply {
                ip: "198.51.100.7".parse().unwrap(),
                blocked: true,
                changed: true,
                fleet: false,
            }),
            Response::Error("boom".into()),
        ] {
            assert_eq!(decode_response(encode_response(&r).as_bytes()).unwrap(), r);
        }
        assert!(decode_response(b"{\"ok\":true,\"error\":\"x\"}").is_err());
        assert!(decode_response(b"{\"ok\":true}").is_err());
        assert!(decode_response(b"{\"error\":\"x\"}").is_err());
    }
}
