//! [`SmtpFlows`]: runs the SMTP dissector on every reassembled flow and
//! writes what it reports (transactions, anomalies, optionally commands and
//! replies, and one `flow` line per flow end) through an [`EveWriter`].

use std::io::{self, Write};
use std::net::SocketAddr;

use crate::flow::{CloseReason, FlowHandler, FlowInfo, FlowStats};
use crate::output::{EveWriter, FlowContext, FlowSummary};
use crate::smtp::{Event, EventSink, Session};
use crate::Direction;

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
}

/// Per-flow state: the dissector and the flow's identity for output.
pub struct FlowSession {
    smtp: Session,
    ctx: FlowContext,
    /// The drop request of this session was already reported.
    drop_reported: bool,
}

/// The [`FlowHandler`] of the product: SMTP dissection + EVE output.
pub struct SmtpFlows<W: Write> {
    writer: EveWriter<W>,
    counters: PipelineCounters,
    /// First output error; later writes are skipped once output is broken.
    error: Option<io::Error>,
    /// Flows (client, server) whose session asked to be dropped since the
    /// last [`SmtpFlows::take_drop_requests`]; the live monitor turns them
    /// into kernel verdicts when its policy says so.
    drop_requests: Vec<(SocketAddr, SocketAddr)>,
}

/// Adapter from dissector events to EVE lines, stamped with the time and
/// flow of the data that produced them.
struct Emit<'a, W: Write> {
    writer: &'a mut EveWriter<W>,
    counters: &'a mut PipelineCounters,
    error: &'a mut Option<io::Error>,
    ctx: &'a FlowContext,
    ts_micros: u64,
}

impl<W: Write> EventSink for Emit<'_, W> {
    fn event(&mut self, event: Event<'_>) {
        match &event {
            Event::Transaction(_) => self.counters.transactions += 1,
            Event::Anomaly(_) => self.counters.anomalies += 1,
            _ => {}
        }
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.writer.event(self.ts_micros, self.ctx, &event) {
            *self.error = Some(e);
        }
    }
}

impl<W: Write> SmtpFlows<W> {
    pub fn new(writer: EveWriter<W>) -> Self {
        SmtpFlows {
            writer,
            counters: PipelineCounters::default(),
            error: None,
            drop_requests: Vec::new(),
        }
    }

    pub fn counters(&self) -> PipelineCounters {
        self.counters
    }

    pub fn writer(&self) -> &EveWriter<W> {
        &self.writer
    }

    /// Flushes the output and returns the first write error, if any.
    pub fn finish_output(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.writer.flush()
    }

    pub fn into_writer(self) -> EveWriter<W> {
        self.writer
    }

    /// Sessions that took the dissector's `error` transition since the last call.
    pub fn take_drop_requests(&mut self) -> Vec<(SocketAddr, SocketAddr)> {
        std::mem::take(&mut self.drop_requests)
    }

    fn emit<'a>(&'a mut self, ctx: &'a FlowContext, ts_micros: u64) -> Emit<'a, W> {
        Emit {
            writer: &mut self.writer,
            counters: &mut self.counters,
            error: &mut self.error,
            ctx,
            ts_micros,
        }
    }

    fn note_drop_request(&mut self, s: &mut FlowSession) {
        if s.smtp.drop_requested() && !s.drop_reported {
            s.drop_reported = true;
            self.counters.drop_requests += 1;
            self.drop_requests.push((s.ctx.client, s.ctx.server));
        }
    }
}

impl<W: Write> FlowHandler for SmtpFlows<W> {
    type Session = FlowSession;

    fn open(&mut self, flow: &FlowInfo) -> FlowSession {
        self.counters.flows += 1;
        // No SYN seen: the session started before the capture / the monitor.
        let smtp = if flow.midstream {
            Session::midstream()
        } else {
            Session::new()
        };
        FlowSession {
            smtp,
            ctx: FlowContext {
                flow_id: flow.flow_id,
                client: flow.client,
                server: flow.server,
            },
            drop_reported: false,
        }
    }

    fn data(&mut self, s: &mut FlowSession, _: &FlowInfo, dir: Direction, ts: u64, bytes: &[u8]) {
        self.counters.bytes += bytes.len() as u64;
        let ctx = s.ctx;
        s.smtp.feed(dir, bytes, &mut self.emit(&ctx, ts));
        self.note_drop_request(s);
    }

    fn gap(&mut self, s: &mut FlowSession, _: &FlowInfo, dir: Direction, ts: u64, len: u64) {
        self.counters.gap_bytes += len;
        let ctx = s.ctx;
        s.smtp.gap(dir, len, &mut self.emit(&ctx, ts));
        self.note_drop_request(s);
    }

    fn close(
        &mut self,
        mut s: FlowSession,
        flow: &FlowInfo,
        stats: &FlowStats,
        reason: CloseReason,
    ) {
        let ctx = s.ctx;
        s.smtp.finish(&mut self.emit(&ctx, flow.last_ts));
        if self.error.is_some() {
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
        if let Err(e) = self.writer.flow(&ctx, &summary) {
            self.error = Some(e);
        }
    }

    /// After STARTTLS or a fatal parse error the dissector only counts
    /// bytes: stop reassembling them.
    fn wants_data(&mut self, s: &FlowSession, _dir: Direction) -> bool {
        !s.smtp.is_tls() && !s.smtp.drop_requested()
    }
}
