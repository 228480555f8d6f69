//! Frames of a capture file → TCP [`Segment`]s as the receiver's stack
//! saw them: IP fragments reassembled ([`super::ipfrag`]) and the TCP
//! checksum verified or not, per [`ChecksumMode`].
//!
//! [`super::wire::parse_frame`] is the stateless half (one frame, one
//! segment); the [`Decoder`] adds the state a capture needs: datagrams in
//! progress and the checksum decision.

use super::ipfrag::{FragConfig, FragOverlap, FragStats, Reassembler};
use super::wire::{ip_packet, tcp_checksum, tcp_segment, Skip};
use super::{Checksum, Segment};
use std::net::IpAddr;

/// IP protocol number of TCP.
const IPPROTO_TCP: u8 = 6;

/// Whether TCP checksums are verified (`replay --checksum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ChecksumMode {
    /// Verify unless the capture looks offloaded: like Suricata's
    /// `checksum-checks: auto`, sample the first [`AUTO_SAMPLE`] TCP
    /// segments and verify only if fewer than one in
    /// [`AUTO_INVALID_RATIO`] is wrong. The sample is taken before the
    /// replay (see [`ChecksumSample`]), so no segment is judged before the
    /// decision.
    #[default]
    Auto,
    /// Verify every segment: bad ones are [`Checksum::Bad`] (and ignored by
    /// reassembly, as the receiver ignores them).
    On,
    /// Verify nothing: every segment is [`Checksum::Unknown`].
    Off,
}

/// TCP segments sampled by [`ChecksumMode::Auto`] (Suricata's
/// `CHECKSUM_SAMPLE_COUNT`).
pub const AUTO_SAMPLE: u64 = 1000;
/// Verification stays on while fewer than 1 in this many sampled segments
/// are wrong (Suricata's `CHECKSUM_INVALID_RATIO`).
pub const AUTO_INVALID_RATIO: u64 = 10;

/// Checksums of the first TCP segments of a capture, for
/// [`ChecksumMode::Auto`].
///
/// Besides Suricata's file-wide ratio, the sample finds *offloaded
/// senders*: a capture taken on a host whose NIC computes checksums shows
/// that host's own segments with wrong checksums, although the wire
/// carried right ones. A sender is offloaded when every sampled segment of
/// it is wrong **and** the peer answered one of its wrong handshake
/// segments (a SYN answered by a SYN-ACK, a SYN-ACK answered by an ACK):
/// the receiver's stack discards a segment whose checksum is really wrong,
/// so an answer proves the wire copy was right. An attacker cannot earn the
/// exemption with junk: its segments would have to be answered. The
/// segments of offloaded senders are not verified ([`Checksum::Unknown`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChecksumSample {
    /// Segments verified (whole, unfragmented).
    pub checked: u64,
    pub bad: u64,
    /// Per sender in the sample (at most [`MAX_SAMPLED_SENDERS`]).
    senders: Vec<SenderSample>,
    /// Wrong-checksum handshake segments awaiting an answer (at most
    /// [`MAX_SAMPLED_SENDERS`]).
    handshakes: Vec<Handshake>,
}

/// Senders (and unanswered handshakes) the auto sample keeps track of.
pub const MAX_SAMPLED_SENDERS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
struct SenderSample {
    addr: IpAddr,
    checked: u32,
    bad: u32,
    /// The peer answered one of its wrong-checksum handshake segments.
    answered: bool,
}

/// A wrong-checksum SYN or SYN-ACK: `src:sport → dst:dport`, answered by a
/// segment the other way acknowledging `seq + 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Handshake {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
}

/// The fields of a TCP header the sample needs.
struct TcpHead {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
}

fn tcp_head(b: &[u8]) -> Option<TcpHead> {
    let be16 = |i: usize| Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
    let be32 = |i: usize| {
        Some(u32::from_be_bytes([
            *b.get(i)?,
            *b.get(i + 1)?,
            *b.get(i + 2)?,
            *b.get(i + 3)?,
        ]))
    };
    Some(TcpHead {
        sport: be16(0)?,
        dport: be16(2)?,
        seq: be32(4)?,
        ack: be32(8)?,
        flags: *b.get(13)?,
    })
}

impl ChecksumSample {
    /// Counts frame `frame` of link type `linktype`; false once the sample
    /// is complete.
    pub fn add(&mut self, linktype: u32, frame: &[u8]) -> bool {
        if self.checked >= AUTO_SAMPLE {
            return false;
        }
        if let Ok(ip) = ip_packet(linktype, frame) {
            if ip.fragment.is_none()
                && ip.proto == IPPROTO_TCP
                && ip.payload.len() == ip.wire_len
                && ip.wire_len >= 20
            {
                self.checked += 1;
                let bad = tcp_checksum(ip.src, ip.dst, ip.payload) == Checksum::Bad;
                if bad {
                    self.bad += 1;
                }
                if let Some(h) = tcp_head(ip.payload) {
                    self.sender(ip.src, ip.dst, bad, &h);
                }
            }
        }
        self.checked < AUTO_SAMPLE
    }

    fn sender(&mut self, src: IpAddr, dst: IpAddr, bad: bool, h: &TcpHead) {
        const SYN: u8 = 0x02;
        const ACK: u8 = 0x10;
        // An answer: this segment acknowledges a waiting wrong handshake.
        if h.flags & ACK != 0 {
            if let Some(i) = self.handshakes.iter().position(|w| {
                w.dst == src
                    && w.dport == h.sport
                    && w.sport == h.dport
                    && w.seq.wrapping_add(1) == h.ack
            }) {
                let w = self.handshakes.swap_remove(i);
                if let Some(s) = self.senders.iter_mut().find(|s| s.addr == w.src) {
                    s.answered = true;
                }
            }
        }
        let i = match self.senders.iter().position(|s| s.addr == src) {
            Some(i) => i,
            None if self.senders.len() < MAX_SAMPLED_SENDERS => {
                self.senders.push(SenderSample {
                    addr: src,
                    checked: 0,
                    bad: 0,
                    answered: false,
                });
                self.senders.len() - 1
            }
            None => return,
        };
        if let Some(s) = self.senders.get_mut(i) {
            s.checked += 1;
            s.bad += u32::from(bad);
        }
        if bad && h.flags & SYN != 0 && self.handshakes.len() < MAX_SAMPLED_SENDERS {
            self.handshakes.push(Handshake {
                src,
                dst,
                sport: h.sport,
                dport: h.dport,
                seq: h.seq,
            });
        }
    }

    /// Verification is worth it: the capture is not offloaded.
    pub fn verify(&self) -> bool {
        self.bad == 0 || self.checked / self.bad >= AUTO_INVALID_RATIO
    }

    /// Senders whose checksums were offloaded (see the type's doc).
    pub fn offloaded(&self) -> Vec<IpAddr> {
        self.senders
            .iter()
            .filter(|s| s.answered && s.checked > 0 && s.bad == s.checked)
            .map(|s| s.addr)
            .collect()
    }
}

/// Counters of a [`Decoder`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Segments whose checksum was verified right, and wrong.
    pub checksum_good: u64,
    pub checksum_bad: u64,
    /// Segments not verified (verification off, or bytes not captured).
    pub checksum_unknown: u64,
    /// IP reassembly.
    pub fragments: FragStats,
}

impl DecodeStats {
    /// Adds `other`'s counts (another worker's share of the same capture).
    pub fn merge(&mut self, o: &DecodeStats) {
        // Every field named: a new counter cannot be forgotten here.
        let DecodeStats {
            checksum_good,
            checksum_bad,
            checksum_unknown,
            fragments,
        } = o;
        self.checksum_good += *checksum_good;
        self.checksum_bad += *checksum_bad;
        self.checksum_unknown += *checksum_unknown;
        self.fragments.merge(fragments);
    }

    /// Judges `seg`, parsed from `tcp`, and counts the verdict.
    pub fn check(&mut self, tcp: &TcpBytes<'_>, seg: &Segment<'_>) -> Checksum {
        let c = if tcp.verify && seg.uncaptured == 0 {
            tcp_checksum(tcp.src, tcp.dst, tcp.tcp)
        } else {
            Checksum::Unknown
        };
        match c {
            Checksum::Good => self.checksum_good += 1,
            Checksum::Bad => self.checksum_bad += 1,
            Checksum::Unknown => self.checksum_unknown += 1,
        }
        c
    }
}

/// The TCP header and data of one frame, or of the datagram its fragment
/// completed: the unit a replay dispatches to its workers.
#[derive(Debug, Clone, Copy)]
pub struct TcpBytes<'a> {
    pub ts_micros: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The TCP bytes present in the capture.
    pub tcp: &'a [u8],
    /// Their length on the wire (may exceed `tcp.len()`: snaplen).
    pub wire_len: usize,
    /// The checksum is to be verified (per the file's decision and the
    /// sender's offload).
    pub verify: bool,
}

impl<'a> TcpBytes<'a> {
    /// The segment these bytes carry; its checksum is [`Checksum::Unknown`]
    /// (see [`DecodeStats::check`]).
    pub fn segment(&self) -> Result<Segment<'a>, Skip> {
        tcp_segment(self.ts_micros, self.src, self.dst, self.tcp, self.wire_len)
    }
}

/// Stateful frame decoder for capture files.
#[derive(Debug)]
pub struct Decoder {
    /// Verify checksums (the mode, with `Auto` decided).
    verify: bool,
    /// Senders not verified although `verify` (offloaded, see
    /// [`ChecksumSample::offloaded`]).
    offloaded: Vec<IpAddr>,
    frags: Reassembler,
    /// The last reassembled datagram (segments borrow from it).
    datagram: Vec<u8>,
    /// Checksum verdicts of [`Decoder::decode`] (fragments unused).
    checksums: DecodeStats,
}

impl Decoder {
    /// `verify`: check TCP checksums (`On`, or `Auto` decided by a
    /// [`ChecksumSample`]).
    pub fn new(verify: bool, frags: FragConfig) -> Decoder {
        Decoder {
            verify,
            offloaded: Vec::new(),
            frags: Reassembler::new(frags),
            datagram: Vec::new(),
            checksums: DecodeStats::default(),
        }
    }

    /// Changes the checksum decision (a new file of the replay).
    pub fn set_verify(&mut self, verify: bool) {
        self.verify = verify;
    }

    /// Senders whose segments are not verified (offloaded checksums).
    pub fn set_offloaded(&mut self, senders: Vec<IpAddr>) {
        self.offloaded = senders;
    }

    pub fn verifies(&self) -> bool {
        self.verify
    }

    pub fn stats(&self) -> DecodeStats {
        DecodeStats {
            fragments: self.frags.stats().clone(),
            ..self.checksums.clone()
        }
    }

    /// The datagram the last [`Decoder::decode`] discarded because its
    /// fragments overlapped (Linux discards it too), once: the caller
    /// reports it as an anomaly.
    pub fn take_overlap(&mut self) -> Option<FragOverlap> {
        self.frags.take_overlap()
    }

    /// Gives up datagrams whose time is over at capture time `now`.
    pub fn expire(&mut self, now: u64) {
        self.frags.expire(now);
    }

    /// End of the capture: incomplete datagrams count as timed out.
    pub fn finish(&mut self) {
        self.frags.finish();
    }

    /// The TCP bytes of one frame, or of the datagram it completes.
    /// `Ok(None)`: a fragment was taken (held, or dropped and counted in
    /// [`DecodeStats::fragments`]).
    pub fn tcp_bytes<'a>(
        &'a mut self,
        linktype: u32,
        ts_micros: u64,
        frame: &'a [u8],
    ) -> Result<Option<TcpBytes<'a>>, Skip> {
        self.split().0.bytes(linktype, ts_micros, frame)
    }

    /// The TCP segment in one frame, or in the datagram it completes,
    /// its checksum judged. `Ok(None)`: a fragment was taken (held, or
    /// dropped and counted in [`DecodeStats::fragments`]).
    pub fn decode<'a>(
        &'a mut self,
        linktype: u32,
        ts_micros: u64,
        frame: &'a [u8],
    ) -> Result<Option<Segment<'a>>, Skip> {
        let (ip, checksums) = self.split();
        let Some(t) = ip.bytes(linktype, ts_micros, frame)? else {
            return Ok(None);
        };
        let mut seg = t.segment()?;
        seg.checksum = checksums.check(&t, &seg);
        Ok(Some(seg))
    }

    /// The IP half and the checksum counters, borrowed apart.
    fn split(&mut self) -> (IpHalf<'_>, &mut DecodeStats) {
        (
            IpHalf {
                verify: self.verify,
                offloaded: &self.offloaded,
                frags: &mut self.frags,
                datagram: &mut self.datagram,
            },
            &mut self.checksums,
        )
    }
}

/// The IP layer of a [`Decoder`]: frames to TCP bytes.
struct IpHalf<'d> {
    verify: bool,
    offloaded: &'d [IpAddr],
    frags: &'d mut Reassembler,
    datagram: &'d mut Vec<u8>,
}

impl<'d> IpHalf<'d> {
    fn bytes<'a>(
        self,
        linktype: u32,
        ts_micros: u64,
        frame: &'a [u8],
    ) -> Result<Option<TcpBytes<'a>>, Skip>
    where
        'd: 'a,
    {
        let ip = ip_packet(linktype, frame)?;
        if ip.proto != IPPROTO_TCP {
            return Err(Skip::NotTcp);
        }
        let (tcp, wire_len) = match ip.fragment {
            None => (ip.payload, ip.wire_len),
            Some(f) => match self.frags.insert(ts_micros, &ip, f, self.datagram) {
                Some(_) => (&self.datagram[..], self.datagram.len()),
                None => return Ok(None),
            },
        };
        Ok(Some(TcpBytes {
            ts_micros,
            src: ip.src,
            dst: ip.dst,
            tcp,
            wire_len,
            verify: self.verify && !self.offloaded.contains(&ip.src),
        }))
    }
}
