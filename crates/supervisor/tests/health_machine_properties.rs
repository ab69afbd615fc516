//! Property tests of the health state machine: random event sequences under random thresholds and
//! restart budgets, checked step by step against the machine's table and against streaks and restarts
//! counted independently of the machine.
//!
//! What must hold after every event: SETUP_FAILED and DEFUNCT are final; STARTING is never entered
//! again; BUSY is never stored; every state change is one the table allows, with the actions the table
//! gives it; UNHEALTHY comes only after `failure_threshold` consecutive failed checks (and always does),
//! READY again only after `success_threshold` consecutive good ones, `liveness_threshold` failures in
//! a row always apply `on_failure`, and an unplanned replacement past the restart budget is DEFUNCT.

use std::time::{Duration, Instant};

use cogvisor_protocol::SetupMode;
use cogvisor_supervisor::health_machine::{transition, Action, Event, Machine, MachineConfig};
use cogvisor_supervisor::{BudgetConfig, HealthConfig, HealthStatus, OnFailure, RecycleTrigger};
use proptest::prelude::*;
use HealthStatus::*;

fn config() -> impl Strategy<Value = MachineConfig> {
    (
        1u32..=5,
        1u32..=5,
        1u32..=6,
        prop_oneof![
            Just(OnFailure::Log),
            Just(OnFailure::Recycle),
            Just(OnFailure::Exit)
        ],
        0u32..=4,
    )
        .prop_map(
            |(success_threshold, failure_threshold, liveness_threshold, on_failure, max)| {
                MachineConfig {
                    health: HealthConfig {
                        success_threshold,
                        failure_threshold,
                        liveness_threshold,
                        on_failure,
                    },
                    budget: BudgetConfig {
                        max,
                        window: Duration::from_secs(300),
                        ..BudgetConfig::default()
                    },
                    overlap: false,
                    pooled: false,
                }
            },
        )
}

fn trigger() -> impl Strategy<Value = RecycleTrigger> {
    prop_oneof![
        Just(RecycleTrigger::Model),
        Just(RecycleTrigger::Admin),
        Just(RecycleTrigger::MaxPredictions),
    ]
}

/// Check results are the common case (thresholds need runs of them); everything else is rarer.
fn event() -> impl Strategy<Value = Event> {
    let reason = "[a-z ]{0,12}";
    prop_oneof![
        8 => Just(Event::CheckPassed),
        8 => reason.prop_map(|reason| Event::CheckFailed { reason }),
        2 => Just(Event::SetupSucceeded),
        2 => Just(Event::AfterHealthyDone),
        1 => reason.prop_map(|reason| Event::SetupFailed { reason }),
        1 => reason.prop_map(|exit| Event::WorkerExited { exit }),
        1 => reason.prop_map(|last| Event::AllSlotsPoisoned { last }),
        1 => (trigger(), reason, any::<bool>()).prop_map(|(trigger, reason, rerun_setup)| Event::RecycleRequested { trigger, reason, rerun_setup }),
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
        events in prop::collection::vec((event(), 0u64..=120), 0..80),
    ) {
        let health = config.health;
        let mut m = Machine { state: start, ..Machine::starting() };
        let mut streaks = Streaks::default();
        // Unplanned replacements, counted independently: their times inside the window.
        let mut restarts: std::collections::VecDeque<Instant> = Default::default();
        let mut now = Instant::now();
        for (step, (e, gap)) in events.iter().enumerate() {
            now += Duration::from_secs(*gap);
            let (next, actions) = transition(&m, e, &config, now);
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

            // Which replacement this event asks for, if any: its trigger, whether it drains, its setup.
            let asked = match e {
                _ if !serving(m.state) => None,
                Event::WorkerExited { .. } => Some((RecycleTrigger::WorkerExit, false, SetupMode::Full)),
                Event::AllSlotsPoisoned { .. } => Some((RecycleTrigger::AllSlotsPoisoned, false, SetupMode::Full)),
                Event::RecycleRequested { trigger, rerun_setup, .. } => Some((
                    *trigger,
                    true,
                    if *rerun_setup { SetupMode::Full } else { SetupMode::Recycle },
                )),
                Event::CheckFailed { .. }
                    if streaks.failures >= health.liveness_threshold && health.on_failure == OnFailure::Recycle =>
                {
                    Some((RecycleTrigger::Liveness, true, SetupMode::Recycle))
                }
                _ => None,
            };
            // The restart budget, counted independently.
            let mut exhausted = false;
            let mut earlier = 0;
            if let Some((trigger, ..)) = asked {
                if trigger.is_unplanned() {
                    while restarts.front().is_some_and(|t| now.duration_since(*t) > config.budget.window) {
                        restarts.pop_front();
                    }
                    earlier = restarts.len();
                    exhausted = earlier >= config.budget.max as usize;
                    if !exhausted {
                        restarts.push_back(now);
                    }
                }
            }

            // Thresholds, both ways.
            if let (Event::CheckFailed { .. }, true) = (e, serving(m.state)) {
                if streaks.failures >= health.liveness_threshold {
                    let expected = match health.on_failure {
                        OnFailure::Recycle if exhausted => Defunct,
                        OnFailure::Recycle => Recycling,
                        OnFailure::Exit => Defunct,
                        OnFailure::Log => Unhealthy,
                    };
                    prop_assert_eq!(next.state, expected, "liveness threshold not applied: {}", ctx);
                } else if streaks.failures >= health.failure_threshold {
                    prop_assert_eq!(next.state, Unhealthy, "failure threshold not applied: {}", ctx);
                } else {
                    prop_assert_eq!(next.state, m.state, "changed before a threshold: {}", ctx);
                }
            }
            if m.state == Ready && next.state == Unhealthy {
                let needed = match health.on_failure {
                    OnFailure::Log => health.failure_threshold.min(health.liveness_threshold),
                    _ => health.failure_threshold,
                };
                prop_assert!(matches!(e, Event::CheckFailed { .. }), "{}", ctx);
                prop_assert!(streaks.failures >= needed, "UNHEALTHY after {} failures: {}", streaks.failures, ctx);
            }
            if m.state == Unhealthy && next.state == Ready {
                prop_assert!(matches!(e, Event::CheckPassed), "{}", ctx);
                prop_assert!(streaks.successes >= health.success_threshold, "READY after {} good checks: {}", streaks.successes, ctx);
            }
            if m.state == Unhealthy && matches!(e, Event::CheckPassed) {
                prop_assert_eq!(
                    next.state == Ready,
                    streaks.successes >= health.success_threshold,
                    "success threshold: {}", ctx
                );
            }
            if serving(m.state) && matches!(next.state, Recycling | Defunct) {
                if let Event::CheckFailed { .. } = e {
                    prop_assert!(streaks.failures >= health.liveness_threshold, "{}", ctx);
                }
            }
            // READY after a start only once `after_healthy` is done.
            if matches!(m.state, Starting | Recycling) && next.state == Ready {
                prop_assert_eq!(e, &Event::AfterHealthyDone, "{}", ctx);
            }
            // Replacements: RECYCLING within the budget, DEFUNCT past it.
            if asked.is_some() {
                let expected = if exhausted { Defunct } else { Recycling };
                prop_assert_eq!(next.state, expected, "budget: {}", ctx);
            }

            // The actions that go with each change, and none without one.
            let count = |f: fn(&Action) -> bool| actions.iter().filter(|a| f(a)).count();
            let hook = count(|a| matches!(a, Action::RunAfterHealthyHook));
            let stop = count(|a| matches!(a, Action::StopWorker { .. }));
            let drain = count(|a| matches!(a, Action::Drain));
            let fail_in_flight = count(|a| matches!(a, Action::FailInFlight { .. }));
            let finished = count(|a| matches!(a, Action::RecycleFinished { .. }));
            let backoffs = count(|a| matches!(a, Action::Backoff { .. }));
            let starts: Vec<_> = actions.iter().filter_map(|a| match a {
                Action::StartWorker { generation, setup } => Some((*generation, *setup)),
                _ => None,
            }).collect();
            let set_up = matches!(m.state, Starting | Recycling) && *e == Event::SetupSucceeded;
            prop_assert_eq!(hook, usize::from(set_up), "after_healthy hook: {}", ctx);
            prop_assert_eq!(
                stop,
                usize::from(changed && (is_final(next.state) || next.state == Recycling)),
                "stop: {}", ctx
            );
            prop_assert_eq!(starts.len(), usize::from(changed && next.state == Recycling), "start: {}", ctx);
            if let Some((_, setup)) = starts.first() {
                let (trigger, drains, asked_setup) = asked.expect("a start without a replacement");
                prop_assert_eq!((*setup, next.generation), (asked_setup, m.generation + 1), "{}", ctx);
                prop_assert_eq!(next.recycle.as_ref().map(|r| r.trigger), Some(trigger), "{}", ctx);
                prop_assert_eq!(drain, usize::from(drains), "drain: {}", ctx);
                prop_assert_eq!(backoffs, usize::from(trigger.is_unplanned() && earlier > 0), "backoff: {}", ctx);
            } else {
                prop_assert_eq!((drain, backoffs), (0, 0), "{}", ctx);
                prop_assert_eq!(next.generation, m.generation, "{}", ctx);
            }
            prop_assert_eq!(
                fail_in_flight,
                usize::from(changed && serving(m.state) && matches!(next.state, Recycling | Defunct)),
                "fail in-flight: {}", ctx
            );
            let recycle_ended = changed && m.state == Recycling && m.recycle.is_some();
            prop_assert_eq!(finished, usize::from(recycle_ended || (asked.is_some() && exhausted)), "recycle finished: {}", ctx);
            if finished == 1 {
                prop_assert_eq!(
                    next.last_recycle.as_ref().map(|r| r.succeeded),
                    Some(next.state == Ready),
                    "{}", ctx
                );
            }
            let logged = actions.iter().any(|a| matches!(a, Action::LogPersistentFailure { .. }));
            prop_assert_eq!(
                logged,
                health.on_failure == OnFailure::Log
                    && matches!(e, Event::CheckFailed { .. })
                    && serving(m.state)
                    && streaks.failures >= health.liveness_threshold
                    && (streaks.failures - health.liveness_threshold) % 100 == 0,
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
                prop_assert!(next.successes < health.success_threshold, "{}", ctx);
            } else {
                prop_assert_eq!(next.successes, 0, "{}", ctx);
            }
            if next.state == Ready {
                prop_assert!(next.failures < health.failure_threshold.min(health.liveness_threshold), "{}", ctx);
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
        let config = MachineConfig {
            health: HealthConfig {
                success_threshold: 1,
                failure_threshold,
                liveness_threshold: failure_threshold + extra,
                on_failure,
            },
            ..MachineConfig::default()
        };
        let now = Instant::now();
        let (m, _) = transition(&Machine::starting(), &Event::SetupSucceeded, &config, now);
        let (mut m, _) = transition(&m, &Event::AfterHealthyDone, &config, now);
        for i in 1..=failure_threshold {
            m = transition(&m, &Event::CheckFailed { reason: "x".into() }, &config, now).0;
            let expected = if i == failure_threshold { Unhealthy } else { Ready };
            prop_assert_eq!(m.state, expected, "after {} failures", i);
        }
    }
}

/// Check results and runtime heartbeats interleaved, as a worker that freezes and thaws gives them.
fn liveness_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => Just(Event::CheckPassed),
        3 => Just(Event::CheckFailed { reason: "down".into() }),
        2 => (1u64..=30).prop_map(|s| Event::HeartbeatMissed { silent: Duration::from_secs(s * 10) }),
        2 => Just(Event::HeartbeatAnswered),
    ]
}

/// What the checks alone make of a serving worker, computed without the machine: UNHEALTHY after
/// the failures that threshold needs, READY again after `success_threshold` good checks.
#[derive(Debug)]
struct ChecksAlone {
    unhealthy: bool,
    failures: u32,
    successes: u32,
}

impl ChecksAlone {
    fn apply(&mut self, e: &Event, health: &HealthConfig) {
        let unhealthy_at = match health.on_failure {
            OnFailure::Log => health.failure_threshold.min(health.liveness_threshold),
            OnFailure::Recycle | OnFailure::Exit => health.failure_threshold,
        };
        match e {
            Event::CheckFailed { .. } => {
                self.failures += 1;
                self.successes = 0;
                if self.failures >= unhealthy_at {
                    self.unhealthy = true;
                }
            }
            Event::CheckPassed => {
                self.failures = 0;
                if self.unhealthy {
                    self.successes += 1;
                    if self.successes >= health.success_threshold {
                        self.unhealthy = false;
                        self.successes = 0;
                    }
                }
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The heartbeat rules, against misses and check verdicts computed independently of the machine:
    /// one miss is UNHEALTHY whatever the checks say; two in a row without an answer replace the
    /// worker (trigger `heartbeat`, no drain, in the restart budget: RECYCLING or DEFUNCT); with no
    /// miss outstanding the state is exactly what the checks alone make it, so an answer neither
    /// forgets failed checks nor skips the success threshold.
    #[test]
    fn heartbeat_misses_and_answers_keep_their_rules(
        config in config(),
        from_unhealthy in any::<bool>(),
        events in prop::collection::vec(liveness_event(), 0..60),
    ) {
        let health = config.health;
        let mut m = Machine { state: Ready, ..Machine::starting() };
        let mut checks = ChecksAlone { unhealthy: false, failures: 0, successes: 0 };
        if from_unhealthy {
            // Enter UNHEALTHY through the checks themselves.
            for _ in 0..health.failure_threshold.min(health.liveness_threshold) {
                let e = Event::CheckFailed { reason: "down".into() };
                m = transition(&m, &e, &config, Instant::now()).0;
                checks.apply(&e, &health);
            }
            prop_assume!(serving(m.state));
        }
        let mut misses = 0u32;
        let now = Instant::now();
        for (step, e) in events.iter().enumerate() {
            let (next, actions) = transition(&m, e, &config, now);
            let ctx = format!("step {step}: {:?} --{e:?}--> {:?} {actions:?} ({config:?}; checks alone: {checks:?})", m, next);
            match e {
                Event::HeartbeatMissed { .. } => misses += 1,
                Event::HeartbeatAnswered => misses = 0,
                _ => {}
            }
            checks.apply(e, &health);
            if misses >= 2 {
                prop_assert!(matches!(next.state, Recycling | Defunct), "two misses keep the worker: {}", ctx);
                if next.state == Recycling {
                    prop_assert_eq!(next.recycle.as_ref().map(|r| r.trigger), Some(RecycleTrigger::Heartbeat), "{}", ctx);
                    prop_assert!(!actions.iter().any(|a| matches!(a, Action::Drain)), "a frozen worker is drained: {}", ctx);
                    prop_assert!(actions.iter().any(|a| matches!(a, Action::FailInFlight { .. })), "{}", ctx);
                }
                break;
            }
            if matches!(e, Event::CheckFailed { .. })
                && checks.failures >= health.liveness_threshold
                && health.on_failure != OnFailure::Log
            {
                // `on_failure` applies (the test above checks how); the heartbeat rules end here.
                prop_assert!(matches!(next.state, Recycling | Defunct), "{}", ctx);
                break;
            }
            prop_assert_eq!(next.heartbeat_misses, misses, "miss count: {}", ctx);
            let expected = if misses > 0 || checks.unhealthy { Unhealthy } else { Ready };
            prop_assert_eq!(next.state, expected, "{}", ctx);
            m = next;
        }
    }
}
