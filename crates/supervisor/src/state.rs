//! The supervisor's shared state behind one lock, and the few ways the lifecycle changes what it says
//! about the worker. Kept small: no I/O happens while the lock is held.

use std::collections::HashSet;
use std::sync::Arc;

use crate::health::{SetupRecord, SetupStatus, WorkerRecord};
use crate::health_machine::Machine;
use crate::memory::MemoryWatch;
use crate::model_output;
use crate::setup_log::SetupLogText;
use crate::slots::SlotPool;
use crate::supervisor::now_rfc3339;
use crate::worker::{Generation, ReadyInfo};
use crate::SupervisorConfig;

/// Mutable state behind one lock.
#[derive(Debug)]
pub(crate) struct State {
    /// The health machine (its state is never BUSY: that is derived). Only
    /// [`crate::supervisor::Inner::apply`] changes it.
    pub(crate) machine: Machine,
    pub(crate) setup: Setup,
    /// The worker now serving or being started (`last_recycle` is the machine's, filled in by
    /// [`crate::Supervisor::health`]).
    pub(crate) worker: WorkerRecord,
    pub(crate) pool: SlotPool,
    pub(crate) generation: Option<Arc<Generation>>,
    pub(crate) python_version: Option<String>,
    pub(crate) sdk_version: Option<String>,
    pub(crate) schema: Option<Arc<serde_json::Value>>,
    /// The current worker's model defines `healthcheck()`.
    pub(crate) has_healthcheck: bool,
    /// Predictions finished by the current worker, for `recycle.max_predictions`.
    pub(crate) predictions_served: u64,
    /// This worker's planned-recycle point (max_predictions plus its jitter).
    pub(crate) prediction_limit: Option<u64>,
    /// This worker's memory bounds and its tree at the last scan, when a bound is set.
    pub(crate) memory: Option<MemoryWatch>,
    /// The last failed check's text (Cog's `user_healthcheck_error`); cleared by a good check.
    pub(crate) user_healthcheck_error: Option<String>,
    /// Predictions cancelled for running past `predict_timeout`: they end `failed`, not `canceled`.
    pub(crate) timed_out: HashSet<String>,
    /// Why nothing more is admitted although the worker still serves what it runs: it was replaced
    /// by its successor, or grew an eighth past its memory bound while the successor sets up.
    pub(crate) closed: Option<String>,
}

/// The current worker's setup: what `/health-check` shows as `setup`, its logs bounded.
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) started_at: String,
    pub(crate) completed_at: Option<String>,
    pub(crate) status: SetupStatus,
    pub(crate) logs: SetupLogText,
}

impl Setup {
    fn new(config: &SupervisorConfig) -> Self {
        Self {
            started_at: now_rfc3339(),
            completed_at: None,
            status: SetupStatus::Starting,
            logs: SetupLogText::new(config.setup_log_limit),
        }
    }

    /// The record `/health-check` shows; its logs are shared with every record until they change.
    pub(crate) fn record(&mut self) -> SetupRecord {
        SetupRecord {
            started_at: self.started_at.clone(),
            completed_at: self.completed_at.clone(),
            status: self.status,
            logs: self.logs.text(),
        }
    }
}

impl State {
    pub(crate) fn new(config: &SupervisorConfig) -> Self {
        Self {
            machine: Machine::starting(),
            setup: Setup::new(config),
            worker: WorkerRecord {
                pid: None,
                generation: 0,
                started_at: None,
                restarts: 0,
                exit: None,
                last_recycle: None,
            },
            pool: SlotPool::new(config.concurrency),
            generation: None,
            python_version: None,
            sdk_version: None,
            schema: None,
            has_healthcheck: false,
            predictions_served: 0,
            prediction_limit: None,
            memory: None,
            user_healthcheck_error: None,
            timed_out: HashSet::new(),
            closed: None,
        }
    }

    /// Generation `number` is about to be spawned: a fresh setup record.
    pub(crate) fn setup_started(&mut self, config: &SupervisorConfig, number: u64) {
        self.worker.generation = number;
        self.worker.restarts = number - 1;
        self.generation = None;
        self.setup = Setup::new(config);
    }

    pub(crate) fn worker_spawned(&mut self, pid: u32, started_at: &str) {
        self.worker.pid = Some(pid);
        self.worker.started_at = Some(started_at.to_string());
        self.worker.exit = None;
    }

    /// The start failed: `message` ends `setup.logs` and is why the worker is gone.
    pub(crate) fn setup_failed(&mut self, message: &str) {
        self.setup.status = SetupStatus::Failed;
        self.setup.completed_at = Some(now_rfc3339());
        if !self.setup.logs.is_empty() && !self.setup.logs.ends_with_newline() {
            self.setup.logs.push("\n");
        }
        self.setup.logs.push(message);
        self.worker.pid = None;
        self.worker.exit = Some(message.to_string());
    }

    /// `after_healthy` failed the start of a worker that was set up.
    pub(crate) fn after_healthy_failed(&mut self, message: &str) {
        self.setup.status = SetupStatus::Failed;
        self.setup.logs.push(message);
        self.generation = None;
        self.worker.exit = Some(message.to_string());
    }

    /// The worker sent `ready`: it is the one predictions go to, with a clean slot pool, held to
    /// `memory` (its bounds from the sample right after setup).
    pub(crate) fn install(
        &mut self,
        config: &SupervisorConfig,
        generation: Arc<Generation>,
        ready: &ReadyInfo,
        memory: Option<MemoryWatch>,
    ) {
        self.memory = memory;
        self.pool = SlotPool::new(config.concurrency);
        self.generation = Some(generation);
        self.has_healthcheck = ready.has_healthcheck;
        self.python_version = Some(ready.python_version.clone());
        self.sdk_version = Some(ready.sdk_version.clone());
        if let Some(schema) = ready.schema.clone() {
            self.schema = Some(Arc::new(schema));
        }
        self.setup.status = SetupStatus::Succeeded;
        self.setup.completed_at = Some(now_rfc3339());
        // The last line: nothing is added to setup.logs after it (what the model prints from now on
        // belongs to predictions and the server's log).
        self.setup.logs.push(&model_output::setup_line(
            model_output::RUNTIME_TARGET,
            model_output::MILESTONE_READY,
        ));
        self.predictions_served = 0;
        self.prediction_limit = config.max_predictions.map(|max| {
            let jitter = config.max_predictions_jitter;
            // Jitter spreads planned recycles of replicas that started together.
            let extra = if jitter == 0 {
                0
            } else {
                (uuid::Uuid::new_v4().as_u128() % (u128::from(jitter) + 1)) as u64
            };
            max.saturating_add(extra)
        });
        self.user_healthcheck_error = None;
        self.timed_out.clear();
        // This worker admits.
        self.closed = None;
    }

    /// Admits nothing more, for `reason` (the first reason stays); what runs goes on.
    pub(crate) fn close_admission(&mut self, reason: &str) {
        if self.closed.is_none() {
            tracing::warn!(
                reason,
                "admitting nothing more to this worker; it finishes what it runs"
            );
            self.closed = Some(reason.to_string());
        }
    }

    /// The worker exited by itself; the stop that follows clears it.
    pub(crate) fn worker_exited(&mut self, reason: String) {
        self.worker.exit.get_or_insert(reason);
    }

    /// No worker serves any more.
    pub(crate) fn worker_stopped(&mut self) {
        self.generation = None;
        self.worker.pid = None;
        self.memory = None;
    }

    /// No worker serves any more, and `reason` says why (unless an earlier reason already does).
    pub(crate) fn worker_gone(&mut self, reason: String) {
        self.worker_stopped();
        self.worker.exit.get_or_insert(reason);
    }
}
