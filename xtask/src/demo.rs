//! `cargo xtask demo`: the product working in one command.
//!
//! Two network namespaces joined by a veth pair (198.18.0.1 client,
//! 198.18.0.2 server); Postfix's `smtp-sink -d` is the mail server and
//! stores every message it accepts as a file; `smtp-user run --rules
//! examples/rules.toml --gate` watches the server's veth (the mail host
//! itself); `swaks` sends a clean mail, a mail from a forbidden domain and
//! a mail with a forbidden keyword inside a base64 attachment. For each
//! mail the demo prints whether the server stored it and the alerts the
//! monitor wrote, then removes everything it created — also on Ctrl-C:
//! every wait is bounded and polls the interrupt flag, and guards undo
//! each step on the way out.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

const CLIENT: &str = "198.18.0.1";
const SERVER: &str = "198.18.0.2";
const PIN_ROOT: &str = "/sys/fs/bpf/smtp-monitor";
const LOCK_DIR: &str = "/run/smtp-monitor";
/// swaks' per-step timeout: a dropped session fails after this long.
const SWAKS_TIMEOUT_SECS: u64 = 3;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM only set a flag: the demo notices it in its next wait
/// and unwinds through the guards.
fn catch_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Polls `cond` every 20 ms for at most `timeout`.
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let end = Instant::now() + timeout;
    loop {
        check_interrupt()?;
        if cond() {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("run ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Client and server namespaces with a veth pair; deleted on drop, with
/// whatever a killed monitor left pinned for the server veth.
struct Namespaces {
    client: String,
    server: String,
    client_if: String,
    server_if: String,
}

impl Namespaces {
    fn create() -> Result<Namespaces> {
        let id = std::process::id();
        let ns = Namespaces {
            client: format!("smtpdemo-{id}-c"),
            server: format!("smtpdemo-{id}-s"),
            client_if: format!("sd{id}c"),
            server_if: format!("sd{id}s"),
        };
        ip(&["netns", "add", &ns.client])?;
        ip(&["netns", "add", &ns.server])?;
        ip(&[
            "link",
            "add",
            &ns.client_if,
            "netns",
            &ns.client,
            "type",
            "veth",
            "peer",
            "name",
            &ns.server_if,
            "netns",
            &ns.server,
        ])?;
        for (n, dev, addr) in [
            (&ns.client, &ns.client_if, CLIENT),
            (&ns.server, &ns.server_if, SERVER),
        ] {
            ip(&["-n", n, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", n, "link", "set", "lo", "up"])?;
            ip(&["-n", n, "link", "set", dev, "up"])?;
        }
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        let _ = fs::remove_dir_all(Path::new(PIN_ROOT).join(&self.server_if));
        let _ = fs::remove_dir(PIN_ROOT);
        let _ = fs::remove_file(Path::new(LOCK_DIR).join(format!("{}.lock", self.server_if)));
    }
}

/// A background process: SIGTERM on drop, SIGKILL if it is still there
/// 5 s later.
struct Proc {
    child: Child,
}

impl Proc {
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and a bounded wait; true when it exited by itself.
    fn stop(&mut self) -> bool {
        if !self.running() {
            return true;
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(5);
        while self.running() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let clean = !self.running();
        if !clean {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        clean
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Finds a tool on PATH or in /usr/sbin (smtp-sink).
fn tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file());
    found.with_context(|| format!("`{name}` not found (cargo xtask prereqs installs it)"))
}

/// One mail of the demo.
struct Mail {
    what: &'static str,
    from: &'static str,
    subject: &'static str,
    /// A file to attach (`swaks --attach`, base64 on the wire).
    attach: Option<PathBuf>,
    /// Client port, so the EVE lines of this mail can be told apart.
    port: u16,
}

/// What happened to a mail.
struct Outcome {
    delivered: bool,
    swaks_ok: bool,
    elapsed: Duration,
    /// swaks' last error line (`*** ...`), if any.
    swaks_error: Option<String>,
}

/// The messages smtp-sink has completed (its file closed and ended with
/// the empty line smtp-sink appends at the end of data).
fn complete_messages(dir: &Path, sink_pid: u32) -> Vec<String> {
    let open: Vec<PathBuf> = fs::read_dir(format!("/proc/{sink_pid}/fd"))
        .map(|rd| {
            rd.filter_map(|e| fs::read_link(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| {
                let p = e.ok()?.path();
                if open.contains(&p) {
                    return None;
                }
                let text = fs::read_to_string(&p).ok()?;
                text.ends_with("\n\n").then_some(text)
            })
            .collect()
        })
        .unwrap_or_default()
}

fn send(
    ns: &Namespaces,
    mail: &Mail,
    work: &Path,
    sink: &Proc,
    mail_dir: &Path,
) -> Result<Outcome> {
    let log = fs::File::create(work.join(format!("swaks-{}.log", mail.port)))?;
    let timeout = SWAKS_TIMEOUT_SECS.to_string();
    let port = mail.port.to_string();
    let subject = format!("Subject: {}", mail.subject);
    let mut args = vec![
        "netns",
        "exec",
        &ns.client,
        "swaks",
        "--server",
        SERVER,
        "--timeout",
        &timeout,
        "--local-port",
        &port,
        "--from",
        mail.from,
        "--to",
        "bob@example.net",
        "--header",
        &subject,
    ];
    let attach;
    if let Some(a) = &mail.attach {
        attach = format!("@{}", a.display());
        args.extend(["--attach", &attach]);
    }
    let start = Instant::now();
    let mut child = Proc {
        child: Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn swaks")?,
    };
    let mut status = None;
    wait_until("swaks", Duration::from_secs(SWAKS_TIMEOUT_SECS * 4), || {
        status = child.child.try_wait().ok().flatten();
        status.is_some()
    })?;
    let elapsed = start.elapsed();
    let swaks_ok = status.is_some_and(|s| s.success());
    let needle = format!("\n{subject}\n");
    // smtp-sink closes the file before its 250 reply; a short grace anyway.
    let delivered = wait_until("the message", Duration::from_millis(500), || {
        complete_messages(mail_dir, sink.pid())
            .iter()
            .any(|m| m.contains(&needle))
    })
    .is_ok();
    check_interrupt()?;
    let log = fs::read_to_string(work.join(format!("swaks-{}.log", mail.port))).unwrap_or_default();
    let swaks_error = log
        .lines()
        .rfind(|l| l.starts_with("***") && !l.contains("DEPRECATION"))
        .map(|l| l.trim_start_matches('*').trim().to_string());
    Ok(Outcome {
        delivered,
        swaks_ok,
        elapsed,
        swaks_error,
    })
}

/// Runs the demo (as root) with the release binary `bin`.
pub fn run(root: &Path, bin: &Path) -> Result<()> {
    catch_signals();
    let sink_bin = tool("smtp-sink")?;
    tool("swaks")?;
    let rules = root.join("examples/rules.toml");
    if !rules.is_file() {
        bail!("{} missing", rules.display());
    }
    let work = TempDir(std::env::temp_dir().join(format!("smtp-demo-{}", std::process::id())));
    let _ = fs::remove_dir_all(&work.0);
    let mail_dir = work.0.join("mail");
    fs::create_dir_all(&mail_dir)?;
    let eve = work.0.join("eve.json");
    let attachment = work.0.join("quarterly-report.txt");
    fs::write(
        &attachment,
        "Quarterly report (internal)\n\nRevenue is up.\n\
         This paragraph contains FORBIDDEN-KEYWORD and must not leave the company.\n",
    )?;

    let ns = Namespaces::create()?;
    println!("smtp-monitor demo");
    println!(
        "  client {CLIENT} (netns {})  <-- veth -->  server {SERVER} (netns {})",
        ns.client, ns.server
    );

    let template = format!("{}/%M.", mail_dir.display());
    let sink = Proc {
        child: Command::new("ip")
            .args(["netns", "exec", &ns.server])
            .arg(&sink_bin)
            .args(["-u", "root", "-d", &template, &format!("{SERVER}:25"), "64"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn smtp-sink")?,
    };
    wait_until("smtp-sink to listen", Duration::from_secs(10), || {
        Command::new("ip")
            .args(["netns", "exec", &ns.server, "ss", "-ltnH"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{SERVER}:25 ")))
    })?;
    println!(
        "  server: Postfix smtp-sink, one file per accepted message in {}",
        mail_dir.display()
    );

    let monitor_log = fs::File::create(work.0.join("monitor.log"))?;
    let mut monitor = Proc {
        child: Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.server))
            .arg(bin)
            .args(["run", "--iface", &ns.server_if, "--rules"])
            .arg(&rules)
            .args(["--gate", "--stats-interval", "3600", "-o"])
            .arg(&eve)
            .stdin(Stdio::null())
            .stdout(monitor_log.try_clone()?)
            .stderr(monitor_log)
            .spawn()
            .context("spawn smtp-user")?,
    };
    let pins = Path::new(PIN_ROOT).join(&ns.server_if).join("VERDICTS");
    let started = wait_until("the monitor to attach", Duration::from_secs(20), || {
        pins.exists() || !monitor.running()
    });
    check_interrupt()?;
    if started.is_err() || !monitor.running() {
        let log = fs::read_to_string(work.0.join("monitor.log")).unwrap_or_default();
        bail!("the monitor did not start:\n{log}");
    }
    println!("  monitor: smtp-user run --rules examples/rules.toml --gate, on the server's veth\n");

    let mails = [
        Mail {
            what: "clean mail",
            from: "alice@example.org",
            subject: "lunch on friday?",
            attach: None,
            port: 40001,
        },
        Mail {
            what: "sender in a forbidden domain",
            from: "someone@forbidden.example",
            subject: "hello from a forbidden domain",
            attach: None,
            port: 40002,
        },
        Mail {
            what: "FORBIDDEN-KEYWORD in a base64 attachment",
            from: "alice@example.org",
            subject: "quarterly report",
            attach: Some(attachment.clone()),
            port: 40003,
        },
    ];
    let mut outcomes = Vec::new();
    for (i, m) in mails.iter().enumerate() {
        print!("{}. {} (from {}) ... ", i + 1, m.what, m.from);
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let o = send(&ns, m, &work.0, &sink, &mail_dir)?;
        println!("{}", if o.delivered { "delivered" } else { "blocked" });
        outcomes.push(o);
    }
    // Stopping the monitor flushes its output.
    let clean_exit = monitor.stop();
    let events: Vec<Value> = fs::read_to_string(&eve)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();

    println!("\nresults (from smtp-sink's directory and the monitor's EVE alerts)");
    for (i, (m, o)) in mails.iter().zip(&outcomes).enumerate() {
        let swaks = match (&o.swaks_error, o.swaks_ok) {
            (None, true) => format!("swaks ok in {:.1} s", o.elapsed.as_secs_f64()),
            (Some(e), _) => format!("swaks after {:.1} s: {e}", o.elapsed.as_secs_f64()),
            (None, false) if o.elapsed >= Duration::from_secs(SWAKS_TIMEOUT_SECS) => format!(
                "the server stopped answering: swaks gave up after {:.1} s",
                o.elapsed.as_secs_f64()
            ),
            (None, false) => format!("swaks failed after {:.1} s", o.elapsed.as_secs_f64()),
        };
        println!(
            "{}. {:<42} {:<10} ({swaks})",
            i + 1,
            m.what,
            if o.delivered { "DELIVERED" } else { "BLOCKED" }
        );
        for a in events
            .iter()
            .filter(|e| e["event_type"] == "alert" && e["src_port"] == m.port)
        {
            let al = &a["alert"];
            println!(
                "     alert [sid {}] {} (rule {}) -> action {}, enforcement {}",
                al["signature_id"],
                al["signature"].as_str().unwrap_or("?"),
                al["rule_name"].as_str().unwrap_or("?"),
                al["action"].as_str().unwrap_or("?"),
                al["enforcement"].as_str().unwrap_or("?"),
            );
        }
    }
    if !clean_exit {
        let log = fs::read_to_string(work.0.join("monitor.log")).unwrap_or_default();
        println!("\nthe monitor did not exit cleanly; its log:\n{log}");
    }
    drop(sink);
    drop(ns);
    println!("\ncleaned up: monitor and smtp-sink stopped, namespaces removed");
    Ok(())
}
