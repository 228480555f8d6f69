//! Prometheus metrics (`--metrics ADDR`): [`Snapshot`] is everything the
//! daemon counts, gathered at one moment from the counters' owners — the
//! kernel's per-CPU map (summed), the ring-buffer reader, the pipeline
//! worker and flow table, the enforcer, the Redis output and the fleet
//! link. `ctl stats` and a scrape read the same snapshot; nothing is counted
//! twice. [`encode`] renders it in the Prometheus text format (0.0.4) with
//! `prometheus-client`; [`http`] serves it on `/metrics`.
//!
//! Names follow Prometheus' conventions: `smtp_monitor_` prefix, counters
//! end in `_total`, units in the name (`_bytes`, `_seconds`).

pub mod http;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use strum::VariantArray;

use crate::daemon::latency::BUCKETS_MICROS;
use crate::daemon::Enforcer;
use crate::datapath::{KernelStats, UserStats};
use crate::fleet::FleetCounters;
use crate::output::redis::EveRedisCounters;
use crate::pipeline::LiveCounters;
use crate::smtp::AnomalyKind;

/// Every counter of the running daemon at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `None` when the kernel map could not be read.
    pub kernel: Option<KernelStats>,
    pub user: UserStats,
    /// `None` when the pipeline worker has stopped.
    pub live: Option<LiveCounters>,
    pub enforcer: Enforcer,
    /// With `--eve-redis`.
    pub eve_redis: Option<EveRedisCounters>,
    /// With `--fleet`.
    pub fleet: Option<FleetCounters>,
}

/// The snapshot in the Prometheus text format.
pub fn encode(s: &Snapshot) -> String {
    let mut registry = Registry::with_prefix("smtp_monitor");
    registry.register_collector(Box::new(Collector(s.clone())));
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug
    // in our names, shown as a truncated page rather than a panic.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

/// Content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug)]
struct Collector(Snapshot);

type R = Result<(), std::fmt::Error>;

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> R {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> R {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn g(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// One counter per label value.
fn counters(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (String, u64)>,
) -> R {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, value.as_str())];
        ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// `bytes_uncaptured` → `uncaptured_bytes`: the unit last.
fn kernel_name(name: &str) -> String {
    match name.strip_prefix("bytes_") {
        Some(rest) => format!("kernel_{rest}_bytes"),
        None => format!("kernel_{name}"),
    }
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut e: DescriptorEncoder) -> R {
        let s = &self.0;
        let e = &mut e;
        {
            let labels = [("version", env!("CARGO_PKG_VERSION"))];
            let mut m = e.encode_descriptor(
                "build_info",
                "Version of this smtp-monitor (value 1)",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
        }
        if let Some(k) = &s.kernel {
            for (stat, name) in KernelStats::NAMES {
                let help = format!("Kernel datapath counter {name}, summed over CPUs");
                counter(e, &kernel_name(name), &help, k.get(stat))?;
            }
        }
        counter(
            e,
            "ringbuf_records_read",
            "Records read from the ring buffer",
            s.user.records,
        )?;
        counter(
            e,
            "ringbuf_decode_errors",
            "Ring-buffer records the decoder rejected",
            s.user.decode_errors,
        )?;
        if let Some(l) = &s.live {
            let p = &l.pipeline;
            counter(e, "flows", "SMTP flows seen", p.flows)?;
            counter(e, "transactions", "SMTP transactions seen", p.transactions)?;
            let by_kind = |t: &crate::output::AnomalyTally| -> Vec<(String, u64)> {
                AnomalyKind::VARIANTS
                    .iter()
                    .map(|k| (k.as_str().to_string(), t.get(*k)))
                    .collect()
            };
            counters(
                e,
                "anomalies",
                "Protocol anomalies by kind",
                "kind",
                by_kind(&p.anomalies_by_kind),
            )?;
            counters(
                e,
                "anomalies_suppressed",
                "Anomaly events not written (per-flow limit of their kind), by kind",
                "kind",
                by_kind(&p.anomalies_suppressed),
            )?;
            let mut by_sid: Vec<(String, u64)> = p
                .alerts_by_sid
                .iter()
                .map(|(sid, n)| (sid.to_string(), *n))
                .collect();
            if p.alerts_other_rules > 0 {
                by_sid.push(("other".into(), p.alerts_other_rules));
            }
            counters(e, "alerts", "Alerts by rule sid", "sid", by_sid)?;
            counter(
                e,
                "blocked_flows",
                "Sessions a rule asked to drop, reset or reject",
                p.blocked_flows,
            )?;
            counter(
                e,
                "single_packet_flows",
                "Flows of one packet whose events were not written",
                p.single_packet_flows,
            )?;
            counter(
                e,
                "single_packet_lines_suppressed",
                "Event lines of single-packet flows not written",
                p.single_packet_lines,
            )?;
            counter(
                e,
                "reassembled_bytes",
                "Reassembled payload bytes given to the dissector",
                p.bytes,
            )?;
            counter(
                e,
                "gap_bytes",
                "Payload bytes lost to reassembly gaps",
                p.gap_bytes,
            )?;
            counter(
                e,
                "gate_releases",
                "Message ends released by the gate after inspection",
                p.gate_releases,
            )?;
            counter(
                e,
                "gate_missed",
                "Message ends that slipped past the gate",
                p.gate_missed,
            )?;
            counter(
                e,
                "rejects",
                "Transactions answered with the reject reply",
                p.rejects,
            )?;
            counter(
                e,
                "gate_queue_packets",
                "Packets the netfilter-queue gate received",
                p.queue.queued,
            )?;
            counters(
                e,
                "gate_queue_verdicts",
                "Netfilter-queue gate verdicts by outcome",
                "verdict",
                [
                    ("accepted".to_string(), p.queue.accepted),
                    ("dropped_blocked".to_string(), p.queue.dropped_blocked),
                    ("dropped_timeout".to_string(), p.queue.dropped_timeout),
                    ("dropped_unparsed".to_string(), p.queue.dropped_unparsed),
                ],
            )?;
            counter(
                e,
                "regex_restarts",
                "Regex scans restarted after an undecidable byte",
                p.regex_restarts,
            )?;
            counter(
                e,
                "regex_failures",
                "Regex scans stopped early",
                p.regex_failures,
            )?;
            let t = &l.table;
            gauge(e, "flows_active", "Flows tracked now", g(t.active))?;
            counters(
                e,
                "flows_closed",
                "Flows closed, by reason",
                "reason",
                [
                    ("fin".to_string(), t.closed_fin),
                    ("reset".to_string(), t.closed_reset),
                    ("timeout".to_string(), t.timed_out),
                    ("evicted".to_string(), t.evicted),
                    ("shutdown".to_string(), t.shutdown),
                    ("reused".to_string(), t.reused),
                    ("memcap".to_string(), t.memcap_shed),
                ],
            )?;
            gauge(
                e,
                "reassembly_buffered_bytes",
                "Bytes buffered out of order now",
                g(t.buffered),
            )?;
            gauge(
                e,
                "reassembly_buffered_peak_bytes",
                "Most bytes buffered out of order at once",
                g(t.buffered_peak),
            )?;
            gauge(
                e,
                "session_memory_bytes",
                "Heap bytes of the per-flow SMTP state now",
                g(t.session_memory),
            )?;
            counter(
                e,
                "memcap_exceeded",
                "Times the memory cap was exceeded",
                t.memcap_exceeded,
            )?;
        }
        let c = &s.enforcer.counters;
        counter(
            e,
            "verdicts",
            "Drop verdicts written to the kernel",
            c.verdicts,
        )?;
        counters(
            e,
            "resets",
            "Connections reset, by method",
            "method",
            [
                ("socket".to_string(), c.resets_socket),
                ("injected".to_string(), c.resets_injected),
            ],
        )?;
        counter(
            e,
            "reset_failures",
            "Resets that could not be done",
            c.reset_failures,
        )?;
        counter(
            e,
            "reject_failures",
            "Reject replies that could not be sent",
            c.reject_failures,
        )?;
        counter(
            e,
            "ip_blocks",
            "Client addresses put on the kernel blocklist by rules",
            c.ip_blocks,
        )?;
        counter(e, "gate_updates", "Gate map writes", c.gate_updates)?;
        counter(
            e,
            "map_errors",
            "Kernel map writes that failed",
            c.map_errors,
        )?;
        {
            let l = &s.enforcer.latency;
            let buckets: Vec<(f64, u64)> = BUCKETS_MICROS
                .iter()
                .zip(l.buckets)
                .map(|(b, n)| (*b as f64 / 1e6, n))
                .chain(std::iter::once((f64::INFINITY, l.count)))
                .collect();
            let mut m = e.encode_descriptor(
                "verdict_latency_seconds",
                "Capture of the deciding segment to the verdict in the kernel map",
                None,
                MetricType::Histogram,
            )?;
            m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                l.sum_micros as f64 / 1e6,
                l.count,
                &buckets,
                None,
            )?;
        }
        if let Some(r) = &s.eve_redis {
            gauge(
                e,
                "eve_redis_queue_events",
                "EVE events waiting for Redis",
                g(r.queued),
            )?;
            counter(
                e,
                "eve_redis_enqueued_events",
                "EVE events queued for Redis",
                r.enqueued,
            )?;
            counter(
                e,
                "eve_redis_sent_events",
                "EVE events Redis acknowledged",
                r.sent,
            )?;
            counter(
                e,
                "eve_redis_dropped_events",
                "EVE events dropped (queue overflow, oldest first)",
                r.dropped,
            )?;
            counter(
                e,
                "eve_redis_errors",
                "Failed Redis connections and batches",
                r.errors,
            )?;
            gauge(
                e,
                "eve_redis_connected",
                "1 while connected to Redis",
                r.connected as i64,
            )?;
        }
        if let Some(f) = &s.fleet {
            gauge(
                e,
                "fleet_connected",
                "1 while the fleet link to Redis is up",
                f.connected as i64,
            )?;
            gauge(
                e,
                "fleet_queue_changes",
                "Local blocklist changes waiting for Redis",
                g(f.queued),
            )?;
            counter(
                e,
                "fleet_published_changes",
                "Local blocks and unblocks published",
                f.published,
            )?;
            counter(
                e,
                "fleet_applied_changes",
                "Blocks and unblocks from other hosts applied",
                f.applied,
            )?;
            counter(
                e,
                "fleet_rejected_entries",
                "Malformed fleet entries rejected",
                f.rejected,
            )?;
            counter(
                e,
                "fleet_dropped_changes",
                "Local changes dropped (queue overflow, oldest first)",
                f.dropped,
            )?;
            counter(
                e,
                "fleet_resyncs",
                "Full loads of the fleet blocklist",
                f.resyncs,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let mut s = Snapshot {
            kernel: Some(KernelStats::default()),
            live: Some(LiveCounters::default()),
            eve_redis: Some(EveRedisCounters::default()),
            fleet: Some(FleetCounters::default()),
            ..Snapshot::default()
        };
        s.enforcer.latency.record(120);
        s.live
            .as_mut()
            .unwrap()
            .pipeline
            .alerts_by_sid
            .insert(1001, 2);
        let text = encode(&s);
        for want in [
            "# TYPE smtp_monitor_kernel_records_lost_total counter",
            "smtp_monitor_kernel_uncaptured_bytes_total 0",
            "smtp_monitor_alerts_total{sid=\"1001\"} 2",
            "smtp_monitor_verdict_latency_seconds_bucket{le=\"0.00025\"} 1",
            "smtp_monitor_verdict_latency_seconds_count 1",
            "smtp_monitor_build_info{version=",
            "smtp_monitor_eve_redis_dropped_events_total 0",
            "smtp_monitor_fleet_connected 0",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let f: Vec<&str> = line.split(' ').collect();
            assert!(f[2].starts_with("smtp_monitor_"), "{line}");
            if f[3] == "counter" {
                assert!(f[2].ends_with("_total"), "{line}");
            }
        }
    }
}
