//! Capture: where TCP segments come from, before any flow state.
//!
//! Two sources produce the same [`Segment`]: the kernel ring buffer (live
//! monitoring) and capture files (`replay`). Everything downstream sees only
//! `Segment`s and does not know which source they came from.
//!
//! - [`wire`]: one link-layer frame → one `Segment`, or a [`Skip`] reason
//!   (`etherparse`; the header-chain limits shared with the kernel parser).
//! - [`decoder`]: frames of a capture → segments as the receiver saw them:
//!   IP fragments reassembled ([`ipfrag`], Linux's rules) and TCP checksums
//!   verified per `--checksum`.
//! - [`file`]: [`CaptureReader`], streaming pcap ([`pcap`]) / pcapng
//!   ([`pcapng`]) reader (`pcap-parser`) with offsets in its errors; the
//!   types they share live in the leaf module [`record`].
//! - [`builder`]: the one TCP/IP frame builder (resets, synthetic captures,
//!   tests), checksums right.
//! - [`synth`]: generated sessions and capture writers, for tests and benchmarks.
//!
//! # Examples
//!
//! ```
//! use smtp_user::capture::synth::{render, smtp_script, Conversation, PcapWriter, RenderOptions};
//! use smtp_user::capture::{parse_frame, wire::linktype, CaptureReader};
//!
//! let conv = Conversation::new(smtp_script(100));
//! let mut w = PcapWriter::new(Vec::new(), linktype::ETHERNET).unwrap();
//! for (ts, f) in render(&conv, &conv.packets(), RenderOptions::default()) {
//!     w.write_frame(ts, &f, f.len() as u32).unwrap();
//! }
//! let file = w.into_inner();
//! let mut reader = CaptureReader::new(&file[..]).unwrap();
//! let mut payload = 0;
//! while let Some(frame) = reader.next_frame().unwrap() {
//!     let seg = parse_frame(frame.linktype, frame.ts_micros, frame.data).unwrap();
//!     payload += seg.payload.len();
//! }
//! assert_eq!(payload, conv.steps.iter().map(|(_, b)| b.len()).sum::<usize>());
//! ```

pub mod ringbuf;

use std::net::SocketAddr;

pub mod builder;
pub mod decoder;
pub mod file;
pub mod ipfrag;
pub mod pcap;
pub mod pcapng;
pub mod record;
pub mod synth;
pub mod wire;

pub use file::{CaptureError, CaptureErrorKind, CaptureReader, Frame};
pub use wire::{parse_frame, Skip};

/// TCP header flags, as on the wire (low 8 bits of the flags field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
    pub fn urg(self) -> bool {
        self.0 & Self::URG != 0
    }
}

/// What is known of a segment's TCP checksum.
///
/// The server's stack discards a segment whose checksum is wrong, so the
/// monitor must too (`flow` ignores [`Checksum::Bad`] segments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checksum {
    /// Not verified: the NIC or kernel had no verdict and it was not
    /// computed (offloaded capture, `--checksum off`).
    #[default]
    Unknown,
    /// Verified correct (by the NIC, the kernel or the monitor).
    Good,
    /// Verified wrong: the receiver drops this segment.
    Bad,
}

/// One TCP segment (or one piece of a segment the kernel split across
/// several ring-buffer records), as seen by the monitor.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Capture time, microseconds since the Unix epoch.
    pub ts_micros: u64,
    /// Sender of this segment.
    pub src: SocketAddr,
    /// Receiver of this segment.
    pub dst: SocketAddr,
    /// Sequence number of the first byte of `payload`.
    pub seq: u32,
    /// Acknowledgement number (meaningful when `flags.ack()`).
    pub ack: u32,
    pub flags: TcpFlags,
    /// The captured payload bytes, starting at `seq`.
    pub payload: &'a [u8],
    /// Payload bytes that were on the wire right after `payload` but were not
    /// captured (snaplen, record size limit). Reassembly turns them into a gap;
    /// they are never silently ignored.
    pub uncaptured: u32,
    /// The kernel's end-of-data gate held this segment back (copied, then
    /// dropped): the receiver did not get it, TCP will retransmit it.
    /// Always false for capture files.
    pub held: bool,
    /// TCP urgent pointer (meaningful when `flags.urg()`): Linux removes the
    /// byte at `seq + urgent - 1` from the stream it delivers.
    pub urgent: u16,
    /// What is known of the TCP checksum.
    pub checksum: Checksum,
}
