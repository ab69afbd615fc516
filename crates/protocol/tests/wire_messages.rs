//! Pins every wire message: an insta snapshot per variant, and the exact compact JSON in
//! `protocol-fixtures/messages.json`, the fixture the Python suite asserts byte for byte too.
//!
//! To regenerate the fixture after an intended change: `UPDATE_PROTOCOL_FIXTURES=1 cargo test -p
//! cogvisor-protocol --test wire_messages`, then review the diff and the insta snapshots.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cogvisor_protocol::{
    ControlRequest, ControlResponse, FileOutputKind, HealthcheckStatus, LogLevel, LogSource,
    MetricMode, Mode, SetupMode, SlotId, SlotRequest, SlotResponse, SlotSocket, PROTOCOL_VERSION,
};
use serde_json::json;

/// One wire message, by the name used in snapshots and in the fixture.
enum Message {
    ControlRequest(ControlRequest),
    ControlResponse(ControlResponse),
    SlotRequest(SlotRequest),
    SlotResponse(SlotResponse),
}

impl Message {
    fn to_json(&self) -> String {
        match self {
            Message::ControlRequest(m) => serde_json::to_string(m),
            Message::ControlResponse(m) => serde_json::to_string(m),
            Message::SlotRequest(m) => serde_json::to_string(m),
            Message::SlotResponse(m) => serde_json::to_string(m),
        }
        .expect("every message serializes")
    }

    fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.to_json()).expect("valid JSON")
    }

    /// Decodes `text` as the same kind of message and checks it equals `self`.
    fn assert_decodes_from(&self, name: &str, text: &str) {
        let same = match self {
            Message::ControlRequest(m) => {
                serde_json::from_str::<ControlRequest>(text).ok().as_ref() == Some(m)
            }
            Message::ControlResponse(m) => {
                serde_json::from_str::<ControlResponse>(text).ok().as_ref() == Some(m)
            }
            Message::SlotRequest(m) => {
                serde_json::from_str::<SlotRequest>(text).ok().as_ref() == Some(m)
            }
            Message::SlotResponse(m) => {
                serde_json::from_str::<SlotResponse>(text).ok().as_ref() == Some(m)
            }
        };
        assert!(
            same,
            "fixture {name} does not decode to the same message: {text}"
        );
    }
}

fn all_messages() -> Vec<(&'static str, Message)> {
    use Message::*;
    vec![
        (
            "control_request_init",
            ControlRequest(cogvisor_protocol::ControlRequest::Init {
                protocol_version: PROTOCOL_VERSION,
                generation: 1,
                predictor_ref: "predict.py:Predictor".into(),
                mode: Mode::Predict,
                setup: SetupMode::Full,
                runtime_dir: "/tmp/cogvisor-1234".into(),
                slots: vec![
                    SlotSocket {
                        slot: SlotId(0),
                        socket: "/tmp/cogvisor-1234/slot-0.sock".into(),
                    },
                    SlotSocket {
                        slot: SlotId(1),
                        socket: "/tmp/cogvisor-1234/slot-1.sock".into(),
                    },
                ],
                schema_refs: Some(cogvisor_protocol::SchemaRefs {
                    predict: Some("predict.py:Predictor".into()),
                    train: Some("train.py:train".into()),
                }),
            }),
        ),
        (
            "control_request_init_recycle_train",
            ControlRequest(cogvisor_protocol::ControlRequest::Init {
                protocol_version: PROTOCOL_VERSION,
                generation: 7,
                predictor_ref: "train.py:train".into(),
                mode: Mode::Train,
                setup: SetupMode::Recycle,
                runtime_dir: "/tmp/cogvisor-1234".into(),
                slots: vec![SlotSocket {
                    slot: SlotId(0),
                    socket: "/tmp/cogvisor-1234/slot-0.sock".into(),
                }],
                schema_refs: None,
            }),
        ),
        (
            "control_request_cancel",
            ControlRequest(cogvisor_protocol::ControlRequest::Cancel {
                slot: SlotId(0),
                id: "pred_123".into(),
            }),
        ),
        (
            "control_request_healthcheck",
            ControlRequest(cogvisor_protocol::ControlRequest::Healthcheck { id: "hc_1".into() }),
        ),
        (
            "control_request_heartbeat",
            ControlRequest(cogvisor_protocol::ControlRequest::Heartbeat { seq: 42 }),
        ),
        (
            "control_request_shutdown",
            ControlRequest(cogvisor_protocol::ControlRequest::Shutdown),
        ),
        (
            "control_response_ready",
            ControlResponse(cogvisor_protocol::ControlResponse::Ready {
                python_version: "3.11.7".into(),
                sdk_version: "0.1.0".into(),
                has_healthcheck: true,
                schema: Some(
                    json!({"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}}),
                ),
            }),
        ),
        (
            "control_response_ready_without_schema",
            ControlResponse(cogvisor_protocol::ControlResponse::Ready {
                python_version: "3.10.12".into(),
                sdk_version: "0.1.0".into(),
                has_healthcheck: false,
                schema: None,
            }),
        ),
        (
            "control_response_log",
            ControlResponse(cogvisor_protocol::ControlResponse::Log {
                source: LogSource::Stderr,
                data: "loading weights\n".into(),
            }),
        ),
        (
            "control_response_worker_log",
            ControlResponse(cogvisor_protocol::ControlResponse::WorkerLog {
                level: LogLevel::Warning,
                message: "slot 0: cancel for a prediction that already ended".into(),
            }),
        ),
        (
            "control_response_idle",
            ControlResponse(cogvisor_protocol::ControlResponse::Idle { slot: SlotId(0) }),
        ),
        (
            "control_response_cancelled",
            ControlResponse(cogvisor_protocol::ControlResponse::Cancelled {
                slot: SlotId(1),
                id: "pred_123".into(),
            }),
        ),
        (
            "control_response_failed",
            ControlResponse(cogvisor_protocol::ControlResponse::Failed {
                slot: SlotId(1),
                error: "slot socket closed: Broken pipe".into(),
            }),
        ),
        (
            "control_response_setup_failed",
            ControlResponse(cogvisor_protocol::ControlResponse::SetupFailed {
                error: "Traceback (most recent call last):\n  ...\nRuntimeError: boom in setup\n"
                    .into(),
            }),
        ),
        (
            "control_response_fatal",
            ControlResponse(cogvisor_protocol::ControlResponse::Fatal {
                reason: "control channel write failed".into(),
            }),
        ),
        (
            "control_response_dropped_logs",
            ControlResponse(cogvisor_protocol::ControlResponse::DroppedLogs {
                count: 12,
                interval_millis: 5000,
            }),
        ),
        (
            "control_response_healthcheck_result_healthy",
            ControlResponse(cogvisor_protocol::ControlResponse::HealthcheckResult {
                id: "hc_1".into(),
                status: HealthcheckStatus::Healthy,
                error: None,
            }),
        ),
        (
            "control_response_healthcheck_result_unhealthy",
            ControlResponse(cogvisor_protocol::ControlResponse::HealthcheckResult {
                id: "hc_2".into(),
                status: HealthcheckStatus::Unhealthy,
                error: Some("user-defined healthcheck returned False".into()),
            }),
        ),
        (
            "control_response_heartbeat_ack",
            ControlResponse(cogvisor_protocol::ControlResponse::HeartbeatAck { seq: 42 }),
        ),
        (
            "control_response_shutting_down",
            ControlResponse(cogvisor_protocol::ControlResponse::ShuttingDown),
        ),
        (
            "control_response_recycle_requested",
            ControlResponse(cogvisor_protocol::ControlResponse::RecycleRequested {
                reason: "CUDA context lost".into(),
                rerun_setup: false,
            }),
        ),
        (
            "slot_request_predict",
            SlotRequest(cogvisor_protocol::SlotRequest::Predict {
                id: "pred_123".into(),
                input: Some(json!({"text": "world"})),
                input_file: None,
                output_dir: "/tmp/cogvisor-1234/outputs/pred_123".into(),
                context: BTreeMap::from([("user".to_string(), "alice".to_string())]),
            }),
        ),
        (
            "slot_request_predict_spilled_input",
            SlotRequest(cogvisor_protocol::SlotRequest::Predict {
                id: "pred_456".into(),
                input: None,
                input_file: Some("/tmp/cogvisor-1234/spill/spill-1.json".into()),
                output_dir: "/tmp/cogvisor-1234/outputs/pred_456".into(),
                context: BTreeMap::new(),
            }),
        ),
        (
            "slot_response_log",
            SlotResponse(cogvisor_protocol::SlotResponse::Log {
                source: LogSource::Stdout,
                data: "step 1\n".into(),
            }),
        ),
        (
            "slot_response_output",
            SlotResponse(cogvisor_protocol::SlotResponse::Output {
                output: json!("hello world"),
            }),
        ),
        (
            "slot_response_file_output",
            SlotResponse(cogvisor_protocol::SlotResponse::FileOutput {
                filename: "/tmp/cogvisor-1234/outputs/pred_123/out.png".into(),
                kind: FileOutputKind::File,
                mime_type: Some("image/png".into()),
            }),
        ),
        (
            "slot_response_file_output_oversized",
            SlotResponse(cogvisor_protocol::SlotResponse::FileOutput {
                filename: "/tmp/cogvisor-1234/spill/spill-2.json".into(),
                kind: FileOutputKind::Oversized,
                mime_type: None,
            }),
        ),
        (
            "slot_response_metric",
            SlotResponse(cogvisor_protocol::SlotResponse::Metric {
                name: "token_count".into(),
                value: json!(3),
                mode: MetricMode::Increment,
            }),
        ),
        (
            "slot_response_recycle_requested",
            SlotResponse(cogvisor_protocol::SlotResponse::RecycleRequested {
                reason: "every third prediction (3)".into(),
                rerun_setup: true,
            }),
        ),
        (
            "slot_response_done",
            SlotResponse(cogvisor_protocol::SlotResponse::Done {
                id: "pred_123".into(),
                predict_time: 0.25,
                is_stream: false,
            }),
        ),
        (
            "slot_response_failed",
            SlotResponse(cogvisor_protocol::SlotResponse::Failed {
                id: "pred_123".into(),
                error: "ValueError: bad input".into(),
            }),
        ),
        (
            "slot_response_cancelled",
            SlotResponse(cogvisor_protocol::SlotResponse::Cancelled {
                id: "pred_123".into(),
            }),
        ),
    ]
}

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../protocol-fixtures/messages.json")
}

#[test]
fn every_message_matches_its_snapshot() {
    for (name, message) in all_messages() {
        insta::assert_json_snapshot!(name, message.to_value());
    }
}

#[test]
fn every_message_matches_the_shared_fixture_byte_for_byte() {
    let messages = all_messages();
    if std::env::var_os("UPDATE_PROTOCOL_FIXTURES").is_some() {
        let fixture: BTreeMap<&str, String> =
            messages.iter().map(|(n, m)| (*n, m.to_json())).collect();
        let text = serde_json::to_string_pretty(&fixture).expect("fixture serializes") + "\n";
        std::fs::write(fixture_path(), text).expect("write fixture");
    }
    let text =
        std::fs::read_to_string(fixture_path()).expect("read protocol-fixtures/messages.json");
    let fixture: BTreeMap<String, String> =
        serde_json::from_str(&text).expect("fixture is a name → JSON map");
    assert_eq!(
        fixture.keys().cloned().collect::<Vec<_>>(),
        {
            let mut names: Vec<String> = messages.iter().map(|(n, _)| n.to_string()).collect();
            names.sort();
            names
        },
        "the fixture names exactly the messages built here"
    );
    for (name, message) in &messages {
        assert_eq!(&message.to_json(), &fixture[*name], "{name}");
        message.assert_decodes_from(name, &fixture[*name]);
    }
}

#[test]
fn variant_coverage_is_complete() {
    // A new variant must be added to `all_messages` (and so to the fixture and the Python suite):
    // these matches stop compiling until it is listed here too.
    for (_, message) in all_messages() {
        match message {
            Message::ControlRequest(m) => match m {
                ControlRequest::Init { .. }
                | ControlRequest::Cancel { .. }
                | ControlRequest::Healthcheck { .. }
                | ControlRequest::Heartbeat { .. }
                | ControlRequest::Shutdown => {}
            },
            Message::ControlResponse(m) => match m {
                ControlResponse::Ready { .. }
                | ControlResponse::Log { .. }
                | ControlResponse::WorkerLog { .. }
                | ControlResponse::Idle { .. }
                | ControlResponse::Cancelled { .. }
                | ControlResponse::Failed { .. }
                | ControlResponse::SetupFailed { .. }
                | ControlResponse::Fatal { .. }
                | ControlResponse::DroppedLogs { .. }
                | ControlResponse::HealthcheckResult { .. }
                | ControlResponse::HeartbeatAck { .. }
                | ControlResponse::ShuttingDown
                | ControlResponse::RecycleRequested { .. } => {}
            },
            Message::SlotRequest(SlotRequest::Predict { .. }) => {}
            Message::SlotResponse(m) => match m {
                SlotResponse::Log { .. }
                | SlotResponse::Output { .. }
                | SlotResponse::FileOutput { .. }
                | SlotResponse::Metric { .. }
                | SlotResponse::RecycleRequested { .. }
                | SlotResponse::Done { .. }
                | SlotResponse::Failed { .. }
                | SlotResponse::Cancelled { .. } => {}
            },
        }
    }
    let names: Vec<&str> = all_messages().iter().map(|(n, _)| *n).collect();
    for prefix in [
        "control_request_",
        "control_response_",
        "slot_request_",
        "slot_response_",
    ] {
        assert!(names.iter().any(|n| n.starts_with(prefix)), "{prefix}");
    }
}
