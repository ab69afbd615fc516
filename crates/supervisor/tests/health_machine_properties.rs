//! Property tests of the health state machine: random event sequences under random thresholds, checked
//! step by step against the design's table and against streaks counted independently of the machine.
//!
//! What must hold after every event: SETUP_FAILED and DEFUNCT are final; STARTING is never entered
//! again; BUSY is never stored; every state change is one the table allows, with the actions the table
//! gives it; UNHEALTHY comes only after `failure_threshold` consecutive failed checks (and always does),
//! READY again only after `success_threshold` consecutive good ones, and `liveness_threshold` failures in
//! a row always apply `on_failure`.

use cogvisor_supervisor::health_machine::{transition, Action, Event, Machine};
use cogvisor_supervisor::{HealthConfig, HealthStatus, OnFailure, RecycleTrigger};
use proptest::prelude::*;
use HealthStatus::*;

fn config() -> impl Strategy<Value = HealthConfig> {
    (
        1u32..=5,
        1u32..=5,
        1u32..=6,
        prop_oneof![
            Just(OnFailure::Log),
            Just(OnFailure::Recycle),
            Just(OnFailure::Exit)
        ],
    )
        .prop_map(
            |(success_threshold, failure_threshold, liveness_threshold, on_failure)| HealthConfig {
                success_threshold,
                failure_threshold,
                liveness_threshold,
                on_failure,
            },
        )
}

fn trigger() -> impl Strategy<Value = RecycleTrigger> {
    prop_oneof![
        Just(RecycleTrigger::Model),
        Just(RecycleTrigger::Admin),
        Just(RecycleTrigger::MaxPredictions),
        Just(RecycleTrigger::Liveness),
        Just(RecycleTrigger::AllSlotsPoisoned),
        Just(RecycleTrigger::WorkerExit),
    ]
}

/// Check results are the common case (thresholds need runs of them); everything else is rarer.
fn event() -> impl Strategy<Value = Event> {
    let reason = "[a-z ]{0,12}";
    prop_oneof![
        8 => Just(Event::CheckPassed),
        8 => reason.prop_map(|reason| Event::CheckFailed { reason }),
        2 => Just(Event::SetupSucceeded),
        1 => reason.prop_map(|reason| Event::SetupFailed { reason }),
        1 => reason.prop_map(|reason| Event::WorkerExited { reason }),
        1 => Just(Event::AllSlotsPoisoned),
        1 => (trigger(), reason).prop_map(|(trigger, reason)| Event::RecycleRequested { trigger, reason }),
        2 => Just(Event::NewWorkerReady),
        1 => reason.prop_map(|reason| Event::RecycleFailed { reason }),
    ]
}

/// Where a run may start: any stored state, with clean streaks.
fn start_state() -> impl Strategy<Value = HealthStatus> {
    prop_oneof![
        4 => Just(Starting),
        1 => Just(Ready),
        1 => Just(Unhealthy),
        1 => Just(Recycling),
        1 => Just(SetupFailed),
        1 => Just(Defunct),
    ]
}

fn serving(s: HealthStatus) -> bool {
    matches!(s, Ready | Unhealthy)
}

fn is_final(s: HealthStatus) -> bool {
    matches!(s, SetupFailed | Defunct)
}

/// The state changes the design's table allows.
fn allowed(from: HealthStatus, to: HealthStatus) -> bool {
    matches!(
        (from, to),
        (Starting, Ready | SetupFailed)
            | (Ready, Unhealthy | Recycling | Defunct)
            | (Unhealthy, Ready | Recycling | Defunct)
            | (Recycling, Ready | Defunct)
    )
}

/// Streaks counted from the events alone: consecutive failed checks since the last good one or since
/// the worker started serving, and consecutive good checks since the last failure or since UNHEALTHY
/// was entered. Events a state ignores do not break a streak.
#[derive(Debug, Default)]
struct Streaks {
    failures: u32,
    successes: u32,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_event_sequences_keep_every_rule(
        config in config(),
        start in start_state(),
        events in prop::collection::vec(event(), 0..80),
    ) {
        let mut m = Machine { state: start, failures: 0, successes: 0, reason: None };
        let mut streaks = Streaks::default();
        for (step, e) in events.iter().enumerate() {
            let (next, actions) = transition(&m, e, &config);
            let ctx = format!("step {step}: {:?} --{e:?}--> {:?} {actions:?} ({config:?})", m, next);

            // Final states are final; STARTING is never re-entered; BUSY is never stored.
            if is_final(m.state) {
                prop_assert_eq!(&next, &m, "{}", ctx);
                prop_assert!(actions.is_empty(), "{}", ctx);
            }
            prop_assert!(next.state != Busy, "{}", ctx);
            prop_assert!(next.state != Starting || m.state == Starting, "{}", ctx);
            prop_assert!(next.state == m.state || allowed(m.state, next.state), "illegal change: {}", ctx);

            // Independent streaks, updated for this event.
            let changed = next.state != m.state;
            match e {
                Event::CheckFailed { .. } if serving(m.state) => {
                    streaks.failures += 1;
                    streaks.successes = 0;
                }
                Event::CheckPassed if serving(m.state) => {
                    streaks.failures = 0;
                    if m.state == Unhealthy {
                        streaks.successes += 1;
                    }
                }
                _ => {}
            }

            // Thresholds, both ways.
            if let (Event::CheckFailed { .. }, true) = (e, serving(m.state)) {
                if streaks.failures >= config.liveness_threshold {
                    let expected = match config.on_failure {
                        OnFailure::Recycle => Recycling,
                        OnFailure::Exit => Defunct,
                        OnFailure::Log => Unhealthy,
                    };
                    prop_assert_eq!(next.state, expected, "liveness threshold not applied: {}", ctx);
                } else if streaks.failures >= config.failure_threshold {
                    prop_assert_eq!(next.state, Unhealthy, "failure threshold not applied: {}", ctx);
                } else {
                    prop_assert_eq!(next.state, m.state, "changed before a threshold: {}", ctx);
                }
            }
            if m.state == Ready && next.state == Unhealthy {
                let needed = match config.on_failure {
                    OnFailure::Log => config.failure_threshold.min(config.liveness_threshold),
                    _ => config.failure_threshold,
                };
                prop_assert!(matches!(e, Event::CheckFailed { .. }), "{}", ctx);
                prop_assert!(streaks.failures >= needed, "UNHEALTHY after {} failures: {}", streaks.failures, ctx);
            }
            if m.state == Unhealthy && next.state == Ready {
                prop_assert!(matches!(e, Event::CheckPassed), "{}", ctx);
                prop_assert!(streaks.successes >= config.success_threshold, "READY after {} good checks: {}", streaks.successes, ctx);
            }
            if m.state == Unhealthy && matches!(e, Event::CheckPassed) {
                prop_assert_eq!(
                    next.state == Ready,
                    streaks.successes >= config.success_threshold,
                    "success threshold: {}", ctx
                );
            }
            if serving(m.state) && matches!(next.state, Recycling | Defunct) {
                if let Event::CheckFailed { .. } = e {
                    prop_assert!(streaks.failures >= config.liveness_threshold, "{}", ctx);
                }
            }

            // The actions that go with each change, and none without one.
            let hook = actions.iter().filter(|a| matches!(a, Action::RunAfterHealthyHook)).count();
            let stop = actions.iter().filter(|a| matches!(a, Action::StopWorker)).count();
            let recycle: Vec<_> = actions.iter().filter_map(|a| match a {
                Action::Recycle { trigger, drain, .. } => Some((*trigger, *drain)),
                _ => None,
            }).collect();
            let fail_in_flight = actions.iter().filter(|a| matches!(a, Action::FailInFlight { .. })).count();
            let entered_ready = changed && next.state == Ready && matches!(m.state, Starting | Recycling);
            prop_assert_eq!(hook, usize::from(entered_ready), "after_healthy hook: {}", ctx);
            prop_assert_eq!(stop, usize::from(changed && is_final(next.state)), "stop: {}", ctx);
            prop_assert_eq!(recycle.len(), usize::from(changed && next.state == Recycling), "recycle: {}", ctx);
            if let Some((trigger, drain)) = recycle.first() {
                match e {
                    Event::WorkerExited { .. } => {
                        prop_assert_eq!((*trigger, *drain), (RecycleTrigger::WorkerExit, false), "{}", ctx);
                    }
                    Event::AllSlotsPoisoned => {
                        prop_assert_eq!((*trigger, *drain), (RecycleTrigger::AllSlotsPoisoned, false), "{}", ctx);
                    }
                    Event::CheckFailed { .. } => {
                        prop_assert_eq!((*trigger, *drain), (RecycleTrigger::Liveness, true), "{}", ctx);
                    }
                    Event::RecycleRequested { trigger: asked, .. } => {
                        prop_assert_eq!((*trigger, *drain), (*asked, true), "{}", ctx);
                    }
                    other => prop_assert!(false, "recycle from {other:?}: {}", ctx),
                }
            }
            prop_assert_eq!(
                fail_in_flight,
                usize::from(changed && matches!(e, Event::WorkerExited { .. }) && next.state == Recycling),
                "fail in-flight: {}", ctx
            );
            let logged = actions.iter().any(|a| matches!(a, Action::LogPersistentFailure { .. }));
            prop_assert_eq!(
                logged,
                config.on_failure == OnFailure::Log
                    && matches!(e, Event::CheckFailed { .. })
                    && serving(m.state)
                    && streaks.failures >= config.liveness_threshold,
                "persistent-failure log: {}", ctx
            );

            // The stored counters agree with the independent streaks.
            if changed && !(m.state == Ready && next.state == Unhealthy) {
                streaks = Streaks::default();
            }
            if m.state == Ready && next.state == Unhealthy {
                streaks.successes = 0;
            }
            if serving(next.state) {
                prop_assert_eq!(next.failures, streaks.failures, "failure count: {}", ctx);
            } else {
                prop_assert_eq!((next.failures, next.successes), (0, 0), "counters outside serving: {}", ctx);
            }
            if next.state == Unhealthy {
                prop_assert_eq!(next.successes, streaks.successes, "success count: {}", ctx);
                prop_assert!(next.successes < config.success_threshold, "{}", ctx);
            } else {
                prop_assert_eq!(next.successes, 0, "{}", ctx);
            }
            if next.state == Ready {
                prop_assert!(next.failures < config.failure_threshold.min(config.liveness_threshold), "{}", ctx);
            }
            if is_final(next.state) && changed {
                prop_assert!(next.reason.is_some(), "a final state without its reason: {}", ctx);
            }

            m = next;
        }
    }

    /// From STARTING, exactly `failure_threshold` failed checks in a row (and no fewer) make a READY
    /// machine UNHEALTHY, when the liveness threshold is higher.
    #[test]
    fn unhealthy_exactly_at_the_failure_threshold(
        failure_threshold in 1u32..=8,
        extra in 1u32..=4,
        on_failure in prop_oneof![Just(OnFailure::Log), Just(OnFailure::Recycle), Just(OnFailure::Exit)],
    ) {
        let config = HealthConfig {
            success_threshold: 1,
            failure_threshold,
            liveness_threshold: failure_threshold + extra,
            on_failure,
        };
        let (mut m, _) = transition(&Machine::starting(), &Event::SetupSucceeded, &config);
        for i in 1..=failure_threshold {
            m = transition(&m, &Event::CheckFailed { reason: "x".into() }, &config).0;
            let expected = if i == failure_threshold { Unhealthy } else { Ready };
            prop_assert_eq!(m.state, expected, "after {} failures", i);
        }
    }
}
