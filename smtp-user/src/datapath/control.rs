//! Control of a running datapath through its maps: verdicts, enforcement,
//! ports, IP blocklist, end-of-data gates, counters. Works on the maps of a [`super::Monitor`] in this process
//! or on the pinned maps of one running elsewhere ([`Control::open_pinned`]).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Duration,
};

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray};
use smtp_common::{
    Config, FlowKey, Gate, IpKey, Stat, Stats, Verdict, FAMILY_V4, FAMILY_V6, GATE_BDAT,
    GATE_RELEASED, MAP_BLOCKLIST, MAP_CONFIG, MAP_GATES, MAP_STATS, MAP_VERDICTS, STAT_COUNT,
};

use super::{pins, DatapathError};

/// Handles on the datapath's maps (all but the ring buffer).
pub struct Control {
    verdicts: HashMap<MapData, FlowKey, u32>,
    config: Array<MapData, Config>,
    stats: PerCpuArray<MapData, Stats>,
    /// Client address → expiry in CLOCK_MONOTONIC ns (0 = none).
    blocklist: HashMap<MapData, IpKey, u64>,
    gates: HashMap<MapData, FlowKey, Gate>,
}

/// The maps a [`Control`] is made of, as taken from the loaded object.
pub(crate) struct ControlMaps {
    pub verdicts: Map,
    pub config: Map,
    pub stats: Map,
    pub blocklist: Map,
    pub gates: Map,
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

impl Control {
    pub(crate) fn from_maps(m: ControlMaps) -> Result<Control, DatapathError> {
        Ok(Control {
            verdicts: HashMap::try_from(m.verdicts).map_err(map_err(MAP_VERDICTS))?,
            config: Array::try_from(m.config).map_err(map_err(MAP_CONFIG))?,
            stats: PerCpuArray::try_from(m.stats).map_err(map_err(MAP_STATS))?,
            blocklist: HashMap::try_from(m.blocklist).map_err(map_err(MAP_BLOCKLIST))?,
            gates: HashMap::try_from(m.gates).map_err(map_err(MAP_GATES))?,
        })
    }

    /// Opens the maps pinned by the monitor running on `iface` under
    /// `pin_root` (normally [`pins::DEFAULT_PIN_ROOT`]).
    pub fn open_pinned(pin_root: &Path, iface: &str) -> Result<Control, DatapathError> {
        let dir = pins::pin_dir(pin_root, iface);
        let open = |name: &'static str| -> Result<Map, DatapathError> {
            let md = MapData::from_pin(dir.join(name)).map_err(map_err(name))?;
            Map::from_map_data(md).map_err(map_err(name))
        };
        Control::from_maps(ControlMaps {
            verdicts: open(MAP_VERDICTS)?,
            config: open(MAP_CONFIG)?,
            stats: open(MAP_STATS)?,
            blocklist: open(MAP_BLOCKLIST)?,
            gates: open(MAP_GATES)?,
        })
    }

    /// Sets the verdict of a flow. `Pass` removes its entry.
    pub fn set_verdict(&mut self, key: &FlowKey, verdict: Verdict) -> Result<(), DatapathError> {
        match verdict {
            Verdict::Drop => self
                .verdicts
                .insert(key, Verdict::Drop as u32, 0)
                .map_err(map_err(MAP_VERDICTS)),
            Verdict::Pass => remove(&mut self.verdicts, key, MAP_VERDICTS).map(|_| ()),
        }
    }

    /// Flows with a drop verdict.
    pub fn drop_verdicts(&self) -> Result<Vec<FlowKey>, DatapathError> {
        let mut out = Vec::new();
        for item in self.verdicts.iter() {
            let (k, v) = item.map_err(map_err(MAP_VERDICTS))?;
            if v == Verdict::Drop as u32 {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// The verdict stored for a flow (`Pass` when none).
    pub fn verdict(&self, key: &FlowKey) -> Verdict {
        match self.verdicts.get(key, 0) {
            Ok(v) if v == Verdict::Drop as u32 => Verdict::Drop,
            _ => Verdict::Pass,
        }
    }

    /// The current config entry.
    pub fn config(&self) -> Result<Config, DatapathError> {
        self.config.get(&0, 0).map_err(map_err(MAP_CONFIG))
    }

    pub fn set_config(&mut self, config: &Config) -> Result<(), DatapathError> {
        self.config.set(0, config, 0).map_err(map_err(MAP_CONFIG))
    }

    /// Switches enforcement of drop verdicts on or off (monitor mode).
    pub fn set_enforce(&mut self, on: bool) -> Result<(), DatapathError> {
        let mut c = self.config()?;
        c.enforce = on as u32;
        self.set_config(&c)
    }

    /// Blocks `ip` as a client: while enforcing, the kernel drops every
    /// packet of monitored flows whose client is `ip` (payload-less RSTs
    /// excepted), for `for_` or until [`Control::unblock_ip`]. Replaces an
    /// existing entry of the address.
    pub fn block_ip(&mut self, ip: IpAddr, for_: Option<Duration>) -> Result<(), DatapathError> {
        let expiry = match for_ {
            None => 0,
            // Never 0 (that means "no expiry").
            Some(d) => monotonic_ns()
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .max(1),
        };
        self.blocklist
            .insert(ip_key(ip), expiry, 0)
            .map_err(map_err(MAP_BLOCKLIST))
    }

    /// Removes `ip` from the blocklist; true if it was there (expired or not).
    pub fn unblock_ip(&mut self, ip: IpAddr) -> Result<bool, DatapathError> {
        remove(&mut self.blocklist, &ip_key(ip), MAP_BLOCKLIST)
    }

    /// Blocked addresses with their remaining time (`None`: no expiry).
    /// Expired entries (the kernel deletes them lazily) are omitted.
    pub fn blocked_ips(&self) -> Result<Vec<(IpAddr, Option<Duration>)>, DatapathError> {
        let now = monotonic_ns();
        let mut out = Vec::new();
        for item in self.blocklist.iter() {
            let (k, expiry) = item.map_err(map_err(MAP_BLOCKLIST))?;
            let Some(ip) = key_ip(&k) else {
                continue;
            };
            if expiry == 0 {
                out.push((ip, None));
            } else if expiry > now {
                out.push((ip, Some(Duration::from_nanos(expiry - now))));
            }
        }
        Ok(out)
    }

    /// Arms the end-of-data gate of a flow: from now on the client segment
    /// ending a message is held until released. Resets an existing gate.
    pub fn arm_gate(&mut self, key: &FlowKey) -> Result<(), DatapathError> {
        self.gates
            .insert(key, Gate::default(), 0)
            .map_err(map_err(MAP_GATES))
    }

    /// Lets message ends up to sequence number `end_seq` (exclusive end of
    /// the released bytes) through: TCP's retransmission of the held segment
    /// then reaches the server. A later message end is held again. No-op
    /// when the flow has no gate.
    pub fn release_gate(&mut self, key: &FlowKey, end_seq: u32) -> Result<(), DatapathError> {
        let Some(mut g) = self.gate(key) else {
            return Ok(());
        };
        g.flags |= GATE_RELEASED;
        g.release_end = end_seq;
        self.gates.insert(key, g, 0).map_err(map_err(MAP_GATES))
    }

    /// Declares the end (`end_seq`, exclusive) of a BDAT LAST chunk: the
    /// segment carrying the byte before it ends the message (released by
    /// `release_gate(key, end_seq)`). Arms the gate if needed.
    pub fn gate_bdat(&mut self, key: &FlowKey, end_seq: u32) -> Result<(), DatapathError> {
        let mut g = self.gate(key).unwrap_or_default();
        g.flags |= GATE_BDAT;
        g.bdat_end = end_seq;
        self.gates.insert(key, g, 0).map_err(map_err(MAP_GATES))
    }

    /// Removes the gate of a flow (its message ends pass again).
    pub fn disarm_gate(&mut self, key: &FlowKey) -> Result<(), DatapathError> {
        remove(&mut self.gates, key, MAP_GATES).map(|_| ())
    }

    /// Flows with an armed gate.
    pub fn gated_flows(&self) -> Result<Vec<FlowKey>, DatapathError> {
        let mut out = Vec::new();
        for item in self.gates.iter() {
            let (k, _) = item.map_err(map_err(MAP_GATES))?;
            out.push(k);
        }
        Ok(out)
    }

    /// The gate of a flow, if armed.
    pub fn gate(&self, key: &FlowKey) -> Option<Gate> {
        self.gates.get(key, 0).ok()
    }

    /// Kernel counters summed over all CPUs.
    pub fn stats(&self) -> Result<KernelStats, DatapathError> {
        let per_cpu = self.stats.get(&0, 0).map_err(map_err(MAP_STATS))?;
        let mut sum = [0u64; STAT_COUNT];
        for s in per_cpu.iter() {
            for (acc, v) in sum.iter_mut().zip(s.counters.iter()) {
                *acc = acc.wrapping_add(*v);
            }
        }
        Ok(KernelStats(sum))
    }
}

/// Removes `key`; true if it was there.
fn remove<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    key: &K,
    name: &'static str,
) -> Result<bool, DatapathError> {
    match map.remove(key) {
        Ok(()) => Ok(true),
        // aya reports a missing key as the syscall's ENOENT.
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => Err(map_err(name)(e)),
    }
}

/// Blocklist key of `ip`; an IPv4-mapped IPv6 address is its IPv4 address
/// (the packets of such a connection are IPv4).
fn ip_key(ip: IpAddr) -> IpKey {
    let mut addr = [0u8; 16];
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            IpKey::new(FAMILY_V4, addr)
        }
        IpAddr::V6(v6) => IpKey::new(FAMILY_V6, v6.octets()),
    }
}

fn key_ip(k: &IpKey) -> Option<IpAddr> {
    match k.family {
        FAMILY_V4 => {
            let [a, b, c, d, ..] = k.addr;
            Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
        }
        FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(k.addr))),
        _ => None,
    }
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Kernel counters summed over CPUs, indexed by [`Stat`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats(pub [u64; STAT_COUNT]);

impl KernelStats {
    pub fn get(&self, s: Stat) -> u64 {
        self.0[s as usize]
    }
}

impl KernelStats {
    /// Every counter with its `ctl stats` name, in [`Stat`] order.
    pub const NAMES: [(Stat, &'static str); STAT_COUNT] = [
        (Stat::Packets, "packets"),
        (Stat::MonitoredPackets, "monitored_packets"),
        (Stat::MonitoredBytes, "monitored_bytes"),
        (Stat::RecordsSent, "records_sent"),
        (Stat::RecordsLost, "records_lost"),
        (Stat::BytesUncaptured, "bytes_uncaptured"),
        (Stat::DroppedByVerdict, "dropped_by_verdict"),
        (Stat::Unparsed, "unparsed"),
        (Stat::DroppedByBlocklist, "dropped_by_blocklist"),
        (Stat::GateHeld, "gate_held"),
        (Stat::GatePassed, "gate_passed"),
        (Stat::Fragments, "fragments"),
        (Stat::ExtHeaderLimit, "ext_header_limit"),
        (Stat::VlanLimit, "vlan_limit"),
        (Stat::Urgent, "urgent"),
        (Stat::DroppedUnparsed, "dropped_unparsed"),
        (Stat::ChecksumGood, "checksum_good"),
        (Stat::ChecksumBad, "checksum_bad"),
        (Stat::AckReplays, "ack_replays"),
        (Stat::GateQueued, "gate_queued"),
    ];
}

impl fmt::Display for KernelStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (stat, name)) in Self::NAMES.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={}", self.get(*stat))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_keys_round_trip() {
        for ip in ["198.18.0.1", "2001:2::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(key_ip(&ip_key(ip)), Some(ip));
        }
        let k = ip_key("198.18.0.1".parse().unwrap());
        assert_eq!(k.family, FAMILY_V4);
        assert_eq!(&k.addr[4..], &[0u8; 12]);
        assert_eq!(key_ip(&IpKey::new(9, [0; 16])), None);
        let mapped: IpAddr = "::ffff:198.18.0.1".parse().unwrap();
        assert_eq!(ip_key(mapped), k);
    }

    #[test]
    fn stats_display_names_every_counter() {
        let mut s = KernelStats::default();
        s.0[Stat::DroppedByBlocklist as usize] = 3;
        s.0[Stat::GateHeld as usize] = 4;
        s.0[Stat::GatePassed as usize] = 5;
        let text = s.to_string();
        assert!(text.contains("dropped_by_blocklist=3 gate_held=4 gate_passed=5"));
        assert_eq!(text.matches('=').count(), STAT_COUNT);
        for (i, (stat, _)) in KernelStats::NAMES.iter().enumerate() {
            assert_eq!(*stat as usize, i, "NAMES in Stat order");
        }
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0 && b >= a);
    }
}
