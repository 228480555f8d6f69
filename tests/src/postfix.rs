//! Real Postfix instances (master, smtpd, cleanup, qmgr, smtp, virtual) in
//! the test namespaces, each with its own `config_directory`,
//! `queue_directory`, `data_directory` and log file, no chroot, mail
//! delivered to a Maildir; started with `postfix -c DIR start`, stopped
//! (`postfix -c DIR abort`) and removed on drop.
//!
//! * a **server** ([`Postfix::server`]) listens on 198.18.0.2:25 and
//!   delivers `@example.net` to `mail/box/` (a Maildir);
//! * a **client** ([`Postfix::client`]) has no listener: mail submitted
//!   with its `sendmail` is relayed to `[198.18.0.2]:25`, and its bounces
//!   (to `@client.test.example`) land in its own Maildir.
//!
//! Delays are logged with microsecond resolution
//! (`delay_logging_resolution_limit = 6`): the `d` of `delays=a/b/c/d` is
//! the SMTP transmission time, whose difference with and without the gate
//! is what the gate adds per message.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The Postfix user's ids, looked up once (Maildir ownership).
fn postfix_ids() -> (u32, u32) {
    let out = Command::new("id")
        .args(["-u", "postfix"])
        .output()
        .expect("id postfix");
    let uid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let out = Command::new("id")
        .args(["-g", "postfix"])
        .output()
        .expect("id postfix");
    let gid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (uid, gid)
}

/// One running Postfix instance.
pub struct Postfix {
    /// Network namespace it runs in.
    pub ns: String,
    /// Root of the instance: `etc/` (config), `queue/`, `data/`, `mail/`.
    pub root: PathBuf,
    running: bool,
}

/// What the server announces / accepts.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Leave CHUNKING out of EHLO (clients then use DATA).
    pub no_chunking: bool,
    /// STARTTLS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// What the client does.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Try STARTTLS (`smtp_tls_security_level = may`).
    pub tls: bool,
}

fn postfix_cmd(ns: &str, etc: &Path, op: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "postfix", "-c"])
        .arg(etc)
        .arg(op)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const MASTER_CF: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
postlog   unix-dgram n  -       n       -       1       postlogd
";

impl Postfix {
    /// The server on `listen` (e.g. 198.18.0.2) in `ns`, under `root`.
    pub fn server(ns: &str, root: &Path, listen: &str, opts: &ServerOptions) -> Postfix {
        let mut extra = format!(
            "inet_interfaces = {listen}\n\
             virtual_mailbox_domains = example.net\n\
             smtpd_banner = $myhostname ESMTP\n"
        );
        if opts.no_chunking {
            extra.push_str("smtpd_discard_ehlo_keywords = chunking\n");
        }
        if let Some((cert, key)) = &opts.tls {
            extra.push_str(&format!(
                "smtpd_tls_security_level = may\n\
                 smtpd_tls_cert_file = {}\n\
                 smtpd_tls_key_file = {}\n",
                cert.display(),
                key.display()
            ));
        }
        Postfix::start(ns, root, "mx.test.example", &extra, true)
    }

    /// The sending MTA in `ns`, relaying everything to the server.
    pub fn client(ns: &str, root: &Path, opts: &ClientOptions) -> Postfix {
        let mut extra = "inet_interfaces = loopback-only\n\
                         virtual_mailbox_domains = client.test.example\n\
                         relayhost = [198.18.0.2]:25\n"
            .to_string();
        if opts.tls {
            extra.push_str("smtp_tls_security_level = may\nsmtp_tls_loglevel = 1\n");
        }
        Postfix::start(ns, root, "client.test.example", &extra, false)
    }

    fn start(ns: &str, root: &Path, host: &str, extra: &str, listen: bool) -> Postfix {
        let _ = std::fs::remove_dir_all(root);
        let etc = root.join("etc");
        for d in ["etc", "queue", "data", "mail"] {
            std::fs::create_dir_all(root.join(d)).expect("postfix dir");
        }
        let (uid, gid) = postfix_ids();
        for d in ["data", "mail"] {
            let p = root.join(d);
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown");
        }
        let r = root.display();
        let main = format!(
            "compatibility_level = 3.6\n\
             config_directory = {r}/etc\n\
             queue_directory = {r}/queue\n\
             data_directory = {r}/data\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             myhostname = {host}\n\
             mydomain = test.example\n\
             myorigin = $myhostname\n\
             mydestination =\n\
             inet_protocols = ipv4\n\
             mynetworks = 198.18.0.0/15, 127.0.0.0/8\n\
             smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
             alias_maps =\n\
             alias_database =\n\
             local_recipient_maps =\n\
             virtual_mailbox_base = {r}/mail\n\
             virtual_mailbox_maps = static:box/\n\
             virtual_uid_maps = static:{uid}\n\
             virtual_gid_maps = static:{gid}\n\
             smtp_host_lookup = native\n\
             smtpd_peername_lookup = no\n\
             maillog_file_prefixes = /tmp, {r}\n\
             maillog_file = {r}/maillog\n\
             delay_logging_resolution_limit = 6\n\
             biff = no\n\
             {extra}"
        );
        std::fs::write(etc.join("main.cf"), main).expect("main.cf");
        let mut master = MASTER_CF.to_string();
        if listen {
            master.push_str("smtp      inet  n       -       n       -       -       smtpd\n");
        }
        std::fs::write(etc.join("master.cf"), master).expect("master.cf");
        let mut pf = Postfix {
            ns: ns.to_string(),
            root: root.to_path_buf(),
            running: false,
        };
        assert!(
            postfix_cmd(ns, &etc, "start"),
            "postfix -c {} start failed: {}",
            etc.display(),
            pf.log()
        );
        pf.running = true;
        if listen {
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                let out = Command::new("ip")
                    .args(["netns", "exec", ns, "ss", "-ltnH"])
                    .output()
                    .expect("ss");
                if String::from_utf8_lossy(&out.stdout).contains(":25 ") {
                    return pf;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("postfix did not listen: {}", pf.log());
        }
        pf
    }

    /// Submits `message` (RFC 5322 text, LF line endings) from `from` to
    /// `to` with this instance's `sendmail`.
    pub fn submit(&self, from: &str, to: &str, message: &[u8]) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "sendmail", "-C"])
            .arg(self.root.join("etc"))
            .args(["-f", from, to])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sendmail");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(message).expect("write to sendmail");
        }
        let out = child.wait_with_output().expect("sendmail");
        assert!(
            out.status.success(),
            "sendmail failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The instance's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("maillog")).unwrap_or_default()
    }

    /// The messages delivered to the Maildir (`mail/box/new`, `cur`), sorted
    /// by file name.
    pub fn maildir(&self) -> Vec<Vec<u8>> {
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.root.join("mail/box").join(sub)) {
                files.extend(rd.flatten().map(|e| e.path()));
            }
        }
        files.sort();
        files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
    }

    /// Waits (at most `timeout`) until the Maildir holds `n` messages or
    /// more; returns how many it holds.
    pub fn wait_maildir(&self, n: usize, timeout: Duration) -> usize {
        let end = Instant::now() + timeout;
        loop {
            let have = self.maildir().len();
            if have >= n || Instant::now() >= end {
                return have;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Messages in the queue (incoming, active, deferred, hold, maildrop).
    pub fn queued(&self) -> usize {
        ["incoming", "active", "deferred", "hold", "maildrop"]
            .iter()
            .map(|d| count_files(&self.root.join("queue").join(d)))
            .sum()
    }

    /// Waits (at most `timeout`) until `f(log)` holds; returns whether it did.
    pub fn wait_log(&self, timeout: Duration, f: impl Fn(&str) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if f(&self.log()) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `d` (transmission) part of every `delays=a/b/c/d` of the
    /// delivery lines with `status=sent`, in seconds.
    pub fn sent_transmission_delays(&self) -> Vec<f64> {
        self.log()
            .lines()
            .filter(|l| l.contains("status=sent"))
            .filter_map(|l| {
                let d = l.split("delays=").nth(1)?.split(',').next()?;
                d.split('/').nth(3)?.parse().ok()
            })
            .collect()
    }

    /// Stops the instance at once (`postfix abort`).
    pub fn stop(&mut self) {
        if self.running {
            postfix_cmd(&self.ns, &self.root.join("etc"), "abort");
            self.running = false;
        }
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_files(&p)
            } else {
                1
            }
        })
        .sum()
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A self-signed certificate and key for the server's STARTTLS, made with
/// `openssl` in `dir`.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=mx.test.example",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success(), "openssl req failed");
    (cert, key)
}

/// The gate tests' rules: reject (sid 2001) on the keyword
/// FORBIDDEN-KEYWORD in the decoded content (bodies, base64 attachments,
/// BDAT chunks alike).
pub const GATE_RULES: &str = r#"
[[rule]]
sid = 2001
name = "forbidden-keyword"
message = "forbidden keyword in the message content"
category = "content"
severity = "medium"
action = "reject"
[rule.when]
body_keywords = ["FORBIDDEN-KEYWORD"]
"#;

/// A monitored MX: client and server namespaces, a Postfix server on
/// 198.18.0.2:25, optionally a Postfix client in the client namespace, and
/// `smtp-user run --gate` on the server veth. Field order is drop order.
pub struct MxLive {
    pub daemon: Option<crate::process::Daemon>,
    pub client: Option<Postfix>,
    pub server: Postfix,
    pub dir: crate::live::TempDir,
    pub pair: crate::NetPair,
    pub eve: PathBuf,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl MxLive {
    /// `monitor_args`: `None` runs no monitor (the baseline); else extra
    /// `run` arguments after `--rules R -o EVE` (e.g. `--gate`).
    pub fn start(
        tag: &str,
        server: &ServerOptions,
        client: Option<&ClientOptions>,
        monitor_args: Option<&[&str]>,
    ) -> MxLive {
        let turn = crate::live::serial();
        let pair = crate::NetPair::new(tag);
        let dir = crate::live::TempDir::new(tag);
        let server_pf = Postfix::server(&pair.server_ns, &dir.0.join("srv"), "198.18.0.2", server);
        let client_pf = client.map(|o| Postfix::client(&pair.client_ns, &dir.0.join("cli"), o));
        let eve = dir.0.join("eve.json");
        let mut mx = MxLive {
            daemon: None,
            client: client_pf,
            server: server_pf,
            dir,
            pair,
            eve,
            _turn: turn,
        };
        if let Some(args) = monitor_args {
            mx.spawn_monitor(args);
        }
        mx
    }

    /// (Re)starts the monitor with [`GATE_RULES`] and `args`.
    pub fn spawn_monitor(&mut self, args: &[&str]) {
        self.spawn_monitor_with(GATE_RULES, args);
    }

    /// (Re)starts the monitor with the rules `text` and `args`.
    pub fn spawn_monitor_with(&mut self, text: &str, args: &[&str]) {
        self.daemon.take();
        let rules = self.dir.0.join("rules.toml");
        std::fs::write(&rules, text).expect("rules file");
        let eve = self.eve.to_string_lossy().into_owned();
        let rules_s = rules.to_string_lossy().into_owned();
        let mut full = vec!["-o", &eve, "--stats-interval", "3600", "--rules", &rules_s];
        full.extend_from_slice(args);
        self.daemon = Some(crate::process::Daemon::monitor(&self.pair, &full));
    }

    /// The sending Postfix.
    pub fn mta(&self) -> &Postfix {
        self.client.as_ref().expect("a client Postfix")
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        crate::live::events(&self.eve)
    }

    /// swaks from the client namespace to the server.
    pub fn swaks(&self, args: &[&str]) -> crate::mail::Run {
        crate::mail::swaks(
            &self.pair.client_ns,
            "198.18.0.2",
            args,
            Duration::from_secs(10),
        )
    }
}

/// A message from `alice@client.test.example` to `bob@example.net` with a
/// unique Message-ID, `body` as its text (LF line endings).
pub fn message(id: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: alice@client.test.example\n\
         To: bob@example.net\n\
         Subject: {subject}\n\
         Date: Tue, 1 Dec 2026 12:00:00 +0000\n\
         Message-ID: <{id}@client.test.example>\n\
         \n\
         {body}"
    )
    .into_bytes()
}

/// A message with `content` as a base64 attachment (76-column lines).
pub fn message_with_attachment(id: &str, content: &[u8]) -> Vec<u8> {
    let b64 = base64_lines(content);
    format!(
        "From: alice@client.test.example\n\
         To: bob@example.net\n\
         Subject: report\n\
         Date: Tue, 1 Dec 2026 12:00:00 +0000\n\
         Message-ID: <{id}@client.test.example>\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\n\
         \n\
         --b1\n\
         Content-Type: text/plain\n\
         \n\
         See the attachment.\n\
         --b1\n\
         Content-Type: application/octet-stream; name=\"report.bin\"\n\
         Content-Transfer-Encoding: base64\n\
         Content-Disposition: attachment; filename=\"report.bin\"\n\
         \n\
         {b64}\
         --b1--\n"
    )
    .into_bytes()
}

fn base64_lines(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    let mut out = String::new();
    for line in s.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push('\n');
    }
    out
}
