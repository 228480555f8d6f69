//! Reassembly of generated sessions: every capture-point accident must give
//! back the clean byte streams, or exactly the specified gaps.

use std::net::SocketAddr;

use proptest::prelude::*;
use smtp_user::capture::synth::{self, Conversation, Packet, RenderOptions, TimedFrame};
use smtp_user::capture::wire::{linktype, parse_frame};
use smtp_user::capture::Segment;
use smtp_user::flow::recorder::{Piece, RecordedFlow};
use smtp_user::flow::{CloseReason, FlowConfig, FlowTable, Recorder};
use smtp_user::Direction::{self, Down, Up};

/// A captured segment with all of its payload, for hand-written sessions.
fn seg(
    ts: u64,
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &'static [u8],
) -> Segment<'static> {
    Segment {
        ts_micros: ts,
        src,
        dst,
        seq,
        ack,
        flags: smtp_user::capture::TcpFlags(flags),
        payload,
        uncaptured: 0,
        held: false,
        urgent: 0,
        checksum: Default::default(),
    }
}

fn feed(table: &mut FlowTable<Recorder>, frames: &[TimedFrame]) {
    for (ts, f) in frames {
        let seg = parse_frame(linktype::ETHERNET, *ts, f).expect("synthetic frames parse");
        table.segment(&seg);
    }
}

/// Runs `packets` of `conv` through a table and returns the single flow.
fn run(
    conv: &Conversation,
    packets: &[Packet],
    opts: RenderOptions,
    config: FlowConfig,
) -> (RecordedFlow, FlowTable<Recorder>) {
    let frames = synth::render(conv, packets, opts);
    let mut table = FlowTable::new(config, Recorder::default());
    feed(&mut table, &frames);
    table.close_all();
    assert_eq!(table.handler().flows.len(), 1, "exactly one flow");
    let flow = table.handler().flows[0].clone();
    (flow, table)
}

fn conv(mss: usize) -> Conversation {
    let mut c = Conversation::new(synth::smtp_script(20_000));
    c.mss = mss;
    c
}

fn assert_clean(flow: &RecordedFlow, c: &Conversation) {
    for d in [Up, Down] {
        let s = flow.stream(d);
        assert_eq!(s.gaps(), vec![], "{d:?} has no gap");
        assert!(
            s.data() == c.stream(d),
            "{d:?} stream differs from the clean one"
        );
    }
}

#[test]
fn clean_session() {
    let c = conv(1460);
    let (flow, table) = run(
        &c,
        &c.packets(),
        RenderOptions::default(),
        FlowConfig::default(),
    );
    assert_clean(&flow, &c);
    assert_eq!(flow.info.client, c.client);
    assert_eq!(flow.info.server, c.server);
    assert_eq!(flow.reason(), Some(CloseReason::Closed));
    let st = flow.stats().unwrap();
    assert!(st.syn_seen && !st.midstream);
    assert_eq!(st.up.bytes, c.stream(Up).len() as u64);
    assert_eq!(st.down.bytes, c.stream(Down).len() as u64);
    assert_eq!((st.up.duplicates, st.up.overlaps, st.up.gaps), (0, 0, 0));
    let ts = table.stats();
    assert_eq!((ts.flows_created, ts.closed_fin, ts.active), (1, 1, 0));
    // The last ACK arrives after the close: counted, no new flow.
    assert_eq!(ts.orphans, 1);
    assert_eq!(ts.buffered, 0);
}

#[test]
fn reordered_segments() {
    for seed in [1, 7, 42, 1234] {
        let c = conv(500);
        let mut p = c.packets();
        synth::shuffle_data(&mut p, seed);
        let (flow, _) = run(&c, &p, RenderOptions::default(), FlowConfig::default());
        assert_clean(&flow, &c);
        assert_eq!(flow.reason(), Some(CloseReason::Closed), "seed {seed}");
    }
    let c = conv(100);
    let mut p = c.packets();
    synth::swap_pairs(&mut p);
    let (flow, _) = run(&c, &p, RenderOptions::default(), FlowConfig::default());
    assert_clean(&flow, &c);
    assert!(flow.stats().unwrap().up.ooo_peak > 0);
}

#[test]
fn duplicated_segments_are_counted() {
    let c = conv(1000);
    let mut p = c.packets();
    for k in [0, 3, 5, 10] {
        synth::duplicate_data(&mut p, k + 4); // indices shift by one per insert
    }
    let (flow, _) = run(&c, &p, RenderOptions::default(), FlowConfig::default());
    assert_clean(&flow, &c);
    let st = flow.stats().unwrap();
    assert_eq!(st.up.duplicates + st.down.duplicates, 4);
}

/// Index (in `p`) of the data packet of direction `d` starting at `rel`.
fn find(p: &[Packet], d: Direction, rel: i64) -> usize {
    p.iter()
        .position(|x| x.dir == d && x.rel == rel && x.is_data())
        .expect("packet")
}

#[test]
fn overlapping_retransmissions_as_linux_keeps_them() {
    let c = conv(1000);
    let ups: Vec<i64> = c
        .packets()
        .iter()
        .filter(|x| x.dir == Up && x.is_data())
        .map(|x| x.rel)
        .collect();
    let rel = ups[ups.len() - 5]; // two full 1000-byte body segments follow
    assert_eq!(ups[ups.len() - 4], rel + 1000);
    // Same bytes, after the originals: overlaps delivered data.
    let mut p = c.packets();
    let i = find(&p, Up, rel + 1000);
    p.insert(i + 1, c.retransmission(Up, rel as usize + 500, 1000, false));
    let (flow, _) = run(&c, &p, RenderOptions::default(), FlowConfig::default());
    assert_clean(&flow, &c);
    assert_eq!(flow.stats().unwrap().up.duplicates, 1);

    // Conflicting bytes, after the originals: ignored.
    let mut p = c.packets();
    let i = find(&p, Up, rel + 1000);
    p.insert(i + 1, c.retransmission(Up, rel as usize + 500, 1000, true));
    let (flow, _) = run(&c, &p, RenderOptions::default(), FlowConfig::default());
    assert_clean(&flow, &c);

    // Buffered out of order, then a conflicting copy of buffered bytes
    // arrives, then the hole is filled: the buffered bytes (of the segment
    // that starts first) win and the conflict is counted.
    let mut p = c.packets();
    let a = find(&p, Up, rel);
    let b = find(&p, Up, rel + 1000);
    p.swap(a, b); // rel+1000 now buffered before rel arrives
    p.insert(a + 1, c.retransmission(Up, rel as usize + 1200, 500, true));
    let (flow, _) = run(&c, &p, RenderOptions::default(), FlowConfig::default());
    assert_clean(&flow, &c);
    let st = flow.stats().unwrap();
    assert_eq!(st.up.overlap_conflicts, 1, "{st:?}");

    // A conflicting copy buffered out of order and delivered as soon as the
    // hole before it is filled wins, as in Linux's receive queue: the
    // original arrives after it was delivered and is discarded.
    let mut p = c.packets();
    let a = find(&p, Up, rel);
    p.insert(a, c.retransmission(Up, rel as usize + 1000, 500, true));
    let (flow, _) = run(&c, &p, RenderOptions::default(), FlowConfig::default());
    let mut expected = c.stream(Up);
    let r = rel as usize + 1000;
    expected[r..r + 500].iter_mut().for_each(|b| *b = !*b);
    assert!(flow.up.data() == expected);
    // The original arrives after the copy was delivered: an overlap, but
    // delivered bytes are not kept, so it cannot be recognised as a conflict.
    let st = flow.stats().unwrap();
    assert_eq!((st.up.overlaps, st.up.overlap_conflicts), (1, 0));
}

#[test]
fn lost_segment_is_an_exact_gap() {
    let c = conv(1000);
    for k in [1, 6, 15] {
        let mut p = c.packets();
        let idx = synth::data_indices(&p)[k];
        let lost = p[idx].clone();
        synth::lose_data(&mut p, k);
        let (flow, _) = run(&c, &p, RenderOptions::default(), FlowConfig::default());
        let s = flow.stream(lost.dir);
        assert_eq!(
            s.gaps(),
            vec![(lost.rel as u64, lost.payload.len() as u64)],
            "k={k}"
        );
        let mut expected = c.stream(lost.dir);
        expected.drain(lost.rel as usize..lost.rel as usize + lost.payload.len());
        assert!(s.data() == expected);
        let other = flow.stream(lost.dir.reverse());
        assert!(other.data() == c.stream(lost.dir.reverse()) && other.gaps().is_empty());
        let st = flow.stats().unwrap();
        assert_eq!(st.dir(lost.dir).gaps, 1);
        assert_eq!(st.dir(lost.dir).gap_bytes, lost.payload.len() as u64);
        assert_eq!(flow.reason(), Some(CloseReason::Closed));
    }
}

#[test]
fn lost_segment_without_acks_becomes_gap_at_close() {
    let c = conv(1000);
    let mut p = c.packets();
    let k = synth::data_indices(&p).len() - 3;
    let idx = synth::data_indices(&p)[k];
    let lost = p[idx].clone();
    synth::lose_data(&mut p, k);
    let opts = RenderOptions {
        pure_acks: false,
        ..RenderOptions::default()
    };
    let (flow, _) = run(&c, &p, opts, FlowConfig::default());
    assert_eq!(
        flow.stream(lost.dir).gaps(),
        vec![(lost.rel as u64, lost.payload.len() as u64)]
    );
}

#[test]
fn midstream_start() {
    let c = conv(1000);
    for k in [0, 3, 9] {
        let mut p = c.packets();
        synth::start_midstream(&mut p, k);
        let (flow, _) = run(&c, &p, RenderOptions::default(), FlowConfig::default());
        assert_eq!(flow.info.client, c.client, "port 25 decides the server");
        let st = flow.stats().unwrap();
        assert!(st.midstream && !st.syn_seen);
        for d in [Up, Down] {
            let expected: Vec<u8> = p
                .iter()
                .filter(|x| x.dir == d && x.is_data() && !x.lost_in_capture)
                .flat_map(|x| x.payload.clone())
                .collect();
            assert!(flow.stream(d).data() == expected, "k={k} {d:?}");
            assert!(flow.stream(d).gaps().is_empty());
        }
    }
}

#[test]
fn sequence_wrap_ipv6_and_one_byte_segments() {
    let mut c = Conversation::new(synth::smtp_script(3000));
    c.client = "[2001:db8::1]:51000".parse().unwrap();
    c.server = "[2001:db8::25]:25".parse().unwrap();
    c.client_isn = u32::MAX - 1500;
    c.server_isn = u32::MAX - 40;
    c.mss = 1;
    let mut p = c.packets();
    synth::shuffle_data(&mut p, 99);
    let (flow, _) = run(&c, &p, RenderOptions::default(), FlowConfig::default());
    assert_clean(&flow, &c);
    assert_eq!(flow.info.client, c.client);
    assert_eq!(flow.reason(), Some(CloseReason::Closed));

    c.mss = 536;
    let (flow, _) = run(
        &c,
        &c.packets(),
        RenderOptions::default(),
        FlowConfig::default(),
    );
    assert_clean(&flow, &c);
}

#[test]
fn out_of_order_beyond_limit_gives_gaps_and_bounded_memory() {
    // One direction only, no ACKs from the peer: nothing but the limit can
    // resolve the lost first segment.
    let mut c = Conversation::new(vec![(
        Up,
        (0..200_000u32).map(|i| (i % 251) as u8).collect(),
    )]);
    c.mss = 1000;
    let mut p = c.packets();
    synth::lose_data(&mut p, 0);
    let opts = RenderOptions {
        pure_acks: false,
        ..RenderOptions::default()
    };
    let limit = 16 * 1024;
    let config = FlowConfig {
        max_buffer_per_direction: limit,
        ..FlowConfig::default()
    };
    let (flow, table) = run(&c, &p, opts, config.clone());
    assert_eq!(flow.up.gaps(), vec![(0, 1000)]);
    assert!(flow.up.data()[..] == c.stream(Up)[1000..]);
    let st = flow.stats().unwrap();
    assert_eq!(st.up.limit_hits, 1);
    assert!(st.up.ooo_peak <= limit);
    assert!(table.stats().buffered_peak <= limit);

    // Shuffled: every delivered byte is at its right offset, data + gaps
    // cover the stream, memory stays under the limit.
    let mut p = c.packets();
    synth::shuffle_data(&mut p, 5);
    let (flow, _) = run(&c, &p, opts, config);
    let clean = c.stream(Up);
    let mut at = 0usize;
    for piece in &flow.up.pieces {
        match piece {
            Piece::Data(d) => {
                assert!(clean[at..at + d.len()] == d[..], "data at {at}");
                at += d.len();
            }
            Piece::Gap(n) => at += *n as usize,
        }
    }
    assert_eq!(at, clean.len());
    let st = flow.stats().unwrap();
    assert!(st.up.gaps > 0 && st.up.limit_hits > 0);
    assert!(st.up.ooo_peak <= limit);
}

/// Sessions `0..n`, `concurrent` at a time, interleaved round-robin.
fn interleaved(n: usize, lose_first: bool, opts: RenderOptions) -> Vec<TimedFrame> {
    let sessions: Vec<Vec<TimedFrame>> = (0..n)
        .map(|i| {
            let mut c = Conversation::new(synth::smtp_script(5000));
            c.client = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 2000 + i as u16));
            c.mss = 500;
            let mut p = c.packets();
            if lose_first {
                synth::lose_data(&mut p, 9); // first packet of the message body
            }
            synth::render(&c, &p, opts)
        })
        .collect();
    let longest = sessions.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for k in 0..longest {
        for s in &sessions {
            if let Some(f) = s.get(k) {
                out.push(f.clone());
            }
        }
    }
    out
}

#[test]
fn flow_limit_evicts_least_recently_used() {
    let sessions: Vec<Vec<TimedFrame>> = (0..20)
        .map(|i| {
            let mut c = Conversation::new(synth::smtp_script(100));
            c.client = SocketAddr::from(([10, 0, 0, i as u8], 2000 + i as u16));
            synth::render(&c, &c.packets(), RenderOptions::default())
        })
        .collect();
    let config = FlowConfig {
        max_flows: 10,
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config, Recorder::default());
    let send = |t: &mut FlowTable<Recorder>, f: &TimedFrame| {
        t.segment(&parse_frame(linktype::ETHERNET, f.0, &f.1).unwrap())
    };
    // Handshakes (SYN, SYN-ACK, ACK) of sessions 0..10, then the greeting
    // of session 0 makes it the most recently used.
    for s in &sessions[..10] {
        for f in &s[..3] {
            send(&mut table, f);
        }
    }
    send(&mut table, &sessions[0][3]);
    for s in &sessions[10..19] {
        for f in &s[..3] {
            send(&mut table, f);
            assert!(table.len() <= 10);
        }
    }
    assert_eq!(table.stats().evicted, 9);
    table.close_all();
    let flows = &table.handler().flows;
    assert_eq!(flows.len(), 19);
    for (i, f) in flows.iter().enumerate() {
        let expected = if (1..10).contains(&i) {
            CloseReason::Evicted
        } else {
            CloseReason::Shutdown
        };
        assert_eq!(f.reason(), Some(expected), "flow {i}");
    }
    assert_eq!(flows[0].down.data(), b"220 mx.example.net ESMTP\r\n");

    // Churn: 50 interleaved sessions through 10 slots. Evicted flows come
    // back mid-session; every flow is closed exactly once.
    let frames = interleaved(50, false, RenderOptions::default());
    let mut table = FlowTable::new(
        FlowConfig {
            max_flows: 10,
            ..FlowConfig::default()
        },
        Recorder::default(),
    );
    for f in &frames {
        send(&mut table, f);
        assert!(table.len() <= 10);
    }
    table.close_all();
    let st = table.stats().clone();
    assert!(st.evicted >= 40);
    assert_eq!(st.closed(), st.flows_created);
    assert!(table.handler().flows.iter().all(|f| f.closed.is_some()));
    assert!(table
        .handler()
        .flows
        .iter()
        .any(|f| f.stats().unwrap().midstream));
}

#[test]
fn global_buffer_cap() {
    let opts = RenderOptions {
        pure_acks: false,
        ..RenderOptions::default()
    };
    let frames = interleaved(30, true, opts);
    let cap = 20_000;
    let config = FlowConfig {
        max_buffer_total: cap,
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config, Recorder::default());
    feed(&mut table, &frames);
    table.close_all();
    let st = table.stats();
    assert!(st.memcap_hits > 0);
    assert!(st.buffered_peak <= cap, "{} > {cap}", st.buffered_peak);
    assert_eq!(st.buffered, 0);
    for f in &table.handler().flows {
        let total = f.up.len();
        assert_eq!(
            f.up.gaps().iter().map(|g| g.1).sum::<u64>(),
            500,
            "one lost packet per flow"
        );
        assert!(total > 5000);
    }
}

#[test]
fn idle_timeout_and_reset() {
    let c = conv(1000);
    let mut p = c.packets();
    p.retain(|x| x.flags & smtp_user::capture::TcpFlags::FIN == 0);
    let frames = synth::render(&c, &p, RenderOptions::default());
    let last = frames.last().unwrap().0;
    let mut table = FlowTable::new(FlowConfig::default(), Recorder::default());
    feed(&mut table, &frames);
    table.expire(last + 299_000_000);
    assert_eq!(table.len(), 1);
    table.expire(last + 300_000_000);
    assert_eq!(table.len(), 0);
    assert_eq!(
        table.handler().flows[0].reason(),
        Some(CloseReason::Timeout)
    );
    assert_eq!(table.stats().timed_out, 1);

    // RST from the server after the data.
    let mut frames = synth::render(&c, &p, RenderOptions::default());
    let seq = c
        .server_isn
        .wrapping_add(1)
        .wrapping_add(c.stream(Down).len() as u32);
    frames.push((
        last + 1,
        synth::tcp_frame(
            c.server,
            c.client,
            seq,
            0,
            smtp_user::capture::TcpFlags::RST,
            &[],
        ),
    ));
    let mut table = FlowTable::new(FlowConfig::default(), Recorder::default());
    feed(&mut table, &frames);
    assert_eq!(table.len(), 0);
    let f = &table.handler().flows[0];
    assert_eq!(f.reason(), Some(CloseReason::Reset));
    assert_clean(f, &c);
}

#[test]
fn bypass_stops_delivery_but_keeps_counting() {
    let c = conv(1000);
    let mut table = FlowTable::new(
        FlowConfig::default(),
        Recorder {
            stop_after: Some((Up, 100)),
            ..Recorder::default()
        },
    );
    feed(
        &mut table,
        &synth::render(&c, &c.packets(), RenderOptions::default()),
    );
    table.close_all();
    let f = &table.handler().flows[0];
    assert!(f.up.len() < 2000, "delivery stopped soon after 100 bytes");
    assert!(f.down.data() == c.stream(Down));
    assert_eq!(f.stats().unwrap().up.bytes, c.stream(Up).len() as u64);
}

#[test]
fn flow_ids_are_stable_and_distinct() {
    let frames = interleaved(5, false, RenderOptions::default());
    let ids = |frames: &[TimedFrame]| {
        let mut t = FlowTable::new(FlowConfig::default(), Recorder::default());
        feed(&mut t, frames);
        t.close_all();
        t.handler()
            .flows
            .iter()
            .map(|f| f.info.flow_id)
            .collect::<Vec<_>>()
    };
    let a = ids(&frames);
    assert_eq!(a, ids(&frames));
    let mut d = a.clone();
    d.sort();
    d.dedup();
    assert_eq!(d.len(), 5);
}

fn small_script() -> impl Strategy<Value = Vec<(Direction, Vec<u8>)>> {
    prop::collection::vec(
        (prop::bool::ANY, prop::collection::vec(any::<u8>(), 1..300))
            .prop_map(|(up, b)| (if up { Up } else { Down }, b)),
        1..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Any permutation and duplication of the data segments yields the
    /// in-order streams when nothing is missing.
    #[test]
    fn permutation_and_duplication_preserve_streams(
        steps in small_script(),
        mss in 1usize..64,
        isn in any::<u32>(),
        seed in any::<u64>(),
        dups in prop::collection::vec(0usize..1000, 0..6),
        acks in any::<bool>(),
    ) {
        let mut c = Conversation::new(steps);
        c.mss = mss;
        c.client_isn = isn;
        c.server_isn = isn.wrapping_mul(3);
        let mut p = c.packets();
        synth::shuffle_data(&mut p, seed);
        let n = synth::data_indices(&p).len();
        for d in dups {
            synth::duplicate_data(&mut p, d % n);
        }
        let opts = RenderOptions { pure_acks: acks, ..RenderOptions::default() };
        let (flow, _) = run(&c, &p, opts, FlowConfig::default());
        for d in [Up, Down] {
            prop_assert_eq!(flow.stream(d).gaps(), vec![]);
            prop_assert_eq!(flow.stream(d).data(), c.stream(d));
        }
        prop_assert_eq!(flow.reason(), Some(CloseReason::Closed));
    }
}

#[test]
fn port_reuse_starts_a_new_flow() {
    let c1 = conv(1000);
    let mut p1 = c1.packets();
    p1.retain(|x| x.flags & smtp_user::capture::TcpFlags::FIN == 0); // never closed
    let mut frames = synth::render(&c1, &p1, RenderOptions::default());
    let mut c2 = c1.clone();
    c2.client_isn = 77_777;
    c2.server_isn = 99_999;
    c2.steps = synth::smtp_script(300);
    frames.extend(synth::render(
        &c2,
        &c2.packets(),
        RenderOptions {
            start_ts: frames.last().unwrap().0 + 10,
            ..RenderOptions::default()
        },
    ));
    let mut table = FlowTable::new(FlowConfig::default(), Recorder::default());
    feed(&mut table, &frames);
    table.close_all();
    let flows = &table.handler().flows;
    assert_eq!(flows.len(), 2);
    assert_eq!(flows[0].reason(), Some(CloseReason::Reused));
    assert_eq!(flows[1].reason(), Some(CloseReason::Closed));
    assert_clean(&flows[0], &c1);
    assert_clean(&flows[1], &c2);
    assert_ne!(flows[0].info.flow_id, flows[1].info.flow_id);
    assert_eq!(table.stats().reused, 1);
}

#[test]
fn forged_rst_and_far_segments_are_ignored() {
    use smtp_user::capture::TcpFlags;
    let c = conv(1000);
    let mut frames = synth::render(&c, &c.packets(), RenderOptions::default());
    let mid = frames.len() / 2;
    let ts = frames[mid].0;
    let far = c.client_isn.wrapping_add(1).wrapping_add(1_500_000_000);
    // A RST 1.5 GB away from the client's data, and data as far ahead.
    frames.insert(
        mid,
        (
            ts,
            synth::tcp_frame(c.client, c.server, far, 0, TcpFlags::RST, &[]),
        ),
    );
    frames.insert(
        mid,
        (
            ts,
            synth::tcp_frame(c.client, c.server, far, 0, TcpFlags::ACK, b"evil"),
        ),
    );
    let (flow, _) = {
        let mut table = FlowTable::new(FlowConfig::default(), Recorder::default());
        feed(&mut table, &frames);
        table.close_all();
        (table.handler().flows[0].clone(), ())
    };
    assert_clean(&flow, &c);
    assert_eq!(flow.reason(), Some(CloseReason::Closed));
    let st = flow.stats().unwrap();
    assert_eq!((st.up.bad_rst, st.up.out_of_window), (1, 1));
}

/// A hostile segment: any flags, sequence numbers near the session's,
/// payload, uncaptured tail.
fn arb_segment() -> impl Strategy<Value = (bool, u8, i32, i32, Vec<u8>, u32)> {
    (
        any::<bool>(),
        any::<u8>(),
        -3000i32..3000,
        -3000i32..3000,
        prop::collection::vec(any::<u8>(), 0..400),
        prop::sample::select(vec![0u32, 0, 0, 1, 100, 70_000]),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    /// Lost and reordered packets: whatever is delivered is the right
    /// bytes at the right offsets, and data plus gaps cover the stream.
    #[test]
    fn loss_and_reordering_deliver_a_faithful_view(
        steps in small_script(),
        mss in 1usize..100,
        seed in any::<u64>(),
        lost in prop::collection::vec(0usize..1000, 0..4),
        acks in any::<bool>(),
    ) {
        let mut c = Conversation::new(steps);
        c.mss = mss;
        let mut p = c.packets();
        synth::shuffle_data(&mut p, seed);
        let n = synth::data_indices(&p).len();
        for k in lost {
            synth::lose_data(&mut p, k % n);
        }
        let opts = RenderOptions { pure_acks: acks, ..RenderOptions::default() };
        let (flow, _) = run(&c, &p, opts, FlowConfig::default());
        for d in [Up, Down] {
            let clean = c.stream(d);
            let mut at = 0usize;
            for piece in &flow.stream(d).pieces {
                match piece {
                    Piece::Data(b) => {
                        prop_assert!(clean.get(at..at + b.len()) == Some(&b[..]), "{:?} data at {}", d, at);
                        at += b.len();
                    }
                    Piece::Gap(g) => at += *g as usize,
                }
            }
            prop_assert_eq!(at, clean.len());
        }
    }

    /// Random segments on a few 5-tuples: no panic, memory under the caps,
    /// everything released at the end.
    #[test]
    fn hostile_segments_keep_memory_bounded(segs in prop::collection::vec(arb_segment(), 1..200)) {
        use smtp_user::capture::TcpFlags;
        let config = FlowConfig {
            max_flows: 3,
            max_buffer_per_direction: 2000,
            max_buffer_total: 5000,
            ..FlowConfig::default()
        };
        let mut table = FlowTable::new(config, Recorder::default());
        let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:25".parse().unwrap();
        let others: [SocketAddr; 3] = ["10.0.0.3:1001".parse().unwrap(), "10.0.0.4:25".parse().unwrap(), "10.0.0.5:26".parse().unwrap()];
        for (i, (up, flags, dseq, dack, payload, uncaptured)) in segs.iter().enumerate() {
            let other = others[i % 3];
            let (src, dst) = if *up { (a, if i % 4 == 0 { other } else { b }) } else { (b, a) };
            let seg = Segment {
                ts_micros: i as u64,
                src,
                dst,
                seq: 1_000u32.wrapping_add(*dseq as u32),
                ack: 5_000u32.wrapping_add(*dack as u32),
                flags: TcpFlags(*flags),
                payload,
                uncaptured: *uncaptured,
                held: false,
                urgent: 0,
                checksum: Default::default(),
            };
            table.segment(&seg);
            prop_assert!(table.stats().buffered <= 5000);
            prop_assert!(table.len() <= 3);
        }
        table.expire(u64::MAX);
        let st = table.stats().clone();
        prop_assert_eq!(st.buffered, 0);
        prop_assert_eq!(table.len(), 0);
        prop_assert_eq!(st.closed(), st.flows_created);
        for f in &table.handler().flows {
            prop_assert!(f.closed.is_some());
        }
    }
}

/// Logs what a flow's handler is given, in order, across both directions.
#[derive(Default)]
struct OrderLog(Vec<(Direction, String)>);

impl smtp_user::flow::FlowHandler for OrderLog {
    type Session = ();
    fn open(&mut self, _: &smtp_user::flow::FlowInfo) {}
    fn data(&mut self, _: &mut (), _: &smtp_user::flow::FlowInfo, d: Direction, _: u64, b: &[u8]) {
        self.0.push((d, String::from_utf8_lossy(b).into_owned()));
    }
    fn gap(&mut self, _: &mut (), _: &smtp_user::flow::FlowInfo, d: Direction, _: u64, n: u64) {
        self.0.push((d, format!("<gap {n}>")));
    }
    fn close(
        &mut self,
        _: (),
        _: &smtp_user::flow::FlowInfo,
        _: &smtp_user::flow::FlowStats,
        _: CloseReason,
    ) {
    }
}

#[test]
fn a_hole_the_ack_proves_lost_comes_before_the_acking_segments_data() {
    use smtp_user::capture::TcpFlags;
    let c: SocketAddr = "198.18.0.1:40000".parse().unwrap();
    let s: SocketAddr = "198.18.0.2:25".parse().unwrap();
    let seg = |src, dst, seq, ack, flags, payload: &'static [u8]| Segment {
        ts_micros: 1,
        src,
        dst,
        seq,
        ack,
        flags: TcpFlags(flags),
        payload,
        uncaptured: 0,
        held: false,
        urgent: 0,
        checksum: Default::default(),
    };
    let (syn, ack, psh) = (TcpFlags::SYN, TcpFlags::ACK, TcpFlags::PSH | TcpFlags::ACK);
    let mut t = FlowTable::new(FlowConfig::default(), OrderLog::default());
    t.segment(&seg(c, s, 100, 0, syn, b""));
    t.segment(&seg(s, c, 500, 101, syn | ack, b""));
    t.segment(&seg(c, s, 101, 501, ack, b""));
    // The greeting's first segment ("220 mx") is not captured, its second is.
    t.segment(&seg(s, c, 507, 101, psh, b" ESMTP\r\n"));
    // The client acknowledges both and sends EHLO in the same segment.
    t.segment(&seg(c, s, 101, 515, psh, b"EHLO c\r\n"));
    // Both wait (the hole for a late copy, the EHLO for the greeting it
    // acknowledges) until the reordering wait is over.
    assert!(t.handler().0.is_empty());
    t.expire(1 + FlowConfig::default().reorder_wait_micros);
    let log = &t.handler().0;
    assert_eq!(
        log,
        &vec![
            (Down, "<gap 6>".to_string()),
            (Down, " ESMTP\r\n".to_string()),
            (Up, "EHLO c\r\n".to_string()),
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// Retransmissions cut differently from the originals (larger,
    /// smaller, straddling), in any order, before or after the originals:
    /// with consistent bytes, the streams come out whole, without gap or
    /// conflict.
    #[test]
    fn resegmented_retransmissions_never_lose_data(
        steps in small_script(),
        mss in 1usize..200,
        seed in any::<u64>(),
        retrans in prop::collection::vec((any::<bool>(), 0usize..2000, 1usize..3000, 0usize..1000), 0..8),
        acks in any::<bool>(),
    ) {
        let mut c = Conversation::new(steps);
        c.mss = mss;
        let mut p = c.packets();
        synth::shuffle_data(&mut p, seed);
        for (up, at, len, pos) in retrans {
            let d = if up { Up } else { Down };
            let total = c.stream(d).len();
            if total == 0 {
                continue;
            }
            let r = c.retransmission(d, at % total, len, false);
            // Anywhere after the handshake and before the FINs.
            let pos = 2 + pos % (p.len() - 3);
            p.insert(pos, r);
        }
        let opts = RenderOptions { pure_acks: acks, ..RenderOptions::default() };
        let (flow, _) = run(&c, &p, opts, FlowConfig::default());
        for d in [Up, Down] {
            prop_assert_eq!(flow.stream(d).gaps(), vec![]);
            prop_assert!(flow.stream(d).data() == c.stream(d), "{:?} differs", d);
        }
        let st = flow.stats().unwrap();
        prop_assert_eq!(st.up.overlap_conflicts + st.down.overlap_conflicts, 0);
    }
}

/// The reported bug: one large segment (segmentation offload at the
/// capture point) buffered out of order, then the same bytes again cut at
/// the MSS and overlapping it, then the rest of the message: every byte of
/// the ~15 KB message is delivered, in order.
#[test]
fn a_large_segment_overlapped_by_differently_cut_ones_loses_nothing() {
    let mut c = Conversation::new(vec![
        (Down, b"220 mx\r\n".to_vec()),
        (Up, vec![b'a'; 15_000]),
        (Down, b"250 ok\r\n".to_vec()),
    ]);
    c.mss = 1448;
    let clean = c.packets();
    let big = c.retransmission(Up, 1448, 12_000, false);
    let mut p: Vec<Packet> = Vec::new();
    for (i, x) in clean.iter().enumerate() {
        // The large segment before the first MSS-sized one it overlaps.
        if i == 3 {
            p.push(big.clone());
        }
        p.push(x.clone());
    }
    let (flow, _) = run(&c, &p, RenderOptions::default(), FlowConfig::default());
    assert_clean(&flow, &c);
    let st = flow.stats().unwrap();
    assert_eq!(st.up.overlap_conflicts, 0);
    assert!(st.up.overlaps > 0);
}

/// The 5-tuple is reused by a new connection whose SYN the capture lost
/// (overload), while the old flow is still tracked: its data lands far
/// from the old stream. It starts a new flow instead of a gap of the
/// distance (bytes never sent).
#[test]
fn reuse_without_syn_is_a_new_flow_not_a_giant_gap() {
    use smtp_user::capture::TcpFlags;
    let c: SocketAddr = "198.18.0.1:40000".parse().unwrap();
    let s: SocketAddr = "198.18.0.2:25".parse().unwrap();
    let (syn, ack, psh) = (TcpFlags::SYN, TcpFlags::ACK, TcpFlags::PSH | TcpFlags::ACK);
    let mut t = FlowTable::new(FlowConfig::default(), Recorder::default());
    t.segment(&seg(1, c, s, 100, 0, syn, b""));
    t.segment(&seg(2, s, c, 500, 101, syn | ack, b""));
    t.segment(&seg(3, c, s, 101, 501, psh, b"EHLO a\r\n"));
    // Two seconds later, a new connection (SYN lost), 1 GB further on.
    let far = 101u32.wrapping_add(1 << 30);
    t.segment(&seg(2_000_003, c, s, far, 9_000, psh, b"EHLO b\r\n"));
    t.close_all();
    let flows = &t.handler().flows;
    assert_eq!(flows.len(), 2);
    assert_eq!(flows[0].up.data(), b"EHLO a\r\n");
    assert_eq!(flows[0].reason(), Some(CloseReason::Reused));
    assert_eq!(flows[1].up.data(), b"EHLO b\r\n");
    for f in flows {
        let st = f.stats().unwrap();
        assert_eq!(st.up.gap_bytes + st.down.gap_bytes, 0);
    }
}

/// Overload: a session ended (the server's FIN seen, the client's lost) and
/// the 5-tuple is reused within a second, SYNs lost; the new initial
/// sequence numbers are a few MB further on (Linux's ISN clock), closer
/// than `is_far`. Data beyond the sender's FIN, or an ACK beyond the peer's
/// FIN+1, is a new connection, not a gap of the distance.
#[test]
fn reuse_after_a_fin_without_syn_is_a_new_flow_not_a_gap() {
    use smtp_user::capture::TcpFlags;
    let c: SocketAddr = "198.18.0.1:40001".parse().unwrap();
    let s: SocketAddr = "198.18.0.2:25".parse().unwrap();
    let (syn, ack, psh, fin) = (
        TcpFlags::SYN,
        TcpFlags::ACK,
        TcpFlags::PSH | TcpFlags::ACK,
        TcpFlags::FIN | TcpFlags::ACK,
    );
    let jump = 3_000_000u32;
    for (server_first, label) in [(true, "client data"), (false, "server data")] {
        let mut t = FlowTable::new(FlowConfig::default(), Recorder::default());
        t.segment(&seg(1, c, s, 100, 0, syn, b""));
        t.segment(&seg(2, s, c, 500, 101, syn | ack, b""));
        t.segment(&seg(3, s, c, 501, 101, psh, b"220 hi\r\n"));
        t.segment(&seg(4, c, s, 101, 509, psh, b"QUIT\r\n"));
        t.segment(&seg(5, s, c, 509, 107, psh, b"221 bye\r\n"));
        t.segment(&seg(6, s, c, 518, 107, fin, b""));
        // The client's FIN and both SYNs of the next connection are lost.
        if server_first {
            // Client data first: its ACK lies beyond the server's FIN+1.
            t.segment(&seg(
                200_000,
                c,
                s,
                101 + jump,
                501 + jump,
                psh,
                b"EHLO b\r\n",
            ));
        } else {
            t.segment(&seg(
                200_000,
                s,
                c,
                501 + jump,
                101 + jump,
                psh,
                b"220 again\r\n",
            ));
        }
        t.close_all();
        let flows = &t.handler().flows;
        assert_eq!(flows.len(), 2, "{label}");
        assert_eq!(flows[0].reason(), Some(CloseReason::Reused), "{label}");
        for f in flows {
            let st = f.stats().unwrap();
            assert_eq!(st.up.gap_bytes + st.down.gap_bytes, 0, "{label}");
        }
    }
}

/// Overload at its worst: the 5-tuple is reused within a second and the
/// capture lost both SYNs and both FINs, so the old flow is neither idle
/// nor closing. The next connection's sequence numbers land anywhere (here
/// 40 MB and 300 MB on). Its client data comes first and is buffered far
/// ahead; the server's reply, whose sequence number and ACK both land far
/// from the old connection's, shows another connection: the old flow ends
/// without a gap of the distance, and the bytes seen early are counted.
/// A client segment alone (forgeable) does not end the flow.
#[test]
fn reuse_with_syns_and_fins_lost_is_a_new_flow_not_a_gap() {
    use smtp_user::capture::TcpFlags;
    let c: SocketAddr = "198.18.0.1:40002".parse().unwrap();
    let s: SocketAddr = "198.18.0.2:25".parse().unwrap();
    let (syn, ack, psh) = (TcpFlags::SYN, TcpFlags::ACK, TcpFlags::PSH | TcpFlags::ACK);
    for (cj, sj) in [(40_000_000u32, 300_000_000u32), (300_000_000, 40_000_000)] {
        let mut t = FlowTable::new(FlowConfig::default(), Recorder::default());
        t.segment(&seg(1, c, s, 100, 0, syn, b""));
        t.segment(&seg(2, s, c, 500, 101, syn | ack, b""));
        t.segment(&seg(3, s, c, 501, 101, psh, b"220 hi\r\n"));
        t.segment(&seg(4, c, s, 101, 509, psh, b"QUIT\r\n"));
        t.segment(&seg(5, s, c, 509, 107, psh, b"221 bye\r\n"));
        // Both FINs and both SYNs lost; 0.2 s later, the next connection.
        let (c2, s2) = (101u32.wrapping_add(cj), 501u32.wrapping_add(sj));
        t.segment(&seg(200_000, c, s, c2, s2 + 9, psh, b"EHLO b\r\n"));
        assert_eq!(
            t.handler()
                .flows
                .iter()
                .map(|f| f.reason())
                .collect::<Vec<_>>(),
            vec![None],
            "a client segment alone ends nothing"
        );
        t.segment(&seg(200_100, s, c, s2 + 9, c2 + 8, psh, b"250 b\r\n"));
        t.close_all();
        let flows = &t.handler().flows;
        assert_eq!(flows.len(), 2, "jumps {cj}/{sj}");
        assert_eq!(flows[0].reason(), Some(CloseReason::Reused));
        assert_eq!(flows[0].up.data(), b"QUIT\r\n");
        let old = flows[0].stats().unwrap();
        assert_eq!(old.up.next_connection_bytes, 8);
        for f in flows {
            let st = f.stats().unwrap();
            assert_eq!(st.up.gap_bytes + st.down.gap_bytes, 0, "jumps {cj}/{sj}");
        }
    }
}

/// The capture lost a client segment the server received and acknowledged
/// before the capture showed anything after it; the next client segment
/// comes later and no further ACK does (the server waits on a segment the
/// kernel gate holds). The hole still becomes a gap once the wait is over,
/// so the gate cannot wedge.
#[test]
fn an_ack_seen_before_the_data_beyond_the_hole_still_ends_the_wait() {
    use smtp_user::capture::TcpFlags;
    let c: SocketAddr = "198.18.0.1:40000".parse().unwrap();
    let s: SocketAddr = "198.18.0.2:25".parse().unwrap();
    let (syn, ack, psh) = (TcpFlags::SYN, TcpFlags::ACK, TcpFlags::PSH | TcpFlags::ACK);
    let mut t = FlowTable::new(FlowConfig::default(), Recorder::default());
    t.segment(&seg(1, c, s, 100, 0, syn, b""));
    t.segment(&seg(2, s, c, 500, 101, syn | ack, b""));
    t.segment(&seg(3, c, s, 101, 501, psh, b"line 1\r\n"));
    // "line 2\r\n" (109..117) is lost by the capture; the server's ACK of it:
    t.segment(&seg(4, s, c, 501, 117, ack, b""));
    // Then the last segment, and nothing more.
    t.segment(&seg(5, c, s, 117, 501, psh, b".\r\n"));
    t.expire(5 + FlowConfig::default().reorder_wait_micros);
    let f = &t.handler().flows[0];
    assert_eq!(f.up.gaps(), vec![(8, 8)]);
    assert_eq!(f.up.data(), b"line 1\r\n.\r\n");
}

/// What the server's stack throws away, the monitor throws away, from the
/// attacker's side: a fake `MAIL FROM` in a segment with a bad checksum,
/// in a data segment without ACK, in a SYN the server did not
/// acknowledge; an urgent byte inside the address. The stream holds what
/// the server reads, and each case is counted.
#[test]
fn segments_the_receiver_drops_are_dropped() {
    use smtp_user::capture::{Checksum, Segment, TcpFlags};
    let c: SocketAddr = "198.18.0.1:40000".parse().unwrap();
    let s: SocketAddr = "198.18.0.2:25".parse().unwrap();
    let seg = |src, dst, seq: u32, ack, flags, payload: &'static [u8]| Segment {
        ts_micros: 1,
        src,
        dst,
        seq,
        ack,
        flags: TcpFlags(flags),
        payload,
        uncaptured: 0,
        held: false,
        urgent: 0,
        checksum: Checksum::Unknown,
    };
    let (syn, ack, psh) = (TcpFlags::SYN, TcpFlags::ACK, TcpFlags::PSH | TcpFlags::ACK);
    let mut t = FlowTable::new(FlowConfig::default(), Recorder::default());
    // SYN with data; the SYN-ACK acknowledges only the SYN.
    t.segment(&seg(c, s, 100, 0, syn, b"MAIL FROM:<fake@a>\r\n"));
    t.segment(&seg(s, c, 500, 101, syn | ack, b""));
    // Bad checksum, then no ACK flag: both carry the fake line.
    t.segment(&Segment {
        checksum: Checksum::Bad,
        ..seg(c, s, 101, 501, psh, b"MAIL FROM:<fake@b>\r\n")
    });
    t.segment(&seg(
        c,
        s,
        101,
        501,
        TcpFlags::PSH,
        b"MAIL FROM:<fake@c>\r\n",
    ));
    // The real line, with an urgent byte ('X', the byte before the
    // pointer) inside the address: Linux removes it.
    t.segment(&Segment {
        flags: TcpFlags(psh | TcpFlags::URG),
        urgent: 14,
        ..seg(c, s, 101, 501, 0, b"MAIL FROM:<baXd@d>\r\n")
    });
    t.close_all();
    let f = &t.handler().flows[0];
    assert_eq!(f.up.data(), b"MAIL FROM:<bad@d>\r\n");
    let st = f.stats().unwrap().up;
    assert_eq!(
        (
            st.syn_data_ignored,
            st.bad_checksum,
            st.no_ack,
            st.urgent_removed
        ),
        (1, 1, 1, 1)
    );
}

/// The global memory cap sheds the largest flow first, and says so.
#[test]
fn memcap_sheds_the_largest_flow_first() {
    use smtp_user::capture::TcpFlags;
    let s: SocketAddr = "198.18.0.2:25".parse().unwrap();
    let seg = |src, seq: u32, payload: &'static [u8]| Segment {
        ts_micros: 1,
        src,
        dst: s,
        seq,
        ack: 1,
        flags: TcpFlags(TcpFlags::ACK),
        payload,
        uncaptured: 0,
        held: false,
        urgent: 0,
        checksum: Default::default(),
    };
    static BIG: [u8; 3000] = [b'b'; 3000];
    let config = FlowConfig {
        memcap: 6000,
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(config, Recorder::default());
    let (a, b): (SocketAddr, SocketAddr) = (
        "198.18.0.1:40000".parse().unwrap(),
        "198.18.0.3:40000".parse().unwrap(),
    );
    // Each flow: first byte, then data beyond a hole (buffered).
    t.segment(&seg(a, 1000, b"x"));
    t.segment(&seg(a, 1010, &BIG));
    t.segment(&seg(b, 1000, b"y"));
    t.segment(&seg(b, 1010, b"small"));
    assert_eq!(t.stats().memcap_exceeded, 0);
    t.segment(&seg(a, 5000, &BIG)); // over the cap
    let st = t.stats().clone();
    assert_eq!((st.memcap_exceeded, st.memcap_shed), (1, 1));
    assert!(t.memory() <= 6000);
    let flows = &t.handler().flows;
    assert_eq!(flows[0].reason(), Some(CloseReason::Memcap));
    assert_eq!(flows[1].reason(), None, "the small flow stays");
}
