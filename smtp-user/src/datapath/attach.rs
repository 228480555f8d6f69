//! Attaching the programs: the chosen ingress hook (with fallback where a
//! mode is unsupported) and TC egress. Links live in the `Ebpf` object:
//! dropping it detaches everything (and tcx/XDP links die with the process).

use std::{fmt, str::FromStr};

use aya::{
    programs::{tc, SchedClassifier, TcAttachType, Xdp, XdpMode},
    util::KernelVersion,
    Ebpf,
};
use smtp_common::{PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP_INGRESS};

use super::DatapathError;

/// Where ingress packets are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IngressMode {
    /// Native (driver) XDP. On veth it disables GRO and costs throughput.
    Xdp,
    /// Generic (skb) XDP.
    XdpGeneric,
    /// TC ingress (tcx on Linux ≥ 6.6, clsact otherwise). Default: cheapest
    /// (see README, datapath benchmark).
    #[default]
    Tc,
}

impl FromStr for IngressMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "xdp" => Ok(IngressMode::Xdp),
            "xdp-generic" => Ok(IngressMode::XdpGeneric),
            "tc" => Ok(IngressMode::Tc),
            _ => Err(format!(
                "unknown ingress mode {s:?} (xdp, xdp-generic or tc)"
            )),
        }
    }
}

impl fmt::Display for IngressMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IngressMode::Xdp => "xdp",
            IngressMode::XdpGeneric => "xdp-generic",
            IngressMode::Tc => "tc",
        })
    }
}

fn tc_program<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, DatapathError> {
    let prog = ebpf.program_mut(name).ok_or(DatapathError::Program {
        name,
        source: aya::programs::ProgramError::NotLoaded,
    })?;
    let prog: &mut SchedClassifier = prog
        .try_into()
        .map_err(|e| DatapathError::program(name, e))?;
    prog.load().map_err(|e| DatapathError::program(name, e))?;
    Ok(prog)
}

fn attach_tc(
    ebpf: &mut Ebpf,
    name: &'static str,
    iface: &str,
    at: TcAttachType,
) -> Result<(), DatapathError> {
    if KernelVersion::current().is_ok_and(|v| v < KernelVersion::new(6, 6, 0)) {
        // Pre-tcx kernels need the clsact qdisc (EEXIST is fine).
        let _ = tc::qdisc_add_clsact(iface);
    }
    let prog = tc_program(ebpf, name)?;
    prog.attach(iface, at)
        .map_err(|e| DatapathError::program(name, e))?;
    Ok(())
}

fn attach_xdp(ebpf: &mut Ebpf, iface: &str, mode: XdpMode) -> Result<(), DatapathError> {
    let name = PROG_XDP_INGRESS;
    let prog = ebpf.program_mut(name).ok_or(DatapathError::Program {
        name,
        source: aya::programs::ProgramError::NotLoaded,
    })?;
    let prog: &mut Xdp = prog
        .try_into()
        .map_err(|e| DatapathError::program(name, e))?;
    if prog.fd().is_err() {
        prog.load().map_err(|e| DatapathError::program(name, e))?;
    }
    prog.attach(iface, mode)
        .map_err(|e| DatapathError::program(name, e))?;
    Ok(())
}

/// Attaches TC egress and the ingress hook; returns the ingress mode that is
/// in effect after fallbacks (xdp → xdp-generic → tc).
pub fn attach_all(
    ebpf: &mut Ebpf,
    iface: &str,
    ingress: IngressMode,
) -> Result<IngressMode, DatapathError> {
    attach_tc(ebpf, PROG_TC_EGRESS, iface, TcAttachType::Egress)?;
    let mut mode = ingress;
    if mode == IngressMode::Xdp {
        match attach_xdp(ebpf, iface, XdpMode::Driver) {
            Ok(()) => return Ok(mode),
            Err(e @ DatapathError::NotPermitted(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(iface, error = %e, "native XDP unsupported, falling back to xdp-generic");
                mode = IngressMode::XdpGeneric;
            }
        }
    }
    if mode == IngressMode::XdpGeneric {
        match attach_xdp(ebpf, iface, XdpMode::Skb) {
            Ok(()) => return Ok(mode),
            Err(e @ DatapathError::NotPermitted(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(iface, error = %e, "generic XDP unsupported, falling back to tc");
                mode = IngressMode::Tc;
            }
        }
    }
    attach_tc(ebpf, PROG_TC_INGRESS, iface, TcAttachType::Ingress)?;
    Ok(mode)
}
