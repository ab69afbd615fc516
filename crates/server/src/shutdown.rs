//! What starts a shutdown: SIGINT, SIGTERM (unless `--await-explicit-shutdown`), or `POST /shutdown`.
//! Whoever triggers it, the same drain runs once.

use tokio::sync::watch;

/// Shared handle that starts the shutdown and lets the server wait for it.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<Option<&'static str>>);

impl Default for ShutdownTrigger {
    fn default() -> Self {
        Self(watch::channel(None).0)
    }
}

impl ShutdownTrigger {
    /// Starts the shutdown; `reason` names what asked for it. Later triggers change nothing.
    pub fn trigger(&self, reason: &'static str) {
        self.0.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Resolves with the reason once a shutdown has been triggered.
    pub async fn triggered(&self) -> &'static str {
        let mut rx = self.0.subscribe();
        let reason = rx.wait_for(Option::is_some).await.ok().and_then(|r| *r);
        reason.unwrap_or("shutdown")
    }
}

/// Turns signals into a shutdown. With `await_explicit`, SIGTERM is logged and ignored (only SIGINT or
/// `POST /shutdown` stop the server), as Cog's `--await-explicit-shutdown` does.
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
}
