//! The live daemon's parts that are not the pipeline itself: carrying out
//! enforcement requests on the kernel ([`enforcer`]) and measuring how fast
//! verdicts land ([`latency`]).

pub mod enforcer;
pub mod latency;

pub use enforcer::{Enforcer, EnforcerCounters};
pub use latency::LatencySamples;
