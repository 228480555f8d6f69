//! The netfilter rule of the queue gate: in the `raw` table's PREROUTING
//! chain (before connection tracking and routing), packets carrying the
//! gate's mark bits go to the monitor's queue:
//!
//! ```text
//! iptables -t raw -I PREROUTING -m mark --mark M/M \
//!          -m comment --comment smtp-monitor-gate -j NFQUEUE --queue-num N
//! ```
//!
//! and the same with `ip6tables`. No `--queue-bypass`: while no monitor
//! holds the queue, marked packets are dropped (fail closed). The rule is
//! installed by the `iptables` tool (nf_tables or legacy backend, whichever
//! the host uses) in the monitor's network namespace, and removed when the
//! monitor stops, after the kernel program stopped marking.

use std::process::Command;

/// The comment naming the rule, so a leftover of a killed monitor is found.
pub const RULE_COMMENT: &str = "smtp-monitor-gate";

/// The queue rule for mark bits `mark` and queue `queue` (IPv4 and IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRule {
    pub mark: u32,
    pub queue: u16,
}

/// Why the rule could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum NetfilterError {
    #[error("cannot run {tool}: {source}")]
    Spawn {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("{tool} {args} failed: {stderr}")]
    Failed {
        tool: &'static str,
        args: String,
        stderr: String,
    },
}

const TOOLS: [&str; 2] = ["iptables", "ip6tables"];

impl QueueRule {
    fn spec(&self) -> Vec<String> {
        let mark = format!("{:#x}/{:#x}", self.mark, self.mark);
        [
            "PREROUTING",
            "-m",
            "mark",
            "--mark",
            &mark,
            "-m",
            "comment",
            "--comment",
            RULE_COMMENT,
            "-j",
            "NFQUEUE",
            "--queue-num",
            &self.queue.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn run(tool: &'static str, op: &str, spec: &[String]) -> Result<(), NetfilterError> {
        let out = Command::new(tool)
            .args(["-w", "5", "-t", "raw", op])
            .args(spec)
            .output()
            .map_err(|source| NetfilterError::Spawn { tool, source })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(NetfilterError::Failed {
                tool,
                args: format!("-t raw {op} {}", spec.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Installs the rule for both families (a leftover copy is removed
    /// first). On failure nothing stays installed.
    pub fn install(&self) -> Result<(), NetfilterError> {
        self.remove();
        let spec = self.spec();
        for tool in TOOLS {
            if let Err(e) = Self::run(tool, "-I", &spec) {
                self.remove();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes every copy of the rule (bounded); errors are ignored (no
    /// rule, no tool).
    pub fn remove(&self) {
        let spec = self.spec();
        for tool in TOOLS {
            for _ in 0..16 {
                if Self::run(tool, "-D", &spec).is_err() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_spec_names_mark_and_queue() {
        let r = QueueRule {
            mark: 0x1000_0000,
            queue: 25,
        };
        let s = r.spec().join(" ");
        assert_eq!(
            s,
            "PREROUTING -m mark --mark 0x10000000/0x10000000 -m comment --comment \
             smtp-monitor-gate -j NFQUEUE --queue-num 25"
        );
    }
}
