//! IP reassembly for `replay`, IPv4 and IPv6, as Linux does it: a replayed
//! capture then shows what the server's stack delivered.
//!
//! Linux's rules (`net/ipv4/inet_fragment.c` `inet_frag_queue_insert`,
//! `ip_fragment.c`, `ipv6/reassembly.c`), followed here:
//!
//! - A fragment that lies entirely inside a run of data already received
//!   is a duplicate: ignored, whatever its bytes (first data wins).
//! - A fragment that overlaps received data only in part discards the
//!   whole datagram (`IPSTATS_MIB_REASM_OVERLAPS`; RFC 5722 for IPv6,
//!   and Linux does the same for IPv4 since 4.19). Counted in
//!   [`FragStats::overlaps`]: the monitor and the server both drop it.
//! - A last fragment that ends before data already received, or a second
//!   last fragment with another end, or data beyond a known end, or an
//!   empty fragment, discards the datagram ([`FragStats::malformed`]).
//! - IPv4: a non-last fragment's length is cut down to a multiple of 8;
//!   IPv6: such a fragment is dropped. IPv6: a first fragment that does not
//!   hold the whole TCP header is dropped (RFC 7112,
//!   `ipv6_frag_thdr_truncated`).
//! - A datagram is given up `timeout` after its first fragment
//!   (`ipfrag_time`, 30 s), and may not exceed 65,535 bytes of IP packet.
//! - Memory: while the fragments held exceed `memcap` (`ipfrag_high_thresh`,
//!   4 MiB) every new fragment is dropped ([`FragStats::memcap_drops`]).
//!
//! Each datagram discarded for an overlap is also handed out once as a
//! [`FragOverlap`] ([`Reassembler::take_overlap`]), for the
//! `decoder.ipv4.frag_overlap` / `decoder.ipv6.frag_overlap` anomaly.
//!
//! Memory is charged as the bytes of each held fragment plus a fixed
//! overhead per fragment and per datagram, so that many tiny fragments
//! cannot hold more than `memcap`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::wire::{Fragment, IpPacket};

/// Reassembly limits.
#[derive(Debug, Clone, Copy)]
pub struct FragConfig {
    /// A datagram not complete this long after its first fragment is
    /// dropped (capture time, microseconds).
    pub timeout_micros: u64,
    /// Bytes held at most, fragments and overhead.
    pub memcap: usize,
}

impl Default for FragConfig {
    fn default() -> Self {
        FragConfig {
            timeout_micros: 30_000_000,
            memcap: 4 << 20,
        }
    }
}

/// Reassembly counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FragStats {
    /// Fragments given to the reassembler.
    pub fragments: u64,
    /// Datagrams completed and delivered.
    pub reassembled: u64,
    /// Datagrams given up after the timeout (their fragments are dropped).
    pub timed_out: u64,
    /// Datagrams discarded because a fragment overlapped received data in
    /// part (what Linux does): an anomaly, as only an evasion attempt or a
    /// broken stack sends them.
    pub overlaps: u64,
    /// Fragments ignored because their bytes were all received already.
    pub duplicates: u64,
    /// Datagrams discarded for inconsistent ends, empty fragments or an IP
    /// packet over 65,535 bytes; and fragments dropped for an unaligned
    /// length (IPv6) or a first fragment without the whole TCP header (IPv6).
    pub malformed: u64,
    /// Fragments dropped because the memory limit was reached.
    pub memcap_drops: u64,
    /// Fragments dropped because the capture holds only part of them
    /// (snaplen): reassembly would invent bytes.
    pub uncaptured: u64,
    /// Bytes held now, and the peak.
    pub held_bytes: usize,
    pub held_peak: usize,
}

impl FragStats {
    /// Adds `other`'s counts; the held bytes and peaks add up (an upper
    /// bound of the peak of the sum).
    pub fn merge(&mut self, o: &FragStats) {
        // Every field named: a new counter cannot be forgotten here.
        let FragStats {
            fragments,
            reassembled,
            timed_out,
            overlaps,
            duplicates,
            malformed,
            memcap_drops,
            uncaptured,
            held_bytes,
            held_peak,
        } = o;
        self.fragments += *fragments;
        self.reassembled += *reassembled;
        self.timed_out += *timed_out;
        self.overlaps += *overlaps;
        self.duplicates += *duplicates;
        self.malformed += *malformed;
        self.memcap_drops += *memcap_drops;
        self.uncaptured += *uncaptured;
        self.held_bytes += *held_bytes;
        self.held_peak += *held_peak;
    }
}

/// A datagram discarded because its fragments overlapped in part: what
/// the anomaly event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragOverlap {
    /// Capture time of the fragment that overlapped.
    pub ts_micros: u64,
    /// The datagram's addresses (packet direction).
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP identification (IPv6: the fragment header's).
    pub ident: u32,
    /// TCP source and destination ports, when a held or the overlapping
    /// fragment starts the datagram (later fragments carry no ports).
    pub ports: Option<(u16, u16)>,
}

/// Charged per held fragment beyond its bytes (Linux charges the skb).
const FRAGMENT_OVERHEAD: usize = 64;
/// Charged per datagram in progress.
const QUEUE_OVERHEAD: usize = 256;
/// Largest IP packet (header included).
const MAX_IP_PACKET: u32 = 65_535;
/// Minimal TCP header, which the first IPv6 fragment must hold.
const TCP_HEADER: usize = 20;

/// Which datagram a fragment belongs to (Linux: addresses, identification,
/// and for IPv4 the protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    ident: u32,
    proto: u8,
}

/// One datagram being reassembled.
#[derive(Debug)]
struct Queue {
    /// Capture time of its first fragment.
    created: u64,
    /// Held fragments by offset; they never overlap.
    frags: Vec<(u32, Vec<u8>)>,
    /// Runs of contiguous data `[start, end)`, sorted, disjoint: a run grows
    /// only by a fragment appended right at the end of the last run, as in
    /// Linux (so the duplicate test matches its `frag_run_len`).
    runs: Vec<(u32, u32)>,
    /// Highest end seen (the datagram's length once `last_in`).
    len: u32,
    /// The last fragment (MF clear) was received.
    last_in: bool,
    /// Upper-layer protocol.
    proto: u8,
    /// IP header length of the first fragment (for the 65,535 limit).
    header_len: u32,
    /// Bytes charged to the memory limit for this queue.
    charged: usize,
}

/// What inserting a fragment did.
enum Insert {
    Held,
    Duplicate,
    Discard(Discard),
}

#[derive(Clone, Copy)]
enum Discard {
    Overlap,
    Malformed,
}

/// The reassembler: datagrams in progress, their timers and counters.
#[derive(Debug, Default)]
pub struct Reassembler {
    config: FragConfig,
    queues: HashMap<Key, Queue>,
    /// (created, key) in creation order, for timeouts.
    timers: VecDeque<(u64, Key)>,
    stats: FragStats,
    /// The datagram the last [`Reassembler::insert`] discarded for an
    /// overlap, until taken.
    overlap: Option<FragOverlap>,
}

impl Reassembler {
    pub fn new(config: FragConfig) -> Reassembler {
        Reassembler {
            config,
            ..Reassembler::default()
        }
    }

    pub fn stats(&self) -> &FragStats {
        &self.stats
    }

    /// The datagram the last fragment discarded for an overlap, once.
    pub fn take_overlap(&mut self) -> Option<FragOverlap> {
        self.overlap.take()
    }

    /// Datagrams in progress.
    pub fn pending(&self) -> usize {
        self.queues.len()
    }

    /// Gives up datagrams older than the timeout at capture time `now`.
    pub fn expire(&mut self, now: u64) {
        while let Some(&(created, key)) = self.timers.front() {
            if now.saturating_sub(created) < self.config.timeout_micros {
                break;
            }
            self.timers.pop_front();
            if self.queues.get(&key).is_some_and(|q| q.created == created) {
                self.remove(&key);
                self.stats.timed_out += 1;
            }
        }
    }

    /// Gives up every datagram in progress (end of the capture): they
    /// count as timed out.
    pub fn finish(&mut self) {
        self.stats.timed_out += self.queues.len() as u64;
        self.queues.clear();
        self.timers.clear();
        self.stats.held_bytes = 0;
    }

    /// Adds fragment `frag` of packet `ip` captured at `ts`. When it
    /// completes its datagram, the datagram's payload (the upper-layer
    /// header and data) is written to `out` and its protocol returned.
    pub fn insert(
        &mut self,
        ts: u64,
        ip: &IpPacket<'_>,
        frag: Fragment,
        out: &mut Vec<u8>,
    ) -> Option<u8> {
        self.stats.fragments += 1;
        self.overlap = None;
        self.expire(ts);
        if ip.payload.len() < ip.wire_len {
            self.stats.uncaptured += 1;
            return None;
        }
        if self.stats.held_bytes > self.config.memcap {
            self.stats.memcap_drops += 1;
            return None;
        }
        let v6 = ip.src.is_ipv6();
        let mut data = ip.payload;
        let offset = frag.offset;
        let Some(mut end) = u32::try_from(data.len())
            .ok()
            .and_then(|l| offset.checked_add(l))
        else {
            self.stats.malformed += 1;
            return None;
        };
        if frag.more && !end.is_multiple_of(8) {
            if v6 {
                // ip6_frag_queue: "RFC2460 says always send parameter problem".
                self.stats.malformed += 1;
                return None;
            }
            end &= !7;
            data = data
                .get(..(end.saturating_sub(offset)) as usize)
                .unwrap_or_default();
        }
        if v6 && offset == 0 && data.len() < TCP_HEADER {
            self.stats.malformed += 1;
            return None;
        }
        let key = Key {
            src: ip.src,
            dst: ip.dst,
            ident: frag.ident,
            proto: if v6 { 0 } else { ip.proto },
        };
        let queue = self.queues.entry(key).or_insert_with(|| {
            self.timers.push_back((ts, key));
            Queue {
                created: ts,
                frags: Vec::new(),
                runs: Vec::new(),
                len: 0,
                last_in: false,
                proto: ip.proto,
                header_len: if v6 { 40 } else { 20 },
                charged: 0,
            }
        });
        match queue.insert(offset, end, frag.more, data) {
            Insert::Held => {}
            Insert::Duplicate => {
                self.stats.duplicates += 1;
                return None;
            }
            Insert::Discard(why) => {
                match why {
                    Discard::Overlap => {
                        self.stats.overlaps += 1;
                        let ports = queue.ports().or_else(|| ports_at(offset, data));
                        self.overlap = Some(FragOverlap {
                            ts_micros: ts,
                            src: ip.src,
                            dst: ip.dst,
                            ident: frag.ident,
                            ports,
                        });
                    }
                    Discard::Malformed => self.stats.malformed += 1,
                }
                self.remove(&key);
                return None;
            }
        }
        let charged = queue.charge();
        let delta = charged.saturating_sub(queue.charged);
        queue.charged = charged;
        self.stats.held_bytes += delta;
        self.stats.held_peak = self.stats.held_peak.max(self.stats.held_bytes);
        if !queue.complete() {
            return None;
        }
        let proto = queue.proto;
        out.clear();
        for (_, bytes) in &queue.frags {
            out.extend_from_slice(bytes);
        }
        self.remove(&key);
        self.stats.reassembled += 1;
        Some(proto)
    }

    fn remove(&mut self, key: &Key) {
        if let Some(q) = self.queues.remove(key) {
            self.stats.held_bytes = self.stats.held_bytes.saturating_sub(q.charged);
        }
    }
}

/// The TCP ports at the start of a datagram's payload, if `data` (at
/// `offset`) holds them.
fn ports_at(offset: u32, data: &[u8]) -> Option<(u16, u16)> {
    match (offset, data) {
        (0, [a, b, c, d, ..]) => Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))),
        _ => None,
    }
}

impl Queue {
    /// The TCP ports, if the first fragment is held.
    fn ports(&self) -> Option<(u16, u16)> {
        self.frags.first().and_then(|(o, d)| ports_at(*o, d))
    }

    /// Bytes this queue holds, with overheads.
    fn charge(&self) -> usize {
        QUEUE_OVERHEAD
            + self
                .frags
                .iter()
                .map(|(_, b)| b.capacity() + FRAGMENT_OVERHEAD)
                .sum::<usize>()
    }

    /// Every byte up to the last fragment's end is here.
    fn complete(&self) -> bool {
        let mut next = 0;
        for &(s, e) in &self.runs {
            if s != next {
                return false;
            }
            next = e;
        }
        self.last_in && next == self.len
    }

    /// Linux's `ip_frag_queue` / `ip6_frag_queue` end checks, then
    /// `inet_frag_queue_insert`.
    fn insert(&mut self, offset: u32, end: u32, more: bool, data: &[u8]) -> Insert {
        if end + self.header_len > MAX_IP_PACKET {
            return Insert::Discard(Discard::Malformed);
        }
        if !more {
            // A last fragment ending before data we have, or a second one
            // with another end: corrupt.
            if end < self.len || (self.last_in && end != self.len) {
                return Insert::Discard(Discard::Malformed);
            }
            self.last_in = true;
            self.len = end;
        } else if end > self.len {
            if self.last_in {
                return Insert::Discard(Discard::Malformed);
            }
            self.len = end;
        }
        if end == offset {
            return Insert::Discard(Discard::Malformed);
        }
        match self.runs.last_mut() {
            None => self.runs.push((offset, end)),
            Some(last) if last.1 < end => {
                if offset < last.1 {
                    return Insert::Discard(Discard::Overlap);
                }
                if offset == last.1 {
                    last.1 = end;
                } else {
                    self.runs.push((offset, end));
                }
            }
            Some(_) => {
                // Somewhere before the end: inside one run (duplicate),
                // across any received byte (overlap), or in a hole.
                let at = self.runs.partition_point(|r| r.1 <= offset);
                match self.runs.get(at) {
                    Some(&(s, e)) if s < end => {
                        return if offset >= s && end <= e {
                            Insert::Duplicate
                        } else {
                            Insert::Discard(Discard::Overlap)
                        };
                    }
                    _ => self.runs.insert(at, (offset, end)),
                }
            }
        }
        let at = self.frags.partition_point(|f| f.0 < offset);
        self.frags.insert(at, (offset, data.to_vec()));
        Insert::Held
    }
}
