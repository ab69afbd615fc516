//! Control-channel messages: the worker's stdin (requests) and stdout (responses).

use serde::{Deserialize, Serialize};

use crate::SlotId;

/// What the worker runs for a prediction request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `run()` or `predict()`.
    Predict,
    /// `train()`.
    Train,
}

/// Which setup the worker runs before `ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetupMode {
    /// The model's `setup()`: first start, and every recycle that asked for it.
    Full,
    /// The model's `recycle_setup()` when it defines one (else `setup()`): a recycle that asked not to
    /// rerun full setup.
    Recycle,
}

/// One slot socket the worker must connect to, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotSocket {
    pub slot: SlotId,
    pub socket: String,
}

/// The predictor references `cog build` writes the OpenAPI document from: `cog.yaml`'s `run`/`predict`
/// and `train`. With both, the document the worker builds (when the model has no
/// `.cog/openapi_schema.json`) is the merged one, in either mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRefs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predict: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<String>,
}

/// Supervisor → worker, on the worker's stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlRequest {
    /// The first and only first frame: everything the worker needs to set up.
    Init {
        protocol_version: u32,
        /// Worker generation, from 1; rises with every recycle.
        generation: u64,
        /// `path/to/file.py:Name`, relative to the model directory (the worker's working directory).
        predictor_ref: String,
        mode: Mode,
        setup: SetupMode,
        /// The private runtime directory; spill files and prediction output directories live under it.
        runtime_dir: String,
        slots: Vec<SlotSocket>,
        /// What the schema is built from; absent: the served predictor alone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema_refs: Option<SchemaRefs>,
    },
    /// Cancel prediction `id` if it is still running in `slot`.
    Cancel { slot: SlotId, id: String },
    /// Run the model's `healthcheck()` and answer with `healthcheck_result` carrying the same `id`.
    Healthcheck { id: String },
    /// The runtime heartbeat: answer `heartbeat_ack` with the same `seq` at once, from the thread that
    /// reads the control channel (a worker busy in model code still answers; one that cannot run at
    /// all does not).
    Heartbeat { seq: u64 },
    /// Stop: answer `shutting_down` and exit.
    Shutdown,
}

/// Severity of a worker's own diagnostic (`worker_log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

/// Outcome of the model's `healthcheck()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthcheckStatus {
    Healthy,
    Unhealthy,
}

/// Worker → supervisor, on the worker's stdout (moved off fd 1 before user code runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlResponse {
    /// Setup succeeded; every slot socket is connected and takes `predict`.
    Ready {
        python_version: String,
        sdk_version: String,
        /// Whether the predictor defines `healthcheck()`.
        has_healthcheck: bool,
        /// The OpenAPI document (from `.cog/openapi_schema.json` or built from the signature).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<serde_json::Value>,
    },
    /// Output that belongs to no prediction: setup prints, and anything written to fd 1/2 outside a
    /// sync prediction.
    Log {
        source: crate::LogSource,
        data: String,
    },
    /// The worker runtime's own diagnostic.
    WorkerLog { level: LogLevel, message: String },
    /// The slot finished everything for its last prediction (after the terminal slot message).
    Idle { slot: SlotId },
    /// A cancel was delivered into the prediction running in `slot`.
    Cancelled { slot: SlotId, id: String },
    /// The worker cannot use `slot` any more (its socket broke, a message could not be sent): poison it.
    Failed { slot: SlotId, error: String },
    /// Import, load or setup failed; the worker exits after sending this.
    SetupFailed { error: String },
    /// The worker hit an unrecoverable error and exits after sending this.
    Fatal { reason: String },
    /// Log messages were dropped because the channel was saturated.
    DroppedLogs { count: u64, interval_millis: u64 },
    /// Answer to `healthcheck`.
    HealthcheckResult {
        id: String,
        status: HealthcheckStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Answer to `heartbeat`.
    HeartbeatAck { seq: u64 },
    /// Answer to `shutdown`; the worker exits next.
    ShuttingDown,
    /// Model code called `cog.recycle_worker(reason, rerun_setup)`.
    RecycleRequested { reason: String, rerun_setup: bool },
}
