//! [`SmtpFlows`]: runs the SMTP dissector and the policy on every
//! reassembled flow, writes what they report (transactions, anomalies,
//! alerts, optionally commands and replies, and one `flow` line per flow
//! end) through an [`EveWriter`], and queues the [`Enforcement`] requests
//! the live monitor carries out.
//!
//! The end-of-data gate, seen from here: on a flow a drop/reset rule may
//! apply to, the gate is armed when the flow opens; each time client bytes that
//! could end a message were inspected (the message's `End`, or bytes ending
//! in `.\r\n`) and no rule blocked the flow, the gate is released up to the
//! client's next sequence number, so the kernel lets the retransmission of
//! the held segment through. With the netfilter-queue gate every client
//! segment of a gated flow waits in the queue instead, and
//! [`GateQueue`](super::gate_queue::GateQueue) accepts it once inspected. A
//! message whose end reached the server without being held is reported as
//! `gate_missed`.
//!
//! A `reject` rule does not stop the session when it fires: the session is
//! dissected on to the end of the transaction's data, whose segment the gate
//! holds; there the client is answered `550 5.7.1 …` on the server's behalf
//! and the server side is reset ([`Enforcement::Reject`]). Without a gate
//! on the flow, `reject` acts as `reset`.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Instant;

use crate::flow::{CloseReason, FlowAnomaly, FlowHandler, FlowInfo, FlowStats};
use crate::output::{AnomalyBudget, AnomalyTally, EveWriter, FlowContext, FlowSummary};
use crate::policy::{Action, Alert, PolicySession, RuleSet};
use crate::smtp::{
    Anomaly, AnomalyKind, ContentOptions, ContentPart, EnvelopeChange, Event, EventSink, Session,
    SessionConfig, State, Verb,
};
use crate::Direction;

use super::enforcement::{Enforcement, ModeSwitch};
use super::first_packet::FirstPacket;
use super::gate_queue::{GateQueue, QueueCounters, QueuedSegment};

/// Default reply of the `reject` action.
pub const DEFAULT_REJECT_REPLY: &str = "550 5.7.1 Message rejected by content policy";
/// Reply to the gated sessions still open when the monitor stops.
pub const SHUTDOWN_REPLY: &str = "421 4.3.2 Service shutting down, try again later";

/// Most rules `alerts_by_sid` tells apart; alerts of others are counted
/// in `alerts_other_rules`.
pub const MAX_ALERT_RULES: usize = 1024;

/// Totals over every flow the handler saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineCounters {
    pub flows: u64,
    pub transactions: u64,
    pub anomalies: u64,
    /// `anomalies` by kind.
    pub anomalies_by_kind: AnomalyTally,
    /// Anomalies not written (their kind reached the per-flow limit), by
    /// kind; they are counted in `anomalies` and seen by the policy.
    pub anomalies_suppressed: AnomalyTally,
    /// Flows that ended after a single packet: their lines (other than
    /// alerts) were not written (see [`super::first_packet`]).
    pub single_packet_flows: u64,
    /// Lines of those flows not written, their `flow` lines included.
    pub single_packet_lines: u64,
    /// Reassembled payload bytes given to the dissector.
    pub bytes: u64,
    /// Bytes reported lost by reassembly.
    pub gap_bytes: u64,
    /// Sessions whose dissector took the `error` transition.
    pub drop_requests: u64,
    /// Rule matches written as alerts.
    pub alerts: u64,
    /// `alerts` by rule `sid` (at most [`MAX_ALERT_RULES`] rules).
    pub alerts_by_sid: std::collections::BTreeMap<u32, u64>,
    /// Alerts of rules beyond the first [`MAX_ALERT_RULES`] seen.
    pub alerts_other_rules: u64,
    /// Sessions a rule asked to drop or reset.
    pub blocked_flows: u64,
    /// Messages whose end was released by the gate after inspection.
    pub gate_releases: u64,
    /// Messages whose end slipped past the gate (`gate_missed`).
    pub gate_missed: u64,
    /// Transactions answered with the `reject` reply.
    pub rejects: u64,
    /// The netfilter-queue gate's verdicts.
    pub queue: QueueCounters,
    /// Hold time of accepted segments, µs: median, p99, samples.
    pub queue_wait_us: (Option<u64>, Option<u64>, u64),
    /// Regex scans restarted after a byte the lazy DFA could not decide
    /// (`\b` next to non-ASCII; a match across it may be missed).
    pub regex_restarts: u64,
    /// Messages whose regex scan stopped early (lazy DFA cache failure).
    pub regex_failures: u64,
}

impl PipelineCounters {
    /// Adds another worker's counts. The queue-wait quantiles are not
    /// additive: the larger of both is kept (the slowest worker's), the
    /// samples add up.
    pub fn merge(&mut self, o: &PipelineCounters) {
        // Every field named: a new counter cannot be forgotten here.
        let PipelineCounters {
            flows,
            transactions,
            anomalies,
            anomalies_by_kind,
            anomalies_suppressed,
            single_packet_flows,
            single_packet_lines,
            bytes,
            gap_bytes,
            drop_requests,
            alerts,
            alerts_by_sid,
            alerts_other_rules,
            blocked_flows,
            gate_releases,
            gate_missed,
            rejects,
            queue,
            queue_wait_us,
            regex_restarts,
            regex_failures,
        } = o;
        self.flows += *flows;
        self.transactions += *transactions;
        self.anomalies += *anomalies;
        self.anomalies_by_kind.merge(anomalies_by_kind);
        self.anomalies_suppressed.merge(anomalies_suppressed);
        self.single_packet_flows += *single_packet_flows;
        self.single_packet_lines += *single_packet_lines;
        self.bytes += *bytes;
        self.gap_bytes += *gap_bytes;
        self.drop_requests += *drop_requests;
        self.alerts += *alerts;
        for (sid, n) in alerts_by_sid {
            if self.alerts_by_sid.len() < MAX_ALERT_RULES || self.alerts_by_sid.contains_key(sid) {
                *self.alerts_by_sid.entry(*sid).or_insert(0) += *n;
            } else {
                self.alerts_other_rules += *n;
            }
        }
        self.alerts_other_rules += *alerts_other_rules;
        self.blocked_flows += *blocked_flows;
        self.gate_releases += *gate_releases;
        self.gate_missed += *gate_missed;
        self.rejects += *rejects;
        self.queue.merge(queue);
        let (m, p, n) = *queue_wait_us;
        self.queue_wait_us = (
            self.queue_wait_us.0.max(m),
            self.queue_wait_us.1.max(p),
            self.queue_wait_us.2 + n,
        );
        self.regex_restarts += *regex_restarts;
        self.regex_failures += *regex_failures;
    }
}

/// How policy runs in the pipeline.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    pub rules: Arc<RuleSet>,
    /// Enforce or monitor, as it is right now.
    pub mode: ModeSwitch,
    /// Arm the end-of-data gate on flows a drop/reset rule may apply to.
    pub gate: bool,
    /// What the dissector derives from message content for rules and
    /// output: `fileinfo` (hashes, sniffed type) and URLs.
    pub content: ContentOptions,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            rules: Arc::new(RuleSet::builtin()),
            mode: ModeSwitch::default(),
            gate: false,
            content: ContentOptions::default(),
        }
    }
}

/// What a flow looks like to `ctl flows`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowView {
    pub state: State,
    pub helo: Option<String>,
    pub mail_from: Option<String>,
    pub rcpt_to: Vec<String>,
    pub transactions: u32,
    /// The strongest blocking action taken on the flow, if any.
    pub verdict: Option<Action>,
    pub gated: bool,
}

/// Per-flow state: the dissector and the rest of the flow's state.
pub struct FlowSession {
    smtp: Session,
    st: FlowState,
}

/// Everything of a flow but its dissector (which it is fed alongside).
struct FlowState {
    policy: PolicySession,
    ctx: FlowContext,
    /// The drop request of this session was already counted.
    drop_reported: bool,
    /// The strongest blocking action requested so far.
    verdict: Option<Action>,
    /// A rule fired on the flow.
    alerted: bool,
    /// Bounds the anomaly lines of this flow.
    budget: AnomalyBudget,
    /// Holds the lines of the flow's first packet.
    first: FirstPacket,
    /// The flow ended after a single packet: its lines are counted, not written.
    single_packet_end: bool,
    /// The end-of-data gate is armed on this flow.
    gated: bool,
    /// Client bytes that may end a message were inspected since the last
    /// release: release at the end of this segment unless blocked.
    release_pending: bool,
    /// End of the `BDAT … LAST` chunk the gate was told to hold, if any.
    bdat_gate: Option<u32>,
    /// Client stream position before the segment being processed (where a
    /// held segment starts: the server's `RCV.NXT`).
    up_start: Option<u32>,
    /// A message ended in the client bytes of the segment being processed.
    ended_in_segment: bool,
    /// The `reject` reply was sent (or requested): the session is over.
    rejected: bool,
    /// The message in transfer uses BDAT (else DATA).
    bdat_message: bool,
    /// Envelope as seen, for `ctl flows`.
    helo: Option<String>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

impl FlowSession {
    pub fn view(&self) -> FlowView {
        FlowView {
            state: self.smtp.state(),
            helo: self.st.helo.clone(),
            mail_from: self.st.mail_from.clone(),
            rcpt_to: self.st.rcpt_to.clone(),
            transactions: self.smtp.transactions_seen(),
            verdict: self.st.verdict,
            gated: self.st.gated,
        }
    }
}

/// Most recipients remembered per flow for `ctl flows`.
const VIEW_MAX_RCPT: usize = 16;

/// The [`FlowHandler`] of the product: SMTP dissection, policy, EVE output.
pub struct SmtpFlows<W: Write> {
    out: Out<W>,
    policy: PolicyOptions,
    /// The netfilter-queue gate's waiting segments and per-flow state.
    queue: GateQueue,
    /// Reply of the `reject` action.
    reject_reply: String,
    /// Requests for the datapath since the last [`SmtpFlows::take_requests`].
    requests: Vec<Enforcement>,
}

/// Where events go: EVE lines, counters, alerts to act on.
struct Out<W: Write> {
    writer: EveWriter<W>,
    counters: PipelineCounters,
    /// First output error; later writes are skipped once output is broken.
    error: Option<io::Error>,
    /// Alerts of the input being handled (reused buffer).
    alerts: Vec<Alert>,
}

impl<W: Write> Out<W> {
    fn result(&mut self, r: io::Result<()>) {
        if let (Err(e), None) = (r, &self.error) {
            self.error = Some(e);
        }
    }

    fn write(&mut self, ts_micros: u64, ctx: &FlowContext, event: &Event<'_>) {
        if self.error.is_none() {
            let r = self.writer.event(ts_micros, ctx, event);
            self.result(r);
        }
    }

    /// Writes the lines held back while the flow had a single packet.
    fn release_held(&mut self, st: &mut FlowState) {
        if st.first.has_held() {
            for (ts, line) in st.first.take() {
                self.write(ts, &st.ctx, &line.event());
            }
        }
    }

    /// Counts the line `event` would have made on a single-packet flow.
    fn not_written(&mut self, event: &Event<'_>) {
        let line = match event {
            Event::Anomaly(a) => {
                self.counters.anomalies_suppressed.add(a.kind, 1);
                true
            }
            Event::Transaction(_) | Event::File(_) => true,
            Event::Command(_) | Event::Response(_) => self.writer.logs_commands(),
            Event::MailContent(_)
            | Event::Header(_)
            | Event::MimePart(_)
            | Event::Envelope(_)
            | Event::Url(_) => false,
        };
        if line {
            self.counters.single_packet_lines += 1;
        }
    }
}

/// Adapter from dissector events to policy and EVE lines, stamped with the
/// time of the data that produced them.
struct Emit<'a, W: Write> {
    out: &'a mut Out<W>,
    st: &'a mut FlowState,
    ts_micros: u64,
    /// A message ended (`MailContent` End) in this call.
    message_ended: bool,
}

impl<'a, W: Write> Emit<'a, W> {
    fn new(out: &'a mut Out<W>, st: &'a mut FlowState, ts_micros: u64) -> Self {
        Emit {
            out,
            st,
            ts_micros,
            message_ended: false,
        }
    }

    fn write(&mut self, event: &Event<'_>) {
        if let Event::Anomaly(a) = event {
            if !self.st.budget.admit(a.kind) {
                self.out.counters.anomalies_suppressed.add(a.kind, 1);
                return;
            }
        }
        if self.st.single_packet_end {
            self.out.not_written(event);
        } else if self.st.first.holding() {
            self.st.first.hold(self.ts_micros, event);
        } else {
            self.out.release_held(self.st);
            self.out.write(self.ts_micros, &self.st.ctx, event);
        }
    }

    fn track(&mut self, event: &Event<'_>) {
        let st = &mut *self.st;
        match event {
            Event::Transaction(_) => self.out.counters.transactions += 1,
            Event::Anomaly(a) => {
                self.out.counters.anomalies += 1;
                self.out.counters.anomalies_by_kind.add(a.kind, 1);
            }
            Event::MailContent(m) if m.part == ContentPart::End => self.message_ended = true,
            // The envelope as the dissector's transaction has it.
            Event::Envelope(e) => match &e.change {
                EnvelopeChange::Helo(arg) => {
                    st.helo = Some(arg.clone());
                    st.mail_from = None;
                    st.rcpt_to.clear();
                }
                EnvelopeChange::MailFrom { path, .. } => {
                    st.mail_from = Some(path.clone());
                    st.rcpt_to.clear();
                }
                EnvelopeChange::Rcpt(path) if st.rcpt_to.len() < VIEW_MAX_RCPT => {
                    st.rcpt_to.push(path.clone());
                }
                EnvelopeChange::Rcpt(_) => {}
                EnvelopeChange::Reset => {
                    st.mail_from = None;
                    st.rcpt_to.clear();
                }
            },
            Event::Command(c) => match c.verb {
                Verb::Data => st.bdat_message = false,
                Verb::Bdat => st.bdat_message = true,
                _ => {}
            },
            _ => {}
        }
    }
}

impl<W: Write> EventSink for Emit<'_, W> {
    fn event(&mut self, event: Event<'_>) {
        self.track(&event);
        self.write(&event);
        self.st.policy.event(&event, &mut self.out.alerts);
    }
}

impl<W: Write> SmtpFlows<W> {
    /// A handler with the built-in policy (protocol errors alert and drop).
    pub fn new(writer: EveWriter<W>) -> Self {
        SmtpFlows::with_policy(writer, PolicyOptions::default())
    }

    pub fn with_policy(writer: EveWriter<W>, policy: PolicyOptions) -> Self {
        SmtpFlows {
            out: Out {
                writer,
                counters: PipelineCounters::default(),
                error: None,
                alerts: Vec::new(),
            },
            policy,
            queue: GateQueue::default(),
            reject_reply: DEFAULT_REJECT_REPLY.to_string(),
            requests: Vec::new(),
        }
    }

    /// Sets the reply of the `reject` action (one line, without CRLF).
    pub fn set_reject_reply(&mut self, reply: &str) {
        self.reject_reply = reply.to_string();
    }

    /// A client segment read from the netfilter queue, to be decided.
    pub fn queue_segment(&mut self, q: QueuedSegment) {
        self.queue.push(q);
    }

    /// A queued packet that could not be parsed (its verdict is drop).
    pub fn queue_unparsed(&mut self) {
        self.queue.unparsed();
    }

    /// True while queued segments wait for a verdict.
    pub fn queue_pending(&self) -> bool {
        self.queue.has_pending()
    }

    /// Verdicts of the queued segments that can be decided now:
    /// `(packet id, accept)`.
    pub fn settle_queue(&mut self, now: Instant, now_micros: u64, out: &mut Vec<(u32, bool)>) {
        let enforcing = self.policy.mode.enforcing();
        self.queue.settle(now, now_micros, enforcing, out);
    }

    /// How long accepted queued segments were held (capture → verdict).
    pub fn queue_wait(&self) -> &super::gate_queue::WaitSamples {
        &self.queue.wait
    }

    /// The monitor stops: every gated session still open is answered
    /// [`SHUTDOWN_REPLY`] and its server side reset, so no message gets
    /// through unheld once the gate is gone (the sending MTA retries later).
    /// Returns how many.
    pub fn reject_open_gated(&mut self) -> usize {
        if !self.policy.mode.enforcing() {
            return 0;
        }
        let mut n = 0;
        for (&(client, server), f) in self.queue.flows() {
            let (Some(up), Some(down)) = (f.up_next, f.down_next) else {
                continue;
            };
            if !f.gated || f.blocked {
                continue;
            }
            n += 1;
            self.requests.push(Enforcement::Reject {
                flow_id: 0,
                client,
                server,
                reply: format!("{SHUTDOWN_REPLY}\r\n"),
                server_next_seq: down,
                client_ack: up,
                server_rcv_next: up,
                decided_at_micros: 0,
            });
        }
        for (_, f) in self.queue.flows_mut() {
            f.blocked = true;
        }
        n
    }

    pub fn counters(&self) -> PipelineCounters {
        PipelineCounters {
            queue: self.queue.counters,
            queue_wait_us: (
                self.queue.wait.quantile(0.5),
                self.queue.wait.quantile(0.99),
                self.queue.wait.count,
            ),
            ..self.out.counters.clone()
        }
    }

    pub fn writer(&self) -> &EveWriter<W> {
        &self.out.writer
    }

    pub fn writer_mut(&mut self) -> &mut EveWriter<W> {
        &mut self.out.writer
    }

    /// Writes the anomaly of a datagram replay's decoder discarded for
    /// overlapping fragments (not tied to a flow; the caller bounds them).
    pub fn frag_overlap(&mut self, o: &crate::capture::ipfrag::FragOverlap) {
        if self.out.error.is_none() {
            let r = self.out.writer.frag_overlap(o);
            self.out.result(r);
        }
    }

    /// The rules new sessions are evaluated with.
    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.policy.rules
    }

    /// Replaces the rules for sessions opened from now on (sessions already
    /// open keep the rules they started with).
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.policy.rules = rules;
    }

    /// Flushes the output and returns the first write error, if any.
    pub fn finish_output(&mut self) -> io::Result<()> {
        if let Some(e) = self.out.error.take() {
            return Err(e);
        }
        self.out.writer.flush()
    }

    pub fn into_writer(self) -> EveWriter<W> {
        self.out.writer
    }

    /// Requests for the datapath decided since the last call, in order.
    pub fn take_requests(&mut self) -> Vec<Enforcement> {
        std::mem::take(&mut self.requests)
    }

    /// Feeds bytes (or a gap) of `dir` to the session, watches the gate and
    /// acts on the alerts.
    fn feed(
        &mut self,
        s: &mut FlowSession,
        flow: &FlowInfo,
        dir: Direction,
        ts: u64,
        input: Input<'_>,
    ) {
        let mut emit = Emit::new(&mut self.out, &mut s.st, ts);
        match input {
            Input::Bytes(b) => s.smtp.feed(dir, b, &mut emit),
            Input::Gap(n) => s.smtp.gap(dir, n, &mut emit),
        }
        let ended = emit.message_ended;
        if dir == Direction::Up {
            s.st.ended_in_segment |= ended;
        }
        if dir == Direction::Up && s.st.gated {
            self.watch_gate(s, flow.held, ts, input, ended);
        }
        if s.smtp.drop_requested() && !s.st.drop_reported {
            s.st.drop_reported = true;
            self.out.counters.drop_requests += 1;
        }
        self.act_on_alerts(&mut s.st, ts);
    }

    /// After client input on a gated flow: notes what to release, and
    /// reports a message end that the kernel did not hold (`held`: the
    /// segment being processed came with the kernel's held mark).
    fn watch_gate(
        &mut self,
        s: &mut FlowSession,
        held: bool,
        ts: u64,
        input: Input<'_>,
        ended: bool,
    ) {
        let bytes = match input {
            Input::Bytes(b) => b,
            Input::Gap(_) => &[],
        };
        if ended {
            // The kernel marks what it held: a segment ending in "LF.CRLF" or
            // exactly ".CRLF", or the one reaching the announced end of a BDAT
            // LAST chunk, on a flow whose gate was armed in time.
            if !held && self.policy.mode.enforcing() {
                self.out.counters.gate_missed += 1;
                let detail = match (s.st.bdat_message, s.st.bdat_gate.is_some()) {
                    (true, false) => {
                        "the BDAT LAST chunk reached the server before the gate knew where it ends"
                    }
                    (false, _) if !bytes.ends_with(b".\r\n") => {
                        "the end of the message reached the server in a segment carrying more \
                         (pipelined) or with its dot line split"
                    }
                    _ => {
                        "the end of the message passed the gate (gate not armed in time or evicted)"
                    }
                };
                let anomaly = Event::Anomaly(Anomaly {
                    kind: AnomalyKind::GateMissed,
                    severity: AnomalyKind::GateMissed.default_severity(),
                    detail: detail.into(),
                    tx_id: s.smtp.transactions_seen().checked_sub(1),
                    drop_requested: false,
                });
                Emit::new(&mut self.out, &mut s.st, ts).event(anomaly);
            }
            s.st.bdat_gate = None;
        }
        s.st.release_pending |= ended || bytes.ends_with(b".\r\n");
    }

    /// The gate's part of [`FlowHandler::after_segment`]: answers a
    /// rejected transaction at its end of data, lets TLS sessions go (their
    /// content cannot be inspected), and tells the queue gate how far the
    /// flow was inspected.
    fn gate_after_segment(&mut self, s: &mut FlowSession, ts: u64, next_seq: [Option<u32>; 2]) {
        let enforcing = self.policy.mode.enforcing();
        let st = &mut s.st;
        let ended = std::mem::take(&mut st.ended_in_segment);
        if st.verdict == Some(Action::Reject) && !st.rejected && ended && st.gated {
            if let (Some(up), Some(down)) = (next_seq[0], next_seq[1]) {
                st.rejected = true;
                self.out.counters.rejects += 1;
                self.requests.push(Enforcement::Reject {
                    flow_id: st.ctx.flow_id,
                    client: st.ctx.client,
                    server: st.ctx.server,
                    reply: format!("{}\r\n", self.reject_reply),
                    server_next_seq: down,
                    client_ack: up,
                    server_rcv_next: st.up_start.unwrap_or(up),
                    decided_at_micros: ts,
                });
            } else {
                // A side's position is unknown (joined midstream): no reply
                // can be aimed. The end stays held; the session is dropped
                // and reset instead.
                st.rejected = true;
                self.requests.push(Enforcement::Block {
                    flow_id: st.ctx.flow_id,
                    client: st.ctx.client,
                    server: st.ctx.server,
                    action: Action::Reject,
                    next_seq: [None, None],
                    decided_at_micros: ts,
                });
            }
        }
        if st.gated && s.smtp.is_tls() {
            // After STARTTLS nothing can be inspected: the gate lets the
            // session go (tls = "allow"), unless a rule that may apply to
            // this client says tls = "reject": then it blocks the session
            // at the handshake (a plaintext reply is impossible there:
            // `reject` acts as `reset`; Postfix defers the message and
            // retries later: nothing is accepted uninspected).
            st.gated = false;
            self.requests.push(Enforcement::DisarmGate {
                client: st.ctx.client,
                server: st.ctx.server,
            });
            if let Some(rule) = self.policy.rules.tls_rejecting_rule(st.ctx.client.ip()) {
                self.out.alerts.push(Alert::new(
                    rule,
                    None,
                    "tls = \"reject\": the session started TLS (content not inspectable)"
                        .to_string(),
                    Default::default(),
                ));
                self.act_on_alerts(st, ts);
            }
        }
        st.up_start = next_seq[0];
        if let Some(f) = self.queue.flow_mut(st.ctx.client, st.ctx.server) {
            f.up_next = next_seq[0];
            f.down_next = next_seq[1];
            f.inspected_ts = ts;
            f.gated = st.gated;
            f.blocked = enforcing
                && match st.verdict {
                    None => false,
                    Some(Action::Reject) => st.rejected,
                    Some(a) => a.blocks(),
                };
        }
    }

    fn act_on_alerts(&mut self, st: &mut FlowState, ts: u64) {
        if self.out.alerts.is_empty() {
            return;
        }
        let enforcing = self.policy.mode.enforcing();
        let alerts = std::mem::take(&mut self.out.alerts);
        for alert in &alerts {
            self.out.counters.alerts += 1;
            let by_sid = &mut self.out.counters.alerts_by_sid;
            if by_sid.len() < MAX_ALERT_RULES || by_sid.contains_key(&alert.signature_id) {
                *by_sid.entry(alert.signature_id).or_insert(0) += 1;
            } else {
                self.out.counters.alerts_other_rules += 1;
            }
            st.alerted = true;
            let blocks = alert.action.blocks();
            if self.out.error.is_none() {
                let r = self
                    .out
                    .writer
                    .alert(ts, &st.ctx, alert, blocks && enforcing);
                self.out.result(r);
            }
            if let Some(duration) = alert.block_ip_for {
                self.requests.push(Enforcement::BlockIp {
                    ip: st.ctx.client.ip(),
                    duration,
                });
            }
            let stronger = match st.verdict {
                None => blocks,
                Some(v) => alert.action > v,
            };
            if stronger {
                if st.verdict.is_none() {
                    self.out.counters.blocked_flows += 1;
                }
                st.verdict = Some(alert.action);
                if alert.action == Action::Reject {
                    if st.gated {
                        // Answered at the transaction's end of data, which
                        // the gate holds (after_segment).
                        continue;
                    }
                    // No gate holds an end to answer: carried out as a
                    // reset, now.
                    st.rejected = true;
                }
                self.requests.push(Enforcement::Block {
                    flow_id: st.ctx.flow_id,
                    client: st.ctx.client,
                    server: st.ctx.server,
                    action: alert.action,
                    next_seq: [None, None],
                    decided_at_micros: ts,
                });
            }
        }
        // Give the buffer (and its capacity) back.
        self.out.alerts = alerts;
        self.out.alerts.clear();
    }
}

/// What [`SmtpFlows::feed`] gives the dissector.
#[derive(Clone, Copy)]
enum Input<'a> {
    Bytes(&'a [u8]),
    Gap(u64),
}

impl<W: Write> FlowHandler for SmtpFlows<W> {
    type Session = FlowSession;

    fn open(&mut self, flow: &FlowInfo) -> FlowSession {
        self.out.counters.flows += 1;
        // No SYN seen: the session started before the capture / the monitor.
        let smtp = Session::with_config(SessionConfig {
            midstream: flow.midstream,
            content: self.policy.content.clone(),
            ..SessionConfig::default()
        });
        let gated = self.policy.gate && self.policy.rules.gate_rules_for(flow.client.ip());
        if self.policy.gate {
            self.queue.open(flow.client, flow.server, gated);
        }
        if gated {
            // (Re)arm: the kernel armed it at the SYN already, unless the
            // flow started before the monitor (midstream).
            self.requests.push(Enforcement::ArmGate {
                client: flow.client,
                server: flow.server,
            });
        } else if self.policy.gate {
            // The kernel may have armed it at the SYN; no rule applies to
            // this client, so nothing of it needs holding.
            self.requests.push(Enforcement::DisarmGate {
                client: flow.client,
                server: flow.server,
            });
        }
        FlowSession {
            smtp,
            st: FlowState {
                policy: self.policy.rules.session(flow.client, flow.server),
                ctx: FlowContext::new(flow.flow_id, flow.client, flow.server),
                drop_reported: false,
                verdict: None,
                alerted: false,
                budget: self.out.writer.anomaly_budget(),
                first: FirstPacket::default(),
                single_packet_end: false,
                gated,
                release_pending: false,
                bdat_gate: None,
                up_start: None,
                ended_in_segment: false,
                rejected: false,
                bdat_message: false,
                helo: None,
                mail_from: None,
                rcpt_to: Vec::new(),
            },
        }
    }

    fn data(
        &mut self,
        s: &mut FlowSession,
        flow: &FlowInfo,
        dir: Direction,
        ts: u64,
        bytes: &[u8],
    ) {
        self.out.counters.bytes += bytes.len() as u64;
        self.feed(s, flow, dir, ts, Input::Bytes(bytes));
    }

    fn gap(&mut self, s: &mut FlowSession, flow: &FlowInfo, dir: Direction, ts: u64, len: u64) {
        self.out.counters.gap_bytes += len;
        self.feed(s, flow, dir, ts, Input::Gap(len));
    }

    fn anomaly(&mut self, s: &mut FlowSession, flow: &FlowInfo, dir: Direction, what: FlowAnomaly) {
        let (kind, detail) = match what {
            FlowAnomaly::OverlapConflict => (
                AnomalyKind::StreamOverlapConflict,
                format!(
                    "overlapping segments ({dir:?}) carried different bytes; \
                     the stream holds the ones the receiver kept"
                ),
            ),
            FlowAnomaly::Memcap => (
                AnomalyKind::Memcap,
                "the memory cap for reassembly and dissection was reached: \
                 flow shed, its buffered data given up"
                    .to_string(),
            ),
        };
        let anomaly = Event::Anomaly(Anomaly {
            kind,
            severity: kind.default_severity(),
            detail,
            tx_id: s.smtp.transactions_seen().checked_sub(1),
            drop_requested: false,
        });
        Emit::new(&mut self.out, &mut s.st, flow.last_ts).event(anomaly);
        self.act_on_alerts(&mut s.st, flow.last_ts);
    }

    fn memory(&self, s: &FlowSession) -> usize {
        s.smtp.memory()
    }

    fn after_segment(&mut self, s: &mut FlowSession, flow: &FlowInfo, next_seq: [Option<u32>; 2]) {
        self.gate_after_segment(s, flow.last_ts, next_seq);
        let st = &mut s.st;
        st.first.packet_done();
        if !st.first.single() {
            self.out.release_held(st);
        }
        // Blocks decided during this segment learn where each side is.
        for r in self.requests.iter_mut().rev() {
            if let Enforcement::Block {
                flow_id,
                next_seq: seqs,
                ..
            } = r
            {
                if *flow_id == st.ctx.flow_id && *seqs == [None, None] {
                    *seqs = next_seq;
                }
            }
        }
        if !st.gated || st.verdict.is_some() {
            return;
        }
        let Some(up_next) = next_seq[0] else {
            return;
        };
        // Rules see the envelope the server accepted: while a MAIL or RCPT
        // awaits its reply (BDAT pipelined behind them), keep holding.
        if st.release_pending && !s.smtp.envelope_undecided() {
            st.release_pending = false;
            self.out.counters.gate_releases += 1;
            self.requests.push(Enforcement::ReleaseGate {
                client: st.ctx.client,
                server: st.ctx.server,
                end_seq: up_next,
            });
        }
        if st.bdat_gate.is_none() {
            if let Some(rest) = s.smtp.bdat_last_remaining() {
                // Sequence numbers wrap: only the low 32 bits matter.
                let end_seq = up_next.wrapping_add(rest as u32);
                st.bdat_gate = Some(end_seq);
                self.requests.push(Enforcement::GateBdat {
                    client: st.ctx.client,
                    server: st.ctx.server,
                    end_seq,
                });
            }
        }
    }

    fn close(
        &mut self,
        mut s: FlowSession,
        flow: &FlowInfo,
        stats: &FlowStats,
        reason: CloseReason,
    ) {
        let ts = flow.last_ts;
        if s.st.first.single() {
            s.st.single_packet_end = true;
            for (_, line) in s.st.first.take() {
                self.out.not_written(&line.event());
            }
        }
        s.smtp.finish(&mut Emit::new(&mut self.out, &mut s.st, ts));
        self.act_on_alerts(&mut s.st, ts);
        let (restarts, failures) = s.st.policy.regex_counters();
        self.out.counters.regex_restarts += restarts;
        self.out.counters.regex_failures += failures;
        let ctx = s.st.ctx;
        self.queue.close(ctx.client, ctx.server);
        if s.st.gated {
            self.requests.push(Enforcement::DisarmGate {
                client: ctx.client,
                server: ctx.server,
            });
        }
        if s.st.single_packet_end {
            self.out.counters.single_packet_flows += 1;
            self.out.counters.single_packet_lines += 1;
            return;
        }
        if self.out.error.is_some() {
            return;
        }
        let summary = FlowSummary {
            pkts_toserver: stats.up.packets,
            pkts_toclient: stats.down.packets,
            bytes_toserver: stats.up.bytes,
            bytes_toclient: stats.down.bytes,
            gaps: stats.up.gaps + stats.down.gaps,
            gap_bytes: stats.up.gap_bytes + stats.down.gap_bytes,
            next_connection_bytes: stats.up.next_connection_bytes
                + stats.down.next_connection_bytes,
            start_micros: flow.first_ts,
            end_micros: flow.last_ts,
            state: reason.as_str().to_string(),
            tls: s.smtp.is_tls(),
            transactions: s.smtp.transactions_seen(),
            alerted: s.st.alerted,
            anomalies_suppressed: *s.st.budget.suppressed(),
        };
        let r = self.out.writer.flow(&ctx, &summary);
        self.out.result(r);
    }

    /// After STARTTLS the dissector has nothing left to do: stop
    /// reassembling. A fatal parse error or a verdict does not stop the
    /// analysis: in enforce mode the datapath drops what follows, and if
    /// the session goes on anyway (monitor mode, an `alert` action, a
    /// replayed capture) every later transaction is still reported.
    fn wants_data(&mut self, s: &FlowSession, _dir: Direction) -> bool {
        s.smtp.wants_bytes()
    }
}
