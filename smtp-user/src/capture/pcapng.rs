//! pcapng file reader.
//!
//! A file is a sequence of blocks `type, total length, body, total length`.
//! Read here: Section Header (byte order per section, resets interfaces),
//! Interface Description (link type, `if_tsresol`, `if_tsoffset`), Enhanced
//! Packet, Simple Packet and the obsolete Packet block. Other blocks are
//! skipped without buffering them. Every block's trailer length is checked,
//! so a corrupt length is reported at the block's offset.
//!
//! This module does the streaming I/O (one block buffered at a time, every
//! error with its offset); `pcap-parser` decodes the blocks it buffers.

use std::io::Read;
use std::path::PathBuf;

use pcap_parser::pcapng::{parse_block_be, parse_block_le, parse_sectionheaderblock, Block};
use pcap_parser::traits::PcapNGPacketBlock;

use super::record::{
    with_path, CaptureError, CaptureErrorKind, Endian, Frame, Input, MAX_FRAME_LEN, PCAPNG_SHB,
};

const BOM: u32 = 0x1A2B_3C4D;
const IDB: u32 = 1;
const OBSOLETE_PB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;
/// Block header (type, length) and trailer (length) bytes.
const FRAMING: u32 = 12;
/// Largest block we buffer (packet blocks, headers with their options).
const MAX_BUFFERED_BLOCK: u32 = MAX_FRAME_LEN + 64 * 1024;
/// Largest block we skip over; beyond that the length is taken as corrupt.
const MAX_SKIPPED_BLOCK: u32 = 64 << 20;
/// Most interfaces remembered per section (ids are u32 in the file).
const MAX_INTERFACES: usize = 65_536;

/// One interface of the current section.
#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u32,
    /// Timestamp units per second (`if_tsresol`); `None` if unrepresentable.
    units_per_sec: Option<u64>,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_secs: i64,
}

impl Interface {
    fn micros(&self, ts: u64) -> u64 {
        let base = match self.units_per_sec {
            Some(units) if units > 0 => {
                u64::try_from(u128::from(ts) * 1_000_000 / u128::from(units)).unwrap_or(u64::MAX)
            }
            _ => 0,
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
    /// The current block, framing included; its length only grows, up to
    /// `MAX_BUFFERED_BLOCK`.
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

fn malformed(offset: u64, what: &'static str, e: impl std::fmt::Display) -> CaptureError {
    CaptureError::at(
        offset,
        CaptureErrorKind::Malformed {
            what,
            detail: e.to_string(),
        },
    )
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
            let mut len = [0u8; 4];
            self.input
                .exact(&mut len, offset, "pcapng block header", 4)?;
            let block_type = self.endian.u32(&ty, 0).unwrap_or(0);
            let total = self.endian.u32(&len, 0).unwrap_or(0);
            if total < FRAMING || !total.is_multiple_of(4) {
                return Err(CaptureError::at(
                    offset,
                    CaptureErrorKind::BadBlockLength(total),
                ));
            }
            match block_type {
                IDB | EPB | SPB | OBSOLETE_PB => {
                    self.read_block(offset, [ty, len], total)?;
                    if let Some(p) = self.decode(block_type, offset, total as usize)? {
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
                    let mut t = [0u8; 4];
                    self.input
                        .exact(&mut t, offset, "pcapng block", u64::from(total) - 4)?;
                    self.trailer(offset, total, t)?;
                }
            }
        }
    }

    /// Reads a whole block whose first 8 bytes were `head` into `buf`,
    /// and checks its trailer.
    fn read_block(
        &mut self,
        offset: u64,
        head: [[u8; 4]; 2],
        total: u32,
    ) -> Result<(), CaptureError> {
        if total > MAX_BUFFERED_BLOCK {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::BadBlockLength(total),
            ));
        }
        let total = total as usize;
        if self.buf.len() < total {
            self.buf.resize(total, 0);
        }
        let block = self.buf.get_mut(..total).unwrap_or_default();
        block
            .get_mut(..4)
            .unwrap_or_default()
            .copy_from_slice(&head[0]);
        block
            .get_mut(4..8)
            .unwrap_or_default()
            .copy_from_slice(&head[1]);
        self.input.exact(
            block.get_mut(8..).unwrap_or_default(),
            offset,
            "pcapng block",
            8,
        )?;
        let t = block
            .get(total - 4..)
            .and_then(|t| <[u8; 4]>::try_from(t).ok())
            .unwrap_or_default();
        trailer(self.endian, offset, total as u32, t)
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

    fn trailer(&self, offset: u64, total: u32, t: [u8; 4]) -> Result<(), CaptureError> {
        trailer(self.endian, offset, total, t)
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
        let total = total as usize;
        if self.buf.len() < total {
            self.buf.resize(total, 0);
        }
        let block = self.buf.get_mut(..total).unwrap_or_default();
        block
            .get_mut(..4)
            .unwrap_or_default()
            .copy_from_slice(&PCAPNG_SHB.to_le_bytes());
        block
            .get_mut(4..12)
            .unwrap_or_default()
            .copy_from_slice(&head);
        self.input.exact(
            block.get_mut(12..).unwrap_or_default(),
            offset,
            "pcapng section header",
            12,
        )?;
        let t = block
            .get(total - 4..)
            .and_then(|t| <[u8; 4]>::try_from(t).ok())
            .unwrap_or_default();
        trailer(self.endian, offset, total as u32, t)?;
        parse_sectionheaderblock(block)
            .map_err(|e| malformed(offset, "pcapng section header", e))?;
        self.interfaces.clear();
        Ok(())
    }

    /// Decodes the block in `buf` (`total` bytes): remembers an interface,
    /// or returns the packet.
    fn decode(
        &mut self,
        block_type: u32,
        offset: u64,
        total: usize,
    ) -> Result<Option<Packet>, CaptureError> {
        let e = self.endian;
        let block = self.buf.get(..total).unwrap_or_default();
        if block_type == OBSOLETE_PB {
            // Not decoded by pcap-parser: interface (u16), drops (u16),
            // timestamp (2 × u32), captured and original length, data.
            let short = || CaptureError::at(offset, CaptureErrorKind::BadBlockLength(total as u32));
            let iface = u32::from(e.u16(block, 8).ok_or_else(short)?);
            let hi = e.u32(block, 12).ok_or_else(short)?;
            let lo = e.u32(block, 16).ok_or_else(short)?;
            let caplen = e.u32(block, 20).ok_or_else(short)?;
            let orig_len = e.u32(block, 24).ok_or_else(short)?;
            return self
                .packet(offset, total, iface, Some((hi, lo)), caplen, orig_len, 28)
                .map(Some);
        }
        if block_type == EPB {
            // Checked before parsing, for errors that say what is wrong.
            let caplen = e.u32(block, 20).unwrap_or(0);
            if caplen > MAX_FRAME_LEN {
                return Err(CaptureError::at(
                    offset,
                    CaptureErrorKind::FrameTooLarge(caplen),
                ));
            }
            if 28 + caplen as usize + 4 > total {
                return Err(CaptureError::at(
                    offset,
                    CaptureErrorKind::CaplenOverflow { caplen },
                ));
            }
        }
        let parsed = match e {
            Endian::Little => parse_block_le(block),
            Endian::Big => parse_block_be(block),
        };
        let what = match block_type {
            IDB => "pcapng interface description",
            EPB => "pcapng enhanced packet",
            _ => "pcapng simple packet",
        };
        let (_, parsed) = parsed.map_err(|err| malformed(offset, what, err))?;
        let base = block.as_ptr() as usize;
        let start_of = |data: &[u8]| data.as_ptr() as usize - base;
        let (iface, ts, caplen, orig_len, start) = match parsed {
            Block::InterfaceDescription(idb) => {
                if self.interfaces.len() < MAX_INTERFACES {
                    self.interfaces.push(Interface {
                        linktype: idb.linktype.0 as u32 & 0xffff,
                        units_per_sec: units_per_sec(idb.if_tsresol),
                        offset_secs: idb.ts_offset(),
                    });
                }
                return Ok(None);
            }
            Block::EnhancedPacket(epb) => {
                let data = epb.packet_data();
                (
                    epb.if_id,
                    Some((epb.ts_high, epb.ts_low)),
                    data.len() as u32,
                    epb.origlen,
                    start_of(data),
                )
            }
            Block::SimplePacket(spb) => {
                // Interface 0; data up to the original length or the
                // block's end, whichever is first.
                let data = spb.packet_data();
                (0, None, data.len() as u32, spb.origlen, start_of(data))
            }
            _ => return Ok(None),
        };
        self.packet(offset, total, iface, ts, caplen, orig_len, start)
            .map(Some)
    }

    /// A packet of `caplen` bytes at `start` in the block buffer.
    #[allow(clippy::too_many_arguments)]
    fn packet(
        &mut self,
        offset: u64,
        total: usize,
        iface: u32,
        ts: Option<(u32, u32)>,
        caplen: u32,
        orig_len: u32,
        start: usize,
    ) -> Result<Packet, CaptureError> {
        if caplen > MAX_FRAME_LEN {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::FrameTooLarge(caplen),
            ));
        }
        if start + caplen as usize + 4 > total {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::CaplenOverflow { caplen },
            ));
        }
        let itf = *self.interfaces.get(iface as usize).ok_or(CaptureError::at(
            offset,
            CaptureErrorKind::UnknownInterface(iface),
        ))?;
        if let Some((hi, lo)) = ts {
            self.last_ts = itf.micros((u64::from(hi) << 32) | u64::from(lo));
        }
        Ok(Packet {
            ts_micros: self.last_ts,
            linktype: itf.linktype,
            start,
            len: caplen as usize,
            orig_len,
            offset,
        })
    }
}

/// Checks that a block's trailer `t` repeats its header length `total`.
fn trailer(endian: Endian, offset: u64, total: u32, t: [u8; 4]) -> Result<(), CaptureError> {
    let trailer = endian.u32(&t, 0).unwrap_or(0);
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

/// Timestamp units per second for an `if_tsresol` value: 10^n, or 2^n when
/// the high bit is set. (`pcap-parser`'s `ts_resolution` rejects every
/// power-of-two resolution: it range-checks the byte with the flag bit.)
fn units_per_sec(tsresol: u8) -> Option<u64> {
    let n = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 != 0 {
        1u64.checked_shl(n).filter(|_| n < 64)
    } else {
        10u64.checked_pow(n)
    }
}
