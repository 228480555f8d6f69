//! The live pipeline with several workers, without a kernel: segments of
//! concurrent generated sessions, in batches as the ring reader sends
//! them, give the same events per flow with 1, 2 and 3 workers; the lines
//! arrive whole through the output thread, and the report sums the
//! workers.

mod pipeline_common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use pipeline_common::parse_lines;
use smtp_user::capture::synth::write_interleaved;
use smtp_user::capture::{parse_frame, CaptureReader};
use smtp_user::flow::FlowConfig;
use smtp_user::pipeline::{LiveGate, LivePipeline, LiveReport, PolicyOptions, SegmentBatch};

/// An output the test can read after the pipeline ends.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn run(pcap: &[u8], workers: usize) -> (LiveReport, BTreeMap<u64, Vec<String>>) {
    let out = Shared::default();
    let pipeline = LivePipeline::start(
        FlowConfig::default(),
        true,
        10,
        PolicyOptions::default(),
        out.clone(),
        workers,
        |_| (|_| {}, LiveGate::default()),
    )
    .expect("start");
    assert_eq!(pipeline.workers(), workers);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut reader = CaptureReader::new(pcap).expect("pcap");
    let mut batch = SegmentBatch::default();
    while let Some(f) = reader.next_frame().expect("frame") {
        let seg = parse_frame(f.linktype, f.ts_micros, f.data).expect("segment");
        batch.push(&seg);
        // Batches of 7 records, as the ring reader cuts them.
        if batch.len() == 7 {
            assert!(rt.block_on(pipeline.send(std::mem::take(&mut batch))));
        }
    }
    assert!(rt.block_on(pipeline.send(batch)));
    let counters = rt.block_on(pipeline.counters()).expect("counters");
    let report = pipeline.finish();
    assert!(report.output_error.is_none());
    assert_eq!(report.workers.len(), workers);
    assert!(counters.bytes <= report.pipeline.bytes);
    let bytes = out.0.lock().expect("lock").clone();
    let lines = parse_lines(&bytes);
    let mut by_flow: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (text, v) in String::from_utf8(bytes).expect("utf-8").lines().zip(&lines) {
        let id = v["flow_id"].as_u64().expect("flow_id");
        by_flow.entry(id).or_default().push(text.to_string());
    }
    (report, by_flow)
}

#[test]
fn same_events_per_flow_with_any_worker_count() {
    let mut pcap = Vec::new();
    write_interleaved(&mut pcap, 40, 10, 2500, 700).expect("write to Vec");
    let (one, events) = run(&pcap, 1);
    assert_eq!(one.pipeline.flows, 40);
    assert_eq!(events.len(), 40);
    for n in [2, 3] {
        let (r, e) = run(&pcap, n);
        assert_eq!(e, events, "{n} workers");
        assert_eq!(r.pipeline, one.pipeline, "{n} workers");
        assert_eq!(r.output, one.output, "{n} workers");
        let per: Vec<u64> = r.workers.iter().map(|w| w.flows).collect();
        assert_eq!(per.iter().sum::<u64>(), 40, "{per:?}");
        assert!(
            per.iter().all(|f| *f > 0),
            "every worker had flows: {per:?}"
        );
    }
}
