//! `smtp-user ctl`: change or inspect a running monitor through its pinned
//! maps (`/sys/fs/bpf/smtp-monitor/<iface>/`), from another process.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use smtp_common::Verdict;
use smtp_user::datapath::route::default_route_interface;
use smtp_user::datapath::{Control, DEFAULT_PIN_ROOT};
use smtp_user::pipeline::kernel_flow_key;

/// Arguments of `ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Interface of the running monitor (default: the one carrying the default route).
    #[arg(long)]
    pub iface: Option<String>,
    /// bpffs directory of the pins.
    #[arg(long, default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
    #[command(subcommand)]
    pub action: CtlAction,
}

#[derive(Debug, Subcommand)]
pub enum CtlAction {
    /// Print the kernel counters and the configuration.
    Stats,
    /// Enforcement of drop verdicts: `on`, or `off` (monitor mode).
    Enforce {
        #[arg(value_parser = ["on", "off"])]
        mode: String,
    },
    /// Drop a flow in the kernel (both directions), e.g. `198.18.0.1:40000 198.18.0.2:25`.
    Drop { a: SocketAddr, b: SocketAddr },
    /// Remove a flow's drop verdict.
    Pass { a: SocketAddr, b: SocketAddr },
}

pub fn ctl(args: CtlArgs) -> anyhow::Result<()> {
    let iface = match args.iface {
        Some(i) => i,
        None => default_route_interface().context("no default route: pass --iface")?,
    };
    let mut control = Control::open_pinned(&args.pin_root, &iface).with_context(|| {
        format!(
            "no monitor running on {iface} (pins under {})",
            args.pin_root.display()
        )
    })?;
    match args.action {
        CtlAction::Stats => {
            let config = control.config()?;
            println!(
                "iface={iface} enforce={} {}",
                config.enforce != 0,
                control.stats()?
            );
        }
        CtlAction::Enforce { mode } => {
            control.set_enforce(mode == "on")?;
            println!("iface={iface} enforce={mode}");
        }
        CtlAction::Drop { a, b } | CtlAction::Pass { a, b } if a.is_ipv4() != b.is_ipv4() => {
            anyhow::bail!("{a} and {b} are not of the same address family");
        }
        CtlAction::Drop { a, b } => {
            control.set_verdict(&kernel_flow_key(a, b), Verdict::Drop)?;
            println!("iface={iface} flow {a} <-> {b}: drop");
        }
        CtlAction::Pass { a, b } => {
            control.set_verdict(&kernel_flow_key(a, b), Verdict::Pass)?;
            println!("iface={iface} flow {a} <-> {b}: pass");
        }
    }
    Ok(())
}
