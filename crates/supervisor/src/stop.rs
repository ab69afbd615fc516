//! Stopping a worker: `shutdown` message → grace → SIGTERM to the group → grace → SIGKILL to the
//! group and every descendant → reap everything, reparented orphans included. A stopped worker
//! (SIGSTOP) cannot read the message: it gets SIGTERM and SIGCONT at once.

use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::spawn::KnownChildren;
use crate::worker::WorkerExit;
use crate::{child, process_tree};

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The worker had already exited.
    AlreadyExited,
    /// It exited after the shutdown message.
    Graceful,
    /// It needed SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
}

/// How long the worker may take to exit after SIGKILL before the stop gives up waiting.
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// How long the sweep waits for the orphans it killed to be reaped.
pub const SWEEP_WAIT: Duration = Duration::from_secs(5);

/// Waits until the worker has exited or `timeout` passes. True when it has exited.
async fn wait_exit(exit: &mut watch::Receiver<Option<WorkerExit>>, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, exit.wait_for(Option::is_some)).await,
        Ok(Ok(_))
    )
}

/// Runs the stop sequence for the worker `pid` (also its process group id). `send_shutdown` delivers
/// the shutdown message; it returns false when the control channel is already gone.
pub async fn stop_worker<F>(
    pid: u32,
    mut exit: watch::Receiver<Option<WorkerExit>>,
    grace: Duration,
    known: &KnownChildren,
    send_shutdown: F,
) -> StopOutcome
where
    F: std::future::Future<Output = bool>,
{
    let outcome = if exit.borrow().is_some() {
        StopOutcome::AlreadyExited
    } else if !is_stopped(pid) && send_shutdown.await && wait_exit(&mut exit, grace).await {
        StopOutcome::Graceful
    } else {
        let mut exited = Box::pin(async { exit.wait_for(Option::is_some).await.is_ok() });
        match child::terminate_tree(pid, grace, &mut exited).await {
            Some(_) => StopOutcome::Terminated,
            None => {
                if tokio::time::timeout(KILL_WAIT, exited).await.is_err() {
                    tracing::error!(pid, "worker did not exit 10 s after SIGKILL");
                }
                StopOutcome::Killed
            }
        }
    };
    sweep(pid, known).await;
    outcome
}

/// The process is stopped (state `T`, `t`: SIGSTOP, a tracer): it cannot read a shutdown message,
/// so the stop goes straight to SIGTERM (with SIGCONT, see [`child::terminate_tree`]).
fn is_stopped(pid: u32) -> bool {
    crate::procfs::read_stat(pid).is_some_and(|stat| matches!(stat.state, 'T' | 't'))
}

/// After the worker has exited: kill what is left of its process group and every orphan it left
/// behind (reparented to us, the subreaper), and reap them.
pub async fn sweep(pid: u32, known: &KnownChildren) {
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    let reaped = process_tree::kill_and_reap_orphans(known, SWEEP_WAIT).await;
    if reaped > 0 {
        tracing::info!(
            pid,
            reaped,
            "killed and reaped processes the worker left behind"
        );
    }
}
