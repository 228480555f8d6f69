//! Hostile captures cannot flood the output: replayed floods stay within
//! the bounded-output targets (EVE bytes at most twice the capture's, at
//! most 10,000 events per flow), every line still validates against the
//! EVE schemas, what was not written is counted (`anomalies_suppressed` on
//! the flow event and in the summary), and alerts are all written.

mod pipeline_common;

use std::collections::HashMap;
use std::net::SocketAddr;

use pipeline_common::{of_type, pcap_of, replay_pcap};
use serde_json::Value;
use smtp_user::capture::synth::{data_indices, shuffle_data, tcp_frame, Conversation, PcapWriter};
use smtp_user::capture::wire::linktype;
use smtp_user::pipeline::ReplaySummary;
use smtp_user::Direction::{Down, Up};

/// Targets of issue 10 for hostile input.
const MAX_EVE_PER_CAPTURE_BYTE: u64 = 2;
const MAX_EVENTS_PER_FLOW: usize = 10_000;

/// EVE bytes of `lines` as written (one line each, newline included).
fn eve_bytes(lines: &[Value]) -> u64 {
    lines.iter().map(|l| l.to_string().len() as u64 + 1).sum()
}

/// Checks the targets and prints what was measured.
fn assert_bounded(name: &str, capture_bytes: usize, summary: &ReplaySummary, lines: &[Value]) {
    let eve = eve_bytes(lines);
    let mut per_flow: HashMap<u64, usize> = HashMap::new();
    for l in lines {
        *per_flow
            .entry(l["flow_id"].as_u64().unwrap_or(0))
            .or_default() += 1;
    }
    let max_per_flow = per_flow.values().copied().max().unwrap_or(0);
    println!(
        "{name}: capture {capture_bytes} B, EVE {eve} B ({:.2}x), {} lines, {} flows, \
         at most {max_per_flow} lines per flow, {} anomalies ({} not written)",
        eve as f64 / capture_bytes as f64,
        lines.len(),
        per_flow.len(),
        summary.pipeline.anomalies,
        summary.pipeline.anomalies_suppressed.total(),
    );
    println!("{name}: {}", summary.line());
    assert_eq!(
        eve, summary.output.bytes,
        "{name}: the writer counts what it writes"
    );
    assert!(
        eve <= MAX_EVE_PER_CAPTURE_BYTE * capture_bytes as u64,
        "{name}: {eve} EVE bytes for {capture_bytes} capture bytes"
    );
    assert!(
        max_per_flow <= MAX_EVENTS_PER_FLOW,
        "{name}: {max_per_flow} events in one flow"
    );
    // Every suppressed anomaly is on a flow event, by kind.
    let mut on_flows = 0u64;
    for f in of_type(lines, "flow") {
        if let Some(m) = f["flow"]["anomalies_suppressed"].as_object() {
            on_flows += m.values().filter_map(Value::as_u64).sum::<u64>();
        }
    }
    assert_eq!(
        on_flows,
        summary.pipeline.anomalies_suppressed.total(),
        "{name}: suppressed anomalies are all reported on flow events"
    );
    assert_eq!(
        summary.pipeline.anomalies,
        summary.output.anomaly + summary.pipeline.anomalies_suppressed.total(),
        "{name}: each anomaly is written or counted as suppressed"
    );
}

fn session(steps_mid: Vec<(smtp_user::Direction, Vec<u8>)>, mss: usize) -> Conversation {
    let mut steps = vec![
        (Down, b"220 mx.example.net ESMTP\r\n".to_vec()),
        (Up, b"EHLO client.example.org\r\n".to_vec()),
        (Down, b"250-mx.example.net\r\n250 PIPELINING\r\n".to_vec()),
    ];
    steps.extend(steps_mid);
    steps.push((Up, b"QUIT\r\n".to_vec()));
    steps.push((Down, b"221 Bye\r\n".to_vec()));
    let mut c = Conversation::new(steps);
    c.mss = mss;
    c
}

/// A message body sent as out-of-order 1-byte segments, every other one
/// missing from the capture: one hole per byte.
#[test]
fn out_of_order_one_byte_segments() {
    let body: Vec<u8> = b"x"
        .repeat(78)
        .into_iter()
        .chain(*b"\r\n")
        .cycle()
        .take(24_000)
        .collect();
    let mut msg = b"Subject: flood\r\n\r\n".to_vec();
    msg.extend_from_slice(&body);
    msg.extend_from_slice(b".\r\n");
    let conv = session(
        vec![
            (
                Up,
                b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n".to_vec(),
            ),
            (Down, b"250 ok\r\n250 ok\r\n354 go\r\n".to_vec()),
            (Up, msg),
            (Down, b"250 queued\r\n".to_vec()),
        ],
        1,
    );
    let mut packets = conv.packets();
    shuffle_data(&mut packets, 7);
    let data = data_indices(&packets);
    for (n, &i) in data.iter().enumerate() {
        // Keep the commands (the first 400 data packets); lose every other body byte.
        if n > 400 && n % 2 == 0 && packets[i].dir == Up {
            packets[i].lost_in_capture = true;
        }
    }
    let pcap = pcap_of(&conv, &packets);
    let (summary, lines) = replay_pcap("flood-ooo-1byte", &pcap);
    assert!(summary.pipeline.gap_bytes > 0, "the holes are seen");
    assert_bounded("out-of-order 1-byte segments", pcap.len(), &summary, &lines);
}

/// 6.7 MB of pipelined RCPT commands, each answered.
#[test]
fn pipelined_rcpt_flood() {
    let n = 6_700_000 / b"RCPT TO:<r0000000@example.net>\r\n".len();
    let mut rcpts = Vec::new();
    let mut replies = Vec::new();
    for i in 0..n {
        rcpts.extend_from_slice(format!("RCPT TO:<r{i:07}@example.net>\r\n").as_bytes());
        replies.extend_from_slice(b"250 2.1.5 Ok\r\n");
    }
    let conv = session(
        vec![
            (Up, b"MAIL FROM:<a@example.org>\r\n".to_vec()),
            (Down, b"250 ok\r\n".to_vec()),
            (Up, rcpts),
            (Down, replies),
            (Up, b"RSET\r\n".to_vec()),
            (Down, b"250 ok\r\n".to_vec()),
        ],
        1460,
    );
    let pcap = pcap_of(&conv, &conv.packets());
    let (summary, lines) = replay_pcap("flood-rcpt", &pcap);
    assert_eq!(summary.pipeline.transactions, 1);
    assert_bounded("6.7 MB of pipelined RCPTs", pcap.len(), &summary, &lines);
}

/// Many flows of one packet each (a client segment seen midstream).
#[test]
fn many_one_packet_flows() {
    let mut w = PcapWriter::new(Vec::new(), linktype::ETHERNET).expect("write to Vec");
    let server: SocketAddr = "198.18.0.1:25".parse().unwrap();
    let flows = 20_000u32;
    for i in 0..flows {
        let client = SocketAddr::from((
            [198, 19, (i >> 8) as u8, i as u8],
            1024 + (i % 60_000) as u16,
        ));
        let f = tcp_frame(
            client,
            server,
            i.wrapping_mul(7919),
            1,
            0x18,
            b"MAIL FROM:<x@y>\r\n",
        );
        w.write_frame(
            1_700_000_000_000_000 + u64::from(i) * 10,
            &f,
            f.len() as u32,
        )
        .expect("write to Vec");
    }
    let pcap = w.into_inner();
    let (summary, lines) = replay_pcap("flood-flows", &pcap);
    assert_eq!(summary.pipeline.flows, u64::from(flows));
    // Each would have written an aborted transaction and a flow line.
    assert_eq!(summary.pipeline.single_packet_flows, u64::from(flows));
    assert_eq!(summary.pipeline.single_packet_lines, 2 * u64::from(flows));
    assert_bounded("one-packet flows", pcap.len(), &summary, &lines);
}

/// `--anomalies-per-kind` sets the per-flow limit; the summary line says
/// what was not written, by kind.
#[test]
fn cli_limit_and_summary() {
    let mut up = b"MAIL FROM:<a@example.org>\r\n".to_vec();
    for _ in 0..30 {
        up.extend_from_slice(b"FROB now\r\n");
    }
    let conv = session(vec![(Up, up), (Down, b"250 ok\r\n".repeat(31))], 1460);
    let dir = pipeline_common::test_dir("flood-cli");
    let path = pipeline_common::write_file(&dir, "c.pcap", &pcap_of(&conv, &conv.packets()));
    let run = |limit: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_smtp-user"))
            .args(["replay", "-q", "--anomalies-per-kind", limit])
            .arg(&path)
            .output()
            .expect("run smtp-user");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let lines = pipeline_common::parse_lines(&o.stdout);
        (lines, String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (lines, err) = run("2");
    let kinds = pipeline_common::anomaly_events(&lines);
    assert!(!kinds.is_empty());
    for k in &kinds {
        assert!(kinds.iter().filter(|x| *x == k).count() <= 2, "{kinds:?}");
    }
    let flow = of_type(&lines, "flow")[0];
    let suppressed = flow["flow"]["anomalies_suppressed"]
        .as_object()
        .expect("anomalies_suppressed on the flow line");
    let total: u64 = suppressed.values().filter_map(Value::as_u64).sum();
    assert!(total >= 28, "{suppressed:?}");
    assert!(err.contains(&format!("({total} not written: ")), "{err}");
    let (all, err) = run("1000");
    assert_eq!(all.len(), lines.len() + total as usize);
    assert!(!err.contains("not written"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Alerts of single-packet flows are written, every one.
#[test]
fn alerts_of_single_packet_flows_are_written() {
    use smtp_user::flow::FlowConfig;
    use smtp_user::pipeline::{replay_files, PolicyOptions, ReplayOptions};
    use smtp_user::policy::RuleSet;
    let mut w = PcapWriter::new(Vec::new(), linktype::ETHERNET).expect("write to Vec");
    let server: SocketAddr = "198.18.0.1:25".parse().unwrap();
    for i in 0..50u16 {
        let client = SocketAddr::from(([198, 19, 0, 2], 2000 + i));
        let f = tcp_frame(
            client,
            server,
            1000,
            1,
            0x18,
            b"MAIL FROM:<x@bad.example>\r\n",
        );
        w.write_frame(1_700_000_000_000_000 + u64::from(i), &f, f.len() as u32)
            .expect("write to Vec");
    }
    let dir = pipeline_common::test_dir("flood-alerts");
    let path = pipeline_common::write_file(&dir, "c.pcap", &w.into_inner());
    let rules =
        "[[rule]]\nsid = 100\nname = \"bad\"\n[rule.when]\nmail_from_domain = [\"bad.example\"]\n";
    let opts = ReplayOptions {
        flow: FlowConfig {
            monitored_ports: vec![25],
            ..FlowConfig::default()
        },
        policy: PolicyOptions {
            rules: std::sync::Arc::new(
                RuleSet::from_toml(rules, std::path::Path::new("r.toml")).expect("rules"),
            ),
            ..PolicyOptions::default()
        },
        ..ReplayOptions::default()
    };
    let mut out = Vec::new();
    let (summary, res) = replay_files(&[path], &opts, &mut out, |_| {});
    res.expect("output to a Vec");
    let lines = pipeline_common::parse_lines(&out);
    assert_eq!(summary.pipeline.single_packet_flows, 50);
    assert_eq!(of_type(&lines, "alert").len(), 50);
    assert_eq!(lines.len(), 50, "only the alerts");
    let _ = std::fs::remove_dir_all(&dir);
}
