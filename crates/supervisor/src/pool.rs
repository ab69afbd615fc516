//! The worker pool (`workers.count`): one [`Supervisor`] per worker, each with its own process
//! group, slots, generation and health machine, behind the one handle the HTTP layer uses.
//!
//! ```text
//!   predict ──► the first worker with an idle slot (one waiting to be recycled last)
//!                                                  ──► 409 only when every worker is full,
//!                                                      503 only when none serves
//!   health  ──► READY while any worker is; `pool` and `workers` beside Cog's keys (more than one)
//!   a planned recycle of worker i (model, admin, max_predictions, memory)
//!           ──► deferred in worker i (it keeps serving) ──► the roll task: once no other worker
//!               is starting or recycling, worker i recycles; the next waits until it is back
//!           (a memory recycle an eighth past its bound does not wait: crate::memory)
//! ```
//!
//! Unplanned replacements (a crash, liveness, a silent heartbeat, every slot poisoned) do not wait:
//! the worker is already unusable. With one worker the pool is that worker, unchanged: nothing is
//! deferred and the snapshot has no `pool`.

use std::sync::Arc;

use futures::future::join_all;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::health::{HealthSnapshot, HealthStatus, PoolRecord, PoolWorkerRecord, SlotsRecord};
use crate::health_machine::RecycleTrigger;
use crate::runtime_dir::RuntimeDir;
use crate::supervisor::Shared;
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

/// The handle the HTTP layer uses: every worker of the pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WorkerPool {
    members: Arc<[Supervisor]>,
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
        let shared = Shared::create(first, runtime).await?;
        let token = shutdown.child_token();
        let tasks = TaskTracker::new();
        let (roll_tx, roll_rx) = mpsc::unbounded_channel();
        let pooled = configs.len() > 1;
        let members: Arc<[Supervisor]> = configs
            .into_iter()
            .map(|config| {
                let roll = pooled.then(|| RollQueue(roll_tx.clone()));
                Supervisor::start_member(config, &shared, &token, roll)
            })
            .collect();
        members[0].reap_orphans();
        let status = if pooled {
            tasks.spawn(roll(members.clone(), roll_rx, token.clone()));
            let (tx, rx) = watch::channel(HealthStatus::Starting);
            tasks.spawn(follow_status(members.clone(), tx, token.clone()));
            rx
        } else {
            members[0].watch_status()
        };
        Ok(Self {
            members,
            status,
            token,
            tasks,
        })
    }

    /// A pool of the one worker `supervisor` already runs.
    pub fn single(supervisor: Supervisor) -> Self {
        let status = supervisor.watch_status();
        Self {
            members: Arc::from(vec![supervisor]),
            status,
            token: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// How many workers the pool has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never: a pool has at least one worker.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The private runtime directory, shared by every worker.
    pub fn runtime_dir(&self) -> &std::path::Path {
        self.members[0].runtime_dir()
    }

    /// The OpenAPI schema the first ready worker sent (every worker serves the same model).
    pub fn schema(&self) -> Option<Arc<serde_json::Value>> {
        self.members.iter().find_map(Supervisor::schema)
    }

    /// Admits `request` into the first worker with an idle slot. 409 (`AtCapacity`) only when every
    /// serving worker is full; otherwise the first worker's reason (starting, recycling, ...).
    pub async fn predict(
        &self,
        request: PredictionRequest,
    ) -> Result<PredictionStream, AdmitError> {
        let [only] = &self.members[..] else {
            return self.predict_pooled(request).await;
        };
        only.predict(request).await
    }

    async fn predict_pooled(
        &self,
        request: PredictionRequest,
    ) -> Result<PredictionStream, AdmitError> {
        if self.members.iter().any(|m| m.is_running(&request.id)) {
            return Err(AdmitError::DuplicateId(request.id));
        }
        let mut refused = None;
        // A worker waiting its turn to be recycled is tried last: it serves only when no other
        // worker can, so it does not keep growing past a memory bound while the others idle.
        let (waiting, free): (Vec<&Supervisor>, Vec<&Supervisor>) =
            self.members.iter().partition(|m| m.awaits_recycle());
        for member in free.into_iter().chain(waiting) {
            match member.predict(request.clone()).await {
                Ok(stream) => return Ok(stream),
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
        for member in self.members.iter() {
            if member.cancel(id).await {
                return true;
            }
        }
        false
    }

    /// Runs a health check on every worker (each coalesced with its own check in flight).
    pub async fn check_health(&self) {
        join_all(self.members.iter().map(Supervisor::check_health)).await;
    }

    /// Health as `/health-check` shows it. With one worker, that worker's; with more, the pool's
    /// state (see [`pool_status`]), Cog's keys from the worker whose state that is, the slots of all
    /// of them, and every worker under `pool`.
    pub fn health(&self) -> HealthSnapshot {
        let [only] = &self.members[..] else {
            return pool_snapshot(self.members.iter().map(Supervisor::health).collect());
        };
        only.health()
    }

    /// Follows the pool's state (never BUSY): READY while any worker is.
    pub fn watch_status(&self) -> watch::Receiver<HealthStatus> {
        self.status.clone()
    }

    /// `POST /recycle`: recycles every worker, one at a time in a pool. False when none is serving.
    pub fn request_recycle(&self, trigger: RecycleTrigger, reason: &str) -> bool {
        self.members
            .iter()
            .map(|m| m.request_recycle(trigger, reason))
            .fold(false, |any, asked| any | asked)
    }

    /// The memory of each worker's tree, by index.
    pub async fn worker_memories(&self) -> Vec<WorkerMemory> {
        join_all(self.members.iter().map(Supervisor::worker_memory)).await
    }

    /// The memory of every worker's tree, added up.
    pub async fn worker_memory(&self) -> WorkerMemory {
        total_memory(&self.worker_memories().await)
    }

    /// Tasks running in every worker's supervisor and the pool's own.
    pub fn tasks_running(&self) -> usize {
        self.members
            .iter()
            .map(Supervisor::tasks_running)
            .sum::<usize>()
            + self.tasks.len()
    }

    /// Shuts every worker down at once (see [`Supervisor::shutdown`]), then the pool's tasks.
    pub async fn shutdown(&self) {
        self.token.cancel();
        join_all(self.members.iter().map(Supervisor::shutdown)).await;
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Supervisor {
    /// True while prediction `id` runs on this worker.
    pub(crate) fn is_running(&self, id: &str) -> bool {
        self.inner.lock().pool.find(id).is_some()
    }

    /// True while this worker holds a planned recycle that waits for its turn in the pool.
    pub(crate) fn awaits_recycle(&self) -> bool {
        self.inner.lock().deferred_recycle.is_some()
    }

    /// Starts the recycle this worker deferred for its turn, if it still has one and still serves.
    /// True when the recycle started.
    pub(crate) fn start_deferred_recycle(&self) -> bool {
        let mut state = self.inner.lock();
        match state.deferred_recycle.take() {
            Some(event) => self.inner.handle_now(&mut state, event),
            None => false,
        }
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

/// The roll: carries out the queued planned recycles one worker at a time, each once no other worker
/// is starting or recycling, and the next only when that worker is back (or failed for good).
async fn roll(
    members: Arc<[Supervisor]>,
    mut queue: mpsc::UnboundedReceiver<u32>,
    token: CancellationToken,
) {
    while let Some(Some(index)) = token.run_until_cancelled(queue.recv()).await {
        let Some(member) = members.get(index as usize) else {
            continue;
        };
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
        if !member.start_deferred_recycle() {
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

/// Keeps `tx` at the pool's state, computed from every worker's, until the pool shuts down.
async fn follow_status(
    members: Arc<[Supervisor]>,
    tx: watch::Sender<HealthStatus>,
    token: CancellationToken,
) {
    let mut statuses: Vec<_> = members.iter().map(Supervisor::watch_status).collect();
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
        let changes = statuses.iter_mut().map(|rx| Box::pin(rx.changed()));
        match token
            .run_until_cancelled(futures::future::select_all(changes))
            .await
        {
            Some((Ok(()), _, _)) => {}
            Some((Err(_), _, _)) | None => return,
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

    #[test]
    fn the_pool_is_final_only_when_every_worker_is() {
        assert_eq!(pool_status(&[SetupFailed, Defunct]), Defunct);
        assert_eq!(pool_status(&[SetupFailed, SetupFailed]), SetupFailed);
        assert_eq!(pool_status(&[Defunct, Ready]), Ready);
    }
}
