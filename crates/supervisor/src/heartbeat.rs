//! The runtime heartbeat: is the worker process able to run at all, whatever its model does?
//!
//! Once a generation is ready, the supervisor sends `heartbeat {seq}` on the control channel every
//! `health.heartbeat_interval`; the worker answers `heartbeat_ack {seq}` from the thread that reads
//! the control channel, so a worker busy in a long `predict()` still answers. A worker that answers
//! nothing for `health.heartbeat_timeout` (stopped with SIGSTOP, a whole interpreter deadlocked, the
//! machine swapping it out) feeds the health machine [`Event::HeartbeatMissed`]: the first miss is
//! UNHEALTHY, the second in a row (another timeout of silence) recycles it as an unplanned
//! replacement under the restart budget. An answer after a miss is [`Event::HeartbeatAnswered`].
//!
//! [`Watch`] is the decision, pure and driven by the times passed in; [`Supervisor::spawn_heartbeat`]
//! is the task that sends, listens and feeds the machine.

use std::sync::Arc;
use std::time::Duration;

use cogvisor_protocol::ControlRequest;
use tokio::time::Instant;

use crate::health_machine::Event;
use crate::supervisor::is_current;
use crate::worker::Generation;
use crate::Supervisor;

/// `health.heartbeat_interval` and `health.heartbeat_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// How often a heartbeat is sent.
    pub interval: Duration,
    /// Silence after which the worker has missed the heartbeat.
    pub timeout: Duration,
}

impl Default for HeartbeatConfig {
    /// One a second; a miss after 10 s of silence, when coglet 0.23.1 goes UNHEALTHY too.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What the heartbeat knows of one worker: when it last heard from it, and whether it has missed.
#[derive(Debug, Clone)]
pub struct Watch {
    timeout: Duration,
    /// The last answer (or the start); silence is counted from here.
    heard: Instant,
    /// The last miss reported; the next one comes a timeout after it.
    reported: Option<Instant>,
}

impl Watch {
    pub fn new(timeout: Duration, now: Instant) -> Self {
        Self {
            timeout,
            heard: now,
            reported: None,
        }
    }

    /// A tick at `now`: a miss once the worker has been silent for the timeout, and again every
    /// further timeout of silence.
    pub fn tick(&mut self, now: Instant) -> Option<Event> {
        let since = self.reported.unwrap_or(self.heard);
        if now.saturating_duration_since(since) < self.timeout {
            return None;
        }
        self.reported = Some(now);
        Some(Event::HeartbeatMissed {
            silent: now.saturating_duration_since(self.heard),
        })
    }

    /// An answer at `now`: it ends a miss, if there was one.
    pub fn answered(&mut self, now: Instant) -> Option<Event> {
        self.heard = now;
        self.reported.take().map(|_| Event::HeartbeatAnswered)
    }
}

impl Supervisor {
    /// Runs the heartbeat of `generation` on its node of the cancellation tree: it ends when the
    /// worker is stopped, or when another generation is current.
    pub(crate) fn spawn_heartbeat(&self, generation: Arc<Generation>) {
        let Some(config) = self.inner.config.heartbeat else {
            return;
        };
        let this = self.clone();
        self.inner.scope.spawn(async move {
            let mut acks = generation.heartbeat_acks.subscribe();
            let mut watch = Watch::new(config.timeout, Instant::now());
            let mut ticks = tokio::time::interval(config.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            loop {
                let event = tokio::select! {
                    _ = generation.token.cancelled() => return,
                    changed = acks.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        watch.answered(Instant::now())
                    }
                    _ = ticks.tick() => {
                        let missed = watch.tick(Instant::now());
                        seq += 1;
                        // A full pipe (a worker that stopped reading) times out inside; the next
                        // tick tries again.
                        generation.send_control(ControlRequest::Heartbeat { seq }).await;
                        missed
                    }
                };
                let Some(event) = event else { continue };
                match &event {
                    Event::HeartbeatMissed { silent } => {
                        tracing::error!(
                            generation = generation.number,
                            pid = generation.pid,
                            silent_seconds = silent.as_secs_f64(),
                            "the worker does not answer the runtime heartbeat"
                        );
                        this.inner.observe(crate::SupervisorEvent::HeartbeatMissed);
                    }
                    _ => tracing::warn!(
                        generation = generation.number,
                        "the worker answers the runtime heartbeat again"
                    ),
                }
                let mut state = this.inner.lock();
                if !is_current(&state, &generation) {
                    return;
                }
                this.inner.handle(&mut state, event);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn silence_shorter_than_the_timeout_is_no_miss() {
        let t0 = Instant::now();
        let mut w = Watch::new(TIMEOUT, t0);
        assert_eq!(w.tick(secs(t0, 9)), None);
        assert_eq!(w.answered(secs(t0, 9)), None);
        assert_eq!(w.tick(secs(t0, 18)), None);
    }

    #[test]
    fn silence_of_the_timeout_is_a_miss_then_one_per_further_timeout() {
        let t0 = Instant::now();
        let mut w = Watch::new(TIMEOUT, t0);
        let miss = |s| {
            Some(Event::HeartbeatMissed {
                silent: Duration::from_secs(s),
            })
        };
        assert_eq!(w.tick(secs(t0, 10)), miss(10));
        assert_eq!(w.tick(secs(t0, 15)), None);
        assert_eq!(w.tick(secs(t0, 20)), miss(20));
    }

    #[test]
    fn an_answer_after_a_miss_ends_it_and_restarts_the_count() {
        let t0 = Instant::now();
        let mut w = Watch::new(TIMEOUT, t0);
        assert!(w.tick(secs(t0, 11)).is_some());
        assert_eq!(w.answered(secs(t0, 12)), Some(Event::HeartbeatAnswered));
        assert_eq!(w.answered(secs(t0, 13)), None);
        assert_eq!(w.tick(secs(t0, 21)), None);
        assert!(w.tick(secs(t0, 23)).is_some());
    }
}
