//! The real effects of the health machine's actions: spawning, setting up, draining and stopping
//! worker generations, running hooks, failing predictions.
//!
//! One task runs [`crate::executor::run`] with a [`Lifecycle`], so it owns every start and stop of a
//! worker: two stops never race and a recycle cannot overlap a shutdown. Everything else (a check,
//! model code, a poisoned slot, `recycle.max_predictions`, a memory bound, `POST /recycle`) applies its
//! event to the machine under the state lock, where the change is visible at once, and sends the
//! actions the machine returned to this task ([`crate::supervisor::Inner::handle`]). The procedures themselves (which steps
//! a recycle takes, which setup, which backoff) are the machine's: see
//! [`crate::health_machine`].

use std::sync::Arc;
use std::time::Duration;

use cogvisor_protocol::{ControlRequest, SetupMode, SlotId};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::executor::{Effects, ShuttingDown, Step, Wake};
use crate::health_machine::{Action, Event, RecycleTrigger};
use crate::hooks::{self, HookOutcome, HookPolicy, HookVars};
use crate::worker::{self, Generation, WorkerExit};
use crate::{HealthStatus, PredictionEvent, Supervisor};

/// What a start that failed left to stop.
enum Leftover {
    /// The spawn or the setup failed: a process may still run.
    FailedStart(worker::FailedStart),
    /// Set up, but `after_healthy` failed the start.
    Generation(Arc<Generation>),
}

/// The lifecycle task's side of the executor.
pub(crate) struct Lifecycle {
    sup: Supervisor,
    /// Actions other tasks got from the machine.
    actions: mpsc::UnboundedReceiver<Vec<Action>>,
    /// The supervisor's token: cancelled, the task stops the worker and ends.
    shutdown: CancellationToken,
    /// The worker that is set up (serving, or running `after_healthy`).
    current: Option<Arc<Generation>>,
    /// `current`'s exit was reported to the machine already.
    exit_reported: bool,
    leftover: Option<Leftover>,
}

impl Lifecycle {
    pub(crate) fn new(sup: Supervisor, actions: mpsc::UnboundedReceiver<Vec<Action>>) -> Self {
        let shutdown = sup.inner.scope.token.clone();
        Self {
            sup,
            actions,
            shutdown,
            current: None,
            exit_reported: false,
            leftover: None,
        }
    }

    fn shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Stops what a failed start left. A worker still inside setup() does not read its control channel,
    /// so a shutdown message would only wait out the grace: go straight to SIGTERM.
    async fn stop_leftover(&self, leftover: Leftover) {
        match leftover {
            Leftover::FailedStart(failed) => {
                if let (Some(pid), Some(exit)) = (failed.pid, failed.exit) {
                    crate::stop::stop_worker(
                        pid,
                        exit,
                        self.sup.inner.config.stop_grace,
                        self.sup.inner.spawner.known(),
                        async { false },
                    )
                    .await;
                }
            }
            Leftover::Generation(generation) => self.sup.stop_generation(&generation).await,
        }
    }

    /// Waits until no slot runs a prediction, `deadline` passes, the worker exits (nothing more can
    /// finish), or the server shuts down.
    async fn wait_for_drain(
        &mut self,
        generation: &Generation,
        deadline: tokio::time::Instant,
    ) -> Step<()> {
        let inner = &self.sup.inner;
        let mut exit = generation.exit.clone();
        loop {
            let freed = inner.slot_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let busy = inner.lock().pool.busy_count();
            if busy == 0 {
                return Ok(());
            }
            tokio::select! {
                _ = freed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(busy, "recycle drain timed out; cancelling what still runs");
                    return Ok(());
                }
                _ = self.shutdown.cancelled() => return Err(ShuttingDown),
                _ = exit.wait_for(Option::is_some) => {
                    tracing::warn!(busy, "the worker exited while a recycle was draining it");
                    return Ok(());
                }
            }
        }
    }

    /// Runs `before_stop` if configured; the stop proceeds whatever it returns.
    async fn run_before_stop(&self, generation: &Generation, reason: &str) {
        let hooks = &self.sup.inner.config.hooks;
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
            &self.sup.inner.spawner,
            "before_stop",
            argv,
            &vars,
            hooks.timeout,
        )
        .await;
        self.sup.inner.hook_ran("before_stop", &outcome);
    }

    /// Starts the tasks that read the new worker's channels. They end when the worker closes them
    /// (it exited or was stopped), on the supervisor's tracker.
    fn spawn_readers(&self, generation: &Arc<Generation>, started: worker::Started) {
        let scope = &self.sup.inner.scope;
        for (i, reader) in started.slot_readers.into_iter().enumerate() {
            let this = self.sup.clone();
            let generation = generation.clone();
            scope.spawn(async move { this.read_slot(generation, SlotId(i as u32), reader).await });
        }
        let this = self.sup.clone();
        let generation = generation.clone();
        scope.spawn(async move { this.read_control(generation, started.control_reader).await });
    }
}

/// Waits for a worker's exit; never, without a worker.
async fn exited(exit: Option<watch::Receiver<Option<WorkerExit>>>) -> WorkerExit {
    let Some(mut exit) = exit else {
        return std::future::pending().await;
    };
    let waited = match exit.wait_for(Option::is_some).await {
        Ok(e) => e.clone().unwrap_or(WorkerExit::Unknown("no status".into())),
        Err(_) => WorkerExit::Unknown("exit watcher ended".into()),
    };
    waited
}

impl Effects for Lifecycle {
    fn apply(&mut self, event: Event) -> Vec<Action> {
        self.sup.inner.apply(event)
    }

    fn is_final(&self) -> bool {
        matches!(
            self.sup.inner.lock().machine.state,
            HealthStatus::SetupFailed | HealthStatus::Defunct
        )
    }

    async fn next(&mut self) -> Wake {
        let exit = match &self.current {
            Some(g) if !self.exit_reported => Some(g.exit.clone()),
            _ => None,
        };
        let woke = tokio::select! {
            _ = self.shutdown.cancelled() => Wake::Shutdown,
            exit = exited(exit) => Wake::WorkerExited { exit: exit.to_string() },
            // The sender lives in `Inner`, which outlives this task: `None` cannot happen.
            actions = self.actions.recv() => Wake::Actions(actions.unwrap_or_default()),
        };
        if let Wake::WorkerExited { exit } = &woke {
            if self.shutting_down() {
                return Wake::Shutdown;
            }
            self.exit_reported = true;
            // Only the fact: the machine decides what follows (in-flight predictions fail and
            // admission stops with its RECYCLING, before the stop clears the worker).
            let reason = format!("worker exited unexpectedly ({exit})");
            self.sup.inner.lock().worker_exited(reason);
        }
        woke
    }

    fn queued(&mut self) -> Option<Vec<Action>> {
        self.actions.try_recv().ok()
    }

    async fn start_worker(
        &mut self,
        generation: u64,
        setup: SetupMode,
    ) -> Step<Result<(), String>> {
        if self.shutting_down() {
            return Err(ShuttingDown);
        }
        let inner = self.sup.inner.clone();
        inner.lock().setup_started(&inner.config, generation);
        let start = worker::start(
            &inner.config,
            &inner.runtime,
            &inner.spawner,
            worker::NewGeneration {
                number: generation,
                setup,
                scope: inner.scope.child(),
            },
            inner.as_ref(),
            |pid, started_at| inner.lock().worker_spawned(pid, started_at),
        );
        tokio::pin!(start);
        let interrupted = tokio::select! {
            started = &mut start => Ok(started),
            _ = self.shutdown.cancelled() => Err(ShuttingDown),
        };
        let started = match interrupted {
            Ok(started) => started,
            Err(ShuttingDown) => {
                // Shut down during setup: kill the tree so setup ends now, then clean up.
                let pid = inner.lock().worker.pid;
                if let Some(pid) = pid {
                    crate::process_tree::kill_tree(pid).await;
                }
                match start.await {
                    Ok(started) => self.sup.stop_generation(&started.generation).await,
                    Err(failed) => self.stop_leftover(Leftover::FailedStart(failed)).await,
                }
                return Err(ShuttingDown);
            }
        };
        match started {
            Err(failed) => {
                let message = failed.error.to_string();
                tracing::error!(generation, "{message}");
                // Recorded now; the machine moves next, and only then the stop's graces run.
                inner.lock().setup_failed(&message);
                self.leftover = Some(Leftover::FailedStart(failed));
                Ok(Err(message))
            }
            Ok(started) => {
                let g = started.generation.clone();
                // Right after setup, before anything is admitted: the bounds this worker is held to.
                let memory = tokio::select! {
                    memory = self.sup.memory_after_setup(&g) => memory,
                    _ = self.shutdown.cancelled() => None,
                };
                if self.shutting_down() {
                    self.sup.stop_generation(&g).await;
                    return Err(ShuttingDown);
                }
                let sample_memory = memory.is_some();
                inner
                    .lock()
                    .install(&inner.config, g.clone(), &started.ready, memory);
                self.spawn_readers(&g, started);
                self.sup.spawn_heartbeat(g.clone());
                if sample_memory {
                    self.sup.spawn_memory_sampler(g.clone());
                }
                self.current = Some(g);
                self.exit_reported = false;
                Ok(Ok(()))
            }
        }
    }

    async fn run_after_healthy(&mut self) -> Result<(), String> {
        let Some(generation) = self.current.clone() else {
            return Ok(());
        };
        let hooks = &self.sup.inner.config.hooks;
        if let Some(argv) = &hooks.after_healthy {
            let reason = self.sup.inner.lock().machine.reason.clone();
            let vars = HookVars {
                port: hooks.port,
                worker_pid: Some(generation.pid),
                generation: generation.number,
                reason: reason.unwrap_or_else(|| "start".into()),
            };
            let outcome = hooks::run(
                &self.sup.inner.spawner,
                "after_healthy",
                argv,
                &vars,
                hooks.timeout,
            )
            .await;
            self.sup.inner.hook_ran("after_healthy", &outcome);
            match outcome {
                HookOutcome::Succeeded => {}
                other if hooks.on_failure == HookPolicy::Fail => {
                    let message = format!("hooks.after_healthy {other}");
                    tracing::error!(
                        generation = generation.number,
                        "{message}; the start counts as failed"
                    );
                    self.sup.inner.lock().after_healthy_failed(&message);
                    self.current = None;
                    self.leftover = Some(Leftover::Generation(generation));
                    return Err(message);
                }
                _ => {}
            }
        }
        tracing::info!(
            generation = generation.number,
            pid = generation.pid,
            "worker ready"
        );
        Ok(())
    }

    async fn drain(&mut self) -> Step<()> {
        let Some(generation) = self.current.clone() else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + self.sup.inner.config.recycle_drain_timeout;
        self.wait_for_drain(&generation, deadline).await?;
        // Ask the worker to cancel what still runs, so model code can clean up before the stop.
        let running = self.sup.inner.lock().pool.running_ids();
        for (slot, id) in running {
            generation
                .send_control(ControlRequest::Cancel { slot, id })
                .await;
        }
        Ok(())
    }

    fn fail_in_flight(&mut self, error: &str) {
        self.sup.fail_in_flight(error);
    }

    async fn stop_worker(&mut self, reason: &str) {
        if let Some(generation) = self.current.take() {
            if generation.has_exited().is_some() {
                // Gone already (a crash): only what it left behind is swept.
                self.sup.inner.lock().worker_gone(reason.to_string());
                crate::stop::sweep(generation.pid, self.sup.inner.spawner.known()).await;
                generation.token.cancel();
            } else {
                self.run_before_stop(&generation, reason).await;
                self.sup.stop_generation(&generation).await;
            }
        }
        if let Some(leftover) = self.leftover.take() {
            self.stop_leftover(leftover).await;
        }
        self.sup.inner.lock().worker_gone(reason.to_string());
    }

    async fn backoff(&mut self, after: Duration) -> Step<()> {
        tokio::select! {
            _ = tokio::time::sleep(after) => Ok(()),
            _ = self.shutdown.cancelled() => Err(ShuttingDown),
        }
    }

    fn log_persistent_failure(&mut self, failures: u32, reason: &str) {
        tracing::error!(
            failures,
            reason,
            "health checks keep failing (on_failure: log)"
        );
    }

    fn recycle_finished(&mut self, trigger: RecycleTrigger, duration: Duration, succeeded: bool) {
        let reason = self
            .sup
            .inner
            .lock()
            .machine
            .last_recycle
            .as_ref()
            .map(|r| r.reason.clone())
            .unwrap_or_default();
        tracing::info!(
            trigger = trigger.as_str(),
            reason,
            duration_seconds = duration.as_secs_f64(),
            succeeded,
            "recycle finished"
        );
        self.sup
            .inner
            .observe(crate::SupervisorEvent::RecycleFinished {
                trigger,
                duration,
                succeeded,
            });
    }

    fn await_turn(&mut self) {
        let inner = &self.sup.inner;
        let awaited = inner.lock().machine.awaiting_turn.clone();
        if let (Some(roll), Some(awaited)) = (&inner.roll, awaited) {
            tracing::info!(
                worker = inner.config.worker_index,
                trigger = awaited.trigger.as_str(),
                reason = awaited.reason,
                "recycle awaits its turn; the worker serves meanwhile"
            );
            roll.request(inner.config.worker_index);
        }
    }

    fn close_admission(&mut self, reason: &str) {
        self.sup.inner.lock().close_admission(reason);
    }

    async fn shut_down(&mut self) {
        if let Some(generation) = self.current.take() {
            self.sup.fail_in_flight(
                "prediction failed: the server shut down before the prediction finished",
            );
            // A worker its successor replaced (`recycle.overlap`) says so to `before_stop`.
            let closed = self.sup.inner.lock().closed.clone();
            let reason = match closed {
                Some(reason) if self.sup.inner.lock().machine.superseded => reason,
                _ => "shutdown".to_string(),
            };
            self.run_before_stop(&generation, &reason).await;
            self.sup.stop_generation(&generation).await;
        }
        if let Some(leftover) = self.leftover.take() {
            self.stop_leftover(leftover).await;
        }
        self.sup.inner.lock().worker_stopped();
    }
}

impl Supervisor {
    /// Fails every running prediction with `error`, now.
    pub(crate) fn fail_in_flight(&self, error: &str) {
        let running = self.inner.lock().pool.drain(error);
        for r in running {
            let _ = r.events.send(PredictionEvent::Failed {
                error: error.to_string(),
            });
        }
        self.inner.slot_freed.notify_waiters();
    }
}
