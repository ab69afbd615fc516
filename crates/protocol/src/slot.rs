//! Slot-channel messages: one Unix socket per concurrency slot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which stream a log line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    Stdout,
    Stderr,
}

/// How a metric value combines with an earlier one of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricMode {
    Replace,
    Increment,
    Append,
}

/// What a `file_output` file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOutputKind {
    /// A file the model returned (`cog.Path`, `cog.File`): an output value of its own.
    File,
    /// A spill file: one JSON output value too large for a frame. The reader deletes it.
    Oversized,
}

/// Supervisor → worker on a slot socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SlotRequest {
    /// Run one prediction. Exactly one of `input` and `input_file` is present.
    Predict {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<serde_json::Value>,
        /// A spill file holding the input JSON; the worker reads it and deletes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_file: Option<String>,
        /// A fresh directory for this prediction's file outputs and temporary files.
        output_dir: String,
        #[serde(default)]
        context: BTreeMap<String, String>,
    },
}

/// Worker → supervisor on a slot socket, about the prediction running in that slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SlotResponse {
    /// Text the prediction printed.
    Log { source: LogSource, data: String },
    /// One output value: the return value, or one item of a generator or list.
    Output { output: serde_json::Value },
    /// An output value that travels as a file (see [`FileOutputKind`]).
    FileOutput {
        filename: String,
        kind: FileOutputKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mime_type: Option<String>,
    },
    /// A metric recorded by the prediction.
    Metric {
        name: String,
        value: serde_json::Value,
        mode: MetricMode,
    },
    /// Model code of the running prediction called `cog.recycle_worker()`. Sent on the slot, before the
    /// prediction's terminal message, so the supervisor stops admitting work to this worker before that
    /// prediction's response can reach its client. (Outside a prediction it travels on the control
    /// channel as [`crate::ControlResponse::RecycleRequested`].)
    RecycleRequested { reason: String, rerun_setup: bool },
    /// Terminal: succeeded. `is_stream` says the outputs form an array (generator, iterator or list).
    Done {
        id: String,
        predict_time: f64,
        is_stream: bool,
    },
    /// Terminal: the prediction raised or could not run.
    Failed { id: String, error: String },
    /// Terminal: the prediction was cancelled.
    Cancelled { id: String },
}

impl SlotResponse {
    /// Whether this message ends its prediction.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            SlotResponse::Done { .. }
                | SlotResponse::Failed { .. }
                | SlotResponse::Cancelled { .. }
        )
    }
}
