//! The cancellation tree and the task tracker against a real Python worker: a prediction's watchers
//! (predict_timeout's deadline, the cancel grace) end the moment the prediction does, not when their
//! timers fire; and cancelling the token the supervisor was started under stops it and every task it
//! started.
//!
//! Everything is created under Cargo's per-target temporary directory, not the system one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cogvisor_supervisor::runtime_dir::RuntimeDir;
use cogvisor_supervisor::{
    HealthStatus, PredictionEvent, PredictionRequest, PredictionStream, Supervisor,
    SupervisorConfig,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const PREDICT_PY: &str = r#"
import time

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, seconds: float = 0.0) -> str:
        print("started", flush=True)
        # Short sleeps: a cancel is raised into this thread between them.
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
        return "done"
"#;

/// Far longer than any test: a watcher still there after its prediction ended is one waiting on it.
const HOUR: Duration = Duration::from_secs(3600);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn start(scratch: &Path, shutdown: &CancellationToken) -> Supervisor {
    let model = scratch.join("model");
    std::fs::create_dir(&model).expect("model dir");
    std::fs::write(model.join("predict.py"), PREDICT_PY).expect("predict.py");
    let runtime = RuntimeDir::create(Some(scratch)).expect("runtime dir");
    let mut config = SupervisorConfig::new(&model, "predict.py:Predictor");
    config.python_path = vec![repo().join("python")];
    config.predict_timeout = Some(HOUR);
    config.cancel_grace = HOUR;
    config.stop_grace = Duration::from_secs(2);
    let supervisor = Supervisor::start_with_shutdown(config, runtime, shutdown)
        .await
        .expect("start");
    let mut status = supervisor.watch_status();
    tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|s| *s == HealthStatus::Ready),
    )
    .await
    .expect("READY within 60 s")
    .expect("status");
    supervisor
}

fn request(id: &str, seconds: f64) -> PredictionRequest {
    PredictionRequest {
        id: id.into(),
        input: Arc::new(json!({ "seconds": seconds })),
        context: Default::default(),
    }
}

async fn terminal(stream: &mut PredictionStream) -> PredictionEvent {
    let wait = async {
        while let Some(event) = stream.next().await {
            if event.is_terminal() {
                return event;
            }
        }
        panic!("the stream ended without a terminal event");
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("a terminal event within 30 s")
}

/// Waits for the model's first line: it runs `predict()` now, so a cancel reaches it (one sent on the
/// control channel before the slot's `predict` arrived would find nothing to cancel).
async fn started(stream: &mut PredictionStream) {
    let wait = async {
        while let Some(event) = stream.next().await {
            match event {
                PredictionEvent::Log { .. } => return,
                other => assert!(!other.is_terminal(), "ended before it started: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("the model's first line within 30 s")
}

/// Polls until the supervisor runs `want` tasks (a task whose token was cancelled still has to be
/// polled once to end).
async fn settle_at(supervisor: &Supervisor, want: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while supervisor.tasks_running() != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {} tasks running, expected {want}",
            supervisor.tasks_running()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_end_with_their_prediction_and_the_token_stops_everything() {
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir");
    let shutdown = CancellationToken::new();
    let supervisor = start(scratch.path(), &shutdown).await;
    // The lifecycle, the orphan reaper, the worker's exit watcher and its channel readers.
    let baseline = supervisor.tasks_running();
    assert!(baseline > 0, "the supervisor's tasks are tracked");

    // A prediction that succeeds: its predict_timeout watcher (an hour) ends with it.
    let mut stream = supervisor
        .predict(request("quick", 0.5))
        .await
        .expect("admitted");
    assert_eq!(
        supervisor.tasks_running(),
        baseline + 1,
        "the deadline watcher runs while the prediction does"
    );
    assert!(matches!(
        terminal(&mut stream).await,
        PredictionEvent::Succeeded { .. }
    ));
    settle_at(&supervisor, baseline, "after a prediction succeeded").await;

    // A cancelled prediction: its deadline and cancel-grace watchers (both an hour) end with it.
    let mut stream = supervisor
        .predict(request("slow", 60.0))
        .await
        .expect("admitted");
    started(&mut stream).await;
    assert!(supervisor.cancel("slow").await, "running, so cancelled");
    assert_eq!(supervisor.tasks_running(), baseline + 2);
    assert_eq!(terminal(&mut stream).await, PredictionEvent::Canceled);
    settle_at(&supervisor, baseline, "after a prediction was cancelled").await;

    // Cancelling the token the supervisor was started under stops it: admission closes at once, the
    // worker is stopped and every task ends, with no call to shutdown().
    let mut stream = supervisor
        .predict(request("running-at-shutdown", 60.0))
        .await
        .expect("admitted");
    shutdown.cancel();
    assert!(supervisor.predict(request("late", 0.0)).await.is_err());
    assert!(matches!(
        terminal(&mut stream).await,
        PredictionEvent::Failed { .. }
    ));
    settle_at(&supervisor, 0, "after the shutdown token was cancelled").await;
    // shutdown() after that only waits, and returns at once.
    tokio::time::timeout(Duration::from_secs(5), supervisor.shutdown())
        .await
        .expect("shutdown returns once the tasks have ended");
    assert_eq!(supervisor.health().worker.pid, None);
}
