//! Spawning the worker from a thread that lives as long as the supervisor.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process. tokio's
//! blocking-pool threads exit when idle, and a worker spawned from one would be killed a few seconds
//! later. So every worker is spawned by one dedicated thread that never exits before the process does;
//! it enters the tokio runtime so the child is a `tokio::process::Child` that can be awaited.
//!
//! The same thread registers every pid it spawns in [`KnownChildren`] while holding its lock, so the
//! orphan reaper ([`crate::process_tree`]) never reaps a child that tokio is waiting for.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use crate::SupervisorError;

/// The pids the supervisor spawned itself (tokio owns their exit status). Anything else that is our
/// child is a reparented orphan, which the reaper may collect.
#[derive(Debug, Clone, Default)]
pub struct KnownChildren(Arc<Mutex<HashSet<u32>>>);

impl KnownChildren {
    /// Runs `f` with the set locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut HashSet<u32>) -> R) -> R {
        // A poisoned lock only means another thread panicked while holding it; the set of pids is
        // still meaningful, so keep using it.
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    pub fn contains(&self, pid: u32) -> bool {
        self.with(|set| set.contains(&pid))
    }

    pub fn forget(&self, pid: u32) {
        self.with(|set| set.remove(&pid));
    }
}

type Reply = oneshot::Sender<std::io::Result<tokio::process::Child>>;

/// Handle to the spawner thread.
#[derive(Debug, Clone)]
pub struct Spawner {
    requests: std::sync::mpsc::Sender<(tokio::process::Command, Reply)>,
    known: KnownChildren,
}

impl Spawner {
    /// Starts the spawner thread. Must be called from inside a tokio runtime.
    pub fn start(known: KnownChildren) -> Result<Self, SupervisorError> {
        let handle = tokio::runtime::Handle::current();
        let (tx, rx) = std::sync::mpsc::channel::<(tokio::process::Command, Reply)>();
        let thread_known = known.clone();
        std::thread::Builder::new()
            .name("cogvisor-spawner".into())
            .spawn(move || {
                let _runtime = handle.enter();
                while let Ok((mut command, reply)) = rx.recv() {
                    let result = thread_known.with(|set| {
                        let child = command.spawn()?;
                        if let Some(pid) = child.id() {
                            set.insert(pid);
                        }
                        Ok(child)
                    });
                    // The requester may have given up; the child is then dropped and killed
                    // (kill_on_drop), which is what we want.
                    let _ = reply.send(result);
                }
                // The sender side lives in the supervisor for the life of the process; reaching here
                // means the process is ending. Park so the thread (and so pdeathsig) outlives any
                // worker still being stopped.
                loop {
                    std::thread::park();
                }
            })
            .map_err(|source| SupervisorError::Spawn {
                python: "(spawner thread)".into(),
                source,
            })?;
        Ok(Self {
            requests: tx,
            known,
        })
    }

    pub fn known(&self) -> &KnownChildren {
        &self.known
    }

    /// Spawns `command` in its own process group with SIGKILL as its parent-death signal.
    pub async fn spawn(
        &self,
        mut command: tokio::process::Command,
    ) -> Result<tokio::process::Child, SpawnFailure> {
        command.process_group(0).kill_on_drop(true);
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
        // calls are allowed. It makes two raw syscalls (prctl, getppid) and touches no allocator,
        // lock or shared state; `parent` is a plain integer copied in.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
                // The supervisor may have died between fork and prctl: then nobody would kill us.
                if nix::unistd::getppid().as_raw() as u32 != parent {
                    return Err(std::io::Error::other("supervisor exited during spawn"));
                }
                Ok(())
            });
        }
        let (reply, response) = oneshot::channel();
        self.requests
            .send((command, reply))
            .map_err(|_| SpawnFailure::SpawnerGone)?;
        response
            .await
            .map_err(|_| SpawnFailure::SpawnerGone)?
            .map_err(SpawnFailure::Io)
    }
}

/// Why a spawn failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnFailure {
    #[error("{0}")]
    Io(#[source] std::io::Error),
    #[error("the spawner thread is gone")]
    SpawnerGone,
}
