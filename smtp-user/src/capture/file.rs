//! Capture files: format detection and the streaming frame reader.
//!
//! [`CaptureReader`] reads classic pcap ([`super::pcap`]) or pcapng
//! ([`super::pcapng`]) from any `Read`, chosen by the file's magic number;
//! both decode their records with the `pcap-parser` crate.
//! It streams with constant memory (one buffered record at a time) and
//! yields each [`Frame`] with the byte offset of its record, so that a
//! truncated or corrupt file gives every frame before the damage and then a
//! [`CaptureError`] naming the offset.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::pcap::PcapReader;
use super::pcapng::PcapngReader;
use super::record::{Input, PCAPNG_SHB};

pub use super::record::{CaptureError, CaptureErrorKind, Endian, Frame, MAX_FRAME_LEN};

/// Streaming reader for pcap or pcapng, detected from the magic number.
pub enum CaptureReader<R> {
    Pcap(PcapReader<R>),
    Pcapng(PcapngReader<R>),
}

impl CaptureReader<File> {
    /// Opens a capture file; errors carry its path.
    pub fn open(path: &Path) -> Result<CaptureReader<File>, CaptureError> {
        let file = File::open(path).map_err(|e| CaptureError {
            path: Some(path.to_owned()),
            offset: 0,
            reason: e.into(),
        })?;
        let mut r = CaptureReader::new(file).map_err(|mut e| {
            e.path = Some(path.to_owned());
            e
        })?;
        r.set_path(path);
        Ok(r)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header and picks the format.
    pub fn new(inner: R) -> Result<CaptureReader<R>, CaptureError> {
        let mut input = Input::new(inner);
        let mut magic = [0u8; 4];
        input.exact(&mut magic, 0, "file header", 0)?;
        if u32::from_le_bytes(magic) == PCAPNG_SHB {
            Ok(CaptureReader::Pcapng(PcapngReader::new(input)?))
        } else {
            Ok(CaptureReader::Pcap(PcapReader::new(input, magic)?))
        }
    }

    fn set_path(&mut self, path: &Path) {
        match self {
            CaptureReader::Pcap(r) => r.path = Some(path.to_owned()),
            CaptureReader::Pcapng(r) => r.path = Some(path.to_owned()),
        }
    }

    /// The next frame, `Ok(None)` at a clean end of file. After an error
    /// the reader is finished and returns `Ok(None)`.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        match self {
            CaptureReader::Pcap(r) => r.next_frame(),
            CaptureReader::Pcapng(r) => r.next_frame(),
        }
    }
}
