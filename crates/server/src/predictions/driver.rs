//! The driver of one prediction: applies the events of its slot's stream until the terminal one
//! (turning file outputs into `data:` URLs or uploads, read only from the prediction's output
//! directory: [`crate::output_file`]), then files the prediction as finished.

use std::sync::Arc;
use std::time::Instant;

use cogvisor_supervisor::{PredictionEvent, PredictionStream};
use serde_json::Value;

use super::service::PredictionService;
use super::state::Prediction;
use crate::output_file::read_output_file;
use crate::response::read_data_url;
use crate::upload::UniqueNames;

/// Applies a prediction's events until it ends (see [`PredictionService::create`]).
///
/// Running it on the request's own task spares a sync prediction a task spawn and one cross-task
/// wake-up on its way back to the client.
#[must_use = "a dropped Driver moves to a task of its own; call `run` to drive it here"]
pub struct Driver {
    /// Where a dropped, unfinished driver goes on (the server's tracker).
    pub(super) tasks: tokio_util::task::TaskTracker,
    pub(super) drive: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("finished", &self.drive.is_none())
            .finish()
    }
}

impl Driver {
    /// Drives the prediction here until it has ended (and is filed as finished).
    pub async fn run(&mut self) {
        if let Some(drive) = self.drive.as_mut() {
            drive.await;
            self.drive = None;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let Some(drive) = self.drive.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                self.tasks.spawn_on(drive, &runtime);
            }
            // No runtime any more (the process is exiting): nothing is left to report to.
            Err(_) => tracing::debug!("a prediction's driver dropped outside the runtime"),
        }
    }
}

impl PredictionService {
    /// Applies the worker's events until the terminal one, then files the prediction as finished.
    pub(super) async fn drive(
        self: Arc<Self>,
        prediction: Arc<Prediction>,
        mut stream: PredictionStream,
        started: Instant,
    ) {
        let mut names = UniqueNames::default();
        // A file output that could not be read or uploaded: the prediction is cancelled and ends
        // failed with this; the worker is kept.
        let mut output_failure: Option<String> = None;
        let output_dir = stream.output_dir().to_path_buf();
        let max_file = self.settings.max_output_file;
        while let Some(event) = stream.next().await {
            let event = match event {
                PredictionEvent::Output(_) | PredictionEvent::File { .. }
                    if output_failure.is_some() =>
                {
                    continue
                }
                PredictionEvent::File { path, mime_type } => {
                    let outcome = match &self.uploader {
                        None => read_data_url(output_dir.clone(), path, mime_type, max_file)
                            .await
                            .map_err(|e| e.to_string()),
                        Some(uploader) => {
                            match read_output_file(output_dir.clone(), path.clone(), max_file).await
                            {
                                Err(e) => Err(e.to_string()),
                                Ok(bytes) => uploader
                                    .upload(
                                        &prediction.id,
                                        &path,
                                        bytes,
                                        mime_type.as_deref(),
                                        &mut names,
                                    )
                                    .await
                                    .map(Value::String)
                                    .map_err(|e| e.to_string()),
                            }
                        }
                    };
                    match outcome {
                        Ok(value) => PredictionEvent::Output(value),
                        Err(error) => {
                            tracing::error!(prediction_id = %prediction.id, %error, "file output failed; failing the prediction");
                            output_failure = Some(error);
                            self.supervisor.cancel(&prediction.id).await;
                            continue;
                        }
                    }
                }
                terminal if terminal.is_terminal() => match &output_failure {
                    Some(error) => PredictionEvent::Failed {
                        error: error.clone(),
                    },
                    None => terminal,
                },
                other => other,
            };
            if prediction.apply(event) {
                break;
            }
        }
        if let Some(error) = output_failure {
            if !prediction.status().is_terminal() {
                prediction.apply(PredictionEvent::Failed { error });
            }
        }
        prediction.finish(started.elapsed().as_secs_f64());
        let dropped = prediction.lock().logs.dropped();
        if dropped > 0 {
            tracing::warn!(prediction_id = %prediction.id, dropped_bytes = dropped, "log output over the per-prediction limit was dropped");
        }
        let status = prediction.status();
        let elapsed = started.elapsed();
        self.settings
            .metrics
            .record_prediction(prediction.kind, status, elapsed);
        let error = prediction.lock().error.clone();
        tracing::info!(
            prediction_id = %prediction.id,
            status = status.as_str(),
            predict_time = elapsed.as_secs_f64(),
            error = error.as_deref(),
            "prediction finished"
        );
        // The stream (and so the prediction's output directory) goes only now: file outputs were
        // read while applying their events.
        release(stream).await;
        let bytes = prediction.approx_bytes();
        let mut registry = self.registry();
        registry.file_finished(Instant::now(), prediction.id.clone(), bytes);
        self.prune(&mut registry);
    }
}

/// Drops a finished prediction's stream, which removes its output directory. Most predictions write
/// no file, so the worker never created the directory: the stat here and the removal both fail at
/// once, on this thread. A directory that exists may hold large files, so it is removed on the
/// blocking pool, and awaited, so it is gone before the prediction is filed as finished, as before.
async fn release(stream: PredictionStream) {
    if stream.output_dir().symlink_metadata().is_err() {
        drop(stream);
        return;
    }
    let mut stream = stream;
    if let Err(e) = tokio::task::spawn_blocking(move || stream.remove_output_dir()).await {
        tracing::warn!(error = %e, "removing a prediction's output directory failed");
    }
}
