//! `smtp-user run`: attach the datapath to an interface, dissect and police
//! what it sees, carry out verdicts, answer `ctl` on the control socket,
//! until SIGINT/SIGTERM (then detach and unpin). SIGHUP reloads the rules
//! and reopens `--output` (logrotate). Under a service manager
//! (`$NOTIFY_SOCKET`) it reports readiness once attached and pinned, and
//! pings the watchdog from the pipeline workers (`daemon::notify`).
//! Optionally serves Prometheus metrics (`--metrics`), copies the EVE lines
//! to Redis (`--eve-redis`) and shares IP blocks with a fleet (`--fleet`).

use std::io::BufWriter;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use smtp_common::Verdict;
use smtp_user::control::{
    default_socket_path, ControlServer, FlowRow, IpBlockReply, ReloadReply, Request, Response,
    Status,
};
use smtp_user::daemon::{Enforcer, Notifier, QueueGate};
use smtp_user::datapath::{Control, IngressMode, Monitor, MonitorOptions, DEFAULT_PIN_ROOT};
use smtp_user::fleet::{Change, FleetLink};
use smtp_user::flow::FlowConfig;
use smtp_user::metrics::{http::MetricsServer, Snapshot};
use smtp_user::output::redis::{EveRedisConfig, RedisOutput, RedisTee};
use smtp_user::output::reopen::{ReopenFile, Reopener};
use smtp_user::output::timestamp::rfc3339_micros;
use smtp_user::pipeline::{
    kernel_flow_key, Enforcement, LiveFlow, LiveGate, LivePipeline, LiveReport, Mode, ModeSwitch,
    PipelineCounters, PolicyOptions, SegmentBatch,
};
use smtp_user::policy::RuleSet;
use smtp_user::redis_link::RedisUrl;
use tokio::signal::unix::{signal, SignalKind};

use super::replay::load_rules;

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interface to monitor (default: the one carrying the default route).
    #[arg(long)]
    pub iface: Option<String>,
    /// Monitored TCP ports, comma separated (1 to 8).
    #[arg(long, value_delimiter = ',', default_value = "25")]
    pub ports: Vec<u16>,
    /// Ring buffer size in bytes (power of two).
    #[arg(long, default_value_t = smtp_common::DEFAULT_RINGBUF_SIZE)]
    pub ringbuf_size: u32,
    /// Ingress hook: xdp, xdp-generic or tc.
    #[arg(long, default_value = "tc")]
    pub ingress: IngressMode,
    /// Rules file (TOML; see examples/rules.toml). Default: the built-in
    /// policy (a fatal protocol error alerts and drops the session).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// `enforce`: drop/reset verdicts are carried out; `monitor`: alerts
    /// only (actions recorded as "allowed"). `ctl enforce on|off` switches
    /// at run time.
    #[arg(long, value_enum, default_value_t = Mode::Enforce)]
    pub mode: Mode,
    /// End-of-data gate: on flows a drop/reset rule may apply to (by its
    /// client_ip condition; armed by the kernel at the client's SYN), the
    /// kernel holds the client
    /// segment that ends a message until everything before it was
    /// inspected; a blocked message never reaches the server complete.
    #[arg(long)]
    pub gate: bool,
    /// Packets on monitored ports the kernel cannot record completely (IP
    /// fragments, VLAN stacks or IPv6 header chains beyond the parser's
    /// limits, unreadable TCP headers, URG segments). `drop` (fail closed,
    /// the default) drops them while enforcing; `pass` lets them through
    /// for operators who put availability first (their bytes reach the
    /// server unseen: the monitor reports a `stream_gap`). Monitor mode
    /// always passes them. Counted by reason in `ctl stats` either way.
    #[arg(long, value_enum, default_value_t = Unparsed::Drop)]
    pub unparsed: Unparsed,
    /// Netfilter queue number of the gate. With `--gate` and TC ingress,
    /// every client segment of a gated flow waits in this queue (an
    /// `NFQUEUE` rule the daemon installs with iptables/ip6tables) until
    /// its bytes were inspected: a clean message end passes within
    /// microseconds, wherever it sits in the segment. Without netfilter
    /// queueing the gate falls back to the kernel hold (a log line says so).
    #[arg(long, default_value_t = 2525)]
    pub gate_queue: u16,
    /// Mark bit(s) the kernel sets on packets for the gate's queue (must
    /// not be used by other marks on this host).
    #[arg(long, default_value = "0x00200000", value_parser = parse_mark)]
    pub gate_mark: u32,
    /// Use the kernel hold without the netfilter queue: a message end is
    /// dropped until released, then passes with TCP's retransmission
    /// (~200 ms per message); pipelined ends are missed (`gate_missed`).
    #[arg(long)]
    pub gate_fallback: bool,
    /// Reply of the `reject` action, sent to the client on the server's
    /// behalf (one line: a 5xx code, enhanced status, text).
    #[arg(long, default_value = smtp_user::pipeline::DEFAULT_REJECT_REPLY, value_parser = parse_reply)]
    pub reject_reply: String,
    /// Seconds between counter summaries.
    #[arg(long, default_value_t = 10)]
    pub stats_interval: u64,
    /// Parsing workers: flows are sharded among them by a hash of their
    /// 5-tuple; each has its own flow table, dissector, policy and
    /// enforcement handle. Default: one per core. `--max-flows` and
    /// `--memcap` are totals, shared out equally.
    #[arg(long, value_name = "N", default_value_t = smtp_user::pipeline::default_workers())]
    pub workers: usize,
    /// bpffs directory for pins.
    #[arg(long, default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
    /// Control socket for `ctl` (default /run/smtp-monitor/<iface>.sock).
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// Write EVE JSON lines to this file (appending) instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Also log every command and reply (`smtp_command` / `smtp_reply`).
    #[arg(long)]
    pub log_commands: bool,
    /// Anomaly events of one kind written per flow; later ones are counted
    /// (`anomalies_suppressed` on the flow event and in the stats). Bounds
    /// the output an attacker can cause; alerts are never suppressed.
    #[arg(long, value_name = "N", default_value_t = smtp_user::output::DEFAULT_ANOMALIES_PER_KIND)]
    pub anomalies_per_kind: u32,
    /// Close flows idle for this many seconds.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout: u64,
    /// Most flows tracked at once (least recently active evicted beyond).
    #[arg(long, default_value_t = 65_536)]
    pub max_flows: usize,
    /// Most memory, in MiB, for TCP reassembly plus SMTP session state
    /// across all flows; beyond, the largest flows are shed with a `memcap`
    /// anomaly. 0: no cap.
    #[arg(long, default_value_t = 1024)]
    pub memcap: usize,
    /// Serve Prometheus metrics on http://ADDR/metrics (e.g.
    /// `127.0.0.1:9725`). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Also send every EVE line to Redis, as Suricata's eve-log Redis
    /// output does: `redis://[USER@]HOST[:PORT]/KEY?mode=list|lpush|rpush|channel|publish|stream|xadd[&maxlen=N]`
    /// (default mode `list` = LPUSH, key `suricata`). The file output goes on.
    #[arg(long, value_name = "URL")]
    pub eve_redis: Option<String>,
    /// EVE lines kept in memory while Redis is slow or away; beyond, the
    /// oldest are dropped and counted.
    #[arg(long, value_name = "N", default_value_t = smtp_user::output::redis::DEFAULT_QUEUE_EVENTS)]
    pub eve_redis_queue: usize,
    /// Share IP blocks with the monitors on other hosts through this Redis:
    /// `redis://[USER@]HOST[:PORT][/PREFIX]` (keys `PREFIX:blocklist`,
    /// `PREFIX:changes`; default prefix `smtp-monitor:fleet`).
    #[arg(long, value_name = "URL")]
    pub fleet: Option<String>,
    /// File whose first line is the Redis AUTH password (for
    /// `--eve-redis` and `--fleet`; the ACL user is the URL's `USER@`).
    /// Passwords are never taken from the command line.
    #[arg(long, value_name = "PATH")]
    pub redis_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub content: super::content::ContentArgs,
}

/// What `--unparsed` does with packets the kernel cannot record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Unparsed {
    /// Drop them while enforcing (fail closed).
    Drop,
    /// Let them through.
    Pass,
}

fn parse_mark(s: &str) -> Result<u32, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("not a mark: {e}"))?;
    if v == 0 {
        return Err("the gate mark needs at least one bit".into());
    }
    Ok(v)
}

/// A reject reply: one line starting with a 5xx code.
fn parse_reply(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let ok = b.len() >= 4
        && b.len() <= 500
        && b[0] == b'5'
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && b[3] == b' '
        && s.bytes().all(|c| (0x20..0x7f).contains(&c));
    if !ok {
        return Err("expected one printable line starting with a 5xx code and a space".into());
    }
    Ok(s.to_string())
}

/// Under `--gate`, content rules without an action reject.
fn gate_defaults(rules: RuleSet, gate: bool) -> RuleSet {
    if gate {
        rules.gate_defaults()
    } else {
        rules
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What `status` and `reload` report about the daemon.
struct Daemon {
    mon: Monitor,
    pipeline: LivePipeline,
    /// Shared with the pipeline worker, which applies the requests.
    enforcer: Arc<Mutex<Enforcer>>,
    mode: ModeSwitch,
    rules: Arc<RuleSet>,
    rules_path: Option<PathBuf>,
    gate: bool,
    /// `--hashes` / `--no-urls`: a reloaded rules file must not need more.
    content: super::content::ContentArgs,
    /// The dissector computes file hashes (asked for, or needed by the
    /// rules it started with).
    hashing: bool,
    ports: Vec<u16>,
    started_micros: u64,
    started: Instant,
    /// `--output`'s file, for `ctl reopen`.
    reopener: Option<Reopener>,
    eve_redis: Option<RedisOutput>,
    fleet: Option<FleetLink>,
}

/// The next scrape, or never without `--metrics`.
async fn next_scrape(m: &mut Option<MetricsServer>) -> Option<smtp_user::metrics::http::Scrape> {
    match m {
        Some(m) => m.next().await,
        None => std::future::pending().await,
    }
}

/// This host's name, for the fleet's messages.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "localhost".into())
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Install the handlers first: a signal during start-up is then handled
    // after it, through the normal detach path.
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let rules = Arc::new(gate_defaults(load_rules(args.rules.as_deref())?, args.gate));
    if args.gate && !rules.has_gate_rules() {
        tracing::warn!("--gate has no effect: the rules have no drop/reset rule");
    }
    let (mut out, reopener): (Box<dyn Write + Send>, Option<Reopener>) = match &args.output {
        Some(p) => {
            let (f, r) = ReopenFile::open(p)
                .with_context(|| format!("cannot open output file {}", p.display()))?;
            (Box::new(f), Some(r))
        }
        None => (Box::new(std::io::stdout()), None),
    };
    let redis_url = |url: &str| -> anyhow::Result<RedisUrl> {
        Ok(RedisUrl::parse(url)?.with_password_file(args.redis_password_file.as_deref())?)
    };
    let eve_redis = match &args.eve_redis {
        Some(url) => {
            let config = EveRedisConfig::from_url(redis_url(url)?, args.eve_redis_queue)?;
            tracing::info!(redis = %config.url.endpoint(), key = %config.key, mode = ?config.mode, "EVE output to Redis");
            let r = RedisOutput::start(config)?;
            out = Box::new(RedisTee::new(out, r.queue()));
            Some(r)
        }
        None => None,
    };
    let metrics = match args.metrics {
        Some(addr) => {
            let m = MetricsServer::bind(addr)
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?;
            tracing::info!(addr = %m.local_addr(), "metrics on /metrics");
            Some(m)
        }
        None => None,
    };
    let notifier = Notifier::from_env().map(Arc::new);
    let flow = FlowConfig {
        monitored_ports: args.ports.clone(),
        idle_timeout_micros: args.idle_timeout.saturating_mul(1_000_000),
        max_flows: args.max_flows,
        memcap: args.memcap.saturating_mul(1 << 20),
        ..FlowConfig::default()
    };
    let mode = ModeSwitch::new(args.mode);
    let policy = PolicyOptions {
        rules: rules.clone(),
        mode: mode.clone(),
        gate: args.gate,
        content: args.content.options(&rules)?,
    };
    let hashing = policy.content.files;
    let mut mon = Monitor::start(MonitorOptions {
        iface: args.iface.clone(),
        ports: args.ports.clone(),
        ringbuf_size: args.ringbuf_size,
        ingress: args.ingress,
        enforce: args.mode == Mode::Enforce,
        // The kernel arms gates at SYN only if some flow may need one.
        gate: args.gate && rules.has_gate_rules(),
        unparsed_pass: args.unparsed == Unparsed::Pass,
        // `--log smtp_ebpf=debug` (or trace) turns the kernel's lines on.
        kernel_log: smtp_user::datapath::KernelLog::from_tracing(),
        pin_root: args.pin_root.clone(),
    })?;
    // Each worker thread writes verdicts itself, through its own handles
    // on the pinned maps: no hop back to this task on the way to the kernel.
    let workers = args.workers.max(1);
    let mut controls = Vec::with_capacity(workers);
    for _ in 0..workers {
        controls.push(
            Control::open_pinned(&args.pin_root, mon.iface())
                .context("cannot open the pinned maps for enforcement")?,
        );
    }
    let fleet = match &args.fleet {
        Some(url) => {
            let url = redis_url(url)?;
            let blocklist = Control::open_pinned(&args.pin_root, mon.iface())
                .context("cannot open the pinned maps for the fleet link")?;
            let origin = format!("{}/{}/{}", hostname(), mon.iface(), std::process::id());
            tracing::info!(redis = %url.endpoint(), origin = %origin, "fleet blocklist");
            Some(
                FleetLink::start(url, Box::new(blocklist), origin)
                    .context("cannot start the fleet link")?,
            )
        }
        None => None,
    };
    let enforcer = Arc::new(Mutex::new(Enforcer::default()));
    let mut queue_gate = if args.gate {
        open_queue_gate(&args, &mon)
    } else {
        None
    };
    let mut controls = controls.into_iter();
    let parts = |_worker: usize| {
        let (worker_enforcer, worker_mode) = (enforcer.clone(), mode.clone());
        let mut control = controls.next();
        let publisher = fleet.as_ref().map(FleetLink::publisher);
        let enforce = move |request: Enforcement| {
            // A rule's IP block goes to the fleet with its expiry.
            if let (Enforcement::BlockIp { ip, duration }, Some(p)) = (&request, &publisher) {
                p.publish(Change::Block {
                    ip: *ip,
                    expiry_ms: smtp_user::fleet::expiry_ms(Some(*duration)),
                });
            }
            if let (Ok(mut e), Some(c)) = (worker_enforcer.lock(), control.as_mut()) {
                e.apply(c, request, &worker_mode, now_micros());
            }
        };
        let gate = LiveGate {
            reject_reply: args.reject_reply.clone(),
            verdict: queue_gate.as_ref().map(QueueGate::verdict_fn),
        };
        (enforce, gate)
    };
    let pipeline = LivePipeline::start(
        flow,
        args.log_commands,
        args.anomalies_per_kind,
        policy,
        BufWriter::new(out),
        workers,
        parts,
    )
    .context("cannot start the pipeline thread")?;
    if let Some(q) = queue_gate.as_mut() {
        q.start_reader(pipeline.queue_feed())
            .context("cannot start the netfilter queue reader")?;
        // Only now: marked packets have a reader.
        let c = mon.control();
        c.config()
            .and_then(|cfg| {
                c.set_config(&smtp_common::Config {
                    gate_mark: args.gate_mark,
                    ..cfg
                })
            })
            .context("cannot switch the kernel to the queue gate")?;
        tracing::info!(
            queue = args.gate_queue,
            mark = format_args!("{:#x}", args.gate_mark),
            "gate: client segments of gated flows wait in the netfilter queue until inspected"
        );
    }
    let socket_path = args
        .control_socket
        .unwrap_or_else(|| default_socket_path(mon.iface()));
    let mut server = ControlServer::bind(&socket_path)
        .with_context(|| format!("cannot open the control socket {}", socket_path.display()))?;
    tracing::info!(
        iface = mon.iface(),
        mode = args.mode.as_str(),
        gate = args.gate,
        rules = rules.len(),
        rules_file = %args.rules.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_else(|| "builtin".into()),
        socket = %socket_path.display(),
        "monitoring"
    );
    if let Some(n) = &notifier {
        n.ready(&format!("monitoring {}", mon.iface()));
    }
    let mut d = Daemon {
        mon,
        pipeline,
        enforcer,
        mode,
        rules,
        rules_path: args.rules,
        gate: args.gate,
        content: args.content,
        hashing,
        ports: args.ports,
        started_micros: now_micros(),
        started: Instant::now(),
        reopener,
        eve_redis,
        fleet,
    };
    let mut metrics = metrics;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let stats_every = args.stats_interval.max(1);
    let mut ticks = 0u64;
    let clock = *d.mon.clock();
    // The watchdog is pinged from the pipeline worker, through its queue:
    // a wedged reader or worker stops the pings.
    let mut watchdog = notifier
        .as_ref()
        .and_then(|n| n.watchdog_interval())
        .map(tokio::time::interval);
    loop {
        let mut batch = SegmentBatch::default();
        tokio::select! {
            // Signals first: once SIGTERM is pending nothing more is read
            // (and so nothing more accepted from the gate's queue).
            biased;
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            r = d.mon.next_batch(|rec| {
                let seg = rec.segment(&clock);
                tracing::trace!(
                    src = %seg.src, dst = %seg.dst, seq = seg.seq, ack = seg.ack,
                    flags = format_args!("{:#04x}", seg.flags.0), len = seg.payload.len(),
                    offset = rec.header.offset, total = rec.header.payload_len,
                    uncaptured = seg.uncaptured, hook = rec.header.hook, "record"
                );
                batch.push(&seg);
            }) => { r?; }
            _ = tick.tick() => {
                ticks += 1;
                d.sync_mode();
                if ticks.is_multiple_of(stats_every) {
                    d.summary();
                }
                if !d.pipeline.tick(now_micros()).await {
                    break;
                }
            }
            Some((request, responder)) = server.next() => {
                let response = d.answer(request).await;
                responder.reply(response);
            }
            _ = async {
                match watchdog.as_mut() {
                    Some(i) => i.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(n) = notifier.clone() {
                    if !d.pipeline.alive(move || n.watchdog()).await {
                        break;
                    }
                }
            }
            Some(scrape) = next_scrape(&mut metrics) => {
                let s = d.snapshot().await;
                scrape.reply(smtp_user::metrics::encode(&s));
            }
            _ = sighup.recv() => {
                if let Some(n) = &notifier {
                    n.reloading();
                }
                if let Some(r) = &d.reopener {
                    if let Err(e) = r.reopen() {
                        tracing::error!(path = %r.path().display(), "cannot reopen the output file: {e}");
                    }
                }
                if d.rules_path.is_some() {
                    if let Err(e) = d.reload().await {
                        tracing::error!("reload rejected, the old rules stay in force: {e}");
                    }
                }
                if let Some(n) = &notifier {
                    n.ready(&format!("monitoring {}", d.mon.iface()));
                }
            }
        }
        if !batch.is_empty() && !d.pipeline.send(batch).await {
            break;
        }
    }
    drop(server);
    if let Some(n) = &notifier {
        n.stopping();
    }
    // Fail closed: from here nothing queued is accepted, and the gated
    // sessions still open are answered 421 and reset on the server side.
    if let Some(q) = &queue_gate {
        q.stop_accepting();
    }
    if args.gate {
        let _ = d.pipeline.shutdown_gate().await;
    }
    if let Some(q) = queue_gate.as_mut() {
        q.stop_reader();
    }
    let mode_at_exit = d.mode.mode();
    let Daemon {
        mut mon,
        pipeline,
        enforcer,
        ports,
        eve_redis,
        fleet,
        ..
    } = d;
    let report = pipeline.finish();
    if let Some(r) = eve_redis {
        let c = r.finish();
        tracing::info!(
            "eve_redis: sent={} dropped={} errors={}",
            c.sent,
            c.dropped,
            c.errors
        );
    }
    drop(fleet);
    if args.gate && mode_at_exit == Mode::Enforce {
        reset_unseen_gated(&mut mon, &ports);
    }
    summary_line(&mon, &enforcer);
    report_line(&report);
    mon.shutdown();
    // The kernel no longer marks: the rule can go.
    if let Some(q) = queue_gate {
        q.remove_rule();
    }
    if let Some(e) = report.output_error {
        anyhow::bail!("cannot write output: {e}");
    }
    Ok(())
}

/// At exit, gated flows the pipeline never saw (their records were still in
/// the ring buffer) are reset through their local server socket, so none of
/// them goes on unheld once the datapath is detached. (Flows it knew were
/// answered 421 already; their sockets are gone.)
fn reset_unseen_gated(mon: &mut Monitor, ports: &[u16]) {
    let keys = match mon.control().gated_flows() {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "cannot list the gated flows at exit");
            return;
        }
    };
    let mut reset = 0;
    for k in keys {
        let Some((client, server)) = key_endpoints(&k, ports) else {
            continue;
        };
        let ep = smtp_user::enforce::TcpEndpoints {
            client,
            server,
            client_next_seq: None,
            server_next_seq: None,
        };
        if smtp_user::enforce::reset_connection(&ep).is_ok() {
            reset += 1;
        }
    }
    if reset > 0 {
        tracing::warn!(
            sessions = reset,
            "stopping: gated sessions not yet seen were reset"
        );
    }
}

/// Client and server of a kernel flow key (the server's port is monitored).
fn key_endpoints(k: &smtp_common::FlowKey, ports: &[u16]) -> Option<(SocketAddr, SocketAddr)> {
    let ip = |a: &[u8; 16]| -> Option<IpAddr> {
        match k.family {
            smtp_common::FAMILY_V4 => Some(IpAddr::from([a[0], a[1], a[2], a[3]])),
            smtp_common::FAMILY_V6 => Some(IpAddr::from(*a)),
            _ => None,
        }
    };
    let lo = SocketAddr::new(ip(&k.lo_addr)?, k.lo_port);
    let hi = SocketAddr::new(ip(&k.hi_addr)?, k.hi_port);
    if ports.contains(&k.lo_port) {
        Some((hi, lo))
    } else {
        Some((lo, hi))
    }
}

/// The netfilter-queue gate, or `None` (with the reason logged) for the
/// kernel-hold fallback.
fn open_queue_gate(args: &RunArgs, mon: &Monitor) -> Option<QueueGate> {
    const FALLBACK: &str = "the gate falls back to the kernel hold: message ends wait for TCP's \
                            retransmission after release (~200 ms each) and ends pipelined with \
                            more commands are missed (gate_missed)";
    if args.gate_fallback {
        tracing::info!("--gate-fallback: {FALLBACK}");
        return None;
    }
    if mon.ingress() != IngressMode::Tc {
        tracing::warn!(ingress = %mon.ingress(), "only TC ingress can mark packets for the netfilter queue; {FALLBACK}");
        return None;
    }
    match QueueGate::open(args.gate_queue, args.gate_mark) {
        Ok(q) => Some(q),
        Err(e) => {
            tracing::warn!(error = %e, "netfilter queue unavailable; {FALLBACK}");
            None
        }
    }
}

impl Daemon {
    /// Follows the kernel's enforce switch (`ctl enforce` flips it).
    fn sync_mode(&mut self) {
        if let Ok(c) = self.mon.control().config() {
            let mode = if c.enforce != 0 {
                Mode::Enforce
            } else {
                Mode::Monitor
            };
            if mode != self.mode.mode() {
                tracing::info!(mode = mode.as_str(), "enforcement mode changed");
                self.mode.set(mode);
            }
        }
    }

    /// Loads the rules file again; on success new sessions use it.
    async fn reload(&mut self) -> anyhow::Result<ReloadReply> {
        let Some(path) = self.rules_path.clone() else {
            anyhow::bail!("no rules file was given (--rules): nothing to reload");
        };
        let rules = Arc::new(gate_defaults(load_rules(Some(&path))?, self.gate));
        self.content.check_reload(self.hashing, &rules)?;
        if !self.pipeline.set_rules(rules.clone()).await {
            anyhow::bail!("the pipeline has stopped");
        }
        tracing::info!(
            rules = rules.len(),
            digest = rules.digest(),
            "rules reloaded"
        );
        // Gates armed by the kernel at SYN only while some rule may need one.
        let gate = self.gate && rules.has_gate_rules();
        let c = self.mon.control();
        if let Err(e) = c.config().and_then(|cfg| {
            c.set_config(&smtp_common::Config {
                gate: gate as u32,
                ..cfg
            })
        }) {
            tracing::error!(error = %e, "cannot update the gate switch in the kernel");
        }
        self.rules = rules;
        Ok(ReloadReply {
            rules_file: Some(path.display().to_string()),
            rules_digest: self.rules.digest().to_string(),
            rules: self.rules.len(),
        })
    }

    async fn answer(&mut self, request: Request) -> Response {
        match request {
            Request::Status => {
                self.sync_mode();
                Response::Status(Status {
                    iface: self.mon.iface().to_string(),
                    ingress: self.mon.ingress().to_string(),
                    mode: self.mode.mode().as_str().to_string(),
                    gate: self.gate,
                    ports: self.ports.clone(),
                    started: rfc3339_micros(self.started_micros),
                    uptime_secs: self.started.elapsed().as_secs(),
                    rules_file: self.rules_path.as_ref().map(|p| p.display().to_string()),
                    rules_digest: self.rules.digest().to_string(),
                    rules: self.rules.len(),
                    pid: std::process::id(),
                    fleet: self.fleet.as_ref().map(FleetLink::state),
                    eve_redis: self.eve_redis.as_ref().map(|r| {
                        let c = r.queue().counters();
                        format!(
                            "{}, {} events queued, {} dropped",
                            if c.connected {
                                "connected"
                            } else {
                                "disconnected"
                            },
                            c.queued,
                            c.dropped
                        )
                    }),
                })
            }
            Request::Reopen => match &self.reopener {
                Some(r) => match r.reopen() {
                    Ok(()) => {
                        tracing::info!(output = %r.path().display(), "output file reopened");
                        Response::Reopened(Some(r.path().display().to_string()))
                    }
                    Err(e) => Response::Error(format!("cannot reopen {}: {e}", r.path().display())),
                },
                None => Response::Reopened(None),
            },
            Request::BlockIp { ip, for_secs } => {
                let for_ = for_secs.map(Duration::from_secs);
                if let Err(e) = self.mon.control().block_ip(ip, for_) {
                    return Response::Error(format!("cannot block {ip}: {e}"));
                }
                tracing::warn!(%ip, seconds = ?for_secs, "client address blocked (ctl)");
                if let Some(f) = &self.fleet {
                    f.publish(Change::Block {
                        ip,
                        expiry_ms: smtp_user::fleet::expiry_ms(for_),
                    });
                }
                Response::IpBlock(IpBlockReply {
                    ip,
                    blocked: true,
                    changed: true,
                    fleet: self.fleet.is_some(),
                })
            }
            Request::UnblockIp { ip } => {
                let changed = match self.mon.control().unblock_ip(ip) {
                    Ok(c) => c,
                    Err(e) => return Response::Error(format!("cannot unblock {ip}: {e}")),
                };
                tracing::info!(%ip, "client address unblocked (ctl)");
                // Published even when not blocked here: another host may have it.
                if let Some(f) = &self.fleet {
                    f.publish(Change::Unblock { ip });
                }
                Response::IpBlock(IpBlockReply {
                    ip,
                    blocked: false,
                    changed,
                    fleet: self.fleet.is_some(),
                })
            }
            Request::Stats => {
                let s = self.snapshot().await;
                let (enforcer, user) = (&s.enforcer, &s.user);
                Response::Stats(serde_json::json!({
                    "records_read": user.records,
                    "decode_errors": user.decode_errors,
                    "pipeline": s.live.as_ref().map(|l| pipeline_json(&l.pipeline)),
                    "workers": s.live.as_ref().map(|l| l.workers.iter().map(pipeline_json).collect::<Vec<_>>()),
                    "flow_table": s.live.as_ref().map(|l| serde_json::json!({
                        "active": l.table.active,
                        "buffered_bytes": l.table.buffered,
                        "buffered_peak_bytes": l.table.buffered_peak,
                        "session_memory_bytes": l.table.session_memory,
                        "memcap_exceeded": l.table.memcap_exceeded,
                        "memcap_shed": l.table.memcap_shed,
                    })),
                    "eve_redis": s.eve_redis,
                    "fleet": s.fleet,
                    "enforcement": enforcer.counters,
                    "verdict_latency_us": {
                        "samples": enforcer.latency.count,
                        "median": enforcer.latency.median(),
                        "p99": enforcer.latency.p99(),
                    },
                }))
            }
            Request::Flows => match self.pipeline.flows().await {
                Some(flows) => Response::Flows(flows.iter().map(|f| self.flow_row(f)).collect()),
                None => Response::Error("the pipeline has stopped".into()),
            },
            Request::Flow { flow_id } => match self.pipeline.flows().await {
                Some(flows) => match flows.iter().find(|f| f.info.flow_id == flow_id) {
                    Some(f) => Response::Flow(self.flow_row(f)),
                    None => Response::Error(format!("no flow with id {flow_id}")),
                },
                None => Response::Error("the pipeline has stopped".into()),
            },
            Request::Reload => match self.reload().await {
                Ok(r) => Response::Reloaded(r),
                Err(e) => {
                    tracing::error!("reload rejected, the old rules stay in force: {e:#}");
                    Response::Error(format!("{e:#}"))
                }
            },
        }
    }

    /// Every counter now, from each counter's owner: the one source of
    /// `ctl stats` and the metrics.
    async fn snapshot(&mut self) -> Snapshot {
        Snapshot {
            kernel: self.mon.stats().ok(),
            user: self.mon.user_stats(),
            live: self.pipeline.live_counters().await,
            enforcer: lock(&self.enforcer),
            eve_redis: self.eve_redis.as_ref().map(|r| r.queue().counters()),
            fleet: self.fleet.as_ref().map(FleetLink::counters),
        }
    }

    fn summary(&self) {
        summary_line(&self.mon, &self.enforcer);
    }

    /// A flow for `ctl flows`; its verdict is the policy's, or a drop
    /// written by someone else (`ctl block`) as the kernel map has it.
    fn flow_row(&mut self, f: &LiveFlow) -> FlowRow {
        let mut row = flow_row(f);
        if f.view.verdict.is_none()
            && self
                .mon
                .control()
                .verdict(&kernel_flow_key(f.info.client, f.info.server))
                == Verdict::Drop
        {
            row.verdict = "drop".into();
        }
        row
    }
}

fn flow_row(f: &LiveFlow) -> FlowRow {
    let now = now_micros();
    FlowRow {
        flow_id: f.info.flow_id,
        client: f.info.client,
        server: f.info.server,
        state: f.view.state.name().to_string(),
        helo: f.view.helo.clone(),
        mail_from: f.view.mail_from.clone(),
        rcpt_to: f.view.rcpt_to.clone(),
        transactions: f.view.transactions,
        verdict: f.view.verdict.map_or("pass", |a| a.as_str()).to_string(),
        gated: f.view.gated,
        bytes_toserver: f.bytes[0],
        bytes_toclient: f.bytes[1],
        age_secs: now.saturating_sub(f.info.first_ts) / 1_000_000,
    }
}

/// The pipeline counters of `ctl stats` (the total, and each worker's).
fn pipeline_json(p: &PipelineCounters) -> serde_json::Value {
    serde_json::json!({
        "flows": p.flows,
        "transactions": p.transactions,
        "anomalies": p.anomalies,
        "anomalies_by_kind": p.anomalies_by_kind,
        "alerts_by_sid": p.alerts_by_sid.iter().map(|(k, v)| (k.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
        "anomalies_suppressed": p.anomalies_suppressed,
        "single_packet_flows": p.single_packet_flows,
        "single_packet_lines": p.single_packet_lines,
        "alerts": p.alerts,
        "blocked_flows": p.blocked_flows,
        "bytes": p.bytes,
        "gap_bytes": p.gap_bytes,
        "gate_releases": p.gate_releases,
        "gate_missed": p.gate_missed,
        "rejects": p.rejects,
        "gate_queue": {
            "queued": p.queue.queued,
            "accepted": p.queue.accepted,
            "dropped_blocked": p.queue.dropped_blocked,
            "dropped_timeout": p.queue.dropped_timeout,
            "dropped_unparsed": p.queue.dropped_unparsed,
            "wait_us": {
                "median": p.queue_wait_us.0,
                "p99": p.queue_wait_us.1,
                "samples": p.queue_wait_us.2,
            },
        },
        "regex_restarts": p.regex_restarts,
        "regex_failures": p.regex_failures,
    })
}

fn report_line(r: &LiveReport) {
    if r.workers.len() > 1 {
        let flows: Vec<String> = r.workers.iter().map(|w| w.flows.to_string()).collect();
        let bytes: Vec<String> = r.workers.iter().map(|w| w.bytes.to_string()).collect();
        tracing::info!(
            "workers: {} flows={} bytes={}",
            r.workers.len(),
            flows.join("+"),
            bytes.join("+")
        );
    }
    tracing::info!(
        "pipeline: flows={} single_packet_flows={} transactions={} anomalies={} anomalies_suppressed={} alerts={} blocked_flows={} bytes={} gap_bytes={} \
         gate_releases={} gate_missed={} rejects={} queue_accepted={} queue_dropped={} regex_restarts={} regex_failures={} evicted={} timed_out={} \
         memcap_hits={} memcap_shed={} order_timeouts={}",
        r.pipeline.flows,
        r.pipeline.single_packet_flows,
        r.pipeline.transactions,
        r.pipeline.anomalies,
        r.pipeline.anomalies_suppressed.total(),
        r.pipeline.alerts,
        r.pipeline.blocked_flows,
        r.pipeline.bytes,
        r.pipeline.gap_bytes,
        r.pipeline.gate_releases,
        r.pipeline.gate_missed,
        r.pipeline.rejects,
        r.pipeline.queue.accepted,
        r.pipeline.queue.dropped_blocked
            + r.pipeline.queue.dropped_timeout
            + r.pipeline.queue.dropped_unparsed,
        r.pipeline.regex_restarts,
        r.pipeline.regex_failures,
        r.table.evicted,
        r.table.timed_out,
        r.table.memcap_hits,
        r.table.memcap_shed,
        r.table.order_timeouts
    );
}

/// The enforcer's state (a poisoned lock only means the worker panicked
/// while applying a request: its counters are still worth reading).
fn lock(e: &Mutex<Enforcer>) -> Enforcer {
    match e.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn summary_line(mon: &Monitor, enforcer: &Mutex<Enforcer>) {
    let enforcer = lock(enforcer);
    let u = mon.user_stats();
    let e = &enforcer.counters;
    match mon.stats() {
        Ok(k) => tracing::info!(
            "stats: {k} records_read={} decode_errors={} verdicts={} resets={} ip_blocks={} \
             verdict_latency_us_median={} verdict_latency_us_p99={}",
            u.records,
            u.decode_errors,
            e.verdicts,
            e.resets_socket + e.resets_injected,
            e.ip_blocks,
            enforcer.latency.median().unwrap_or(0),
            enforcer.latency.p99().unwrap_or(0),
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read counters"),
    }
}
