//! The supervisor's errors.

use std::path::PathBuf;

use crate::HealthStatus;

/// A failure to start or run the supervisor itself.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot create the private runtime directory under {dir}: {source}")]
    RuntimeDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the private runtime directory cannot go under {dir}: its path is {len} bytes, and slot sockets under it need it at most {max} (a Unix socket path is at most {} bytes)", crate::runtime_dir::SOCKET_PATH_MAX)]
    RuntimeDirTooLong {
        dir: PathBuf,
        len: usize,
        max: usize,
    },

    #[error("cannot bind slot socket {path}: {source}")]
    BindSlot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start the worker with {python:?}: {source}")]
    Spawn {
        python: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the spawner thread is gone")]
    SpawnerGone,

    #[error("cannot become a child subreaper: {0}")]
    Subreaper(#[source] nix::Error),

    #[error(
        "recycle.max_gpu_memory is set, but no GPU is visible: {0}; unset recycle.max_gpu_memory, \
         or run where nvidia-smi lists a GPU"
    )]
    NoGpu(String),

    #[error("a worker pool needs at least one worker (workers.count)")]
    NoWorkers,

    #[error("recycle.overlap is for one worker; a pool of {workers} (workers.count) already recycles one worker at a time while the others serve")]
    OverlapInPool { workers: usize },
}

/// Why a prediction was not admitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdmitError {
    /// The worker is not READY (starting, failed, recycling, ...).
    #[error(
        "Setup has not finished yet. Wait until it has finished, or GET /health-check for status."
    )]
    NotReady(HealthStatus),

    /// The worker is being replaced; retry shortly.
    #[error("the worker is being recycled ({0}); retry shortly")]
    Recycling(String),

    /// Every usable slot is running a prediction.
    #[error("At capacity - all prediction slots busy")]
    AtCapacity,

    /// A prediction with this id is already running.
    #[error("a prediction with id {0:?} is already running")]
    DuplicateId(String),

    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}
