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
//! the held segment through. A message whose end reached the server without
//! being held is reported as `gate_missed`.

use std::io::{self, Write};
use std::sync::Arc;

use crate::flow::{CloseReason, FlowHandler, FlowInfo, FlowStats};
use crate::output::{EveWriter, FlowContext, FlowSummary};
use crate::policy::{Action, Alert, PolicySession, RuleSet};
use crate::smtp::{
    Anomaly, AnomalyKind, ContentPart, EnvelopeChange, Event, EventSink, Session, State, Verb,
};
use crate::Direction;

use super::enforcement::{Enforcement, ModeSwitch};

/// Totals over every flow the handler saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineCounters {
    pub flows: u64,
    pub transactions: u64,
    pub anomalies: u64,
    /// Reassembled payload bytes given to the dissector.
    pub bytes: u64,
    /// Bytes reported lost by reassembly.
    pub gap_bytes: u64,
    /// Sessions whose dissector took the `error` transition.
    pub drop_requests: u64,
    /// Rule matches written as alerts.
    pub alerts: u64,
    /// Sessions a rule asked to drop or reset.
    pub blocked_flows: u64,
    /// Messages whose end was released by the gate after inspection.
    pub gate_releases: u64,
    /// Messages whose end slipped past the gate (`gate_missed`).
    pub gate_missed: u64,
    /// Regex scans restarted after a byte the lazy DFA could not decide
    /// (`\b` next to non-ASCII; a match across it may be missed).
    pub regex_restarts: u64,
    /// Messages whose regex scan stopped early (lazy DFA cache failure).
    pub regex_failures: u64,
}

/// How policy runs in the pipeline.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    pub rules: Arc<RuleSet>,
    /// Enforce or monitor, as it is right now.
    pub mode: ModeSwitch,
    /// Arm the end-of-data gate on flows a drop/reset rule may apply to.
    pub gate: bool,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            rules: Arc::new(RuleSet::builtin()),
            mode: ModeSwitch::default(),
            gate: false,
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
    /// The end-of-data gate is armed on this flow.
    gated: bool,
    /// Client bytes that may end a message were inspected since the last
    /// release: release at the end of this segment unless blocked.
    release_pending: bool,
    /// End of the `BDAT … LAST` chunk the gate was told to hold, if any.
    bdat_gate: Option<u32>,
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
        if self.out.error.is_none() {
            let r = self.out.writer.event(self.ts_micros, &self.st.ctx, event);
            self.out.result(r);
        }
    }

    fn track(&mut self, event: &Event<'_>) {
        let st = &mut *self.st;
        match event {
            Event::Transaction(_) => self.out.counters.transactions += 1,
            Event::Anomaly(_) => self.out.counters.anomalies += 1,
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
            requests: Vec::new(),
        }
    }

    pub fn counters(&self) -> PipelineCounters {
        self.out.counters
    }

    pub fn writer(&self) -> &EveWriter<W> {
        &self.out.writer
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

    fn act_on_alerts(&mut self, st: &mut FlowState, ts: u64) {
        if self.out.alerts.is_empty() {
            return;
        }
        let enforcing = self.policy.mode.enforcing();
        let alerts = std::mem::take(&mut self.out.alerts);
        for alert in &alerts {
            self.out.counters.alerts += 1;
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
        let smtp = if flow.midstream {
            Session::midstream()
        } else {
            Session::new()
        };
        let gated = self.policy.gate && self.policy.rules.gate_rules_for(flow.client.ip());
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
                ctx: FlowContext {
                    flow_id: flow.flow_id,
                    client: flow.client,
                    server: flow.server,
                },
                drop_reported: false,
                verdict: None,
                gated,
                release_pending: false,
                bdat_gate: None,
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

    fn after_segment(&mut self, s: &mut FlowSession, _: &FlowInfo, next_seq: [Option<u32>; 2]) {
        let st = &mut s.st;
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
        s.smtp.finish(&mut Emit::new(&mut self.out, &mut s.st, ts));
        self.act_on_alerts(&mut s.st, ts);
        let (restarts, failures) = s.st.policy.regex_counters();
        self.out.counters.regex_restarts += restarts;
        self.out.counters.regex_failures += failures;
        let ctx = s.st.ctx;
        if s.st.gated {
            self.requests.push(Enforcement::DisarmGate {
                client: ctx.client,
                server: ctx.server,
            });
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
            start_micros: flow.first_ts,
            end_micros: flow.last_ts,
            state: reason.as_str().to_string(),
            tls: s.smtp.is_tls(),
            transactions: s.smtp.transactions_seen(),
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
