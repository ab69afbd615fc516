//! What starts a shutdown (SIGINT, SIGTERM unless `--await-explicit-shutdown`, `POST /shutdown`) and
//! the drain that follows, once, whoever asked.
//!
//! The process has one cancellation tree (the supervisor's part is `crates/supervisor/src/scope.rs`):
//!
//! ```text
//!  process root ............ cancelled by the drain once predictions and webhooks had their time
//!   ├─ drain (ShutdownTrigger)  cancelled by a signal or POST /shutdown: nothing new is admitted, the
//!   │                           drain begins, the signal listener ends
//!   ├─ ready file ........... follows the root: removed when it is cancelled
//!   └─ supervisor ........... stops the worker; below it a token per generation and per prediction
//! ```
//!
//! The drain token is a child of the root, so cancelling the root (a test, say) starts the drain as
//! well as stopping everything below it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cogvisor_supervisor::WorkerPool;
use tokio_util::sync::CancellationToken;

use crate::predictions::PredictionService;

/// Shared handle that starts the shutdown and lets the server wait for it: the drain token and the
/// reason the first trigger gave.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    token: CancellationToken,
    reason: Arc<OnceLock<&'static str>>,
}

impl Default for ShutdownTrigger {
    fn default() -> Self {
        Self::under(&CancellationToken::new())
    }
}

impl ShutdownTrigger {
    /// A trigger whose token is a child of the process root `process`.
    pub fn under(process: &CancellationToken) -> Self {
        Self {
            token: process.child_token(),
            reason: Arc::default(),
        }
    }

    /// Starts the shutdown; `reason` names what asked for it. Later triggers change nothing.
    pub fn trigger(&self, reason: &'static str) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// Resolves with the reason once a shutdown has been triggered.
    pub async fn triggered(&self) -> &'static str {
        self.token.cancelled().await;
        self.reason.get().copied().unwrap_or("shutdown")
    }

    /// The drain token: cancelled once a shutdown has been triggered.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

/// Turns signals into a shutdown. With `await_explicit`, SIGTERM is logged and ignored (only SIGINT or
/// `POST /shutdown` stop the server), as Cog's `--await-explicit-shutdown` does. Ends once a shutdown
/// has been triggered (a later signal would change nothing; the handlers stay installed, so it does
/// not kill the process either).
pub async fn listen_for_signals(trigger: ShutdownTrigger, await_explicit: bool) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; only POST /shutdown stops the server");
        return;
    };
    loop {
        tokio::select! {
            _ = trigger.token.cancelled() => return,
            _ = term.recv() => {
                if await_explicit {
                    tracing::info!("SIGTERM ignored: --await-explicit-shutdown is set (POST /shutdown or SIGINT stop the server)");
                    continue;
                }
                trigger.trigger("SIGTERM");
            }
            _ = int.recv() => trigger.trigger("SIGINT"),
        }
    }
}

/// How long terminal webhooks may take to deliver during shutdown.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);

/// The shutdown drain: what it waits on and for how long.
#[derive(Debug, Clone)]
pub struct Drain {
    pub predictions: Arc<PredictionService>,
    pub supervisor: WorkerPool,
    /// The process root: cancelled once the drain is over, which stops the supervisor.
    pub process: CancellationToken,
    /// How long running predictions may take to finish (`shutdown_drain_timeout`).
    pub deadline: Duration,
    /// How long cancelled predictions may take to end (`cancel_grace`).
    pub cancel_grace: Duration,
}

impl Drain {
    /// Waits for `trigger`, then: nothing new is admitted, running predictions (async ones too) get
    /// `deadline` to finish and the rest are cancelled, terminal webhooks get [`DELIVERY_DEADLINE`],
    /// and last the root is cancelled and the supervisor stopped (whatever still runs ends with the
    /// worker, so no HTTP request waits forever).
    pub async fn run(self, trigger: ShutdownTrigger) {
        let reason = trigger.triggered().await;
        tracing::info!(
            reason,
            "shutting down: admitting nothing new, draining running predictions"
        );
        self.predictions
            .drain(self.deadline, self.cancel_grace, reason)
            .await;
        self.predictions.wait_deliveries(DELIVERY_DEADLINE).await;
        self.process.cancel();
        self.supervisor.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_trigger_wins() {
        let trigger = ShutdownTrigger::default();
        let waiter = trigger.clone();
        let waiting = tokio::spawn(async move { waiter.triggered().await });
        trigger.trigger("POST /shutdown");
        trigger.trigger("SIGTERM");
        assert_eq!(waiting.await.expect("join"), "POST /shutdown");
        assert_eq!(trigger.triggered().await, "POST /shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_the_process_root_starts_the_drain() {
        let root = CancellationToken::new();
        let trigger = ShutdownTrigger::under(&root);
        let waiting = tokio::spawn({
            let trigger = trigger.clone();
            async move { trigger.triggered().await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "nothing triggered it yet");
        root.cancel();
        assert_eq!(waiting.await.expect("join"), "shutdown");
        assert!(trigger.token().is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_leaves_the_process_root_alone() {
        let root = CancellationToken::new();
        let trigger = ShutdownTrigger::under(&root);
        trigger.trigger("POST /shutdown");
        assert!(trigger.token().is_cancelled());
        assert!(
            !root.is_cancelled(),
            "the root goes only once the drain is over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_signal_listener_ends_once_a_shutdown_is_triggered() {
        let trigger = ShutdownTrigger::default();
        let tasks = tokio_util::task::TaskTracker::new();
        tasks.spawn(listen_for_signals(trigger.clone(), false));
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(tasks.len(), 1, "listening until something triggers");
        trigger.trigger("POST /shutdown");
        tasks.close();
        tokio::time::timeout(Duration::from_secs(1), tasks.wait())
            .await
            .expect("the listener ended");
    }
}
