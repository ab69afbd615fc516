//! The health state machine: one pure function `(machine, event, config) -> (machine, actions)`.
//!
//! Every rule of the design's table lives in [`transition`]; nothing here does I/O or reads a clock,
//! so each rule is tested on its own (tests are named after the transition they pin). The supervisor
//! feeds it events (setup results, check results, worker exits, recycle requests) and carries out the
//! actions it returns.
//!
//! | from | event | to | actions |
//! |---|---|---|---|
//! | STARTING | setup succeeded | READY | run `after_healthy` first |
//! | STARTING | setup failed / worker exited / setup timed out | SETUP_FAILED | stop the worker |
//! | READY | `failure_threshold` consecutive failed checks | UNHEALTHY | — |
//! | UNHEALTHY | `success_threshold` consecutive good checks | READY | — |
//! | READY / UNHEALTHY | `liveness_threshold` consecutive failed checks | per `on_failure`: RECYCLING / stay / DEFUNCT | recycle, log, or exit |
//! | READY / UNHEALTHY | worker exited unexpectedly | RECYCLING | fail in-flight at once, restart with backoff |
//! | READY / UNHEALTHY | all slots poisoned | RECYCLING | recycle |
//! | READY / UNHEALTHY | recycle requested | RECYCLING | drain, then recycle |
//! | RECYCLING | new worker ready | READY | — |
//! | RECYCLING | restart budget exhausted / re-setup failed | DEFUNCT | stop the worker |
//!
//! SETUP_FAILED and DEFUNCT are final: no event leaves them.

use crate::HealthStatus;

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
    /// The liveness threshold with `on_failure: recycle`.
    Liveness,
    /// Every slot poisoned.
    AllSlotsPoisoned,
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
            RecycleTrigger::Liveness => "liveness",
            RecycleTrigger::AllSlotsPoisoned => "all_slots_poisoned",
            RecycleTrigger::WorkerExit => "worker_exit",
        }
    }
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    SetupSucceeded,
    SetupFailed {
        reason: String,
    },
    CheckPassed,
    CheckFailed {
        reason: String,
    },
    WorkerExited {
        reason: String,
    },
    AllSlotsPoisoned,
    RecycleRequested {
        trigger: RecycleTrigger,
        reason: String,
    },
    NewWorkerReady,
    /// The replacement worker could not be set up, or the restart budget is spent.
    RecycleFailed {
        reason: String,
    },
}

/// What the supervisor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run the `after_healthy` hook before admitting predictions.
    RunAfterHealthyHook,
    /// Stop the worker and everything it started.
    StopWorker,
    /// Fail every in-flight prediction now (the worker is gone).
    FailInFlight { reason: String },
    /// Replace the worker. `drain`: let in-flight predictions finish first (up to the drain timeout).
    Recycle {
        trigger: RecycleTrigger,
        reason: String,
        drain: bool,
    },
    /// Log that checks keep failing and nothing else is done (`on_failure: log`).
    LogPersistentFailure { failures: u32, reason: String },
}

/// The machine's whole state: where it is, and the streaks that thresholds count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub state: HealthStatus,
    /// Consecutive failed checks.
    pub failures: u32,
    /// Consecutive good checks while UNHEALTHY.
    pub successes: u32,
    /// Why the machine is where it is (the last reason that moved it).
    pub reason: Option<String>,
}

impl Machine {
    pub fn starting() -> Self {
        Self {
            state: HealthStatus::Starting,
            failures: 0,
            successes: 0,
            reason: None,
        }
    }

    fn to(&self, state: HealthStatus, reason: Option<String>) -> Self {
        Self {
            state,
            failures: 0,
            successes: 0,
            reason,
        }
    }
}

/// Applies one event. Pure: same inputs, same outputs.
pub fn transition(m: &Machine, event: &Event, config: &HealthConfig) -> (Machine, Vec<Action>) {
    use HealthStatus::*;
    let serving = matches!(m.state, Ready | Unhealthy | Busy);
    match (m.state, event) {
        // Final states: nothing leaves them.
        (SetupFailed | Defunct, _) => (m.clone(), vec![]),

        (Starting, Event::SetupSucceeded) => (m.to(Ready, None), vec![Action::RunAfterHealthyHook]),
        (
            Starting,
            Event::SetupFailed { reason }
            | Event::WorkerExited { reason }
            | Event::RecycleFailed { reason },
        ) => (
            m.to(SetupFailed, Some(reason.clone())),
            vec![Action::StopWorker],
        ),

        (_, Event::CheckFailed { reason }) if serving => {
            let failures = m.failures.saturating_add(1);
            if failures >= config.liveness_threshold {
                match config.on_failure {
                    OnFailure::Recycle => (
                        m.to(Recycling, Some(reason.clone())),
                        vec![Action::Recycle {
                            trigger: RecycleTrigger::Liveness,
                            reason: reason.clone(),
                            drain: true,
                        }],
                    ),
                    OnFailure::Exit => (
                        m.to(Defunct, Some(reason.clone())),
                        vec![Action::StopWorker],
                    ),
                    OnFailure::Log => (
                        Machine {
                            state: Unhealthy,
                            failures,
                            successes: 0,
                            reason: Some(reason.clone()),
                        },
                        vec![Action::LogPersistentFailure {
                            failures,
                            reason: reason.clone(),
                        }],
                    ),
                }
            } else {
                let state = if failures >= config.failure_threshold {
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
                    },
                    vec![],
                )
            }
        }
        (Unhealthy, Event::CheckPassed) => {
            let successes = m.successes.saturating_add(1);
            if successes >= config.success_threshold {
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

        (_, Event::WorkerExited { reason }) if serving => (
            m.to(Recycling, Some(reason.clone())),
            vec![
                Action::FailInFlight {
                    reason: reason.clone(),
                },
                Action::Recycle {
                    trigger: RecycleTrigger::WorkerExit,
                    reason: reason.clone(),
                    drain: false,
                },
            ],
        ),
        (_, Event::AllSlotsPoisoned) if serving => (
            m.to(Recycling, Some("every slot is poisoned".into())),
            vec![Action::Recycle {
                trigger: RecycleTrigger::AllSlotsPoisoned,
                reason: "every slot is poisoned".into(),
                drain: false,
            }],
        ),
        (_, Event::RecycleRequested { trigger, reason }) if serving => (
            m.to(Recycling, Some(reason.clone())),
            vec![Action::Recycle {
                trigger: *trigger,
                reason: reason.clone(),
                drain: true,
            }],
        ),

        (Recycling, Event::NewWorkerReady) => {
            (m.to(Ready, None), vec![Action::RunAfterHealthyHook])
        }
        (Recycling, Event::RecycleFailed { reason }) => (
            m.to(Defunct, Some(reason.clone())),
            vec![Action::StopWorker],
        ),

        // Anything else does not apply in this state (a check result racing a recycle, a second
        // recycle request while recycling): ignored.
        _ => (m.clone(), vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;

    fn at(state: HealthStatus) -> Machine {
        Machine {
            state,
            failures: 0,
            successes: 0,
            reason: None,
        }
    }

    fn failed() -> Event {
        Event::CheckFailed {
            reason: "user-defined healthcheck returned False".into(),
        }
    }

    fn run(mut m: Machine, events: &[Event], config: &HealthConfig) -> (Machine, Vec<Action>) {
        let mut all = Vec::new();
        for e in events {
            let (next, actions) = transition(&m, e, config);
            m = next;
            all.extend(actions);
        }
        (m, all)
    }

    #[test]
    fn starting_to_ready_on_setup_succeeded_runs_after_healthy_first() {
        let (m, actions) = transition(
            &Machine::starting(),
            &Event::SetupSucceeded,
            &HealthConfig::default(),
        );
        assert_eq!(m.state, Ready);
        assert_eq!(actions, vec![Action::RunAfterHealthyHook]);
    }

    #[test]
    fn starting_to_setup_failed_on_setup_failed_stops_the_worker() {
        let e = Event::SetupFailed {
            reason: "RuntimeError: boom".into(),
        };
        let (m, actions) = transition(&Machine::starting(), &e, &HealthConfig::default());
        assert_eq!(m.state, SetupFailed);
        assert_eq!(m.reason.as_deref(), Some("RuntimeError: boom"));
        assert_eq!(actions, vec![Action::StopWorker]);
    }

    #[test]
    fn starting_to_setup_failed_on_worker_exit() {
        let e = Event::WorkerExited {
            reason: "exit code 1".into(),
        };
        assert_eq!(
            transition(&Machine::starting(), &e, &HealthConfig::default())
                .0
                .state,
            SetupFailed
        );
    }

    #[test]
    fn ready_to_unhealthy_after_failure_threshold_failed_checks() {
        let config = HealthConfig {
            failure_threshold: 2,
            ..HealthConfig::default()
        };
        let (m, _) = run(at(Ready), &[failed()], &config);
        assert_eq!((m.state, m.failures), (Ready, 1));
        let (m, actions) = run(m, &[failed()], &config);
        assert_eq!((m.state, m.failures), (Unhealthy, 2));
        assert!(actions.is_empty());
    }

    #[test]
    fn ready_stays_ready_when_a_good_check_breaks_the_failure_streak() {
        let config = HealthConfig {
            failure_threshold: 2,
            ..HealthConfig::default()
        };
        let (m, _) = run(
            at(Ready),
            &[failed(), Event::CheckPassed, failed()],
            &config,
        );
        assert_eq!((m.state, m.failures), (Ready, 1));
    }

    #[test]
    fn unhealthy_to_ready_after_success_threshold_good_checks() {
        let config = HealthConfig {
            success_threshold: 2,
            ..HealthConfig::default()
        };
        let (m, _) = run(at(Unhealthy), &[Event::CheckPassed], &config);
        assert_eq!(m.state, Unhealthy);
        let (m, _) = run(m, &[Event::CheckPassed], &config);
        assert_eq!((m.state, m.failures, m.successes), (Ready, 0, 0));
    }

    #[test]
    fn unhealthy_success_streak_restarts_after_a_failure() {
        let config = HealthConfig {
            success_threshold: 2,
            liveness_threshold: 10,
            ..HealthConfig::default()
        };
        let (m, _) = run(
            at(Unhealthy),
            &[Event::CheckPassed, failed(), Event::CheckPassed],
            &config,
        );
        assert_eq!(m.state, Unhealthy);
    }

    #[test]
    fn ready_to_recycling_after_liveness_threshold_with_on_failure_recycle() {
        let (m, actions) = run(
            at(Ready),
            &[failed(), failed(), failed()],
            &HealthConfig::default(),
        );
        assert_eq!(m.state, Recycling);
        assert_eq!(
            actions,
            vec![Action::Recycle {
                trigger: RecycleTrigger::Liveness,
                reason: "user-defined healthcheck returned False".into(),
                drain: true
            }]
        );
    }

    #[test]
    fn unhealthy_stays_unhealthy_after_liveness_threshold_with_on_failure_log() {
        let config = HealthConfig {
            on_failure: OnFailure::Log,
            ..HealthConfig::default()
        };
        let (m, actions) = run(at(Ready), &[failed(), failed(), failed()], &config);
        assert_eq!(m.state, Unhealthy);
        assert!(matches!(
            actions.as_slice(),
            [Action::LogPersistentFailure { failures: 3, .. }]
        ));
        // It keeps logging, and a good check still brings it back.
        let (m, actions) = run(m, &[failed()], &config);
        assert!(matches!(
            actions.as_slice(),
            [Action::LogPersistentFailure { failures: 4, .. }]
        ));
        assert_eq!(run(m, &[Event::CheckPassed], &config).0.state, Ready);
    }

    #[test]
    fn ready_to_defunct_after_liveness_threshold_with_on_failure_exit() {
        let config = HealthConfig {
            on_failure: OnFailure::Exit,
            ..HealthConfig::default()
        };
        let (m, actions) = run(at(Ready), &[failed(), failed(), failed()], &config);
        assert_eq!(m.state, Defunct);
        assert_eq!(actions, vec![Action::StopWorker]);
    }

    #[test]
    fn ready_to_recycling_on_worker_exit_fails_in_flight_at_once() {
        let e = Event::WorkerExited {
            reason: "killed by signal SIGKILL (9)".into(),
        };
        let (m, actions) = transition(&at(Ready), &e, &HealthConfig::default());
        assert_eq!(m.state, Recycling);
        assert_eq!(
            actions,
            vec![
                Action::FailInFlight {
                    reason: "killed by signal SIGKILL (9)".into()
                },
                Action::Recycle {
                    trigger: RecycleTrigger::WorkerExit,
                    reason: "killed by signal SIGKILL (9)".into(),
                    drain: false
                },
            ]
        );
    }

    #[test]
    fn unhealthy_to_recycling_when_all_slots_are_poisoned() {
        let (m, actions) = transition(
            &at(Unhealthy),
            &Event::AllSlotsPoisoned,
            &HealthConfig::default(),
        );
        assert_eq!(m.state, Recycling);
        assert!(matches!(
            actions.as_slice(),
            [Action::Recycle {
                trigger: RecycleTrigger::AllSlotsPoisoned,
                drain: false,
                ..
            }]
        ));
    }

    #[test]
    fn ready_to_recycling_on_recycle_request_drains_first() {
        let e = Event::RecycleRequested {
            trigger: RecycleTrigger::Model,
            reason: "CUDA context lost".into(),
        };
        let (m, actions) = transition(&at(Ready), &e, &HealthConfig::default());
        assert_eq!(m.state, Recycling);
        assert_eq!(m.reason.as_deref(), Some("CUDA context lost"));
        assert_eq!(
            actions,
            vec![Action::Recycle {
                trigger: RecycleTrigger::Model,
                reason: "CUDA context lost".into(),
                drain: true
            }]
        );
    }

    #[test]
    fn recycling_to_ready_when_the_new_worker_is_ready() {
        let (m, actions) = transition(
            &at(Recycling),
            &Event::NewWorkerReady,
            &HealthConfig::default(),
        );
        assert_eq!(m.state, Ready);
        assert_eq!(actions, vec![Action::RunAfterHealthyHook]);
    }

    #[test]
    fn recycling_to_defunct_when_the_recycle_fails() {
        let e = Event::RecycleFailed {
            reason: "restart budget exhausted: 5 restarts in 300s".into(),
        };
        let (m, actions) = transition(&at(Recycling), &e, &HealthConfig::default());
        assert_eq!(m.state, Defunct);
        assert_eq!(actions, vec![Action::StopWorker]);
    }

    #[test]
    fn recycling_ignores_check_results_and_second_requests() {
        let e = Event::RecycleRequested {
            trigger: RecycleTrigger::Admin,
            reason: "again".into(),
        };
        for event in [failed(), Event::CheckPassed, e, Event::AllSlotsPoisoned] {
            let (m, actions) = transition(&at(Recycling), &event, &HealthConfig::default());
            assert_eq!(m.state, Recycling, "{event:?}");
            assert!(actions.is_empty(), "{event:?}");
        }
    }

    #[test]
    fn setup_failed_and_defunct_are_final() {
        let events = [
            Event::SetupSucceeded,
            Event::CheckPassed,
            Event::NewWorkerReady,
            Event::RecycleRequested {
                trigger: RecycleTrigger::Admin,
                reason: "x".into(),
            },
        ];
        for state in [SetupFailed, Defunct] {
            for e in &events {
                let (m, actions) = transition(&at(state), e, &HealthConfig::default());
                assert_eq!(m.state, state);
                assert!(actions.is_empty());
            }
        }
    }

    #[test]
    fn starting_ignores_checks() {
        let (m, actions) = transition(&Machine::starting(), &failed(), &HealthConfig::default());
        assert_eq!(m, Machine::starting());
        assert!(actions.is_empty());
    }
}
