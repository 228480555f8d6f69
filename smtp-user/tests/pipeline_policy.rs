//! Policy in the pipeline: rule matches become EVE `alert` lines with the
//! mode's action, blocking matches become enforcement requests aimed at the
//! right flow and sequence numbers, and the end-of-data gate is armed,
//! released and reported missed exactly when it should.

mod eve_schema;

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use smtp_user::capture::parse_frame;
use smtp_user::capture::synth::{render, Conversation, RenderOptions};
use smtp_user::capture::wire::linktype;
use smtp_user::flow::{FlowConfig, FlowTable};
use smtp_user::output::EveWriter;
use smtp_user::pipeline::{Enforcement, Mode, ModeSwitch, PolicyOptions, SmtpFlows};
use smtp_user::policy::{Action, RuleSet};
use smtp_user::Direction::{Down, Up};

const RULES: &str = r#"
[[rule]]
sid = 1001
name = "forbidden-sender-domain"
message = "MAIL FROM a forbidden domain"
severity = "high"
action = "drop"
block_ip_for = "10m"
[rule.when]
mail_from_domain = ["forbidden.example"]

[[rule]]
sid = 1002
name = "forbidden-keyword"
message = "Forbidden keyword in the message"
severity = "medium"
action = "reset"
[rule.when]
body_keywords = ["FORBIDDEN-KEYWORD"]

[[rule]]
sid = 1003
name = "many-recipients"
message = "More than two recipients"
severity = "low"
action = "alert"
[rule.when]
rcpt_count_over = 2
"#;

fn rules() -> Arc<RuleSet> {
    Arc::new(RuleSet::from_toml(RULES, Path::new("test-rules.toml")).expect("valid rules"))
}

/// A session sending one message with `from` and `body`, the client's
/// commands of each step in one segment.
fn conversation(from: &str, rcpts: &[&str], body: &str) -> Conversation {
    let mut steps = vec![
        (Down, b"220 mx.example ESMTP\r\n".to_vec()),
        (Up, b"EHLO client.example\r\n".to_vec()),
        (Down, b"250-mx.example\r\n250 PIPELINING\r\n".to_vec()),
        (Up, format!("MAIL FROM:<{from}>\r\n").into_bytes()),
        (Down, b"250 2.1.0 Ok\r\n".to_vec()),
    ];
    for r in rcpts {
        steps.push((Up, format!("RCPT TO:<{r}>\r\n").into_bytes()));
        steps.push((Down, b"250 2.1.5 Ok\r\n".to_vec()));
    }
    steps.extend([
        (Up, b"DATA\r\n".to_vec()),
        (Down, b"354 End data with <CR><LF>.<CR><LF>\r\n".to_vec()),
        (
            Up,
            format!("Subject: test\r\n\r\n{body}\r\n.\r\n").into_bytes(),
        ),
        (Down, b"250 2.0.0 Ok: queued\r\n".to_vec()),
        (Up, b"QUIT\r\n".to_vec()),
        (Down, b"221 2.0.0 Bye\r\n".to_vec()),
    ]);
    Conversation::new(steps)
}

struct Run {
    events: Vec<Value>,
    requests: Vec<Enforcement>,
}

/// The kernel's end-of-data gate of one flow, as `smtp-ebpf` implements it
/// (held segments are marked, as the kernel marks their records), driven by
/// the requests the pipeline makes.
#[derive(Default)]
struct KernelGate {
    armed: bool,
    bdat_end: Option<u32>,
    release_end: Option<u32>,
}

/// `a` at or after `b` in sequence space.
fn seq_ge(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) as i32 >= 0
}

impl KernelGate {
    fn apply(&mut self, r: &Enforcement) {
        match r {
            Enforcement::ArmGate { .. } => {
                *self = KernelGate {
                    armed: true,
                    ..KernelGate::default()
                }
            }
            Enforcement::GateBdat { end_seq, .. } => self.bdat_end = Some(*end_seq),
            Enforcement::ReleaseGate { end_seq, .. } => self.release_end = Some(*end_seq),
            Enforcement::DisarmGate { .. } => self.armed = false,
            _ => {}
        }
    }

    fn holds(&self, seq: u32, payload: &[u8]) -> bool {
        if !self.armed || payload.is_empty() {
            return false;
        }
        let end = seq.wrapping_add(payload.len() as u32);
        let (ends, msg_end) = match self.bdat_end {
            Some(b) if seq_ge(end, b) && !seq_ge(seq, b) => (true, b),
            _ => (payload.ends_with(b"\n.\r\n") || payload == b".\r\n", end),
        };
        ends && !self.release_end.is_some_and(|r| seq_ge(r, msg_end))
    }
}

fn run(conv: &Conversation, mode: Mode, gate: bool) -> Run {
    run_with(conv, mode, gate, true)
}

/// `kernel_arms`: false models a gate the kernel never got (a monitor that
/// stalled before arming it, an evicted entry): nothing is held.
fn run_with(conv: &Conversation, mode: Mode, gate: bool, kernel_arms: bool) -> Run {
    let policy = PolicyOptions {
        rules: rules(),
        mode: ModeSwitch::new(mode),
        gate,
        ..PolicyOptions::default()
    };
    let handler = SmtpFlows::with_policy(EveWriter::new(Vec::new(), false), policy);
    let mut table = FlowTable::new(FlowConfig::default(), handler);
    let mut requests = Vec::new();
    let mut kernel = KernelGate::default();
    for (ts, frame) in render(conv, &conv.packets(), RenderOptions::default()) {
        let mut seg = parse_frame(linktype::ETHERNET, ts, &frame).expect("TCP frame");
        // The kernel holds only while enforcing, and only client segments.
        seg.held =
            mode == Mode::Enforce && seg.src == conv.client && kernel.holds(seg.seq, seg.payload);
        table.segment(&seg);
        for r in table.handler_mut().take_requests() {
            if kernel_arms {
                kernel.apply(&r);
            }
            requests.push(r);
        }
    }
    table.close_all();
    requests.extend(table.handler_mut().take_requests());
    let out = table.into_handler().into_writer().into_inner();
    let events = eve_schema::parse(&out);
    Run { events, requests }
}

fn alerts(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == "alert")
        .collect()
}

#[test]
fn forbidden_sender_alerts_blocks_and_blocks_the_ip() {
    let conv = conversation("eve@mail.forbidden.example", &["bob@example.net"], "hello");
    let r = run(&conv, Mode::Enforce, false);
    let a = alerts(&r.events);
    assert_eq!(a.len(), 1, "{a:?}");
    let alert = &a[0]["alert"];
    assert_eq!(alert["action"], "blocked");
    assert_eq!(alert["signature_id"], 1001);
    assert_eq!(alert["rule_name"], "forbidden-sender-domain");
    // Suricata's keys: generator 1 (rules), revision 1 by default, and
    // `rule` the rule's text as written in the rules file.
    assert_eq!(alert["gid"], 1);
    assert_eq!(alert["rev"], 1);
    assert_eq!(
        alert["rule"],
        "[[rule]]\nsid = 1001\nname = \"forbidden-sender-domain\"\n\
         message = \"MAIL FROM a forbidden domain\"\nseverity = \"high\"\n\
         action = \"drop\"\nblock_ip_for = \"10m\"\n[rule.when]\n\
         mail_from_domain = [\"forbidden.example\"]"
    );
    assert_eq!(alert["signature"], "MAIL FROM a forbidden domain");
    assert_eq!(alert["severity"], 1);
    assert_eq!(alert["enforcement"], "drop");
    assert_eq!(a[0]["smtp"]["mail_from"], "<eve@mail.forbidden.example>");
    assert_eq!(a[0]["smtp"]["helo"], "client.example");
    assert_eq!(a[0]["src_ip"], "192.0.2.1");
    assert_eq!(a[0]["tx_id"], 0);

    let blocks: Vec<_> = r
        .requests
        .iter()
        .filter_map(|q| match q {
            Enforcement::Block {
                action,
                client,
                server,
                next_seq,
                ..
            } => Some((*action, *client, *server, *next_seq)),
            _ => None,
        })
        .collect();
    assert_eq!(blocks.len(), 1);
    let (action, client, server, next_seq) = blocks[0];
    assert_eq!(action, Action::Drop);
    assert_eq!((client, server), (conv.client, conv.server));
    // Decided when the server accepts the MAIL (a refused MAIL changes
    // no envelope): client ISN + 1 + the bytes of EHLO and MAIL; server
    // ISN + 1 + greeting, EHLO reply and MAIL reply.
    let up = "EHLO client.example\r\nMAIL FROM:<eve@mail.forbidden.example>\r\n".len() as u32;
    let down =
        "220 mx.example ESMTP\r\n250-mx.example\r\n250 PIPELINING\r\n250 2.1.0 Ok\r\n".len() as u32;
    assert_eq!(
        next_seq,
        [
            Some(conv.client_isn + 1 + up),
            Some(conv.server_isn + 1 + down)
        ]
    );
    assert!(r.requests.iter().any(|q| matches!(q,
        Enforcement::BlockIp { ip, duration } if *ip == conv.client.ip() && duration.as_secs() == 600)));
}

#[test]
fn monitor_mode_says_allowed_but_still_records_the_verdict() {
    let conv = conversation("eve@forbidden.example", &["bob@example.net"], "hello");
    let r = run(&conv, Mode::Monitor, false);
    let a = alerts(&r.events);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["alert"]["action"], "allowed");
    assert!(r
        .requests
        .iter()
        .any(|q| matches!(q, Enforcement::Block { .. })));
}

#[test]
fn clean_mail_raises_nothing_and_alert_rules_never_block() {
    let conv = conversation("alice@example.org", &["bob@example.net"], "hello");
    let r = run(&conv, Mode::Enforce, false);
    assert!(alerts(&r.events).is_empty());
    assert!(r.requests.is_empty(), "{:?}", r.requests);

    let conv = conversation(
        "alice@example.org",
        &["a@example.net", "b@example.net", "c@example.net"],
        "hello",
    );
    let r = run(&conv, Mode::Enforce, false);
    let a = alerts(&r.events);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["alert"]["rule_name"], "many-recipients");
    assert_eq!(a[0]["alert"]["action"], "allowed");
    assert_eq!(a[0]["smtp"]["rcpt_to"].as_array().map(Vec::len), Some(3));
    assert!(r.requests.is_empty());
}

#[test]
fn gate_is_armed_and_released_after_a_clean_message() {
    let conv = conversation("alice@example.org", &["bob@example.net"], "hello");
    let r = run(&conv, Mode::Enforce, true);
    let c = conv.client;
    let s = conv.server;
    // The message's last segment ends at this client sequence number.
    let up_to_end: usize = conv
        .steps
        .iter()
        .filter(|(d, _)| *d == Up)
        .take_while(|(_, b)| !b.starts_with(b"QUIT"))
        .map(|(_, b)| b.len())
        .sum();
    let end = conv.client_isn + 1 + up_to_end as u32;
    assert_eq!(
        r.requests,
        vec![
            Enforcement::ArmGate {
                client: c,
                server: s
            },
            Enforcement::ReleaseGate {
                client: c,
                server: s,
                end_seq: end
            },
            Enforcement::DisarmGate {
                client: c,
                server: s
            },
        ]
    );
    assert!(alerts(&r.events).is_empty());
    assert!(!r
        .events
        .iter()
        .any(|e| e["anomaly"]["event"] == "gate_missed"));
}

#[test]
fn gate_stays_shut_when_the_content_is_blocked() {
    let conv = conversation(
        "alice@example.org",
        &["bob@example.net"],
        "please find the FORBIDDEN-KEYWORD attached",
    );
    let r = run(&conv, Mode::Enforce, true);
    assert!(matches!(
        r.requests.first(),
        Some(Enforcement::ArmGate { .. })
    ));
    assert!(
        !r.requests
            .iter()
            .any(|q| matches!(q, Enforcement::ReleaseGate { .. })),
        "{:?}",
        r.requests
    );
    assert!(r.requests.iter().any(|q| matches!(
        q,
        Enforcement::Block {
            action: Action::Reset,
            ..
        }
    )));
    let a = alerts(&r.events);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["alert"]["rule_name"], "forbidden-keyword");
    assert_eq!(a[0]["alert"]["action"], "blocked");
}

#[test]
fn end_of_data_pipelined_with_quit_is_a_gate_miss() {
    let mut conv = conversation("alice@example.org", &["bob@example.net"], "hello");
    // The end of the message and QUIT leave in one segment: the kernel,
    // which holds only segments ending in CRLF.CRLF, cannot hold it.
    let data_idx = conv
        .steps
        .iter()
        .position(|(d, b)| *d == Up && b.ends_with(b"\r\n.\r\n"))
        .expect("message step");
    conv.steps[data_idx].1.extend_from_slice(b"QUIT\r\n");
    let quit_idx = conv
        .steps
        .iter()
        .rposition(|(_, b)| b == b"QUIT\r\n")
        .expect("QUIT step");
    conv.steps.remove(quit_idx);
    let r = run(&conv, Mode::Enforce, true);
    let missed: Vec<_> = r
        .events
        .iter()
        .filter(|e| e["anomaly"]["event"] == "gate_missed")
        .collect();
    assert_eq!(missed.len(), 1, "{:?}", r.events);
    assert_eq!(missed[0]["anomaly"]["severity"], "medium");
}

#[test]
fn replaced_rules_apply_to_new_sessions_only() {
    let policy = PolicyOptions {
        rules: Arc::new(RuleSet::builtin()),
        mode: ModeSwitch::new(Mode::Enforce),
        gate: false,
        ..PolicyOptions::default()
    };
    let mut handler = SmtpFlows::with_policy(EveWriter::new(Vec::new(), false), policy);
    assert_eq!(handler.rules().digest(), "builtin");
    handler.set_rules(rules());
    let mut table = FlowTable::new(FlowConfig::default(), handler);
    let conv = conversation("eve@forbidden.example", &["bob@example.net"], "x");
    for (ts, frame) in render(&conv, &conv.packets(), RenderOptions::default()) {
        table
            .frame(linktype::ETHERNET, ts, &frame)
            .expect("TCP frame");
    }
    table.close_all();
    assert_eq!(table.handler().counters().alerts, 1);
    assert_eq!(table.handler().counters().blocked_flows, 1);
}

/// A session sending one message with BDAT: the command and its chunk in
/// separate client segments unless `together`.
fn bdat_conversation(body: &[u8], together: bool) -> Conversation {
    let mut steps = vec![
        (Down, b"220 mx.example ESMTP\r\n".to_vec()),
        (Up, b"EHLO client.example\r\n".to_vec()),
        (Down, b"250-mx.example\r\n250 CHUNKING\r\n".to_vec()),
        (Up, b"MAIL FROM:<alice@example.org>\r\n".to_vec()),
        (Down, b"250 2.1.0 Ok\r\n".to_vec()),
        (Up, b"RCPT TO:<bob@example.net>\r\n".to_vec()),
        (Down, b"250 2.1.5 Ok\r\n".to_vec()),
    ];
    let cmd = format!("BDAT {} LAST\r\n", body.len()).into_bytes();
    if together {
        let mut seg = cmd;
        seg.extend_from_slice(body);
        steps.push((Up, seg));
    } else {
        steps.push((Up, cmd));
        steps.push((Up, body.to_vec()));
    }
    steps.extend([
        (Down, b"250 2.0.0 Ok: queued\r\n".to_vec()),
        (Up, b"QUIT\r\n".to_vec()),
        (Down, b"221 2.0.0 Bye\r\n".to_vec()),
    ]);
    Conversation::new(steps)
}

#[test]
fn bdat_last_chunk_end_is_announced_to_the_gate_then_released() {
    let body = b"Subject: chunked\r\n\r\nclean content\r\n";
    let conv = bdat_conversation(body, false);
    let r = run(&conv, Mode::Enforce, true);
    let (c, s) = (conv.client, conv.server);
    let before_body: usize = conv
        .steps
        .iter()
        .filter(|(d, _)| *d == Up)
        .take_while(|(_, b)| b.as_slice() != body.as_slice())
        .map(|(_, b)| b.len())
        .sum();
    let end = conv.client_isn + 1 + (before_body + body.len()) as u32;
    assert_eq!(
        r.requests,
        vec![
            Enforcement::ArmGate {
                client: c,
                server: s
            },
            Enforcement::GateBdat {
                client: c,
                server: s,
                end_seq: end
            },
            Enforcement::ReleaseGate {
                client: c,
                server: s,
                end_seq: end
            },
            Enforcement::DisarmGate {
                client: c,
                server: s
            },
        ]
    );
    assert!(!r
        .events
        .iter()
        .any(|e| e["anomaly"]["event"] == "gate_missed"));
}

#[test]
fn bdat_last_chunk_in_the_command_segment_is_a_gate_miss() {
    let body = b"Subject: chunked\r\n\r\nclean content\r\n";
    let conv = bdat_conversation(body, true);
    let r = run(&conv, Mode::Enforce, true);
    let missed: Vec<_> = r
        .events
        .iter()
        .filter(|e| e["anomaly"]["event"] == "gate_missed")
        .collect();
    assert_eq!(missed.len(), 1, "{:?}", r.events);
    assert!(!r
        .requests
        .iter()
        .any(|q| matches!(q, Enforcement::GateBdat { .. })));
    // Monitor mode: the kernel holds nothing, so nothing is missed.
    let r = run(&conv, Mode::Monitor, true);
    assert!(!r
        .events
        .iter()
        .any(|e| e["anomaly"]["event"] == "gate_missed"));
}

/// `conversation` with its message step cut in two client segments, the
/// second being the last `tail_len` bytes of the message.
fn split_end(tail_len: usize) -> Conversation {
    let mut conv = conversation("alice@example.org", &["bob@example.net"], "hello");
    let idx = conv
        .steps
        .iter()
        .position(|(d, b)| *d == Up && b.ends_with(b"\r\n.\r\n"))
        .expect("message step");
    let msg = conv.steps[idx].1.clone();
    let cut = msg.len() - tail_len;
    conv.steps[idx].1 = msg[..cut].to_vec();
    conv.steps.insert(idx + 1, (Up, msg[cut..].to_vec()));
    conv
}

#[test]
fn end_of_data_split_over_segments_is_held_while_it_ends_in_dot_crlf() {
    // "…\r" + "\n.\r\n", "…\r\n" + ".\r\n": the last segment ends in ".\r\n",
    // which the kernel holds.
    for tail in [4, 3, 5] {
        let r = run(&split_end(tail), Mode::Enforce, true);
        assert!(
            !r.events
                .iter()
                .any(|e| e["anomaly"]["event"] == "gate_missed"),
            "tail {tail}: {:?}",
            r.events
        );
        assert!(r
            .requests
            .iter()
            .any(|q| matches!(q, Enforcement::ReleaseGate { .. })));
    }
    // "….\r" + "\n", "…." + "\r\n", "…\r\n." + "\r\n": the dot line is
    // split, the kernel cannot know: reported.
    for tail in [1, 2] {
        let r = run(&split_end(tail), Mode::Enforce, true);
        assert_eq!(
            r.events
                .iter()
                .filter(|e| e["anomaly"]["event"] == "gate_missed")
                .count(),
            1,
            "tail {tail}"
        );
    }
}

#[test]
fn message_end_the_kernel_did_not_hold_is_a_gate_miss() {
    // The end of data is a segment of its own, ending in CRLF.CRLF: the
    // bytes look held, but the kernel never had the gate (stalled monitor).
    let conv = conversation("alice@example.org", &["bob@example.net"], "hello");
    let r = run_with(&conv, Mode::Enforce, true, false);
    let missed: Vec<_> = r
        .events
        .iter()
        .filter(|e| e["anomaly"]["event"] == "gate_missed")
        .collect();
    assert_eq!(missed.len(), 1, "{:?}", r.events);
    assert!(
        missed[0]["anomaly"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not armed in time")),
        "{}",
        missed[0]
    );
}

#[test]
fn gate_of_a_client_no_rule_applies_to_is_removed() {
    // The kernel arms every flow's gate at its SYN when the gate is on; a
    // flow whose client no drop/reset rule admits gets it removed at once.
    let rules = r#"
[[rule]]
sid = 2001
name = "internal-only"
action = "drop"
[rule.when]
client_ip = ["10.0.0.0/8"]
body_keywords = ["secret"]
"#;
    let policy = PolicyOptions {
        rules: Arc::new(RuleSet::from_toml(rules, Path::new("r.toml")).expect("rules")),
        mode: ModeSwitch::new(Mode::Enforce),
        gate: true,
        ..PolicyOptions::default()
    };
    let mut table = FlowTable::new(
        FlowConfig::default(),
        SmtpFlows::with_policy(EveWriter::new(Vec::new(), false), policy),
    );
    let conv = conversation("alice@example.org", &["bob@example.net"], "secret");
    for (ts, frame) in render(&conv, &conv.packets(), RenderOptions::default()) {
        table
            .frame(linktype::ETHERNET, ts, &frame)
            .expect("TCP frame");
    }
    table.close_all();
    assert_eq!(
        table.handler_mut().take_requests(),
        vec![Enforcement::DisarmGate {
            client: conv.client,
            server: conv.server
        }]
    );
}

/// `reject` under the gate: nothing happens when the keyword is read; at
/// the end of data the pipeline asks to answer the client on the server's
/// behalf, aimed with the server's next sequence number, an ACK covering
/// the client's segment, and the server's `RCV.NXT` at the start of that
/// (held) segment; the gate is never released and the session not dropped.
#[test]
fn reject_answers_the_held_end_of_data_in_the_servers_place() {
    let conv = conversation(
        "alice@example.org",
        &["bob@example.net"],
        "please find the FORBIDDEN-KEYWORD attached",
    );
    let rules = Arc::new(
        RuleSet::from_toml(
            &RULES.replacen("action = \"reset\"", "action = \"reject\"", 1),
            Path::new("test-rules.toml"),
        )
        .expect("valid rules"),
    );
    let policy = PolicyOptions {
        rules,
        mode: ModeSwitch::new(Mode::Enforce),
        gate: true,
        ..PolicyOptions::default()
    };
    let handler = SmtpFlows::with_policy(EveWriter::new(Vec::new(), false), policy);
    let mut table = FlowTable::new(FlowConfig::default(), handler);
    let mut requests = Vec::new();
    // Where the end of data sits, and where the server stands before it.
    let (mut data_seg, mut server_next) = (None, None);
    for (ts, frame) in render(&conv, &conv.packets(), RenderOptions::default()) {
        let seg = parse_frame(linktype::ETHERNET, ts, &frame).expect("TCP frame");
        let end = seg.seq.wrapping_add(seg.payload.len() as u32);
        if seg.src == conv.client && seg.payload.ends_with(b"\r\n.\r\n") {
            data_seg = Some((seg.seq, end));
        } else if seg.src != conv.client && !seg.payload.is_empty() && data_seg.is_none() {
            server_next = Some(end);
        }
        table.segment(&seg);
        requests.extend(table.handler_mut().take_requests());
    }
    let (start, end) = data_seg.expect("end of data");
    let rejects: Vec<_> = requests
        .iter()
        .filter_map(|q| match q {
            Enforcement::Reject {
                reply,
                server_next_seq,
                client_ack,
                server_rcv_next,
                ..
            } => Some((
                reply.clone(),
                *server_next_seq,
                *client_ack,
                *server_rcv_next,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        rejects,
        vec![(
            "550 5.7.1 Message rejected by content policy\r\n".to_string(),
            server_next.expect("server reply"),
            end,
            start
        )],
        "{requests:?}"
    );
    assert!(!requests.iter().any(|q| matches!(
        q,
        Enforcement::ReleaseGate { .. } | Enforcement::Block { .. }
    )));
    assert_eq!(table.handler().counters().rejects, 1);
}
