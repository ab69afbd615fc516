//! Health checks: the model's `healthcheck()` (asked of the worker with `healthcheck` /
//! `healthcheck_result`) and the optional `health.command`, coalesced so that concurrent callers share
//! one check in flight, and run in the background every `health.period` when set.
//!
//! Every result feeds the health machine; its actions (a recycle for the liveness threshold, a stop for
//! `on_failure: exit`, a log line) go to the executor ([`crate::supervisor::Inner::handle`]).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use cogvisor_protocol::{ControlRequest, HealthcheckStatus};
use tokio::sync::{oneshot, watch};

use crate::child::SupervisedChild;
use crate::health_machine::Event;
use crate::spawn::Spawner;
use crate::{HealthStatus, Supervisor};

/// Cog's text when the worker cannot answer.
const CHANNEL_CLOSED: &str = "Healthcheck error: protocol error: healthcheck channel closed";

/// The state shared by checks: the one in flight and the worker's pending answers.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    /// Set while a check runs; callers that arrive meanwhile wait for it to become `true`.
    in_flight: StdMutex<Option<watch::Receiver<bool>>>,
    /// `healthcheck` ids sent to the worker, waiting for their `healthcheck_result`.
    waiters: StdMutex<HashMap<String, oneshot::Sender<WorkerAnswer>>>,
    counter: AtomicU64,
}

impl Checks {
    /// Delivers the worker's answer to the check that asked. An answer nobody waits for (it timed out)
    /// is dropped.
    pub(crate) fn answer(&self, id: &str, status: HealthcheckStatus, error: Option<String>) {
        let waiter = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        match waiter {
            Some(tx) => {
                let _ = tx.send((status, error));
            }
            None => tracing::debug!(id, "late healthcheck result dropped"),
        }
    }

    fn register(
        &self,
    ) -> (
        String,
        oneshot::Receiver<(HealthcheckStatus, Option<String>)>,
    ) {
        let id = format!("hc_{}", self.counter.fetch_add(1, Ordering::Relaxed) + 1);
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), tx);
        (id, rx)
    }

    fn forget(&self, id: &str) {
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// The worker's `healthcheck_result`: the status and the error text.
type WorkerAnswer = (HealthcheckStatus, Option<String>);

/// One check's outcome: `None` healthy, else the failure text shown as `user_healthcheck_error`.
pub(crate) type CheckOutcome = Option<String>;

impl Supervisor {
    /// Runs a health check now, or waits for the one already running, and feeds the result to the
    /// health machine. Does nothing unless a worker is serving (READY or UNHEALTHY). The check runs in its
    /// own task, so a caller that goes away does not cut it short.
    pub async fn check_health(&self) {
        // Nothing to ask anyone: the check passes at once, without a task or a wait (the common case,
        // polled by platforms many times a second).
        if self.inner.config.health_command.is_none() && !self.inner.lock().has_healthcheck {
            self.pass_trivial_check();
            return;
        }
        let mut done = {
            let mut in_flight = self
                .inner
                .checks
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match in_flight.as_ref() {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(false);
                    *in_flight = Some(rx.clone());
                    let this = self.clone();
                    self.inner.scope.spawn(async move {
                        this.run_check().await;
                        *this
                            .inner
                            .checks
                            .in_flight
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = None;
                        let _ = tx.send(true);
                    });
                    rx
                }
            }
        };
        let _ = done.wait_for(|d| *d).await;
    }

    /// A check with no healthcheck and no command: healthy, fed to the machine like any other result.
    fn pass_trivial_check(&self) {
        let mut state = self.inner.lock();
        let serving = matches!(
            state.machine.state,
            HealthStatus::Ready | HealthStatus::Unhealthy
        );
        if serving {
            state.user_healthcheck_error = None;
            self.inner.handle(&mut state, Event::CheckPassed);
        }
    }

    /// Starts the background monitor when `health.period` is set.
    pub(crate) fn spawn_monitor(&self) {
        let Some(period) = self.inner.config.health_period else {
            return;
        };
        let this = self.clone();
        let shutdown = self.inner.scope.token.clone();
        self.inner.scope.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                let state = this.inner.lock().machine.state;
                match state {
                    HealthStatus::SetupFailed | HealthStatus::Defunct => return,
                    HealthStatus::Ready | HealthStatus::Unhealthy => this.check_health().await,
                    _ => {}
                }
            }
        });
    }

    async fn run_check(&self) {
        let (generation, has_healthcheck) = {
            let state = self.inner.lock();
            if !matches!(
                state.machine.state,
                HealthStatus::Ready | HealthStatus::Unhealthy
            ) {
                return;
            }
            match &state.generation {
                Some(g) => (g.clone(), state.has_healthcheck),
                None => return,
            }
        };
        let started = std::time::Instant::now();
        let mut outcome = if has_healthcheck {
            self.user_healthcheck(&generation).await
        } else {
            None
        };
        if outcome.is_none() {
            if let Some(argv) = &self.inner.config.health_command {
                outcome =
                    run_command(&self.inner.spawner, argv, self.inner.config.health_timeout).await;
            }
        }
        tracing::debug!(elapsed = ?started.elapsed(), ?outcome, "health check done");
        self.inner
            .observe(crate::SupervisorEvent::HealthcheckFinished {
                duration: started.elapsed(),
                healthy: outcome.is_none(),
            });
        // A result for a worker that has since been replaced says nothing about the new one.
        let mut state = self.inner.lock();
        if !crate::supervisor::is_current(&state, &generation) {
            return;
        }
        state.user_healthcheck_error = outcome.clone();
        let event = match outcome {
            None => Event::CheckPassed,
            Some(reason) => Event::CheckFailed { reason },
        };
        self.inner.handle(&mut state, event);
    }

    /// Asks the worker to run the model's `healthcheck()`. The worker bounds it by `health.timeout`
    /// itself; this side allows one second more for the answer to arrive.
    async fn user_healthcheck(&self, generation: &crate::worker::Generation) -> CheckOutcome {
        let checks = &self.inner.checks;
        let (id, answer) = checks.register();
        if !generation
            .send_control(ControlRequest::Healthcheck { id: id.clone() })
            .await
        {
            checks.forget(&id);
            return Some(CHANNEL_CLOSED.into());
        }
        let timeout = self.inner.config.health_timeout;
        // A worker that dies meanwhile will never answer: say so at once instead of waiting out the timeout.
        let mut exit = generation.exit.clone();
        let answer = async {
            tokio::select! {
                a = answer => a.map_err(|_| ()),
                _ = exit.wait_for(Option::is_some) => Err(()),
            }
        };
        match tokio::time::timeout(timeout + Duration::from_secs(1), answer).await {
            Ok(Ok((HealthcheckStatus::Healthy, _))) => None,
            Ok(Ok((HealthcheckStatus::Unhealthy, error))) => Some(format!(
                "Healthcheck failed: {}",
                error.unwrap_or_else(|| "user-defined healthcheck failed".into())
            )),
            Ok(Err(())) => {
                checks.forget(&id);
                Some(CHANNEL_CLOSED.into())
            }
            Err(_) => {
                checks.forget(&id);
                Some(format!(
                    "Healthcheck failed: user-defined healthcheck timed out after {:.1} seconds",
                    timeout.as_secs_f64()
                ))
            }
        }
    }
}

/// Runs `health.command`: exit 0 is healthy. It runs as a [`SupervisedChild`] in its own process group,
/// killed whole at the timeout.
pub(crate) async fn run_command(
    spawner: &Spawner,
    argv: &[String],
    timeout: Duration,
) -> CheckOutcome {
    let Some((program, args)) = argv.split_first() else {
        return Some("Healthcheck failed: health.command is empty".into());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = match SupervisedChild::spawn(spawner, command).await {
        Ok(c) => c.with_deadline(timeout, Duration::ZERO),
        Err(e) => return Some(format!("Healthcheck failed: cannot run {program:?}: {e}")),
    };
    let stderr = child
        .take_stderr()
        .map(|err| tokio::spawn(stderr_tail(err)));
    let exited = child.wait().await;
    if exited.exit.success() {
        return None;
    }
    // The pipe closes when the command's group is gone; something that left the group could hold it.
    let tail = match stderr {
        Some(task) => tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => String::new(),
    };
    Some(format!(
        "Healthcheck failed: health command {exited}{}",
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        }
    ))
}

/// The last 500 characters of what the command wrote to stderr, trimmed. Reads to the end, keeping only
/// the last 4 KiB.
async fn stderr_tail(mut stderr: tokio::process::ChildStderr) -> String {
    use tokio::io::AsyncReadExt;
    const KEEP: usize = 4096;
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * KEEP {
            kept.drain(..kept.len() - KEEP);
        }
    }
    let text = String::from_utf8_lossy(&kept);
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(500);
    text.chars().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    async fn run_command(argv: &[String], timeout: Duration) -> CheckOutcome {
        let spawner = Spawner::start(crate::spawn::KnownChildren::default()).expect("spawner");
        super::run_command(&spawner, argv, timeout).await
    }

    #[tokio::test]
    async fn a_command_that_exits_zero_is_healthy() {
        assert_eq!(
            run_command(&argv(&["true"]), Duration::from_secs(5)).await,
            None
        );
    }

    #[tokio::test]
    async fn a_failing_command_names_its_exit_code_and_stderr() {
        let out = run_command(
            &argv(&["sh", "-c", "echo disk full >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .await
        .expect("unhealthy");
        assert!(out.contains("exited with code 3"), "{out}");
        assert!(out.contains("disk full"), "{out}");
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_at_the_timeout() {
        let started = std::time::Instant::now();
        let out = run_command(&argv(&["sleep", "30"]), Duration::from_millis(200))
            .await
            .expect("unhealthy");
        assert!(out.contains("timed out"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let out = run_command(&argv(&["/nonexistent/check"]), Duration::from_secs(5))
            .await
            .expect("unhealthy");
        assert!(out.contains("/nonexistent/check"), "{out}");
    }

    #[test]
    fn answers_reach_the_check_that_asked_and_late_ones_are_dropped() {
        let checks = Checks::default();
        let (id, mut rx) = checks.register();
        assert_eq!(id, "hc_1");
        checks.answer("hc_99", HealthcheckStatus::Healthy, None);
        assert!(rx.try_recv().is_err());
        checks.answer(&id, HealthcheckStatus::Unhealthy, Some("boom".into()));
        assert_eq!(
            rx.try_recv().expect("answer"),
            (HealthcheckStatus::Unhealthy, Some("boom".into()))
        );
    }
}
