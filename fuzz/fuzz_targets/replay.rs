//! The whole replay pipeline on arbitrary capture bytes: pcap/pcapng reader,
//! frame decoder (IP reassembly, checksums), flow table and reassembly, SMTP
//! dissector, EVE output.
//! Must never panic; memory stays bounded by the pipeline's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_user::capture::decoder::Decoder;
use smtp_user::capture::ipfrag::FragConfig;
use smtp_user::capture::CaptureReader;
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
    // Verify checksums when the input's first byte is odd; a small
    // fragment memory limit the fuzzer reaches.
    let verify = data.first().is_some_and(|b| b & 1 == 1);
    let mut decoder = Decoder::new(
        verify,
        FragConfig {
            memcap: 16 << 10,
            ..FragConfig::default()
        },
    );
    let mut frames = 0u32;
    while let Ok(Some(frame)) = reader.next_frame() {
        frames += 1;
        if frames > 10_000 {
            break;
        }
        if let Ok(Some(seg)) = decoder.decode(frame.linktype, frame.ts_micros, frame.data) {
            table.segment(&seg);
        }
        decoder.expire(frame.ts_micros);
        table.expire(frame.ts_micros);
    }
    decoder.finish();
    assert_eq!(decoder.stats().fragments.held_bytes, 0);
    table.close_all();
});
