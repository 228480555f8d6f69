//! A monitored mail server for live policy tests: client and server
//! namespaces ([`NetPair`]), Postfix's `smtp-sink -d` on 198.18.0.2:25
//! ([`MailSink`]) and `smtp-user run` on the server veth (the mail host
//! itself) with the test's rules file and EVE output; swaks as the client,
//! `ctl` against the daemon, the EVE events read back. Scenarios take
//! turns ([`serial`]): timing-sensitive checks (verdicts, gate, swaks'
//! round trips) must not share two cores with ten other daemons.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

use crate::{
    mail::{swaks, Run},
    process::{run_to_end, Daemon},
    sink::MailSink,
    NetPair,
};

/// The server's address (smtp-sink listens on port 25).
pub const SERVER: &str = "198.18.0.2";
/// The client's address.
pub const CLIENT_IP: &str = "198.18.0.1";
/// swaks' per-step timeout: a dropped session makes swaks wait this long.
pub const SWAKS_TIMEOUT: Duration = Duration::from_secs(5);

/// The live tests' and benchmarks' rules: drop (sid 1001) on MAIL FROM
/// domain forbidden.example, drop (sid 1002) on the keyword
/// FORBIDDEN-KEYWORD in the decoded content, reset (sid 1003) on MAIL FROM
/// domain reset.example.
pub const POLICY_RULES: &str = r#"
[defaults]
protocol_error = "drop"

[[rule]]
sid = 1001
name = "forbidden-sender-domain"
message = "MAIL FROM a forbidden domain"
category = "policy"
severity = "high"
action = "drop"
[rule.when]
mail_from_domain = ["forbidden.example"]

[[rule]]
sid = 1002
name = "forbidden-keyword"
message = "forbidden keyword in the message content"
category = "content"
severity = "medium"
action = "drop"
[rule.when]
body_keywords = ["FORBIDDEN-KEYWORD"]

[[rule]]
sid = 1003
name = "reset-sender-domain"
message = "MAIL FROM a domain whose sessions are reset"
category = "policy"
severity = "high"
action = "reset"
[rule.when]
mail_from_domain = ["reset.example"]
"#;

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("policy-live-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One live scenario at a time: verdicts, gate arming and swaks' round
/// trips race on two shared cores; ten daemons, sinks and perl clients at
/// once turn milliseconds into tens of them.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the turn (held until the guard drops); a panicked holder does
/// not block the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Namespaces, smtp-sink on 198.18.0.2:25, and `smtp-user run` on the
/// server veth. Field order is drop order: daemon first, namespaces, then
/// the turn of the next scenario.
pub struct Live {
    /// The running `smtp-user run`; `None` after [`Live::stop`].
    pub daemon: Option<Daemon>,
    pub sink: MailSink,
    /// Scratch directory: EVE file, rules file, mail data files.
    pub dir: TempDir,
    pub pair: NetPair,
    /// The daemon's EVE output (`-o`), recreated by each [`Live::spawn`].
    pub eve: PathBuf,
    /// The rules file passed with `--rules` (rewritten by tests to reload).
    pub rules: PathBuf,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Live {
    /// `rules`: the rules file text (`None`: run without `--rules`);
    /// `extra`: more `run` arguments (`--gate`, `--mode monitor`).
    pub fn start(tag: &str, rules: Option<&str>, extra: &[&str]) -> Live {
        let turn = serial();
        let pair = NetPair::new(tag);
        let dir = TempDir::new(tag);
        let sink = MailSink::start(&pair.server_ns, &format!("{SERVER}:25"));
        let eve = dir.0.join("eve.json");
        let rules_path = dir.0.join("rules.toml");
        let mut live = Live {
            daemon: None,
            sink,
            dir,
            pair,
            eve,
            rules: rules_path,
            _turn: turn,
        };
        live.spawn(rules, extra);
        live
    }

    /// (Re)starts the daemon with a fresh EVE file.
    pub fn spawn(&mut self, rules: Option<&str>, extra: &[&str]) {
        self.stop();
        let _ = std::fs::remove_file(&self.eve);
        let eve = self.eve.to_string_lossy().into_owned();
        let rules_s = self.rules.to_string_lossy().into_owned();
        let mut args = vec!["-o", &eve, "--stats-interval", "3600"];
        if let Some(text) = rules {
            std::fs::write(&self.rules, text).expect("rules file");
            args.extend(["--rules", &rules_s]);
        }
        args.extend_from_slice(extra);
        self.daemon = Some(Daemon::monitor(&self.pair, &args));
    }

    /// Stops the daemon (SIGTERM, bounded); returns its stderr.
    pub fn stop(&mut self) -> String {
        let Some(d) = self.daemon.take() else {
            return String::new();
        };
        let (st, err) = d.terminate(Duration::from_secs(20));
        assert!(st.success(), "smtp-user run failed: {err}");
        err
    }

    pub fn swaks(&self, args: &[&str]) -> Run {
        swaks(&self.pair.client_ns, SERVER, args, SWAKS_TIMEOUT)
    }

    /// A mail whose full content is `data` (LF line endings; swaks sends
    /// CRLF and dot-stuffs).
    pub fn send_data(&self, from: &str, data: &[u8]) -> Run {
        let f = self.dir.0.join(format!(
            "data-{}.eml",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::write(&f, data).expect("data file");
        let r = self.swaks(&[
            "--from",
            from,
            "--to",
            "bob@example.net",
            "--data",
            f.to_str().expect("utf-8 path"),
        ]);
        let _ = std::fs::remove_file(&f);
        r
    }

    /// A mail with `content` as a base64 attachment `report.txt`.
    pub fn send_attachment(&self, from: &str, subject: &str, content: &[u8]) -> Run {
        let f = self.dir.0.join("report.txt");
        std::fs::write(&f, content).expect("attachment");
        self.swaks(&[
            "--from",
            from,
            "--to",
            "bob@example.net",
            "--header",
            &format!("Subject: {subject}"),
            "--attach",
            &format!("@{}", f.display()),
        ])
    }

    pub fn events(&self) -> Vec<Value> {
        events(&self.eve)
    }

    pub fn alerts(&self) -> Vec<Value> {
        of_type(&self.events(), "alert")
    }

    /// `smtp-user ctl --iface IF args` → (success, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        let mut full = vec!["ctl", "--iface", &self.pair.server_if];
        full.extend_from_slice(args);
        let out = run_to_end(&self.pair.server_ns, &full, Duration::from_secs(20));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // Daemon::drop terminates it (the field order would too).
        self.daemon.take();
    }
}

/// The JSON lines of an EVE file (unparsable lines, such as a last line
/// still being written, skipped); panics on a line that does not validate
/// against the EVE schemas (smtp-user/schema/eve.json, and Suricata's when
/// `cargo xtask prereqs` fetched it).
pub fn events(path: &Path) -> Vec<Value> {
    let lines: Vec<Value> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    eve_schema::check(&lines);
    lines
}

#[path = "../../smtp-user/tests/eve_schema/mod.rs"]
mod eve_schema;

/// The events of one `event_type`.
pub fn of_type(ev: &[Value], t: &str) -> Vec<Value> {
    ev.iter()
        .filter(|e| e["event_type"] == t)
        .cloned()
        .collect()
}
