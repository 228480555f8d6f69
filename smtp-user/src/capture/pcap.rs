//! Classic pcap (libpcap) file reader.
//!
//! Format: a 24-byte global header (magic, version, zone, sigfigs, snaplen,
//! link type) then records of a 16-byte header (seconds, micro- or
//! nanoseconds, captured length, original length) and the captured bytes.
//! Both byte orders and both time resolutions are read; the magic decides.

use std::io::Read;
use std::path::PathBuf;

use super::file::{with_path, CaptureError, CaptureErrorKind, Endian, Frame, Input, MAX_FRAME_LEN};

/// Magic of a microsecond-resolution file, as a native number.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic of a nanosecond-resolution file, as a native number.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;

/// Streaming classic-pcap reader (see [`super::file::CaptureReader`]).
pub struct PcapReader<R> {
    input: Input<R>,
    endian: Endian,
    /// Fractional timestamp field is nanoseconds (else microseconds).
    nanos: bool,
    /// Link type of every record (low 16 bits of the header field; the high
    /// bits carry FCS information we do not need: IP lengths trim it).
    pub linktype: u32,
    /// Record buffer; its length only grows, up to `MAX_FRAME_LEN`.
    buf: Vec<u8>,
    pub(crate) path: Option<PathBuf>,
    done: bool,
}

impl<R: Read> PcapReader<R> {
    /// Parses the global header; `magic` holds the 4 bytes already read.
    pub(crate) fn new(mut input: Input<R>, magic: [u8; 4]) -> Result<PcapReader<R>, CaptureError> {
        let (endian, nanos) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
            (MAGIC_MICROS, _) => (Endian::Little, false),
            (MAGIC_NANOS, _) => (Endian::Little, true),
            (_, MAGIC_MICROS) => (Endian::Big, false),
            (_, MAGIC_NANOS) => (Endian::Big, true),
            (m, _) => return Err(CaptureError::at(0, CaptureErrorKind::BadMagic(m))),
        };
        let mut rest = [0u8; 20];
        input.exact(&mut rest, 0, "pcap file header", 4)?;
        let linktype = endian.u32(&rest, 16).unwrap_or(0) & 0xffff;
        Ok(PcapReader {
            input,
            endian,
            nanos,
            linktype,
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
            Ok(Some((ts, caplen, orig_len, offset))) => Ok(Some(Frame {
                ts_micros: ts,
                linktype: self.linktype,
                data: self.buf.get(..caplen).unwrap_or_default(),
                orig_len,
                offset,
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

    /// Reads one record into `buf`: (timestamp µs, captured len, original len, offset).
    fn read_record(&mut self) -> Result<Option<(u64, usize, u32, u64)>, CaptureError> {
        let offset = self.input.offset;
        let mut hdr = [0u8; 16];
        let got = self
            .input
            .fill(&mut hdr)
            .map_err(|e| CaptureError::at(offset, e))?;
        if got == 0 {
            return Ok(None);
        }
        if got < hdr.len() {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::Truncated {
                    what: "pcap record header",
                    needed: 16,
                    got: got as u64,
                },
            ));
        }
        let e = self.endian;
        let secs = u64::from(e.u32(&hdr, 0).unwrap_or(0));
        let frac = u64::from(e.u32(&hdr, 4).unwrap_or(0));
        let caplen = e.u32(&hdr, 8).unwrap_or(0);
        let orig_len = e.u32(&hdr, 12).unwrap_or(0);
        if caplen > MAX_FRAME_LEN {
            return Err(CaptureError::at(
                offset,
                CaptureErrorKind::FrameTooLarge(caplen),
            ));
        }
        let caplen = caplen as usize;
        if self.buf.len() < caplen {
            self.buf.resize(caplen, 0);
        }
        let data = self.buf.get_mut(..caplen).unwrap_or_default();
        self.input.exact(data, offset, "pcap record", 16)?;
        let frac_micros = if self.nanos { frac / 1000 } else { frac };
        let ts = secs.saturating_mul(1_000_000).saturating_add(frac_micros);
        Ok(Some((ts, caplen, orig_len, offset)))
    }
}
