//! The supervisor handle: starts the lifecycle task (which starts, recycles and stops workers), admits
//! predictions into slots, cancels them, shows health, and shuts down. What the worker sends back is
//! routed in `routing.rs`.

use std::sync::{Arc, Mutex as StdMutex};

use cogvisor_protocol::{spill, ControlRequest, SlotId, SlotRequest};
use futures::SinkExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::health::{HealthSnapshot, HealthStatus, RecycleRecord};
use crate::health_machine::{transition, Action, Event, Machine, MachineConfig, RecycleTrigger};
use crate::prediction::OutputDir;
use crate::runtime_dir::RuntimeDir;
use crate::scope::Scope;
use crate::slots::Running;
use crate::spawn::{KnownChildren, Spawner};
use crate::state::State;
use crate::worker::{Generation, SetupLog};
use crate::{
    AdmitError, PredictionEvent, PredictionRequest, PredictionStream, SupervisorConfig,
    SupervisorError,
};

/// RFC 3339 with nanoseconds and `+00:00`, as Cog writes timestamps.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false)
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: SupervisorConfig,
    /// Shared by every worker of a pool.
    pub(crate) runtime: Arc<RuntimeDir>,
    pub(crate) spawner: Spawner,
    pub(crate) state: StdMutex<State>,
    /// The health machine's rules: thresholds, `on_failure`, the restart budget.
    pub(crate) machine_config: MachineConfig,
    /// The machine's actions, decided in other tasks, for the lifecycle task to carry out.
    pub(crate) actions: mpsc::UnboundedSender<Vec<Action>>,
    /// One instant with its wall-clock time, to show the machine's instants as RFC 3339.
    pub(crate) clock_anchor: (std::time::Instant, chrono::DateTime<chrono::Utc>),
    /// The supervisor's node of the cancellation tree and the tracker of every task it starts
    /// (`scope.rs`). Its token is the one shutdown signal: nothing is admitted once it is cancelled,
    /// and the lifecycle task stops the worker and ends.
    pub(crate) scope: Scope,
    /// Cancelled when the lifecycle task has ended (a completion signal, not part of the tree): the
    /// rest of the tracker is waited for only briefly after it.
    pub(crate) lifecycle_done: CancellationToken,
    /// Woken whenever a slot stops running a prediction (a recycle's drain waits on it).
    pub(crate) slot_freed: tokio::sync::Notify,
    /// The health machine's state, for whoever follows it (the Kubernetes ready file).
    pub(crate) status_tx: watch::Sender<HealthStatus>,
    /// Checks in flight and the worker's healthcheck answers.
    pub(crate) checks: crate::checks::Checks,
    /// Names the next prediction's output directory (`outputs/<worker>-<n>`): unique in this
    /// process's private runtime directory (shared by every worker, see [`Shared`]), and no
    /// `getrandom` call per prediction.
    pub(crate) next_output_dir: Arc<std::sync::atomic::AtomicU64>,
    /// In a pool of more than one worker: where a planned recycle waits its turn, so recycles roll
    /// one worker at a time (`pool.rs`). `None`: recycles start at once.
    pub(crate) roll: Option<crate::pool::RollQueue>,
}

/// What the workers of one pool share: the runtime directory and the spawner (one set of known
/// children, so one orphan reaper never reaps another worker's child).
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) runtime: Arc<RuntimeDir>,
    pub(crate) spawner: Spawner,
    /// Names the next prediction's output directory (`outputs/<worker>-<n>`), for every worker of
    /// the process: a successor (`recycle.overlap`) never reuses a name its predecessor still uses.
    pub(crate) next_output_dir: Arc<std::sync::atomic::AtomicU64>,
}

impl Shared {
    /// Makes this process a subreaper, starts the spawner thread and, when `recycle.max_gpu_memory`
    /// is set, checks that a GPU is visible.
    pub(crate) async fn create(
        config: &SupervisorConfig,
        runtime: RuntimeDir,
    ) -> Result<Self, SupervisorError> {
        crate::process_tree::become_subreaper().map_err(SupervisorError::Subreaper)?;
        let spawner = Spawner::start(KnownChildren::default())?;
        if config.max_gpu_memory.is_some() {
            let gpus = crate::memory::detect_gpu(&spawner, crate::memory::NVIDIA_SMI)
                .await
                .map_err(SupervisorError::NoGpu)?;
            tracing::info!(gpus, "recycle.max_gpu_memory: nvidia-smi lists the GPUs");
        }
        Ok(Self {
            runtime: Arc::new(runtime),
            spawner,
            next_output_dir: Arc::default(),
        })
    }
}

/// A slot taken for one prediction, not yet sent ([`Supervisor::admit`]).
pub(crate) struct Admission {
    slot: SlotId,
    generation: Arc<Generation>,
    ended: CancellationToken,
    events: mpsc::UnboundedReceiver<PredictionEvent>,
}

/// The handle the HTTP layer uses. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Supervisor {
    pub(crate) inner: Arc<Inner>,
}

impl Inner {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent across a panic in another task (every update is a plain field
        // assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a hook run (logs it; metrics count it).
    pub(crate) fn hook_ran(&self, hook: &'static str, outcome: &crate::hooks::HookOutcome) {
        tracing::debug!(hook, outcome = outcome.as_str(), "hook run recorded");
        self.observe(crate::SupervisorEvent::HookFinished {
            hook,
            outcome: outcome.as_str(),
        });
    }

    /// Feeds `event` to the health machine, logs a transition once, and returns the actions. Only the
    /// executor calls this (it carries the actions out itself); every other task uses
    /// [`Inner::handle`].
    pub(crate) fn apply(&self, event: Event) -> Vec<Action> {
        self.apply_locked(&mut self.lock(), event)
    }

    /// Feeds `event` to the machine with the state lock held (so the change is visible the moment the
    /// lock is released) and sends its actions to the executor. True when the machine acted.
    pub(crate) fn handle(&self, state: &mut State, event: Event) -> bool {
        let mut actions = self.apply_locked(state, event);
        if actions.is_empty() {
            return false;
        }
        // Carried out under this lock, not later by the executor: a slot freed after it must not
        // admit another prediction to a worker that grew past its memory ceiling.
        actions.retain(|action| match action {
            Action::CloseAdmission { reason } => {
                state.close_admission(reason);
                false
            }
            _ => true,
        });
        if !actions.is_empty() {
            // The receiver lives as long as the lifecycle task; once that ended (a final state or
            // a shutdown) there is nothing left to carry out.
            let _ = self.actions.send(actions);
        }
        true
    }

    fn apply_locked(&self, state: &mut State, event: Event) -> Vec<Action> {
        let now = tokio::time::Instant::now().into_std();
        let (next, actions) = transition(&state.machine, &event, &self.machine_config, now);
        if next.state != state.machine.state {
            tracing::info!(
                from = %state.machine.state,
                to = %next.state,
                reason = next.reason.as_deref().unwrap_or(""),
                "health transition"
            );
        }
        state.machine = next;
        self.status_tx.send_if_modified(|s| {
            let changed = *s != state.machine.state;
            *s = state.machine.state;
            changed
        });
        actions
    }
}

impl Inner {
    /// Tells the observer, if any, about `event`.
    pub(crate) fn observe(&self, event: crate::SupervisorEvent) {
        if let Some(observer) = &self.config.observer {
            observer.observe(event);
        }
    }
}

impl SetupLog for Inner {
    fn append(&self, text: &str) {
        self.lock().setup.logs.push(text);
    }
}

impl Supervisor {
    /// Makes this process a subreaper, creates the runtime directory, and starts generation 1 in the
    /// background. Returns at once: health is STARTING until the worker is ready. It stops on
    /// [`Supervisor::shutdown`] only; see [`Supervisor::start_with_shutdown`].
    pub async fn start(
        config: SupervisorConfig,
        runtime: RuntimeDir,
    ) -> Result<Self, SupervisorError> {
        Self::start_with_shutdown(config, runtime, &CancellationToken::new()).await
    }

    /// [`Supervisor::start`] under `shutdown`: the supervisor's token is a child of it, so cancelling
    /// `shutdown` stops the supervisor as [`Supervisor::shutdown`] does (which then only waits).
    pub async fn start_with_shutdown(
        config: SupervisorConfig,
        runtime: RuntimeDir,
        shutdown: &CancellationToken,
    ) -> Result<Self, SupervisorError> {
        let shared = Shared::create(&config, runtime).await?;
        let supervisor = Self::start_member(config, &shared, shutdown, None, Machine::boot());
        supervisor.reap_orphans();
        Ok(supervisor)
    }

    /// Starts one worker's supervisor on `shared` (a pool's, or its own), its recycles queued on
    /// `roll` when the pool carries them out (several workers, or `recycle.overlap`), its machine
    /// starting at `boot` ([`Machine::boot`], or a successor's from [`crate::health_machine::hand_over`]).
    pub(crate) fn start_member(
        config: SupervisorConfig,
        shared: &Shared,
        shutdown: &CancellationToken,
        roll: Option<crate::pool::RollQueue>,
        boot: (Machine, Vec<crate::health_machine::Action>),
    ) -> Self {
        let (machine, boot_actions) = boot;
        let mut state = State::new(&config);
        state.machine = machine.clone();
        let scope = Scope::under(shutdown);
        let (actions, actions_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            actions,
            machine_config: MachineConfig {
                health: config.health,
                budget: config.restart_budget,
                overlap: config.recycle_overlap,
                // A pool's workers carry a roll queue; with `recycle.overlap` (one worker) the
                // queue is its successor's.
                pooled: roll.is_some() && !config.recycle_overlap,
            },
            clock_anchor: (tokio::time::Instant::now().into_std(), chrono::Utc::now()),
            scope,
            lifecycle_done: CancellationToken::new(),
            slot_freed: tokio::sync::Notify::new(),
            status_tx: watch::channel(machine.state).0,
            checks: crate::checks::Checks::default(),
            next_output_dir: shared.next_output_dir.clone(),
            state: StdMutex::new(state),
            roll,
            config,
            runtime: shared.runtime.clone(),
            spawner: shared.spawner.clone(),
        });
        let supervisor = Supervisor { inner };
        let mut lifecycle = crate::lifecycle::Lifecycle::new(supervisor.clone(), actions_rx);
        let done = supervisor.inner.lifecycle_done.clone().drop_guard();
        supervisor.inner.scope.spawn(async move {
            let _done = done;
            crate::executor::run(&mut lifecycle, boot_actions).await
        });
        supervisor.spawn_monitor();
        supervisor
    }

    /// Reaps the zombies of orphans reparented to this process until this supervisor shuts down
    /// (one per process: the first worker of a pool runs it).
    pub(crate) fn reap_orphans(&self) {
        spawn_orphan_reaper(&self.inner.scope, self.inner.spawner.known().clone());
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
        let mut state = self.inner.lock();
        let status = match state.machine.state {
            HealthStatus::Ready if !state.pool.is_empty() && state.pool.idle_count() == 0 => {
                HealthStatus::Busy
            }
            s => s,
        };
        let mut worker = state.worker.clone();
        worker.last_recycle = state.machine.last_recycle.as_ref().map(|r| {
            let (instant, wall) = self.inner.clock_anchor;
            let since = r.started.saturating_duration_since(instant);
            let at = wall + chrono::Duration::from_std(since).unwrap_or_default();
            RecycleRecord {
                trigger: r.trigger.as_str(),
                reason: r.reason.clone(),
                at: at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
                duration_seconds: r.duration.as_secs_f64(),
                succeeded: r.succeeded,
            }
        });
        HealthSnapshot {
            status,
            setup: state.setup.record(),
            worker,
            slots: state.pool.record(),
            python_version: state.python_version.clone(),
            sdk_version: state.sdk_version.clone(),
            reason: state.machine.reason.clone(),
            user_healthcheck_error: state.user_healthcheck_error.clone(),
            pool: None,
            successor: None,
        }
    }

    /// Admits `request` into a free slot and sends it to the worker.
    pub async fn predict(
        &self,
        request: PredictionRequest,
    ) -> Result<PredictionStream, AdmitError> {
        let admission = self.admit(&request.id)?;
        Ok(self.send(admission, request).await)
    }

    /// Takes a free slot for prediction `id`, or says why there is none. Nothing is sent yet: a
    /// pool tries its workers with the request's id only, and sends the request once, to the one
    /// that admitted it ([`Supervisor::send`]).
    pub(crate) fn admit(&self, id: &str) -> Result<Admission, AdmitError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (slot, generation, ended) = {
            let mut state = self.inner.lock();
            if self.inner.scope.token.is_cancelled() {
                return Err(AdmitError::ShuttingDown);
            }
            if let Some(reason) = &state.closed {
                return Err(AdmitError::Recycling(reason.clone()));
            }
            let generation = match (state.machine.state, &state.generation) {
                (HealthStatus::Ready | HealthStatus::Unhealthy, Some(g)) => g.clone(),
                (HealthStatus::Recycling, _) => {
                    return Err(AdmitError::Recycling(
                        state.machine.reason.clone().unwrap_or_default(),
                    ))
                }
                (status, _) => return Err(AdmitError::NotReady(status)),
            };
            if state.pool.find(id).is_some() {
                return Err(AdmitError::DuplicateId(id.to_string()));
            }
            // The prediction's node of the cancellation tree, under its generation's.
            let ended = generation.token.child_token();
            let running = Running {
                id: id.to_string(),
                events: tx,
                ended: ended.clone().drop_guard(),
            };
            match state.pool.acquire(running) {
                Ok(slot) => (slot, generation, ended),
                Err(_) => return Err(AdmitError::AtCapacity),
            }
        };
        Ok(Admission {
            slot,
            generation,
            ended,
            events: rx,
        })
    }

    /// Sends `request` to the slot `admission` took (see [`Supervisor::admit`]).
    pub(crate) async fn send(
        &self,
        admission: Admission,
        request: PredictionRequest,
    ) -> PredictionStream {
        let Admission {
            slot,
            generation,
            ended,
            events: rx,
        } = admission;
        let n = self
            .inner
            .next_output_dir
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let output_dir = OutputDir(
            self.inner
                .runtime
                .outputs_dir()
                .join(format!("{}-{n}", self.inner.config.worker_index)),
            request.id.clone(),
        );
        let stream = PredictionStream {
            id: request.id.clone(),
            events: rx,
            output_dir,
        };
        let id = request.id.clone();
        // The slot is taken: from here the prediction must reach the worker (or poison the slot)
        // even if the caller goes away. A client that disconnects drops the HTTP handler's future,
        // and with it this one; dropped halfway through `dispatch`, the slot stayed busy forever
        // (the worker never got the prediction, so nothing ever freed it), and a half-written frame
        // would corrupt the slot's channel. So the dispatch runs on a task of its own, awaited here.
        let this = self.clone();
        let output_dir = stream.output_dir().to_path_buf();
        let dispatched = self.inner.scope.spawn_joined(async move {
            match this.dispatch(&generation, slot, request, &output_dir).await {
                Ok(()) => this.watch_deadline(generation, slot, id, ended),
                Err(error) => this.poison_slot(&generation, slot, &error),
            }
        });
        // A panic in the task is the only error; the slot is then poisoned by nobody, so say so.
        if let Err(e) = dispatched.await {
            tracing::error!(error = %e, "the dispatch of a prediction failed");
        }
        stream
    }

    /// Writes the `predict` message. An error poisons the slot (done by the caller).
    ///
    /// The output directory is only named here, not created: the worker creates it when the
    /// prediction writes its first file (most predictions write none). A mkdir and an rmdir per
    /// prediction cost more than the rest of the supervisor's work on it together, on ext4 with
    /// `discard` a block discard included.
    async fn dispatch(
        &self,
        generation: &Generation,
        slot: SlotId,
        request: PredictionRequest,
        output_dir: &std::path::Path,
    ) -> Result<(), String> {
        let (input, input_file) =
            match crate::payload::prepare_input(self.inner.runtime.spill_dir(), request.input)
                .await
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
            state.pool.find(id).and_then(|slot| {
                let ended = state.pool.running(slot)?.ended.token().clone();
                state.generation.clone().map(|g| (slot, g, ended))
            })
        };
        let Some((slot, generation, ended)) = target else {
            return false;
        };
        generation
            .send_control(ControlRequest::Cancel {
                slot,
                id: id.to_string(),
            })
            .await;
        self.watch_cancel(generation, slot, id.to_string(), ended);
        true
    }

    /// Stops admitting, stops the worker (shutdown message → grace → SIGTERM → grace → SIGKILL) and
    /// reaps every process it left. Running predictions fail with a shutdown error. Cancels the
    /// supervisor's token (if its parent has not already), then waits for every task it started: for
    /// the lifecycle up to a deadline that covers the longest stop it can be in the middle of, then for
    /// the rest (channel readers, watchers, checks), which end with the worker, briefly.
    pub async fn shutdown(&self) {
        let scope = &self.inner.scope;
        scope.token.cancel();
        scope.tasks.close();
        let deadline = shutdown_deadline(&self.inner.config);
        if tokio::time::timeout(deadline, self.inner.lifecycle_done.cancelled())
            .await
            .is_err()
        {
            tracing::error!(
                ?deadline,
                "the worker lifecycle had not stopped at the shutdown deadline"
            );
        }
        if tokio::time::timeout(AFTER_LIFECYCLE, scope.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = scope.tasks.len(),
                "supervisor tasks still running after the worker stopped"
            );
        }
        // The lifecycle may have ended earlier (SETUP_FAILED, DEFUNCT): nothing may stay pending.
        let running = self.inner.lock().pool.drain("server shut down");
        for r in running {
            let _ = r.events.send(PredictionEvent::Failed {
                error: "prediction failed: the server shut down before the prediction finished"
                    .into(),
            });
        }
    }

    /// How many tasks the supervisor runs now (the lifecycle, channel readers, watchers, checks, …).
    pub fn tasks_running(&self) -> usize {
        self.inner.scope.tasks.len()
    }

    /// Follows the health machine's state (never BUSY).
    pub fn watch_status(&self) -> watch::Receiver<HealthStatus> {
        self.inner.status_tx.subscribe()
    }

    /// Asks for a recycle of the current worker (`POST /recycle`). False when no worker is serving.
    pub fn request_recycle(&self, trigger: RecycleTrigger, reason: &str) -> bool {
        let mut state = self.inner.lock();
        let serving = matches!(
            state.machine.state,
            HealthStatus::Ready | HealthStatus::Unhealthy | HealthStatus::Busy
        );
        if state.generation.is_none() || !serving {
            return false;
        }
        let event = Event::RecycleRequested {
            trigger,
            reason: reason.to_string(),
            rerun_setup: false,
        };
        // A serving worker's machine takes it: it recycles now, awaits its turn, or has a
        // recycle awaiting or a successor under way already, which is the one asked for.
        self.inner.handle(&mut state, event);
        true
    }

    pub(crate) async fn stop_generation(&self, generation: &Generation) {
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
        // What watched its predictions ends now (they were failed or finished by the stop).
        generation.token.cancel();
    }
}

/// How long [`Supervisor::shutdown`] waits for its other tasks once the lifecycle has ended: the worker
/// is gone, so its channels are closed and its predictions' watchers cancelled.
const AFTER_LIFECYCLE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long [`Supervisor::shutdown`] waits for the lifecycle task: it may be in the middle of a
/// recycle's stop (a `before_stop` hook, two graces, the SIGKILL wait) before it starts the
/// shutdown's own.
fn shutdown_deadline(config: &SupervisorConfig) -> std::time::Duration {
    let one_stop = config.hooks.timeout
        + 2 * config.stop_grace
        + crate::stop::KILL_WAIT
        + crate::stop::SWEEP_WAIT;
    2 * one_stop + std::time::Duration::from_secs(5)
}

pub(crate) fn is_current(state: &State, generation: &Generation) -> bool {
    state
        .generation
        .as_ref()
        .is_some_and(|g| g.number == generation.number)
}

/// Reaps zombies of orphans reparented to us, on every SIGCHLD, until the supervisor shuts down (its
/// last stop sweeps what is left).
pub(crate) fn spawn_orphan_reaper(scope: &Scope, known: KnownChildren) {
    let token = scope.token.clone();
    scope.spawn(async move {
        let Ok(mut sigchld) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        else {
            tracing::warn!(
                "cannot listen for SIGCHLD; orphans are reaped only when a worker stops"
            );
            return;
        };
        while token
            .run_until_cancelled(sigchld.recv())
            .await
            .flatten()
            .is_some()
        {
            crate::process_tree::reap_zombie_orphans(&known).await;
        }
    });
}
