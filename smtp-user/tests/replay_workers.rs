//! `replay --workers N`: with 1, 2 and 4 workers, the same captures give
//! the same events. Lines of different flows may come in any order, so the
//! comparison is per flow (the exact lines of each `flow_id`, in order) and
//! the flowless decoder anomalies as a multiset; the summary totals agree
//! too. Generated captures (concurrent sessions, lost, duplicated and
//! fragmented segments, IPv4 and IPv6) are a property test; every capture
//! of the shared corpus is checked when the corpus is present.

mod corpus;
mod pipeline_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use pipeline_common::*;
use smtp_user::capture::builder::{ethernet_frame, TcpPacket};
use smtp_user::capture::synth::{
    duplicate_data, lose_data, render, smtp_script, Conversation, PcapWriter, RenderOptions,
    TimedFrame,
};
use smtp_user::capture::wire::{linktype, parse_frame};
use smtp_user::flow::FlowConfig;
use smtp_user::pipeline::{replay_files, ReplayOptions, ReplaySummary};

/// Lines per flow (`flow_id`), in output order; flowless lines under "-",
/// sorted (their order between workers is free).
type ByFlow = BTreeMap<String, Vec<String>>;

fn replay(paths: &[PathBuf], workers: usize) -> (ReplaySummary, ByFlow) {
    let opts = ReplayOptions {
        flow: FlowConfig {
            monitored_ports: vec![25, 587, 2525],
            ..FlowConfig::default()
        },
        log_commands: true,
        workers,
        ..ReplayOptions::default()
    };
    let mut out = Vec::new();
    let (summary, res) = replay_files(paths, &opts, &mut out, |_| {});
    res.expect("output to a Vec cannot fail");
    // Every line whole and valid.
    let lines = parse_lines(&out);
    let mut by_flow = ByFlow::new();
    for (text, v) in String::from_utf8(out)
        .expect("EVE is UTF-8")
        .lines()
        .zip(&lines)
    {
        let key = v["flow_id"]
            .as_u64()
            .map_or("-".to_string(), |id| id.to_string());
        by_flow.entry(key).or_default().push(text.to_string());
    }
    if let Some(flowless) = by_flow.get_mut("-") {
        flowless.sort();
    }
    (summary, by_flow)
}

/// Replays `paths` with 1, 2 and 4 workers; panics unless events and
/// totals agree. Returns the one-worker summary.
fn assert_same_events(name: &str, paths: &[PathBuf]) -> ReplaySummary {
    let (one, events) = replay(paths, 1);
    for n in [2, 4] {
        let (s, e) = replay(paths, n);
        assert_eq!(s.workers.len(), n, "{name}");
        assert_eq!(e.len(), events.len(), "{name}: flows with {n} workers");
        for (flow, lines) in &events {
            assert_eq!(e.get(flow), Some(lines), "{name}: flow {flow}, {n} workers");
        }
        assert_eq!(s.pipeline, one.pipeline, "{name}: {n} workers");
        assert_eq!(s.output, one.output, "{name}: {n} workers");
        assert_eq!(s.verdicts, one.verdicts, "{name}: {n} workers");
        assert_eq!(s.decode, one.decode, "{name}: {n} workers");
        assert_eq!(s.frames, one.frames, "{name}: {n} workers");
        assert_eq!(s.not_monitored, one.not_monitored, "{name}: {n} workers");
        let t = (&s.table, &one.table);
        assert_eq!(t.0.flows_created, t.1.flows_created, "{name}");
        assert_eq!(t.0.closed(), t.1.closed(), "{name}");
        assert_eq!(t.0.segments, t.1.segments, "{name}");
        assert_eq!(t.0.skipped, t.1.skipped, "{name}");
        // The per-worker stats are what the totals sum.
        let flows: u64 = s.workers.iter().map(|w| w.pipeline.flows).sum();
        assert_eq!(flows, s.pipeline.flows, "{name}");
        assert!(s.line().contains(&format!("{n} workers")), "{}", s.line());
    }
    one
}

/// Splits every client data segment longer than 48 bytes into two IP
/// fragments (second one first), as a fragmenting path would.
fn fragment_client_data(frames: Vec<TimedFrame>, server_port: u16) -> Vec<TimedFrame> {
    let mut out = Vec::with_capacity(frames.len());
    for (i, (ts, f)) in frames.into_iter().enumerate() {
        let seg = match parse_frame(linktype::ETHERNET, ts, &f) {
            Ok(s) if s.dst.port() == server_port && s.payload.len() > 48 => s,
            _ => {
                out.push((ts, f));
                continue;
            }
        };
        let p = TcpPacket::new(seg.src, seg.dst, seg.seq, seg.ack, seg.flags.0, seg.payload);
        let tcp = p.tcp_bytes();
        let ident = 7 + i as u32;
        let tail = p.ip_fragment(ident, 40, &tcp[40..], false);
        let head = p.ip_fragment(ident, 0, &tcp[..40], true);
        out.push((ts, ethernet_frame(&[], &tail)));
        out.push((ts, ethernet_frame(&[], &head)));
    }
    out
}

/// One generated capture: `sessions` sessions interleaved round-robin.
#[derive(Debug, Clone)]
struct Gen {
    sessions: usize,
    body_len: usize,
    mss: usize,
    v6: bool,
    /// Data segments lost in the capture (every `lose`-th session).
    lose: usize,
    duplicate: usize,
    fragment: bool,
}

fn capture(g: &Gen) -> Vec<u8> {
    let script = smtp_script(g.body_len);
    let sessions: Vec<Vec<TimedFrame>> = (0..g.sessions)
        .map(|i| {
            let mut c = Conversation::new(script.clone());
            let port = 1024 + i as u16;
            let server_port = [25, 587, 2525][i % 3];
            (c.client, c.server) = if g.v6 {
                (
                    SocketAddr::from(([0x2001, 2, 0, 0, 0, 0, 1, i as u16], port)),
                    SocketAddr::from(([0x2001, 2, 0, 0, 0, 0, 0, 25], server_port)),
                )
            } else {
                (
                    SocketAddr::from(([198, 18, 1, i as u8], port)),
                    SocketAddr::from(([198, 19, 0, 25], server_port)),
                )
            };
            c.client_isn = (i as u32).wrapping_mul(2_654_435_761);
            c.server_isn = (i as u32).wrapping_mul(40503).wrapping_add(7);
            c.mss = g.mss;
            let mut packets = c.packets();
            if g.lose > 0 && i % 3 == 1 {
                lose_data(&mut packets, g.lose);
            }
            if g.duplicate > 0 && i % 3 == 2 {
                duplicate_data(&mut packets, g.duplicate);
            }
            let frames = render(&c, &packets, RenderOptions::default());
            if g.fragment && i % 2 == 0 {
                fragment_client_data(frames, server_port)
            } else {
                frames
            }
        })
        .collect();
    let mut w = PcapWriter::new(Vec::new(), linktype::ETHERNET).expect("write to Vec");
    let longest = sessions.iter().map(Vec::len).max().unwrap_or(0);
    let mut ts = 1_700_000_000_000_000u64;
    for k in 0..longest {
        for s in &sessions {
            if let Some((_, f)) = s.get(k) {
                w.write_frame(ts, f, f.len() as u32).expect("write to Vec");
                ts += 10;
            }
        }
    }
    w.into_inner()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 16, .. Default::default() })]

    /// Generated captures give the same events with 1, 2 and 4 workers.
    #[test]
    fn generated_captures_same_events_with_any_worker_count(
        sessions in 1usize..24,
        body_len in 0usize..6000,
        mss in 64usize..1460,
        v6 in proptest::prelude::any::<bool>(),
        lose in 0usize..3,
        duplicate in 0usize..3,
        fragment in proptest::prelude::any::<bool>(),
    ) {
        let g = Gen { sessions, body_len, mss, v6, lose, duplicate, fragment };
        let dir = test_dir(&format!("workers-{}", std::process::id()));
        let path = write_file(&dir, "gen.pcap", &capture(&g));
        let one = assert_same_events(&format!("{g:?}"), &[path]);
        proptest::prop_assert_eq!(one.pipeline.flows, sessions as u64);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn fragmented_sessions_are_reassembled_before_dispatch() {
    let g = Gen {
        sessions: 8,
        body_len: 3000,
        mss: 536,
        v6: false,
        lose: 0,
        duplicate: 0,
        fragment: true,
    };
    let dir = test_dir("workers-frag");
    let path = write_file(&dir, "frag.pcap", &capture(&g));
    let one = assert_same_events("fragmented", &[path]);
    assert!(one.decode.fragments.reassembled > 0, "{:?}", one.decode);
    assert_eq!(one.pipeline.transactions, 8);
    assert_eq!(one.pipeline.anomalies, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corpus_same_events_with_any_worker_count() {
    let Some(dir) = corpus::pcap_dir() else {
        println!("skip: shared corpus absent");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in &files {
        assert_same_events(&f.display().to_string(), std::slice::from_ref(f));
    }
    // All at once, as one capture: flows of different files interleave
    // across workers.
    assert_same_events("whole corpus", &files);
}
