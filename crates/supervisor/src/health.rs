//! Health status names and the snapshot `/health-check` is built from.

use serde::Serialize;

use crate::setup_log::SetupLogs;

/// The worker's health, with Cog's wire names plus RECYCLING.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    /// The worker is being spawned and set up.
    Starting,
    /// Predictions are admitted.
    Ready,
    /// READY with every usable slot running a prediction. Derived, never stored.
    Busy,
    /// Checks failed; predictions are still admitted.
    Unhealthy,
    /// The worker is being replaced.
    Recycling,
    /// Start-up failed; the server keeps answering but admits nothing.
    SetupFailed,
    /// The worker is gone for good; the process should be restarted.
    Defunct,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "STARTING",
            HealthStatus::Ready => "READY",
            HealthStatus::Busy => "BUSY",
            HealthStatus::Unhealthy => "UNHEALTHY",
            HealthStatus::Recycling => "RECYCLING",
            HealthStatus::SetupFailed => "SETUP_FAILED",
            HealthStatus::Defunct => "DEFUNCT",
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome of the worker's setup, as Cog names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SetupStatus {
    Starting,
    Succeeded,
    Failed,
}

/// The setup record shown in `/health-check`.
#[derive(Debug, Clone, Serialize)]
pub struct SetupRecord {
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub status: SetupStatus,
    /// Bounded by `SupervisorConfig::setup_log_limit` (see [`crate::setup_log`]); shared, not copied,
    /// by every snapshot until the text changes.
    #[serde(skip_serializing_if = "SetupLogs::is_empty")]
    pub logs: SetupLogs,
}

/// The worker process now serving.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRecord {
    pub pid: Option<u32>,
    pub generation: u64,
    pub started_at: Option<String>,
    pub restarts: u64,
    /// Why the worker is gone, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    /// The most recent recycle, once there has been one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_recycle: Option<RecycleRecord>,
}

/// One finished (or failed) recycle, as `/health-check` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RecycleRecord {
    /// What asked for it: `model`, `admin`, `max_predictions`, `max_rss`, `max_gpu_memory`,
    /// `liveness`, `all_slots_poisoned`, `worker_exit`.
    pub trigger: &'static str,
    pub reason: String,
    /// When it started (RFC 3339).
    pub at: String,
    /// From the request to READY again (or to the failure), in seconds.
    pub duration_seconds: f64,
    /// False when the replacement could not be set up.
    pub succeeded: bool,
}

/// A poisoned slot and why.
#[derive(Debug, Clone, Serialize)]
pub struct PoisonedSlot {
    pub slot: u32,
    pub reason: String,
}

/// Slot occupancy.
#[derive(Debug, Clone, Serialize)]
pub struct SlotsRecord {
    pub total: u32,
    pub busy: u32,
    pub poisoned: Vec<PoisonedSlot>,
}

/// Everything health endpoints show, taken at one instant.
#[derive(Debug, Clone)]
pub struct HealthSnapshot {
    /// The status with BUSY derived.
    pub status: HealthStatus,
    pub setup: SetupRecord,
    pub worker: WorkerRecord,
    pub slots: SlotsRecord,
    pub python_version: Option<String>,
    pub sdk_version: Option<String>,
    /// Why the machine is in its state (a failed check, a recycle, a setup error), when it says.
    pub reason: Option<String>,
    /// The last user healthcheck / monitor failure text, Cog's `user_healthcheck_error`.
    pub user_healthcheck_error: Option<String>,
    /// With more than one worker (`workers.count`): the pool's size and how many are ready, and
    /// every worker. `None` with one worker, whose snapshot is all of the above.
    pub pool: Option<PoolRecord>,
    /// With `recycle.overlap`: the worker being set up to take this one's place, while it is.
    pub successor: Option<SuccessorRecord>,
}

/// The next worker a `recycle.overlap` recycle sets up beside the serving one (`successor` in
/// `/health-check`).
#[derive(Debug, Clone, Serialize)]
pub struct SuccessorRecord {
    pub generation: u64,
    pub pid: Option<u32>,
    /// RECYCLING while it sets up; it leaves the snapshot once it takes the worker's place.
    pub status: HealthStatus,
    /// When its setup started.
    pub started_at: String,
}

/// The pool as `/health-check` shows it (`pool` and `workers`).
#[derive(Debug, Clone, Serialize)]
pub struct PoolRecord {
    /// `workers.count`.
    pub workers: u32,
    /// Workers that would admit a prediction now or are merely busy (READY, BUSY).
    pub ready: u32,
    /// Every worker, by index.
    #[serde(skip)]
    pub members: Vec<PoolWorkerRecord>,
}

/// One worker of a pool, as `/health-check` lists it under `workers`.
#[derive(Debug, Clone, Serialize)]
pub struct PoolWorkerRecord {
    pub index: u32,
    /// This worker's own state, BUSY derived.
    pub status: HealthStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub worker: WorkerRecord,
    pub slots: SlotsRecord,
}
