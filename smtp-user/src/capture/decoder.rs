//! Frames of a capture file → TCP [`Segment`]s as the receiver's stack
//! saw them: IP fragments reassembled ([`super::ipfrag`]) and the TCP
//! checksum verified or not, per [`ChecksumMode`].
//!
//! [`super::wire::parse_frame`] is the stateless half (one frame, one
//! segment); the [`Decoder`] adds the state a capture needs: datagrams in
//! progress and the checksum decision.

use super::ipfrag::{FragConfig, FragStats, Reassembler};
use super::wire::{ip_packet, tcp_checksum, tcp_segment, Skip};
use super::{Checksum, Segment};

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksumSample {
    /// Segments verified (whole, unfragmented).
    pub checked: u64,
    pub bad: u64,
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
                if tcp_checksum(ip.src, ip.dst, ip.payload) == Checksum::Bad {
                    self.bad += 1;
                }
            }
        }
        self.checked < AUTO_SAMPLE
    }

    /// Verification is worth it: the capture is not offloaded.
    pub fn verify(&self) -> bool {
        self.bad == 0 || self.checked / self.bad >= AUTO_INVALID_RATIO
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

/// Stateful frame decoder for capture files.
#[derive(Debug)]
pub struct Decoder {
    /// Verify checksums (the mode, with `Auto` decided).
    verify: bool,
    frags: Reassembler,
    /// The last reassembled datagram (segments borrow from it).
    datagram: Vec<u8>,
    checksum: [u64; 3],
}

impl Decoder {
    /// `verify`: check TCP checksums (`On`, or `Auto` decided by a
    /// [`ChecksumSample`]).
    pub fn new(verify: bool, frags: FragConfig) -> Decoder {
        Decoder {
            verify,
            frags: Reassembler::new(frags),
            datagram: Vec::new(),
            checksum: [0; 3],
        }
    }

    /// Changes the checksum decision (a new file of the replay).
    pub fn set_verify(&mut self, verify: bool) {
        self.verify = verify;
    }

    pub fn verifies(&self) -> bool {
        self.verify
    }

    pub fn stats(&self) -> DecodeStats {
        DecodeStats {
            checksum_good: self.checksum[0],
            checksum_bad: self.checksum[1],
            checksum_unknown: self.checksum[2],
            fragments: self.frags.stats().clone(),
        }
    }

    /// Gives up datagrams whose time is over at capture time `now`.
    pub fn expire(&mut self, now: u64) {
        self.frags.expire(now);
    }

    /// End of the capture: incomplete datagrams count as timed out.
    pub fn finish(&mut self) {
        self.frags.finish();
    }

    /// The TCP segment in one frame, or in the datagram it completes.
    /// `Ok(None)`: a fragment was taken (held, or dropped and counted in
    /// [`DecodeStats::fragments`]).
    pub fn decode<'a>(
        &'a mut self,
        linktype: u32,
        ts_micros: u64,
        frame: &'a [u8],
    ) -> Result<Option<Segment<'a>>, Skip> {
        let ip = ip_packet(linktype, frame)?;
        if ip.proto != IPPROTO_TCP {
            return Err(Skip::NotTcp);
        }
        let (src, dst) = (ip.src, ip.dst);
        let (tcp, wire_len) = match ip.fragment {
            None => (ip.payload, ip.wire_len),
            Some(f) => match self.frags.insert(ts_micros, &ip, f, &mut self.datagram) {
                Some(_) => (&self.datagram[..], self.datagram.len()),
                None => return Ok(None),
            },
        };
        let mut seg = tcp_segment(ts_micros, src, dst, tcp, wire_len)?;
        seg.checksum = if self.verify && seg.uncaptured == 0 {
            tcp_checksum(src, dst, tcp)
        } else {
            Checksum::Unknown
        };
        let i = match seg.checksum {
            Checksum::Good => 0,
            Checksum::Bad => 1,
            Checksum::Unknown => 2,
        };
        if let Some(c) = self.checksum.get_mut(i) {
            *c += 1;
        }
        Ok(Some(seg))
    }
}
