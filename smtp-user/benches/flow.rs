//! Throughput of capture reading, wire parsing and the flow table with a
//! no-op handler, on a generated ~100 MiB capture held in memory (SMTP
//! sessions of ~1 MiB, 20 interleaved at a time, MSS 1460).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smtp_user::capture::synth::{self, write_interleaved, Conversation, RenderOptions};
use smtp_user::capture::wire::linktype;
use smtp_user::capture::{parse_frame, CaptureReader};
use smtp_user::flow::{CloseReason, FlowConfig, FlowHandler, FlowInfo, FlowStats, FlowTable};
use smtp_user::Direction;

/// Counts delivered bytes, so the work cannot be optimised away.
#[derive(Default)]
struct Count {
    bytes: u64,
    gaps: u64,
    flows: u64,
}

impl FlowHandler for Count {
    type Session = ();
    fn open(&mut self, _flow: &FlowInfo) {}
    fn data(&mut self, _s: &mut (), _f: &FlowInfo, _d: Direction, _ts: u64, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
    }
    fn gap(&mut self, _s: &mut (), _f: &FlowInfo, _d: Direction, _ts: u64, len: u64) {
        self.gaps += len;
    }
    fn close(&mut self, _s: (), _f: &FlowInfo, _st: &FlowStats, _r: CloseReason) {
        self.flows += 1;
    }
}

fn capture() -> Vec<u8> {
    let mut file = Vec::with_capacity(110 << 20);
    write_interleaved(&mut file, 100, 20, 1 << 20, 1460).expect("in-memory write");
    file
}

fn bench(c: &mut Criterion) {
    let file = capture();
    let mut g = c.benchmark_group("flow");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(file.len() as u64));

    g.bench_function("read_only", |b| {
        b.iter(|| {
            let mut r = CaptureReader::new(&file[..]).expect("header");
            let mut n = 0u64;
            while let Ok(Some(f)) = r.next_frame() {
                n += f.data.len() as u64;
            }
            black_box(n)
        })
    });

    // Frames pre-split, to measure parse + table alone.
    let mut frames = Vec::new();
    let mut r = CaptureReader::new(&file[..]).expect("header");
    while let Ok(Some(f)) = r.next_frame() {
        frames.push((f.ts_micros, f.linktype, f.data.to_vec()));
    }
    g.bench_function("parse_and_flow", |b| {
        b.iter(|| {
            let mut t = FlowTable::new(FlowConfig::default(), Count::default());
            for (ts, lt, data) in &frames {
                if let Ok(seg) = parse_frame(*lt, *ts, data) {
                    t.segment(&seg);
                }
            }
            t.close_all();
            assert_eq!(t.handler().flows, 100);
            black_box(t.handler().bytes)
        })
    });

    g.bench_function("read_parse_flow", |b| {
        b.iter(|| {
            let mut r = CaptureReader::new(&file[..]).expect("header");
            let mut t = FlowTable::new(FlowConfig::default(), Count::default());
            while let Ok(Some(f)) = r.next_frame() {
                if let Ok(seg) = parse_frame(f.linktype, f.ts_micros, f.data) {
                    t.segment(&seg);
                }
            }
            t.close_all();
            black_box(t.handler().bytes)
        })
    });

    // Every pair of consecutive data segments swapped: half the data goes
    // through the out-of-order buffer.
    let reordered: Vec<(u64, Vec<u8>)> = {
        let sessions: Vec<Vec<(u64, Vec<u8>)>> = (0..100u32)
            .map(|i| {
                let mut c = Conversation::new(synth::smtp_script(1 << 20));
                c.client = std::net::SocketAddr::from(([10, 1, 0, i as u8], 3000 + i as u16));
                let mut p = c.packets();
                synth::swap_pairs(&mut p);
                synth::render(&c, &p, RenderOptions::default())
            })
            .collect();
        let mut out = Vec::new();
        for k in 0..sessions.iter().map(Vec::len).max().unwrap_or(0) {
            out.extend(sessions.iter().filter_map(|s| s.get(k).cloned()));
        }
        out
    };
    let total: usize = reordered.iter().map(|f| f.1.len() + 16).sum();
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("parse_and_flow_reordered", |b| {
        b.iter(|| {
            let mut t = FlowTable::new(FlowConfig::default(), Count::default());
            for (ts, data) in &reordered {
                if let Ok(seg) = parse_frame(linktype::ETHERNET, *ts, data) {
                    t.segment(&seg);
                }
            }
            t.close_all();
            assert_eq!(t.handler().gaps, 0);
            black_box(t.handler().bytes)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
