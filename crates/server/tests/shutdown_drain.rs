//! The shutdown drain driven through its parameters (`serve::run` with a `ShutdownTrigger` the test
//! holds), against a real supervisor and Python worker: a trigger closes admission at once, a running
//! prediction is let finish, then the worker is stopped and every task the server and the supervisor
//! started has ended when `run` returns.
//!
//! Everything is created under Cargo's per-target temporary directory, not the system one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cogvisor_protocol::Mode;
use cogvisor_server::predictions::{ServiceSettings, Status};
use cogvisor_server::schema::Kind;
use cogvisor_server::{http, serve, shutdown};
use cogvisor_supervisor::runtime_dir::RuntimeDir;
use cogvisor_supervisor::{HealthStatus, SupervisorConfig, WorkerPool};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const PREDICT_PY: &str = r#"
import time

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, seconds: float = 0.0) -> str:
        print("started", flush=True)
        time.sleep(seconds)
        return "done"
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_drains_then_stops_and_every_task_has_ended() {
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir");
    let model = scratch.path().join("model");
    std::fs::create_dir(&model).expect("model dir");
    std::fs::write(model.join("predict.py"), PREDICT_PY).expect("predict.py");
    let runtime = RuntimeDir::create(Some(scratch.path())).expect("runtime dir");
    let mut config = SupervisorConfig::new(&model, "predict.py:Predictor");
    config.python_path = vec![repo().join("python")];

    let process = CancellationToken::new();
    let trigger = shutdown::ShutdownTrigger::under(&process);
    let tasks = TaskTracker::new();
    let supervisor = WorkerPool::start(vec![config], runtime, &process)
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

    let settings = ServiceSettings {
        shutdown: trigger.token().clone(),
        tasks: tasks.clone(),
        ..Default::default()
    };
    let state = http::AppState::new(supervisor.clone(), Mode::Predict, settings, trigger.clone());
    let predictions = state.predictions.clone();
    let drain = shutdown::Drain {
        predictions: predictions.clone(),
        supervisor: supervisor.clone(),
        process: process.clone(),
        deadline: Duration::from_secs(30),
        cancel_grace: Duration::from_secs(5),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = tokio::spawn(serve::run(
        listener,
        state,
        cogvisor_server::http_server::ServerLimits::default(),
        drain,
        trigger.clone(),
        tasks.clone(),
    ));

    // An async prediction: its driver, dropped here, goes on on the server's tracker.
    let (prediction, driver) = predictions
        .create(
            Kind::Prediction,
            "p1".into(),
            json!({"seconds": 1.0}),
            BTreeMap::new(),
            false,
            None,
        )
        .await
        .expect("admitted");
    drop(driver);
    assert_eq!(tasks.len(), 1, "the driver runs on the server's tracker");

    trigger.trigger("test");
    assert!(
        predictions.is_draining(),
        "the trigger closes admission at once"
    );
    let late = predictions
        .create(
            Kind::Prediction,
            "p2".into(),
            json!({}),
            BTreeMap::new(),
            false,
            None,
        )
        .await;
    assert!(late.is_err(), "nothing is admitted once the drain began");
    assert!(
        !process.is_cancelled(),
        "the root goes only after the drain"
    );

    tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("run returns")
        .expect("join")
        .expect("served");
    assert_eq!(
        prediction.status(),
        Status::Succeeded,
        "the drain let the running prediction finish"
    );
    assert!(process.is_cancelled(), "the drain cancelled the root");
    assert_eq!(supervisor.tasks_running(), 0, "every supervisor task ended");
    assert!(tasks.is_empty(), "every server task ended");
    assert_eq!(
        supervisor.health().worker.pid,
        None,
        "the worker is stopped"
    );
}
