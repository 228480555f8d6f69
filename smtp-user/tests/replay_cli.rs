//! `smtp-user replay` as a user runs it: exit codes, the summary and error
//! lines on stderr, EVE lines on stdout or `--output`, pcap and pcapng,
//! several files read as one capture, damaged and missing files.

mod pipeline_common;

use std::path::Path;
use std::process::{Command, Output};

use pipeline_common::*;
use serde_json::Value;
use smtp_user::capture::file::Endian;
use smtp_user::capture::synth::{render, PcapWriter, PcapngWriter, RenderOptions, TimedFrame};
use smtp_user::capture::wire::linktype;

/// Runs `smtp-user replay -q ARGS...` in `dir`.
fn replay_cmd(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smtp-user"))
        .current_dir(dir)
        .arg("replay")
        .arg("-q")
        .args(args)
        .output()
        .expect("run smtp-user")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The frames of the realistic session (MSS 1460).
fn frames() -> Vec<TimedFrame> {
    let conv = realistic_conversation(1460);
    render(&conv, &conv.packets(), RenderOptions::default())
}

fn pcap(frames: &[TimedFrame]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), linktype::ETHERNET).expect("Vec");
    for (ts, f) in frames {
        w.write_frame(*ts, f, f.len() as u32).expect("Vec");
    }
    w.into_inner()
}

/// Offsets of the records of a little-endian pcap (after the 24-byte header).
fn record_offsets(pcap: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 24;
    while let Some(h) = pcap.get(at..at + 16) {
        out.push(at);
        let caplen = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
        at += 16 + caplen;
    }
    out
}

/// The summary line (last line of stderr) with its counts.
fn summary_line(o: &Output) -> String {
    stderr(o).lines().last().unwrap_or_default().to_string()
}

/// `smtp` lines' `smtp.mail_from` + `transaction.state`, for compact checks.
fn tx_states(lines: &[Value]) -> Vec<(String, String)> {
    of_type(lines, "smtp")
        .iter()
        .map(|l| {
            (
                l["smtp"]["mail_from"].as_str().unwrap_or("").to_string(),
                l["transaction"]["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn good_file_exit_0_events_and_summary() {
    let dir = test_dir("cli-good");
    let frames = frames();
    write_file(&dir, "good.pcap", &pcap(&frames));
    let o = replay_cmd(&dir, &["good.pcap"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines = parse_lines(&o.stdout);
    assert_eq!(transactions(&lines).len(), 2);
    assert_eq!(transactions(&lines)[0]["transaction"]["state"], "delivered");
    assert_eq!(transactions(&lines)[1]["transaction"]["state"], "reset");
    assert_eq!(of_type(&lines, "flow").len(), 1);
    assert_eq!(lines.len(), 3, "no other lines by default");
    // Exactly one stderr line (-q: no progress), the summary.
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    let s = summary_line(&o);
    let frames_n = frames.len();
    assert!(
        s.starts_with(&format!(
            "replay: 1 file(s), {frames_n} frames, 0.0 MB, 1 flows, 2 transactions, 0 anomalies, 0 alerts, 0 verdicts, 0 gap bytes, 0 frames skipped, 0 on other ports, \
             checksums verified (auto: 0 of {frames_n} sampled bad), 0 bad segments, \
             0 IP fragments (0 datagrams reassembled, 0 overlapping, 0 timed out, 0 dropped) in "
        )),
        "{s}"
    );
    // With more than one worker (the default: one per core), the
    // per-worker part follows.
    let (s, workers) = s.split_once("; ").unwrap_or((s.as_str(), ""));
    assert!(s.ends_with("MB/s), 0 held for order (longest 0 µs)"), "{s}");
    assert!(
        workers.is_empty() || workers.contains(" workers: flows "),
        "{workers}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn log_commands_adds_command_and_reply_lines() {
    let dir = test_dir("cli-log-commands");
    write_file(&dir, "good.pcap", &pcap(&frames()));
    let o = replay_cmd(&dir, &["--log-commands", "good.pcap"]);
    assert_eq!(o.status.code(), Some(0));
    let lines = parse_lines(&o.stdout);
    let verbs: Vec<&str> = of_type(&lines, "smtp_command")
        .iter()
        .map(|l| l["smtp_command"]["verb"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        verbs,
        ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "MAIL", "RCPT", "RSET", "QUIT"]
    );
    let codes: Vec<u64> = of_type(&lines, "smtp_reply")
        .iter()
        .map(|l| l["smtp_reply"]["code"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        codes,
        [220, 250, 250, 250, 250, 354, 250, 250, 550, 250, 221]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn truncated_file_keeps_events_before_the_damage_and_exits_2() {
    let dir = test_dir("cli-truncated");
    let frames = frames();
    let file = pcap(&frames);
    let offsets = record_offsets(&file);
    assert_eq!(offsets.len(), frames.len());
    // Cut in the middle of the record carrying the second MAIL FROM: the
    // first transaction (completed by "250 queued") is before the damage.
    let k = frames
        .iter()
        .position(|(_, f)| f.ends_with(b"MAIL FROM:<alice@example.org>\r\n"))
        .expect("second MAIL frame");
    let cut = offsets[k] + 16 + 30;
    write_file(&dir, "cut.pcap", &file[..cut]);
    let o = replay_cmd(&dir, &["cut.pcap"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let lines = parse_lines(&o.stdout);
    let txs = transactions(&lines);
    assert_eq!(txs[0]["transaction"]["state"], "delivered");
    assert_eq!(txs[0]["email"]["subject"], "Quarterly report");
    // The flow still ends with its line, closed by the end of input.
    let flow = of_type(&lines, "flow");
    assert_eq!(flow.len(), 1);
    assert_eq!(flow[0]["flow"]["state"], "shutdown");
    let err = stderr(&o);
    let want = format!(
        "smtp-user: error: cut.pcap: offset {}: file ends inside a pcap record: {} bytes expected, 46 present",
        offsets[k],
        16 + frames[k].1.len()
    );
    assert_eq!(err.lines().next(), Some(want.as_str()), "{err}");
    let s = summary_line(&o);
    assert!(
        s.starts_with(&format!(
            "replay: 1 file(s), {k} frames, 0.0 MB, 1 flows, 1 transactions,"
        )),
        "{s}"
    );
    let s = s.split_once("; ").map_or(s.as_str(), |(s, _)| s);
    assert!(s.ends_with(", 1 file error(s)"), "{s}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn not_a_capture_file_is_a_clear_error() {
    let dir = test_dir("cli-not-capture");
    write_file(&dir, "notes.txt", b"hello, this is not a capture\n");
    let o = replay_cmd(&dir, &["notes.txt"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let err = stderr(&o);
    assert_eq!(
        err.lines().next(),
        Some("smtp-user: error: notes.txt: offset 0: not a pcap or pcapng file (magic 0x6c6c6568)"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_file_is_named_and_other_files_still_read() {
    let dir = test_dir("cli-missing");
    write_file(&dir, "good.pcap", &pcap(&frames()));
    let o = replay_cmd(&dir, &["absent.pcap", "good.pcap"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("smtp-user: error: absent.pcap: ") && first.contains("No such file"),
        "{err}"
    );
    assert_eq!(transactions(&parse_lines(&o.stdout)).len(), 2);
    assert!(summary_line(&o).starts_with("replay: 2 file(s), "));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pcapng_gives_the_same_events_as_pcap() {
    let dir = test_dir("cli-pcapng");
    let frames = frames();
    write_file(&dir, "a.pcap", &pcap(&frames));
    for endian in [Endian::Little, Endian::Big] {
        let mut w = PcapngWriter::new(Vec::new(), endian).expect("Vec");
        w.interface(linktype::ETHERNET as u16, None).expect("Vec");
        for (ts, f) in &frames {
            w.enhanced_packet(0, *ts, f, f.len() as u32).expect("Vec");
        }
        write_file(&dir, "a.pcapng", &w.into_inner());
        let a = replay_cmd(&dir, &["a.pcap"]);
        let b = replay_cmd(&dir, &["a.pcapng"]);
        assert_eq!(b.status.code(), Some(0), "{}", stderr(&b));
        // Same lines, byte for byte (same timestamps, same flow id).
        assert_eq!(
            String::from_utf8_lossy(&a.stdout),
            String::from_utf8_lossy(&b.stdout)
        );
        assert_eq!(transactions(&parse_lines(&b.stdout)).len(), 2);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn output_option_writes_the_file() {
    let dir = test_dir("cli-output");
    write_file(&dir, "good.pcap", &pcap(&frames()));
    let o = replay_cmd(&dir, &["good.pcap", "--output", "eve.json"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty());
    let written = std::fs::read(dir.join("eve.json")).expect("output file");
    let lines = parse_lines(&written);
    assert_eq!(
        tx_states(&lines),
        [
            ("<alice@example.org>".to_string(), "delivered".to_string()),
            ("<alice@example.org>".to_string(), "reset".to_string()),
        ]
    );
    assert_eq!(of_type(&lines, "flow").len(), 1);
    // An output path that cannot be created: exit 1, named.
    let o = replay_cmd(&dir, &["good.pcap", "--output", "no/such/dir/eve.json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no/such/dir/eve.json"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn several_files_are_one_capture() {
    let dir = test_dir("cli-multi");
    let frames = frames();
    // Split in the middle of the message body, then after the first
    // transaction: the flow continues across files.
    let cuts = [frames.len() / 3, 2 * frames.len() / 3];
    write_file(&dir, "p0.pcap", &pcap(&frames[..cuts[0]]));
    write_file(&dir, "p1.pcap", &pcap(&frames[cuts[0]..cuts[1]]));
    write_file(&dir, "p2.pcap", &pcap(&frames[cuts[1]..]));
    write_file(&dir, "all.pcap", &pcap(&frames));
    let whole = replay_cmd(&dir, &["all.pcap"]);
    let parts = replay_cmd(&dir, &["p0.pcap", "p1.pcap", "p2.pcap"]);
    assert_eq!(parts.status.code(), Some(0), "{}", stderr(&parts));
    assert_eq!(
        String::from_utf8_lossy(&whole.stdout),
        String::from_utf8_lossy(&parts.stdout)
    );
    let lines = parse_lines(&parts.stdout);
    assert_eq!(of_type(&lines, "flow").len(), 1);
    assert_eq!(transactions(&lines).len(), 2);
    assert!(summary_line(&parts).starts_with(&format!(
        "replay: 3 file(s), {} frames, 0.0 MB, 1 flows, 2 transactions,",
        frames.len()
    )));
    // In the wrong order the flow is broken: not the same events.
    let wrong = replay_cmd(&dir, &["p1.pcap", "p0.pcap", "p2.pcap"]);
    assert_ne!(whole.stdout, wrong.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The realistic session with the checksum of every server segment wrong,
/// as captured on a server with checksum offloading.
fn offloaded_frames() -> Vec<TimedFrame> {
    frames()
        .into_iter()
        .map(|(ts, mut f)| {
            // Server → client: source port 25 at 14 + 20; TCP checksum at
            // 14 + 20 + 16.
            if f[34..36] == 25u16.to_be_bytes() {
                f[50] ^= 0xff;
            }
            (ts, f)
        })
        .collect()
}

#[test]
fn checksum_modes() {
    let dir = test_dir("cli-checksum");
    let clean = frames();
    let n = clean.len();
    write_file(&dir, "clean.pcap", &pcap(&clean));
    let offloaded = offloaded_frames();
    let server = offloaded.len()
        - clean
            .iter()
            .filter(|(_, f)| f[34..36] != 25u16.to_be_bytes())
            .count();
    assert!(server > n / 10);
    write_file(&dir, "offloaded.pcap", &pcap(&offloaded));
    let run = |file: &str, mode: &str| {
        let o = replay_cmd(&dir, &["--checksum", mode, file]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        (
            summary_line(&o),
            transactions(&parse_lines(&o.stdout)).len(),
        )
    };
    let (s, _) = run("clean.pcap", "on");
    assert!(s.contains("checksums verified, 0 bad segments"), "{s}");
    let (s, _) = run("clean.pcap", "off");
    assert!(s.contains("checksums not verified, 0 bad segments"), "{s}");
    let (s, _) = run("clean.pcap", "auto");
    assert!(
        s.contains(&format!("checksums verified (auto: 0 of {n} sampled bad)")),
        "{s}"
    );
    // Offloaded: auto sees too many bad ones and turns verification off;
    // `on` finds every server segment bad.
    let (s, tx) = run("offloaded.pcap", "auto");
    assert!(
        s.contains(&format!(
            "checksums not verified (auto: {server} of {n} sampled bad), 0 bad segments"
        )),
        "{s}"
    );
    assert_eq!(tx, 2);
    let (s, _) = run("offloaded.pcap", "on");
    assert!(
        s.contains(&format!("checksums verified, {server} bad segments")),
        "{s}"
    );
    let (s, _) = run("offloaded.pcap", "off");
    assert!(s.contains("checksums not verified, 0 bad segments"), "{s}");
    let o = replay_cmd(&dir, &["--checksum", "sometimes", "clean.pcap"]);
    assert_eq!(o.status.code(), Some(2), "clap's usage error");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pipe is read once: `--checksum auto` does not sample it (which would
/// eat its first frames), it replays it whole without verification.
#[test]
fn checksum_auto_on_a_pipe_reads_every_frame() {
    let dir = test_dir("cli-pipe");
    let frames = frames();
    let path = write_file(&dir, "good.pcap", &pcap(&frames));
    let fifo = dir.join("pipe.pcap");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: plain mkfifo(3) on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let writer = std::thread::spawn(move || std::fs::write(&fifo, std::fs::read(path).unwrap()));
    let o = replay_cmd(&dir, &["pipe.pcap"]);
    writer.join().unwrap().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = summary_line(&o);
    assert!(s.contains(&format!("{} frames", frames.len())), "{s}");
    assert!(s.contains("checksums not verified, 0 bad segments"), "{s}");
    assert_eq!(transactions(&parse_lines(&o.stdout)).len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
