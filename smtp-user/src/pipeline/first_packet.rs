//! [`FirstPacket`]: the lines of a flow wait for its second packet.
//!
//! A flood of flows of one packet each (a scan, spoofed segments, a capture
//! that starts at a session's last segment) would otherwise cost a `flow`
//! line, and often an `smtp` or `anomaly` line, per packet: several hundred
//! bytes of EVE for some 70 bytes of traffic. So the lines a flow produces
//! while its first packet is processed are held; they are written as soon
//! as a second packet (either direction) arrives, and, when the flow ends
//! with that one packet, they are not written but counted
//! (`single_packet_flows`, `single_packet_lines`, anomalies by kind in
//! `anomalies_suppressed`). Alerts are never held: the policy sees every
//! event at once, and its alerts are written whatever the flow's size.
//!
//! Memory: the lines of one packet, whose events are bounded by the
//! segment's size and by the per-kind anomaly budget.

use crate::smtp::{Anomaly, Command, Event, FileInfo, Response, Transaction};

/// A line waiting to be written: the event and its capture time.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum HeldLine {
    Transaction(Transaction),
    Anomaly(Anomaly),
    Command(Command),
    Response(Response),
    File(FileInfo),
}

impl HeldLine {
    /// The event as the writer takes it.
    pub fn event(&self) -> Event<'_> {
        match self {
            HeldLine::Transaction(t) => Event::Transaction(t.clone()),
            HeldLine::Anomaly(a) => Event::Anomaly(a.clone()),
            HeldLine::Command(c) => Event::Command(c.clone()),
            HeldLine::Response(r) => Event::Response(r.clone()),
            HeldLine::File(f) => Event::File(f.clone()),
        }
    }
}

/// Where a flow is with respect to its first packet.
#[derive(Debug, Default)]
pub struct FirstPacket {
    /// Packets of the flow handled completely (`after_segment` seen).
    packets: u64,
    /// Lines produced while the first packet was processed, in order;
    /// empty once a second packet arrived.
    held: Vec<(u64, HeldLine)>,
}

impl FirstPacket {
    /// True while the flow's first packet is being processed: its lines
    /// are to be held.
    pub fn holding(&self) -> bool {
        self.packets == 0
    }

    /// Holds the line `event` would produce (events that produce no line
    /// are ignored).
    pub fn hold(&mut self, ts_micros: u64, event: &Event<'_>) {
        let line = match event {
            Event::Transaction(t) => HeldLine::Transaction(t.clone()),
            Event::Anomaly(a) => HeldLine::Anomaly(a.clone()),
            Event::Command(c) => HeldLine::Command(c.clone()),
            Event::Response(r) => HeldLine::Response(r.clone()),
            Event::File(f) => HeldLine::File(f.clone()),
            Event::MailContent(_)
            | Event::Header(_)
            | Event::MimePart(_)
            | Event::Envelope(_)
            | Event::Url(_) => return,
        };
        self.held.push((ts_micros, line));
    }

    /// A packet was handled completely.
    pub fn packet_done(&mut self) {
        self.packets = self.packets.saturating_add(1);
    }

    /// The flow has had a single packet so far.
    pub fn single(&self) -> bool {
        self.packets <= 1
    }

    /// The held lines, to be written (second packet) or counted (flow end).
    pub fn take(&mut self) -> Vec<(u64, HeldLine)> {
        std::mem::take(&mut self.held)
    }

    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }
}
