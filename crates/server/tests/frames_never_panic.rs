//! Whatever the worker writes on a slot socket, the supervisor's path never panics nor overflows its
//! stack: arbitrary bytes, and frames of arbitrary messages (with metric names of up to 200,000
//! segments, values nested past the decoder's depth limit, file outputs naming devices, FIFOs, links,
//! paths outside the output directory, and spill files that are not there), are decoded with the
//! protocol's codec, turned into prediction events as the supervisor turns them (file outputs read as
//! the driver reads them), applied to a prediction, and its bodies written. protocol.md promises
//! "never a panic".

mod common;

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use cogvisor_protocol::{spill, FileOutputKind, FrameCodec, SlotRequest, SlotResponse};
use cogvisor_server::output_file::DEFAULT_MAX_OUTPUT_FILE;
use cogvisor_server::response::read_data_url;
use cogvisor_supervisor::PredictionEvent;
use proptest::prelude::*;
use serde_json::{json, Value};
use tokio_util::codec::Decoder;

/// A runtime directory with a spill directory and one prediction's output directory holding a
/// regular file, a FIFO, a link out and a link to /dev/zero.
struct Env {
    _root: tempfile::TempDir,
    spill: PathBuf,
    outputs: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Env {
    fn new() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let spill = root.path().join("spill");
        let outputs = root.path().join("outputs").join("0");
        std::fs::create_dir_all(&spill).expect("mkdir");
        std::fs::create_dir_all(&outputs).expect("mkdir");
        std::fs::write(outputs.join("ok.txt"), "hi").expect("write");
        std::fs::write(root.path().join("secret"), "s").expect("write");
        std::os::unix::fs::symlink(root.path().join("secret"), outputs.join("link")).expect("link");
        std::os::unix::fs::symlink("/dev/zero", outputs.join("zero")).expect("link");
        let fifo = std::ffi::CString::new(outputs.join("fifo").as_os_str().as_encoded_bytes())
            .expect("path");
        // SAFETY: `fifo` is a valid NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Self {
            _root: root,
            spill,
            outputs,
            runtime,
        }
    }

    /// The event the supervisor sends for `message` (file outputs read as the driver reads them),
    /// or `None` where the supervisor would poison the slot instead.
    fn event(&self, message: SlotResponse) -> Option<PredictionEvent> {
        Some(match message {
            SlotResponse::Log { source, data } => PredictionEvent::Log {
                source,
                data: cogvisor_protocol::truncate_log(data),
            },
            SlotResponse::Output { output } => PredictionEvent::Output(output),
            SlotResponse::FileOutput {
                filename,
                kind: FileOutputKind::File,
                mime_type,
            } => {
                let read = self.runtime.block_on(read_data_url(
                    self.outputs.clone(),
                    PathBuf::from(filename),
                    mime_type,
                    DEFAULT_MAX_OUTPUT_FILE,
                ));
                match read {
                    Ok(value) => PredictionEvent::Output(value),
                    Err(e) => PredictionEvent::Failed {
                        error: e.to_string(),
                    },
                }
            }
            SlotResponse::FileOutput {
                filename,
                kind: FileOutputKind::Oversized,
                ..
            } => PredictionEvent::Output(spill::take(&self.spill, Path::new(&filename)).ok()?),
            SlotResponse::Metric { name, value, mode } => {
                PredictionEvent::Metric { name, value, mode }
            }
            SlotResponse::RecycleRequested { .. } => return None,
            SlotResponse::Done {
                predict_time,
                is_stream,
                ..
            } => PredictionEvent::Succeeded {
                predict_time,
                is_stream,
            },
            SlotResponse::Failed { error, .. } => PredictionEvent::Failed { error },
            SlotResponse::Cancelled { .. } => PredictionEvent::Canceled,
        })
    }

    /// Decodes `wire` frame by frame and applies each message to one prediction, until the stream
    /// runs out, breaks (as the slot would be poisoned) or ends the prediction; then writes its bodies.
    fn feed(&self, wire: &[u8]) {
        let mut codec = FrameCodec::<SlotResponse, SlotRequest>::new();
        let mut buf = BytesMut::from(wire);
        let p = common::prediction(false);
        p.start();
        while let Ok(Some(message)) = codec.decode(&mut buf) {
            let Some(event) = self.event(message) else {
                continue;
            };
            if p.apply(event) {
                break;
            }
        }
        p.finish(0.1);
        assert_json(&p.sync_body_json(), "the sync body");
        assert_json(&p.snapshot_json(), "the snapshot");
        let _ = p.approx_bytes();
    }
}

/// `bytes` is JSON. A value may be as deep as the decoder accepts (128) inside the body's own objects,
/// which is valid JSON but deeper than serde_json's reader takes by default: that one error is allowed.
fn assert_json(bytes: &[u8], what: &str) {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(_) => {}
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => {}
        Err(e) => panic!("{what} is not JSON: {e}"),
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A value nested `depth` arrays deep, as text (deeper than the decoder accepts past 128).
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

fn path(env: &Env) -> impl Strategy<Value = String> {
    let outputs = env.outputs.display().to_string();
    let spill = env.spill.display().to_string();
    prop_oneof![
        Just(format!("{outputs}/ok.txt")),
        Just(format!("{outputs}/link")),
        Just(format!("{outputs}/zero")),
        Just(format!("{outputs}/fifo")),
        Just(format!("{outputs}/../../secret")),
        Just(outputs.clone()),
        Just("/dev/zero".to_string()),
        Just("/etc/passwd".to_string()),
        Just(format!("{spill}/missing.json")),
        Just(format!("{spill}/../outputs/0/ok.txt")),
        any::<String>(),
    ]
}

fn metric_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}(\\.[a-z]{1,8}){0,5}",
        (0usize..200_000).prop_map(|n| vec!["a"; n].join(".")),
        any::<String>(),
    ]
}

fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1".to_string()),
        Just("null".to_string()),
        Just("\"x\"".to_string()),
        (0usize..300).prop_map(nested),
        any::<String>().prop_map(|s| Value::String(s).to_string()),
    ]
}

/// One frame's payload: a message of every type, with hostile fields, or garbage.
fn payload(env: &Env) -> impl Strategy<Value = Vec<u8>> {
    let kind = prop_oneof![Just("file"), Just("oversized"), Just("other")];
    let mode = prop_oneof![
        Just("replace"),
        Just("increment"),
        Just("append"),
        Just("x")
    ];
    prop_oneof![
        (metric_name(), value_text(), mode).prop_map(|(name, value, mode)| format!(
            r#"{{"type":"metric","name":{},"value":{value},"mode":"{mode}"}}"#,
            Value::String(name)
        )
        .into_bytes()),
        (path(env), kind, prop::option::of("[a-z/]{0,12}")).prop_map(|(name, kind, mime)| {
            let mut m = json!({"type": "file_output", "filename": name, "kind": kind});
            if let Some(mime) = mime {
                m["mime_type"] = mime.into();
            }
            m.to_string().into_bytes()
        }),
        value_text().prop_map(|v| format!(r#"{{"type":"output","output":{v}}}"#).into_bytes()),
        any::<String>().prop_map(|d| json!({"type": "log", "source": "stdout", "data": d})
            .to_string()
            .into_bytes()),
        Just(br#"{"type":"done","id":"p1","predict_time":0.1,"is_stream":false}"#.to_vec()),
        Just(br#"{"type":"failed","id":"p1","error":"e"}"#.to_vec()),
        Just(br#"{"type":"cancelled","id":"p1"}"#.to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

#[test]
fn a_metric_name_of_100000_segments_and_a_value_past_the_depth_limit_do_not_break_it() {
    let env = Env::new();
    let deep_name = vec!["a"; 100_000].join(".");
    let mut wire = frame(
        format!(
            r#"{{"type":"metric","name":{},"value":1,"mode":"replace"}}"#,
            Value::String(deep_name)
        )
        .as_bytes(),
    );
    wire.extend(frame(
        format!(r#"{{"type":"output","output":{}}}"#, nested(100_000)).as_bytes(),
    ));
    env.feed(&wire);
}

#[test]
fn an_output_or_metric_nested_as_deep_as_the_decoder_takes_makes_json_bodies() {
    let env = Env::new();
    for depth in 120..=130 {
        env.feed(&frame(
            format!(r#"{{"type":"output","output":{}}}"#, nested(depth)).as_bytes(),
        ));
        env.feed(&frame(
            format!(
                r#"{{"type":"metric","name":"m","value":{},"mode":"replace"}}"#,
                nested(depth)
            )
            .as_bytes(),
        ));
    }
}

#[test]
fn every_file_output_the_worker_can_name_is_read_or_refused_at_once() {
    let env = Env::new();
    for name in ["ok.txt", "link", "zero", "fifo"] {
        let m = json!({"type": "file_output", "filename": env.outputs.join(name), "kind": "file"});
        env.feed(&frame(m.to_string().as_bytes()));
    }
}

fn config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: 256,
        failure_persistence: None,
        ..Default::default()
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let env = Env::new();
    proptest::test_runner::TestRunner::new(config())
        .run(&prop::collection::vec(any::<u8>(), 0..2048), |wire| {
            env.feed(&wire);
            Ok(())
        })
        .expect("no panic");
}

#[test]
fn arbitrary_frames_never_panic() {
    let env = Env::new();
    proptest::test_runner::TestRunner::new(config())
        .run(&prop::collection::vec(payload(&env), 0..12), |payloads| {
            let wire: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
            env.feed(&wire);
            Ok(())
        })
        .expect("no panic");
}
