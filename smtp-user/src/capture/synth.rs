//! Synthetic captures for tests and benchmarks.
//!
//! A [`Conversation`] scripts one TCP session as (direction, bytes) steps;
//! [`Conversation::packets`] cuts it into a handshake, MSS-sized data
//! segments and FINs. Transformations on that packet list model what a
//! capture point sees on a bad day: reordering, duplicates, overlapping
//! (possibly conflicting) retransmissions, packets the receiver got but the
//! capture lost, a capture that starts mid-session. [`render`] then writes
//! Ethernet + IPv4/IPv6 + TCP frames (the shared [`super::builder`],
//! checksums right), computing every ACK number as the
//! receiver would (cumulative contiguous data received so far, lost-in-capture
//! packets included), optionally with a pure ACK after each data packet.
//!
//! [`PcapWriter`] and [`PcapngWriter`] write those frames to files in every
//! variant the readers accept (both byte orders, micro/nanosecond, `if_tsresol`).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;

use super::builder::TcpPacket;
use super::pcap::{MAGIC_MICROS, MAGIC_NANOS};
use super::TcpFlags;
use crate::capture::file::Endian;
use crate::Direction;

/// One scripted TCP session.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// Sender of the SYN. Same address family as `server`.
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Initial sequence numbers (the SYNs' seq); choose near `u32::MAX` to
    /// test wrap-around.
    pub client_isn: u32,
    pub server_isn: u32,
    /// Largest payload per segment, at least 1.
    pub mss: usize,
    /// The application bytes, in the order they are sent.
    pub steps: Vec<(Direction, Vec<u8>)>,
}

/// One TCP packet of a conversation, before rendering (no ACK number yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub dir: Direction,
    /// TCP flags (`TcpFlags::*`); ACK is set by `render` once the sender
    /// has seen the peer's SYN.
    pub flags: u8,
    /// Offset of the first payload byte from ISN+1 of `dir`; −1 for a SYN.
    pub rel: i64,
    pub payload: Vec<u8>,
    /// The receiver got this packet but the capture did not: it is not
    /// written, yet it advances the receiver's ACKs.
    pub lost_in_capture: bool,
}

impl Packet {
    /// Sequence space consumed: payload plus one for SYN and FIN.
    fn seq_len(&self) -> i64 {
        let mut n = self.payload.len() as i64;
        if self.flags & TcpFlags::SYN != 0 {
            n += 1;
        }
        if self.flags & TcpFlags::FIN != 0 {
            n += 1;
        }
        n
    }

    /// True for a segment carrying payload (not SYN/FIN-only).
    pub fn is_data(&self) -> bool {
        !self.payload.is_empty()
    }
}

impl Conversation {
    /// An SMTP-looking conversation on port 25 over IPv4, MSS 1460.
    pub fn new(steps: Vec<(Direction, Vec<u8>)>) -> Conversation {
        Conversation {
            client: SocketAddr::from(([192, 0, 2, 1], 40000)),
            server: SocketAddr::from(([192, 0, 2, 25], 25)),
            client_isn: 1000,
            server_isn: 5000,
            mss: 1460,
            steps,
        }
    }

    /// All bytes sent in direction `dir`, concatenated: what a perfect
    /// reassembly delivers.
    pub fn stream(&self, dir: Direction) -> Vec<u8> {
        self.steps
            .iter()
            .filter(|(d, _)| *d == dir)
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }

    /// Handshake, data segments (at most `mss` bytes each, every step
    /// starting a new segment), then FIN from the client and from the server.
    pub fn packets(&self) -> Vec<Packet> {
        let mss = self.mss.max(1);
        let mut out = vec![
            Packet {
                dir: Direction::Up,
                flags: TcpFlags::SYN,
                rel: -1,
                payload: Vec::new(),
                lost_in_capture: false,
            },
            Packet {
                dir: Direction::Down,
                flags: TcpFlags::SYN,
                rel: -1,
                payload: Vec::new(),
                lost_in_capture: false,
            },
        ];
        let mut sent = [0i64; 2];
        for (dir, bytes) in &self.steps {
            let n = bytes.chunks(mss).count();
            for (i, chunk) in bytes.chunks(mss).enumerate() {
                let off = &mut sent[dir_index(*dir)];
                out.push(Packet {
                    dir: *dir,
                    flags: if i + 1 == n { TcpFlags::PSH } else { 0 },
                    rel: *off,
                    payload: chunk.to_vec(),
                    lost_in_capture: false,
                });
                *off += chunk.len() as i64;
            }
        }
        for dir in [Direction::Up, Direction::Down] {
            out.push(Packet {
                dir,
                flags: TcpFlags::FIN,
                rel: sent[dir_index(dir)],
                payload: Vec::new(),
                lost_in_capture: false,
            });
        }
        out
    }

    /// A retransmission of `len` bytes of `dir`'s stream from offset `rel`;
    /// with `conflicting`, every byte is changed (bitwise not): a first-wins
    /// reassembler must ignore it.
    pub fn retransmission(
        &self,
        dir: Direction,
        rel: usize,
        len: usize,
        conflicting: bool,
    ) -> Packet {
        let stream = self.stream(dir);
        let end = rel.saturating_add(len).min(stream.len());
        let mut payload = stream.get(rel.min(end)..end).unwrap_or_default().to_vec();
        if conflicting {
            payload.iter_mut().for_each(|b| *b = !*b);
        }
        Packet {
            dir,
            flags: 0,
            rel: rel as i64,
            payload,
            lost_in_capture: false,
        }
    }

    fn isn(&self, dir: Direction) -> u32 {
        match dir {
            Direction::Up => self.client_isn,
            Direction::Down => self.server_isn,
        }
    }

    fn endpoints(&self, dir: Direction) -> (SocketAddr, SocketAddr) {
        match dir {
            Direction::Up => (self.client, self.server),
            Direction::Down => (self.server, self.client),
        }
    }
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Up => 0,
        Direction::Down => 1,
    }
}

/// Indices (into `packets`) of the packets carrying payload.
pub fn data_indices(packets: &[Packet]) -> Vec<usize> {
    (0..packets.len())
        .filter(|&i| packets[i].is_data())
        .collect()
}

/// Reorders the data packets among their own positions: the data packet
/// at data-position `i` becomes the one at data-position `order[i]`.
/// `order` must be a permutation of `0..data_indices(packets).len()`;
/// otherwise the list is left unchanged.
pub fn permute_data(packets: &mut [Packet], order: &[usize]) {
    let idx = data_indices(packets);
    let mut seen = vec![false; idx.len()];
    if order.len() != idx.len()
        || order
            .iter()
            .any(|&o| o >= idx.len() || std::mem::replace(&mut seen[o], true))
    {
        return;
    }
    let data: Vec<Packet> = idx.iter().map(|&i| packets[i].clone()).collect();
    for (pos, &o) in order.iter().enumerate() {
        packets[idx[pos]] = data[o].clone();
    }
}

/// Deterministic shuffle of the data packets (xorshift from `seed`).
pub fn shuffle_data(packets: &mut [Packet], seed: u64) {
    let n = data_indices(packets).len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = seed | 1;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    permute_data(packets, &order);
}

/// Swaps every pair of consecutive data packets of the same direction
/// (0↔1, 2↔3, …): mild, realistic reordering.
pub fn swap_pairs(packets: &mut [Packet]) {
    let idx = data_indices(packets);
    let mut i = 0;
    while i + 1 < idx.len() {
        let (a, b) = (idx[i], idx[i + 1]);
        if packets[a].dir == packets[b].dir {
            packets.swap(a, b);
            i += 2;
        } else {
            i += 1;
        }
    }
}

/// Inserts a copy of the `k`-th data packet right after it.
pub fn duplicate_data(packets: &mut Vec<Packet>, k: usize) {
    if let Some(&i) = data_indices(packets).get(k) {
        let p = packets[i].clone();
        packets.insert(i + 1, p);
    }
}

/// Marks the `k`-th data packet lost in capture (the receiver got it).
pub fn lose_data(packets: &mut [Packet], k: usize) {
    if let Some(&i) = data_indices(packets).get(k) {
        packets[i].lost_in_capture = true;
    }
}

/// The capture starts mid-session: the handshake and the first `k` data
/// packets are not captured.
pub fn start_midstream(packets: &mut [Packet], k: usize) {
    let idx = data_indices(packets);
    for p in packets.iter_mut() {
        if p.flags & TcpFlags::SYN != 0 {
            p.lost_in_capture = true;
        }
    }
    for &i in idx.iter().take(k) {
        packets[i].lost_in_capture = true;
    }
}

/// Rendering options.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    /// Timestamp of the first packet, microseconds.
    pub start_ts: u64,
    /// Microseconds between consecutive packets.
    pub step_micros: u64,
    /// Emit a pure ACK from the receiver after each packet consuming
    /// sequence space (data, SYN-ACK, FIN).
    pub pure_acks: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            start_ts: 1_700_000_000_000_000,
            step_micros: 100,
            pure_acks: true,
        }
    }
}

/// A rendered frame: capture time and Ethernet bytes.
pub type TimedFrame = (u64, Vec<u8>);

/// Renders `packets` of `conv` to Ethernet frames, computing ACK numbers
/// from a receiver model (see the module doc).
pub fn render(conv: &Conversation, packets: &[Packet], opts: RenderOptions) -> Vec<TimedFrame> {
    // Per direction: ranges received by the peer (rel start → end) and the
    // contiguous point (next expected rel, −1 before the SYN).
    let mut received: [BTreeMap<i64, i64>; 2] = [BTreeMap::new(), BTreeMap::new()];
    let mut contiguous = [-1i64; 2];
    // Per direction: end (rel) of everything sent so far; −1 before the SYN.
    let mut sent_end = [-1i64; 2];
    let mut out = Vec::with_capacity(packets.len() * 2);
    let mut ts = opts.start_ts;
    for p in packets {
        let d = dir_index(p.dir);
        let back = dir_index(p.dir.reverse());
        let ack_of =
            |contig: i64, dir: Direction| conv.isn(dir).wrapping_add(1).wrapping_add(contig as u32);
        if !p.lost_in_capture {
            let (src, dst) = conv.endpoints(p.dir);
            let mut flags = p.flags;
            let mut ack = 0;
            if contiguous[back] >= 0 {
                flags |= TcpFlags::ACK;
                ack = ack_of(contiguous[back], p.dir.reverse());
            }
            let seq = conv.isn(p.dir).wrapping_add(1).wrapping_add(p.rel as u32);
            out.push((ts, tcp_frame(src, dst, seq, ack, flags, &p.payload)));
            ts += opts.step_micros;
        }
        let end = p.rel + p.seq_len();
        sent_end[d] = sent_end[d].max(end);
        if end > p.rel {
            let e = received[d].entry(p.rel).or_insert(end);
            *e = (*e).max(end);
            // Merge every range that starts at or before the contiguous point.
            while let Some((&s, &e)) = received[d].range(..=contiguous[d]).next() {
                received[d].remove(&s);
                contiguous[d] = contiguous[d].max(e);
            }
            // No ACK before the receiver's own SYN: the SYN-ACK acknowledges the SYN.
            if opts.pure_acks && sent_end[back] >= 0 {
                let (src, dst) = conv.endpoints(p.dir.reverse());
                let seq = conv
                    .isn(p.dir.reverse())
                    .wrapping_add(1)
                    .wrapping_add(sent_end[back] as u32);
                let ack = ack_of(contiguous[d], p.dir);
                out.push((ts, tcp_frame(src, dst, seq, ack, TcpFlags::ACK, &[])));
                ts += opts.step_micros;
            }
        }
    }
    out
}

/// Builds an Ethernet + IPv4/IPv6 + TCP frame with the shared builder
/// ([`super::builder::TcpPacket`]), checksums right. Mixed address families
/// yield an IPv6 frame with v4-mapped addresses.
pub fn tcp_frame(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    TcpPacket::new(src, dst, seq, ack, flags, payload).ethernet()
}

/// Writes classic pcap files.
pub struct PcapWriter<W: Write> {
    w: W,
    endian: Endian,
    nanos: bool,
}

impl<W: Write> PcapWriter<W> {
    /// Little-endian, microsecond resolution.
    pub fn new(w: W, linktype: u32) -> io::Result<Self> {
        Self::with_format(w, linktype, Endian::Little, false)
    }

    /// Any byte order and time resolution.
    pub fn with_format(mut w: W, linktype: u32, endian: Endian, nanos: bool) -> io::Result<Self> {
        let magic = if nanos { MAGIC_NANOS } else { MAGIC_MICROS };
        let mut h = Vec::with_capacity(24);
        for v in [magic, 0x0004_0002, 0, 0, 262_144, linktype] {
            put32(&mut h, endian, v);
        }
        // Version is two u16s (2, 4), not one u32.
        h[4..8].copy_from_slice(&match endian {
            Endian::Little => [2, 0, 4, 0],
            Endian::Big => [0, 2, 0, 4],
        });
        w.write_all(&h)?;
        Ok(PcapWriter { w, endian, nanos })
    }

    /// Writes one record; `orig_len` ≥ `data.len()` models a snaplen cut.
    pub fn write_frame(&mut self, ts_micros: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let mut h = Vec::with_capacity(16);
        let frac = ts_micros % 1_000_000;
        put32(&mut h, self.endian, (ts_micros / 1_000_000) as u32);
        put32(
            &mut h,
            self.endian,
            if self.nanos {
                frac as u32 * 1000
            } else {
                frac as u32
            },
        );
        put32(&mut h, self.endian, data.len() as u32);
        put32(&mut h, self.endian, orig_len);
        self.w.write_all(&h)?;
        self.w.write_all(data)
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

fn put32(v: &mut Vec<u8>, e: Endian, x: u32) {
    v.extend_from_slice(&match e {
        Endian::Little => x.to_le_bytes(),
        Endian::Big => x.to_be_bytes(),
    });
}

fn put16(v: &mut Vec<u8>, e: Endian, x: u16) {
    v.extend_from_slice(&match e {
        Endian::Little => x.to_le_bytes(),
        Endian::Big => x.to_be_bytes(),
    });
}

/// Writes pcapng files (tests of the reader).
pub struct PcapngWriter<W: Write> {
    w: W,
    endian: Endian,
}

impl<W: Write> PcapngWriter<W> {
    /// Writes a section header in byte order `endian`.
    pub fn new(w: W, endian: Endian) -> io::Result<Self> {
        let mut s = PcapngWriter { w, endian };
        s.section()?;
        Ok(s)
    }

    /// Starts a new section (interfaces are forgotten by readers).
    pub fn section(&mut self) -> io::Result<()> {
        let mut body = Vec::new();
        put32(&mut body, self.endian, 0x1A2B_3C4D);
        put16(&mut body, self.endian, 1);
        put16(&mut body, self.endian, 0);
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        self.block(0x0A0D_0D0A, &body)
    }

    /// Declares an interface; `tsresol` is the raw `if_tsresol` byte.
    pub fn interface(&mut self, linktype: u16, tsresol: Option<u8>) -> io::Result<()> {
        let mut body = Vec::new();
        put16(&mut body, self.endian, linktype);
        put16(&mut body, self.endian, 0);
        put32(&mut body, self.endian, 262_144);
        if let Some(r) = tsresol {
            put16(&mut body, self.endian, 9);
            put16(&mut body, self.endian, 1);
            body.extend_from_slice(&[r, 0, 0, 0]);
            put16(&mut body, self.endian, 0);
            put16(&mut body, self.endian, 0);
        }
        self.block(1, &body)
    }

    /// Enhanced Packet Block; `ts` in the interface's units.
    pub fn enhanced_packet(
        &mut self,
        iface: u32,
        ts: u64,
        data: &[u8],
        orig_len: u32,
    ) -> io::Result<()> {
        let mut body = Vec::new();
        put32(&mut body, self.endian, iface);
        put32(&mut body, self.endian, (ts >> 32) as u32);
        put32(&mut body, self.endian, ts as u32);
        put32(&mut body, self.endian, data.len() as u32);
        put32(&mut body, self.endian, orig_len);
        body.extend_from_slice(data);
        body.resize(body.len().next_multiple_of(4), 0);
        self.block(6, &body)
    }

    /// Simple Packet Block (interface 0, no timestamp).
    pub fn simple_packet(&mut self, data: &[u8]) -> io::Result<()> {
        let mut body = Vec::new();
        put32(&mut body, self.endian, data.len() as u32);
        body.extend_from_slice(data);
        body.resize(body.len().next_multiple_of(4), 0);
        self.block(3, &body)
    }

    /// Any block (e.g. an unknown type the reader must skip); `body` is
    /// padded to 4 bytes.
    pub fn block(&mut self, ty: u32, body: &[u8]) -> io::Result<()> {
        let padded = body.len().next_multiple_of(4);
        let total = (12 + padded) as u32;
        let mut b = Vec::with_capacity(total as usize);
        put32(&mut b, self.endian, ty);
        put32(&mut b, self.endian, total);
        b.extend_from_slice(body);
        b.resize(8 + padded, 0);
        put32(&mut b, self.endian, total);
        self.w.write_all(&b)
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

/// A plausible SMTP dialogue whose message body is about `body_len` bytes
/// of 76-character text lines.
pub fn smtp_script(body_len: usize) -> Vec<(Direction, Vec<u8>)> {
    use Direction::{Down, Up};
    let mut body = Vec::with_capacity(body_len + 80);
    body.extend_from_slice(
        b"From: a@example.org\r\nTo: b@example.net\r\nSubject: synthetic\r\n\r\n",
    );
    let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tem\r\n";
    while body.len() < body_len {
        body.extend_from_slice(line);
    }
    body.extend_from_slice(b".\r\n");
    let s = |d, t: &[u8]| (d, t.to_vec());
    vec![
        s(Down, b"220 mx.example.net ESMTP\r\n"),
        s(Up, b"EHLO client.example.org\r\n"),
        s(
            Down,
            b"250-mx.example.net\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
        ),
        s(Up, b"MAIL FROM:<a@example.org>\r\n"),
        s(Down, b"250 2.1.0 Ok\r\n"),
        s(Up, b"RCPT TO:<b@example.net>\r\n"),
        s(Down, b"250 2.1.5 Ok\r\n"),
        s(Up, b"DATA\r\n"),
        s(Down, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
        (Up, body),
        s(Down, b"250 2.0.0 Ok: queued\r\n"),
        s(Up, b"QUIT\r\n"),
        s(Down, b"221 2.0.0 Bye\r\n"),
    ]
}

/// Writes `sessions` SMTP sessions of about `body_len` body bytes each,
/// `concurrent` at a time with their packets interleaved round-robin, as a
/// little-endian microsecond pcap. Session `i` uses client
/// 10.(i>>16).(i>>8).(i) port 1024 + i % 60000 → 192.0.2.25:25. Memory
/// holds one batch of `concurrent` rendered sessions. Returns the frames written.
pub fn write_interleaved<W: Write>(
    w: W,
    sessions: usize,
    concurrent: usize,
    body_len: usize,
    mss: usize,
) -> io::Result<u64> {
    let mut pw = PcapWriter::new(w, super::wire::linktype::ETHERNET)?;
    let script = smtp_script(body_len);
    let mut ts = 1_700_000_000_000_000u64;
    let mut frames = 0;
    let mut next = 0;
    while next < sessions {
        let batch: Vec<Vec<TimedFrame>> = (next..sessions.min(next + concurrent.max(1)))
            .map(|i| {
                let mut c = Conversation::new(script.clone());
                c.client = SocketAddr::from((
                    [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                    1024 + (i % 60000) as u16,
                ));
                c.client_isn = (i as u32).wrapping_mul(2_654_435_761);
                c.server_isn = (i as u32).wrapping_mul(40503).wrapping_add(7);
                c.mss = mss;
                render(&c, &c.packets(), RenderOptions::default())
            })
            .collect();
        next += batch.len();
        let longest = batch.iter().map(Vec::len).max().unwrap_or(0);
        for k in 0..longest {
            for s in &batch {
                if let Some((_, f)) = s.get(k) {
                    pw.write_frame(ts, f, f.len() as u32)?;
                    ts += 10;
                    frames += 1;
                }
            }
        }
    }
    pw.w.flush()?;
    Ok(frames)
}
