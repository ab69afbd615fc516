//! What the supervisor needs to start and stop a worker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cogvisor_protocol::{Mode, SchemaRefs};

use crate::health_machine::HealthConfig;
use crate::hooks::HooksConfig;
use crate::observer::SupervisorObserver;
use crate::restart_budget::BudgetConfig;

/// Everything the supervisor needs; the server crate builds it from flags, environment and files.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The model directory: the worker's working directory.
    pub model_dir: PathBuf,
    /// `predict.py:Predictor`, relative to `model_dir`.
    pub predictor_ref: String,
    pub mode: Mode,
    /// What the worker builds the OpenAPI document from when the model has none (`init.schema_refs`).
    pub schema_refs: Option<SchemaRefs>,
    /// The Python interpreter (a name looked up on PATH, or a path).
    pub python: String,
    /// Directories put first on the worker's PYTHONPATH (the embedded `cog` and `cogvisor_worker`).
    pub python_path: Vec<PathBuf>,
    /// Number of slots (concurrent predictions) of each worker.
    pub concurrency: u32,
    /// This worker's place in the pool (`workers.count`), 0 for the only one: part of its slot
    /// socket and output names, and its `COGVISOR_WORKER_INDEX`.
    pub worker_index: u32,
    /// Variables set in this worker's environment on top of what it inherits (`workers.env`,
    /// `workers.devices`), already substituted for this worker.
    pub worker_env: Vec<(String, String)>,
    /// Bound on the whole start-up, spawn to `ready`. `None`: no bound.
    pub setup_timeout: Option<Duration>,
    /// Each wait of the stop sequence (after the shutdown message, after SIGTERM).
    pub stop_grace: Duration,
    /// Where the private runtime directory is created (default: the system temp dir).
    pub runtime_parent: Option<PathBuf>,
    /// Told about recycles, health checks and hooks (the server's metrics). `None`: nobody.
    pub observer: Option<Arc<dyn SupervisorObserver>>,
    /// Thresholds and the failure policy of the health machine.
    pub health: HealthConfig,
    /// Bound on one check (user healthcheck and monitor command).
    pub health_timeout: Duration,
    /// Background checks every period; `None`: only when `/health-check` is hit.
    pub health_period: Option<Duration>,
    /// The runtime heartbeat on the control channel; `None`: off (`health.heartbeat_timeout: off`).
    pub heartbeat: Option<crate::heartbeat::HeartbeatConfig>,
    /// An external check command (argv); exit status 0 is healthy.
    pub health_command: Option<Vec<String>>,
    /// How many unplanned replacements (crashes, liveness recycles, every slot poisoned) are made
    /// within a window before DEFUNCT, and their backoff.
    pub restart_budget: BudgetConfig,
    /// How long a recycle lets in-flight predictions finish before cancelling them.
    pub recycle_drain_timeout: Duration,
    /// `recycle.overlap`: a planned recycle of the one worker sets its successor up while it keeps
    /// serving, and swaps when the successor is READY (`pool.rs`). One worker only.
    pub recycle_overlap: bool,
    /// With several workers or `recycle_overlap`: how long a prediction waits for a worker when
    /// every one that could take it is being replaced, before the 503 (`pool.rs`).
    pub recycle_admission_wait: Duration,
    /// Recycle after this many predictions per worker (plus up to `max_predictions_jitter`).
    pub max_predictions: Option<u64>,
    pub max_predictions_jitter: u64,
    /// Recycle a worker whose tree's resident set size is past this many bytes (`recycle.max_rss`).
    pub max_rss: Option<u64>,
    /// Recycle a worker whose tree's GPU memory is past this many bytes (`recycle.max_gpu_memory`);
    /// the start fails unless `nvidia-smi` lists a GPU.
    pub max_gpu_memory: Option<u64>,
    /// How often the memory bounds are checked (also at the end of every prediction, for the RSS).
    pub memory_check_interval: Duration,
    /// A prediction running longer than this is cancelled.
    pub predict_timeout: Option<Duration>,
    /// A cancelled prediction still running after this poisons its slot.
    pub cancel_grace: Duration,
    /// `after_healthy` / `before_stop`.
    pub hooks: HooksConfig,
    /// Bytes of `setup.logs` kept: the first half and the last half, with a notice of what was
    /// dropped between them (`logs.max_setup`).
    pub setup_log_limit: usize,
}

impl SupervisorConfig {
    /// A configuration with the defaults for everything but the model.
    pub fn new(model_dir: impl Into<PathBuf>, predictor_ref: impl Into<String>) -> Self {
        Self {
            model_dir: model_dir.into(),
            predictor_ref: predictor_ref.into(),
            mode: Mode::Predict,
            schema_refs: None,
            python: "python3".into(),
            python_path: Vec::new(),
            concurrency: 1,
            worker_index: 0,
            worker_env: Vec::new(),
            setup_timeout: None,
            stop_grace: Duration::from_secs(5),
            runtime_parent: None,
            observer: None,
            health: HealthConfig::default(),
            health_timeout: Duration::from_secs(5),
            health_period: None,
            heartbeat: Some(crate::heartbeat::HeartbeatConfig::default()),
            health_command: None,
            restart_budget: BudgetConfig::default(),
            recycle_drain_timeout: Duration::from_secs(30),
            recycle_overlap: false,
            recycle_admission_wait: Duration::from_secs(30),
            max_predictions: None,
            max_predictions_jitter: 0,
            max_rss: None,
            max_gpu_memory: None,
            memory_check_interval: Duration::from_secs(1),
            predict_timeout: None,
            cancel_grace: Duration::from_secs(5),
            hooks: HooksConfig::default(),
            setup_log_limit: crate::setup_log::DEFAULT_SETUP_LOG_LIMIT,
        }
    }
}
