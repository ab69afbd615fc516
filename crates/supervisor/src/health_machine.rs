//! The health state machine: one pure function `(machine, event, config, now) -> (machine, actions)`.
//!
//! Every rule of the table below lives in [`transition`]; nothing here does I/O or reads a clock (the
//! time is passed in), so each rule is tested on its own, and the tests are named after the rows they
//! pin. The machine decides everything: which state, which setup the next worker runs, whether the
//! restart budget allows a replacement and after which backoff, what in-flight predictions are told.
//! The shell ([`crate::executor`]) only carries out the [`Action`]s it returns and reports back what
//! happened as [`Event`]s.
//!
//! | from | event | to | actions |
//! |---|---|---|---|
//! | (boot) | — | STARTING | start generation 1 with `setup()` |
//! | STARTING / RECYCLING | setup succeeded | (stays) | run `after_healthy` |
//! | STARTING | `after_healthy` done | READY | — |
//! | STARTING | setup failed (or `after_healthy` failed, `hooks.on_failure: fail`) / worker exited | SETUP_FAILED | stop the worker |
//! | READY | `failure_threshold` consecutive failed checks | UNHEALTHY | — |
//! | UNHEALTHY | `success_threshold` consecutive good checks | READY | — |
//! | READY / UNHEALTHY | `liveness_threshold` failed checks, `on_failure: recycle` | RECYCLING, or DEFUNCT past the restart budget | drain, stop, backoff, start (`recycle_setup()`) |
//! | READY / UNHEALTHY | `liveness_threshold` failed checks, `on_failure: log` | UNHEALTHY | log (at the threshold, then every 100th) |
//! | READY / UNHEALTHY | `liveness_threshold` failed checks, `on_failure: exit` | DEFUNCT | fail in-flight, stop the worker |
//! | READY / UNHEALTHY | worker exited unexpectedly | RECYCLING, or DEFUNCT past the restart budget | fail in-flight at once, sweep, backoff, start (`setup()`) |
//! | READY / UNHEALTHY | the runtime heartbeat missed (no answer for `health.heartbeat_timeout`) | UNHEALTHY | — |
//! | UNHEALTHY | a heartbeat answered after a miss | READY (UNHEALTHY while failed checks still count) | — |
//! | READY / UNHEALTHY | the heartbeat missed a second time in a row | RECYCLING, or DEFUNCT past the restart budget | fail in-flight, stop (no drain), backoff, start (`setup()`) |
//! | READY / UNHEALTHY | every slot poisoned | RECYCLING, or DEFUNCT past the restart budget | stop, backoff, start (`setup()`) |
//! | READY / UNHEALTHY | recycle requested (model, admin, max_predictions, max_rss, max_gpu_memory) | RECYCLING | drain, stop, start |
//! | READY / UNHEALTHY | recycle requested, one worker of several or `recycle.overlap` (with overlap, also the liveness threshold) | (stays), the recycle awaiting its turn | ask the pool for a turn (once) |
//! | READY / UNHEALTHY, awaiting its turn | turn granted (the pool's roll) | RECYCLING | drain, stop, start (the awaited recycle) |
//! | READY / UNHEALTHY, awaiting its turn, `recycle.overlap` | handed over ([`hand_over`]) | (stays), superseded | the successor: RECYCLING at the next generation, start it |
//! | READY / UNHEALTHY, one worker of several | an eighth past the memory bound | RECYCLING at once (no turn) | drain, stop, start |
//! | READY / UNHEALTHY, `recycle.overlap` | an eighth past the memory bound | (stays), awaiting its turn | admit nothing more, ask for a turn |
//! | superseded | worker exited, heartbeat missed twice, every slot poisoned | RECYCLING | fail in-flight, stop (no new worker: the successor is it) |
//! | superseded | recycle requested, liveness threshold | (stays) | — (the successor is the recycle) |
//! | RECYCLING | `after_healthy` done | READY | record the recycle |
//! | RECYCLING | setup failed (or `after_healthy` failed, `fail`) | DEFUNCT | record the failed recycle, stop the worker |
//!
//! Crashes, liveness and heartbeat recycles and poisoned slots are *unplanned*: they share one restart budget
//! (`recycle.restart_budget`, the first at once, then 0.5 s, 1 s, 2 s … before the new worker starts).
//! Planned recycles (model code, `POST /recycle`, `recycle.max_predictions`, the memory bounds
//! `recycle.max_rss` and `recycle.max_gpu_memory`) are asked for and are not counted. SETUP_FAILED and DEFUNCT are final: no event leaves them. An event a state has no row for
//! (a check result racing a recycle, a second recycle request) is ignored.

use std::time::{Duration, Instant};

use cogvisor_protocol::SetupMode;

use crate::restart_budget::{BudgetConfig, RestartBudget};
use crate::HealthStatus;

/// Consecutive runtime heartbeat misses that recycle the worker: the first makes it UNHEALTHY.
pub const HEARTBEAT_MISSES_TO_RECYCLE: u32 = 2;

/// What to do when checks keep failing past `liveness_threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Only log; the state stays UNHEALTHY.
    Log,
    /// Replace the worker.
    Recycle,
    /// Give up: DEFUNCT, so `/livez` fails and the platform replaces the container.
    Exit,
}

/// The thresholds of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    pub success_threshold: u32,
    pub failure_threshold: u32,
    pub liveness_threshold: u32,
    pub on_failure: OnFailure,
}

impl Default for HealthConfig {
    /// Cog's behaviour: one failed check is UNHEALTHY, one good check is READY again; three in a row
    /// recycle the worker.
    fn default() -> Self {
        Self {
            success_threshold: 1,
            failure_threshold: 1,
            liveness_threshold: 3,
            on_failure: OnFailure::Recycle,
        }
    }
}

/// What started a recycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecycleTrigger {
    /// `cog.recycle_worker()` in model code.
    Model,
    /// `POST /recycle`.
    Admin,
    /// `recycle.max_predictions` reached.
    MaxPredictions,
    /// The worker's tree is past `recycle.max_rss` ([`crate::memory`]).
    MaxRss,
    /// The worker's tree is past `recycle.max_gpu_memory`.
    MaxGpuMemory,
    /// The liveness threshold with `on_failure: recycle`.
    Liveness,
    /// Every slot poisoned.
    AllSlotsPoisoned,
    /// The worker missed the runtime heartbeat twice in a row ([`crate::heartbeat`]).
    Heartbeat,
    /// The worker exited when nobody asked it to.
    WorkerExit,
}

impl RecycleTrigger {
    /// The name shown in `/health-check` and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RecycleTrigger::Model => "model",
            RecycleTrigger::Admin => "admin",
            RecycleTrigger::MaxPredictions => "max_predictions",
            RecycleTrigger::MaxRss => "max_rss",
            RecycleTrigger::MaxGpuMemory => "max_gpu_memory",
            RecycleTrigger::Liveness => "liveness",
            RecycleTrigger::AllSlotsPoisoned => "all_slots_poisoned",
            RecycleTrigger::Heartbeat => "heartbeat",
            RecycleTrigger::WorkerExit => "worker_exit",
        }
    }
}

impl RecycleTrigger {
    /// With `recycle.overlap`, a successor is set up beside the worker: it still serves. Not after
    /// a crash, a silent heartbeat or every slot poisoned, where nothing can serve any more.
    pub fn can_overlap(self) -> bool {
        !self.is_unplanned() || self == RecycleTrigger::Liveness
    }

    /// Nobody asked for it: it counts against the restart budget and waits out its backoff.
    pub fn is_unplanned(self) -> bool {
        match self {
            RecycleTrigger::Liveness
            | RecycleTrigger::AllSlotsPoisoned
            | RecycleTrigger::Heartbeat
            | RecycleTrigger::WorkerExit => true,
            RecycleTrigger::Model
            | RecycleTrigger::Admin
            | RecycleTrigger::MaxPredictions
            | RecycleTrigger::MaxRss
            | RecycleTrigger::MaxGpuMemory => false,
        }
    }
}

/// Everything the machine's rules depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MachineConfig {
    pub health: HealthConfig,
    /// The restart budget of unplanned replacements, and their backoff.
    pub budget: BudgetConfig,
    /// `recycle.overlap`: a recycle the worker can serve through ([`RecycleTrigger::can_overlap`],
    /// a liveness one too) awaits its turn and is carried out by a successor ([`hand_over`]), so
    /// the worker serves until its successor is READY.
    pub overlap: bool,
    /// One worker of several (`workers.count` above 1): a planned recycle awaits the pool's turn,
    /// so the others serve while this one is replaced.
    pub pooled: bool,
}

impl MachineConfig {
    /// Whether a recycle by `trigger` of a serving worker awaits the pool's turn instead of
    /// starting at once. Unplanned ones do not wait (the worker is unusable), except a liveness
    /// recycle with `recycle.overlap` (the worker still serves while its successor sets up).
    pub fn awaits_turn(&self, trigger: RecycleTrigger) -> bool {
        (self.pooled && !trigger.is_unplanned()) || (self.overlap && trigger.can_overlap())
    }
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The worker being started sent `ready`.
    SetupSucceeded,
    /// The worker being started could not be set up (or `after_healthy` failed with policy `fail`).
    SetupFailed {
        reason: String,
    },
    /// `after_healthy` ended (or there is none, or it failed with policy `warn`).
    AfterHealthyDone,
    CheckPassed,
    CheckFailed {
        reason: String,
    },
    /// The worker exited when nobody asked it to; `exit` names the code or signal.
    WorkerExited {
        exit: String,
    },
    /// Every slot is poisoned; `last` is the last slot's reason.
    AllSlotsPoisoned {
        last: String,
    },
    /// The worker answered no runtime heartbeat for `silent` (`health.heartbeat_timeout`, or a
    /// multiple of it).
    HeartbeatMissed {
        silent: Duration,
    },
    /// The worker answered a heartbeat again after a miss.
    HeartbeatAnswered,
    /// Model code, `POST /recycle`, `recycle.max_predictions` or a memory bound asks for a new worker.
    RecycleRequested {
        trigger: RecycleTrigger,
        reason: String,
        /// Run `setup()` again instead of `recycle_setup()`.
        rerun_setup: bool,
    },
    /// The worker's tree is an eighth past its memory bound (`Bound::ceiling` in `memory.rs`): it
    /// must not keep growing while it awaits its turn.
    MemoryCeilingPassed {
        trigger: RecycleTrigger,
        reason: String,
    },
    /// The pool's roll: it is this worker's turn to carry out the recycle it awaits, in place.
    TurnGranted,
}

/// What the shell must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn worker generation `generation` and run `setup`. Reported back as
    /// [`Event::SetupSucceeded`] or [`Event::SetupFailed`].
    StartWorker { generation: u64, setup: SetupMode },
    /// Run the `after_healthy` hook (nothing is admitted meanwhile). Reported back as
    /// [`Event::AfterHealthyDone`] or [`Event::SetupFailed`].
    RunAfterHealthyHook,
    /// Let in-flight predictions finish, up to `recycle.drain_timeout`, then ask the worker to cancel
    /// what still runs.
    Drain,
    /// Fail every in-flight prediction now with `error`.
    FailInFlight { error: String },
    /// Stop the worker and everything it started (`before_stop` first while it lives); `reason` is
    /// the hook's `COGVISOR_REASON` and the worker's `exit` in `/health-check`.
    StopWorker { reason: String },
    /// Wait before starting the next worker (the restart budget's backoff).
    Backoff { after: Duration },
    /// Log that checks keep failing and nothing else is done (`on_failure: log`).
    LogPersistentFailure { failures: u32, reason: String },
    /// Ask the pool for this worker's turn to be recycled ([`Machine::awaiting_turn`]); the worker
    /// keeps serving meanwhile. Answered by [`Event::TurnGranted`], or with `recycle.overlap` by
    /// [`hand_over`] (`pool.rs`).
    AwaitTurn,
    /// Admit nothing more, for `reason`; what runs goes on (a worker past its memory ceiling whose
    /// successor is being set up).
    CloseAdmission { reason: String },
    /// A recycle ended: tell the observer (metrics) and the log. Its record is
    /// [`Machine::last_recycle`], already there when the state changes.
    RecycleFinished {
        trigger: RecycleTrigger,
        duration: Duration,
        succeeded: bool,
    },
}

/// A recycle under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecycleStarted {
    pub trigger: RecycleTrigger,
    pub reason: String,
    pub since: Instant,
}

/// A recycle asked for that awaits the pool's turn (`workers.count` above 1, `recycle.overlap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitedRecycle {
    pub trigger: RecycleTrigger,
    pub reason: String,
    pub rerun_setup: bool,
}

impl AwaitedRecycle {
    fn replacement(&self) -> Replacement {
        Replacement {
            trigger: self.trigger,
            reason: self.reason.clone(),
            gone: false,
            drain: true,
            setup: setup_mode(self.rerun_setup),
        }
    }
}

/// `setup()` again, or `recycle_setup()`.
fn setup_mode(rerun_setup: bool) -> SetupMode {
    if rerun_setup {
        SetupMode::Full
    } else {
        SetupMode::Recycle
    }
}

/// A recycle that ended, as `/health-check` shows it under `worker.last_recycle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecycleOutcome {
    pub trigger: RecycleTrigger,
    pub reason: String,
    pub started: Instant,
    pub duration: Duration,
    pub succeeded: bool,
}

/// The machine's whole state: where it is, the streaks that thresholds count, the generation it is
/// about, the restart budget spent, and the recycle under way or last ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub state: HealthStatus,
    /// Consecutive failed checks.
    pub failures: u32,
    /// Consecutive good checks while UNHEALTHY.
    pub successes: u32,
    /// Consecutive runtime heartbeat misses of the serving worker (the second recycles it).
    pub heartbeat_misses: u32,
    /// While a heartbeat miss is outstanding: whether the checks alone hold the worker UNHEALTHY
    /// (they did at the first miss, or failed past the threshold since, and have not had
    /// `success_threshold` good ones since). The answer gives READY back only if they do not.
    pub checks_unhealthy: bool,
    /// Why the machine is where it is (the last reason that moved it).
    pub reason: Option<String>,
    /// The worker generation being started or serving (1 at boot).
    pub generation: u64,
    /// Unplanned replacements inside the budget's window.
    pub restarts: RestartBudget,
    /// The recycle under way (while RECYCLING).
    pub recycle: Option<RecycleStarted>,
    pub last_recycle: Option<RecycleOutcome>,
    /// A recycle that awaits the pool's turn; the worker serves meanwhile.
    pub awaiting_turn: Option<AwaitedRecycle>,
    /// A successor carries out this worker's recycle (`recycle.overlap`, [`hand_over`]): no
    /// other worker is started from this machine.
    pub superseded: bool,
}

impl Machine {
    pub fn starting() -> Self {
        Self {
            state: HealthStatus::Starting,
            failures: 0,
            successes: 0,
            heartbeat_misses: 0,
            checks_unhealthy: false,
            reason: None,
            generation: 1,
            restarts: RestartBudget::default(),
            recycle: None,
            last_recycle: None,
            awaiting_turn: None,
            superseded: false,
        }
    }

    /// The first row: STARTING, and start generation 1 with the full `setup()`.
    pub fn boot() -> (Self, Vec<Action>) {
        (
            Self::starting(),
            vec![Action::StartWorker {
                generation: 1,
                setup: SetupMode::Full,
            }],
        )
    }

    /// `state` with fresh streaks; the rest (generation, budget, recycles) carries over.
    fn to(&self, state: HealthStatus, reason: Option<String>) -> Self {
        Self {
            state,
            failures: 0,
            successes: 0,
            reason,
            ..self.clone()
        }
    }

    /// Ends the recycle under way (if any) as `succeeded`; returns the action that reports it.
    fn finish_recycle(&mut self, now: Instant, succeeded: bool) -> Vec<Action> {
        let Some(r) = self.recycle.take() else {
            return vec![];
        };
        let duration = now.saturating_duration_since(r.since);
        let trigger = r.trigger;
        self.last_recycle = Some(RecycleOutcome {
            trigger,
            reason: r.reason,
            started: r.since,
            duration,
            succeeded,
        });
        vec![Action::RecycleFinished {
            trigger,
            duration,
            succeeded,
        }]
    }
}

/// One replacement of the worker, as the events that ask for one describe it.
struct Replacement {
    trigger: RecycleTrigger,
    reason: String,
    /// The worker is already gone (it exited): nothing to drain, and in-flight predictions are told
    /// so.
    gone: bool,
    drain: bool,
    setup: SetupMode,
}

impl Replacement {
    fn in_flight_error(&self) -> String {
        if self.gone {
            format!("prediction failed: the {}", self.reason)
        } else {
            format!(
                "prediction failed: the worker was recycled ({}: {}) before the prediction finished",
                self.trigger.as_str(),
                self.reason
            )
        }
    }
}

/// RECYCLING with the procedure's steps, or DEFUNCT when the restart budget is spent.
fn replace(
    m: &Machine,
    r: Replacement,
    config: &MachineConfig,
    now: Instant,
) -> (Machine, Vec<Action>) {
    let mut next = m.to(HealthStatus::Recycling, Some(r.reason.clone()));
    next.awaiting_turn = None;
    if m.superseded {
        // The successor being set up is the next worker: this one is only stopped.
        let mut actions = Vec::new();
        if r.drain && !r.gone {
            actions.push(Action::Drain);
        }
        actions.push(Action::FailInFlight {
            error: r.in_flight_error(),
        });
        actions.push(Action::StopWorker { reason: r.reason });
        return (next, actions);
    }
    let after = if r.trigger.is_unplanned() {
        match next.restarts.restart(now, &config.budget) {
            Ok(after) => after,
            Err(exhausted) => {
                let reason = format!("{exhausted}; the last: {}", r.reason);
                let error = if r.gone {
                    r.in_flight_error()
                } else {
                    format!("prediction failed: the worker was stopped ({reason})")
                };
                let mut next = m.to(HealthStatus::Defunct, Some(reason.clone()));
                next.recycle = Some(RecycleStarted {
                    trigger: r.trigger,
                    reason: r.reason,
                    since: now,
                });
                let mut actions = next.finish_recycle(now, false);
                actions.push(Action::FailInFlight { error });
                actions.push(Action::StopWorker { reason });
                return (next, actions);
            }
        }
    } else {
        Duration::ZERO
    };
    let mut actions = Vec::new();
    if r.drain && !r.gone {
        actions.push(Action::Drain);
    }
    actions.push(Action::FailInFlight {
        error: r.in_flight_error(),
    });
    actions.push(Action::StopWorker {
        reason: r.reason.clone(),
    });
    if !after.is_zero() {
        actions.push(Action::Backoff { after });
    }
    next.generation = m.generation + 1;
    next.heartbeat_misses = 0;
    next.checks_unhealthy = false;
    actions.push(Action::StartWorker {
        generation: next.generation,
        setup: r.setup,
    });
    next.recycle = Some(RecycleStarted {
        trigger: r.trigger,
        reason: r.reason,
        since: now,
    });
    (next, actions)
}

/// A recycle carried out by a successor (`recycle.overlap`): the two machines and the successor's
/// first actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Succession {
    /// The serving worker's machine from now on: still serving, superseded, no turn awaited.
    pub predecessor: Machine,
    /// The successor's: RECYCLING at the next generation, with the predecessor's restart budget and
    /// last recycle, for the recycle awaited.
    pub successor: Machine,
    pub actions: Vec<Action>,
}

/// The turn of `m`'s worker has come and, with `recycle.overlap`, a successor carries out the
/// recycle it awaits while it serves. `None` when it awaits none, does not serve, cannot overlap
/// the recycle, or when a liveness recycle finds the restart budget spent: the turn is then
/// granted in place ([`Event::TurnGranted`]), which also makes a spent budget DEFUNCT. Pure.
pub fn hand_over(m: &Machine, config: &MachineConfig, now: Instant) -> Option<Succession> {
    let awaited = m.awaiting_turn.as_ref()?;
    let serving = matches!(
        m.state,
        HealthStatus::Ready | HealthStatus::Unhealthy | HealthStatus::Busy
    );
    if !serving || m.superseded || !config.overlap || !awaited.trigger.can_overlap() {
        return None;
    }
    let mut restarts = m.restarts.clone();
    // A liveness recycle counts in the restart budget as in place; no backoff: the worker serves
    // meanwhile.
    if awaited.trigger.is_unplanned() && restarts.restart(now, &config.budget).is_err() {
        return None;
    }
    let generation = m.generation + 1;
    let successor = Machine {
        state: HealthStatus::Recycling,
        failures: 0,
        successes: 0,
        heartbeat_misses: 0,
        checks_unhealthy: false,
        reason: Some(awaited.reason.clone()),
        generation,
        restarts,
        recycle: Some(RecycleStarted {
            trigger: awaited.trigger,
            reason: awaited.reason.clone(),
            since: now,
        }),
        last_recycle: m.last_recycle.clone(),
        awaiting_turn: None,
        superseded: false,
    };
    let actions = vec![Action::StartWorker {
        generation,
        setup: setup_mode(awaited.rerun_setup),
    }];
    Some(Succession {
        predecessor: Machine {
            awaiting_turn: None,
            superseded: true,
            ..m.clone()
        },
        successor,
        actions,
    })
}

/// `m` awaiting its turn for `awaited`: asked once; a recycle asked while one awaits is that one.
fn await_turn(m: Machine, awaited: AwaitedRecycle) -> (Machine, Vec<Action>) {
    if m.superseded || m.awaiting_turn.is_some() {
        return (m, vec![]);
    }
    (
        Machine {
            awaiting_turn: Some(awaited),
            ..m
        },
        vec![Action::AwaitTurn],
    )
}

/// Applies one event at time `now`. Pure: same inputs, same outputs.
pub fn transition(
    m: &Machine,
    event: &Event,
    config: &MachineConfig,
    now: Instant,
) -> (Machine, Vec<Action>) {
    let (mut next, actions) = step(m, event, config, now);
    if m.heartbeat_misses > 0 && next.heartbeat_misses > 0 {
        follow_checks_during_a_miss(&mut next, event, &config.health);
    }
    (next, actions)
}

/// The failed checks after which a serving worker is UNHEALTHY: `failure_threshold`, or the
/// liveness threshold if lower and `on_failure` only logs (higher ones replace the worker).
fn unhealthy_at(health: &HealthConfig) -> u32 {
    match health.on_failure {
        OnFailure::Log => health.failure_threshold.min(health.liveness_threshold),
        OnFailure::Recycle | OnFailure::Exit => health.failure_threshold,
    }
}

/// While a heartbeat miss holds the worker UNHEALTHY, the checks' own verdict goes on: failing past
/// the threshold makes it UNHEALTHY, `success_threshold` good checks make it READY again.
fn follow_checks_during_a_miss(next: &mut Machine, event: &Event, health: &HealthConfig) {
    match event {
        Event::CheckFailed { .. } if next.failures >= unhealthy_at(health) => {
            next.checks_unhealthy = true;
        }
        Event::CheckPassed
            if next.checks_unhealthy && next.successes >= health.success_threshold =>
        {
            next.checks_unhealthy = false;
            next.successes = 0;
        }
        _ => {}
    }
}

/// [`transition`] before the check verdict kept during a heartbeat miss.
fn step(
    m: &Machine,
    event: &Event,
    config: &MachineConfig,
    now: Instant,
) -> (Machine, Vec<Action>) {
    use HealthStatus::*;
    let serving = matches!(m.state, Ready | Unhealthy | Busy);
    let health = &config.health;
    match (m.state, event) {
        // Final states: nothing leaves them.
        (SetupFailed | Defunct, _) => (m.clone(), vec![]),

        // A worker is set up: `after_healthy` runs before anything is admitted.
        (Starting | Recycling, Event::SetupSucceeded) => {
            (m.clone(), vec![Action::RunAfterHealthyHook])
        }
        (Starting, Event::AfterHealthyDone) => (m.to(Ready, None), vec![]),
        (Recycling, Event::AfterHealthyDone) => {
            let mut next = m.to(Ready, None);
            let actions = next.finish_recycle(now, true);
            (next, actions)
        }
        (Starting, Event::SetupFailed { reason }) => (
            m.to(SetupFailed, Some(reason.clone())),
            vec![Action::StopWorker {
                reason: reason.clone(),
            }],
        ),
        (Starting, Event::WorkerExited { exit }) => {
            let reason = format!("worker exited during setup ({exit})");
            (
                m.to(SetupFailed, Some(reason.clone())),
                vec![Action::StopWorker { reason }],
            )
        }
        (Recycling, Event::SetupFailed { reason }) => {
            let reason = format!(
                "the replacement worker (generation {}) failed: {reason}",
                m.generation
            );
            let mut next = m.to(Defunct, Some(reason.clone()));
            let mut actions = next.finish_recycle(now, false);
            actions.push(Action::StopWorker { reason });
            (next, actions)
        }

        (_, Event::CheckFailed { reason }) if serving => {
            let failures = m.failures.saturating_add(1);
            if failures >= health.liveness_threshold {
                match health.on_failure {
                    OnFailure::Recycle if config.awaits_turn(RecycleTrigger::Liveness) => {
                        let unhealthy = Machine {
                            state: Unhealthy,
                            failures,
                            successes: 0,
                            reason: Some(reason.clone()),
                            ..m.clone()
                        };
                        await_turn(
                            unhealthy,
                            AwaitedRecycle {
                                trigger: RecycleTrigger::Liveness,
                                reason: reason.clone(),
                                rerun_setup: false,
                            },
                        )
                    }
                    OnFailure::Recycle => replace(
                        m,
                        Replacement {
                            trigger: RecycleTrigger::Liveness,
                            reason: reason.clone(),
                            gone: false,
                            drain: true,
                            setup: SetupMode::Recycle,
                        },
                        config,
                        now,
                    ),
                    OnFailure::Exit => {
                        let stop = "health checks kept failing (on_failure: exit)".to_string();
                        (
                            m.to(Defunct, Some(reason.clone())),
                            vec![
                                Action::FailInFlight {
                                    error: format!(
                                        "prediction failed: the worker was stopped ({stop})"
                                    ),
                                },
                                Action::StopWorker { reason: stop },
                            ],
                        )
                    }
                    OnFailure::Log => {
                        // At the threshold, then every hundredth: a platform polling every second
                        // must not fill the log.
                        let past = failures - health.liveness_threshold;
                        let actions = if past.is_multiple_of(100) {
                            vec![Action::LogPersistentFailure {
                                failures,
                                reason: reason.clone(),
                            }]
                        } else {
                            vec![]
                        };
                        (
                            Machine {
                                state: Unhealthy,
                                failures,
                                successes: 0,
                                reason: Some(reason.clone()),
                                ..m.clone()
                            },
                            actions,
                        )
                    }
                }
            } else {
                let state = if failures >= health.failure_threshold {
                    Unhealthy
                } else {
                    m.state
                };
                (
                    Machine {
                        state,
                        failures,
                        successes: 0,
                        reason: Some(reason.clone()),
                        ..m.clone()
                    },
                    vec![],
                )
            }
        }
        (Unhealthy, Event::CheckPassed) => {
            let successes = m.successes.saturating_add(1);
            // A check that passes does not vouch for a worker that misses its heartbeat (an
            // external `health.command` can pass while the worker is frozen).
            if successes >= health.success_threshold && m.heartbeat_misses == 0 {
                (m.to(Ready, None), vec![])
            } else {
                (
                    Machine {
                        successes,
                        failures: 0,
                        ..m.clone()
                    },
                    vec![],
                )
            }
        }
        (Ready | Busy, Event::CheckPassed) => (m.to(m.state, None), vec![]),

        (_, Event::WorkerExited { exit }) if serving => replace(
            m,
            Replacement {
                trigger: RecycleTrigger::WorkerExit,
                reason: format!("worker exited unexpectedly ({exit})"),
                gone: true,
                drain: false,
                setup: SetupMode::Full,
            },
            config,
            now,
        ),
        (_, Event::HeartbeatMissed { silent }) if serving => {
            let misses = m.heartbeat_misses.saturating_add(1);
            let reason = format!(
                "the worker has not answered the runtime heartbeat for {:.1}s (health.heartbeat_timeout)",
                silent.as_secs_f64()
            );
            if misses >= HEARTBEAT_MISSES_TO_RECYCLE {
                replace(
                    m,
                    Replacement {
                        trigger: RecycleTrigger::Heartbeat,
                        reason,
                        gone: false,
                        // A worker that cannot run cannot finish what it runs.
                        drain: false,
                        setup: SetupMode::Full,
                    },
                    config,
                    now,
                )
            } else {
                // The check streaks go on counting beside the misses: an answer needs them.
                let checks_unhealthy = if m.heartbeat_misses == 0 {
                    m.state == Unhealthy
                } else {
                    m.checks_unhealthy
                };
                (
                    Machine {
                        state: Unhealthy,
                        heartbeat_misses: misses,
                        checks_unhealthy,
                        reason: Some(reason),
                        ..m.clone()
                    },
                    vec![],
                )
            }
        }
        (_, Event::HeartbeatAnswered) if serving && m.heartbeat_misses > 0 => {
            // READY again exactly when the checks alone would have it READY.
            let checks_ready = m.failures < unhealthy_at(health) && !m.checks_unhealthy;
            let next = if checks_ready {
                Machine {
                    // A failed check streak below the threshold goes on counting.
                    failures: m.failures,
                    heartbeat_misses: 0,
                    checks_unhealthy: false,
                    ..m.to(Ready, None)
                }
            } else {
                Machine {
                    heartbeat_misses: 0,
                    checks_unhealthy: false,
                    ..m.clone()
                }
            };
            (next, vec![])
        }
        (_, Event::AllSlotsPoisoned { last }) if serving => replace(
            m,
            Replacement {
                trigger: RecycleTrigger::AllSlotsPoisoned,
                reason: format!("every slot is poisoned (the last: {last})"),
                gone: false,
                drain: false,
                setup: SetupMode::Full,
            },
            config,
            now,
        ),
        (
            _,
            Event::RecycleRequested {
                trigger,
                reason,
                rerun_setup,
            },
        ) if serving => {
            let asked = AwaitedRecycle {
                trigger: *trigger,
                reason: reason.clone(),
                rerun_setup: *rerun_setup,
            };
            if m.superseded {
                // The successor being set up is the recycle asked for.
                (m.clone(), vec![])
            } else if config.awaits_turn(*trigger) {
                await_turn(m.clone(), asked)
            } else {
                replace(m, asked.replacement(), config, now)
            }
        }
        (_, Event::TurnGranted) if serving && !m.superseded => match &m.awaiting_turn {
            Some(awaited) => replace(m, awaited.replacement(), config, now),
            None => (m.clone(), vec![]),
        },
        (_, Event::MemoryCeilingPassed { trigger, reason }) if serving => {
            if config.overlap {
                // It admits nothing more, so it stops growing, and serves what it runs until its
                // successor takes over.
                let close = Action::CloseAdmission {
                    reason: format!(
                        "{reason}, and an eighth past it: the next worker is being set up"
                    ),
                };
                let awaited = AwaitedRecycle {
                    trigger: *trigger,
                    reason: reason.clone(),
                    rerun_setup: false,
                };
                let (next, mut actions) = await_turn(m.clone(), awaited);
                actions.insert(0, close);
                (next, actions)
            } else if config.pooled {
                // It cannot wait for its turn any longer: replaced now, whatever the others do.
                let awaited = AwaitedRecycle {
                    trigger: *trigger,
                    reason: format!(
                        "{reason}, and an eighth past it: recycled without waiting its turn"
                    ),
                    rerun_setup: false,
                };
                replace(m, awaited.replacement(), config, now)
            } else {
                let awaited = AwaitedRecycle {
                    trigger: *trigger,
                    reason: reason.clone(),
                    rerun_setup: false,
                };
                replace(m, awaited.replacement(), config, now)
            }
        }

        // No row for this event in this state (a check result racing a recycle, a second recycle
        // request while recycling, a check while starting): ignored.
        _ => (m.clone(), vec![]),
    }
}

/// The table, row by row (named after the transitions they pin).
#[cfg(test)]
mod tests;
