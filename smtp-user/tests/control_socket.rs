//! The control socket end to end: a `ControlServer` on a runtime thread
//! answering fixed replies, the library client and the `smtp-user ctl`
//! binary talking to it. Tests needing root (other uids) print a skip line
//! otherwise. Every wait is bounded.

use std::{
    io::{Read, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::mpsc,
    thread,
    time::Duration,
};

use smtp_user::control::{
    protocol::decode_response,
    request,
    server::{MAX_CONNECTIONS, MAX_REQUEST},
    ControlCounters, ControlError, ControlServer, FlowRow, ReloadReply, Request, Response, Status,
};

const T: Duration = Duration::from_secs(5);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("smtp-ctl-{}-{name}", std::process::id()));
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

fn status() -> Status {
    Status {
        iface: "veth-test".into(),
        ingress: "tc".into(),
        mode: "enforce".into(),
        gate: true,
        ports: vec![25, 587],
        started: "2026-11-25T14:00:00Z".into(),
        uptime_secs: 3725,
        rules_file: Some("/etc/smtp-monitor/rules.toml".into()),
        rules_digest: "9f86d081884c7d65".into(),
        rules: 7,
        pid: 4242,
        fleet: None,
        eve_redis: None,
    }
}

fn row(flow_id: u64) -> FlowRow {
    FlowRow {
        flow_id,
        client: "198.18.0.1:40000".parse().expect("addr"),
        server: "198.18.0.2:25".parse().expect("addr"),
        state: "data".into(),
        helo: Some("client.example".into()),
        mail_from: Some("alice@example.org".into()),
        rcpt_to: vec!["bob@example.net".into(), "carol@example.net".into()],
        transactions: 2,
        verdict: "pass".into(),
        gated: true,
        bytes_toserver: 1234,
        bytes_toclient: 567,
        age_secs: 75,
    }
}

/// The fixed answers of the test daemon.
fn answer(req: &Request) -> Option<Response> {
    Some(match req {
        Request::Status => Response::Status(status()),
        Request::Stats => Response::Stats(serde_json::json!({
            "records": 10, "decode_errors": 0, "control": {"requests": 3}
        })),
        Request::Flows => Response::Flows(vec![row(7), {
            let mut r = row(123_456_789);
            r.client = "[2001:2::1]:50000".parse().expect("addr");
            r.server = "[2001:2::2]:25".parse().expect("addr");
            r.helo = Some("evil\x1b[2J.example".into());
            r.mail_from = None;
            r.rcpt_to = vec![];
            r.verdict = "drop".into();
            r.gated = false;
            r
        }]),
        Request::Reload => Response::Reloaded(ReloadReply {
            rules_file: Some("/etc/smtp-monitor/rules.toml".into()),
            rules_digest: "abcdef".into(),
            rules: 8,
        }),
        Request::Flow { flow_id: 7 } => Response::Flow(row(7)),
        Request::Flow { flow_id: 99 } => return None, // never answered
        Request::Flow { flow_id } => Response::Error(format!("no flow with id {flow_id}")),
        Request::Reopen => Response::Reopened(None),
        Request::BlockIp { ip, .. } => Response::IpBlock(smtp_user::control::IpBlockReply {
            ip: *ip,
            blocked: true,
            changed: true,
            fleet: false,
        }),
        Request::UnblockIp { ip } => Response::IpBlock(smtp_user::control::IpBlockReply {
            ip: *ip,
            blocked: false,
            changed: false,
            fleet: false,
        }),
    })
}

/// A `ControlServer` on its own runtime thread. Its loop selects on
/// `next()` against a 1 ms tick, so every test also checks that `next` is
/// cancel-safe. Requests `answer` returns `None` for are held unanswered.
struct TestServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<ControlCounters>>,
}

impl TestServer {
    fn start(path: &Path) -> TestServer {
        TestServer::start_with(path, smtp_user::control::server::CONNECTION_TIMEOUT)
    }

    fn start_with(path: &Path, timeout: Duration) -> TestServer {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let path = path.to_path_buf();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut server = match ControlServer::bind_with_timeout(&path, timeout) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return ControlCounters::default();
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let mut held = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                loop {
                    tokio::select! {
                        got = server.next() => {
                            let Some((req, responder)) = got else { break };
                            if req == (Request::Flow { flow_id: 98 }) {
                                drop(responder);
                                continue;
                            }
                            match answer(&req) {
                                Some(resp) => responder.reply(resp),
                                None => held.push(responder),
                            }
                        }
                        _ = tick.tick() => {}
                        _ = &mut stop_rx => break,
                    }
                }
                server.counters()
            })
        });
        ready_rx
            .recv_timeout(T)
            .expect("server thread")
            .expect("bind");
        TestServer {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stops the server (dropping it) and returns its counters.
    fn stop(mut self) -> ControlCounters {
        self.shutdown().unwrap_or_default()
    }

    fn shutdown(&mut self) -> Option<ControlCounters> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.thread.take().map(|t| t.join().expect("server thread"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Writes raw bytes, reads the one response line.
fn raw_exchange(path: &Path, bytes: &[u8]) -> Response {
    let mut s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    s.set_write_timeout(Some(T)).expect("timeout");
    // The server may answer and close before reading everything.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    decode_response(&out).expect("one response line")
}

fn is_root() -> bool {
    // SAFETY: trivial libc call.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn every_request_round_trips() {
    let dir = TempDir::new("roundtrip");
    let path = dir.0.join("s.sock");
    let server = TestServer::start(&path);
    assert_eq!(
        request(&path, &Request::Status, T).expect("status"),
        Response::Status(status())
    );
    assert_eq!(
        request(&path, &Request::Stats, T).expect("stats"),
        answer(&Request::Stats).expect("answer")
    );
    match request(&path, &Request::Flows, T).expect("flows") {
        Response::Flows(rows) => {
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[0], row(7));
            assert_eq!(rows[1].flow_id, 123_456_789);
            assert_eq!(rows[1].client, "[2001:2::1]:50000".parse().expect("addr"));
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(
        request(&path, &Request::Reload, T).expect("reload"),
        Response::Reloaded(ReloadReply {
            rules_file: Some("/etc/smtp-monitor/rules.toml".into()),
            rules_digest: "abcdef".into(),
            rules: 8,
        })
    );
    assert_eq!(
        request(&path, &Request::Flow { flow_id: 7 }, T).expect("flow"),
        Response::Flow(row(7))
    );
    assert_eq!(
        request(&path, &Request::Flow { flow_id: 8 }, T).expect("flow"),
        Response::Error("no flow with id 8".into())
    );
    // Several clients in turn, then several at once.
    for _ in 0..20 {
        assert_eq!(
            request(&path, &Request::Status, T).expect("status"),
            Response::Status(status())
        );
    }
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            thread::spawn(move || request(&path, &Request::Flow { flow_id: 7 + i % 2 }, T))
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let resp = c.join().expect("client").expect("response");
        if i % 2 == 0 {
            assert_eq!(resp, Response::Flow(row(7)));
        } else {
            assert_eq!(resp, Response::Error("no flow with id 8".into()));
        }
    }
    let c = server.stop();
    assert_eq!(c.connections, 34);
    assert_eq!(c.requests, 34);
    assert_eq!(
        c.malformed + c.oversize + c.refused_peers + c.timeouts + c.busy,
        0
    );
    assert!(!path.exists(), "socket removed on drop");
}

#[test]
fn malformed_and_oversize_requests_get_errors() {
    let dir = TempDir::new("malformed");
    let path = dir.0.join("s.sock");
    let server = TestServer::start(&path);
    for bad in [
        &b"status\n"[..],
        b"{\"cmd\":\"shutdown\"}\n",
        b"{\"cmd\":\"flow\",\"flow_id\":-1}\n",
        b"\xff\xfe\n",
    ] {
        match raw_exchange(&path, bad) {
            Response::Error(e) => assert!(e.starts_with("malformed request: "), "{e}"),
            r => panic!("{r:?}"),
        }
    }
    // A request without its newline is taken at EOF.
    let mut s = UnixStream::connect(&path).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    s.write_all(b"{\"cmd\":\"status\"}").expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    assert_eq!(
        decode_response(&out).expect("response"),
        Response::Status(status())
    );
    // Exactly MAX_REQUEST bytes before the newline: accepted.
    let mut big = b"{\"cmd\":\"status\"".to_vec();
    big.resize(MAX_REQUEST - 1, b' ');
    big.extend_from_slice(b"}\n");
    assert_eq!(raw_exchange(&path, &big), Response::Status(status()));
    // One byte more: refused.
    let mut over = b"{\"cmd\":\"status\"".to_vec();
    over.resize(MAX_REQUEST, b' ');
    over.extend_from_slice(b"}\n");
    assert_eq!(
        raw_exchange(&path, &over),
        Response::Error(format!("request larger than {MAX_REQUEST} bytes"))
    );
    // A stream that never ends a line.
    assert_eq!(
        raw_exchange(&path, &vec![b'a'; 4 * MAX_REQUEST]),
        Response::Error(format!("request larger than {MAX_REQUEST} bytes"))
    );
    // The server still serves afterwards.
    assert_eq!(
        request(&path, &Request::Status, T).expect("status"),
        Response::Status(status())
    );
    let c = server.stop();
    assert_eq!((c.malformed, c.oversize, c.requests), (4, 2, 3));
}

#[test]
fn connections_beyond_the_limit_are_told_busy() {
    let dir = TempDir::new("busy");
    let path = dir.0.join("s.sock");
    let server = TestServer::start(&path);
    let idle: Vec<UnixStream> = (0..MAX_CONNECTIONS)
        .map(|_| UnixStream::connect(&path).expect("connect"))
        .collect();
    assert_eq!(
        raw_exchange(&path, b"{\"cmd\":\"status\"}\n"),
        Response::Error("busy: too many control connections".into())
    );
    drop(idle);
    // Served again once the idle connections are gone (reaped in the
    // background: bounded retries).
    let mut served = false;
    for _ in 0..100 {
        if request(&path, &Request::Status, T).expect("exchange") == Response::Status(status()) {
            served = true;
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(served);
    let c = server.stop();
    assert!(c.busy >= 1, "{c:?}");
    assert_eq!(c.requests, 1, "{c:?}");
}

#[test]
fn slow_clients_and_silent_daemons_time_out() {
    let dir = TempDir::new("timeout");
    let path = dir.0.join("s.sock");
    let server = TestServer::start_with(&path, Duration::from_millis(300));
    // A client that connects and says nothing is closed at the deadline.
    let mut s = UnixStream::connect(&path).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    assert_eq!(
        decode_response(&out).expect("response"),
        Response::Error("timeout: the exchange did not complete within 300ms".into())
    );
    // A request the daemon never answers: the client gives up at its own
    // deadline with a clear error.
    match request(
        &path,
        &Request::Flow { flow_id: 99 },
        Duration::from_millis(150),
    ) {
        Err(e @ ControlError::Timeout { .. }) => {
            assert!(e.to_string().contains("no answer from the monitor"), "{e}")
        }
        r => panic!("{r:?}"),
    }
    // Still serving.
    assert_eq!(
        request(&path, &Request::Status, T).expect("status"),
        Response::Status(status())
    );
    thread::sleep(Duration::from_millis(400));
    let c = server.stop();
    assert_eq!(c.timeouts, 2, "{c:?}");
}

#[test]
fn missing_and_stale_sockets_are_reported() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("none.sock");
    let e = request(&path, &Request::Status, T).expect_err("no server");
    assert!(matches!(e, ControlError::NotRunning { .. }), "{e:?}");
    assert!(e.is_not_running());
    assert_eq!(
        e.to_string(),
        format!("no monitor running (socket {} not found)", path.display())
    );
    // A socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let e = request(&path, &Request::Status, T).expect_err("stale");
    assert!(matches!(e, ControlError::Stale { .. }), "{e:?}");
}

#[test]
fn bind_replaces_stale_sockets_but_never_steals_live_ones() {
    let dir = TempDir::new("stale");
    let path = dir.0.join("s.sock");
    // Stale: left behind by a dead process.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let server = TestServer::start(&path);
    assert_eq!(
        request(&path, &Request::Status, T).expect("status"),
        Response::Status(status())
    );
    // Live: a second server must not take the path over.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let err = rt
        .block_on(async { ControlServer::bind(&path).map(|_| ()) })
        .expect_err("live socket");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains("already running"), "{err}");
    assert_eq!(
        request(&path, &Request::Status, T).expect("status after refused bind"),
        Response::Status(status())
    );
    drop(server);
    assert!(!path.exists());
    // Not a socket: left alone.
    std::fs::write(&path, b"precious").expect("write");
    let err = rt
        .block_on(async { ControlServer::bind(&path).map(|_| ()) })
        .expect_err("regular file");
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), b"precious");
}

#[test]
fn socket_is_private() {
    let dir = TempDir::new("perms");
    let path = dir.0.join("run/smtp-monitor/s.sock");
    let server = TestServer::start(&path);
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().expect("parent")), 0o700);
    assert_eq!(mode(&dir.0.join("run")), 0o700);
    drop(server);
    assert!(!path.exists(), "socket removed on drop");
    assert!(path.parent().expect("parent").exists(), "directory kept");
}

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smtp-user"))
        .arg("ctl")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run smtp-user")
}

fn ctl_as_nobody(socket: &Path) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
            env!("CARGO_BIN_EXE_smtp-user"),
            "ctl",
            "--socket",
        ])
        .arg(socket)
        .arg("status")
        .env_remove("RUST_LOG")
        .output()
        .expect("run setpriv")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn other_users_are_refused() {
    if !is_root() {
        println!("other_users_are_refused: skipped: needs root");
        return;
    }
    let dir = TempDir::new("nobody");
    let path = dir.0.join("sub/s.sock");
    let server = TestServer::start(&path);
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // The file modes stop them first.
    let out = ctl_as_nobody(&path);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("permission denied"),
        "{}",
        text(&out.stderr)
    );
    // With the modes opened, the peer uid check still refuses them.
    for p in [path.parent().expect("parent"), &path] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let out = ctl_as_nobody(&path);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("permission denied: uid 65534 may not control the monitor"),
        "{err}"
    );
    // Root still gets through.
    assert!(ctl(&["--socket", path.to_str().expect("utf8"), "status"])
        .status
        .success());
    let c = server.stop();
    assert_eq!((c.refused_peers, c.requests), (1, 1), "{c:?}");
}

#[test]
fn ctl_prints_status_flows_and_reload() {
    let dir = TempDir::new("ctl");
    let path = dir.0.join("s.sock");
    let sock = path.to_str().expect("utf8");
    let server = TestServer::start(&path);

    let out = ctl(&["--socket", sock, "status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "iface=veth-test\nmode=enforce\ningress=tc\ngate=true\nports=25,587\n\
         started=2026-11-25T14:00:00Z\nuptime=1h02m05s\nrules_file=/etc/smtp-monitor/rules.toml\n\
         rules_digest=9f86d081884c7d65\nrules=7\npid=4242\n"
    );
    let out = ctl(&["--socket", sock, "status", "--json"]);
    assert!(out.status.success());
    let v: Status = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v, status());

    let out = ctl(&["--socket", sock, "flows"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 3, "{t}");
    let words = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        words(lines[0]),
        [
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
            "RCPT_TO"
        ]
    );
    assert_eq!(
        words(lines[1]),
        [
            "7",
            "198.18.0.1:40000",
            "198.18.0.2:25",
            "data",
            "pass",
            "yes",
            "2",
            "1234",
            "567",
            "1m15s",
            "client.example",
            "alice@example.org",
            "bob@example.net",
            "(+1)"
        ]
    );
    // Terminal escapes from the network are neutralised.
    assert!(lines[2].contains("evil\\u{1b}[2J.example"), "{t}");
    assert!(!t.contains('\x1b'));
    // Columns are aligned: every column starts at the same offset.
    let col = |l: &str, w: &str| l.find(w).expect("column");
    assert_eq!(col(lines[0], "STATE"), col(lines[1], "data"));
    assert_eq!(col(lines[0], "HELO"), col(lines[1], "client.example"));
    assert_eq!(col(lines[0], "HELO"), col(lines[2], "evil"));

    let out = ctl(&["--socket", sock, "--json", "flows"]);
    let rows: Vec<FlowRow> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], row(7));

    let out = ctl(&["--socket", sock, "reload"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "reloaded rules_file=/etc/smtp-monitor/rules.toml rules=8 rules_digest=abcdef\n"
    );
    let out = ctl(&["--socket", sock, "reload", "--json"]);
    let r: ReloadReply = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r.rules, 8);

    // An error answer fails the command with the daemon's reason.
    let out = ctl(&["--socket", sock, "block", "8"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("the monitor answered: no flow with id 8"),
        "{}",
        text(&out.stderr)
    );
    // Flow verdicts have no expiry.
    let out = ctl(&["--socket", sock, "block", "7", "--for", "10m"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--for applies to IP addresses only"));
    // A flow id resolves through the socket, then needs the pinned maps.
    let out = ctl(&[
        "--socket",
        sock,
        "--iface",
        "smtpctl-none0",
        "--pin-root",
        dir.0.to_str().expect("utf8"),
        "block",
        "7",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no monitor running on smtpctl-none0 (pins under"),
        "{}",
        text(&out.stderr)
    );
    for bad in [&["block", "x.y"][..], &["block", "1.2.3.4", "--for", "5x"]] {
        let mut args = vec!["--socket", sock];
        args.extend_from_slice(bad);
        assert!(!ctl(&args).status.success(), "{bad:?}");
    }
    let c = server.stop();
    assert_eq!(c.requests, 8, "{c:?}");
}

#[test]
fn ctl_without_a_daemon_says_so() {
    let dir = TempDir::new("ctlnone");
    let path = dir.0.join("none.sock");
    let out = ctl(&["--socket", path.to_str().expect("utf8"), "status"]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr),
        format!(
            "smtp-user: error: no monitor running (socket {} not found)\n",
            path.display()
        )
    );
    let out = ctl(&["--iface", "smtpctl-none0", "flows"]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr),
        "smtp-user: error: no monitor running on smtpctl-none0 \
         (socket /run/smtp-monitor/smtpctl-none0.sock not found)\n"
    );
    // stats needs the pins first.
    let out = ctl(&[
        "--iface",
        "smtpctl-none0",
        "--pin-root",
        dir.0.to_str().expect("utf8"),
        "stats",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no monitor running on smtpctl-none0"));
}

#[test]
fn unanswered_requests_get_an_error_reply() {
    let dir = TempDir::new("dropped");
    let path = dir.0.join("s.sock");
    let server = TestServer::start(&path);
    assert_eq!(
        request(&path, &Request::Flow { flow_id: 98 }, T).expect("reply"),
        Response::Error("the monitor dropped the request".into())
    );
    let c = server.stop();
    assert_eq!(c.requests, 1);
}
