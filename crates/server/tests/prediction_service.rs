//! The prediction service and its driver against a real supervisor and Python worker: a file output
//! comes back as a `data:` URL (read on the blocking pool), and the prediction's output directory is
//! gone by the time its driver has run.
//!
//! Everything is created under Cargo's per-target temporary directory, not the system one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use cogvisor_server::predictions::{PredictionService, ServiceSettings, Status};
use cogvisor_server::schema::Kind;
use cogvisor_supervisor::runtime_dir::RuntimeDir;
use cogvisor_supervisor::{HealthStatus, Supervisor, SupervisorConfig, WorkerPool};
use serde_json::{json, Value};

const PREDICT_PY: &str = r#"
from cog import BasePredictor, Path


class Predictor(BasePredictor):
    def predict(self, text: str = "x") -> Path:
        # In the model directory (the worker's cwd): the worker copies it into the output directory.
        with open("out.txt", "w") as f:
            f.write("file " + text)
        return Path("out.txt")
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file and directory below `dir`.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_output_is_a_data_url_and_its_directory_is_gone_once_filed() {
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir");
    let model = scratch.path().join("model");
    std::fs::create_dir(&model).expect("model dir");
    std::fs::write(model.join("predict.py"), PREDICT_PY).expect("predict.py");
    let runtime = RuntimeDir::create(Some(scratch.path())).expect("runtime dir");
    let outputs = runtime.path().join("outputs");
    let mut config = SupervisorConfig::new(&model, "predict.py:Predictor");
    config.python_path = vec![repo().join("python")];
    let supervisor = WorkerPool::single(Supervisor::start(config, runtime).await.expect("start"));
    let mut status = supervisor.watch_status();
    tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|s| *s == HealthStatus::Ready),
    )
    .await
    .expect("READY within 60 s")
    .expect("status");

    let service = PredictionService::new(supervisor.clone(), ServiceSettings::default());
    let (prediction, mut driver) = service
        .create(
            Kind::Prediction,
            "p1".into(),
            json!({"text": "hi"}),
            BTreeMap::new(),
            false,
            None,
        )
        .await
        .expect("admitted");
    driver.run().await;

    assert_eq!(
        prediction.status(),
        Status::Succeeded,
        "{}",
        String::from_utf8_lossy(&prediction.snapshot_json())
    );
    let body: Value = serde_json::from_slice(&prediction.sync_body_json()).expect("JSON");
    let url = body["output"].as_str().expect("a data URL");
    let (_, b64) = url.split_once(";base64,").expect("base64 data URL");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert_eq!(bytes, b"file hi");
    assert!(
        entries(&outputs).is_empty(),
        "left in outputs/: {:?}",
        entries(&outputs)
    );
    // Filed as finished: still found by id, not running.
    assert!(service.get("p1").is_some());
    assert!(service.running().is_empty());

    supervisor.shutdown().await;
}
