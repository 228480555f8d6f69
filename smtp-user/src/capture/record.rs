//! What a capture file reader yields and how it fails: [`Frame`],
//! [`CaptureError`] (file, byte offset, reason), and the offset-tracking
//! byte source the pcap and pcapng readers share.
//!
//! A leaf module: the format readers ([`super::pcap`], [`super::pcapng`])
//! and the format dispatcher ([`super::file`]) all build on it, and it
//! depends on none of them.

use std::io::{self, BufReader, Read};
use std::path::PathBuf;

/// Largest captured length accepted for one frame; more means corruption.
pub const MAX_FRAME_LEN: u32 = 256 * 1024;

/// One captured frame, borrowed from the reader's buffer until the next
/// call to [`super::CaptureReader::next_frame`].
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture time, microseconds since the Unix epoch.
    pub ts_micros: u64,
    /// Link-layer type of `data` (pcap `LINKTYPE_*`).
    pub linktype: u32,
    /// Captured bytes; `data.len() <= MAX_FRAME_LEN`.
    pub data: &'a [u8],
    /// Length of the frame on the wire (may exceed `data.len()`).
    pub orig_len: u32,
    /// File byte offset of the record (pcap record header / pcapng block).
    pub offset: u64,
}

/// What is wrong with a capture file at some offset.
#[derive(Debug, thiserror::Error)]
pub enum CaptureErrorKind {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("not a pcap or pcapng file (magic {0:#010x})")]
    BadMagic(u32),
    #[error("file ends inside a {what}: {needed} bytes expected, {got} present")]
    Truncated {
        what: &'static str,
        needed: u64,
        got: u64,
    },
    #[error("captured length {0} exceeds the {max} byte limit (corrupt record)", max = MAX_FRAME_LEN)]
    FrameTooLarge(u32),
    #[error("invalid pcapng block length {0}")]
    BadBlockLength(u32),
    #[error("pcapng block trailer length {trailer} differs from header length {header}")]
    BlockTrailerMismatch { header: u32, trailer: u32 },
    #[error("pcapng packet for undeclared interface {0}")]
    UnknownInterface(u32),
    #[error("pcapng captured length {caplen} does not fit in its block")]
    CaplenOverflow { caplen: u32 },
    #[error("pcapng block before any section header")]
    NoSection,
    #[error("pcapng section header with unknown byte-order magic {0:#010x}")]
    BadByteOrder(u32),
    /// The record's bytes were read but `pcap-parser` rejects them.
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
}

/// A capture file error at a known position.
#[derive(Debug, thiserror::Error)]
#[error("{}offset {offset}: {reason}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
pub struct CaptureError {
    /// File name, when reading a named file.
    pub path: Option<PathBuf>,
    /// Byte offset of the record or block where the problem starts.
    pub offset: u64,
    /// What is wrong there.
    pub reason: CaptureErrorKind,
}

impl CaptureError {
    pub(crate) fn at(offset: u64, reason: impl Into<CaptureErrorKind>) -> CaptureError {
        CaptureError {
            path: None,
            offset,
            reason: reason.into(),
        }
    }
}

/// Buffered byte source that tracks the file offset.
pub(crate) struct Input<R> {
    inner: BufReader<R>,
    /// Offset of the next unread byte.
    pub(crate) offset: u64,
}

impl<R: Read> Input<R> {
    pub(crate) fn new(inner: R) -> Self {
        Input {
            inner: BufReader::with_capacity(1 << 20, inner),
            offset: 0,
        }
    }

    /// Reads until `buf` is full or end of file; returns the bytes read.
    pub(crate) fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(buf.get_mut(n..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.offset += n as u64;
        Ok(n)
    }

    /// Fills `buf` completely or fails with `Truncated` at `record_offset`.
    pub(crate) fn exact(
        &mut self,
        buf: &mut [u8],
        record_offset: u64,
        what: &'static str,
        done: u64,
    ) -> Result<(), CaptureError> {
        let got = self
            .fill(buf)
            .map_err(|e| CaptureError::at(record_offset, e))?;
        if got < buf.len() {
            return Err(CaptureError::at(
                record_offset,
                CaptureErrorKind::Truncated {
                    what,
                    needed: done + buf.len() as u64,
                    got: done + got as u64,
                },
            ));
        }
        Ok(())
    }

    /// Discards `n` bytes; returns how many were there.
    pub(crate) fn skip(&mut self, n: u64) -> io::Result<u64> {
        let k = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.offset += k;
        Ok(k)
    }
}

/// Byte order of multi-byte fields in a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
}

impl Endian {
    pub(crate) fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u16::from_le_bytes(s),
            Endian::Big => u16::from_be_bytes(s),
        })
    }
    pub(crate) fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u32::from_le_bytes(s),
            Endian::Big => u32::from_be_bytes(s),
        })
    }
}

/// The pcapng section header block type, also its magic.
pub(crate) const PCAPNG_SHB: u32 = 0x0A0D_0D0A;

/// Attaches `path` to an error.
pub(crate) fn with_path(mut e: CaptureError, path: &Option<PathBuf>) -> CaptureError {
    if e.path.is_none() {
        e.path.clone_from(path);
    }
    e
}
