//! The worker pool (`workers.count`): one [`Supervisor`] per worker, each with its own process
//! group, slots, generation and health machine, behind the one handle the HTTP layer uses.
//!
//! ```text
//!   predict ──► the first worker with an idle slot (one waiting to be recycled last)
//!                                                  ──► 409 only when every worker is full,
//!                                                      503 only when none serves
//!   health  ──► READY while any worker is; `pool` and `workers` beside Cog's keys (more than one)
//!   a planned recycle of worker i (model, admin, max_predictions, memory)
//!           ──► worker i's machine awaits its turn (it keeps serving; `Action::AwaitTurn`)
//!           ──► the roll task: once no other worker
//!               is starting or recycling, `Event::TurnGranted`: worker i recycles; the next
//!               waits until it is back
//!           (a memory recycle an eighth past its bound does not wait: crate::memory)
//! ```
//!
//! Unplanned replacements (a crash, liveness, a silent heartbeat, every slot poisoned) do not wait:
//! the worker is already unusable. With one worker the pool is that worker, unchanged: nothing is
//! awaited and the snapshot has no `pool`, unless `recycle.overlap` is on:
//!
//! ```text
//!   a recycle the worker can serve through (planned, or liveness: RecycleTrigger::can_overlap)
//!           ──► the worker's machine awaits its turn (it keeps serving) ──► the roll task
//!               starts its successor (a Supervisor of its own at the next generation, RECYCLING:
//!               `health_machine::hand_over`) beside it; the old machine is superseded and
//!               starts no worker any more
//!           ──► successor READY: swap (predictions go to it; a caller that tried the old list
//!               tries the new one), the old one admits nothing more, finishes what it runs
//!               (recycle.drain_timeout) and is stopped
//!   the old worker an eighth past its memory bound ──► it admits nothing more; predictions wait
//!               for the swap (recycle.admission_wait), then 503
//! ```
//!
//! A successor that fails its setup takes the worker's place all the same (DEFUNCT, as an in-place
//! recycle whose replacement failed); the predecessor finishes what it runs and is stopped.
//! Successors being set up and predecessors draining are the pool's `standby`: cancels, duplicate
//! ids, memory, task counts and the shutdown include them.

use std::sync::{Arc, Mutex, RwLock};

use futures::future::join_all;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::health::{
    HealthSnapshot, HealthStatus, PoolRecord, PoolWorkerRecord, SlotsRecord, SuccessorRecord,
};
use crate::health_machine::{hand_over, Event, Machine, RecycleTrigger};
use crate::runtime_dir::RuntimeDir;
use crate::scope::Scope;
use crate::supervisor::{Admission, Shared};
use crate::{
    AdmitError, PredictionRequest, PredictionStream, Supervisor, SupervisorConfig, SupervisorError,
    WorkerMemory,
};

/// Where the workers of a pool queue their planned recycles (by worker index).
#[derive(Debug, Clone)]
pub(crate) struct RollQueue(mpsc::UnboundedSender<u32>);

impl RollQueue {
    pub(crate) fn request(&self, worker: u32) {
        // The receiver lives until the pool shuts down; then no recycle matters.
        let _ = self.0.send(worker);
    }
}

/// The workers serving, by index, and those beside them while a successor replaces one.
#[derive(Debug)]
struct Members {
    serving: RwLock<Arc<[Supervisor]>>,
    /// Successors being set up and predecessors finishing what they run (`recycle.overlap`), with
    /// their worker index.
    standby: Mutex<Vec<(u32, Supervisor)>>,
    /// Bumped by every swap: whoever tried the workers of an older list tries the new one.
    version: watch::Sender<u64>,
}

impl Members {
    fn new(serving: Arc<[Supervisor]>) -> Self {
        Self {
            serving: RwLock::new(serving),
            standby: Mutex::new(Vec::new()),
            version: watch::channel(0).0,
        }
    }

    fn serving(&self) -> Arc<[Supervisor]> {
        // Every update replaces the whole list, so a poisoned lock still holds a consistent one.
        self.serving
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn standby(&self) -> std::sync::MutexGuard<'_, Vec<(u32, Supervisor)>> {
        self.standby.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every supervisor alive: serving, then standing by (each once).
    fn all(&self) -> Vec<Supervisor> {
        let mut all = self.serving().to_vec();
        for (_, s) in self.standby().iter() {
            if !all.iter().any(|a| a.same(s)) {
                all.push(s.clone());
            }
        }
        all
    }

    fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// Puts `successor` in worker `index`'s place; the predecessor stands by until it is stopped.
    fn swap(&self, index: u32, successor: &Supervisor) -> Option<Supervisor> {
        let mut standby = self.standby();
        let old = {
            let mut serving = self.serving.write().unwrap_or_else(|e| e.into_inner());
            let mut list = serving.to_vec();
            let old = std::mem::replace(list.get_mut(index as usize)?, successor.clone());
            *serving = Arc::from(list);
            old
        };
        standby.retain(|(_, s)| !s.same(successor));
        standby.push((index, old.clone()));
        drop(standby);
        self.version.send_modify(|v| *v += 1);
        Some(old)
    }

    /// The successor being set up (standing by, not yet serving), if any.
    fn successor(&self) -> Option<Supervisor> {
        let serving = self.serving();
        self.standby()
            .iter()
            .find(|(_, s)| !serving.iter().any(|m| m.same(s)) && s.is_succeeding())
            .map(|(_, s)| s.clone())
    }

    /// A worker is being replaced and will serve again: one recycles in place, a successor is
    /// being set up, or is about to be (a worker with `recycle.overlap` awaits its turn).
    fn replacing(&self) -> bool {
        let serving = self.serving();
        serving
            .iter()
            .any(|m| m.status() == HealthStatus::Recycling)
            || serving
                .iter()
                .any(|m| m.awaits_recycle() && m.inner.config.recycle_overlap)
            || self.successor().is_some()
    }

    fn remove_standby(&self, gone: &Supervisor) {
        self.standby().retain(|(_, s)| !s.same(gone));
    }
}

/// The handle the HTTP layer uses: every worker of the pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WorkerPool {
    members: Arc<Members>,
    /// `recycle.admission_wait`, with several workers or `recycle.overlap`: how long a prediction
    /// that no worker admits because they are being replaced waits for one. `None` with one worker
    /// recycled in place (Cog's `503` at once).
    admission_wait: Option<std::time::Duration>,
    /// One worker that nothing replaces by another supervisor (no `recycle.overlap`): predictions
    /// and health go straight to it, as they did before there were pools.
    only: Option<Supervisor>,
    status: watch::Receiver<HealthStatus>,
    token: CancellationToken,
    tasks: TaskTracker,
}

impl WorkerPool {
    /// Starts one worker per config (each with its `worker_index` and `worker_env`), sharing
    /// `runtime`, under `shutdown`. Returns at once: every worker is STARTING.
    pub async fn start(
        configs: Vec<SupervisorConfig>,
        runtime: RuntimeDir,
        shutdown: &CancellationToken,
    ) -> Result<Self, SupervisorError> {
        let Some(first) = configs.first() else {
            return Err(SupervisorError::NoWorkers);
        };
        let pooled = configs.len() > 1;
        let overlap = first.recycle_overlap;
        let admission_wait = (pooled || overlap).then_some(first.recycle_admission_wait);
        if overlap && pooled {
            return Err(SupervisorError::OverlapInPool {
                workers: configs.len(),
            });
        }
        let shared = Shared::create(first, runtime).await?;
        let token = shutdown.child_token();
        let tasks = TaskTracker::new();
        let (roll_tx, roll_rx) = mpsc::unbounded_channel();
        // The pool carries out planned recycles itself: rolled, or overlapped.
        let managed = pooled || overlap;
        let members: Arc<[Supervisor]> = configs
            .into_iter()
            .map(|config| {
                let roll = managed.then(|| RollQueue(roll_tx.clone()));
                Supervisor::start_member(config, &shared, &token, roll, Machine::boot())
            })
            .collect();
        // On the pool's scope, not a worker's: a worker with `recycle.overlap` is replaced by
        // another supervisor, and orphans are reaped across that.
        let scope = Scope {
            token: token.clone(),
            tasks: tasks.clone(),
        };
        crate::supervisor::spawn_orphan_reaper(&scope, shared.spawner.known().clone());
        let only = (!managed).then(|| members[0].clone());
        let members = Arc::new(Members::new(members));
        let status = if managed {
            let roll = Roll {
                members: members.clone(),
                shared,
                queue: RollQueue(roll_tx),
                tasks: tasks.clone(),
                overlap,
            };
            tasks.spawn(roll.run(roll_rx, token.clone()));
            let (tx, rx) = watch::channel(HealthStatus::Starting);
            tasks.spawn(follow_status(members.clone(), tx, token.clone()));
            rx
        } else {
            members.serving()[0].watch_status()
        };
        Ok(Self {
            members,
            admission_wait,
            only,
            status,
            token,
            tasks,
        })
    }

    /// A pool of the one worker `supervisor` already runs.
    pub fn single(supervisor: Supervisor) -> Self {
        let status = supervisor.watch_status();
        Self {
            only: Some(supervisor.clone()),
            members: Arc::new(Members::new(Arc::from(vec![supervisor]))),
            admission_wait: None,
            status,
            token: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// How many workers the pool has.
    pub fn len(&self) -> usize {
        self.members.serving().len()
    }

    /// Never: a pool has at least one worker.
    pub fn is_empty(&self) -> bool {
        self.members.serving().is_empty()
    }

    /// The private runtime directory, shared by every worker.
    pub fn runtime_dir(&self) -> std::path::PathBuf {
        self.members.serving()[0].runtime_dir().to_path_buf()
    }

    /// The OpenAPI schema the first ready worker sent (every worker serves the same model).
    pub fn schema(&self) -> Option<Arc<serde_json::Value>> {
        self.members.serving().iter().find_map(Supervisor::schema)
    }

    /// Admits `request` into the first worker with an idle slot. 409 (`AtCapacity`) only when every
    /// serving worker is full; otherwise the first worker's reason (starting, recycling, ...).
    pub async fn predict(
        &self,
        request: PredictionRequest,
    ) -> Result<PredictionStream, AdmitError> {
        if let Some(only) = &self.only {
            return only.predict(request).await;
        }
        let mut wait_until = None;
        let mut changes: Option<Changes> = None;
        loop {
            let version = self.members.version();
            let members = self.members.serving();
            match self.admit(&members, &request.id) {
                Ok((member, admission)) => return Ok(member.send(admission, request).await),
                // A successor took a worker's place meanwhile (`recycle.overlap`): the
                // predecessor admits nothing more, so the new list is asked.
                Err(_) if self.members.version() != version => continue,
                Err(e @ AdmitError::Recycling(_)) => {
                    let Some(wait) = self.admission_wait.filter(|_| self.members.replacing())
                    else {
                        return Err(e);
                    };
                    // Every worker that could take it is being replaced (a pool's recycles
                    // overlapping under a leak, a worker past its memory ceiling while its
                    // successor sets up): the prediction waits for one, up to
                    // `recycle.admission_wait`.
                    let until =
                        *wait_until.get_or_insert_with(|| tokio::time::Instant::now() + wait);
                    match changes.as_mut() {
                        // Follow the workers from now on, then ask once more: one back between
                        // the refusal and now is not missed.
                        None => changes = Some(Changes::follow(&self.members)),
                        Some(followed) => {
                            if !followed.next(until, &self.token).await {
                                return Err(e);
                            }
                            changes = None;
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The worker that admitted `id`, and its slot.
    fn admit<'a>(
        &self,
        members: &'a [Supervisor],
        id: &str,
    ) -> Result<(&'a Supervisor, Admission), AdmitError> {
        let standby_runs = || self.members.standby().iter().any(|(_, s)| s.is_running(id));
        let [only] = members else {
            return self.admit_pooled(members, id, standby_runs);
        };
        if standby_runs() {
            return Err(AdmitError::DuplicateId(id.to_string()));
        }
        only.admit(id).map(|a| (only, a))
    }

    fn admit_pooled<'a>(
        &self,
        members: &'a [Supervisor],
        id: &str,
        standby_runs: impl Fn() -> bool,
    ) -> Result<(&'a Supervisor, Admission), AdmitError> {
        if members.iter().any(|m| m.is_running(id)) || standby_runs() {
            return Err(AdmitError::DuplicateId(id.to_string()));
        }
        let mut refused = None;
        // A worker waiting its turn to be recycled is tried last: it serves only when no other
        // worker can, so it does not keep growing past a memory bound while the others idle.
        let (waiting, free): (Vec<&Supervisor>, Vec<&Supervisor>) =
            members.iter().partition(|m| m.awaits_recycle());
        for member in free.into_iter().chain(waiting) {
            match member.admit(id) {
                Ok(admission) => return Ok((member, admission)),
                Err(e @ (AdmitError::ShuttingDown | AdmitError::DuplicateId(_))) => return Err(e),
                Err(AdmitError::AtCapacity) => refused = Some(AdmitError::AtCapacity),
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
        }
        Err(refused.unwrap_or(AdmitError::ShuttingDown))
    }

    /// Cancels prediction `id` on whichever worker runs it. False when none does.
    pub async fn cancel(&self, id: &str) -> bool {
        for member in self.members.all() {
            if member.cancel(id).await {
                return true;
            }
        }
        false
    }

    /// Runs a health check on every worker (each coalesced with its own check in flight).
    pub async fn check_health(&self) {
        join_all(self.members.serving().iter().map(Supervisor::check_health)).await;
    }

    /// Health as `/health-check` shows it. With one worker, that worker's; with more, the pool's
    /// state (see [`pool_status`]), Cog's keys from the worker whose state that is, the slots of all
    /// of them, and every worker under `pool`.
    pub fn health(&self) -> HealthSnapshot {
        if let Some(only) = &self.only {
            return only.health();
        }
        let members = self.members.serving();
        let [only] = &members[..] else {
            return pool_snapshot(members.iter().map(Supervisor::health).collect());
        };
        let mut health = only.health();
        health.successor = self.members.successor().map(|s| {
            let h = s.health();
            SuccessorRecord {
                generation: h.worker.generation,
                pid: h.worker.pid,
                status: h.status,
                started_at: h.setup.started_at,
            }
        });
        health
    }

    /// Follows the pool's state (never BUSY): READY while any worker is.
    pub fn watch_status(&self) -> watch::Receiver<HealthStatus> {
        self.status.clone()
    }

    /// `POST /recycle`: recycles every worker, one at a time in a pool. False when none is serving.
    pub fn request_recycle(&self, trigger: RecycleTrigger, reason: &str) -> bool {
        self.members
            .serving()
            .iter()
            .map(|m| m.request_recycle(trigger, reason))
            .fold(false, |any, asked| any | asked)
    }

    /// The memory of each worker's tree, by index (with a successor or a predecessor beside it,
    /// both trees).
    pub async fn worker_memories(&self) -> Vec<WorkerMemory> {
        let serving = self.members.serving();
        let standby: Vec<(u32, Supervisor)> = self.members.standby().clone();
        let each = join_all(serving.iter().map(Supervisor::worker_memory)).await;
        let beside = join_all(standby.iter().map(|(_, s)| s.worker_memory())).await;
        each.into_iter()
            .enumerate()
            .map(|(index, own)| {
                let mut trees = vec![own];
                for ((i, s), m) in standby.iter().zip(&beside) {
                    if *i as usize == index && !serving.iter().any(|a| a.same(s)) {
                        trees.push(*m);
                    }
                }
                total_memory(&trees)
            })
            .collect()
    }

    /// The memory of every worker's tree, added up.
    pub async fn worker_memory(&self) -> WorkerMemory {
        total_memory(&self.worker_memories().await)
    }

    /// Tasks running in every worker's supervisor and the pool's own.
    pub fn tasks_running(&self) -> usize {
        self.members
            .all()
            .iter()
            .map(Supervisor::tasks_running)
            .sum::<usize>()
            + self.tasks.len()
    }

    /// Shuts every worker down at once (see [`Supervisor::shutdown`]), then the pool's tasks.
    pub async fn shutdown(&self) {
        self.token.cancel();
        join_all(self.members.all().iter().map(Supervisor::shutdown)).await;
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Supervisor {
    /// The same supervisor (not only an equal one).
    fn same(&self, other: &Supervisor) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The machine's state (never BUSY).
    fn status(&self) -> HealthStatus {
        self.inner.lock().machine.state
    }

    /// True while this supervisor's worker is being set up to take another's place.
    fn is_succeeding(&self) -> bool {
        let state = self.inner.lock();
        state.machine.state == HealthStatus::Recycling && !state.machine.superseded
    }

    /// True while prediction `id` runs on this worker.
    pub(crate) fn is_running(&self, id: &str) -> bool {
        self.inner.lock().pool.find(id).is_some()
    }

    /// True while this worker's machine holds a recycle that awaits its turn in the pool.
    pub(crate) fn awaits_recycle(&self) -> bool {
        self.inner.lock().machine.awaiting_turn.is_some()
    }

    /// Grants this worker its turn: the machine starts the recycle it awaits, in place, if it
    /// still awaits one and still serves. True when the recycle started.
    pub(crate) fn grant_turn(&self) -> bool {
        let mut state = self.inner.lock();
        self.inner.handle(&mut state, Event::TurnGranted)
    }

    /// For the recycle this worker awaits: its successor's machine and first actions
    /// ([`hand_over`]); from then on this machine starts no other worker. `None` when the machine
    /// hands nothing over (then the turn was granted in place, as without `recycle.overlap`).
    fn begin_succession(&self) -> Option<(Machine, Vec<crate::health_machine::Action>)> {
        let mut state = self.inner.lock();
        let now = tokio::time::Instant::now().into_std();
        match hand_over(&state.machine, &self.inner.machine_config, now) {
            Some(succession) => {
                // The state and its status stay what they were: only the turn and `superseded`.
                state.machine = succession.predecessor;
                Some((succession.successor, succession.actions))
            }
            None => {
                self.inner.handle(&mut state, Event::TurnGranted);
                None
            }
        }
    }

    /// Admits nothing more (`reason` says why), lets what runs finish up to
    /// `recycle.drain_timeout`, fails what still runs, and shuts down.
    async fn retire(&self, reason: String) {
        self.inner.lock().closed = Some(reason.clone());
        let deadline = tokio::time::Instant::now() + self.inner.config.recycle_drain_timeout;
        loop {
            let freed = self.inner.slot_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.inner.lock().pool.busy_count() == 0 {
                break;
            }
            tokio::select! {
                _ = freed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!("recycle drain timed out; failing what the replaced worker still runs");
                    self.fail_in_flight(&format!(
                        "prediction failed: the worker was recycled ({reason}) before the prediction finished"
                    ));
                    break;
                }
                _ = self.inner.scope.token.cancelled() => break,
            }
        }
        self.shutdown().await;
    }
}

/// What a waiting prediction follows: a swap, and every serving worker's state.
struct Changes {
    swaps: watch::Receiver<u64>,
    statuses: Vec<watch::Receiver<HealthStatus>>,
}

impl Changes {
    /// From now on (what the receivers hold now counts as seen).
    fn follow(members: &Members) -> Self {
        Self {
            swaps: members.version.subscribe(),
            statuses: members
                .serving()
                .iter()
                .map(Supervisor::watch_status)
                .collect(),
        }
    }

    /// Waits for the next change, until `until` or the shutdown. True when one came.
    async fn next(&mut self, until: tokio::time::Instant, token: &CancellationToken) -> bool {
        let Changes { swaps, statuses } = self;
        let any = async {
            let states = async {
                if statuses.is_empty() {
                    // `select_all` of nothing panics; a pool always has a worker, but be sure.
                    return std::future::pending().await;
                }
                let changes = statuses.iter_mut().map(|rx| Box::pin(rx.changed()));
                futures::future::select_all(changes).await.0.is_ok()
            };
            tokio::select! {
                swapped = swaps.changed() => swapped.is_ok(),
                changed = states => changed,
            }
        };
        let waited = tokio::time::timeout_at(until, token.run_until_cancelled(any)).await;
        matches!(waited, Ok(Some(true)))
    }
}

/// The pool's task that grants the turns its workers' machines await.
struct Roll {
    members: Arc<Members>,
    shared: Shared,
    queue: RollQueue,
    tasks: TaskTracker,
    /// `recycle.overlap`: a recycle sets a successor up beside the worker.
    overlap: bool,
}

impl Roll {
    /// Carries out the queued planned recycles one worker at a time, each once no other worker is
    /// starting or recycling, and the next only when that worker is back (or failed for good). With
    /// `overlap`, each by a successor ([`Roll::succeed`]).
    async fn run(self, mut queue: mpsc::UnboundedReceiver<u32>, token: CancellationToken) {
        while let Some(Some(index)) = token.run_until_cancelled(queue.recv()).await {
            let members = self.members.serving();
            let Some(member) = members.get(index as usize) else {
                continue;
            };
            if self.overlap {
                if self.succeed(index, member.clone(), &token).await.is_none() {
                    return;
                }
                continue;
            }
            let others = members
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index as usize)
                .map(|(_, m)| m.watch_status())
                .collect();
            if token
                .run_until_cancelled(until_settled(others))
                .await
                .is_none()
            {
                return;
            }
            if !member.grant_turn() {
                continue;
            }
            tracing::info!(
                worker = index,
                "pool: recycling one worker, the others serve"
            );
            let mut status = member.watch_status();
            if token
                .run_until_cancelled(status.wait_for(|s| !in_transition(*s)))
                .await
                .is_none()
            {
                return;
            }
        }
    }

    /// Replaces worker `index` (`old`, which keeps serving meanwhile) by a successor once the
    /// successor is set up. `None` when the pool shut down.
    async fn succeed(&self, index: u32, old: Supervisor, token: &CancellationToken) -> Option<()> {
        let Some(boot) = old.begin_succession() else {
            return Some(());
        };
        let generation = boot.0.generation;
        let successor = Supervisor::start_member(
            old.inner.config.clone(),
            &self.shared,
            token,
            Some(self.queue.clone()),
            boot,
        );
        self.members.standby().push((index, successor.clone()));
        tracing::info!(
            worker = index,
            generation,
            "recycle.overlap: setting up the next worker while this one serves"
        );
        let mut status = successor.watch_status();
        // The sender lives in the successor's supervisor, held here: the wait ends only by a state.
        let _ = token
            .run_until_cancelled(status.wait_for(|s| !in_transition(*s)))
            .await?;
        let outcome = *status.borrow();
        self.members.swap(index, &successor)?;
        tracing::info!(
            worker = index,
            generation,
            status = %outcome,
            "recycle.overlap: the next worker took the place of the last"
        );
        let members = self.members.clone();
        self.tasks.spawn(async move {
            old.retire(format!("replaced by generation {generation}"))
                .await;
            members.remove_standby(&old);
        });
        Some(())
    }
}

/// `each` added up; a total is `None` only when every worker's is.
pub fn total_memory(each: &[WorkerMemory]) -> WorkerMemory {
    each.iter().fold(WorkerMemory::default(), |sum, m| {
        let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        WorkerMemory {
            rss_bytes: add(sum.rss_bytes, m.rss_bytes),
            gpu_bytes: add(sum.gpu_bytes, m.gpu_bytes),
        }
    })
}

/// A worker that is being started or replaced: the next recycle waits until it is not.
fn in_transition(status: HealthStatus) -> bool {
    matches!(status, HealthStatus::Starting | HealthStatus::Recycling)
}

/// Returns once no worker followed by `statuses` is starting or recycling.
async fn until_settled(mut statuses: Vec<watch::Receiver<HealthStatus>>) {
    loop {
        if statuses
            .iter_mut()
            .all(|rx| !in_transition(*rx.borrow_and_update()))
        {
            return;
        }
        let changes = statuses.iter_mut().map(|rx| Box::pin(rx.changed()));
        if futures::future::select_all(changes).await.0.is_err() {
            // A worker's state can no longer change (its supervisor is gone): nothing to wait for.
            return;
        }
    }
}

/// Keeps `tx` at the pool's state, computed from every serving worker's, until the pool shuts down.
async fn follow_status(
    members: Arc<Members>,
    tx: watch::Sender<HealthStatus>,
    token: CancellationToken,
) {
    let mut swaps = members.version.subscribe();
    loop {
        swaps.borrow_and_update();
        let mut statuses: Vec<_> = members
            .serving()
            .iter()
            .map(Supervisor::watch_status)
            .collect();
        loop {
            let now: Vec<HealthStatus> = statuses
                .iter_mut()
                .map(|rx| *rx.borrow_and_update())
                .collect();
            tx.send_if_modified(|s| {
                let next = pool_status(&now);
                let changed = *s != next;
                *s = next;
                changed
            });
            let changes =
                futures::future::select_all(statuses.iter_mut().map(|rx| Box::pin(rx.changed())));
            tokio::select! {
                _ = token.cancelled() => return,
                (changed, _, _) = changes => if changed.is_err() { return },
                // A successor took a worker's place: follow the new list.
                _ = swaps.changed() => break,
            }
        }
    }
}

/// The pool's state from its workers' (BUSY derived in each): READY if any worker is, else BUSY if
/// any is, else UNHEALTHY, RECYCLING, STARTING in that order; when every worker is final, DEFUNCT if
/// any is, else SETUP_FAILED.
pub fn pool_status(each: &[HealthStatus]) -> HealthStatus {
    use HealthStatus::*;
    [Ready, Busy, Unhealthy, Recycling, Starting, Defunct]
        .into_iter()
        .find(|s| each.contains(s))
        .unwrap_or(SetupFailed)
}

/// The pool's snapshot from its workers' (in index order).
fn pool_snapshot(each: Vec<HealthSnapshot>) -> HealthSnapshot {
    let statuses: Vec<HealthStatus> = each.iter().map(|h| h.status).collect();
    let status = pool_status(&statuses);
    let ready = statuses
        .iter()
        .filter(|s| matches!(s, HealthStatus::Ready | HealthStatus::Busy))
        .count() as u32;
    let shown = statuses.iter().position(|s| *s == status).unwrap_or(0);
    let mut slots = SlotsRecord {
        total: 0,
        busy: 0,
        poisoned: Vec::new(),
    };
    for h in &each {
        slots.total += h.slots.total;
        slots.busy += h.slots.busy;
        slots.poisoned.extend(h.slots.poisoned.iter().cloned());
    }
    let members: Vec<PoolWorkerRecord> = each
        .iter()
        .enumerate()
        .map(|(index, h)| PoolWorkerRecord {
            index: index as u32,
            status: h.status,
            reason: h.reason.clone(),
            worker: h.worker.clone(),
            slots: h.slots.clone(),
        })
        .collect();
    let workers = each.len() as u32;
    let Some(mut snapshot) = each.into_iter().nth(shown) else {
        unreachable!("a pool has at least one worker");
    };
    snapshot.status = status;
    snapshot.slots = slots;
    snapshot.pool = Some(PoolRecord {
        workers,
        ready,
        members,
    });
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;

    #[test]
    fn the_pool_is_ready_while_any_worker_is() {
        assert_eq!(pool_status(&[Recycling, Ready]), Ready);
        assert_eq!(pool_status(&[Busy, Ready]), Ready);
        assert_eq!(pool_status(&[Busy, Recycling]), Busy);
        assert_eq!(pool_status(&[Unhealthy, Starting]), Unhealthy);
        assert_eq!(pool_status(&[Starting, Recycling]), Recycling);
        assert_eq!(pool_status(&[Starting, Starting]), Starting);
        assert_eq!(pool_status(&[SetupFailed, Starting]), Starting);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_prediction_gives_up_at_its_deadline() {
        let members = Members::new(Arc::from(Vec::new()));
        let mut changes = Changes::follow(&members);
        let started = tokio::time::Instant::now();
        let until = started + std::time::Duration::from_secs(30);
        assert!(!changes.next(until, &CancellationToken::new()).await);
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_swap_wakes_a_waiting_prediction_before_its_deadline() {
        let members = Arc::new(Members::new(Arc::from(Vec::new())));
        let mut changes = Changes::follow(&members);
        let started = tokio::time::Instant::now();
        let swapper = members.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            swapper.version.send_modify(|v| *v += 1);
        });
        let until = started + std::time::Duration::from_secs(30);
        assert!(changes.next(until, &CancellationToken::new()).await);
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_ends_a_waiting_prediction_at_once() {
        let members = Members::new(Arc::from(Vec::new()));
        let mut changes = Changes::follow(&members);
        let token = CancellationToken::new();
        token.cancel();
        let started = tokio::time::Instant::now();
        let until = started + std::time::Duration::from_secs(30);
        assert!(!changes.next(until, &token).await);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn the_pool_is_final_only_when_every_worker_is() {
        assert_eq!(pool_status(&[SetupFailed, Defunct]), Defunct);
        assert_eq!(pool_status(&[SetupFailed, SetupFailed]), SetupFailed);
        assert_eq!(pool_status(&[Defunct, Ready]), Ready);
    }
}
