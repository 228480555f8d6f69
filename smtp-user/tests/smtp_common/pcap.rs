//! Minimal classic-pcap reader and TCP stream splitter for corpus tests
//! (the real capture/flow modules live elsewhere; this only feeds tests).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use smtp_user::smtp::{OwnedEvent, Session};
use smtp_user::Direction;

/// `../shared/corpus` relative to the workspace root, found by walking up from the crate.
pub fn corpus_dir() -> Option<PathBuf> {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("../shared/corpus");
        if candidate.is_dir() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// Bytes of a corpus pcap, or `None` (after printing "skipped") when absent.
pub fn corpus_pcap(name: &str) -> Option<Vec<u8>> {
    let path = corpus_dir()?.join("pcap").join(name);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(_) => {
            println!("skipped: {} not found", path.display());
            None
        }
    }
}

/// One TCP segment with payload or flags.
struct Segment {
    src: (Vec<u8>, u16),
    dst: (Vec<u8>, u16),
    seq: u32,
    syn: bool,
    payload: Vec<u8>,
}

fn u16be(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn u32be(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(i)?,
        *b.get(i + 1)?,
        *b.get(i + 2)?,
        *b.get(i + 3)?,
    ]))
}

fn parse_packet(linktype: u32, pkt: &[u8]) -> Option<Segment> {
    let ip = match linktype {
        1 => {
            let mut off = 12;
            let mut ethertype = u16be(pkt, off)?;
            while ethertype == 0x8100 {
                off += 4;
                ethertype = u16be(pkt, off)?;
            }
            pkt.get(off + 2..)?
        }
        113 => pkt.get(16..)?,
        101 => pkt,
        _ => return None,
    };
    let version = ip.first()? >> 4;
    let (src, dst, tcp) = match version {
        4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            if *ip.get(9)? != 6 {
                return None;
            }
            let total = usize::from(u16be(ip, 2)?).min(ip.len());
            (
                ip.get(12..16)?.to_vec(),
                ip.get(16..20)?.to_vec(),
                ip.get(ihl..total)?,
            )
        }
        6 => {
            if *ip.get(6)? != 6 {
                return None;
            }
            let len = usize::from(u16be(ip, 4)?);
            (
                ip.get(8..24)?.to_vec(),
                ip.get(24..40)?.to_vec(),
                ip.get(40..(40 + len).min(ip.len()))?,
            )
        }
        _ => return None,
    };
    let sport = u16be(tcp, 0)?;
    let dport = u16be(tcp, 2)?;
    let seq = u32be(tcp, 4)?;
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    let flags = *tcp.get(13)?;
    Some(Segment {
        src: (src, sport),
        dst: (dst, dport),
        seq,
        syn: flags & 0x02 != 0,
        payload: tcp.get(doff..)?.to_vec(),
    })
}

/// Per-direction reassembly state.
#[derive(Default)]
struct Stream {
    next: Option<u32>,
    ooo: BTreeMap<u32, Vec<u8>>,
}

impl Stream {
    /// Returns in-order bytes made available by this segment.
    fn push(&mut self, seg: &Segment) -> Vec<u8> {
        if seg.syn {
            self.next = Some(seg.seq.wrapping_add(1));
        }
        let mut out = Vec::new();
        if seg.payload.is_empty() {
            return out;
        }
        let next = *self.next.get_or_insert(seg.seq);
        let off = seg.seq.wrapping_sub(next) as i32;
        if off > 0 {
            self.ooo.insert(seg.seq, seg.payload.clone());
            return out;
        }
        let skip = (-off) as usize;
        if skip < seg.payload.len() {
            out.extend_from_slice(&seg.payload[skip..]);
        }
        let mut next = next.wrapping_add(out.len() as u32);
        while let Some((&s, _)) = self.ooo.iter().next() {
            let off = s.wrapping_sub(next) as i32;
            if off > 0 {
                break;
            }
            let data = self.ooo.remove(&s).unwrap_or_default();
            let skip = (-off) as usize;
            if skip < data.len() {
                out.extend_from_slice(&data[skip..]);
                next = next.wrapping_add((data.len() - skip) as u32);
            }
        }
        self.next = Some(next);
        out
    }
}

const SMTP_PORTS: [u16; 4] = [25, 587, 2525, 465];

/// (linktype, packet) records of a classic pcap or a pcapng file.
fn packets(bytes: &[u8]) -> Vec<(u32, &[u8])> {
    let u32le = |i: usize| {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut out = Vec::new();
    if u32le(0) == Some(0x0a0d0d0a) {
        // pcapng (little-endian sections only): IDB gives link types, EPB packets.
        let mut links = Vec::new();
        let mut off = 0;
        while let (Some(kind), Some(len)) = (u32le(off), u32le(off + 4)) {
            let len = len as usize;
            if len < 12 {
                break;
            }
            match kind {
                1 => links.push(u32::from(bytes[off + 8]) | (u32::from(bytes[off + 9]) << 8)),
                6 => {
                    let iface = u32le(off + 8).unwrap_or(0) as usize;
                    let caplen = u32le(off + 20).unwrap_or(0) as usize;
                    if let Some(pkt) = bytes.get(off + 28..off + 28 + caplen) {
                        out.push((links.get(iface).copied().unwrap_or(1), pkt));
                    }
                }
                _ => {}
            }
            off += len;
        }
        return out;
    }
    let le = match u32le(0) {
        Some(0xa1b2c3d4 | 0xa1b23c4d) => true,
        Some(0xd4c3b2a1 | 0x4d3cb2a1) => false,
        _ => panic!("not a pcap file"),
    };
    let rd = |i: usize| -> u32 {
        let b = [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let linktype = rd(20);
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let incl = rd(off + 8) as usize;
        let Some(pkt) = bytes.get(off + 16..off + 16 + incl) else {
            break;
        };
        out.push((linktype, pkt));
        off += 16 + incl;
    }
    out
}

/// Runs every SMTP session of a pcap/pcapng file through the dissector;
/// returns one event list per session (in order of first packet).
pub fn dissect_pcap(bytes: &[u8]) -> Vec<Vec<OwnedEvent>> {
    type Key = ((Vec<u8>, u16), (Vec<u8>, u16));
    let mut sessions: HashMap<Key, (usize, Session, Stream, Stream, Vec<OwnedEvent>)> =
        HashMap::new();
    let mut order = 0;
    for (linktype, pkt) in packets(bytes) {
        let Some(seg) = parse_packet(linktype, pkt) else {
            continue;
        };
        let (dir, key) = if SMTP_PORTS.contains(&seg.dst.1) {
            (Direction::Up, (seg.src.clone(), seg.dst.clone()))
        } else if SMTP_PORTS.contains(&seg.src.1) {
            (Direction::Down, (seg.dst.clone(), seg.src.clone()))
        } else {
            continue;
        };
        let entry = sessions.entry(key).or_insert_with(|| {
            order += 1;
            (
                order,
                Session::new(),
                Stream::default(),
                Stream::default(),
                Vec::new(),
            )
        });
        let (_, session, up, down, events) = entry;
        let data = match dir {
            Direction::Up => up.push(&seg),
            Direction::Down => down.push(&seg),
        };
        if !data.is_empty() {
            session.feed(dir, &data, events);
        }
    }
    let mut all: Vec<_> = sessions.into_values().collect();
    all.sort_by_key(|s| s.0);
    all.into_iter()
        .map(|(_, mut session, _, _, mut events)| {
            session.finish(&mut events);
            events
        })
        .collect()
}
