//! `smtp-user ctl` against a real monitor's pinned maps combined with a
//! control socket: `stats` joins kernel and userspace counters (kernel only,
//! with a note, when no daemon answers), `block`/`unblock <flow-id>`
//! resolve the flow through the socket and write the pinned verdict map.
//! The socket is served by a test `ControlServer` with fixed answers (the
//! daemon's own socket is wired by `run`).

use std::{path::Path, sync::mpsc, thread, time::Duration};

use smtp_common::Verdict;
use smtp_e2e::{
    process::{run_to_end, Daemon},
    require_root, NetPair,
};
use smtp_user::control::{ControlServer, FlowRow, Request, Response};
use smtp_user::datapath::{Control, DEFAULT_PIN_ROOT};
use smtp_user::pipeline::kernel_flow_key;

const T: Duration = Duration::from_secs(20);

fn flow_row() -> FlowRow {
    FlowRow {
        flow_id: 31337,
        client: "198.18.0.1:40000".parse().expect("addr"),
        server: "198.18.0.2:25".parse().expect("addr"),
        state: "rcpt".into(),
        helo: Some("c.example".into()),
        mail_from: Some("a@c.example".into()),
        rcpt_to: vec!["b@s.example".into()],
        transactions: 1,
        verdict: "pass".into(),
        gated: false,
        bytes_toserver: 100,
        bytes_toclient: 200,
        age_secs: 1,
    }
}

/// A control socket with fixed answers on a runtime thread; stopped on drop.
struct FakeDaemon {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeDaemon {
    fn start(path: &Path) -> FakeDaemon {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let path = path.to_path_buf();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut server = ControlServer::bind(&path).expect("bind");
                let _ = ready_tx.send(());
                loop {
                    tokio::select! {
                        got = server.next() => {
                            let Some((req, responder)) = got else { break };
                            responder.reply(match req {
                                Request::Stats => Response::Stats(serde_json::json!({
                                    "records": 17, "decode_errors": 0, "flows": {"live": 2}
                                })),
                                Request::Flow { flow_id: 31337 } => Response::Flow(flow_row()),
                                _ => Response::Error("unsupported".into()),
                            });
                        }
                        _ = &mut stop_rx => break,
                    }
                }
            });
        });
        ready_rx.recv_timeout(T).expect("fake daemon bound");
        FakeDaemon {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ctl(pair: &NetPair, socket: &Path, args: &[&str]) -> (bool, String, String) {
    let sock = socket.to_str().expect("utf8");
    let mut full = vec!["ctl", "--iface", &pair.server_if, "--socket", sock];
    full.extend_from_slice(args);
    let out = run_to_end(&pair.server_ns, &full, T);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ctl_stats_and_flow_blocks_through_the_socket() {
    if !require_root("ctl_stats_and_flow_blocks_through_the_socket") {
        return;
    }
    let pair = NetPair::new("ctlsock");
    let dir = std::env::temp_dir().join(format!("smtp-ctlsock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("ctl.sock");

    let d = Daemon::monitor(&pair, &[]);

    // No daemon on the socket: kernel counters only, and a note.
    let (ok, out, err) = ctl(&pair, &socket, &["stats"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("enforce=true") && out.contains("records_lost="),
        "{out}"
    );
    assert!(!out.contains("user:"), "{out}");
    assert!(
        err.contains(&format!(
            "note: kernel counters only: no control socket at {}",
            socket.display()
        )),
        "{err}"
    );
    let (ok, _, err) = ctl(&pair, &socket, &["block", "31337"]);
    assert!(!ok);
    assert!(err.contains("no monitor running on"), "{err}");

    let fake = FakeDaemon::start(&socket);
    let (ok, out, err) = ctl(&pair, &socket, &["stats"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with(&format!("iface={} enforce=true packets=", pair.server_if)));
    assert_eq!(lines[1], "user: decode_errors=0 flows.live=2 records=17");
    assert!(err.is_empty(), "{err}");
    let (ok, out, err) = ctl(&pair, &socket, &["stats", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["enforce"], true);
    assert_eq!(v["user"]["records"], 17);
    assert!(v["kernel"]["records_lost"].is_u64(), "{v}");
    assert!(v["kernel"]["packets"].is_u64(), "{v}");

    // A flow id is resolved by the daemon, the verdict goes to the pins.
    let control = Control::open_pinned(DEFAULT_PIN_ROOT.as_ref(), &pair.server_if).expect("pins");
    let row = flow_row();
    let key = kernel_flow_key(row.client, row.server);
    assert_eq!(control.verdict(&key), Verdict::Pass);
    let (ok, out, err) = ctl(&pair, &socket, &["block", "31337"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!(
            "iface={} flow 31337 (198.18.0.1:40000 <-> 198.18.0.2:25): drop\n",
            pair.server_if
        )
    );
    assert_eq!(control.verdict(&key), Verdict::Drop);
    let (ok, _, err) = ctl(&pair, &socket, &["block", "4"]);
    assert!(!ok);
    assert!(err.contains("the monitor answered: unsupported"), "{err}");
    let (ok, out, err) = ctl(&pair, &socket, &["unblock", "31337"]);
    assert!(ok, "{err}");
    assert!(out.ends_with(": pass\n"), "{out}");
    assert_eq!(control.verdict(&key), Verdict::Pass);

    drop(fake);
    assert!(!socket.exists());
    drop(control);
    let (st, err) = d.terminate(T);
    assert!(st.success(), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
