//! Decoding of kernel ring-buffer records into [`Segment`]s.
//!
//! A record is a [`RecordHeader`] followed by `captured_len` payload bytes.
//! A segment larger than one record arrives as several records with
//! increasing `offset`; each becomes its own [`Segment`] whose `seq` is the
//! segment's seq plus the offset. Bytes the kernel could not copy are in
//! [`Segment::uncaptured`], never dropped silently.
//!
//! Records are hostile input like packets: every length is checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use smtp_common::{RecordHeader, FAMILY_V4, FAMILY_V6, RECORD_HEADER_LEN};

use super::{Checksum, Segment, TcpFlags};

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its {RECORD_HEADER_LEN}-byte header")]
    Short(usize),
    #[error("record says {said} payload bytes but carries {have}")]
    Length { said: u32, have: usize },
    #[error("record has unknown address family {0}")]
    Family(u8),
    #[error("record piece {offset}+{captured}+{uncaptured} exceeds payload length {total}")]
    Bounds {
        offset: u32,
        captured: u32,
        uncaptured: u32,
        total: u32,
    },
}

/// One decoded record: header plus its payload bytes.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub header: RecordHeader,
    /// Exactly `header.captured_len` bytes.
    pub payload: &'a [u8],
}

impl<'a> Record<'a> {
    /// Validates and splits one raw record.
    pub fn parse(bytes: &'a [u8]) -> Result<Record<'a>, DecodeError> {
        let (head, rest) = bytes
            .split_at_checked(RECORD_HEADER_LEN)
            .ok_or(DecodeError::Short(bytes.len()))?;
        let header: RecordHeader = bytemuck::pod_read_unaligned(head);
        let payload = rest
            .get(..header.captured_len as usize)
            .ok_or(DecodeError::Length {
                said: header.captured_len,
                have: rest.len(),
            })?;
        if header.key.family != FAMILY_V4 && header.key.family != FAMILY_V6 {
            return Err(DecodeError::Family(header.key.family));
        }
        let end = u64::from(header.offset)
            + u64::from(header.captured_len)
            + u64::from(header.uncaptured);
        if end > u64::from(header.payload_len) {
            return Err(DecodeError::Bounds {
                offset: header.offset,
                captured: header.captured_len,
                uncaptured: header.uncaptured,
                total: header.payload_len,
            });
        }
        Ok(Record { header, payload })
    }

    /// Sender and receiver of the segment.
    pub fn endpoints(&self) -> (SocketAddr, SocketAddr) {
        let k = &self.header.key;
        let lo = SocketAddr::new(addr(k.family, &k.lo_addr), k.lo_port);
        let hi = SocketAddr::new(addr(k.family, &k.hi_addr), k.hi_port);
        if self.header.src_is_lo != 0 {
            (lo, hi)
        } else {
            (hi, lo)
        }
    }

    /// True when the receiver's port is monitored (client → server).
    pub fn client_to_server(&self) -> bool {
        self.header.dir == smtp_common::DIR_CLIENT_TO_SERVER
    }

    /// True when a gate held (dropped) this segment after copying it: the
    /// receiver did not get it; TCP will retransmit it.
    pub fn held(&self) -> bool {
        self.header.rec_flags & smtp_common::REC_HELD != 0
    }

    /// The kernel's knowledge of the segment's TCP checksum.
    pub fn checksum(&self) -> Checksum {
        let f = self.header.rec_flags;
        if f & smtp_common::REC_CSUM_BAD != 0 {
            Checksum::Bad
        } else if f & smtp_common::REC_CSUM_GOOD != 0 {
            Checksum::Good
        } else {
            Checksum::Unknown
        }
    }

    /// The record as a [`Segment`] (timestamps converted with `clock`).
    pub fn segment(&self, clock: &Clock) -> Segment<'a> {
        let (src, dst) = self.endpoints();
        Segment {
            ts_micros: clock.to_unix_micros(self.header.ts_ns),
            src,
            dst,
            seq: self.header.seq.wrapping_add(self.header.offset),
            ack: self.header.ack,
            flags: TcpFlags(self.header.tcp_flags),
            payload: self.payload,
            uncaptured: self.header.uncaptured,
            held: self.held(),
            urgent: self.header.urg_ptr,
            checksum: self.checksum(),
        }
    }
}

fn addr(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

/// Converts kernel monotonic timestamps to Unix time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// CLOCK_REALTIME − CLOCK_MONOTONIC at construction, in ns.
    offset_ns: i128,
}

impl Clock {
    /// Samples both clocks now.
    pub fn now() -> Clock {
        let real = clock_ns(libc::CLOCK_REALTIME);
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        Clock {
            offset_ns: real - mono,
        }
    }

    /// A clock with a fixed offset (tests).
    pub fn with_offset_ns(offset_ns: i128) -> Clock {
        Clock { offset_ns }
    }

    pub fn to_unix_micros(&self, mono_ns: u64) -> u64 {
        let t = i128::from(mono_ns) + self.offset_ns;
        u64::try_from(t.max(0) / 1000).unwrap_or(u64::MAX)
    }
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_common::FlowKey;

    fn raw(hdr: RecordHeader, payload: &[u8]) -> Vec<u8> {
        let mut v = bytemuck::bytes_of(&hdr).to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn hdr(payload_len: u32, offset: u32, captured: u32, uncaptured: u32) -> RecordHeader {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[198, 18, 0, 1]);
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&[198, 18, 0, 2]);
        let (key, src_is_lo) = FlowKey::new(FAMILY_V4, a, 40000, b, 25);
        RecordHeader {
            key,
            ts_ns: 5_000,
            seq: 1000,
            ack: 7,
            payload_len,
            offset,
            captured_len: captured,
            uncaptured,
            ifindex: 3,
            tcp_flags: TcpFlags::ACK | TcpFlags::PSH,
            dir: smtp_common::DIR_CLIENT_TO_SERVER,
            src_is_lo: src_is_lo as u8,
            hook: smtp_common::HOOK_TC_INGRESS,
            rec_flags: 0,
            urg_ptr: 0,
            _pad: 0,
        }
    }

    #[test]
    fn piece_of_split_segment_gets_offset_seq() {
        let bytes = raw(hdr(5000, 4096, 904, 0), &[b'x'; 904]);
        let rec = Record::parse(&bytes).unwrap();
        let seg = rec.segment(&Clock::with_offset_ns(1_000_000));
        assert_eq!(seg.seq, 1000 + 4096);
        assert_eq!(seg.payload.len(), 904);
        assert_eq!(seg.src, "198.18.0.1:40000".parse().unwrap());
        assert_eq!(seg.dst, "198.18.0.2:25".parse().unwrap());
        assert_eq!(seg.ts_micros, 1_005);
        assert_eq!(seg.uncaptured, 0);
        assert!(rec.client_to_server());
        assert!(!rec.held());
    }

    #[test]
    fn held_flag_is_surfaced() {
        let mut h = hdr(5, 0, 5, 0);
        h.rec_flags = smtp_common::REC_HELD;
        let bytes = raw(h, b".\r\n\r\n");
        let rec = Record::parse(&bytes).unwrap();
        assert!(rec.held());
        assert_eq!(rec.payload.len(), 5);
    }

    #[test]
    fn uncaptured_tail_is_reported() {
        let bytes = raw(hdr(70000, 61440, 4096, 4464), &[0; 4096]);
        let seg = Record::parse(&bytes)
            .unwrap()
            .segment(&Clock::with_offset_ns(0));
        assert_eq!(seg.uncaptured, 4464);
    }

    #[test]
    fn seq_wraps() {
        let mut h = hdr(10, 4, 6, 0);
        h.seq = u32::MAX - 1;
        let bytes = raw(h, b"abcdef");
        let seg = Record::parse(&bytes)
            .unwrap()
            .segment(&Clock::with_offset_ns(0));
        assert_eq!(seg.seq, 2);
        assert_eq!(seg.payload, b"abcdef");
    }

    #[test]
    fn hostile_records_are_rejected() {
        assert_eq!(
            Record::parse(&[0u8; 10]).unwrap_err(),
            DecodeError::Short(10)
        );
        let bytes = raw(hdr(100, 0, 50, 0), &[0; 20]);
        assert_eq!(
            Record::parse(&bytes).unwrap_err(),
            DecodeError::Length { said: 50, have: 20 }
        );
        let bytes = raw(hdr(100, 90, 20, 0), &[0; 20]);
        assert!(matches!(
            Record::parse(&bytes),
            Err(DecodeError::Bounds { .. })
        ));
        let mut h = hdr(0, 0, 0, 0);
        h.key.family = 9;
        assert_eq!(
            Record::parse(&raw(h, &[])).unwrap_err(),
            DecodeError::Family(9)
        );
    }

    #[test]
    fn reverse_direction_endpoints() {
        let mut h = hdr(3, 0, 3, 0);
        h.src_is_lo ^= 1;
        h.dir = smtp_common::DIR_SERVER_TO_CLIENT;
        let bytes = raw(h, b"220");
        let rec = Record::parse(&bytes).unwrap();
        let (src, dst) = rec.endpoints();
        assert_eq!(src.port(), 25);
        assert_eq!(dst.port(), 40000);
        assert!(!rec.client_to_server());
    }

    #[test]
    fn ipv6_endpoints() {
        let a: Ipv6Addr = "2001:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:2::2".parse().unwrap();
        let (key, lo) = FlowKey::new(FAMILY_V6, a.octets(), 25, b.octets(), 50000);
        let mut h = hdr(0, 0, 0, 0);
        h.key = key;
        h.src_is_lo = lo as u8;
        let bytes = raw(h, &[]);
        let (src, dst) = Record::parse(&bytes).unwrap().endpoints();
        assert_eq!(src, SocketAddr::new(a.into(), 25));
        assert_eq!(dst, SocketAddr::new(b.into(), 50000));
    }
}
