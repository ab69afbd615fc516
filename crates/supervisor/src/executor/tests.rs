//! Every row of the health machine's table, walked through the real executor with a fake worker:
//! the fake records each effect (and the state the machine was in when it ran), so each test asserts
//! what happened, in order. Time is tokio's paused clock, so backoffs are checked without waiting.

use std::collections::VecDeque;
use std::time::Duration;

use cogvisor_protocol::SetupMode;
use tokio::time::Instant;

use super::*;
use crate::health_machine::{transition, Machine, MachineConfig};
use crate::restart_budget::BudgetConfig;
use crate::{HealthConfig, HealthStatus, OnFailure};
use HealthStatus::*;

const FALSE: &str = "Healthcheck failed: user-defined healthcheck returned False";

/// What the fake's `next()` hands the executor, in order; when the script is done, a shutdown.
enum Script {
    /// Another task applies this event (a check, model code, a slot, admin) and sends the actions.
    Event(Event),
    /// The worker exits.
    Exit(&'static str),
}

/// One effect, as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
enum Did {
    Start(u64, SetupMode),
    /// `after_healthy`, with the state the machine was in while it ran.
    AfterHealthy(HealthStatus),
    Drain,
    FailInFlight(String),
    Stop(String),
    Backoff(Duration),
    Log(u32),
    Finished(RecycleTrigger, bool),
    /// Asked the pool for a turn, for the recycle the machine then awaits.
    AwaitTurn(Option<RecycleTrigger>),
    CloseAdmission(String),
    ShutDown,
}

struct Fake {
    machine: Machine,
    config: MachineConfig,
    script: VecDeque<Script>,
    /// Outcomes of `start_worker`, in order (then: set up fine).
    setups: VecDeque<Result<(), String>>,
    /// Outcomes of `after_healthy`, in order (then: fine).
    hooks: VecDeque<Result<(), String>>,
    /// A backoff is cut short by a shutdown.
    shutdown_in_backoff: bool,
    /// Applied by "another task" right after the next recycle ends, while the executor is busy.
    race_after_recycle: Option<Event>,
    /// Actions that other task sent.
    queue: VecDeque<Vec<Action>>,
    did: Vec<Did>,
    /// Every state the machine entered.
    states: Vec<HealthStatus>,
}

impl Fake {
    fn new(config: MachineConfig, script: Vec<Script>) -> Self {
        Self {
            machine: Machine::starting(),
            config,
            script: script.into(),
            setups: VecDeque::new(),
            hooks: VecDeque::new(),
            shutdown_in_backoff: false,
            race_after_recycle: None,
            queue: VecDeque::new(),
            did: Vec::new(),
            states: Vec::new(),
        }
    }

    async fn run(mut self) -> Self {
        let (machine, boot) = Machine::boot();
        self.machine = machine;
        super::run(&mut self, boot).await;
        self
    }
}

impl Effects for Fake {
    fn apply(&mut self, event: Event) -> Vec<Action> {
        let now = Instant::now().into_std();
        let (next, actions) = transition(&self.machine, &event, &self.config, now);
        if next.state != self.machine.state {
            self.states.push(next.state);
        }
        self.machine = next;
        actions
    }

    fn is_final(&self) -> bool {
        matches!(self.machine.state, SetupFailed | Defunct)
    }

    async fn next(&mut self) -> Wake {
        match self.script.pop_front() {
            Some(Script::Event(e)) => Wake::Actions(self.apply(e)),
            Some(Script::Exit(exit)) => Wake::WorkerExited { exit: exit.into() },
            None => Wake::Shutdown,
        }
    }

    fn queued(&mut self) -> Option<Vec<Action>> {
        self.queue.pop_front()
    }

    async fn start_worker(
        &mut self,
        generation: u64,
        setup: SetupMode,
    ) -> Step<Result<(), String>> {
        self.did.push(Did::Start(generation, setup));
        Ok(self.setups.pop_front().unwrap_or(Ok(())))
    }

    async fn run_after_healthy(&mut self) -> Result<(), String> {
        self.did.push(Did::AfterHealthy(self.machine.state));
        self.hooks.pop_front().unwrap_or(Ok(()))
    }

    async fn drain(&mut self) -> Step<()> {
        self.did.push(Did::Drain);
        Ok(())
    }

    fn fail_in_flight(&mut self, error: &str) {
        self.did.push(Did::FailInFlight(error.into()));
    }

    async fn stop_worker(&mut self, reason: &str) {
        self.did.push(Did::Stop(reason.into()));
    }

    async fn backoff(&mut self, after: Duration) -> Step<()> {
        self.did.push(Did::Backoff(after));
        if self.shutdown_in_backoff {
            return Err(ShuttingDown);
        }
        tokio::time::sleep(after).await;
        Ok(())
    }

    fn log_persistent_failure(&mut self, failures: u32, _reason: &str) {
        self.did.push(Did::Log(failures));
    }

    fn await_turn(&mut self) {
        let trigger = self.machine.awaiting_turn.as_ref().map(|a| a.trigger);
        self.did.push(Did::AwaitTurn(trigger));
    }

    fn close_admission(&mut self, reason: &str) {
        self.did.push(Did::CloseAdmission(reason.into()));
    }

    fn recycle_finished(&mut self, trigger: RecycleTrigger, _duration: Duration, succeeded: bool) {
        self.did.push(Did::Finished(trigger, succeeded));
        if let Some(event) = self.race_after_recycle.take() {
            let actions = self.apply(event);
            self.queue.push_back(actions);
        }
    }

    async fn shut_down(&mut self) {
        self.did.push(Did::ShutDown);
    }
}

fn failed() -> Script {
    Script::Event(Event::CheckFailed {
        reason: FALSE.into(),
    })
}

fn passed() -> Script {
    Script::Event(Event::CheckPassed)
}

fn config(health: HealthConfig) -> MachineConfig {
    MachineConfig {
        health,
        ..MachineConfig::default()
    }
}

fn with_budget(max: u32) -> MachineConfig {
    MachineConfig {
        budget: BudgetConfig {
            max,
            ..BudgetConfig::default()
        },
        ..MachineConfig::default()
    }
}

/// The effects of a start that goes well: generation `n` set up, then `after_healthy` while `during`.
fn up(n: u64, setup: SetupMode, during: HealthStatus) -> Vec<Did> {
    vec![Did::Start(n, setup), Did::AfterHealthy(during)]
}

fn recycled(trigger: &str, reason: &str) -> Did {
    Did::FailInFlight(format!(
        "prediction failed: the worker was recycled ({trigger}: {reason}) before the prediction finished"
    ))
}

fn concat(parts: Vec<Vec<Did>>) -> Vec<Did> {
    parts.into_iter().flatten().collect()
}

#[tokio::test(start_paused = true)]
async fn boot_setup_succeeded_runs_after_healthy_while_starting_then_ready() {
    let fake = Fake::new(MachineConfig::default(), vec![]).run().await;
    assert_eq!(
        fake.did,
        concat(vec![up(1, SetupMode::Full, Starting), vec![Did::ShutDown]])
    );
    assert_eq!(fake.states, vec![Ready]);
}

#[tokio::test(start_paused = true)]
async fn starting_setup_failed_stops_the_worker_and_ends_setup_failed() {
    let mut fake = Fake::new(MachineConfig::default(), vec![failed()]);
    fake.setups.push_back(Err("setup failed: boom".into()));
    let fake = fake.run().await;
    // Final: the executor ends without waiting for anything more (the script is not read).
    assert_eq!(
        fake.did,
        vec![
            Did::Start(1, SetupMode::Full),
            Did::Stop("setup failed: boom".into())
        ]
    );
    assert_eq!(fake.states, vec![SetupFailed]);
    assert_eq!(fake.script.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn starting_after_healthy_failed_is_setup_failed() {
    let mut fake = Fake::new(MachineConfig::default(), vec![]);
    fake.hooks
        .push_back(Err("hooks.after_healthy failed: exited with code 4".into()));
    let fake = fake.run().await;
    assert_eq!(
        fake.did,
        concat(vec![
            up(1, SetupMode::Full, Starting),
            vec![Did::Stop(
                "hooks.after_healthy failed: exited with code 4".into()
            )]
        ])
    );
    assert_eq!(fake.states, vec![SetupFailed]);
}

#[tokio::test(start_paused = true)]
async fn ready_check_failed_below_threshold_stays_ready_and_at_it_is_unhealthy() {
    let cfg = config(HealthConfig {
        failure_threshold: 2,
        ..HealthConfig::default()
    });
    let fake = Fake::new(cfg, vec![failed(), passed(), failed(), failed()])
        .run()
        .await;
    assert_eq!(fake.states, vec![Ready, Unhealthy]);
    assert_eq!(
        fake.did,
        concat(vec![up(1, SetupMode::Full, Starting), vec![Did::ShutDown]])
    );
}

#[tokio::test(start_paused = true)]
async fn unhealthy_check_passed_at_success_threshold_is_ready() {
    let cfg = config(HealthConfig {
        success_threshold: 2,
        ..HealthConfig::default()
    });
    let fake = Fake::new(cfg, vec![failed(), passed(), passed()])
        .run()
        .await;
    assert_eq!(fake.states, vec![Ready, Unhealthy, Ready]);
}

#[tokio::test(start_paused = true)]
async fn ready_liveness_threshold_with_recycle_drains_stops_and_starts_a_new_worker() {
    let fake = Fake::new(MachineConfig::default(), vec![failed(), failed(), failed()])
        .run()
        .await;
    assert_eq!(fake.states, vec![Ready, Unhealthy, Recycling, Ready]);
    assert_eq!(
        fake.did,
        concat(vec![
            up(1, SetupMode::Full, Starting),
            vec![
                Did::Drain,
                recycled("liveness", FALSE),
                Did::Stop(FALSE.into())
            ],
            up(2, SetupMode::Recycle, Recycling),
            vec![Did::Finished(RecycleTrigger::Liveness, true), Did::ShutDown],
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn liveness_recycles_back_off_and_past_the_budget_end_defunct() {
    let mut script = Vec::new();
    for _ in 0..4 {
        script.extend([failed(), failed(), failed()]);
    }
    let started = Instant::now();
    let fake = Fake::new(with_budget(3), script).run().await;
    assert_eq!(fake.states.last(), Some(&Defunct));
    let backoffs: Vec<Duration> = fake
        .did
        .iter()
        .filter_map(|d| match d {
            Did::Backoff(after) => Some(*after),
            _ => None,
        })
        .collect();
    let ms = Duration::from_millis;
    assert_eq!(backoffs, vec![ms(500), ms(1000)]);
    // The executor really waited them out (on the paused clock).
    assert!(started.elapsed() >= ms(1500), "{:?}", started.elapsed());
    let starts = fake
        .did
        .iter()
        .filter(|d| matches!(d, Did::Start(..)))
        .count();
    assert_eq!(starts, 4, "boot and three recycles: {:?}", fake.did);
    let tail = &fake.did[fake.did.len() - 3..];
    assert_eq!(tail[0], Did::Finished(RecycleTrigger::Liveness, false));
    assert!(
        matches!(&tail[1], Did::FailInFlight(e) if e.contains("restart budget exhausted")),
        "{tail:?}"
    );
    assert!(matches!(&tail[2], Did::Stop(r) if r.starts_with("restart budget exhausted: 4")));
}

#[tokio::test(start_paused = true)]
async fn ready_liveness_threshold_with_overlap_awaits_its_turn_and_keeps_the_worker() {
    let cfg = MachineConfig {
        overlap: true,
        ..MachineConfig::default()
    };
    let fake = Fake::new(cfg, vec![failed(), failed(), failed()])
        .run()
        .await;
    assert_eq!(fake.states, vec![Ready, Unhealthy]);
    assert_eq!(
        fake.did,
        concat(vec![
            up(1, SetupMode::Full, Starting),
            vec![
                Did::AwaitTurn(Some(RecycleTrigger::Liveness)),
                Did::ShutDown
            ],
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn unhealthy_liveness_threshold_with_log_only_logs() {
    let cfg = config(HealthConfig {
        on_failure: OnFailure::Log,
        ..HealthConfig::default()
    });
    let fake = Fake::new(cfg, vec![failed(), failed(), failed(), failed()])
        .run()
        .await;
    assert_eq!(fake.states, vec![Ready, Unhealthy]);
    assert_eq!(
        fake.did,
        concat(vec![
            up(1, SetupMode::Full, Starting),
            vec![Did::Log(3), Did::ShutDown]
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn ready_liveness_threshold_with_exit_stops_the_worker_and_ends_defunct() {
    let cfg = config(HealthConfig {
        on_failure: OnFailure::Exit,
        ..HealthConfig::default()
    });
    let fake = Fake::new(cfg, vec![failed(), failed(), failed(), failed()])
        .run()
        .await;
    assert_eq!(fake.states, vec![Ready, Unhealthy, Defunct]);
    let stop = "health checks kept failing (on_failure: exit)";
    assert_eq!(
        fake.did,
        concat(vec![
            up(1, SetupMode::Full, Starting),
            vec![
                Did::FailInFlight(format!(
                    "prediction failed: the worker was stopped ({stop})"
                )),
                Did::Stop(stop.into())
            ]
        ])
    );
    assert_eq!(fake.script.len(), 1, "nothing is read after DEFUNCT");
}

#[tokio::test(start_paused = true)]
async fn ready_worker_exited_fails_in_flight_at_once_and_restarts_with_full_setup() {
    let fake = Fake::new(MachineConfig::default(), vec![Script::Exit("exit code 3")])
        .run()
        .await;
    let reason = "worker exited unexpectedly (exit code 3)";
    assert_eq!(fake.states, vec![Ready, Recycling, Ready]);
    assert_eq!(
        fake.did,
        concat(vec![
            up(1, SetupMode::Full, Starting),
            vec![
                Did::FailInFlight(format!("prediction failed: the {reason}")),
                Did::Stop(reason.into())
            ],
            up(2, SetupMode::Full, Recycling),
            vec![
                Did::Finished(RecycleTrigger::WorkerExit, true),
                Did::ShutDown
            ],
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn ready_worker_exited_past_the_restart_budget_ends_defunct() {
    let script = vec![Script::Exit("exit code 3"), Script::Exit("exit code 3")];
    let fake = Fake::new(with_budget(1), script).run().await;
    assert_eq!(fake.states, vec![Ready, Recycling, Ready, Defunct]);
    let tail = &fake.did[fake.did.len() - 3..];
    assert_eq!(tail[0], Did::Finished(RecycleTrigger::WorkerExit, false));
    assert_eq!(
        tail[1],
        Did::FailInFlight("prediction failed: the worker exited unexpectedly (exit code 3)".into())
    );
    assert!(matches!(&tail[2], Did::Stop(r) if r.starts_with("restart budget exhausted: 2")));
}

#[tokio::test(start_paused = true)]
async fn ready_all_slots_poisoned_restarts_with_full_setup_without_draining() {
    let poisoned = Script::Event(Event::AllSlotsPoisoned {
        last: "slot 0 channel closed by the worker".into(),
    });
    let fake = Fake::new(MachineConfig::default(), vec![poisoned])
        .run()
        .await;
    let reason = "every slot is poisoned (the last: slot 0 channel closed by the worker)";
    assert_eq!(
        fake.did,
        concat(vec![
            up(1, SetupMode::Full, Starting),
            vec![
                recycled("all_slots_poisoned", reason),
                Did::Stop(reason.into())
            ],
            up(2, SetupMode::Full, Recycling),
            vec![
                Did::Finished(RecycleTrigger::AllSlotsPoisoned, true),
                Did::ShutDown
            ],
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn ready_recycle_requested_drains_then_recycles_with_the_setup_asked_for() {
    for (rerun_setup, setup) in [(false, SetupMode::Recycle), (true, SetupMode::Full)] {
        let request = Script::Event(Event::RecycleRequested {
            trigger: RecycleTrigger::Model,
            reason: "CUDA context lost".into(),
            rerun_setup,
        });
        let fake = Fake::new(MachineConfig::default(), vec![request])
            .run()
            .await;
        assert_eq!(
            fake.did,
            concat(vec![
                up(1, SetupMode::Full, Starting),
                vec![
                    Did::Drain,
                    recycled("model", "CUDA context lost"),
                    Did::Stop("CUDA context lost".into())
                ],
                up(2, setup, Recycling),
                vec![Did::Finished(RecycleTrigger::Model, true), Did::ShutDown],
            ])
        );
    }
}

#[tokio::test(start_paused = true)]
async fn recycling_setup_failed_records_the_failed_recycle_and_ends_defunct() {
    let request = Script::Event(Event::RecycleRequested {
        trigger: RecycleTrigger::Admin,
        reason: "rotate".into(),
        rerun_setup: false,
    });
    let mut fake = Fake::new(MachineConfig::default(), vec![request]);
    fake.setups
        .extend([Ok(()), Err("setup failed: boom".into())]);
    let fake = fake.run().await;
    let reason = "the replacement worker (generation 2) failed: setup failed: boom";
    assert_eq!(fake.states, vec![Ready, Recycling, Defunct]);
    assert_eq!(fake.machine.reason.as_deref(), Some(reason));
    assert_eq!(
        &fake.did[fake.did.len() - 3..],
        &[
            Did::Start(2, SetupMode::Recycle),
            Did::Finished(RecycleTrigger::Admin, false),
            Did::Stop(reason.into())
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn recycling_after_healthy_failed_ends_defunct() {
    let exit = Script::Exit("killed by signal SIGKILL (9)");
    let mut fake = Fake::new(MachineConfig::default(), vec![exit]);
    fake.hooks.extend([
        Ok(()),
        Err("hooks.after_healthy failed: exited with code 4".into()),
    ]);
    let fake = fake.run().await;
    assert_eq!(fake.states, vec![Ready, Recycling, Defunct]);
    assert_eq!(
        &fake.did[fake.did.len() - 3..],
        &[
            Did::AfterHealthy(Recycling),
            Did::Finished(RecycleTrigger::WorkerExit, false),
            Did::Stop(
                "the replacement worker (generation 2) failed: hooks.after_healthy failed: exited with code 4"
                    .into()
            )
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_during_a_backoff_starts_no_worker() {
    let mut fake = Fake::new(
        MachineConfig::default(),
        vec![Script::Exit("exit code 1"), Script::Exit("exit code 1")],
    );
    fake.shutdown_in_backoff = true;
    let fake = fake.run().await;
    let tail = &fake.did[fake.did.len() - 2..];
    assert_eq!(
        tail,
        &[Did::Backoff(Duration::from_millis(500)), Did::ShutDown]
    );
    let starts = fake
        .did
        .iter()
        .filter(|d| matches!(d, Did::Start(..)))
        .count();
    assert_eq!(starts, 2);
}

#[tokio::test(start_paused = true)]
async fn a_final_state_another_task_reached_meanwhile_still_has_its_actions_carried_out() {
    // on_failure: exit at the first failed check, which lands while the executor is still busy with
    // the end of a crash restart.
    let cfg = config(HealthConfig {
        on_failure: OnFailure::Exit,
        liveness_threshold: 1,
        ..HealthConfig::default()
    });
    let mut fake = Fake::new(cfg, vec![Script::Exit("exit code 3")]);
    fake.race_after_recycle = Some(Event::CheckFailed {
        reason: FALSE.into(),
    });
    let fake = fake.run().await;
    assert_eq!(fake.states, vec![Ready, Recycling, Ready, Defunct]);
    let stop = "health checks kept failing (on_failure: exit)";
    assert_eq!(
        &fake.did[fake.did.len() - 3..],
        &[
            Did::Finished(RecycleTrigger::WorkerExit, true),
            Did::FailInFlight(format!(
                "prediction failed: the worker was stopped ({stop})"
            )),
            Did::Stop(stop.into())
        ]
    );
}
