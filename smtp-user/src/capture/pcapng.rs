//! pcapng file reader.
//!
//! A file is a sequence of blocks `type, total length, body, total length`.
//! Read here: Section Header (byte order per section, resets interfaces),
//! Interface Description (link type, `if_tsresol`, `if_tsoffset`), Enhanced
//! Packet, Simple Packet and the obsolete Packet block. Other blocks are
//! skipped without buffering them. Every block's trailer length is checked,
//! so a corrupt length is reported at the block's offset.

use std::io::Read;
use std::path::PathBuf;

use super::file::{
    with_path, CaptureError, CaptureErrorKind, Endian, Frame, Input, MAX_FRAME_LEN, PCAPNG_SHB,
};

const BOM: u32 = 0x1A2B_3C4D;
const IDB: u32 = 1;
const OBSOLETE_PB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;
/// Largest block we buffer (packet blocks, headers with their options).
const MAX_BUFFERED_BLOCK: u32 = MAX_FRAME_LEN + 64 * 1024;
/// Largest block we skip over; beyond that the length is taken as corrupt.
const MAX_SKIPPED_BLOCK: u32 = 64 << 20;

/// One interface of the current section.
#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u32,
    /// Timestamp unit: 10^-n seconds (`pow2 == false`) or 2^-n seconds.
    resol: u8,
    pow2: bool,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_secs: i64,
}

impl Interface {
    fn micros(&self, ts: u64) -> u64 {
        let base = if self.pow2 {
            let v = (u128::from(ts) * 1_000_000)
                .checked_shr(u32::from(self.resol))
                .unwrap_or(0);
            u64::try_from(v).unwrap_or(u64::MAX)
        } else if self.resol >= 6 {
            10u64
                .checked_pow(u32::from(self.resol - 6))
                .map_or(0, |d| ts / d)
        } else {
            ts.saturating_mul(10u64.pow(u32::from(6 - self.resol)))
        };
        base.saturating_add_signed(self.offset_secs.saturating_mul(1_000_000))
    }
}

/// Streaming pcapng reader (see [`super::file::CaptureReader`]).
pub struct PcapngReader<R> {
    input: Input<R>,
    /// Byte order of the current section.
    endian: Endian,
    /// Interfaces declared in the current section, by id.
    interfaces: Vec<Interface>,
    /// Body of the current block (after type and length); length only grows.
    buf: Vec<u8>,
    pub(crate) path: Option<PathBuf>,
    done: bool,
    /// Timestamp of the last timed packet: Simple Packet Blocks carry none.
    last_ts: u64,
}

/// A packet found in the block buffer: where its bytes are.
struct Packet {
    ts_micros: u64,
    linktype: u32,
    start: usize,
    len: usize,
    orig_len: u32,
    offset: u64,
}

impl<R: Read> PcapngReader<R> {
    /// Starts after the first 4 bytes (the SHB type) were read.
    pub(crate) fn new(input: Input<R>) -> Result<PcapngReader<R>, CaptureError> {
        let mut r = PcapngReader {
            input,
            endian: Endian::Little,
            interfaces: Vec::new(),
            buf: Vec::new(),
            path: None,
            done: false,
            last_ts: 0,
        };
        r.section_header(0).map_err(|e| with_path(e, &r.path))?;
        Ok(r)
    }

    /// The next frame; `Ok(None)` at a clean end of file.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        match self.next_packet() {
            Ok(Some(p)) => Ok(Some(Frame {
                ts_micros: p.ts_micros,
                linktype: p.linktype,
                data: self.buf.get(p.start..p.start + p.len).unwrap_or_default(),
                orig_len: p.orig_len,
                offset: p.offset,
            })),
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(with_path(e, &self.path))
            }
        }
    }

    fn next_packet(&mut self) -> Result<Option<Packet>, CaptureError> {
        loop {
            let offset = self.input.offset;
            let mut ty = [0u8; 4];
            let got = self
                .input
                .fill(&mut ty)
                .map_err(|e| CaptureError::at(offset, e))?;
            if got == 0 {
                return Ok(None);
            }
            if got < 4 {
                return Err(CaptureError::at(
                    offset,
                    CaptureErrorKind::Truncated {
                        what: "pcapng block header",
                        needed: 8,
                        got: got as u64,
                    },
                ));
            }
            if u32::from_le_bytes(ty) == PCAPNG_SHB {
                self.section_header(offset)?;
                continue;
            }
            let ty = self.endian.u32(&ty, 0).unwrap_or(0);
            let mut len = [0u8; 4];
            self.input
                .exact(&mut len, offset, "pcapng block header", 4)?;
            let total = self.endian.u32(&len, 0).unwrap_or(0);
            if total < 12 || !total.is_multiple_of(4) {
                return Err(CaptureError::at(
                    offset,
                    CaptureErrorKind::BadBlockLength(total),
                ));
            }
            match ty {
                IDB | EPB | SPB | OBSOLETE_PB => {
                    self.read_body(offset, total)?;
                    let body_len = total as usize - 12;
                    if ty == IDB {
                        self.interface(offset, body_len)?;
                    } else if let Some(p) = self.packet(ty, offset, body_len)? {
                        return Ok(Some(p));
                    }
                }
                _ => {
                    if total > MAX_SKIPPED_BLOCK {
                        return Err(CaptureError::at(
                            offset,
                            CaptureErrorKind::BadBlockLength(total),
                        ));
                    }
                    self.skip_body(offset, total, 8, "pcapng block")?;
                    self.trailer(offset, total)?;
                }
            }
        }
    }

    /// Reads a block body (and checks the trailer) into `buf`.
    fn read_body(&mut self, offset: u64, total: u32) -> Result<(), CaptureError> {
        if total > MAX_BUFFERED_BLOCK {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::BadBlockLength(total),
            ));
        }
        let body_len = total as usize - 12;
        if self.buf.len() < body_len {
            self.buf.resize(body_len, 0);
        }
        let body = self.buf.get_mut(..body_len).unwrap_or_default();
        self.input.exact(body, offset, "pcapng block", 8)?;
        self.trailer(offset, total)
    }

    /// Skips the rest of a block of `total` bytes whose first `read` bytes
    /// were read, up to its 4-byte trailer; a short file is `Truncated`.
    fn skip_body(
        &mut self,
        offset: u64,
        total: u32,
        read: u64,
        what: &'static str,
    ) -> Result<(), CaptureError> {
        let rest = u64::from(total).saturating_sub(read + 4);
        let skipped = self
            .input
            .skip(rest)
            .map_err(|e| CaptureError::at(offset, e))?;
        if skipped < rest {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::Truncated {
                    what,
                    needed: u64::from(total),
                    got: read + skipped,
                },
            ));
        }
        Ok(())
    }

    fn trailer(&mut self, offset: u64, total: u32) -> Result<(), CaptureError> {
        let mut t = [0u8; 4];
        self.input
            .exact(&mut t, offset, "pcapng block", u64::from(total) - 4)?;
        let trailer = self.endian.u32(&t, 0).unwrap_or(0);
        if trailer != total {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::BlockTrailerMismatch {
                    header: total,
                    trailer,
                },
            ));
        }
        Ok(())
    }

    /// Section header; its type (4 bytes) has been read at `offset`.
    fn section_header(&mut self, offset: u64) -> Result<(), CaptureError> {
        let mut head = [0u8; 8];
        self.input
            .exact(&mut head, offset, "pcapng section header", 4)?;
        let bom_le = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        self.endian = if bom_le == BOM {
            Endian::Little
        } else if bom_le.swap_bytes() == BOM {
            Endian::Big
        } else {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::BadByteOrder(bom_le),
            ));
        };
        let total = self.endian.u32(&head, 0).unwrap_or(0);
        if !(28..=MAX_BUFFERED_BLOCK).contains(&total) || !total.is_multiple_of(4) {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::BadBlockLength(total),
            ));
        }
        // Rest of the body after the BOM: versions, section length, options.
        self.skip_body(offset, total, 12, "pcapng section header")?;
        self.trailer(offset, total)?;
        self.interfaces.clear();
        Ok(())
    }

    fn interface(&mut self, offset: u64, body_len: usize) -> Result<(), CaptureError> {
        let e = self.endian;
        let body = self.buf.get(..body_len).unwrap_or_default();
        let linktype = e.u16(body, 0).ok_or(CaptureError::at(
            offset,
            CaptureErrorKind::BadBlockLength(body_len as u32 + 12),
        ))?;
        let mut itf = Interface {
            linktype: u32::from(linktype),
            resol: 6,
            pow2: false,
            offset_secs: 0,
        };
        // Options start after linktype, reserved, snaplen.
        let mut at = 8;
        while let (Some(code), Some(len)) = (e.u16(body, at), e.u16(body, at + 2)) {
            let len = usize::from(len);
            let value = body.get(at + 4..at + 4 + len);
            match (code, value) {
                (0, _) => break,
                (9, Some(&[v])) => {
                    itf.pow2 = v & 0x80 != 0;
                    itf.resol = v & 0x7f;
                }
                (14, Some(v)) if v.len() == 8 => {
                    itf.offset_secs = e.u64(v, 0).unwrap_or(0) as i64;
                }
                _ => {}
            }
            at += 4 + len.next_multiple_of(4);
        }
        // Bound the interface table (ids are u32 in the file).
        if self.interfaces.len() < 65536 {
            self.interfaces.push(itf);
        }
        Ok(())
    }

    fn packet(
        &mut self,
        ty: u32,
        offset: u64,
        body_len: usize,
    ) -> Result<Option<Packet>, CaptureError> {
        let e = self.endian;
        let body = self.buf.get(..body_len).unwrap_or_default();
        let short = || {
            CaptureError::at(
                offset,
                CaptureErrorKind::BadBlockLength(body_len as u32 + 12),
            )
        };
        let (iface, ts, caplen, orig_len, start) = match ty {
            EPB => {
                let iface = e.u32(body, 0).ok_or_else(short)?;
                let hi = e.u32(body, 4).ok_or_else(short)?;
                let lo = e.u32(body, 8).ok_or_else(short)?;
                let caplen = e.u32(body, 12).ok_or_else(short)?;
                let orig = e.u32(body, 16).ok_or_else(short)?;
                (
                    iface,
                    (u64::from(hi) << 32) | u64::from(lo),
                    caplen,
                    orig,
                    20,
                )
            }
            OBSOLETE_PB => {
                let iface = u32::from(e.u16(body, 0).ok_or_else(short)?);
                let hi = e.u32(body, 4).ok_or_else(short)?;
                let lo = e.u32(body, 8).ok_or_else(short)?;
                let caplen = e.u32(body, 12).ok_or_else(short)?;
                let orig = e.u32(body, 16).ok_or_else(short)?;
                (
                    iface,
                    (u64::from(hi) << 32) | u64::from(lo),
                    caplen,
                    orig,
                    20,
                )
            }
            _ => {
                // SPB: original length, then data up to the block's end.
                let orig = e.u32(body, 0).ok_or_else(short)?;
                let room = (body_len - 4) as u32;
                (0, 0, orig.min(room), orig, 4)
            }
        };
        if caplen > MAX_FRAME_LEN {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::FrameTooLarge(caplen),
            ));
        }
        if start + caplen as usize > body_len {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::CaplenOverflow { caplen },
            ));
        }
        let itf = *self.interfaces.get(iface as usize).ok_or(CaptureError::at(
            offset,
            CaptureErrorKind::UnknownInterface(iface),
        ))?;
        if ty != SPB {
            self.last_ts = itf.micros(ts);
        }
        Ok(Some(Packet {
            ts_micros: self.last_ts,
            linktype: itf.linktype,
            start,
            len: caplen as usize,
            orig_len,
            offset,
        }))
    }
}
