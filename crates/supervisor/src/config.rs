//! What the supervisor needs to start and stop a worker.

use std::path::PathBuf;
use std::time::Duration;

use cogvisor_protocol::Mode;

/// Everything the supervisor needs; the server crate builds it from flags, environment and files.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The model directory: the worker's working directory.
    pub model_dir: PathBuf,
    /// `predict.py:Predictor`, relative to `model_dir`.
    pub predictor_ref: String,
    pub mode: Mode,
    /// The Python interpreter (a name looked up on PATH, or a path).
    pub python: String,
    /// Directories put first on the worker's PYTHONPATH (the embedded `cog` and `cogvisor_worker`).
    pub python_path: Vec<PathBuf>,
    /// Number of slots (concurrent predictions).
    pub concurrency: u32,
    /// Bound on the whole start-up, spawn to `ready`. `None`: no bound.
    pub setup_timeout: Option<Duration>,
    /// Each wait of the stop sequence (after the shutdown message, after SIGTERM).
    pub stop_grace: Duration,
    /// Where the private runtime directory is created (default: the system temp dir).
    pub runtime_parent: Option<PathBuf>,
}

impl SupervisorConfig {
    /// A configuration with the defaults for everything but the model.
    pub fn new(model_dir: impl Into<PathBuf>, predictor_ref: impl Into<String>) -> Self {
        Self {
            model_dir: model_dir.into(),
            predictor_ref: predictor_ref.into(),
            mode: Mode::Predict,
            python: "python3".into(),
            python_path: Vec::new(),
            concurrency: 1,
            setup_timeout: None,
            stop_grace: Duration::from_secs(5),
            runtime_parent: None,
        }
    }
}
