//! What the supervisor tells an observer (the server's metrics) about the worker's life, without the
//! supervisor knowing who listens. Set [`SupervisorConfig::observer`](crate::SupervisorConfig); every
//! event is delivered synchronously on the task that produced it, so an observer must be quick and must
//! not block (counting and histogram updates are).

use std::time::Duration;

use crate::health_machine::RecycleTrigger;

/// Something that happened to the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum SupervisorEvent {
    /// A recycle or crash restart ended: the replacement is serving (`succeeded`) or could not be set
    /// up. `duration` runs from the recycle's start (or the crash) to that outcome.
    RecycleFinished {
        trigger: RecycleTrigger,
        duration: Duration,
        succeeded: bool,
    },
    /// The worker answered no runtime heartbeat for `health.heartbeat_timeout`
    /// ([`crate::heartbeat`]).
    HeartbeatMissed,
    /// One health check ran (the user `healthcheck()` and/or `health.command`).
    HealthcheckFinished { duration: Duration, healthy: bool },
    /// A lifecycle hook (`after_healthy`, `before_stop`) ended with `outcome` (`succeeded`, `failed` or
    /// `timed_out`, as [`HookOutcome::as_str`](crate::hooks::HookOutcome::as_str)).
    HookFinished {
        hook: &'static str,
        outcome: &'static str,
    },
}

/// Receives [`SupervisorEvent`]s.
pub trait SupervisorObserver: Send + Sync + std::fmt::Debug {
    fn observe(&self, event: SupervisorEvent);
}
