//! `smtp-user ctl`: inspect or change a running monitor from another
//! process. Map changes (enforce, verdicts) go straight to the pinned maps
//! (`/sys/fs/bpf/smtp-monitor/<iface>/`), so they work even when the daemon
//! is stuck; IP blocks go through the daemon (which publishes them to the
//! fleet) and fall back to the maps when it does not answer; `status`,
//! `flows`, `reload`, `reopen`, the userspace half of `stats` and flow-id
//! lookups go through the daemon's control socket
//! (`/run/smtp-monitor/<iface>.sock`).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use smtp_common::Verdict;
use smtp_user::control::{
    default_socket_path, request, ControlError, FlowRow, ReloadReply, Request, Response, Status,
};
use smtp_user::datapath::route::default_route_interface;
use smtp_user::datapath::{Control, DEFAULT_PIN_ROOT};
use smtp_user::pipeline::kernel_flow_key;
use smtp_user::policy::matchers::parse_duration;

/// Arguments of `ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Interface of the running monitor (default: the one carrying the default route).
    #[arg(long)]
    pub iface: Option<String>,
    /// bpffs directory of the pins.
    #[arg(long, default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
    /// Control socket of the daemon (default: /run/smtp-monitor/<iface>.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// How long to wait for the daemon's answer, e.g. `5s`.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print JSON instead of text (status, stats, flows, reload).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: CtlAction,
}

#[derive(Debug, Subcommand)]
pub enum CtlAction {
    /// Mode, ports, uptime, rules file and digest (from the daemon).
    Status,
    /// Kernel counters (pinned maps) and userspace counters (daemon, when it answers).
    Stats,
    /// Live SMTP sessions with state, envelope and verdict (from the daemon).
    Flows,
    /// Re-read the rules file; a bad file is rejected and the old rules stay.
    Reload,
    /// Open the `--output` file again (after logrotate moved it).
    Reopen,
    /// Block a flow (by its EVE flow_id) or a client IP address. An IP
    /// block goes through the daemon, which also publishes it to the fleet
    /// (`--fleet`); when the daemon does not answer it is written to the
    /// pinned map directly (this host only).
    Block {
        /// A flow_id from `ctl flows` / EVE output, or an IP address.
        target: Target,
        /// IP blocks only: expire after this long, e.g. `10m`, `1h30m`.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        for_: Option<Duration>,
    },
    /// Remove a flow's drop verdict or an IP address from the blocklist.
    Unblock {
        /// A flow_id or an IP address.
        target: Target,
    },
    /// Blocked client addresses (with the time left) and flows with a drop
    /// verdict, from the pinned maps.
    Blocked,
    /// Enforcement of drop verdicts: `on`, or `off` (monitor mode).
    Enforce {
        #[arg(value_parser = ["on", "off"])]
        mode: String,
    },
    /// Drop a flow in the kernel (both directions), e.g. `198.18.0.1:40000 198.18.0.2:25`.
    Drop { a: SocketAddr, b: SocketAddr },
    /// Remove a flow's drop verdict.
    Pass { a: SocketAddr, b: SocketAddr },
}

/// What `block`/`unblock` act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An EVE `flow_id`, resolved to its endpoints by the daemon.
    Flow(u64),
    /// A client address for the kernel IP blocklist.
    Ip(IpAddr),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Target::Ip(ip));
        }
        s.parse::<u64>()
            .map(Target::Flow)
            .map_err(|_| format!("{s:?} is neither a flow id nor an IP address"))
    }
}

/// Where the monitor is: interface, pins, socket.
struct Daemon {
    iface: Option<String>,
    pin_root: PathBuf,
    socket: Option<PathBuf>,
    timeout: Duration,
}

impl Daemon {
    fn iface(&self) -> anyhow::Result<String> {
        match &self.iface {
            Some(i) => Ok(i.clone()),
            None => default_route_interface().context("no default route: pass --iface"),
        }
    }

    fn control(&self) -> anyhow::Result<(String, Control)> {
        let iface = self.iface()?;
        let control = Control::open_pinned(&self.pin_root, &iface).with_context(|| {
            format!(
                "no monitor running on {iface} (pins under {})",
                self.pin_root.display()
            )
        })?;
        Ok((iface, control))
    }

    /// The control socket and, when known, the interface it belongs to.
    fn socket(&self) -> anyhow::Result<(PathBuf, Option<String>)> {
        Ok(match &self.socket {
            Some(p) => (p.clone(), self.iface.clone()),
            None => {
                let iface = self.iface()?;
                (default_socket_path(&iface), Some(iface))
            }
        })
    }

    /// One exchange with the daemon; an error reply becomes an error.
    fn ask(&self, req: &Request) -> anyhow::Result<Response> {
        let (path, iface) = self.socket()?;
        match request(&path, req, self.timeout) {
            Ok(Response::Error(e)) => bail!("the monitor answered: {e}"),
            Ok(resp) => Ok(resp),
            Err(ControlError::NotRunning { path }) => match iface {
                Some(iface) => bail!(
                    "no monitor running on {iface} (socket {} not found)",
                    path.display()
                ),
                None => bail!("no monitor running (socket {} not found)", path.display()),
            },
            Err(e) => Err(e.into()),
        }
    }
}

fn unexpected(resp: &Response) -> anyhow::Error {
    let text: String = format!("{resp:?}").chars().take(200).collect();
    anyhow::anyhow!("unexpected answer from the monitor: {text}")
}

pub fn ctl(args: CtlArgs) -> anyhow::Result<()> {
    let json = args.json;
    let t = Daemon {
        iface: args.iface,
        pin_root: args.pin_root,
        socket: args.socket,
        timeout: args.timeout,
    };
    match args.action {
        CtlAction::Status => match t.ask(&Request::Status)? {
            Response::Status(s) if json => println!("{}", serde_json::to_string(&s)?),
            Response::Status(s) => print!("{}", format_status(&s)),
            r => return Err(unexpected(&r)),
        },
        CtlAction::Flows => match t.ask(&Request::Flows)? {
            Response::Flows(rows) if json => println!("{}", serde_json::to_string(&rows)?),
            Response::Flows(rows) => print!("{}", format_flows(&rows)),
            r => return Err(unexpected(&r)),
        },
        CtlAction::Reload => match t.ask(&Request::Reload)? {
            Response::Reloaded(r) if json => println!("{}", serde_json::to_string(&r)?),
            Response::Reloaded(r) => println!("{}", format_reload(&r)),
            r => return Err(unexpected(&r)),
        },
        CtlAction::Reopen => match t.ask(&Request::Reopen)? {
            Response::Reopened(Some(path)) => println!("reopened {path}"),
            Response::Reopened(None) => println!("output is stdout: nothing to reopen"),
            r => return Err(unexpected(&r)),
        },
        CtlAction::Stats => stats(&t, json)?,
        CtlAction::Block { target, for_ } => block(&t, target, for_, true)?,
        CtlAction::Unblock { target } => block(&t, target, None, false)?,
        CtlAction::Blocked => blocked(&t, json)?,
        CtlAction::Enforce { mode } => {
            let (iface, mut control) = t.control()?;
            control.set_enforce(mode == "on")?;
            println!("iface={iface} enforce={mode}");
        }
        CtlAction::Drop { a, b } | CtlAction::Pass { a, b } if a.is_ipv4() != b.is_ipv4() => {
            bail!("{a} and {b} are not of the same address family");
        }
        CtlAction::Drop { a, b } => {
            let (iface, mut control) = t.control()?;
            control.set_verdict(&kernel_flow_key(a, b), Verdict::Drop)?;
            println!("iface={iface} flow {a} <-> {b}: drop");
        }
        CtlAction::Pass { a, b } => {
            let (iface, mut control) = t.control()?;
            control.set_verdict(&kernel_flow_key(a, b), Verdict::Pass)?;
            println!("iface={iface} flow {a} <-> {b}: pass");
        }
    }
    Ok(())
}

/// The IP blocklist and the drop verdicts, straight from the pinned maps
/// (works when the daemon is stuck).
fn blocked(t: &Daemon, json: bool) -> anyhow::Result<()> {
    let (iface, control) = t.control()?;
    let mut ips = control.blocked_ips()?;
    ips.sort_by_key(|(ip, _)| *ip);
    let flows: Vec<String> = control.drop_verdicts()?.iter().map(flow_key_text).collect();
    if json {
        let ips: Vec<serde_json::Value> = ips
            .iter()
            .map(|(ip, left)| {
                serde_json::json!({ "ip": ip.to_string(), "expires_in_secs": left.map(|d| d.as_secs()) })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "iface": iface, "ips": ips, "flows": flows })
        );
        return Ok(());
    }
    println!(
        "iface={iface} blocked_ips={} drop_verdicts={}",
        ips.len(),
        flows.len()
    );
    for (ip, left) in &ips {
        match left {
            Some(d) => println!("ip {ip}  expires in {}", format_secs(d.as_secs())),
            None => println!("ip {ip}  no expiry"),
        }
    }
    for f in &flows {
        println!("flow {f}");
    }
    Ok(())
}

/// `lo_ip:port <-> hi_ip:port` of a kernel flow key.
fn flow_key_text(k: &smtp_common::FlowKey) -> String {
    let addr = |a: &[u8; 16], port: u16| -> SocketAddr {
        if k.family == smtp_common::FAMILY_V4 {
            let v4 = std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            SocketAddr::new(IpAddr::V4(v4), port)
        } else {
            SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::from(*a)), port)
        }
    };
    format!(
        "{} <-> {}",
        addr(&k.lo_addr, k.lo_port),
        addr(&k.hi_addr, k.hi_port)
    )
}

/// Kernel counters from the pins, userspace counters from the daemon when
/// it answers (a note on stderr when it does not).
fn stats(t: &Daemon, json: bool) -> anyhow::Result<()> {
    let (iface, control) = t.control()?;
    let enforce = control.config()?.enforce != 0;
    let kernel = control.stats()?;
    let (path, _) = t.socket()?;
    let user = match request(&path, &Request::Stats, t.timeout) {
        Ok(Response::Stats(v)) => Some(v),
        Ok(Response::Error(e)) => {
            eprintln!("note: kernel counters only: the monitor answered: {e}");
            None
        }
        Ok(r) => {
            eprintln!("note: kernel counters only: {}", unexpected(&r));
            None
        }
        Err(ControlError::NotRunning { path }) => {
            eprintln!(
                "note: kernel counters only: no control socket at {}",
                path.display()
            );
            None
        }
        Err(e) => {
            eprintln!("note: kernel counters only: {e}");
            None
        }
    };
    if json {
        // The counters' `name=value` text is their one list of names, so
        // counters added to the datapath appear here without a change.
        let kernel: serde_json::Map<String, serde_json::Value> = kernel
            .to_string()
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                let v = v
                    .parse::<u64>()
                    .map(serde_json::Value::from)
                    .unwrap_or_else(|_| v.into());
                (k.to_string(), v)
            })
            .collect();
        let out = serde_json::json!({
            "iface": iface, "enforce": enforce, "kernel": kernel, "user": user,
        });
        println!("{out}");
    } else {
        println!("iface={iface} enforce={enforce} {kernel}");
        if let Some(user) = user {
            let mut pairs = Vec::new();
            flatten("", &user, &mut pairs);
            println!("user: {}", pairs.join(" "));
        }
    }
    Ok(())
}

/// `key=value` pairs of a JSON value, nested keys joined with `.`.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        // Per-worker lists: `workers.0.flows=…`.
        serde_json::Value::Array(a) if a.iter().all(|v| v.is_object()) && !a.is_empty() => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{prefix}.{i}"), v, out);
            }
        }
        serde_json::Value::String(s) => out.push(format!("{prefix}={}", clean(s, usize::MAX))),
        v => out.push(format!("{prefix}={v}")),
    }
}

fn block(t: &Daemon, target: Target, for_: Option<Duration>, block: bool) -> anyhow::Result<()> {
    match target {
        Target::Ip(ip) => {
            let (iface, mut control) = t.control()?;
            let req = if block {
                Request::BlockIp {
                    ip,
                    for_secs: for_.map(|d| d.as_secs().max(1)),
                }
            } else {
                Request::UnblockIp { ip }
            };
            let (path, _) = t.socket()?;
            match request(&path, &req, t.timeout) {
                Ok(Response::IpBlock(r)) => {
                    let fleet = if r.fleet {
                        " (published to the fleet)"
                    } else {
                        ""
                    };
                    match (block, for_) {
                        (true, Some(d)) => println!(
                            "iface={iface} ip {ip}: blocked for {}{fleet}",
                            format_secs(d.as_secs())
                        ),
                        (true, None) => println!("iface={iface} ip {ip}: blocked{fleet}"),
                        (false, _) if r.changed => {
                            println!("iface={iface} ip {ip}: unblocked{fleet}")
                        }
                        (false, _) => println!("iface={iface} ip {ip}: was not blocked{fleet}"),
                    }
                    return Ok(());
                }
                Ok(Response::Error(e)) => bail!("the monitor answered: {e}"),
                Ok(r) => eprintln!("note: this host only: {}", unexpected(&r)),
                Err(e) => eprintln!("note: this host only (the daemon did not answer: {e})"),
            }
            if block {
                control.block_ip(ip, for_)?;
                match for_ {
                    Some(d) => println!(
                        "iface={iface} ip {ip}: blocked for {}",
                        format_secs(d.as_secs())
                    ),
                    None => println!("iface={iface} ip {ip}: blocked"),
                }
            } else if control.unblock_ip(ip)? {
                println!("iface={iface} ip {ip}: unblocked");
            } else {
                println!("iface={iface} ip {ip}: was not blocked");
            }
        }
        Target::Flow(flow_id) => {
            if for_.is_some() {
                bail!("--for applies to IP addresses only (a flow's verdict lasts as long as the flow)");
            }
            let row = match t.ask(&Request::Flow { flow_id })? {
                Response::Flow(row) => row,
                r => return Err(unexpected(&r)),
            };
            let (iface, mut control) = t.control()?;
            let key = kernel_flow_key(row.client, row.server);
            let verdict = if block { Verdict::Drop } else { Verdict::Pass };
            control.set_verdict(&key, verdict)?;
            println!(
                "iface={iface} flow {flow_id} ({} <-> {}): {}",
                row.client,
                row.server,
                if block { "drop" } else { "pass" }
            );
        }
    }
    Ok(())
}

// ---- IP blocklist: replaced at merge by the `datapath::Control` calls ----

// ---- text output ----

/// `s` with control characters escaped (names come from the network and
/// must not drive the terminal), cut to `max` characters with `…`.
fn clean(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `3725` → `1h02m05s`.
fn format_secs(s: u64) -> String {
    let (d, h, m, sec) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{sec:02}s")
    } else if m > 0 {
        format!("{m}m{sec:02}s")
    } else {
        format!("{sec}s")
    }
}

fn format_status(s: &Status) -> String {
    let ports: Vec<String> = s.ports.iter().map(u16::to_string).collect();
    let mut out = String::new();
    let mut kv = |k: &str, v: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{k}={v}");
    };
    kv("iface", &clean(&s.iface, usize::MAX));
    kv("mode", &clean(&s.mode, usize::MAX));
    kv("ingress", &clean(&s.ingress, usize::MAX));
    kv("gate", &s.gate);
    kv("ports", &ports.join(","));
    kv("started", &clean(&s.started, usize::MAX));
    kv("uptime", &format_secs(s.uptime_secs));
    kv(
        "rules_file",
        &s.rules_file
            .as_deref()
            .map_or_else(|| "(builtin)".to_string(), |f| clean(f, usize::MAX)),
    );
    kv("rules_digest", &clean(&s.rules_digest, usize::MAX));
    kv("rules", &s.rules);
    kv("pid", &s.pid);
    if let Some(f) = &s.fleet {
        kv("fleet", &clean(f, usize::MAX));
    }
    if let Some(r) = &s.eve_redis {
        kv("eve_redis", &clean(r, usize::MAX));
    }
    out
}

fn format_reload(r: &ReloadReply) -> String {
    format!(
        "reloaded rules_file={} rules={} rules_digest={}",
        r.rules_file
            .as_deref()
            .map_or_else(|| "(builtin)".to_string(), |f| clean(f, usize::MAX)),
        r.rules,
        clean(&r.rules_digest, usize::MAX)
    )
}

/// Widest text in a flows table cell.
const CELL_MAX: usize = 40;

fn format_flows(rows: &[FlowRow]) -> String {
    if rows.is_empty() {
        return "no live SMTP sessions\n".into();
    }
    let header = [
        "FLOW_ID",
        "CLIENT",
        "SERVER",
        "STATE",
        "VERDICT",
        "GATED",
        "TX",
        "UP",
        "DOWN",
        "AGE",
        "HELO",
        "MAIL_FROM",
        "RCPT_TO",
    ];
    let opt = |s: &Option<String>| s.as_deref().map_or("-".into(), |s| clean(s, CELL_MAX));
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let rcpt = match r.rcpt_to.as_slice() {
            [] => "-".to_string(),
            [one] => clean(one, CELL_MAX),
            [first, rest @ ..] => format!("{} (+{})", clean(first, CELL_MAX), rest.len()),
        };
        table.push(vec![
            r.flow_id.to_string(),
            r.client.to_string(),
            r.server.to_string(),
            clean(&r.state, CELL_MAX),
            clean(&r.verdict, CELL_MAX),
            if r.gated { "yes" } else { "no" }.into(),
            r.transactions.to_string(),
            r.bytes_toserver.to_string(),
            r.bytes_toclient.to_string(),
            format_secs(r.age_secs),
            opt(&r.helo),
            opt(&r.mail_from),
            rcpt,
        ]);
    }
    let mut widths = vec![0usize; header.len()];
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &table {
        let last = row.len().saturating_sub(1);
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let pad = w.saturating_sub(cell.chars().count());
                let _ = write!(out, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!("42".parse(), Ok(Target::Flow(42)));
        assert_eq!(
            "198.18.0.1".parse(),
            Ok(Target::Ip("198.18.0.1".parse().unwrap()))
        );
        assert_eq!(
            "2001:2::1".parse(),
            Ok(Target::Ip("2001:2::1".parse().unwrap()))
        );
        assert!("198.18.0.1:25".parse::<Target>().is_err());
        assert!("x".parse::<Target>().is_err());
    }

    #[test]
    fn empty_and_builtin_outputs() {
        assert_eq!(format_flows(&[]), "no live SMTP sessions\n");
        let r = ReloadReply {
            rules_file: None,
            rules_digest: "builtin".into(),
            rules: 1,
        };
        assert_eq!(
            format_reload(&r),
            "reloaded rules_file=(builtin) rules=1 rules_digest=builtin"
        );
        let mut out = Vec::new();
        flatten(
            "",
            &serde_json::json!({"a": 1, "b": {"c": "x\ny", "d": [1, 2]}}),
            &mut out,
        );
        assert_eq!(out, ["a=1", "b.c=x\\ny", "b.d=[1,2]"]);
    }

    #[test]
    fn text_is_cleaned_and_cut() {
        assert_eq!(clean("a\x1b[2Jb", 10), "a\\u{1b}[2Jb");
        assert_eq!(clean("abcdef", 3), "abc…");
        assert_eq!(format_secs(3725), "1h02m05s");
        assert_eq!(format_secs(59), "59s");
        assert_eq!(format_secs(90_000), "1d01h00m");
    }
}
