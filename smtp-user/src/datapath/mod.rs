//! The kernel datapath: loads the embedded eBPF object, attaches it to an
//! interface, pins its maps and delivers the captured records.
//!
//! [`Monitor`] is the one entry point of a live capture:
//!
//! ```no_run
//! # async fn f() -> Result<(), smtp_user::datapath::DatapathError> {
//! use smtp_user::datapath::{Monitor, MonitorOptions};
//! let mut mon = Monitor::start(MonitorOptions::default())?; // needs a tokio runtime
//! loop {
//!     mon.next_segments(|seg| println!("{} -> {} {} bytes", seg.src, seg.dst, seg.payload.len()))
//!         .await?;
//! }
//! # }
//! ```
//!
//! Dropping the monitor (or [`Monitor::shutdown`]) detaches every program and
//! removes the pins. [`Control::open_pinned`] reaches the maps of a monitor
//! running in another process.
//!
//! # Maps
//! Pinned under `<pin_root>/<iface>/` (names in `smtp_common::MAP_*`):
//!
//! | map | kind | key → value | semantics |
//! |---|---|---|---|
//! | `RECORDS` | ring buffer | — | [`smtp_common::RecordHeader`] + payload of every monitored segment with payload or SYN/FIN/RST; `rec_flags & REC_HELD`: a gate dropped the segment after copying it ([`Record::held`]). |
//! | `CONFIG` | array[1] | 0 → [`Config`] | monitored ports; `enforce != 0` turns on everything below (off = monitor mode: nothing is dropped); `gate != 0`: a client SYN creates its flow's `GATES` entry. |
//! | `VERDICTS` | LRU hash (65536) | [`FlowKey`] → `u32` [`Verdict`] | `Drop`: every packet of the flow is dropped in all hooks, except payload-less RSTs (so resets reach both ends). |
//! | `BLOCKLIST` | LRU hash (65536) | [`smtp_common::IpKey`] → `u64` expiry | packets of monitored flows whose client (sender of client→server packets) is listed are dropped (payload-less RSTs excepted); expiry in CLOCK_MONOTONIC ns (`bpf_ktime_get_ns`), 0 = never; the kernel deletes an expired entry when it meets it. |
//! | `GATES` | LRU hash (16384) | [`FlowKey`] → [`smtp_common::Gate`] | end-of-data gate: the client segment ending a message (`\n.\r\n` at its end, exactly `.\r\n`, or carrying the last byte before `bdat_end`) is copied with `REC_HELD` and dropped, unless released up to the message end (`release_end`, wrapping compare); the client's TCP retransmits it, and after [`Control::release_gate`] the retransmission passes. Created by userspace, or by the kernel at the client's SYN when `CONFIG.gate` is set. |
//! | `STATS` | per-CPU array[1] | 0 → [`smtp_common::Stats`] | counters ([`smtp_common::Stat`]), see [`KernelStats`]. |
//!
//! `SERVER_ACKS` (LRU hash, [`FlowKey`] → [`smtp_common::AckSeen`], not
//! pinned) keeps the server's latest pure ACK on gated flows; it is replayed
//! as a payload-less record flagged `REC_ACK_REPLAY` just before each held
//! record, so reassembly learns how far the server got and declares a hole
//! it never saw as a gap rather than waiting (pure ACKs are otherwise not
//! recorded).
//!
//! # What cannot be recorded (fail closed)
//! Parser limits, shared with userspace (`smtp_common`): at most
//! [`smtp_common::MAX_VLAN_TAGS`] VLAN tags (2, QinQ; TC ingress sees one
//! more, the kernel has moved the outer tag out of the frame) and
//! [`smtp_common::MAX_IPV6_EXT_HEADERS`] IPv6 extension headers (8). While
//! enforcing, the program drops, and counts by reason (`ctl stats`):
//!
//! | packet | counter | why it is known to be monitored |
//! |---|---|---|
//! | IPv4 first fragment (MF, offset 0) / IPv6 first fragment of TCP | `fragments` | its TCP ports are in it; a first fragment too short to show them (RFC 1858's tiny fragment) is dropped whatever its port |
//! | IPv6 extension-header chain longer than the limit | `ext_header_limit` | ports unknown: any port |
//! | more VLAN tags than the limit | `vlan_limit` | content unknown: any frame |
//! | IP says TCP, TCP header unreadable or impossible | `unparsed` | ports unknown: any port |
//! | URG flag on a monitored segment (payload-less RSTs excepted) | `urgent` | ports |
//!
//! `dropped_unparsed` counts the drops. Non-first fragments carry no ports
//! and pass: a datagram whose first fragment was dropped is never
//! reassembled, and Linux discards overlapping fragments, so the ports
//! cannot be rewritten by a later one. `--unparsed pass`
//! ([`MonitorOptions::unparsed_pass`]) passes them all while enforcing (the
//! fragment's bytes then reach the server unseen: reassembly declares a
//! gap); monitor mode passes and counts them. Bad TCP checksums (see
//! `smtp-ebpf/src/csum.rs`: trusted when the stack verified or will not
//! verify, else verified by the program for segments of up to one record)
//! are counted (`checksum_bad`); while enforcing they are dropped without a
//! record, otherwise recorded with `REC_CSUM_BAD`. `REC_CSUM_GOOD` marks the
//! records the kernel vouches for.
//!
//! Order of the checks on a monitored packet while enforcing: fail closed,
//! blocklist, verdict, gate, checksum. [`Control`] reads and writes all of them, in this process
//! ([`Monitor::control_mut`]) or through the pins.
//!
//! # Gate latency
//! The kernel cannot queue a packet: a held segment is dropped and the
//! client's TCP sends it again. Released before that retransmission, a
//! message reaches the server with it, about 207 ms after the first send on
//! a veth pair (Linux 6.18, RTT well under 1 ms: the first re-send comes
//! after the 200 ms minimum of the loss-probe/RTO timers). Released later, it goes with the next retransmission of the
//! exponential backoff (measured at +207, +415, +830, +1660, +3330 ms after
//! the first send). Measured by `tests/tests/enforce_kernel.rs` (run with
//! `--nocapture`). A segment that ends a message but carries more data after
//! it (a pipelined command) is not held: userspace sees that in the records
//! and reports it.
//!
//! # Minimum kernel version
//! 5.15 (ring buffer, BTF); TC programs use tcx from 6.6 and clsact before;
//! the XDP ingress program needs 5.18 (`bpf_xdp_load_bytes`).

mod attach;
mod control;
mod error;
pub mod kernel_log;
pub mod pins;
pub mod route;

use std::{
    ffi::CString,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use aya::{
    maps::{MapData, RingBuf},
    util::KernelVersion,
    Ebpf, EbpfLoader,
};
use smtp_common::{
    Config, FlowKey, Verdict, DEFAULT_RINGBUF_SIZE, MAP_BLOCKLIST, MAP_CONFIG, MAP_GATES,
    MAP_RECORDS, MAP_STATS, MAP_VERDICTS, MAX_PORTS,
};
use tokio::io::unix::AsyncFd;

use crate::capture::{
    ringbuf::{Clock, Record},
    Segment,
};

pub use attach::IngressMode;
pub use control::{Control, KernelStats};
pub use error::DatapathError;
pub use kernel_log::KernelLog;
pub use pins::DEFAULT_PIN_ROOT;

/// The eBPF object, built by build.rs from `smtp-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/smtp-ebpf"));

/// Records handled per [`Monitor::next_batch`] call at most, so a busy ring
/// cannot starve the rest of the event loop.
const MAX_BATCH: usize = 4096;

/// How to start a [`Monitor`].
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Interface to attach to; `None`: the one carrying the default route.
    pub iface: Option<String>,
    /// Monitored TCP ports, 1 to 8.
    pub ports: Vec<u16>,
    /// Ring buffer size in bytes: a power of two, at least one page.
    pub ringbuf_size: u32,
    pub ingress: IngressMode,
    /// Enforce drop verdicts from the start.
    pub enforce: bool,
    /// End-of-data gate on: the kernel arms a flow's gate at the client's
    /// SYN ([`smtp_common::Config::gate`]).
    pub gate: bool,
    /// Packets the program cannot record completely pass while enforcing
    /// (`--unparsed pass`); default: dropped ([`smtp_common::Config::unparsed_pass`]).
    pub unparsed_pass: bool,
    /// The kernel program's own log lines ([`KernelLog`]); off by default.
    pub kernel_log: KernelLog,
    /// bpffs directory holding `<iface>/` pin directories.
    pub pin_root: PathBuf,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        MonitorOptions {
            iface: None,
            ports: vec![25],
            ringbuf_size: DEFAULT_RINGBUF_SIZE,
            ingress: IngressMode::default(),
            enforce: true,
            gate: false,
            unparsed_pass: false,
            kernel_log: KernelLog::Off,
            pin_root: PathBuf::from(DEFAULT_PIN_ROOT),
        }
    }
}

/// Counters kept by userspace while reading the ring buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserStats {
    /// Records read from the ring buffer.
    pub records: u64,
    /// Records rejected by the decoder (never expected; counted, logged).
    pub decode_errors: u64,
}

/// A running datapath on one interface. Field order is drop order: maps,
/// then programs (detach), then pins, then the interface lock.
pub struct Monitor {
    ring: AsyncFd<RingBuf<MapData>>,
    control: Control,
    ebpf: Ebpf,
    pins: pins::PinDir,
    _lock: pins::IfaceLock,
    clock: Clock,
    iface: String,
    ifindex: u32,
    ingress: IngressMode,
    user: UserStats,
    /// The task relaying the kernel's log lines (aborted on drop).
    log_relay: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(t) = self.log_relay.take() {
            t.abort();
        }
    }
}

fn check_options(o: &MonitorOptions) -> Result<Vec<u16>, DatapathError> {
    let mut ports = o.ports.clone();
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() || ports.len() > MAX_PORTS {
        return Err(DatapathError::InvalidOption(format!(
            "--ports needs 1 to {MAX_PORTS} ports, got {}",
            ports.len()
        )));
    }
    if ports.contains(&0) {
        return Err(DatapathError::InvalidOption(
            "port 0 cannot be monitored".into(),
        ));
    }
    let page = 4096u32;
    if !o.ringbuf_size.is_power_of_two() || o.ringbuf_size < page {
        return Err(DatapathError::InvalidOption(format!(
            "--ringbuf-size {} must be a power of two of at least {page}",
            o.ringbuf_size
        )));
    }
    Ok(ports)
}

fn check_kernel() -> Result<(), DatapathError> {
    match KernelVersion::current() {
        Ok(v) if v < KernelVersion::new(5, 15, 0) => Err(DatapathError::UnsupportedKernel(
            format!("Linux {v} is older than 5.15"),
        )),
        _ => Ok(()),
    }
}

/// True when the process has the capabilities it needs (root has them).
fn check_privileges() -> Result<(), DatapathError> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |c: u32| eff & (1u64 << c) != 0;
    if has(CAP_NET_ADMIN) && (has(CAP_BPF) || has(CAP_SYS_ADMIN)) {
        Ok(())
    } else {
        Err(DatapathError::NotPermitted(format!(
            "effective capabilities {eff:#x} lack CAP_BPF/CAP_NET_ADMIN"
        )))
    }
}

fn ifindex(iface: &str) -> Result<u32, DatapathError> {
    let c = CString::new(iface).map_err(|_| DatapathError::NoInterface(iface.into()))?;
    // SAFETY: valid C string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(DatapathError::NoInterface(iface.into()));
    }
    Ok(idx)
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, DatapathError> {
    ebpf.take_map(name)
        .ok_or(DatapathError::MissingMap { name })
}

impl Monitor {
    /// Loads, configures and attaches the datapath. Must be called inside a
    /// tokio runtime (the ring buffer is registered with its reactor). On
    /// error nothing stays attached or pinned.
    pub fn start(opts: MonitorOptions) -> Result<Monitor, DatapathError> {
        let ports = check_options(&opts)?;
        let iface = match &opts.iface {
            Some(i) => i.clone(),
            None => route::default_route_interface().ok_or(DatapathError::NoDefaultRoute)?,
        };
        let ifindex = ifindex(&iface)?;
        check_kernel()?;
        check_privileges()?;
        let lock = pins::IfaceLock::acquire(&iface)?;
        raise_memlock();
        let pins = pins::PinDir::create(&opts.pin_root, &iface)?;

        let log_level = opts.kernel_log.level();
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_RECORDS, opts.ringbuf_size)
            .override_global(kernel_log::LEVEL_GLOBAL, &log_level, true)
            .load(EBPF_OBJECT)
            .map_err(|e| {
                if error::is_eperm(&e) {
                    DatapathError::NotPermitted(format!("loading the eBPF object: {e}"))
                } else {
                    DatapathError::Load(e)
                }
            })?;
        let log_relay = kernel_log::relay(&mut ebpf, opts.kernel_log)?;
        let ring = take_map(&mut ebpf, MAP_RECORDS)?;
        let mut config = take_map(&mut ebpf, MAP_CONFIG)?;
        let verdicts = take_map(&mut ebpf, MAP_VERDICTS)?;
        let stats = take_map(&mut ebpf, MAP_STATS)?;
        let blocklist = take_map(&mut ebpf, MAP_BLOCKLIST)?;
        let gates = take_map(&mut ebpf, MAP_GATES)?;
        {
            let mut cfg: aya::maps::Array<&mut MapData, Config> = (&mut config)
                .try_into()
                .map_err(|source| DatapathError::Map {
                    name: MAP_CONFIG,
                    source,
                })?;
            let config = Config {
                gate: opts.gate as u32,
                unparsed_pass: opts.unparsed_pass as u32,
                ..Config::new(&ports, opts.enforce)
            };
            cfg.set(0, config, 0).map_err(|source| DatapathError::Map {
                name: MAP_CONFIG,
                source,
            })?;
        }
        let ingress = attach::attach_all(&mut ebpf, &iface, opts.ingress)?;
        // How much of the verifier's 1 M instruction budget each program
        // takes (the margin left for changes to the kernel code).
        for (name, prog) in ebpf.programs() {
            if let Ok(info) = prog.info() {
                tracing::debug!(
                    program = name,
                    verified_insns = info.verified_instruction_count(),
                    "program verified"
                );
            }
        }
        // Pins last: their presence means "attached and configured".
        for (name, map) in [
            (MAP_RECORDS, &ring),
            (MAP_CONFIG, &config),
            (MAP_STATS, &stats),
            (MAP_VERDICTS, &verdicts),
            (MAP_BLOCKLIST, &blocklist),
            (MAP_GATES, &gates),
        ] {
            let path = pins.path().join(name);
            map.pin(&path)
                .map_err(|source| DatapathError::Pin { path, source })?;
        }
        let control = Control::from_maps(control::ControlMaps {
            verdicts,
            config,
            stats,
            blocklist,
            gates,
        })?;
        let ring = RingBuf::try_from(ring).map_err(|source| DatapathError::Map {
            name: MAP_RECORDS,
            source,
        })?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(DatapathError::io(
                "ring buffer poll registration",
                std::io::Error::other("Monitor::start called outside a tokio runtime"),
            ));
        }
        // SAFETY: the RingBuf owns its map fd, which stays open and unchanged
        // for as long as the AsyncFd owns the RingBuf.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| DatapathError::io("ring buffer poll registration", e.into_parts().1))?;

        tracing::info!(
            iface = %iface, ifindex, ingress = %ingress, ports = ?ports,
            enforce = opts.enforce, unparsed_pass = opts.unparsed_pass, ringbuf_size = opts.ringbuf_size,
            pins = %pins.path().display(), "datapath attached"
        );
        Ok(Monitor {
            ring,
            control,
            ebpf,
            pins,
            _lock: lock,
            clock: Clock::now(),
            iface,
            ifindex,
            ingress,
            user: UserStats::default(),
            log_relay,
        })
    }

    /// Waits until records are available, then hands up to `MAX_BATCH` of
    /// them to `f`. Returns how many were read.
    pub async fn next_batch(
        &mut self,
        mut f: impl FnMut(&Record<'_>),
    ) -> Result<usize, DatapathError> {
        let mut guard = self
            .ring
            .readable_mut()
            .await
            .map_err(|e| DatapathError::io("ring buffer poll", e))?;
        let ring = guard.get_inner_mut();
        let mut n = 0;
        while n < MAX_BATCH {
            let Some(item) = ring.next() else {
                guard.clear_ready();
                break;
            };
            n += 1;
            self.user.records += 1;
            match Record::parse(&item) {
                Ok(rec) => f(&rec),
                Err(e) => {
                    self.user.decode_errors += 1;
                    tracing::warn!(error = %e, "undecodable ring buffer record");
                }
            }
        }
        Ok(n)
    }

    /// Like [`Monitor::next_batch`], with each record as a [`Segment`].
    pub async fn next_segments(
        &mut self,
        mut f: impl FnMut(Segment<'_>),
    ) -> Result<usize, DatapathError> {
        let clock = self.clock;
        self.next_batch(|r| f(r.segment(&clock))).await
    }

    /// Timestamp converter for records of this monitor.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn set_verdict(&mut self, key: &FlowKey, verdict: Verdict) -> Result<(), DatapathError> {
        self.control.set_verdict(key, verdict)
    }

    pub fn set_enforce(&mut self, on: bool) -> Result<(), DatapathError> {
        self.control.set_enforce(on)
    }

    /// Kernel counters summed over CPUs.
    pub fn stats(&self) -> Result<KernelStats, DatapathError> {
        self.control.stats()
    }

    /// Userspace reading counters.
    pub fn user_stats(&self) -> UserStats {
        self.user
    }

    /// Same as [`Monitor::control_mut`] (kept for existing callers).
    pub fn control(&mut self) -> &mut Control {
        &mut self.control
    }

    /// The maps, for verdicts, blocklist and gates.
    pub fn control_mut(&mut self) -> &mut Control {
        &mut self.control
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Ingress hook in effect (after fallbacks).
    pub fn ingress(&self) -> IngressMode {
        self.ingress
    }

    pub fn pin_dir(&self) -> &Path {
        self.pins.path()
    }

    /// Detaches every program and removes the pins (same as dropping).
    pub fn shutdown(self) {
        let iface = self.iface.clone();
        drop(self);
        tracing::info!(iface = %iface, "datapath detached, pins removed");
    }

    /// Number of programs loaded (tests, diagnostics).
    pub fn program_count(&self) -> usize {
        self.ebpf.programs().count()
    }

    /// Raw fd of the ring buffer (diagnostics).
    pub fn ring_fd(&self) -> i32 {
        self.ring.get_ref().as_raw_fd()
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let mut o = MonitorOptions::default();
        assert_eq!(check_options(&o).unwrap(), vec![25]);
        o.ports = vec![587, 25, 25];
        assert_eq!(check_options(&o).unwrap(), vec![25, 587]);
        o.ports = (1..=9).collect();
        assert!(check_options(&o).is_err());
        o.ports = vec![0];
        assert!(check_options(&o).is_err());
        o.ports = vec![25];
        o.ringbuf_size = 5000;
        assert!(check_options(&o).is_err());
        o.ringbuf_size = 2048;
        assert!(check_options(&o).is_err());
    }

    #[test]
    fn ingress_mode_parses() {
        assert_eq!("xdp".parse::<IngressMode>().unwrap(), IngressMode::Xdp);
        assert_eq!(
            "xdp-generic".parse::<IngressMode>().unwrap(),
            IngressMode::XdpGeneric
        );
        assert_eq!("tc".parse::<IngressMode>().unwrap(), IngressMode::Tc);
        assert!("tcx".parse::<IngressMode>().is_err());
        assert_eq!(IngressMode::default(), IngressMode::Tc);
    }
}
