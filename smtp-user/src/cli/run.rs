//! `smtp-user run`: attach the datapath to an interface, dissect and police
//! what it sees, carry out verdicts, answer `ctl` on the control socket,
//! until SIGINT/SIGTERM (then detach and unpin). SIGHUP reloads the rules.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{fs::File, io::BufWriter};

use anyhow::Context;
use clap::Args;
use smtp_common::Verdict;
use smtp_user::control::{
    default_socket_path, ControlServer, FlowRow, ReloadReply, Request, Response, Status,
};
use smtp_user::daemon::Enforcer;
use smtp_user::datapath::{Control, IngressMode, Monitor, MonitorOptions, DEFAULT_PIN_ROOT};
use smtp_user::flow::FlowConfig;
use smtp_user::output::timestamp::rfc3339_micros;
use smtp_user::pipeline::{
    kernel_flow_key, LiveFlow, LivePipeline, LiveReport, Mode, ModeSwitch, PolicyOptions,
    SegmentBatch,
};
use smtp_user::policy::RuleSet;
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
    /// Seconds between counter summaries.
    #[arg(long, default_value_t = 10)]
    pub stats_interval: u64,
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
    /// Close flows idle for this many seconds.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout: u64,
    /// Most flows tracked at once (least recently active evicted beyond).
    #[arg(long, default_value_t = 65_536)]
    pub max_flows: usize,
}

/// What `--unparsed` does with packets the kernel cannot record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Unparsed {
    /// Drop them while enforcing (fail closed).
    Drop,
    /// Let them through.
    Pass,
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
    ports: Vec<u16>,
    started_micros: u64,
    started: Instant,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Install the handlers first: a signal during start-up is then handled
    // after it, through the normal detach path.
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let rules = Arc::new(load_rules(args.rules.as_deref())?);
    if args.gate && !rules.has_gate_rules() {
        tracing::warn!("--gate has no effect: the rules have no drop/reset rule");
    }
    let out: Box<dyn Write + Send> = match &args.output {
        Some(p) => Box::new(
            File::options()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open output file {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let flow = FlowConfig {
        monitored_ports: args.ports.clone(),
        idle_timeout_micros: args.idle_timeout.saturating_mul(1_000_000),
        max_flows: args.max_flows,
        ..FlowConfig::default()
    };
    let mode = ModeSwitch::new(args.mode);
    let policy = PolicyOptions {
        rules: rules.clone(),
        mode: mode.clone(),
        gate: args.gate,
    };
    let mon = Monitor::start(MonitorOptions {
        iface: args.iface,
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
    // The worker thread writes verdicts itself, through its own handles on
    // the pinned maps: no hop back to this task on the way to the kernel.
    let mut control = Control::open_pinned(&args.pin_root, mon.iface())
        .context("cannot open the pinned maps for enforcement")?;
    let enforcer = Arc::new(Mutex::new(Enforcer::default()));
    let (worker_enforcer, worker_mode) = (enforcer.clone(), mode.clone());
    let enforce = move |request| {
        if let Ok(mut e) = worker_enforcer.lock() {
            e.apply(&mut control, request, &worker_mode, now_micros());
        }
    };
    let pipeline = LivePipeline::start(
        flow,
        args.log_commands,
        policy,
        BufWriter::new(out),
        enforce,
    )
    .context("cannot start the pipeline thread")?;
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
    let mut d = Daemon {
        mon,
        pipeline,
        enforcer,
        mode,
        rules,
        rules_path: args.rules,
        gate: args.gate,
        ports: args.ports,
        started_micros: now_micros(),
        started: Instant::now(),
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let stats_every = args.stats_interval.max(1);
    let mut ticks = 0u64;
    let clock = *d.mon.clock();
    loop {
        let mut batch = SegmentBatch::default();
        tokio::select! {
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
            _ = sighup.recv() => {
                if let Err(e) = d.reload().await {
                    tracing::error!("reload rejected, the old rules stay in force: {e}");
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
        if !batch.is_empty() && !d.pipeline.send(batch).await {
            break;
        }
    }
    drop(server);
    let Daemon {
        mon,
        pipeline,
        enforcer,
        ..
    } = d;
    let report = pipeline.finish();
    summary_line(&mon, &enforcer);
    report_line(&report);
    mon.shutdown();
    if let Some(e) = report.output_error {
        anyhow::bail!("cannot write output: {e}");
    }
    Ok(())
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
        let rules = Arc::new(load_rules(Some(&path))?);
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
                })
            }
            Request::Stats => {
                let enforcer = lock(&self.enforcer);
                let user = self.mon.user_stats();
                let pipeline = self.pipeline.counters().await;
                Response::Stats(serde_json::json!({
                    "records_read": user.records,
                    "decode_errors": user.decode_errors,
                    "pipeline": pipeline.map(|p| serde_json::json!({
                        "flows": p.flows,
                        "transactions": p.transactions,
                        "anomalies": p.anomalies,
                        "alerts": p.alerts,
                        "blocked_flows": p.blocked_flows,
                        "bytes": p.bytes,
                        "gap_bytes": p.gap_bytes,
                        "gate_releases": p.gate_releases,
                        "gate_missed": p.gate_missed,
                        "regex_restarts": p.regex_restarts,
                        "regex_failures": p.regex_failures,
                    })),
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

fn report_line(r: &LiveReport) {
    tracing::info!(
        "pipeline: flows={} transactions={} anomalies={} alerts={} blocked_flows={} bytes={} gap_bytes={} \
         gate_releases={} gate_missed={} regex_restarts={} regex_failures={} evicted={} timed_out={} \
         memcap_hits={}",
        r.pipeline.flows,
        r.pipeline.transactions,
        r.pipeline.anomalies,
        r.pipeline.alerts,
        r.pipeline.blocked_flows,
        r.pipeline.bytes,
        r.pipeline.gap_bytes,
        r.pipeline.gate_releases,
        r.pipeline.gate_missed,
        r.pipeline.regex_restarts,
        r.pipeline.regex_failures,
        r.table.evicted,
        r.table.timed_out,
        r.table.memcap_hits
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
