//! Control of a running datapath through its maps: verdicts, enforcement,
//! ports, counters. Works on the maps of a [`super::Monitor`] in this process
//! or on the pinned maps of one running elsewhere ([`Control::open_pinned`]).

use std::{fmt, path::Path};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use smtp_common::{
    Config, FlowKey, Stat, Stats, Verdict, MAP_CONFIG, MAP_STATS, MAP_VERDICTS, STAT_COUNT,
};

use super::{pins, DatapathError};

/// Handles on the config, verdict and stats maps.
pub struct Control {
    verdicts: HashMap<MapData, FlowKey, u32>,
    config: Array<MapData, Config>,
    stats: PerCpuArray<MapData, Stats>,
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

impl Control {
    pub(crate) fn from_maps(
        verdicts: Map,
        config: Map,
        stats: Map,
    ) -> Result<Control, DatapathError> {
        Ok(Control {
            verdicts: HashMap::try_from(verdicts).map_err(map_err(MAP_VERDICTS))?,
            config: Array::try_from(config).map_err(map_err(MAP_CONFIG))?,
            stats: PerCpuArray::try_from(stats).map_err(map_err(MAP_STATS))?,
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
        Control::from_maps(open(MAP_VERDICTS)?, open(MAP_CONFIG)?, open(MAP_STATS)?)
    }

    /// Sets the verdict of a flow. `Pass` removes its entry.
    pub fn set_verdict(&mut self, key: &FlowKey, verdict: Verdict) -> Result<(), DatapathError> {
        match verdict {
            Verdict::Drop => self
                .verdicts
                .insert(key, Verdict::Drop as u32, 0)
                .map_err(map_err(MAP_VERDICTS)),
            Verdict::Pass => match self.verdicts.remove(key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                Err(e) => Err(map_err(MAP_VERDICTS)(e)),
            },
        }
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

/// Kernel counters summed over CPUs, indexed by [`Stat`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats(pub [u64; STAT_COUNT]);

impl KernelStats {
    pub fn get(&self, s: Stat) -> u64 {
        self.0[s as usize]
    }
}

impl fmt::Display for KernelStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "packets={} monitored_packets={} monitored_bytes={} records_sent={} records_lost={} \
             bytes_uncaptured={} dropped_by_verdict={} unparsed={}",
            self.get(Stat::Packets),
            self.get(Stat::MonitoredPackets),
            self.get(Stat::MonitoredBytes),
            self.get(Stat::RecordsSent),
            self.get(Stat::RecordsLost),
            self.get(Stat::BytesUncaptured),
            self.get(Stat::DroppedByVerdict),
            self.get(Stat::Unparsed),
        )
    }
}
