//! The live daemon's parts that are not the pipeline itself: carrying out
//! enforcement requests on the kernel ([`enforcer`]), measuring how fast
//! verdicts land ([`latency`]), the netfilter-queue gate ([`queue_gate`]) and
//! the service manager's readiness and watchdog protocol ([`notify`]).

pub mod enforcer;
pub mod latency;
pub mod notify;
pub mod queue_gate;

pub use enforcer::{Enforcer, EnforcerCounters};
pub use latency::LatencySamples;
pub use notify::Notifier;
pub use queue_gate::{QueueGate, QueueGateError};
