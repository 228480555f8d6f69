//! Rebuilds each direction's byte stream from records (test oracle).

use std::{collections::BTreeMap, net::SocketAddr};

use crate::OwnedRecord;

/// One direction of a connection as seen by the monitor.
#[derive(Debug, Default)]
pub struct Stream {
    pub syn: bool,
    pub fin: bool,
    /// Contiguous bytes from the first payload byte.
    pub bytes: Vec<u8>,
    /// Bytes the kernel reported as not captured.
    pub uncaptured: u64,
    /// True when pieces were missing: a hole before the last captured byte,
    /// or before the FIN.
    pub hole: bool,
    /// Stream offset of the FIN (relative to the first payload byte).
    pub fin_at: Option<usize>,
    /// Largest `payload_len` of any segment.
    pub max_segment: u32,
}

/// The stream sent by `src` to `dst`, assembled from `records`.
pub fn streams(records: &[OwnedRecord], src: SocketAddr, dst: SocketAddr) -> Stream {
    let mine: Vec<&OwnedRecord> = records
        .iter()
        .filter(|r| r.src == src && r.dst == dst)
        .collect();
    let mut s = Stream::default();
    let isn = mine
        .iter()
        .find(|r| r.header.tcp_flags & 0x02 != 0)
        .map(|r| r.header.seq);
    s.syn = isn.is_some();
    s.fin = mine.iter().any(|r| r.header.tcp_flags & 0x01 != 0);
    let Some(isn) = isn else {
        return s;
    };
    let mut pieces: BTreeMap<u32, &[u8]> = BTreeMap::new();
    for r in &mine {
        s.uncaptured += u64::from(r.header.uncaptured);
        s.max_segment = s.max_segment.max(r.header.payload_len);
        if r.payload.is_empty() {
            continue;
        }
        let rel = r
            .header
            .seq
            .wrapping_add(r.header.offset)
            .wrapping_sub(isn.wrapping_add(1));
        pieces.insert(rel, &r.payload);
    }
    s.fin_at = mine
        .iter()
        .find(|r| r.header.tcp_flags & 0x01 != 0)
        .map(|r| {
            r.header
                .seq
                .wrapping_add(r.header.payload_len)
                .wrapping_sub(isn.wrapping_add(1)) as usize
        });
    for (rel, p) in pieces {
        let rel = rel as usize;
        if rel > s.bytes.len() {
            s.hole = true;
            break;
        }
        let end = rel + p.len();
        if end > s.bytes.len() {
            s.bytes.extend_from_slice(&p[s.bytes.len() - rel..]);
        }
    }
    if s.fin_at.is_some_and(|f| f > s.bytes.len()) {
        s.hole = true;
    }
    s
}
