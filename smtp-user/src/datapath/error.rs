//! Errors of the datapath (loading, attaching, maps, pins), each saying which
//! object failed and why, in one line.

use std::{io, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("interface {0:?} not found")]
    NoInterface(String),
    #[error("no default route: pass --iface")]
    NoDefaultRoute,
    #[error("insufficient privileges: run as root or with CAP_BPF and CAP_NET_ADMIN ({0})")]
    NotPermitted(String),
    #[error("unsupported kernel: {0}")]
    UnsupportedKernel(String),
    #[error("another smtp-monitor already runs on {iface} (lock {lock} held)")]
    AlreadyRunning { iface: String, lock: PathBuf },
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("bpffs at {path}: {source}")]
    BpfFs { path: PathBuf, source: io::Error },
    #[error("loading the eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map {name} missing from the eBPF object")]
    MissingMap { name: &'static str },
    #[error("pin {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl DatapathError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> DatapathError {
        DatapathError::Io {
            what: what.into(),
            source,
        }
    }

    /// Maps a load/attach error to `NotPermitted` when the kernel said EPERM.
    pub(crate) fn program(name: &'static str, source: aya::programs::ProgramError) -> Self {
        let text = format!("{source:#}");
        if is_eperm(&source) {
            return DatapathError::NotPermitted(format!("program {name}: {text}"));
        }
        DatapathError::Program { name, source }
    }
}

pub(crate) fn is_eperm(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.raw_os_error() == Some(libc::EPERM) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}
