//! Classic pcap (libpcap) file reader.
//!
//! Format: a 24-byte global header (magic, version, zone, sigfigs, snaplen,
//! link type) then records of a 16-byte header (seconds, micro- or
//! nanoseconds, captured length, original length) and the captured bytes.
//! Both byte orders and both time resolutions are read; the magic decides.
//! `pcap-parser` decodes the headers; this module does the streaming I/O,
//! so that memory stays one record and every error carries its offset.

use std::io::Read;
use std::path::PathBuf;

use pcap_parser::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_header};

use super::record::{
    with_path, CaptureError, CaptureErrorKind, Endian, Frame, Input, MAX_FRAME_LEN,
};

/// Magic of a microsecond-resolution file, as a native number.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic of a nanosecond-resolution file, as a native number.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;

/// Length of a record header.
const RECORD_HEADER: usize = 16;

/// Streaming classic-pcap reader (see [`super::file::CaptureReader`]).
pub struct PcapReader<R> {
    input: Input<R>,
    endian: Endian,
    /// Fractional timestamp field is nanoseconds (else microseconds).
    nanos: bool,
    /// Link type of every record (low 16 bits of the header field; the high
    /// bits carry FCS information we do not need: IP lengths trim it).
    pub linktype: u32,
    /// Record header and data; its length only grows, up to
    /// `RECORD_HEADER + MAX_FRAME_LEN`.
    buf: Vec<u8>,
    pub(crate) path: Option<PathBuf>,
    done: bool,
}

/// Where the current record is in the buffer.
struct Record {
    ts_micros: u64,
    caplen: usize,
    orig_len: u32,
    offset: u64,
}

impl<R: Read> PcapReader<R> {
    /// Parses the global header; `magic` holds the 4 bytes already read.
    pub(crate) fn new(mut input: Input<R>, magic: [u8; 4]) -> Result<PcapReader<R>, CaptureError> {
        let (endian, nanos) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
            (MAGIC_MICROS, _) => (Endian::Little, false),
            (MAGIC_NANOS, _) => (Endian::Little, true),
            (_, MAGIC_MICROS) => (Endian::Big, false),
            (_, MAGIC_NANOS) => (Endian::Big, true),
            // Also the "modified" (Kuznetzov) format, whose records differ.
            (m, _) => return Err(CaptureError::at(0, CaptureErrorKind::BadMagic(m))),
        };
        let mut hdr = [0u8; 24];
        hdr[..4].copy_from_slice(&magic);
        input.exact(&mut hdr[4..], 0, "pcap file header", 4)?;
        let (_, header) = parse_pcap_header(&hdr).map_err(|e| {
            CaptureError::at(
                0,
                CaptureErrorKind::Malformed {
                    what: "pcap file header",
                    detail: e.to_string(),
                },
            )
        })?;
        Ok(PcapReader {
            input,
            endian,
            nanos,
            linktype: (header.network.0 as u32) & 0xffff,
            buf: Vec::new(),
            path: None,
            done: false,
        })
    }

    /// The next frame; `Ok(None)` at a clean end of file.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        match self.read_record() {
            Ok(Some(r)) => Ok(Some(Frame {
                ts_micros: r.ts_micros,
                linktype: self.linktype,
                data: self
                    .buf
                    .get(RECORD_HEADER..RECORD_HEADER + r.caplen)
                    .unwrap_or_default(),
                orig_len: r.orig_len,
                offset: r.offset,
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

    /// Reads one record (header and data) into `buf`.
    fn read_record(&mut self) -> Result<Option<Record>, CaptureError> {
        let offset = self.input.offset;
        if self.buf.len() < RECORD_HEADER {
            self.buf.resize(RECORD_HEADER, 0);
        }
        let hdr = self.buf.get_mut(..RECORD_HEADER).unwrap_or_default();
        let got = self
            .input
            .fill(hdr)
            .map_err(|e| CaptureError::at(offset, e))?;
        if got == 0 {
            return Ok(None);
        }
        if got < RECORD_HEADER {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::Truncated {
                    what: "pcap record header",
                    needed: RECORD_HEADER as u64,
                    got: got as u64,
                },
            ));
        }
        // The captured length says how much to read before the record can
        // be parsed as a whole.
        let caplen = self.endian.u32(hdr, 8).unwrap_or(0);
        if caplen > MAX_FRAME_LEN {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::FrameTooLarge(caplen),
            ));
        }
        let end = RECORD_HEADER + caplen as usize;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        let data = self.buf.get_mut(RECORD_HEADER..end).unwrap_or_default();
        self.input
            .exact(data, offset, "pcap record", RECORD_HEADER as u64)?;
        let record = self.buf.get(..end).unwrap_or_default();
        let parsed = match self.endian {
            Endian::Little => parse_pcap_frame(record),
            Endian::Big => parse_pcap_frame_be(record),
        };
        let block = parsed.map_err(|e| {
            CaptureError::at(
                offset,
                CaptureErrorKind::Malformed {
                    what: "pcap record",
                    detail: e.to_string(),
                },
            )
        })?;
        let block = block.1;
        let frac = u64::from(block.ts_usec);
        let frac_micros = if self.nanos { frac / 1000 } else { frac };
        let ts_micros = u64::from(block.ts_sec)
            .saturating_mul(1_000_000)
            .saturating_add(frac_micros);
        Ok(Some(Record {
            ts_micros,
            caplen: block.data.len(),
            orig_len: block.origlen,
            offset,
        }))
    }
}
