//! Kernel diagnostics: the eBPF program's own log lines (aya-log), relayed
//! into the daemon's tracing output under the target `smtp_ebpf`.
//!
//! The program traces, at debug level, every packet it cannot record (the
//! fail-closed decision: reason, hook, dropped or not), every gate decision
//! (hold, pass) and every bad checksum (see `log` in
//! `smtp-ebpf/src/packet.rs` for the fields). Off by default: the level is a read-only global of the program
//! (`AYA_LOG_LEVEL`), fixed at load time, so with logging off the verifier
//! removes the log statements and they cost nothing. `--log smtp_ebpf=debug`
//! (or a global `debug`) turns them on; the cost is measured by
//! `cargo xtask bench-datapath` (README).

use std::os::fd::AsRawFd;

use aya::{
    maps::ProgramArray,
    programs::{SchedClassifier, Xdp},
    Ebpf,
};
use smtp_common::{MAP_LOG_TC, MAP_LOG_XDP, PROG_LOG_TC, PROG_LOG_XDP};
use tokio::{io::unix::AsyncFd, task::JoinHandle};

use super::DatapathError;

/// How much the kernel program logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum KernelLog {
    /// Nothing (the default).
    #[default]
    Off,
    /// Fail-closed decisions, gate decisions, bad checksums.
    Debug,
}

impl KernelLog {
    /// What the current tracing subscriber wants from target `smtp_ebpf`.
    pub fn from_tracing() -> KernelLog {
        if tracing::enabled!(target: "smtp_ebpf", tracing::Level::DEBUG) {
            KernelLog::Debug
        } else {
            KernelLog::Off
        }
    }

    /// The value of the program's `AYA_LOG_LEVEL` (aya-log's levels: 4
    /// debug; 0 nothing).
    pub fn level(self) -> u8 {
        match self {
            KernelLog::Off => 0,
            KernelLog::Debug => 4,
        }
    }
}

/// Name of the program global holding the log level.
pub const LEVEL_GLOBAL: &str = "AYA_LOG_LEVEL";

/// Loads the logger programs into the program arrays the packet programs
/// tail-call (a decision is logged by a small program of its own, see
/// `packet::Event` in smtp-ebpf), then reads the log ring buffer on the
/// runtime and hands each line to the `log` facade (bridged into tracing).
/// Returns `None` when logging is off: the arrays stay empty, the tail call
/// falls through. The task ends when aborted (the monitor does it on drop).
pub fn relay(ebpf: &mut Ebpf, level: KernelLog) -> Result<Option<JoinHandle<()>>, DatapathError> {
    if level == KernelLog::Off {
        return Ok(None);
    }
    install_loggers(ebpf)?;
    let logger = aya_log::EbpfLogger::init(ebpf)
        .map_err(|e| DatapathError::io("kernel log ring buffer", std::io::Error::other(e)))?;
    let fd = logger.as_raw_fd();
    // SAFETY: the logger owns its ring buffer's fd, which stays open and
    // unchanged for as long as the AsyncFd owns the logger.
    let mut logger =
        unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
            .map_err(|e| DatapathError::io("kernel log poll registration", e.into_parts().1))?;
    tracing::debug!(fd, ?level, "kernel log relay on");
    Ok(Some(tokio::spawn(async move {
        loop {
            let Ok(mut guard) = logger.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    })))
}

fn install_loggers(ebpf: &mut Ebpf) -> Result<(), DatapathError> {
    let missing = |name: &'static str| DatapathError::Program {
        name,
        source: aya::programs::ProgramError::NotLoaded,
    };
    let tc: &mut SchedClassifier = ebpf
        .program_mut(PROG_LOG_TC)
        .ok_or_else(|| missing(PROG_LOG_TC))?
        .try_into()
        .map_err(|e| DatapathError::program(PROG_LOG_TC, e))?;
    tc.load()
        .map_err(|e| DatapathError::program(PROG_LOG_TC, e))?;
    let tc_fd = tc
        .fd()
        .map_err(|e| DatapathError::program(PROG_LOG_TC, e))?
        .try_clone()
        .map_err(|e| DatapathError::io("logger program fd", e))?;
    let xdp: &mut Xdp = ebpf
        .program_mut(PROG_LOG_XDP)
        .ok_or_else(|| missing(PROG_LOG_XDP))?
        .try_into()
        .map_err(|e| DatapathError::program(PROG_LOG_XDP, e))?;
    xdp.load()
        .map_err(|e| DatapathError::program(PROG_LOG_XDP, e))?;
    let xdp_fd = xdp
        .fd()
        .map_err(|e| DatapathError::program(PROG_LOG_XDP, e))?
        .try_clone()
        .map_err(|e| DatapathError::io("logger program fd", e))?;
    for (name, fd) in [(MAP_LOG_TC, &tc_fd), (MAP_LOG_XDP, &xdp_fd)] {
        let map = ebpf
            .map_mut(name)
            .ok_or(DatapathError::MissingMap { name })?;
        let mut array =
            ProgramArray::try_from(map).map_err(|source| DatapathError::Map { name, source })?;
        array
            .set(0, fd, 0)
            .map_err(|source| DatapathError::Map { name, source })?;
    }
    Ok(())
}
