//! Pipeline: the product's main job, wiring the stages together.
//!
//! [`SmtpFlows`] is the [`FlowHandler`](crate::flow::FlowHandler) that runs
//! one SMTP [`Session`](crate::smtp::Session) per flow and writes its events
//! as EVE lines; [`replay`] drives it from capture files, and the `run`
//! command drives it from the kernel ring buffer. Both inputs therefore
//! produce the same events for the same traffic.

pub mod enforcement;
pub mod first_packet;
pub mod gate_queue;
pub mod live;
pub mod replay;
pub mod shard;
pub mod smtp_flows;

pub use enforcement::{Enforcement, Mode, ModeSwitch};
pub use gate_queue::{GateQueue, QueueCounters, QueuedSegment};
pub use live::{
    kernel_flow_key, LiveCounters, LiveFlow, LiveGate, LivePipeline, LiveReport, QueueFeed,
    SegmentBatch,
};
pub use replay::{
    replay_files, ReplayError, ReplayOptions, ReplayProgress, ReplaySummary, WorkerStats,
};
pub use shard::{default_workers, flow_share, Sharder};
pub use smtp_flows::{
    FlowView, PipelineCounters, PolicyOptions, SmtpFlows, DEFAULT_REJECT_REPLY, SHUTDOWN_REPLY,
};
