//! The Kubernetes ready file: with `KUBERNETES_SERVICE_HOST` set, `/var/run/cog/ready` exists exactly
//! while the worker is READY (Cog creates it once and never removes it, so a pod whose worker went bad
//! stayed "ready" to an exec probe).

use std::path::PathBuf;

use cogvisor_supervisor::HealthStatus;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where Cog's images expect it.
pub const READY_FILE: &str = "/var/run/cog/ready";

/// True when running under Kubernetes.
pub fn enabled(env: crate::config::Env<'_>) -> bool {
    env("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty())
}

/// Creates or removes `path` as the health machine enters or leaves READY, until the supervisor goes
/// or `shutdown` (the process root, cancelled as the worker is stopped) is cancelled; the file is gone
/// then.
pub async fn follow(
    mut status: watch::Receiver<HealthStatus>,
    path: PathBuf,
    shutdown: CancellationToken,
) {
    loop {
        let ready = *status.borrow_and_update() == HealthStatus::Ready;
        sync(&path, ready).await;
        let changed = tokio::select! {
            changed = status.changed() => changed.is_ok(),
            _ = shutdown.cancelled() => false,
        };
        if !changed {
            sync(&path, false).await;
            return;
        }
    }
}

/// Makes the file exist or not, with `tokio::fs` (a status change must not hold an async thread).
async fn sync(path: &std::path::Path, ready: bool) {
    let result = if ready {
        if let Some(dir) = path.parent() {
            if let Err(e) = tokio::fs::create_dir_all(dir).await {
                tracing::warn!(path = %dir.display(), error = %e, "cannot create the ready file's directory");
            }
        }
        tokio::fs::write(path, b"").await
    } else {
        match tokio::fs::remove_file(path).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    };
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), ready, error = %e, "cannot update the ready file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_exists_only_while_ready() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/cog/ready");
        let (tx, rx) = watch::channel(HealthStatus::Starting);
        let task = tokio::spawn(follow(rx, path.clone(), CancellationToken::new()));
        let wait_for = |want: bool| {
            let path = path.clone();
            async move {
                for _ in 0..500 {
                    if path.exists() == want {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                panic!("ready file exists={} never became {want}", path.exists());
            }
        };
        wait_for(false).await;
        tx.send_replace(HealthStatus::Ready);
        wait_for(true).await;
        tx.send_replace(HealthStatus::Recycling);
        wait_for(false).await;
        tx.send_replace(HealthStatus::Ready);
        wait_for(true).await;
        drop(tx);
        task.await.expect("follow ends");
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn cancelling_the_token_removes_the_file_and_ends_the_follow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ready");
        let (tx, rx) = watch::channel(HealthStatus::Ready);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(follow(rx, path.clone(), shutdown.clone()));
        for _ in 0..500 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(path.exists(), "the file appears while READY");
        shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("follow ends on the token")
            .expect("join");
        assert!(!path.exists());
        // The status sender still lives: the token alone ended it.
        drop(tx);
    }
}
