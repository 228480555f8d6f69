//! Real captures for the dissector tests: the shared corpus read with the
//! product's own capture reader and flow table, each flow's reassembled
//! streams fed to its own `Session`, events collected per session.

use smtp_user::capture::{parse_frame, CaptureReader};
use smtp_user::flow::{CloseReason, FlowConfig, FlowHandler, FlowInfo, FlowStats, FlowTable};
use smtp_user::smtp::{OwnedEvent, Session};
use smtp_user::Direction;

/// Ports whose flows are dissected: the corpus's SMTP ports, plus 465
/// (implicit TLS) so that the dissector also meets TLS bytes taken as commands.
const SMTP_PORTS: [u16; 4] = [25, 587, 2525, 465];

/// Bytes of a corpus pcap, or `None` (after printing "skipped") when absent.
pub fn corpus_pcap(name: &str) -> Option<Vec<u8>> {
    let Some(dir) = super::corpus::pcap_dir() else {
        println!("skipped: ../shared/corpus not found (not part of the repository)");
        return None;
    };
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(_) => {
            println!("skipped: {} not found", path.display());
            None
        }
    }
}

/// Collects each flow's events, tagged with the order the flow opened in.
#[derive(Default)]
struct Collect {
    opened: usize,
    done: Vec<(usize, Vec<OwnedEvent>)>,
}

impl FlowHandler for Collect {
    type Session = (usize, Session, Vec<OwnedEvent>);

    fn open(&mut self, flow: &FlowInfo) -> Self::Session {
        self.opened += 1;
        // As the product does (pipeline::SmtpFlows).
        let session = if flow.midstream {
            Session::midstream()
        } else {
            Session::new()
        };
        (self.opened, session, Vec::new())
    }

    fn data(&mut self, s: &mut Self::Session, _: &FlowInfo, d: Direction, _: u64, b: &[u8]) {
        s.1.feed(d, b, &mut s.2);
    }

    fn gap(&mut self, s: &mut Self::Session, _: &FlowInfo, d: Direction, _: u64, n: u64) {
        s.1.gap(d, n, &mut s.2);
    }

    fn close(&mut self, mut s: Self::Session, _: &FlowInfo, _: &FlowStats, _: CloseReason) {
        s.1.finish(&mut s.2);
        self.done.push((s.0, s.2));
    }
}

/// Runs every SMTP session of a pcap/pcapng file through the dissector;
/// returns one event list per session (in order of first packet).
pub fn dissect_pcap(bytes: &[u8]) -> Vec<Vec<OwnedEvent>> {
    let config = FlowConfig {
        monitored_ports: SMTP_PORTS.to_vec(),
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config, Collect::default());
    let mut reader = CaptureReader::new(bytes).expect("corpus file is a capture");
    while let Some(frame) = reader.next_frame().expect("corpus file reads completely") {
        if let Ok(seg) = parse_frame(frame.linktype, frame.ts_micros, frame.data) {
            let smtp = [seg.src.port(), seg.dst.port()]
                .iter()
                .any(|p| SMTP_PORTS.contains(p));
            if smtp {
                table.segment(&seg);
            }
        }
    }
    table.close_all();
    let mut done = table.into_handler().done;
    done.sort_by_key(|(order, _)| *order);
    done.into_iter().map(|(_, events)| events).collect()
}
