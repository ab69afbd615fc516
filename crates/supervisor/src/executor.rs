//! The machine decides, the shell executes: the one path that carries out every [`Action`] the health
//! machine returns.
//!
//! ```text
//!   boot ──► [StartWorker 1] ──► execute ──► effect ──► event ──► apply ──► more actions ──┐
//!                                   ▲                                                      │
//!                                   └──────────────────────────────────────────────────────┘
//!   then, until the machine is final or the server shuts down:
//!     next() ──► actions another task got from `apply` (a check, model code, a slot, admin)
//!            ──► the worker exited                 ──► apply(WorkerExited) ──► execute
//!            ──► shutdown                          ──► shut_down()
//! ```
//!
//! [`execute`] matches every action without a wildcard arm, so a new action cannot be forgotten.
//! What an effect touches (processes, hooks, predictions, the shared state) is behind [`Effects`], so
//! the same executor runs the real worker ([`crate::lifecycle`]) and, in the tests below, a fake one
//! that walks every row of the machine's table. One executor drives one machine; nothing here is
//! global, so a pool of workers can run one each.

use std::collections::VecDeque;
use std::time::Duration;

use cogvisor_protocol::SetupMode;

use crate::health_machine::{Action, Event, RecycleTrigger};

/// The server is shutting down: the effect stopped early, and nothing more is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShuttingDown;

/// An effect that a shutdown may cut short.
pub(crate) type Step<T> = Result<T, ShuttingDown>;

/// What woke the executor between actions.
#[derive(Debug)]
pub(crate) enum Wake {
    /// Another task applied an event; the machine returned these.
    Actions(Vec<Action>),
    /// The serving worker exited; `exit` names the code or signal.
    WorkerExited {
        exit: String,
    },
    Shutdown,
}

/// Everything the executor does to the world.
pub(crate) trait Effects {
    /// Feeds `event` to the machine (under the shared lock, at the current time) and returns its
    /// actions.
    fn apply(&mut self, event: Event) -> Vec<Action>;
    /// The machine is in a final state (SETUP_FAILED, DEFUNCT): nothing will happen any more.
    fn is_final(&self) -> bool;
    /// Waits for the next thing to do.
    async fn next(&mut self) -> Wake;
    /// Actions another task already sent, without waiting.
    fn queued(&mut self) -> Option<Vec<Action>>;
    /// Spawns generation `generation` and runs `setup`; `Err` names why it could not be set up.
    async fn start_worker(&mut self, generation: u64, setup: SetupMode)
        -> Step<Result<(), String>>;
    /// Runs `after_healthy`; `Err` when it failed and that fails the start (`hooks.on_failure: fail`).
    async fn run_after_healthy(&mut self) -> Result<(), String>;
    /// Lets in-flight predictions finish up to the drain timeout, then asks the worker to cancel the rest.
    async fn drain(&mut self) -> Step<()>;
    fn fail_in_flight(&mut self, error: &str);
    /// Stops the worker's whole tree (`before_stop` first if it still lives).
    async fn stop_worker(&mut self, reason: &str);
    async fn backoff(&mut self, after: Duration) -> Step<()>;
    fn log_persistent_failure(&mut self, failures: u32, reason: &str);
    fn recycle_finished(&mut self, trigger: RecycleTrigger, duration: Duration, succeeded: bool);
    /// Asks the pool for this worker's turn to carry out the recycle its machine awaits.
    fn await_turn(&mut self);
    /// Admits nothing more to the worker, for `reason`.
    fn close_admission(&mut self, reason: &str);
    /// Stops what runs for a server shutdown: in-flight predictions fail, the worker is stopped.
    async fn shut_down(&mut self);
}

/// Runs one machine from boot until it is final or the server shuts down.
pub(crate) async fn run<E: Effects>(fx: &mut E, boot: Vec<Action>) {
    if execute(fx, boot).await.is_err() {
        return fx.shut_down().await;
    }
    loop {
        if fx.is_final() {
            // Another task may have moved the machine to its final state while this one was busy:
            // what it decided (stop the worker, fail what runs) is carried out all the same.
            while let Some(actions) = fx.queued() {
                if execute(fx, actions).await.is_err() {
                    return fx.shut_down().await;
                }
            }
            return;
        }
        let actions = match fx.next().await {
            Wake::Actions(actions) => actions,
            Wake::WorkerExited { exit } => {
                tracing::error!(exit, "worker exited unexpectedly");
                fx.apply(Event::WorkerExited { exit })
            }
            Wake::Shutdown => return fx.shut_down().await,
        };
        if execute(fx, actions).await.is_err() {
            return fx.shut_down().await;
        }
    }
}

/// Carries out `actions` in order. An effect that reports an outcome feeds it to the machine, and
/// the actions that returns are carried out next, until none is left.
pub(crate) async fn execute<E: Effects>(fx: &mut E, actions: Vec<Action>) -> Step<()> {
    let mut queue = VecDeque::from(actions);
    while let Some(action) = queue.pop_front() {
        tracing::debug!(?action, "executing");
        let outcome = match action {
            Action::StartWorker { generation, setup } => {
                Some(match fx.start_worker(generation, setup).await? {
                    Ok(()) => Event::SetupSucceeded,
                    Err(reason) => Event::SetupFailed { reason },
                })
            }
            Action::RunAfterHealthyHook => Some(match fx.run_after_healthy().await {
                Ok(()) => Event::AfterHealthyDone,
                Err(reason) => Event::SetupFailed { reason },
            }),
            Action::Drain => {
                fx.drain().await?;
                None
            }
            Action::FailInFlight { error } => {
                fx.fail_in_flight(&error);
                None
            }
            Action::StopWorker { reason } => {
                fx.stop_worker(&reason).await;
                None
            }
            Action::Backoff { after } => {
                tracing::info!(?after, "waiting before starting the next worker");
                fx.backoff(after).await?;
                None
            }
            Action::LogPersistentFailure { failures, reason } => {
                fx.log_persistent_failure(failures, &reason);
                None
            }
            Action::RecycleFinished {
                trigger,
                duration,
                succeeded,
            } => {
                fx.recycle_finished(trigger, duration, succeeded);
                None
            }
            Action::AwaitTurn => {
                fx.await_turn();
                None
            }
            Action::CloseAdmission { reason } => {
                fx.close_admission(&reason);
                None
            }
        };
        if let Some(event) = outcome {
            queue.extend(fx.apply(event));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
