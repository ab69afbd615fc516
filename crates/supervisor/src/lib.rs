//! cogvisor-supervisor: owns the Python worker process and everything between it and the HTTP layer.
//!
//! It knows nothing about HTTP. The server crate calls [`Supervisor`] to predict, cancel, read health
//! and shut down. Modules, one job each:
//!
//! * [`config`]: what the supervisor needs to start a worker ([`SupervisorConfig`]).
//! * [`runtime_dir`]: the private 0700 directory holding slot sockets, spill files and outputs.
//! * [`spawn`]: the long-lived spawner thread (so `PR_SET_PDEATHSIG` is tied to a thread that lives as
//!   long as the supervisor) and the worker command line.
//! * [`child`]: one supervised child process (the worker, a hook, the health command): its own
//!   process group, a deadline, killing its tree, reaping it by pid, its exit described.
//! * [`procfs`]: the one reader of `/proc/<pid>/stat`, and of the RSS in `/proc/<pid>/status`.
//! * [`process_tree`]: the process tree from `/proc`, killing a whole tree, reaping reparented orphans.
//! * [`restart_budget`]: how often a worker may be replaced unplanned (crash, liveness, poisoned slots),
//!   and the backoff; part of the machine's state.
//! * [`stop`]: shutdown message → grace → SIGTERM to the group → grace → SIGKILL → reap everything.
//! * [`slots`]: the slot pool: idle, busy, poisoned, and who runs where.
//! * [`worker`]: one worker generation: spawn, init/ready handshake, control and slot readers.
//! * [`prediction`]: what a caller sends and receives for one prediction.
//! * [`payload`]: inputs and outputs inline or through spill files, the files on the blocking pool.
//! * [`health`]: the health status names and the snapshot `/health-check` shows.
//! * [`health_machine`]: the health state machine, one pure function that decides every state,
//!   recycle, restart budget and backoff.
//! * [`checks`]: the user healthcheck and `health.command`, coalesced, and the background monitor.
//! * [`heartbeat`]: the runtime heartbeat on the control channel: a worker that answers nothing for
//!   `health.heartbeat_timeout` is UNHEALTHY, then recycled.
//! * [`memory`]: the memory bounds `recycle.max_rss` and `recycle.max_gpu_memory`: the worker tree's
//!   RSS from `/proc` and its GPU memory from `nvidia-smi`, sampled, and the recycle past them.
//! * [`hooks`]: `after_healthy` and `before_stop`, run in their own process group with a timeout.
//! * `executor`: the one path that carries out every action the health machine returns.
//! * `lifecycle`: the real effects of those actions, run by the one task that starts, recycles and
//!   stops worker generations.
//! * `state`: the shared state behind the supervisor's one lock.
//! * [`model_output`]: what the model prints, in the server's log and in `setup.logs`.
//! * [`output_log`]: what the model prints during predictions, written to the server's log on a
//!   thread of its own, within a byte budget, so neither a long line nor a slow stderr holds a
//!   runtime thread.
//! * [`setup_log`]: `setup.logs` bounded: its first and last bytes, and a notice of what was dropped.
//! * [`observer`]: events (recycles, health checks, hooks) for whoever watches, such as metrics.
//! * [`pool`]: the worker pool (`workers.count`), one supervisor per worker behind the handle the
//!   server uses: admission to a worker with an idle slot, the pool's health, rolling recycles.
//! * [`supervisor`]: one worker's handle tying it together: start, admit, cancel, health, shutdown.
//! * `routing`: what the worker sends, routed to predictions, checks and the health machine.
//! * `scope`: the supervisor's part of the one cancellation tree (supervisor → generation →
//!   prediction) and the one tracker of every task it starts, which shutdown waits on.
//! * `watchers`: a prediction's `predict_timeout` and cancel-grace watchers, which end with it.
//! * [`error`]: every failure, as enums.

pub mod checks;
pub mod child;
pub mod config;
pub mod error;
mod executor;
pub mod health;
pub mod health_machine;
pub mod heartbeat;
pub mod hooks;
mod lifecycle;
pub mod memory;
pub mod model_output;
pub mod observer;
pub mod output_log;
pub mod payload;
pub mod pool;
pub mod prediction;
pub mod process_tree;
pub mod procfs;
pub mod restart_budget;
mod routing;
pub mod runtime_dir;
mod scope;
pub mod setup_log;
pub mod slots;
pub mod spawn;
mod state;
pub mod stop;
pub mod supervisor;
mod watchers;
pub mod worker;

pub use config::SupervisorConfig;
pub use error::{AdmitError, SupervisorError};
pub use health::{
    HealthSnapshot, HealthStatus, PoolRecord, PoolWorkerRecord, RecycleRecord, SetupStatus,
    SuccessorRecord,
};
pub use health_machine::{HealthConfig, OnFailure, RecycleTrigger};
pub use hooks::{HookPolicy, HooksConfig};
pub use memory::WorkerMemory;
pub use observer::{SupervisorEvent, SupervisorObserver};
pub use pool::{total_memory, WorkerPool};
pub use prediction::{PredictionEvent, PredictionRequest, PredictionStream};
pub use restart_budget::BudgetConfig;
pub use supervisor::Supervisor;
