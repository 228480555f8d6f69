//! Honest memory: the out-of-order buffer limits hold for the real heap
//! allocation, measured by a counting allocator (with glibc's chunk
//! rounding), for millions of 1-byte pieces.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};

use smtp_user::capture::{Segment, TcpFlags};
use smtp_user::flow::{CloseReason, FlowConfig, FlowHandler, FlowInfo, FlowStats, FlowTable};
use smtp_user::Direction;

/// Live heap bytes, each allocation counted as glibc's chunk for it.
static LIVE: AtomicIsize = AtomicIsize::new(0);

fn chunk(size: usize) -> isize {
    ((size + 8 + 15) & !15).max(32) as isize
}

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(chunk(l.size()), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(chunk(l.size()), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(chunk(new) - chunk(l.size()), Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Counts what it is given, keeps nothing.
#[derive(Default)]
struct Count {
    bytes: u64,
    gaps: u64,
    /// Gap deliveries (each one a `stream_gap` for the dissector).
    gap_calls: u64,
}

impl FlowHandler for Count {
    type Session = ();
    fn open(&mut self, _: &FlowInfo) {}
    fn data(&mut self, _: &mut (), _: &FlowInfo, _: Direction, _: u64, b: &[u8]) {
        self.bytes += b.len() as u64;
    }
    fn gap(&mut self, _: &mut (), _: &FlowInfo, _: Direction, _: u64, n: u64) {
        self.gaps += n;
        self.gap_calls += 1;
    }
    fn close(&mut self, _: (), _: &FlowInfo, _: &FlowStats, _: CloseReason) {}
}

#[test]
fn a_million_one_byte_pieces_stay_under_the_cap_and_give_few_gaps() {
    const CAP: usize = 16 << 20;
    let config = FlowConfig {
        max_buffer_per_direction: usize::MAX,
        max_buffer_total: CAP,
        ..FlowConfig::default()
    };
    let c: SocketAddr = "198.18.0.1:40000".parse().unwrap();
    let s: SocketAddr = "198.18.0.2:25".parse().unwrap();
    let mut table = FlowTable::new(config, Count::default());
    let seg = |seq: u32, flags: u8, payload: &'static [u8]| Segment {
        ts_micros: 1,
        src: c,
        dst: s,
        seq,
        ack: 1,
        flags: TcpFlags(flags),
        payload,
        uncaptured: 0,
        held: false,
        urgent: 0,
        checksum: Default::default(),
    };
    table.segment(&seg(0, TcpFlags::SYN, b""));
    let base = LIVE.load(Ordering::Relaxed);
    let mut peak = 0isize;
    // Every other byte, never the first: nothing can be delivered.
    let n: u32 = 1_000_000;
    for i in 0..n {
        table.segment(&seg(2 + 2 * i, TcpFlags::ACK, b"x"));
        if i % 4096 == 0 {
            peak = peak.max(LIVE.load(Ordering::Relaxed) - base);
        }
    }
    peak = peak.max(LIVE.load(Ordering::Relaxed) - base);
    let st = table.stats().clone();
    assert!(st.buffered <= CAP, "accounted {} > cap", st.buffered);
    assert!(st.memcap_hits > 0, "the cap was reached");
    // The real heap stays within the cap (plus the B-tree's spare room
    // rounding: 5 %).
    assert!(
        peak as usize <= CAP + CAP / 20,
        "real heap {} MiB for a {} MiB cap",
        peak >> 20,
        CAP >> 20
    );
    // And the accounting is not wildly pessimistic either.
    assert!(
        peak as usize * 2 >= st.buffered_peak,
        "real {peak} vs accounted {}",
        st.buffered_peak
    );
    table.close_all();
    let h = table.handler();
    assert_eq!(h.bytes + h.gaps, 2 * u64::from(n));
    // One gap per run of holes given up (slivers folded in), not one per
    // 1-byte hole: a handful for a million pieces.
    assert!(h.gap_calls <= 64, "{} gaps", h.gap_calls);
    assert!(
        LIVE.load(Ordering::Relaxed) - base < 1 << 20,
        "freed at close"
    );
}
