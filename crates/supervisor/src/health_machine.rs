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
    /// `recycle.overlap`: a liveness recycle is asked of the pool ([`Action::RequestSuccessor`])
    /// instead of replacing the worker in place, so the worker serves until its successor is READY.
    pub overlap: bool,
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
    /// With `recycle.overlap`: ask for a successor set up beside the worker, which keeps serving
    /// meanwhile (fed back as a [`Event::RecycleRequested`] with `trigger`, `pool.rs`).
    RequestSuccessor {
        trigger: RecycleTrigger,
        reason: String,
    },
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

/// The machine of the worker that succeeds `m`'s with `recycle.overlap` (`pool.rs`): `m`'s worker
/// keeps serving while this one starts RECYCLING at the next generation, with `m`'s restart budget
/// and last recycle, for the recycle `event` asks (an [`Event::RecycleRequested`] whose trigger
/// [can overlap](RecycleTrigger::can_overlap)). `None` for any other event, when `m` is not
/// serving, or when a liveness recycle finds the restart budget spent: the recycle then happens in
/// place. Pure.
pub fn successor(
    m: &Machine,
    event: &Event,
    config: &MachineConfig,
    now: Instant,
) -> Option<(Machine, Vec<Action>)> {
    let Event::RecycleRequested {
        trigger,
        reason,
        rerun_setup,
    } = event
    else {
        return None;
    };
    let serving = matches!(
        m.state,
        HealthStatus::Ready | HealthStatus::Unhealthy | HealthStatus::Busy
    );
    if !serving || !trigger.can_overlap() {
        return None;
    }
    let mut restarts = m.restarts.clone();
    // A liveness recycle counts in the restart budget as in place; spent, the in-place recycle
    // goes DEFUNCT. No backoff: the worker serves meanwhile.
    if trigger.is_unplanned() && restarts.restart(now, &config.budget).is_err() {
        return None;
    }
    let generation = m.generation + 1;
    let setup = if *rerun_setup {
        SetupMode::Full
    } else {
        SetupMode::Recycle
    };
    let next = Machine {
        state: HealthStatus::Recycling,
        failures: 0,
        successes: 0,
        heartbeat_misses: 0,
        checks_unhealthy: false,
        reason: Some(reason.clone()),
        generation,
        restarts,
        recycle: Some(RecycleStarted {
            trigger: *trigger,
            reason: reason.clone(),
            since: now,
        }),
        last_recycle: m.last_recycle.clone(),
    };
    Some((next, vec![Action::StartWorker { generation, setup }]))
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
                    OnFailure::Recycle if config.overlap => (
                        Machine {
                            state: Unhealthy,
                            failures,
                            successes: 0,
                            reason: Some(reason.clone()),
                            ..m.clone()
                        },
                        vec![Action::RequestSuccessor {
                            trigger: RecycleTrigger::Liveness,
                            reason: reason.clone(),
                        }],
                    ),
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
        ) if serving => replace(
            m,
            Replacement {
                trigger: *trigger,
                reason: reason.clone(),
                gone: false,
                drain: true,
                setup: if *rerun_setup {
                    SetupMode::Full
                } else {
                    SetupMode::Recycle
                },
            },
            config,
            now,
        ),

        // No row for this event in this state (a check result racing a recycle, a second recycle
        // request while recycling, a check while starting): ignored.
        _ => (m.clone(), vec![]),
    }
}

/// The table, row by row (named after the transitions they pin).
#[cfg(test)]
mod tests;
