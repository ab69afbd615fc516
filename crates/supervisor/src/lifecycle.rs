//! The worker's life: start a generation, serve it until it exits, is recycled or the server shuts
//! down, then replace it.
//!
//! One task (the lifecycle loop) owns every start and stop of a worker, so two stops never race and a
//! recycle cannot overlap a shutdown. Everything else asks it by [`Command`]: model code
//! (`cog.recycle_worker`), the health machine's `on_failure`, all slots poisoned, `recycle.max_predictions`,
//! `POST /recycle`. The procedure (DESIGN §6): RECYCLING (new predictions get 503) → drain in-flight
//! predictions up to the drain timeout → cancel and fail the rest with an error naming the recycle → stop
//! the worker's whole tree → spawn generation N+1 → setup (`recycle_setup()` unless asked to rerun
//! `setup()`) → READY. An unexpected exit fails in-flight predictions at once and restarts with backoff
//! inside the restart budget; past it the state is DEFUNCT.

use std::sync::Arc;
use std::time::Instant;

use cogvisor_protocol::{ControlRequest, SetupMode, SlotId};
use tokio::sync::{mpsc, watch};

use crate::health::{RecycleRecord, SetupRecord, SetupStatus};
use crate::health_machine::{Action, Event, RecycleTrigger};
use crate::hooks::{self, HookOutcome, HookPolicy, HookVars};
use crate::model_output;
use crate::restart_budget::RestartBudget;
use crate::slots::SlotPool;
use crate::supervisor::now_rfc3339;
use crate::worker::{self, Generation, WorkerExit};
use crate::{HealthStatus, PredictionEvent, Supervisor};

/// What the lifecycle loop is asked to do with generation `generation`. Commands for another
/// generation are stale (a slot of a replaced worker can still report) and ignored.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// Replace the worker.
    Recycle {
        generation: u64,
        trigger: RecycleTrigger,
        reason: String,
        rerun_setup: bool,
    },
    /// Stop the worker for good: the machine went DEFUNCT (`on_failure: exit`).
    GiveUp { generation: u64, reason: String },
}

impl Command {
    fn generation(&self) -> u64 {
        match self {
            Command::Recycle { generation, .. } | Command::GiveUp { generation, .. } => *generation,
        }
    }
}

/// Why serving a generation ended.
enum Ended {
    Shutdown,
    Exited(WorkerExit),
    Recycle {
        trigger: RecycleTrigger,
        reason: String,
        rerun_setup: bool,
        drain: bool,
    },
    GiveUp(String),
}

/// What woke the serving loop.
enum Woke {
    Exited(WorkerExit),
    Shutdown,
    Command(Option<Command>),
}

/// A recycle in progress, recorded in `/health-check` once the replacement is ready or has failed.
struct PendingRecycle {
    trigger: RecycleTrigger,
    reason: String,
    at: String,
    started: Instant,
}

impl Supervisor {
    /// Runs generations until shutdown, SETUP_FAILED or DEFUNCT.
    pub(crate) async fn lifecycle(self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut shutdown = self.inner.shutdown_tx.subscribe();
        let mut budget = RestartBudget::new(self.inner.config.restart_budget);
        let mut number = 1;
        let mut mode = SetupMode::Full;
        let mut pending: Option<PendingRecycle> = None;
        loop {
            // The recycle in progress is recorded by the start itself, together with the state it
            // leads to, so `/health-check` never shows READY or DEFUNCT without it.
            let started = self
                .start_generation(number, mode, &mut shutdown, &mut pending)
                .await;
            let Some(generation) = started else {
                return;
            };
            let ended = self.serve(&generation, &mut commands, &mut shutdown).await;
            match ended {
                Ended::Shutdown => {
                    self.stop_and_fail(
                        &generation,
                        "prediction failed: the server shut down before the prediction finished",
                        "shutdown",
                    )
                    .await;
                    return;
                }
                Ended::GiveUp(reason) => {
                    self.stop_and_fail(
                        &generation,
                        &format!("prediction failed: the worker was stopped ({reason})"),
                        &reason,
                    )
                    .await;
                    self.inner.lock().worker.exit = Some(reason);
                    return;
                }
                Ended::Exited(exit) => {
                    let reason = format!("worker exited unexpectedly ({exit})");
                    tracing::error!(generation = number, pid = generation.pid, %exit, "worker exited unexpectedly");
                    // From READY/UNHEALTHY this is RECYCLING; if a recycle was already under way the
                    // machine stays RECYCLING. Either way the worker is replaced below.
                    self.inner.apply(Event::WorkerExited {
                        reason: reason.clone(),
                    });
                    self.fail_in_flight(&format!(
                        "prediction failed: the worker exited unexpectedly ({exit})"
                    ));
                    {
                        let mut state = self.inner.lock();
                        state.worker.exit = Some(reason.clone());
                        state.worker.pid = None;
                        state.generation = None;
                    }
                    crate::stop::sweep(generation.pid, self.inner.spawner.known()).await;
                    pending = Some(PendingRecycle {
                        trigger: RecycleTrigger::WorkerExit,
                        reason: reason.clone(),
                        at: now_rfc3339(),
                        started: Instant::now(),
                    });
                    match budget.restart(Instant::now()) {
                        Ok(delay) => {
                            if !delay.is_zero() {
                                tracing::info!(?delay, "waiting before restarting the worker");
                                tokio::select! {
                                    _ = tokio::time::sleep(delay) => {}
                                    _ = shutdown.wait_for(|s| *s) => return,
                                }
                            }
                            // The model's state died with the process: run the full setup.
                            mode = SetupMode::Full;
                        }
                        Err(exhausted) => {
                            let reason = format!("{exhausted}; the last: {reason}");
                            tracing::error!(reason, "giving up on the worker");
                            if let Some(p) = pending.take() {
                                self.record_recycle(p, false);
                            }
                            self.inner.apply(Event::RecycleFailed { reason });
                            return;
                        }
                    }
                }
                Ended::Recycle {
                    trigger,
                    reason,
                    rerun_setup,
                    drain,
                } => {
                    let started = tokio::time::Instant::now();
                    tracing::info!(
                        generation = number,
                        trigger = trigger.as_str(),
                        reason,
                        rerun_setup,
                        "recycling the worker"
                    );
                    if drain {
                        self.wait_for_drain(
                            &generation,
                            started + self.inner.config.recycle_drain_timeout,
                            &mut shutdown,
                        )
                        .await;
                    }
                    self.cancel_in_flight(&generation).await;
                    self.stop_and_fail(
                        &generation,
                        &format!(
                            "prediction failed: the worker was recycled ({}: {reason}) before the prediction finished",
                            trigger.as_str()
                        ),
                        &reason,
                    )
                    .await;
                    if *shutdown.borrow() {
                        return;
                    }
                    pending = Some(PendingRecycle {
                        trigger,
                        reason,
                        at: now_rfc3339(),
                        started: started.into_std(),
                    });
                    mode = if rerun_setup {
                        SetupMode::Full
                    } else {
                        SetupMode::Recycle
                    };
                }
            }
            number += 1;
        }
    }

    /// Serves `generation` until something ends it.
    async fn serve(
        &self,
        generation: &Arc<Generation>,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ended {
        let mut exit = generation.exit.clone();
        loop {
            let woke = tokio::select! {
                waited = exit.wait_for(Option::is_some) => Woke::Exited(match waited {
                    Ok(e) => e.clone().unwrap_or(WorkerExit::Unknown("no status".into())),
                    Err(_) => WorkerExit::Unknown("exit watcher ended".into()),
                }),
                _ = shutdown.wait_for(|s| *s) => Woke::Shutdown,
                command = commands.recv() => Woke::Command(command),
            };
            let command = match woke {
                Woke::Exited(exit) => {
                    return if *self.inner.shutdown_tx.borrow() {
                        Ended::Shutdown
                    } else {
                        Ended::Exited(exit)
                    };
                }
                Woke::Shutdown => return Ended::Shutdown,
                Woke::Command(Some(c)) => c,
                // The sender lives in `Inner`, which outlives this loop: this cannot happen, but if it
                // did, no one could ask for a recycle any more; keep serving until exit or shutdown.
                Woke::Command(None) => {
                    let waited = tokio::select! {
                        waited = exit.wait_for(Option::is_some) => waited.ok().and_then(|e| e.clone()),
                        _ = shutdown.wait_for(|s| *s) => None,
                    };
                    return match waited {
                        Some(exit) if !*self.inner.shutdown_tx.borrow() => Ended::Exited(exit),
                        _ => Ended::Shutdown,
                    };
                }
            };
            if command.generation() != generation.number {
                tracing::debug!(?command, "command for an earlier worker ignored");
                continue;
            }
            match command {
                Command::GiveUp { reason, .. } => return Ended::GiveUp(reason),
                Command::Recycle {
                    trigger,
                    reason,
                    rerun_setup,
                    ..
                } => {
                    let event = match trigger {
                        RecycleTrigger::AllSlotsPoisoned => Event::AllSlotsPoisoned,
                        _ => Event::RecycleRequested {
                            trigger,
                            reason: reason.clone(),
                        },
                    };
                    let actions = self.inner.apply(event);
                    // The health machine may already be RECYCLING (it emitted this recycle itself, for
                    // the liveness threshold); any other state refuses the recycle.
                    if self.inner.lock().machine.state != HealthStatus::Recycling {
                        tracing::info!(
                            trigger = trigger.as_str(),
                            reason,
                            "recycle request ignored in this state"
                        );
                        continue;
                    }
                    let drain = actions
                        .iter()
                        .find_map(|a| match a {
                            Action::Recycle { drain, .. } => Some(*drain),
                            _ => None,
                        })
                        .unwrap_or(true);
                    return Ended::Recycle {
                        trigger,
                        reason,
                        rerun_setup,
                        drain,
                    };
                }
            }
        }
    }

    /// Spawns generation `number` and sets it up. `None` when it could not be set up (the machine is then
    /// SETUP_FAILED or DEFUNCT) or the server is shutting down.
    async fn start_generation(
        &self,
        number: u64,
        mode: SetupMode,
        shutdown: &mut watch::Receiver<bool>,
        pending: &mut Option<PendingRecycle>,
    ) -> Option<Arc<Generation>> {
        let inner = &self.inner;
        if *shutdown.borrow() {
            return None;
        }
        {
            let mut state = inner.lock();
            state.worker.generation = number;
            state.worker.restarts = number - 1;
            state.generation = None;
            state.setup = SetupRecord {
                started_at: now_rfc3339(),
                completed_at: None,
                status: SetupStatus::Starting,
                logs: String::new(),
            };
        }
        let start = worker::start(
            &inner.config,
            &inner.runtime,
            &inner.spawner,
            number,
            mode,
            inner.as_ref(),
            |pid, started_at| {
                let mut state = inner.lock();
                state.worker.pid = Some(pid);
                state.worker.started_at = Some(started_at.to_string());
                state.worker.exit = None;
            },
        );
        tokio::pin!(start);
        let interrupted = tokio::select! {
            started = &mut start => Ok(started),
            _ = shutdown.wait_for(|s| *s) => Err(()),
        };
        let started = match interrupted {
            Ok(started) => started,
            Err(()) => {
                // Shut down during setup: kill the tree so setup ends now, then clean up.
                let pid = inner.lock().worker.pid;
                if let Some(pid) = pid {
                    crate::process_tree::kill_tree(pid).await;
                }
                match start.await {
                    Ok(started) => self.stop_generation(&started.generation).await,
                    Err(failed) => self.stop_failed_start(failed).await,
                }
                return None;
            }
        };
        let started = match started {
            Ok(started) => started,
            Err(failed) => {
                let message = failed.error.to_string();
                tracing::error!(generation = number, "{message}");
                // Report first: health must say SETUP_FAILED at once, not after the stop's graces.
                {
                    let mut state = inner.lock();
                    state.setup.status = SetupStatus::Failed;
                    state.setup.completed_at = Some(now_rfc3339());
                    if !state.setup.logs.is_empty() && !state.setup.logs.ends_with('\n') {
                        state.setup.logs.push('\n');
                    }
                    state.setup.logs.push_str(&message);
                    state.worker.pid = None;
                    state.worker.exit = Some(message.clone());
                }
                let event = if number == 1 {
                    Event::SetupFailed { reason: message }
                } else {
                    Event::RecycleFailed {
                        reason: format!(
                            "the replacement worker (generation {number}) failed: {message}"
                        ),
                    }
                };
                if let Some(p) = pending.take() {
                    self.record_recycle(p, false);
                }
                inner.apply(event);
                self.stop_failed_start(failed).await;
                return None;
            }
        };
        let generation = started.generation.clone();
        if *shutdown.borrow() {
            self.stop_generation(&generation).await;
            return None;
        }
        {
            let mut state = inner.lock();
            state.pool = SlotPool::new(inner.config.concurrency);
            state.generation = Some(generation.clone());
            state.has_healthcheck = started.ready.has_healthcheck;
            state.python_version = Some(started.ready.python_version.clone());
            state.sdk_version = Some(started.ready.sdk_version.clone());
            if let Some(schema) = started.ready.schema.clone() {
                state.schema = Some(Arc::new(schema));
            }
            state.setup.status = SetupStatus::Succeeded;
            state.setup.completed_at = Some(now_rfc3339());
            // The last line: nothing is added to setup.logs after it (what the model prints from now
            // on belongs to predictions and the server's log).
            state.setup.logs.push_str(&model_output::setup_line(
                model_output::RUNTIME_TARGET,
                model_output::MILESTONE_READY,
            ));
            state.predictions_served = 0;
            state.prediction_limit = inner.config.max_predictions.map(|max| {
                let jitter = inner.config.max_predictions_jitter;
                // Jitter spreads planned recycles of replicas that started together.
                let extra = if jitter == 0 {
                    0
                } else {
                    (uuid::Uuid::new_v4().as_u128() % (u128::from(jitter) + 1)) as u64
                };
                max.saturating_add(extra)
            });
            state.user_healthcheck_error = None;
            state.timed_out.clear();
        }
        for (i, reader) in started.slot_readers.into_iter().enumerate() {
            let this = self.clone();
            let generation = generation.clone();
            tokio::spawn(async move { this.read_slot(generation, SlotId(i as u32), reader).await });
        }
        let this = self.clone();
        let control_generation = generation.clone();
        tokio::spawn(async move {
            this.read_control(control_generation, started.control_reader)
                .await
        });
        // after_healthy holds readiness until it ends.
        if let Err(why) = self.run_after_healthy(&generation).await {
            let message = format!("hooks.after_healthy {why}");
            tracing::error!(generation = number, "{message}; the start counts as failed");
            {
                let mut state = inner.lock();
                state.setup.status = SetupStatus::Failed;
                state.setup.logs.push_str(&message);
                state.generation = None;
                state.worker.exit = Some(message.clone());
            }
            let event = if number == 1 {
                Event::SetupFailed { reason: message }
            } else {
                Event::RecycleFailed { reason: message }
            };
            if let Some(p) = pending.take() {
                self.record_recycle(p, false);
            }
            inner.apply(event);
            self.stop_generation(&generation).await;
            inner.lock().worker.pid = None;
            return None;
        }
        let event = if number == 1 {
            Event::SetupSucceeded
        } else {
            Event::NewWorkerReady
        };
        if let Some(p) = pending.take() {
            self.record_recycle(p, true);
        }
        inner.apply(event);
        tracing::info!(generation = number, pid = generation.pid, "worker ready");
        Some(generation)
    }

    /// Stops what a failed start left. A worker still inside setup() does not read its control channel,
    /// so a shutdown message would only wait out the grace: go straight to SIGTERM.
    async fn stop_failed_start(&self, failed: worker::FailedStart) {
        if let (Some(pid), Some(exit)) = (failed.pid, failed.exit) {
            crate::stop::stop_worker(
                pid,
                exit,
                self.inner.config.stop_grace,
                self.inner.spawner.known(),
                async { false },
            )
            .await;
        }
    }

    /// Waits until no slot runs a prediction, `deadline` passes, the worker exits (nothing more can
    /// finish), or the server shuts down.
    async fn wait_for_drain(
        &self,
        generation: &Generation,
        deadline: tokio::time::Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut exit = generation.exit.clone();
        loop {
            let freed = self.inner.slot_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let busy = self.inner.lock().pool.busy_count();
            if busy == 0 {
                return;
            }
            tokio::select! {
                _ = freed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(busy, "recycle drain timed out; cancelling what still runs");
                    return;
                }
                _ = shutdown.wait_for(|s| *s) => return,
                _ = exit.wait_for(Option::is_some) => {
                    tracing::warn!(busy, "the worker exited while a recycle was draining it");
                    return;
                }
            }
        }
    }

    /// Asks the worker to cancel every running prediction, so model code can clean up before the stop.
    async fn cancel_in_flight(&self, generation: &Generation) {
        let running = self.inner.lock().pool.running_ids();
        for (slot, id) in running {
            generation
                .send_control(ControlRequest::Cancel { slot, id })
                .await;
        }
    }

    /// Fails every running prediction with `error`, now.
    fn fail_in_flight(&self, error: &str) {
        let running = self.inner.lock().pool.drain(error);
        for r in running {
            let _ = r.events.send(PredictionEvent::Failed {
                error: error.to_string(),
            });
        }
        self.inner.slot_freed.notify_waiters();
    }

    /// Fails what still runs with `error`, runs `before_stop`, then stops the worker's whole tree.
    async fn stop_and_fail(&self, generation: &Generation, error: &str, reason: &str) {
        self.fail_in_flight(error);
        self.run_before_stop(generation, reason).await;
        self.stop_generation(generation).await;
        let mut state = self.inner.lock();
        if state
            .generation
            .as_ref()
            .is_some_and(|g| g.number == generation.number)
        {
            state.generation = None;
            state.worker.pid = None;
        }
    }

    /// Runs `after_healthy` if configured. `Err` only when it failed and its policy is `fail`.
    async fn run_after_healthy(&self, generation: &Generation) -> Result<(), String> {
        let hooks = &self.inner.config.hooks;
        let Some(argv) = &hooks.after_healthy else {
            return Ok(());
        };
        let reason = self
            .inner
            .lock()
            .machine
            .reason
            .clone()
            .unwrap_or_else(|| "start".into());
        let vars = HookVars {
            port: hooks.port,
            worker_pid: Some(generation.pid),
            generation: generation.number,
            reason,
        };
        let outcome = hooks::run(
            &self.inner.spawner,
            "after_healthy",
            argv,
            &vars,
            hooks.timeout,
        )
        .await;
        self.inner.hook_ran("after_healthy", &outcome);
        match outcome {
            HookOutcome::Succeeded => Ok(()),
            other if hooks.on_failure == HookPolicy::Fail => Err(other.to_string()),
            _ => Ok(()),
        }
    }

    /// Runs `before_stop` if configured; the stop proceeds whatever it returns.
    async fn run_before_stop(&self, generation: &Generation, reason: &str) {
        let hooks = &self.inner.config.hooks;
        let Some(argv) = &hooks.before_stop else {
            return;
        };
        let vars = HookVars {
            port: hooks.port,
            worker_pid: Some(generation.pid),
            generation: generation.number,
            reason: reason.to_string(),
        };
        let outcome = hooks::run(
            &self.inner.spawner,
            "before_stop",
            argv,
            &vars,
            hooks.timeout,
        )
        .await;
        self.inner.hook_ran("before_stop", &outcome);
    }

    fn record_recycle(&self, pending: PendingRecycle, succeeded: bool) {
        let record = RecycleRecord {
            trigger: pending.trigger.as_str(),
            reason: pending.reason,
            at: pending.at,
            duration_seconds: pending.started.elapsed().as_secs_f64(),
            succeeded,
        };
        tracing::info!(
            trigger = record.trigger,
            reason = record.reason,
            duration_seconds = record.duration_seconds,
            succeeded,
            "recycle finished"
        );
        self.inner.observe(crate::SupervisorEvent::RecycleFinished {
            trigger: pending.trigger,
            duration: std::time::Duration::from_secs_f64(record.duration_seconds),
            succeeded,
        });
        self.inner.lock().worker.last_recycle = Some(record);
    }
}
