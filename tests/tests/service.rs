//! Running as a service: the configuration file (errors at line and
//! column, flags over the file, `config show` read back by `config
//! check`), the systemd unit (`systemd-analyze verify`, the daemon under
//! exactly the unit's capabilities, and not without each of them), and the readiness / watchdog / reload
//! protocol against a notification socket, with a live daemon in a
//! namespace.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use smtp_e2e::live::{events, of_type, serial, TempDir, CLIENT_IP, POLICY_RULES, SERVER};
use smtp_e2e::mail::swaks;
use smtp_e2e::process::{run_to_end_with, wait_path, Daemon};
use smtp_e2e::sink::MailSink;
use smtp_e2e::{require_root, smtp_user_bin, NetPair};

fn smtp_user(args: &[&str]) -> Output {
    Command::new(smtp_user_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run smtp-user")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd/smtp-monitor@.service")
}

#[test]
fn config_errors_carry_line_and_column() {
    let dir = TempDir::new("config-errors");
    let f = dir.0.join("bad.toml");
    let fs = f.to_string_lossy().into_owned();
    for (body, want) in [
        (
            "ports = [25]\n\n# x\n  stats_intervall = 3\n",
            ":4:3: unknown option `stats_intervall`",
        ),
        (
            "gate = \"yes\"\n",
            ":1:8: `gate`: expected a boolean, found string",
        ),
        (
            "ports = [25, 99999]\n",
            ":1:14: `ports`: invalid value '99999'",
        ),
        ("mode = \"block\"\n", ":1:8: `mode`: invalid value 'block'"),
        (
            "reject_reply = \"250 ok\"\n",
            ":1:16: `reject_reply`: invalid value '250 ok'",
        ),
        ("iface = \"eth0\n", ":1:"),
    ] {
        std::fs::write(&f, body).expect("write");
        let want = format!("{fs}{want}");
        let out = smtp_user(&["config", "check", &fs]);
        assert!(!out.status.success(), "{body}");
        let err = text(&out.stderr);
        assert!(err.contains(&want), "{body}: want {want}, got {err}");
        // `run` refuses the file the same way, before touching the kernel.
        let out = smtp_user(&["run", "--config", &fs]);
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains(&want), "{}", text(&out.stderr));
    }
    // A rules file named by the configuration is checked too.
    let rules = dir.0.join("rules.toml");
    std::fs::write(&rules, "[[rule]]\nsid = \"x\"\n").expect("rules");
    std::fs::write(&f, format!("rules = \"{}\"\n", rules.display())).expect("write");
    let out = smtp_user(&["config", "check", &fs]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&format!("{}:2:", rules.display())),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn flags_override_the_file_and_show_round_trips() {
    let dir = TempDir::new("config-show");
    let f = dir.0.join("config.toml");
    let fs = f.to_string_lossy().into_owned();
    std::fs::write(
        &f,
        "ports = [25, 587]\nstats_interval = 60\ngate = true\nmode = \"monitor\"\n",
    )
    .expect("write");
    let out = smtp_user(&["config", "check", &fs]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok (4 options set)"));
    let out = smtp_user(&[
        "config",
        "show",
        "--config",
        &fs,
        "--ports",
        "2525",
        "--idle-timeout",
        "30",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for line in [
        "ports = [2525]",
        "idle_timeout = 30",
        "stats_interval = 60",
        "gate = true",
        "mode = \"monitor\"",
        "ingress = \"tc\"",
        "memcap = 1024",
        "# iface = (not set)",
    ] {
        assert!(shown.lines().any(|l| l == line), "{line} missing:\n{shown}");
    }
    // What `show` prints is a valid file with the same effective values.
    let again = dir.0.join("shown.toml");
    std::fs::write(&again, &shown).expect("write");
    let again_s = again.to_string_lossy().into_owned();
    let out = smtp_user(&["config", "check", &again_s]);
    assert!(out.status.success(), "{}\n{shown}", text(&out.stderr));
    let out = smtp_user(&["config", "show", "--config", &again_s]);
    assert_eq!(text(&out.stdout), shown);
    // The commented template checks and changes nothing.
    let out = smtp_user(&["config", "show", "--commented", "--config", "/dev/null"]);
    let template = dir.0.join("template.toml");
    std::fs::write(&template, &out.stdout).expect("write");
    let template_s = template.to_string_lossy().into_owned();
    let out = smtp_user(&["config", "check", &template_s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok (0 options set)"));
    let defaults = smtp_user(&["config", "show", "--config", "/dev/null"]);
    let from_template = smtp_user(&["config", "show", "--config", &template_s]);
    assert_eq!(text(&defaults.stdout), text(&from_template.stdout));
}

#[test]
fn unit_verifies() {
    // verify checks that ExecStart's binary exists: point it at ours.
    let dir = TempDir::new("unit-verify");
    let unit = std::fs::read_to_string(unit_path()).expect("unit");
    let bin = smtp_user_bin();
    let copy = dir.0.join("smtp-monitor@veth0.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/smtp-user", &bin.to_string_lossy()),
    )
    .expect("write");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze (cargo xtask prereqs installs systemd)");
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("smtp-monitor@"), "{err}");
}

/// The unit's `CapabilityBoundingSet=` as setpriv's `--bounding-set`.
fn unit_capabilities() -> String {
    let unit = std::fs::read_to_string(unit_path()).expect("unit");
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet=")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert!(caps.len() >= 3, "{caps:?}");
    format!("-all,{}", caps.join(","))
}

/// The notification socket a test listens on.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        NotifySocket { sock, path }
    }

    /// The next message before `deadline`.
    fn next(&self, deadline: Instant) -> Option<String> {
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                return Some(text(buf.get(..n).unwrap_or_default()));
            }
        }
        None
    }

    /// Messages until one has `line` (returned), within `timeout`.
    fn until(&self, line: &str, timeout: Duration) -> Option<(String, Vec<String>)> {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        while let Some(m) = self.next(deadline) {
            if m.lines().any(|l| l == line) {
                return Some((m, before));
            }
            before.push(m);
        }
        None
    }
}

fn pins_of(iface: &str) -> PathBuf {
    PathBuf::from(smtp_user::datapath::DEFAULT_PIN_ROOT)
        .join(iface)
        .join(smtp_common::MAP_VERDICTS)
}

#[test]
fn notify_ready_after_pins_watchdog_and_reload() {
    if !require_root("notify_ready_after_pins_watchdog_and_reload") {
        return;
    }
    let _turn = serial();
    let pair = NetPair::new("notify");
    let dir = TempDir::new("notify");
    let _sink = MailSink::start(&pair.server_ns, &format!("{SERVER}:25"));
    let notify = NotifySocket::bind(&dir.0);
    let eve = dir.0.join("eve.json");
    let socket = dir.0.join("ctl.sock");
    let args = [
        "run",
        "--iface",
        &pair.server_if,
        "--config",
        "/dev/null",
        "-o",
        eve.to_str().expect("utf-8"),
        "--control-socket",
        socket.to_str().expect("utf-8"),
        "--stats-interval",
        "3600",
    ];
    let notify_path = notify.path.to_string_lossy().into_owned();
    let mut d = Daemon::spawn_with(
        &pair.server_ns,
        &[],
        &args,
        &[
            ("NOTIFY_SOCKET", &notify_path),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    // READY=1 is the first message, and comes once attached and pinned.
    let first = notify.next(Instant::now() + Duration::from_secs(30));
    let first = first.expect("no notification within 30 s");
    assert!(first.lines().any(|l| l == "READY=1"), "{first}");
    assert!(pins_of(&pair.server_if).exists(), "READY=1 before the pins");
    assert!(socket.exists(), "READY=1 before the control socket");
    assert!(d.running());
    // WATCHDOG=1 every 0.5 s (half of WATCHDOG_USEC).
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut pings = 0;
    while let Some(m) = notify.next(deadline) {
        pings += m.lines().filter(|l| *l == "WATCHDOG=1").count();
    }
    assert!((4..=8).contains(&pings), "{pings} watchdog pings in 3 s");
    // SIGHUP (ExecReload): RELOADING=1 then READY=1; --output reopened.
    let rotated = dir.0.join("eve.json.1");
    std::fs::rename(&eve, &rotated).expect("rotate");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(d.pid(), libc::SIGHUP) };
    let (_, before) = notify
        .until("RELOADING=1", Duration::from_secs(5))
        .expect("RELOADING=1 after SIGHUP");
    assert!(before.iter().all(|m| m == "WATCHDOG=1"), "{before:?}");
    notify
        .until("READY=1", Duration::from_secs(5))
        .expect("READY=1 after the reload");
    let run = swaks(
        &pair.client_ns,
        SERVER,
        &["--from", "alice@example.com", "--to", "bob@example.net"],
        Duration::from_secs(5),
    );
    assert!(run.success(), "swaks: {}", run.stderr);
    let end = Instant::now() + Duration::from_secs(10);
    while of_type(&events(&eve), "smtp").is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    let smtp = of_type(&events(&eve), "smtp");
    assert_eq!(smtp.len(), 1, "the reopened file has the session");
    assert_eq!(smtp[0]["src_ip"], CLIENT_IP);
    assert!(of_type(&events(&rotated), "smtp").is_empty());
    // The pings go on after the reload.
    notify
        .until("WATCHDOG=1", Duration::from_secs(2))
        .expect("pings after the reload");
    let (st, err) = d.terminate(Duration::from_secs(20));
    assert!(st.success(), "{err}");
    notify
        .until("STOPPING=1", Duration::from_secs(2))
        .expect("STOPPING=1 at exit");
}

#[test]
fn runs_with_only_the_units_capabilities() {
    if !require_root("runs_with_only_the_units_capabilities") {
        return;
    }
    let _turn = serial();
    let pair = NetPair::new("caps");
    let dir = TempDir::new("caps");
    let _sink = MailSink::start(&pair.server_ns, &format!("{SERVER}:25"));
    let eve = dir.0.join("eve.json");
    let rules = dir.0.join("rules.toml");
    std::fs::write(&rules, POLICY_RULES).expect("rules");
    let bounding = unit_capabilities();
    let prefix = ["setpriv", "--bounding-set", &bounding, "--"];
    let args = [
        "run",
        "--iface",
        &pair.server_if,
        "--config",
        "/dev/null",
        "--rules",
        rules.to_str().expect("utf-8"),
        "-o",
        eve.to_str().expect("utf-8"),
        "--stats-interval",
        "3600",
    ];
    let mut d = Daemon::spawn_with(&pair.server_ns, &prefix, &args, &[]);
    assert!(
        wait_path(&pins_of(&pair.server_if), Duration::from_secs(30)) && d.running(),
        "the daemon did not start with {bounding}"
    );
    // Drop (map write) and reset (socket destroy or raw injection).
    for from in ["mallory@forbidden.example", "eve@reset.example"] {
        let _ = swaks(
            &pair.client_ns,
            SERVER,
            &["--from", from, "--to", "bob@example.net"],
            Duration::from_secs(3),
        );
    }
    let end = Instant::now() + Duration::from_secs(10);
    while of_type(&events(&eve), "alert").len() < 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    let alerts = of_type(&events(&eve), "alert");
    let sids: Vec<_> = alerts
        .iter()
        .map(|a| a["alert"]["signature_id"].clone())
        .collect();
    assert!(
        sids.contains(&1001.into()) && sids.contains(&1003.into()),
        "{alerts:?}"
    );
    for a in &alerts {
        assert_eq!(a["alert"]["action"], "blocked", "{a}");
    }
    let (st, err) = d.terminate(Duration::from_secs(20));
    assert!(st.success(), "{err}");
    assert!(!err.contains("Operation not permitted"), "{err}");
    assert!(!err.contains("ERROR"), "{err}");
    // Each of the loading capabilities is needed: without it, no start
    // (CAP_PERFMON: the verifier refuses the programs).
    for cap in ["bpf", "perfmon", "net_admin"] {
        let fewer = bounding.replace(&format!(",+{cap}"), "");
        assert_ne!(fewer, bounding, "{cap} not in the unit");
        let prefix = ["setpriv", "--bounding-set", &fewer, "--"];
        let out = run_to_end_with(&pair.server_ns, &prefix, &args, Duration::from_secs(30));
        assert!(!out.status.success(), "started without CAP_{cap}");
        assert!(
            !pins_of(&pair.server_if).exists(),
            "pins left without CAP_{cap}"
        );
    }
}
