//! The whole replay pipeline on arbitrary capture bytes: pcap/pcapng reader,
//! frame parser, flow table and reassembly, SMTP dissector, EVE output.
//! Must never panic; memory stays bounded by the pipeline's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_user::capture::{parse_frame, CaptureReader};
use smtp_user::flow::{FlowConfig, FlowTable};
use smtp_user::output::EveWriter;
use smtp_user::pipeline::SmtpFlows;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureReader::new(data) else {
        return;
    };
    let config = FlowConfig {
        // Small limits so the fuzzer reaches them.
        max_flows: 4,
        max_buffer_per_direction: 4096,
        max_buffer_total: 8192,
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config, SmtpFlows::new(EveWriter::new(std::io::sink(), true)));
    let mut frames = 0u32;
    while let Ok(Some(frame)) = reader.next_frame() {
        frames += 1;
        if frames > 10_000 {
            break;
        }
        if let Ok(seg) = parse_frame(frame.linktype, frame.ts_micros, frame.data) {
            table.segment(&seg);
        }
        table.expire(frame.ts_micros);
    }
    table.close_all();
});
