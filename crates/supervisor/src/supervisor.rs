//! The supervisor handle: starts the worker, admits predictions into slots, routes what the worker
//! sends back, notices its death and stops it.

use std::sync::{Arc, Mutex as StdMutex};

use cogvisor_protocol::{
    spill, ControlRequest, ControlResponse, FileOutputKind, SetupMode, SlotId, SlotRequest,
    SlotResponse,
};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::health::{HealthSnapshot, HealthStatus, SetupRecord, SetupStatus, WorkerRecord};
use crate::prediction::OutputDir;
use crate::runtime_dir::RuntimeDir;
use crate::slots::{Running, SlotPool};
use crate::spawn::{KnownChildren, Spawner};
use crate::worker::{self, ControlReader, Generation, SetupLog, SlotReader, WorkerExit};
use crate::{
    AdmitError, PredictionEvent, PredictionRequest, PredictionStream, SupervisorConfig,
    SupervisorError,
};

/// RFC 3339 with nanoseconds and `+00:00`, as Cog writes timestamps.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false)
}

/// Mutable state behind one lock. Kept small: no I/O happens while it is held.
#[derive(Debug)]
struct State {
    /// The stored status (never BUSY: that is derived).
    status: HealthStatus,
    setup: SetupRecord,
    worker: WorkerRecord,
    pool: SlotPool,
    generation: Option<Arc<Generation>>,
    python_version: Option<String>,
    sdk_version: Option<String>,
    schema: Option<Arc<serde_json::Value>>,
    shutting_down: bool,
}

#[derive(Debug)]
struct Inner {
    config: SupervisorConfig,
    runtime: RuntimeDir,
    spawner: Spawner,
    state: StdMutex<State>,
}

/// The handle the HTTP layer uses. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent across a panic in another task (every update is a plain field
        // assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SetupLog for Inner {
    fn append(&self, text: &str) {
        self.lock().setup.logs.push_str(text);
    }
}

impl Supervisor {
    /// Makes this process a subreaper, creates the runtime directory, and starts generation 1 in the
    /// background. Returns at once: health is STARTING until the worker is ready.
    pub async fn start(
        config: SupervisorConfig,
        runtime: RuntimeDir,
    ) -> Result<Self, SupervisorError> {
        crate::process_tree::become_subreaper().map_err(SupervisorError::Subreaper)?;
        let known = KnownChildren::default();
        let spawner = Spawner::start(known.clone())?;
        spawn_orphan_reaper(known);
        let inner = Arc::new(Inner {
            state: StdMutex::new(State {
                status: HealthStatus::Starting,
                setup: SetupRecord {
                    started_at: now_rfc3339(),
                    completed_at: None,
                    status: SetupStatus::Starting,
                    logs: String::new(),
                },
                worker: WorkerRecord {
                    pid: None,
                    generation: 0,
                    started_at: None,
                    restarts: 0,
                    exit: None,
                },
                pool: SlotPool::new(config.concurrency),
                generation: None,
                python_version: None,
                sdk_version: None,
                schema: None,
                shutting_down: false,
            }),
            config,
            runtime,
            spawner,
        });
        let supervisor = Supervisor { inner };
        let starter = supervisor.clone();
        tokio::spawn(async move { starter.run_generation(1, SetupMode::Full).await });
        Ok(supervisor)
    }

    /// The private runtime directory.
    pub fn runtime_dir(&self) -> &std::path::Path {
        self.inner.runtime.path()
    }

    /// The OpenAPI schema the worker sent, once ready. The same `Arc` until a new worker sends one,
    /// so callers can cache what they derive from it.
    pub fn schema(&self) -> Option<Arc<serde_json::Value>> {
        self.inner.lock().schema.clone()
    }

    /// Health as `/health-check` shows it, BUSY derived.
    pub fn health(&self) -> HealthSnapshot {
        let state = self.inner.lock();
        let status = match state.status {
            HealthStatus::Ready if !state.pool.is_empty() && state.pool.idle_count() == 0 => {
                HealthStatus::Busy
            }
            s => s,
        };
        HealthSnapshot {
            status,
            setup: state.setup.clone(),
            worker: state.worker.clone(),
            slots: state.pool.record(),
            python_version: state.python_version.clone(),
            sdk_version: state.sdk_version.clone(),
        }
    }

    /// Admits `request` into a free slot and sends it to the worker.
    pub async fn predict(
        &self,
        request: PredictionRequest,
    ) -> Result<PredictionStream, AdmitError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (slot, generation) = {
            let mut state = self.inner.lock();
            if state.shutting_down {
                return Err(AdmitError::ShuttingDown);
            }
            let generation = match (&state.status, &state.generation) {
                (HealthStatus::Ready | HealthStatus::Unhealthy, Some(g)) => g.clone(),
                (status, _) => return Err(AdmitError::NotReady(*status)),
            };
            if state.pool.find(&request.id).is_some() {
                return Err(AdmitError::DuplicateId(request.id));
            }
            let running = Running {
                id: request.id.clone(),
                events: tx.clone(),
            };
            match state.pool.acquire(running) {
                Ok(slot) => (slot, generation),
                Err(_) => return Err(AdmitError::AtCapacity),
            }
        };
        let output_dir = OutputDir(
            self.inner
                .runtime
                .outputs_dir()
                .join(uuid::Uuid::new_v4().to_string()),
        );
        let stream = PredictionStream {
            id: request.id.clone(),
            events: rx,
            output_dir,
        };
        if let Err(error) = self
            .dispatch(&generation, slot, request, stream.output_dir())
            .await
        {
            self.poison_slot(&generation, slot, &error);
        }
        Ok(stream)
    }

    /// Writes the `predict` message. An error poisons the slot (done by the caller).
    async fn dispatch(
        &self,
        generation: &Generation,
        slot: SlotId,
        request: PredictionRequest,
        output_dir: &std::path::Path,
    ) -> Result<(), String> {
        std::fs::create_dir(output_dir).map_err(|e| {
            format!(
                "cannot create output directory {}: {e}",
                output_dir.display()
            )
        })?;
        let (input, input_file) =
            match spill::prepare(&self.inner.runtime.spill_dir(), request.input)
                .map_err(|e| format!("cannot prepare input: {e}"))?
            {
                spill::Payload::Inline(v) => (Some(v), None),
                spill::Payload::File(p) => (None, Some(p.display().to_string())),
            };
        let message = SlotRequest::Predict {
            id: request.id,
            input,
            input_file,
            output_dir: output_dir.display().to_string(),
            context: request.context,
        };
        let Some(writer) = generation.slot_writers.get(slot.0 as usize) else {
            return Err(format!("slot {slot} has no channel"));
        };
        writer
            .lock()
            .await
            .send(message)
            .await
            .map_err(|e| format!("cannot send the prediction to slot {slot}: {e}"))
    }

    /// Cancels prediction `id`. False when no running prediction has that id.
    pub async fn cancel(&self, id: &str) -> bool {
        let target = {
            let state = self.inner.lock();
            state
                .pool
                .find(id)
                .and_then(|slot| state.generation.clone().map(|g| (slot, g)))
        };
        let Some((slot, generation)) = target else {
            return false;
        };
        generation
            .send_control(ControlRequest::Cancel {
                slot,
                id: id.to_string(),
            })
            .await;
        true
    }

    /// Stops admitting, stops the worker (shutdown message → grace → SIGTERM → grace → SIGKILL) and
    /// reaps every process it left. Running predictions fail with a shutdown error.
    pub async fn shutdown(&self) {
        let generation = {
            let mut state = self.inner.lock();
            state.shutting_down = true;
            state.generation.clone()
        };
        if let Some(generation) = generation {
            self.stop_generation(&generation).await;
            let running = self.inner.lock().pool.drain("server shut down");
            for r in running {
                let _ = r.events.send(PredictionEvent::Failed {
                    error: "the server shut down before the prediction finished".into(),
                });
            }
        }
    }

    async fn stop_generation(&self, generation: &Generation) {
        let outcome = crate::stop::stop_worker(
            generation.pid,
            generation.exit.clone(),
            self.inner.config.stop_grace,
            self.inner.spawner.known(),
            generation.send_control(ControlRequest::Shutdown),
        )
        .await;
        tracing::info!(
            pid = generation.pid,
            generation = generation.number,
            ?outcome,
            "worker stopped"
        );
    }

    /// Spawns generation `number`, runs its setup, and serves it until it exits.
    async fn run_generation(&self, number: u64, setup: SetupMode) {
        let inner = &self.inner;
        {
            let mut state = inner.lock();
            state.status = HealthStatus::Starting;
            state.worker.generation = number;
        }
        let started = worker::start(
            &inner.config,
            &inner.runtime,
            &inner.spawner,
            number,
            setup,
            inner.as_ref(),
            |pid, started_at| {
                let mut state = inner.lock();
                state.worker.pid = Some(pid);
                state.worker.started_at = Some(started_at.to_string());
            },
        )
        .await;
        let started = match started {
            Ok(started) => started,
            Err(failed) => {
                let message = failed.error.to_string();
                tracing::error!(generation = number, "{message}");
                // Report first: health must say SETUP_FAILED at once, not after the stop's graces.
                {
                    let mut state = inner.lock();
                    state.status = HealthStatus::SetupFailed;
                    state.setup.status = SetupStatus::Failed;
                    state.setup.completed_at = Some(now_rfc3339());
                    if !state.setup.logs.is_empty() && !state.setup.logs.ends_with('\n') {
                        state.setup.logs.push('\n');
                    }
                    state.setup.logs.push_str(&message);
                    state.worker.pid = None;
                }
                if let (Some(pid), Some(exit)) = (failed.pid, failed.exit) {
                    // A worker still inside setup() does not read its control channel, so a
                    // shutdown message would only wait out the grace: go straight to SIGTERM.
                    crate::stop::stop_worker(
                        pid,
                        exit,
                        inner.config.stop_grace,
                        inner.spawner.known(),
                        async { false },
                    )
                    .await;
                }
                return;
            }
        };
        let generation = started.generation.clone();
        let shutting_down = {
            let mut state = inner.lock();
            if !state.shutting_down {
                state.pool = SlotPool::new(inner.config.concurrency);
                state.generation = Some(generation.clone());
                state.python_version = Some(started.ready.python_version.clone());
                state.sdk_version = Some(started.ready.sdk_version.clone());
                state.schema = started.ready.schema.clone().map(Arc::new);
                state.status = HealthStatus::Ready;
                state.setup.status = SetupStatus::Succeeded;
                state.setup.completed_at = Some(now_rfc3339());
            }
            state.shutting_down
        };
        if shutting_down {
            self.stop_generation(&generation).await;
            return;
        }
        tracing::info!(generation = number, pid = generation.pid, "worker ready");
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

        // Serve until the worker exits.
        let mut exit = generation.exit.clone();
        let waited = exit.wait_for(Option::is_some).await.map(|e| e.clone());
        let exit = match waited {
            Ok(e) => e.unwrap_or(WorkerExit::Unknown("no status".into())),
            Err(_) => WorkerExit::Unknown("exit watcher ended".into()),
        };
        self.on_worker_exit(&generation, exit).await;
    }

    /// The worker is gone: fail what it was running, clean up its tree, and record why.
    async fn on_worker_exit(&self, generation: &Generation, exit: WorkerExit) {
        let (running, expected) = {
            let mut state = self.inner.lock();
            let expected = state.shutting_down;
            let reason = format!("worker exited unexpectedly ({exit})");
            let running = state.pool.drain(&reason);
            if !expected {
                state.status = HealthStatus::Defunct;
                state.worker.exit = Some(reason);
                state.worker.pid = None;
            }
            (running, expected)
        };
        for r in running {
            let _ = r.events.send(PredictionEvent::Failed {
                error: format!("prediction failed: the worker exited unexpectedly ({exit})"),
            });
        }
        if !expected {
            tracing::error!(generation = generation.number, pid = generation.pid, %exit, "worker exited unexpectedly");
            crate::stop::sweep(generation.pid, self.inner.spawner.known()).await;
        }
    }

    /// Poisons `slot` and fails the prediction it was running with `reason`.
    fn poison_slot(&self, generation: &Generation, slot: SlotId, reason: &str) {
        let running = {
            let mut state = self.inner.lock();
            if !is_current(&state, generation) {
                return;
            }
            state.pool.poison(slot, reason)
        };
        tracing::warn!(slot = slot.0, reason, "slot poisoned");
        if let Some(r) = running {
            let _ = r.events.send(PredictionEvent::Failed {
                error: format!("prediction failed: {reason}"),
            });
        }
    }

    /// Routes what the worker sends on one slot socket to the prediction running there.
    async fn read_slot(&self, generation: Arc<Generation>, slot: SlotId, mut reader: SlotReader) {
        loop {
            let message = match reader.next().await {
                Some(Ok(m)) => m,
                other => {
                    let reason = match other {
                        Some(Err(e)) => format!("slot {slot} channel error: {e}"),
                        _ => format!("slot {slot} channel closed by the worker"),
                    };
                    // If the worker is dying, its exit (with code or signal) is the better report.
                    let mut exit = generation.exit.clone();
                    let dying = tokio::time::timeout(
                        std::time::Duration::from_millis(500),
                        exit.wait_for(Option::is_some),
                    )
                    .await;
                    if !matches!(dying, Ok(Ok(_))) {
                        self.poison_slot(&generation, slot, &reason);
                    }
                    return;
                }
            };
            self.on_slot_message(&generation, slot, message);
        }
    }

    fn on_slot_message(&self, generation: &Generation, slot: SlotId, message: SlotResponse) {
        let event = match message {
            SlotResponse::Log { source, data } => PredictionEvent::Log {
                source,
                data: cogvisor_protocol::truncate_log(data),
            },
            SlotResponse::Output { output } => PredictionEvent::Output(output),
            SlotResponse::FileOutput {
                filename,
                kind: FileOutputKind::File,
                mime_type,
            } => PredictionEvent::File {
                path: filename.into(),
                mime_type,
            },
            SlotResponse::FileOutput {
                filename,
                kind: FileOutputKind::Oversized,
                ..
            } => match spill::take(
                &self.inner.runtime.spill_dir(),
                std::path::Path::new(&filename),
            ) {
                Ok(value) => PredictionEvent::Output(value),
                Err(e) => {
                    self.poison_slot(generation, slot, &format!("bad output spill file: {e}"));
                    return;
                }
            },
            SlotResponse::Metric { name, value, mode } => {
                PredictionEvent::Metric { name, value, mode }
            }
            SlotResponse::Done {
                id,
                predict_time,
                is_stream,
            } => {
                return self.finish(
                    generation,
                    slot,
                    &id,
                    PredictionEvent::Succeeded {
                        predict_time,
                        is_stream,
                    },
                )
            }
            SlotResponse::Failed { id, error } => {
                return self.finish(generation, slot, &id, PredictionEvent::Failed { error })
            }
            SlotResponse::Cancelled { id } => {
                return self.finish(generation, slot, &id, PredictionEvent::Canceled)
            }
        };
        let state = self.inner.lock();
        match state.pool.running(slot) {
            Some(r) if is_current(&state, generation) => {
                let _ = r.events.send(event);
            }
            _ => tracing::debug!(
                slot = slot.0,
                "message for a slot with no running prediction"
            ),
        }
    }

    /// A terminal message: free the slot first, then tell the prediction, so its response can never
    /// reach the client before the slot is free again.
    fn finish(&self, generation: &Generation, slot: SlotId, id: &str, event: PredictionEvent) {
        let running = {
            let mut state = self.inner.lock();
            if !is_current(&state, generation) {
                return;
            }
            state.pool.release(slot, id)
        };
        match running {
            Some(r) => {
                let _ = r.events.send(event);
            }
            None => tracing::warn!(
                slot = slot.0,
                id,
                "terminal message for a prediction not running in that slot"
            ),
        }
    }

    /// Handles control messages after `ready`.
    async fn read_control(&self, generation: Arc<Generation>, mut reader: ControlReader) {
        while let Some(frame) = reader.next().await {
            let message = match frame {
                Ok(m) => m,
                Err(e) => {
                    // The control channel cannot be trusted any more: the worker must go.
                    tracing::error!(generation = generation.number, error = %e, "control channel error; stopping the worker");
                    crate::process_tree::kill_tree(generation.pid);
                    return;
                }
            };
            match message {
                ControlResponse::Log { source, data } => {
                    tracing::info!(target: "cogvisor::worker", ?source, "{}", data.trim_end())
                }
                ControlResponse::WorkerLog { level, message } => {
                    tracing::info!(target: "cogvisor::worker", ?level, "{message}")
                }
                ControlResponse::Idle { slot } => tracing::debug!(slot = slot.0, "slot idle"),
                ControlResponse::Cancelled { slot, id } => {
                    tracing::info!(slot = slot.0, prediction_id = %id, "cancel delivered")
                }
                ControlResponse::Failed { slot, error } => {
                    self.poison_slot(&generation, slot, &error)
                }
                ControlResponse::Fatal { reason } => {
                    tracing::error!(
                        generation = generation.number,
                        reason,
                        "worker reported a fatal error; stopping it"
                    );
                    crate::process_tree::kill_tree(generation.pid);
                }
                ControlResponse::DroppedLogs {
                    count,
                    interval_millis,
                } => {
                    tracing::warn!(count, interval_millis, "worker dropped log messages")
                }
                ControlResponse::HealthcheckResult { id, status, error } => {
                    tracing::debug!(id, ?status, ?error, "healthcheck result")
                }
                ControlResponse::ShuttingDown => {
                    tracing::info!(generation = generation.number, "worker shutting down")
                }
                ControlResponse::RecycleRequested {
                    reason,
                    rerun_setup,
                } => {
                    tracing::warn!(reason, rerun_setup, "model asked for a worker recycle")
                }
                ControlResponse::Ready { .. } | ControlResponse::SetupFailed { .. } => {
                    tracing::warn!(
                        generation = generation.number,
                        "setup message after ready ignored"
                    )
                }
            }
        }
    }
}

fn is_current(state: &State, generation: &Generation) -> bool {
    state
        .generation
        .as_ref()
        .is_some_and(|g| g.number == generation.number)
}

/// Reaps zombies of orphans reparented to us, on every SIGCHLD.
fn spawn_orphan_reaper(known: KnownChildren) {
    tokio::spawn(async move {
        let Ok(mut sigchld) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        else {
            tracing::warn!(
                "cannot listen for SIGCHLD; orphans are reaped only when a worker stops"
            );
            return;
        };
        while sigchld.recv().await.is_some() {
            crate::process_tree::reap_zombie_orphans(&known);
        }
    });
}
