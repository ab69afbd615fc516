//! The health machine's table, one test per row, named after the transition it pins.

use super::*;
use HealthStatus::*;

const FALSE: &str = "Healthcheck failed: user-defined healthcheck returned False";

fn at(state: HealthStatus) -> Machine {
    Machine {
        state,
        ..Machine::starting()
    }
}

fn failed() -> Event {
    Event::CheckFailed {
        reason: FALSE.into(),
    }
}

fn exited() -> Event {
    Event::WorkerExited {
        exit: "killed by signal SIGKILL (9)".into(),
    }
}

fn health(health: HealthConfig) -> MachineConfig {
    MachineConfig {
        health,
        ..MachineConfig::default()
    }
}

fn budget(max: u32) -> MachineConfig {
    MachineConfig {
        budget: BudgetConfig {
            max,
            ..BudgetConfig::default()
        },
        ..MachineConfig::default()
    }
}

/// Applies `events` one second apart from `t0`.
fn run_at(
    mut m: Machine,
    events: &[Event],
    config: &MachineConfig,
    t0: Instant,
) -> (Machine, Vec<Action>) {
    let mut all = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let (next, actions) = transition(&m, e, config, t0 + Duration::from_secs(i as u64));
        m = next;
        all.extend(actions);
    }
    (m, all)
}

fn run(m: Machine, events: &[Event], config: &MachineConfig) -> (Machine, Vec<Action>) {
    run_at(m, events, config, Instant::now())
}

fn step(m: &Machine, e: Event) -> (Machine, Vec<Action>) {
    transition(m, &e, &MachineConfig::default(), Instant::now())
}

fn starts(actions: &[Action]) -> Vec<(u64, SetupMode)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartWorker { generation, setup } => Some((*generation, *setup)),
            _ => None,
        })
        .collect()
}

fn backoffs(actions: &[Action]) -> Vec<Duration> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Backoff { after } => Some(*after),
            _ => None,
        })
        .collect()
}

#[test]
fn boot_starts_generation_1_with_full_setup() {
    let (m, actions) = Machine::boot();
    assert_eq!((m.state, m.generation), (Starting, 1));
    assert_eq!(starts(&actions), vec![(1, SetupMode::Full)]);
}

#[test]
fn starting_setup_succeeded_runs_after_healthy_before_ready() {
    let (m, actions) = step(&Machine::starting(), Event::SetupSucceeded);
    assert_eq!(m.state, Starting);
    assert_eq!(actions, vec![Action::RunAfterHealthyHook]);
    let (m, actions) = step(&m, Event::AfterHealthyDone);
    assert_eq!(m.state, Ready);
    assert!(actions.is_empty());
}

#[test]
fn starting_setup_failed_is_setup_failed_and_stops_the_worker() {
    let e = Event::SetupFailed {
        reason: "RuntimeError: boom".into(),
    };
    let (m, actions) = step(&Machine::starting(), e);
    assert_eq!(m.state, SetupFailed);
    assert_eq!(m.reason.as_deref(), Some("RuntimeError: boom"));
    assert_eq!(
        actions,
        vec![Action::StopWorker {
            reason: "RuntimeError: boom".into()
        }]
    );
}

#[test]
fn starting_worker_exited_is_setup_failed() {
    let (m, _) = step(&Machine::starting(), exited());
    assert_eq!(m.state, SetupFailed);
    assert_eq!(
        m.reason.as_deref(),
        Some("worker exited during setup (killed by signal SIGKILL (9))")
    );
}

#[test]
fn ready_check_failed_below_threshold_stays_ready() {
    let config = health(HealthConfig {
        failure_threshold: 2,
        ..HealthConfig::default()
    });
    let (m, actions) = run(at(Ready), &[failed()], &config);
    assert_eq!((m.state, m.failures), (Ready, 1));
    assert!(actions.is_empty());
}

#[test]
fn ready_check_failed_at_failure_threshold_is_unhealthy() {
    let config = health(HealthConfig {
        failure_threshold: 2,
        ..HealthConfig::default()
    });
    let (m, actions) = run(at(Ready), &[failed(), failed()], &config);
    assert_eq!((m.state, m.failures), (Unhealthy, 2));
    assert!(actions.is_empty());
}

#[test]
fn ready_check_passed_breaks_the_failure_streak() {
    let config = health(HealthConfig {
        failure_threshold: 2,
        ..HealthConfig::default()
    });
    let (m, _) = run(
        at(Ready),
        &[failed(), Event::CheckPassed, failed()],
        &config,
    );
    assert_eq!((m.state, m.failures), (Ready, 1));
}

#[test]
fn unhealthy_check_passed_at_success_threshold_is_ready() {
    let config = health(HealthConfig {
        success_threshold: 2,
        ..HealthConfig::default()
    });
    let (m, _) = run(at(Unhealthy), &[Event::CheckPassed], &config);
    assert_eq!(m.state, Unhealthy);
    let (m, _) = run(m, &[Event::CheckPassed], &config);
    assert_eq!((m.state, m.failures, m.successes), (Ready, 0, 0));
}

#[test]
fn unhealthy_check_failed_restarts_the_success_streak() {
    let config = health(HealthConfig {
        success_threshold: 2,
        liveness_threshold: 10,
        ..HealthConfig::default()
    });
    let (m, _) = run(
        at(Unhealthy),
        &[Event::CheckPassed, failed(), Event::CheckPassed],
        &config,
    );
    assert_eq!(m.state, Unhealthy);
}

#[test]
fn ready_liveness_threshold_with_recycle_drains_stops_and_starts_with_recycle_setup() {
    let (m, actions) = run(
        at(Ready),
        &[failed(), failed(), failed()],
        &MachineConfig::default(),
    );
    assert_eq!((m.state, m.generation), (Recycling, 2));
    assert_eq!(
        actions,
        vec![
            Action::Drain,
            Action::FailInFlight {
                error: format!("prediction failed: the worker was recycled (liveness: {FALSE}) before the prediction finished")
            },
            Action::StopWorker {
                reason: FALSE.into()
            },
            Action::StartWorker {
                generation: 2,
                setup: SetupMode::Recycle
            },
        ]
    );
    assert_eq!(m.recycle.map(|r| r.trigger), Some(RecycleTrigger::Liveness));
}

#[test]
fn unhealthy_liveness_threshold_with_log_stays_unhealthy_and_logs_every_hundredth() {
    let config = health(HealthConfig {
        on_failure: OnFailure::Log,
        ..HealthConfig::default()
    });
    let (m, actions) = run(at(Ready), &[failed(), failed(), failed()], &config);
    assert_eq!(m.state, Unhealthy);
    assert!(matches!(
        actions.as_slice(),
        [Action::LogPersistentFailure { failures: 3, .. }]
    ));
    // Quiet until the hundredth after the threshold, and a good check still brings it back.
    let (m, actions) = run(m, &vec![failed(); 99], &config);
    assert!(actions.is_empty(), "{actions:?}");
    let (m, actions) = run(m, &[failed()], &config);
    assert!(matches!(
        actions.as_slice(),
        [Action::LogPersistentFailure { failures: 103, .. }]
    ));
    assert_eq!(run(m, &[Event::CheckPassed], &config).0.state, Ready);
}

#[test]
fn ready_liveness_threshold_with_exit_is_defunct_and_stops_the_worker() {
    let config = health(HealthConfig {
        on_failure: OnFailure::Exit,
        ..HealthConfig::default()
    });
    let (m, actions) = run(at(Ready), &[failed(), failed(), failed()], &config);
    assert_eq!(m.state, Defunct);
    let stop = "health checks kept failing (on_failure: exit)";
    assert_eq!(
        actions,
        vec![
            Action::FailInFlight {
                error: format!("prediction failed: the worker was stopped ({stop})")
            },
            Action::StopWorker {
                reason: stop.into()
            },
        ]
    );
}

/// Fails checks until the liveness recycle, then brings the new worker up: one full round.
fn liveness_round(m: Machine, config: &MachineConfig, t: Instant) -> (Machine, Vec<Action>) {
    let events = [
        failed(),
        failed(),
        failed(),
        Event::SetupSucceeded,
        Event::AfterHealthyDone,
    ];
    run_at(m, &events, config, t)
}

#[test]
fn liveness_recycles_back_off_like_crash_restarts() {
    let config = MachineConfig::default();
    let t = Instant::now();
    let mut m = at(Ready);
    let mut waits = Vec::new();
    for i in 0..4 {
        let (next, actions) = liveness_round(m, &config, t + Duration::from_secs(10 * i));
        assert_eq!(next.state, Ready, "round {i}");
        waits.push(backoffs(&actions));
        m = next;
    }
    let ms = Duration::from_millis;
    assert_eq!(
        waits,
        vec![vec![], vec![ms(500)], vec![ms(1000)], vec![ms(2000)]]
    );
    assert_eq!(m.generation, 5);
}

#[test]
fn ready_liveness_threshold_past_the_restart_budget_is_defunct() {
    let config = budget(2);
    let t = Instant::now();
    let (m, _) = liveness_round(at(Ready), &config, t);
    let (m, _) = liveness_round(m, &config, t + Duration::from_secs(10));
    let (m, actions) = run_at(
        m,
        &[failed(), failed(), failed()],
        &config,
        t + Duration::from_secs(20),
    );
    assert_eq!(m.state, Defunct);
    let reason =
        format!("restart budget exhausted: 3 unplanned restarts within 300s; the last: {FALSE}");
    assert_eq!(m.reason.as_deref(), Some(reason.as_str()));
    assert_eq!(
        actions,
        vec![
            Action::RecycleFinished {
                trigger: RecycleTrigger::Liveness,
                duration: Duration::ZERO,
                succeeded: false
            },
            Action::FailInFlight {
                error: format!("prediction failed: the worker was stopped ({reason})")
            },
            Action::StopWorker { reason },
        ]
    );
    assert_eq!(m.last_recycle.map(|r| r.succeeded), Some(false));
}

#[test]
fn ready_worker_exited_fails_in_flight_at_once_and_restarts_with_full_setup() {
    let (m, actions) = step(&at(Ready), exited());
    assert_eq!(m.state, Recycling);
    let reason = "worker exited unexpectedly (killed by signal SIGKILL (9))";
    assert_eq!(
        actions,
        vec![
            Action::FailInFlight {
                error: format!("prediction failed: the {reason}")
            },
            Action::StopWorker {
                reason: reason.into()
            },
            Action::StartWorker {
                generation: 2,
                setup: SetupMode::Full
            },
        ]
    );
}

#[test]
fn ready_worker_exited_past_the_restart_budget_is_defunct() {
    let config = budget(1);
    let t = Instant::now();
    let events = [
        exited(),
        Event::SetupSucceeded,
        Event::AfterHealthyDone,
        exited(),
    ];
    let (m, actions) = run_at(at(Ready), &events, &config, t);
    assert_eq!(m.state, Defunct);
    assert!(m
        .reason
        .as_deref()
        .is_some_and(|r| r.starts_with("restart budget exhausted: 2 unplanned restarts")));
    assert_eq!(starts(&actions), vec![(2, SetupMode::Full)]);
    assert!(matches!(actions.last(), Some(Action::StopWorker { .. })));
}

#[test]
fn crash_and_liveness_share_one_restart_budget() {
    let config = budget(1);
    let (m, _) = run(
        at(Ready),
        &[exited(), Event::SetupSucceeded, Event::AfterHealthyDone],
        &config,
    );
    let (m, _) = run(m, &[failed(), failed(), failed()], &config);
    assert_eq!(m.state, Defunct);
}

#[test]
fn planned_recycles_are_not_counted_nor_delayed() {
    let config = budget(1);
    let mut m = at(Ready);
    for _ in 0..5 {
        let e = Event::RecycleRequested {
            trigger: RecycleTrigger::MaxPredictions,
            reason: "the worker has served 2 predictions".into(),
            rerun_setup: false,
        };
        let (next, actions) = run(
            m,
            &[e, Event::SetupSucceeded, Event::AfterHealthyDone],
            &config,
        );
        assert_eq!(next.state, Ready);
        assert!(backoffs(&actions).is_empty());
        m = next;
    }
    assert_eq!(m.generation, 6);
}

#[test]
fn ready_and_unhealthy_memory_recycles_drain_first_and_are_planned() {
    // A worker past recycle.max_rss or recycle.max_gpu_memory, in a tight restart budget: every recycle
    // drains in-flight predictions first, none is counted or delayed, and the record names the bound.
    let config = budget(1);
    let mut m = at(Ready);
    for (i, trigger) in [
        RecycleTrigger::MaxRss,
        RecycleTrigger::MaxGpuMemory,
        RecycleTrigger::MaxRss,
        RecycleTrigger::MaxRss,
    ]
    .into_iter()
    .enumerate()
    {
        assert!(!trigger.is_unplanned());
        let from = if i % 2 == 0 { Ready } else { Unhealthy };
        m.state = from;
        let reason = format!("the worker's RSS is past {}", trigger.as_str());
        let e = Event::RecycleRequested {
            trigger,
            reason: reason.clone(),
            rerun_setup: false,
        };
        let (recycling, actions) = step(&m, e);
        assert_eq!(recycling.state, Recycling, "from {from}");
        assert_eq!(actions.first(), Some(&Action::Drain));
        assert_eq!(
            starts(&actions),
            vec![(m.generation + 1, SetupMode::Recycle)]
        );
        assert!(backoffs(&actions).is_empty());
        let (next, actions) = run(
            recycling,
            &[Event::SetupSucceeded, Event::AfterHealthyDone],
            &config,
        );
        assert_eq!(next.state, Ready);
        let last = next.last_recycle.clone().expect("recorded");
        assert_eq!(
            (last.trigger, last.reason.as_str(), last.succeeded),
            (trigger, reason.as_str(), true)
        );
        assert!(actions.contains(&Action::RecycleFinished {
            trigger,
            duration: last.duration,
            succeeded: true
        }));
        m = next;
    }
    assert_eq!(m.generation, 5);
    assert_eq!(m.state, Ready, "not DEFUNCT: a budget of 1 was never spent");
}

#[test]
fn unhealthy_all_slots_poisoned_recycles_with_full_setup_without_draining() {
    let e = Event::AllSlotsPoisoned {
        last: "slot 0 channel closed".into(),
    };
    let (m, actions) = step(&at(Unhealthy), e);
    assert_eq!(m.state, Recycling);
    let reason = "every slot is poisoned (the last: slot 0 channel closed)";
    assert_eq!(m.reason.as_deref(), Some(reason));
    assert!(!actions.contains(&Action::Drain));
    assert_eq!(starts(&actions), vec![(2, SetupMode::Full)]);
}

#[test]
fn ready_recycle_requested_drains_first_and_picks_the_setup() {
    for (rerun_setup, setup) in [(false, SetupMode::Recycle), (true, SetupMode::Full)] {
        let e = Event::RecycleRequested {
            trigger: RecycleTrigger::Model,
            reason: "CUDA context lost".into(),
            rerun_setup,
        };
        let (m, actions) = step(&at(Ready), e);
        assert_eq!(m.state, Recycling);
        assert_eq!(m.reason.as_deref(), Some("CUDA context lost"));
        assert_eq!(actions.first(), Some(&Action::Drain));
        assert_eq!(starts(&actions), vec![(2, setup)]);
    }
}

#[test]
fn recycling_setup_succeeded_runs_after_healthy_then_ready_records_the_recycle() {
    let t = Instant::now();
    let e = Event::RecycleRequested {
        trigger: RecycleTrigger::Admin,
        reason: "rotate".into(),
        rerun_setup: false,
    };
    let (m, _) = run_at(at(Ready), &[e], &MachineConfig::default(), t);
    let (m, actions) = transition(&m, &Event::SetupSucceeded, &MachineConfig::default(), t);
    assert_eq!(m.state, Recycling);
    assert_eq!(actions, vec![Action::RunAfterHealthyHook]);
    let later = t + Duration::from_secs(3);
    let (m, actions) = transition(
        &m,
        &Event::AfterHealthyDone,
        &MachineConfig::default(),
        later,
    );
    assert_eq!(m.state, Ready);
    assert_eq!(
        actions,
        vec![Action::RecycleFinished {
            trigger: RecycleTrigger::Admin,
            duration: Duration::from_secs(3),
            succeeded: true
        }]
    );
    let last = m.last_recycle.expect("recorded");
    assert_eq!((last.reason.as_str(), last.succeeded), ("rotate", true));
    assert_eq!(m.recycle, None);
}

#[test]
fn recycling_setup_failed_is_defunct_naming_the_replacement() {
    let e = Event::RecycleRequested {
        trigger: RecycleTrigger::Model,
        reason: "x".into(),
        rerun_setup: false,
    };
    let (m, _) = step(&at(Ready), e);
    let (m, actions) = step(
        &m,
        Event::SetupFailed {
            reason: "setup failed: boom".into(),
        },
    );
    assert_eq!(m.state, Defunct);
    let reason = "the replacement worker (generation 2) failed: setup failed: boom";
    assert_eq!(m.reason.as_deref(), Some(reason));
    assert!(matches!(
        actions.as_slice(),
        [
            Action::RecycleFinished {
                trigger: RecycleTrigger::Model,
                succeeded: false,
                ..
            },
            Action::StopWorker { .. }
        ]
    ));
}

#[test]
fn recycling_ignores_checks_exits_and_second_requests() {
    let e = Event::RecycleRequested {
        trigger: RecycleTrigger::Admin,
        reason: "again".into(),
        rerun_setup: false,
    };
    let poisoned = Event::AllSlotsPoisoned { last: "x".into() };
    for event in [failed(), Event::CheckPassed, e, poisoned, exited()] {
        let (m, actions) = step(&at(Recycling), event.clone());
        assert_eq!(m.state, Recycling, "{event:?}");
        assert!(actions.is_empty(), "{event:?}");
    }
}

#[test]
fn setup_failed_and_defunct_are_final() {
    let events = [
        Event::SetupSucceeded,
        Event::AfterHealthyDone,
        Event::CheckPassed,
        exited(),
        Event::RecycleRequested {
            trigger: RecycleTrigger::Admin,
            reason: "x".into(),
            rerun_setup: false,
        },
    ];
    for state in [SetupFailed, Defunct] {
        for e in &events {
            let (m, actions) = step(&at(state), e.clone());
            assert_eq!(m.state, state);
            assert!(actions.is_empty());
        }
    }
}

#[test]
fn starting_ignores_checks_and_recycle_requests() {
    let e = Event::RecycleRequested {
        trigger: RecycleTrigger::Model,
        reason: "x".into(),
        rerun_setup: false,
    };
    for event in [failed(), e] {
        let (m, actions) = step(&Machine::starting(), event);
        assert_eq!(m, Machine::starting());
        assert!(actions.is_empty());
    }
}

fn missed(secs: u64) -> Event {
    Event::HeartbeatMissed {
        silent: Duration::from_secs(secs),
    }
}

#[test]
fn ready_heartbeat_missed_is_unhealthy_naming_the_heartbeat() {
    let (m, actions) = step(&at(Ready), missed(10));
    assert_eq!(m.state, Unhealthy);
    assert_eq!(m.heartbeat_misses, 1);
    assert_eq!(
        m.reason.as_deref(),
        Some("the worker has not answered the runtime heartbeat for 10.0s (health.heartbeat_timeout)")
    );
    assert!(actions.is_empty());
}

#[test]
fn unhealthy_heartbeat_answered_is_ready() {
    let (m, _) = run(
        at(Ready),
        &[missed(10), Event::HeartbeatAnswered],
        &MachineConfig::default(),
    );
    assert_eq!((m.state, m.heartbeat_misses, m.reason), (Ready, 0, None));
}

#[test]
fn unhealthy_heartbeat_answered_stays_unhealthy_while_checks_fail() {
    let (m, _) = run(
        at(Ready),
        &[failed(), missed(10), Event::HeartbeatAnswered],
        &MachineConfig::default(),
    );
    assert_eq!((m.state, m.heartbeat_misses), (Unhealthy, 0));
}

#[test]
fn unhealthy_heartbeat_answered_is_ready_only_once_checks_that_failed_before_the_miss_recovered() {
    let config = health(HealthConfig {
        success_threshold: 2,
        ..HealthConfig::default()
    });
    let unhealthy = run(at(Ready), &[failed(), missed(10)], &config).0;
    // One good check of the two the threshold needs: still UNHEALTHY after the answer.
    let m = run(
        unhealthy.clone(),
        &[Event::CheckPassed, Event::HeartbeatAnswered],
        &config,
    )
    .0;
    assert_eq!(m.state, Unhealthy);
    // Two: the checks have recovered while the heartbeat was missed, so the answer is READY.
    let m = run(
        unhealthy,
        &[
            Event::CheckPassed,
            Event::CheckPassed,
            Event::HeartbeatAnswered,
        ],
        &config,
    )
    .0;
    assert_eq!((m.state, m.heartbeat_misses), (Ready, 0));
}

#[test]
fn ready_heartbeat_answered_keeps_the_failed_check_streak() {
    let config = health(HealthConfig {
        failure_threshold: 2,
        ..HealthConfig::default()
    });
    let m = run(
        at(Ready),
        &[missed(10), failed(), Event::HeartbeatAnswered],
        &config,
    )
    .0;
    assert_eq!((m.state, m.failures), (Ready, 1));
    // The second failure in a row is the threshold, the answer between them notwithstanding.
    assert_eq!(run(m, &[failed()], &config).0.state, Unhealthy);
}

#[test]
fn unhealthy_check_passed_is_not_ready_while_the_heartbeat_is_missed() {
    let (m, _) = run(
        at(Ready),
        &[missed(10), Event::CheckPassed],
        &MachineConfig::default(),
    );
    assert_eq!((m.state, m.heartbeat_misses), (Unhealthy, 1));
}

#[test]
fn unhealthy_heartbeat_missed_again_recycles_unplanned_without_draining() {
    let (m, actions) = run(
        at(Ready),
        &[missed(10), missed(20)],
        &MachineConfig::default(),
    );
    assert_eq!(m.state, Recycling);
    assert_eq!(m.heartbeat_misses, 0);
    assert_eq!(
        m.recycle.as_ref().map(|r| r.trigger),
        Some(RecycleTrigger::Heartbeat)
    );
    assert!(RecycleTrigger::Heartbeat.is_unplanned());
    assert!(!actions.contains(&Action::Drain));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::FailInFlight { error } if error.contains("heartbeat"))));
    assert_eq!(starts(&actions), vec![(2, SetupMode::Full)]);
    assert_eq!(m.restarts.recent(), 1);
}

#[test]
fn heartbeat_recycles_past_the_restart_budget_are_defunct() {
    let config = budget(1);
    let events = [
        missed(10),
        missed(20),
        Event::SetupSucceeded,
        Event::AfterHealthyDone,
        missed(10),
        missed(20),
    ];
    let (m, actions) = run(at(Ready), &events, &config);
    assert_eq!(m.state, Defunct);
    assert_eq!(starts(&actions), vec![(2, SetupMode::Full)]);
    assert!(matches!(actions.last(), Some(Action::StopWorker { .. })));
}

#[test]
fn recycling_heartbeat_missed_is_ignored() {
    let m = at(Recycling);
    let (next, actions) = step(&m, missed(10));
    assert_eq!((next, actions), (m, vec![]));
}

fn asked(trigger: RecycleTrigger, rerun_setup: bool) -> Event {
    Event::RecycleRequested {
        trigger,
        reason: "asked".into(),
        rerun_setup,
    }
}

fn pooled() -> MachineConfig {
    MachineConfig {
        pooled: true,
        ..MachineConfig::default()
    }
}

fn overlapping(health: HealthConfig) -> MachineConfig {
    MachineConfig {
        health,
        overlap: true,
        ..MachineConfig::default()
    }
}

fn awaited(m: &Machine) -> Option<RecycleTrigger> {
    m.awaiting_turn.as_ref().map(|a| a.trigger)
}

/// `m` at `state`, awaiting its turn for a recycle by `trigger` (asked with `config`).
fn awaiting(state: HealthStatus, trigger: RecycleTrigger, config: &MachineConfig) -> Machine {
    let (m, actions) = transition(&at(state), &asked(trigger, false), config, Instant::now());
    assert_eq!(actions, vec![Action::AwaitTurn]);
    m
}

fn past_ceiling() -> Event {
    Event::MemoryCeilingPassed {
        trigger: RecycleTrigger::MaxRss,
        reason: "RSS 460 MB is past recycle.max_rss 400 MB".into(),
    }
}

#[test]
fn only_a_pool_or_overlap_makes_a_recycle_await_its_turn() {
    use RecycleTrigger::*;
    let single = MachineConfig::default();
    let overlap = overlapping(HealthConfig::default());
    for t in [Model, Admin, MaxPredictions, MaxRss, MaxGpuMemory] {
        assert!(!single.awaits_turn(t) && pooled().awaits_turn(t) && overlap.awaits_turn(t));
    }
    // A pool replaces an unusable worker at once; overlap serves through a failing liveness.
    assert!(!pooled().awaits_turn(Liveness) && overlap.awaits_turn(Liveness));
    for t in [WorkerExit, Heartbeat, AllSlotsPoisoned] {
        assert!(!single.awaits_turn(t) && !pooled().awaits_turn(t) && !overlap.awaits_turn(t));
    }
}

#[test]
fn ready_recycle_requested_in_a_pool_awaits_its_turn_and_asks_once() {
    let m = awaiting(Ready, RecycleTrigger::Admin, &pooled());
    assert_eq!((m.state, awaited(&m)), (Ready, Some(RecycleTrigger::Admin)));
    // A second request while one awaits is that one: no second turn asked.
    let (again, actions) = transition(
        &m,
        &asked(RecycleTrigger::Model, false),
        &pooled(),
        Instant::now(),
    );
    assert_eq!(actions, vec![]);
    assert_eq!(awaited(&again), Some(RecycleTrigger::Admin));
    // Serving goes on while it waits: a failed check still makes it UNHEALTHY, the turn kept.
    let (unhealthy, _) = transition(&again, &failed(), &pooled(), Instant::now());
    assert_eq!(
        (unhealthy.state, awaited(&unhealthy)),
        (Unhealthy, Some(RecycleTrigger::Admin))
    );
}

#[test]
fn ready_turn_granted_recycles_in_place_with_the_awaited_recycle() {
    let (m, _) = transition(
        &at(Ready),
        &asked(RecycleTrigger::MaxPredictions, true),
        &pooled(),
        Instant::now(),
    );
    let (next, actions) = transition(&m, &Event::TurnGranted, &pooled(), Instant::now());
    assert_eq!(
        (next.state, next.generation, awaited(&next)),
        (Recycling, 2, None)
    );
    assert_eq!(actions.first(), Some(&Action::Drain));
    assert_eq!(starts(&actions), vec![(2, SetupMode::Full)]);
    assert_eq!(
        next.recycle.map(|r| r.trigger),
        Some(RecycleTrigger::MaxPredictions)
    );
}

#[test]
fn ready_turn_granted_awaiting_nothing_is_ignored() {
    let (next, actions) = transition(&at(Ready), &Event::TurnGranted, &pooled(), Instant::now());
    assert_eq!((next, actions), (at(Ready), vec![]));
}

#[test]
fn a_crash_while_awaiting_its_turn_recycles_at_once_and_forgets_the_turn() {
    let m = awaiting(Ready, RecycleTrigger::Admin, &pooled());
    let (crashed, actions) = transition(&m, &exited(), &pooled(), Instant::now());
    assert_eq!((crashed.state, awaited(&crashed)), (Recycling, None));
    assert_eq!(starts(&actions), vec![(2, SetupMode::Full)]);
    let (late, actions) = transition(&crashed, &Event::TurnGranted, &pooled(), Instant::now());
    assert_eq!((late, actions), (crashed, vec![]));
}

#[test]
fn ready_liveness_threshold_in_a_pool_recycles_at_once() {
    let (m, actions) = run(at(Ready), &[failed(), failed(), failed()], &pooled());
    assert_eq!(m.state, Recycling);
    assert_eq!(starts(&actions), vec![(2, SetupMode::Recycle)]);
}

#[test]
fn ready_recycle_requested_with_overlap_is_handed_over_to_a_successor_at_the_next_generation() {
    let config = overlapping(HealthConfig::default());
    let m = Machine {
        generation: 3,
        ..awaiting(Ready, RecycleTrigger::MaxPredictions, &config)
    };
    let succession = handed_over(&m, &config);
    let next = &succession.successor;
    assert_eq!((next.state, next.generation), (Recycling, 4));
    assert_eq!(
        next.recycle.as_ref().map(|r| r.trigger),
        Some(RecycleTrigger::MaxPredictions)
    );
    assert_eq!(
        succession.actions,
        vec![Action::StartWorker {
            generation: 4,
            setup: SetupMode::Recycle
        }]
    );
    // The predecessor keeps serving, superseded, with no turn left to await.
    let old = &succession.predecessor;
    assert_eq!(
        (old.state, old.generation, old.superseded, awaited(old)),
        (Ready, 3, true, None)
    );
}

#[test]
fn successor_set_up_is_ready_and_reports_the_recycle_finished() {
    let t0 = Instant::now();
    let config = overlapping(HealthConfig::default());
    let (m, _) = transition(
        &at(Unhealthy),
        &asked(RecycleTrigger::Model, true),
        &config,
        t0,
    );
    let Some(succession) = hand_over(&m, &config, t0) else {
        panic!("an UNHEALTHY worker still serves, so it hands over");
    };
    assert_eq!(starts(&succession.actions), vec![(2, SetupMode::Full)]);
    let (ready, actions) = run_at(
        succession.successor,
        &[Event::SetupSucceeded, Event::AfterHealthyDone],
        &config,
        t0,
    );
    assert_eq!(ready.state, Ready);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::RecycleFinished {
            trigger: RecycleTrigger::Model,
            succeeded: true,
            ..
        }
    )));
    assert_eq!(
        ready.last_recycle.map(|r| (r.trigger, r.succeeded)),
        Some((RecycleTrigger::Model, true))
    );
}

/// The succession of `m`, a serving worker awaiting a planned recycle with overlap.
fn handed_over(m: &Machine, config: &MachineConfig) -> Succession {
    let Some(succession) = hand_over(m, config, Instant::now()) else {
        panic!("a serving worker awaiting a planned recycle hands it over");
    };
    succession
}

#[test]
fn successor_setup_failed_is_defunct_as_an_in_place_recycle_is() {
    let config = overlapping(HealthConfig::default());
    let m = awaiting(Ready, RecycleTrigger::Admin, &config);
    let succession = handed_over(&m, &config);
    let (failed, actions) = step(
        &succession.successor,
        Event::SetupFailed {
            reason: "setup raised".into(),
        },
    );
    assert_eq!(failed.state, Defunct);
    assert!(matches!(actions.last(), Some(Action::StopWorker { .. })));
}

#[test]
fn nothing_awaited_not_serving_or_no_overlap_hands_nothing_over() {
    let now = Instant::now();
    let config = overlapping(HealthConfig::default());
    assert!(hand_over(&at(Ready), &config, now).is_none());
    let m = awaiting(Ready, RecycleTrigger::Admin, &config);
    for state in [Recycling, Starting, Defunct] {
        assert!(hand_over(&Machine { state, ..m.clone() }, &config, now).is_none());
    }
    // A pool without overlap recycles in place (the turn granted).
    assert!(hand_over(
        &awaiting(Ready, RecycleTrigger::Admin, &pooled()),
        &pooled(),
        now
    )
    .is_none());
    let Some(succession) = hand_over(&m, &config, now) else {
        panic!("a serving worker awaiting a planned recycle hands it over");
    };
    assert!(hand_over(&succession.predecessor, &config, now).is_none());
}

#[test]
fn superseded_worker_exited_is_stopped_without_a_new_worker() {
    let config = overlapping(HealthConfig::default());
    let old = handed_over(&awaiting(Ready, RecycleTrigger::Admin, &config), &config).predecessor;
    for event in [
        exited(),
        Event::AllSlotsPoisoned {
            last: "slot 0".into(),
        },
    ] {
        let (next, actions) = transition(&old, &event, &config, Instant::now());
        assert_eq!((next.state, next.generation), (Recycling, 1));
        assert_eq!(next.restarts.recent(), 0, "the successor is no restart");
        assert!(starts(&actions).is_empty(), "{actions:?}");
        assert!(matches!(actions.last(), Some(Action::StopWorker { .. })));
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::FailInFlight { .. })));
    }
}

#[test]
fn superseded_recycle_requested_or_liveness_threshold_asks_nothing() {
    let config = overlapping(HealthConfig::default());
    let old = handed_over(&awaiting(Ready, RecycleTrigger::Admin, &config), &config).predecessor;
    let (next, actions) = transition(
        &old,
        &asked(RecycleTrigger::Model, false),
        &config,
        Instant::now(),
    );
    assert_eq!((next, actions), (old.clone(), vec![]));
    let (next, actions) = run(old, &[failed(), failed(), failed()], &config);
    assert_eq!((next.state, awaited(&next)), (Unhealthy, None));
    assert_eq!(actions, vec![]);
}

#[test]
fn unhealthy_at_the_liveness_threshold_with_overlap_stays_unhealthy_and_awaits_its_turn() {
    let config = overlapping(HealthConfig::default());
    let (m, actions) = run(at(Ready), &[failed(), failed(), failed()], &config);
    assert_eq!(
        (m.state, m.failures, awaited(&m)),
        (Unhealthy, 3, Some(RecycleTrigger::Liveness))
    );
    assert_eq!(actions, vec![Action::AwaitTurn]);
    // Checks that go on failing while it waits ask no second turn.
    let (_, more) = run(m, &[failed()], &config);
    assert_eq!(more, vec![]);
}

#[test]
fn a_liveness_successor_counts_in_the_restart_budget_and_in_place_once_it_is_spent() {
    let config = MachineConfig {
        overlap: true,
        ..budget(1)
    };
    let now = Instant::now();
    let m = awaiting(Unhealthy, RecycleTrigger::Liveness, &config);
    let Some(succession) = hand_over(&m, &config, now) else {
        panic!("the first liveness recycle is inside the budget");
    };
    assert_eq!(succession.successor.restarts.recent(), 1);
    let spent = Machine {
        state: Unhealthy,
        awaiting_turn: m.awaiting_turn.clone(),
        ..succession.successor
    };
    assert!(hand_over(&spent, &config, now).is_none());
    // The turn granted in place instead finds the budget spent: DEFUNCT.
    assert_eq!(
        transition(&spent, &Event::TurnGranted, &config, now)
            .0
            .state,
        Defunct
    );
}

#[test]
fn ready_memory_ceiling_passed_in_a_pool_recycles_at_once_even_awaiting_its_turn() {
    for m in [
        at(Ready),
        awaiting(Ready, RecycleTrigger::MaxRss, &pooled()),
    ] {
        let (next, actions) = transition(&m, &past_ceiling(), &pooled(), Instant::now());
        assert_eq!((next.state, awaited(&next)), (Recycling, None));
        assert_eq!(starts(&actions), vec![(2, SetupMode::Recycle)]);
        assert!(next
            .reason
            .is_some_and(|r| r.ends_with("an eighth past it: recycled without waiting its turn")));
    }
}

#[test]
fn ready_memory_ceiling_passed_with_overlap_closes_admission_and_awaits_its_turn() {
    let config = overlapping(HealthConfig::default());
    let (next, actions) = transition(&at(Ready), &past_ceiling(), &config, Instant::now());
    assert_eq!(
        (next.state, awaited(&next)),
        (Ready, Some(RecycleTrigger::MaxRss))
    );
    assert!(matches!(
        &actions[..],
        [Action::CloseAdmission { reason }, Action::AwaitTurn]
            if reason.ends_with("an eighth past it: the next worker is being set up")
    ));
    // Awaiting already (or superseded), it only closes admission.
    let (_, again) = transition(&next, &past_ceiling(), &config, Instant::now());
    assert!(matches!(&again[..], [Action::CloseAdmission { .. }]));
}

#[test]
fn ready_memory_ceiling_passed_with_one_worker_recycles_in_place() {
    let (next, actions) = step(&at(Ready), past_ceiling());
    assert_eq!(next.state, Recycling);
    assert_eq!(starts(&actions), vec![(2, SetupMode::Recycle)]);
    assert_eq!(
        next.reason.as_deref(),
        Some("RSS 460 MB is past recycle.max_rss 400 MB")
    );
}
