//! The supervisor's part of the process's one cancellation tree, and the one tracker of every task it
//! starts.
//!
//! ```text
//!  process root (the server's; passed in to Supervisor::start_with_shutdown)
//!   └─ supervisor ........ cancelled by Supervisor::shutdown, or its parent: the lifecycle stops the
//!       │                  worker and ends; the health monitor and the orphan reaper end
//!       └─ generation G .. cancelled once worker G has been stopped
//!           └─ prediction  cancelled when the prediction leaves its slot (`slots::Running::ended`):
//!                          its predict_timeout and cancel watchers end with it (`watchers.rs`)
//! ```
//!
//! Every task the supervisor spawns (the lifecycle, the orphan reaper, the health monitor and the
//! checks it runs, each generation's exit watcher and channel readers, the per-prediction watchers) is
//! spawned on [`Scope::tasks`], so [`crate::Supervisor::shutdown`] waits for all of them, with a
//! deadline, instead of for a few handles.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A node of the cancellation tree and the tracker its tasks run on.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) token: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

impl Scope {
    /// The supervisor's scope: a child of `parent`, with a fresh tracker.
    pub(crate) fn under(parent: &CancellationToken) -> Self {
        Self {
            token: parent.child_token(),
            tasks: TaskTracker::new(),
        }
    }

    /// A child node (a generation, a prediction) whose tasks run on the same tracker.
    pub(crate) fn child(&self) -> Self {
        Self {
            token: self.token.child_token(),
            tasks: self.tasks.clone(),
        }
    }

    /// Spawns `task` on the tracker.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// [`Scope::spawn`], with a handle to wait for the task by. Dropping the handle does not stop the
    /// task: for work a caller waits on but must not be able to cut short by going away.
    pub(crate) fn spawn_joined<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task)
    }
}

/// Waits `limit`, unless `token` is cancelled first. True when the time ran out (the watched thing
/// still goes on), false when it ended.
pub(crate) async fn outlasts(token: &CancellationToken, limit: std::time::Duration) -> bool {
    tokio::select! {
        _ = token.cancelled() => false,
        _ = tokio::time::sleep(limit) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_watch_ends_the_moment_its_token_is_cancelled() {
        let token = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let watch = tokio::spawn({
            let token = token.clone();
            async move { outlasts(&token, Duration::from_secs(3600)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        token.cancel();
        assert!(!watch.await.expect("join"), "the token ended the watch");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_that_is_not_cancelled_runs_out() {
        let token = CancellationToken::new();
        assert!(outlasts(&token, Duration::from_secs(30)).await);
        assert!(!token.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_the_supervisor_ends_every_node_below_it() {
        let root = CancellationToken::new();
        let supervisor = Scope::under(&root);
        let generation = supervisor.child();
        let prediction = generation.child();
        for scope in [&supervisor, &generation, &prediction] {
            let token = scope.token.clone();
            scope.spawn(async move { token.cancelled().await });
        }
        assert_eq!(supervisor.tasks.len(), 3, "one tracker for every node");
        // A prediction ending leaves its generation and the supervisor alone.
        prediction.token.cancel();
        tokio::task::yield_now().await;
        assert!(!generation.token.is_cancelled());
        root.cancel();
        supervisor.tasks.close();
        tokio::time::timeout(Duration::from_secs(1), supervisor.tasks.wait())
            .await
            .expect("every task ended");
    }
}
