//! The packet path cannot hide a session (issue 10), on a real kernel, from
//! the attacker's side: hand-crafted frames ([`smtp_e2e::attacker`]) against
//! smtp-sink, with `smtp-user run --rules` (the live policy: MAIL FROM
//! domain forbidden.example and the body keyword FORBIDDEN-KEYWORD are
//! dropped) on the server's veth.
//!
//! Enforce mode: each evasion (the command or body line sent as IPv4 or
//! IPv6 fragments, behind an IPv6 chain longer than the parser's limit,
//! behind stacked VLAN tags, with an urgent byte inside the address) never
//! gets the server's acceptance, and `ctl stats` counts it by reason.
//! Monitor mode: the same packets pass (the server accepts) and are counted.
//!
//! The monitor-side cases rely on the userspace receive policy of `flow/`
//! (segments with bad checksums, without ACK or data in a SYN ignored;
//! in-order data overriding out-of-order pieces).

use std::time::Duration;

use serde_json::Value;
use smtp_e2e::{
    attacker::{Craft, RawTcp, ACK, PSH, SYN},
    live::{of_type, Live, POLICY_RULES},
    require_root,
    sink::MailSink,
};

const WAIT: Duration = Duration::from_secs(5);
/// How long an attack gets to be answered before it counts as refused.
const REFUSED: Duration = Duration::from_millis(1500);
const BLOCKED_FROM: &[u8] = b"MAIL FROM:<eve@forbidden.example>\r\n";

/// The kernel counters from `ctl stats --json`.
fn kernel_stats(live: &Live) -> Value {
    let (ok, out, err) = live.ctl(&["stats", "--json"]);
    assert!(ok, "ctl stats: {err}");
    let v: Value = serde_json::from_str(out.trim()).expect("stats JSON");
    v["kernel"].clone()
}

fn counter(stats: &Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {stats}"))
}

/// Connects, reads the greeting, says EHLO: a session ready for MAIL.
fn session(live: &Live, v6: bool, sport: u16) -> RawTcp {
    let mut t = RawTcp::new(&live.pair, v6, sport, 25);
    assert!(t.connect(WAIT), "port {sport}: no SYN-ACK");
    let g = t.reply(WAIT).expect("greeting");
    assert!(g.starts_with("220"), "{g}");
    t.send(b"EHLO attacker.test\r\n", &Craft::default());
    let r = t.reply(WAIT).expect("EHLO reply");
    assert!(r.contains("250 "), "{r}");
    t
}

/// Sends `line` crafted as `craft`; true when the server accepted it (a
/// 2xx/3xx reply came).
fn accepted(t: &mut RawTcp, line: &[u8], craft: &Craft) -> bool {
    t.send(line, craft);
    match t.reply(REFUSED) {
        Some(r) => r.starts_with('2') || r.starts_with('3'),
        None => false,
    }
}

/// One evasion: the counter that must count it, and the attack (true when
/// the server accepted what the attacker meant to hide).
struct Attack {
    name: &'static str,
    counter: &'static str,
    v6: bool,
    run: fn(&mut RawTcp) -> bool,
}

fn attacks() -> Vec<Attack> {
    vec![
        Attack {
            name: "MAIL FROM a blocked domain as IPv4 fragments",
            counter: "fragments",
            v6: false,
            run: |t| {
                let craft = Craft {
                    fragment_at: vec![24],
                    ..Craft::default()
                };
                accepted(t, BLOCKED_FROM, &craft)
            },
        },
        Attack {
            name: "MAIL FROM a blocked domain as IPv6 fragments",
            counter: "fragments",
            v6: true,
            run: |t| {
                let craft = Craft {
                    fragment_at: vec![24],
                    ..Craft::default()
                };
                accepted(t, BLOCKED_FROM, &craft)
            },
        },
        Attack {
            name: "a forbidden body keyword as IPv4 fragments",
            counter: "fragments",
            v6: false,
            run: |t| {
                for cmd in [
                    &b"MAIL FROM:<alice@example.org>\r\n"[..],
                    b"RCPT TO:<bob@example.net>\r\n",
                    b"DATA\r\n",
                ] {
                    assert!(accepted(t, cmd, &Craft::default()), "{cmd:?} refused");
                }
                let craft = Craft {
                    fragment_at: vec![32],
                    ..Craft::default()
                };
                t.send(
                    b"Subject: report\r\n\r\nthe FORBIDDEN-KEYWORD is here\r\n",
                    &craft,
                );
                accepted(t, b".\r\n", &Craft::default())
            },
        },
        Attack {
            name: "IPv6 destination-options chain longer than the limit",
            counter: "ext_header_limit",
            v6: true,
            run: |t| {
                let craft = Craft {
                    dstopts: smtp_common::MAX_IPV6_EXT_HEADERS + 1,
                    ..Craft::default()
                };
                accepted(t, BLOCKED_FROM, &craft)
            },
        },
        Attack {
            name: "stacked VLAN tags (VID 0) beyond the limit",
            counter: "vlan_limit",
            v6: false,
            run: |t| {
                // TC ingress sees one tag fewer (moved out by the kernel).
                let craft = Craft {
                    vlan0_tags: smtp_common::MAX_VLAN_TAGS + 2,
                    ..Craft::default()
                };
                accepted(t, BLOCKED_FROM, &craft)
            },
        },
        Attack {
            name: "an urgent byte inside the address",
            counter: "urgent",
            v6: false,
            run: |t| {
                // "forbXidden": Linux takes the urgent byte X (the one
                // before the urgent pointer) out of the stream.
                let line = b"MAIL FROM:<eve@forbXidden.example>\r\n";
                let x = line.iter().position(|&c| c == b'X').expect("X");
                let craft = Craft {
                    urg_ptr: (x + 1) as u16,
                    ..Craft::default()
                };
                accepted(t, line, &craft)
            },
        },
    ]
}

/// Starts smtp-sink on the IPv6 server address too (the live harness's
/// sink listens on IPv4).
fn v6_sink(live: &Live) -> MailSink {
    MailSink::start(&live.pair.server_ns, "[2001:2::2]:25")
}

fn run_attacks(enforce: bool) {
    let mode = if enforce { "enforce" } else { "monitor" };
    let live = Live::start(
        if enforce { "evae" } else { "evam" },
        Some(POLICY_RULES),
        &["--mode", mode],
    );
    let _sink6 = v6_sink(&live);
    for (i, a) in attacks().into_iter().enumerate() {
        let before = kernel_stats(&live);
        let mut t = session(&live, a.v6, 42000 + i as u16);
        let got = (a.run)(&mut t);
        let after = kernel_stats(&live);
        let counted = counter(&after, a.counter) - counter(&before, a.counter);
        let dropped = counter(&after, "dropped_unparsed") - counter(&before, "dropped_unparsed");
        println!(
            "{mode}: {}: accepted={got} {}+{counted} dropped_unparsed+{dropped}",
            a.name, a.counter
        );
        assert!(counted >= 1, "{mode}: {}: not counted: {after}", a.name);
        if enforce {
            assert!(!got, "{mode}: {}: the server accepted it", a.name);
            assert!(dropped >= 1, "{mode}: {}: no fail-closed drop", a.name);
        } else {
            assert!(got, "{mode}: {}: monitor mode must pass it", a.name);
            assert_eq!(dropped, 0, "{mode}: {}: dropped in monitor mode", a.name);
        }
    }
}

#[test]
fn evasions_are_dropped_and_counted_in_enforce_mode() {
    if !require_root("evasions_are_dropped_and_counted_in_enforce_mode") {
        return;
    }
    run_attacks(true);
}

#[test]
fn evasions_pass_and_are_counted_in_monitor_mode() {
    if !require_root("evasions_pass_and_are_counted_in_monitor_mode") {
        return;
    }
    run_attacks(false);
}

/// `--unparsed pass --gate`: a legitimate message whose body goes as IP
/// fragments (passed unseen) is delivered: the gate holds the end of data
/// (queued, or held by the kernel), the kernel replays the server's ACK with
/// it, userspace declares the hole a gap and releases the message.
#[test]
fn fragmented_body_is_not_held_forever_with_unparsed_pass() {
    if !require_root("fragmented_body_is_not_held_forever_with_unparsed_pass") {
        return;
    }
    let live = Live::start(
        "evgp",
        Some(POLICY_RULES),
        &["--gate", "--unparsed", "pass"],
    );
    let mut t = session(&live, false, 43000);
    for cmd in [
        &b"MAIL FROM:<alice@example.org>\r\n"[..],
        b"RCPT TO:<bob@example.net>\r\n",
        b"DATA\r\n",
    ] {
        assert!(accepted(&mut t, cmd, &Craft::default()), "{cmd:?} refused");
    }
    let craft = Craft {
        fragment_at: vec![32],
        ..Craft::default()
    };
    t.send(
        b"Subject: report\r\n\r\na legitimate body sent in fragments\r\n",
        &craft,
    );
    // Let the server acknowledge the body before the end of data.
    std::thread::sleep(Duration::from_millis(200));
    // The end of data, retransmitted as a TCP would until answered.
    let (seq, ack) = (t.snd_nxt, t.rcv_nxt);
    t.snd_nxt = t.snd_nxt.wrapping_add(3);
    let start = std::time::Instant::now();
    let mut reply = None;
    while start.elapsed() < Duration::from_secs(10) && reply.is_none() {
        t.send_raw(PSH | ACK, seq, ack, b".\r\n", &Craft::default());
        reply = t.reply(Duration::from_millis(400));
    }
    let stats = kernel_stats(&live);
    println!(
        "end of data answered after {:?}: {reply:?}; {stats}",
        start.elapsed()
    );
    let reply = reply.expect("the message was held forever");
    assert!(reply.starts_with("250"), "{reply}");
    assert!(counter(&stats, "fragments") >= 1, "{stats}");
    assert_eq!(counter(&stats, "dropped_unparsed"), 0, "{stats}");
    // The end waited for inspection: in the netfilter queue (the default
    // gate) or held by the kernel (`--gate-fallback`).
    assert!(
        counter(&stats, "gate_queued") + counter(&stats, "gate_held") >= 1,
        "{stats}"
    );
    assert!(counter(&stats, "ack_replays") >= 1, "{stats}");
    let gaps = of_type(&live.events(), "anomaly");
    println!("anomalies: {gaps:?}");
}

/// A fake line the server never takes, then the real (blocked) MAIL FROM
/// at the same sequence numbers, then a RCPT. True when the session went
/// on (the RCPT was answered): the monitor missed the real MAIL FROM.
/// (The MAIL FROM's own reply may pass: the drop verdict lands just after
/// the deciding segment, as in `policy_live`.)
fn fake_then_real(live: &Live, sport: u16, fake: impl Fn(&mut RawTcp, &[u8])) -> bool {
    let mut t = session(live, false, sport);
    let mut line = b"MAIL FROM:<alice@example.org>".to_vec();
    while line.len() + 2 < BLOCKED_FROM.len() {
        line.push(b' ');
    }
    line.extend_from_slice(b"\r\n");
    assert_eq!(line.len(), BLOCKED_FROM.len());
    fake(&mut t, &line);
    t.send(BLOCKED_FROM, &Craft::default());
    let _ = t.reply(REFUSED);
    accepted(&mut t, b"RCPT TO:<bob@example.net>\r\n", &Craft::default())
}

/// The forbidden-sender alert (sid 1001) was raised.
fn blocked_sender_alerted(live: &Live) -> bool {
    let end = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < end {
        if live
            .alerts()
            .iter()
            .any(|a| a["alert"]["signature_id"] == 1001)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn fake_line_with_bad_checksum_in_monitor_mode() {
    if !require_root("fake_line_with_bad_checksum_in_monitor_mode") {
        return;
    }
    // Monitor mode: the kernel records the bad segment (REC_CSUM_BAD);
    // userspace must ignore it and alert on the real MAIL FROM.
    let live = Live::start("evcs", Some(POLICY_RULES), &["--mode", "monitor"]);
    let got = fake_then_real(&live, 44000, |t, fake| {
        let craft = Craft {
            checksum_delta: 1,
            ..Craft::default()
        };
        t.send_raw(PSH | ACK, t.snd_nxt, t.rcv_nxt, fake, &craft);
    });
    assert!(got, "monitor mode passes");
    let stats = kernel_stats(&live);
    assert!(counter(&stats, "checksum_bad") >= 1, "{stats}");
    assert!(blocked_sender_alerted(&live), "{:?}", live.alerts());
}

#[test]
fn fake_line_with_bad_checksum_in_enforce_mode() {
    if !require_root("fake_line_with_bad_checksum_in_enforce_mode") {
        return;
    }
    // Enforce mode: the kernel drops the bad segment itself.
    let live = Live::start("evce", Some(POLICY_RULES), &[]);
    let got = fake_then_real(&live, 44100, |t, fake| {
        let craft = Craft {
            checksum_delta: 1,
            ..Craft::default()
        };
        t.send_raw(PSH | ACK, t.snd_nxt, t.rcv_nxt, fake, &craft);
    });
    assert!(!got, "the session with the blocked MAIL FROM went on");
    assert!(blocked_sender_alerted(&live), "{:?}", live.alerts());
    let stats = kernel_stats(&live);
    assert!(counter(&stats, "checksum_bad") >= 1, "{stats}");
}

#[test]
fn fake_line_without_ack() {
    if !require_root("fake_line_without_ack") {
        return;
    }
    let live = Live::start("evna", Some(POLICY_RULES), &[]);
    let got = fake_then_real(&live, 44200, |t, fake| {
        t.send_raw(PSH, t.snd_nxt, 0, fake, &Craft::default());
    });
    assert!(!got, "the session with the blocked MAIL FROM went on");
    assert!(blocked_sender_alerted(&live), "{:?}", live.alerts());
}

#[test]
fn out_of_order_piece_overridden_in_order() {
    if !require_root("out_of_order_piece_overridden_in_order") {
        return;
    }
    let live = Live::start("evoo", Some(POLICY_RULES), &[]);
    let got = fake_then_real(&live, 44300, |t, fake| {
        // The fake line's tail, out of order; the real line then covers it.
        let k = 12;
        t.send_raw(
            PSH | ACK,
            t.snd_nxt.wrapping_add(k as u32),
            t.rcv_nxt,
            &fake[k..],
            &Craft::default(),
        );
    });
    assert!(!got, "the session with the blocked MAIL FROM went on");
    assert!(blocked_sender_alerted(&live), "{:?}", live.alerts());
}

#[test]
fn fake_line_in_a_syn() {
    if !require_root("fake_line_in_a_syn") {
        return;
    }
    let live = Live::start("evsy", Some(POLICY_RULES), &[]);
    let mut t = RawTcp::new(&live.pair, false, 44400, 25);
    // The SYN carries a fake MAIL FROM (no Fast Open: the server drops the
    // data); the real one then goes at the same sequence numbers.
    let mut fake = b"MAIL FROM:<alice@example.org>".to_vec();
    while fake.len() + 2 < BLOCKED_FROM.len() {
        fake.push(b' ');
    }
    fake.extend_from_slice(b"\r\n");
    let isn = t.snd_nxt;
    t.send_raw(SYN, isn, 0, &fake, &Craft::default());
    assert!(t.connect(WAIT), "no SYN-ACK");
    let g = t.reply(WAIT).expect("greeting");
    assert!(g.starts_with("220"), "{g}");
    t.send(BLOCKED_FROM, &Craft::default());
    let _ = t.reply(REFUSED);
    let got = accepted(&mut t, b"RCPT TO:<bob@example.net>\r\n", &Craft::default());
    assert!(!got, "the session with the blocked MAIL FROM went on");
    assert!(blocked_sender_alerted(&live), "{:?}", live.alerts());
}
