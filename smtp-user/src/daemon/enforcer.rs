//! Carries out the pipeline's [`Enforcement`] requests on the kernel maps
//! (verdicts, IP blocklist, end-of-data gate) and resets connections, with
//! counters and the verdict latency for `ctl stats`.
//!
//! Verdicts and IP blocks are written in both modes (the kernel applies
//! them only while enforcement is on, so `ctl enforce on` makes earlier
//! decisions take effect); resets, being packets sent, happen only in
//! enforce mode.

use serde::Serialize;
use smtp_common::Verdict;

use crate::datapath::Control;
use crate::enforce::{
    reject_connection, reset_connection, RejectTarget, ResetMethod, TcpEndpoints,
};
use crate::pipeline::{kernel_flow_key, Enforcement, ModeSwitch};
use crate::policy::Action;

use super::latency::LatencySamples;

/// What the enforcer did since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EnforcerCounters {
    /// Drop verdicts written (drop and reset actions).
    pub verdicts: u64,
    /// Connections reset by destroying the local socket.
    pub resets_socket: u64,
    /// Connections reset by injected RSTs.
    pub resets_injected: u64,
    /// Resets that could not be done (the drop verdict still holds).
    pub reset_failures: u64,
    /// Transactions answered with the reject reply (server side reset).
    pub rejects: u64,
    /// Rejects that could not be sent (the gate still holds the message end).
    pub reject_failures: u64,
    /// Client addresses put on the blocklist.
    pub ip_blocks: u64,
    /// Gate map writes (arm, release, BDAT end, disarm).
    pub gate_updates: u64,
    /// Map writes that failed (logged).
    pub map_errors: u64,
}

/// Applies requests; keeps counters and latency samples.
#[derive(Debug, Clone, Default)]
pub struct Enforcer {
    pub counters: EnforcerCounters,
    /// Capture of the deciding segment → verdict in the map, µs.
    pub latency: LatencySamples,
}

impl Enforcer {
    /// Carries out one request. `now_micros`: wall clock, µs since the epoch.
    pub fn apply(
        &mut self,
        control: &mut Control,
        request: Enforcement,
        mode: &ModeSwitch,
        now_micros: u64,
    ) {
        let result = match request {
            Enforcement::Block {
                flow_id,
                client,
                server,
                action,
                next_seq,
                decided_at_micros,
            } => {
                let r = control.set_verdict(&kernel_flow_key(client, server), Verdict::Drop);
                if r.is_ok() {
                    self.counters.verdicts += 1;
                    let latency = now_micros.saturating_sub(decided_at_micros);
                    self.latency.record(latency);
                    tracing::warn!(
                        flow_id, %client, %server, action = action.as_str(), latency_us = latency,
                        "session blocked: drop verdict written"
                    );
                }
                // `reject` without a gate on the flow: nothing holds the
                // message end to answer, so it acts as `reset`.
                if matches!(action, Action::Reset | Action::Reject) && mode.enforcing() {
                    self.reset(TcpEndpoints {
                        client,
                        server,
                        client_next_seq: next_seq[0],
                        server_next_seq: next_seq[1],
                    });
                }
                r
            }
            Enforcement::Reject {
                flow_id,
                client,
                server,
                reply,
                server_next_seq,
                client_ack,
                server_rcv_next,
                decided_at_micros,
            } => {
                if mode.enforcing() {
                    let target = RejectTarget {
                        client,
                        server,
                        server_next_seq,
                        client_ack,
                        server_rcv_next,
                        reply: reply.into_bytes(),
                    };
                    match reject_connection(&target) {
                        Ok(method) => {
                            self.counters.rejects += 1;
                            let latency = now_micros.saturating_sub(decided_at_micros);
                            if decided_at_micros != 0 {
                                self.latency.record(latency);
                            }
                            tracing::warn!(
                                flow_id, %client, %server, method = method.as_str(),
                                latency_us = latency,
                                reply = %String::from_utf8_lossy(&target.reply).trim_end(),
                                "transaction rejected: reply sent to the client, server side reset"
                            );
                        }
                        Err(e) => {
                            self.counters.reject_failures += 1;
                            tracing::error!(flow_id, %client, %server, error = %e,
                                "cannot send the reject reply; the gate keeps the message end");
                        }
                    }
                }
                Ok(())
            }
            Enforcement::BlockIp { ip, duration } => {
                let r = control.block_ip(ip, Some(duration));
                if r.is_ok() {
                    self.counters.ip_blocks += 1;
                    tracing::warn!(%ip, seconds = duration.as_secs(), "client address blocked");
                }
                r
            }
            Enforcement::ArmGate { client, server } => {
                self.counters.gate_updates += 1;
                control.arm_gate(&kernel_flow_key(client, server))
            }
            Enforcement::ReleaseGate {
                client,
                server,
                end_seq,
            } => {
                self.counters.gate_updates += 1;
                control.release_gate(&kernel_flow_key(client, server), end_seq)
            }
            Enforcement::GateBdat {
                client,
                server,
                end_seq,
            } => {
                self.counters.gate_updates += 1;
                control.gate_bdat(&kernel_flow_key(client, server), end_seq)
            }
            Enforcement::DisarmGate { client, server } => {
                self.counters.gate_updates += 1;
                control.disarm_gate(&kernel_flow_key(client, server))
            }
        };
        if let Err(e) = result {
            self.counters.map_errors += 1;
            tracing::error!(error = %e, "cannot update the kernel maps");
        }
    }

    fn reset(&mut self, ep: TcpEndpoints) {
        match reset_connection(&ep) {
            Ok(ResetMethod::SocketDestroyed) => {
                self.counters.resets_socket += 1;
                tracing::warn!(client = %ep.client, server = %ep.server, "connection reset (local socket destroyed)");
            }
            Ok(ResetMethod::RstInjected) => {
                self.counters.resets_injected += 1;
                tracing::warn!(client = %ep.client, server = %ep.server, "connection reset (RSTs sent to both ends)");
            }
            Err(e) => {
                self.counters.reset_failures += 1;
                tracing::error!(client = %ep.client, server = %ep.server, error = %e,
                    "cannot reset the connection; it stays dropped");
            }
        }
    }
}
