//! What a caller sends for one prediction and the events it gets back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use cogvisor_protocol::{LogSource, MetricMode};
use tokio::sync::mpsc;

/// One prediction to run.
#[derive(Debug, Clone)]
pub struct PredictionRequest {
    /// Already validated by the caller (charset, length).
    pub id: String,
    /// Shared with the caller, which keeps it for the prediction's state: never copied here (a large
    /// one is streamed into a spill file).
    pub input: Arc<serde_json::Value>,
    pub context: BTreeMap<String, String>,
}

/// Something that happened to a running prediction. The last event is always a terminal one
/// (`Succeeded`, `Failed` or `Canceled`), and exactly one is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum PredictionEvent {
    Log {
        source: LogSource,
        data: String,
    },
    Output(serde_json::Value),
    /// A file the model returned; it lives in the prediction's output directory until the
    /// [`PredictionStream`] is dropped.
    File {
        path: PathBuf,
        mime_type: Option<String>,
    },
    Metric {
        name: String,
        value: serde_json::Value,
        mode: MetricMode,
    },
    Succeeded {
        predict_time: f64,
        is_stream: bool,
    },
    Failed {
        error: String,
    },
    Canceled,
}

impl PredictionEvent {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            PredictionEvent::Succeeded { .. }
                | PredictionEvent::Failed { .. }
                | PredictionEvent::Canceled
        )
    }
}

/// The receiving end of one prediction. Dropping it removes the prediction's output directory.
#[derive(Debug)]
pub struct PredictionStream {
    pub id: String,
    pub events: mpsc::UnboundedReceiver<PredictionEvent>,
    pub(crate) output_dir: OutputDir,
}

impl PredictionStream {
    /// The next event, or `None` once the terminal event has been taken.
    pub async fn next(&mut self) -> Option<PredictionEvent> {
        self.events.recv().await
    }

    /// The directory the worker writes this prediction's files into.
    pub fn output_dir(&self) -> &std::path::Path {
        &self.output_dir.0
    }

    /// Removes the output directory now, on this thread (a blocking one: it may hold many files), so
    /// that dropping the stream later has nothing left to do.
    pub fn remove_output_dir(&mut self) {
        let path = std::mem::take(&mut self.output_dir.0);
        if !path.as_os_str().is_empty() {
            OutputDir::remove(&path, &self.output_dir.1);
        }
    }
}

/// A per-prediction directory (and the prediction's id), removed with everything in it when dropped.
#[derive(Debug)]
pub(crate) struct OutputDir(pub(crate) PathBuf, pub(crate) String);

impl OutputDir {
    fn remove(path: &std::path::Path, prediction_id: &str) {
        if let Err(e) = std::fs::remove_dir_all(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(prediction_id, path = %path.display(), error = %e, "cannot remove prediction output directory");
            }
        }
    }
}

impl Drop for OutputDir {
    /// Removes the directory, if the worker created it, on the blocking pool (a prediction may have
    /// written many files), or here when dropped outside a tokio runtime.
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.0);
        // Most predictions write no file, so the worker never creates their directory: one stat here
        // instead of a hand-off to the blocking pool per prediction.
        if path.as_os_str().is_empty() || std::fs::symlink_metadata(&path).is_err() {
            return;
        }
        let id = std::mem::take(&mut self.1);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || Self::remove(&path, &id));
            }
            Err(_) => Self::remove(&path, &id),
        }
    }
}
