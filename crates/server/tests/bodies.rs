//! A prediction's JSON bodies as a client reads them: the sync response, the snapshot (async, polling,
//! webhooks), the 202 as created, Cog's array rules for `output`, and bytes identical to `serde_json`'s.

mod common;

use cogvisor_supervisor::PredictionEvent;
use common::{prediction, snapshot, sync_body};
use serde_json::{json, Value};

#[test]
fn a_new_prediction_is_starting_with_its_input_and_creation_time() {
    let p = prediction(false);
    let s = snapshot(&p);
    assert_eq!(s["status"], "starting");
    assert_eq!(s["input"], json!({"text": "x"}));
    assert!(s["created_at"].is_string());
    assert!(s.get("output").is_none());
    assert!(s.get("completed_at").is_none());
}

#[test]
fn the_created_state_is_starting_whatever_has_happened_since() {
    let p = prediction(false);
    p.start();
    p.apply(PredictionEvent::Log {
        source: cogvisor_protocol::LogSource::Stdout,
        data: "early\n".into(),
    });
    p.apply(PredictionEvent::Output(json!("x")));
    let created: Value = serde_json::from_slice(&p.created_json()).expect("JSON");
    assert_eq!(
        created,
        json!({"id": "p1", "status": "starting", "input": {"text": "x"}, "logs": "",
               "metrics": {}, "created_at": snapshot(&p)["created_at"]})
    );
    let now = snapshot(&p);
    assert_eq!(now["status"], "processing");
    assert!(now["started_at"].is_string());
}

#[test]
fn success_has_cogs_sync_shape_and_a_full_snapshot() {
    let p = prediction(false);
    p.apply(PredictionEvent::Log {
        source: cogvisor_protocol::LogSource::Stdout,
        data: "hi\n".into(),
    });
    p.apply(PredictionEvent::Output(json!("hello")));
    assert!(p.apply(PredictionEvent::Succeeded {
        predict_time: 0.1,
        is_stream: false
    }));
    p.finish(0.5);
    assert_eq!(
        sync_body(&p),
        json!({"id": "p1", "status": "succeeded", "output": "hello", "logs": "hi\n", "metrics": {"predict_time": 0.5}})
    );
    let s = snapshot(&p);
    assert!(s["completed_at"].is_string());
    assert_eq!(s["input"], json!({"text": "x"}));
}

#[test]
fn outputs_follow_cogs_array_rules() {
    let output = |array: bool, items: &[Value], stream: bool| {
        let p = prediction(array);
        for item in items {
            p.apply(PredictionEvent::Output(item.clone()));
        }
        p.apply(PredictionEvent::Succeeded {
            predict_time: 0.0,
            is_stream: stream,
        });
        sync_body(&p)["output"].clone()
    };
    assert_eq!(output(false, &[], false), Value::Null);
    assert_eq!(output(true, &[], false), json!([]));
    assert_eq!(output(false, &[json!("only")], false), json!("only"));
    assert_eq!(output(true, &[json!("only")], false), json!(["only"]));
    assert_eq!(output(false, &[json!("only")], true), json!(["only"]));
    assert_eq!(output(false, &[json!(1), json!(2)], false), json!([1, 2]));
}

#[test]
fn bodies_are_the_compact_json_of_their_value_with_sorted_keys() {
    // The bytes must be exactly what serializing the equivalent `Value` gives: re-serializing
    // the parsed body reproduces them.
    let canonical = |bytes: Vec<u8>| {
        let value: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(
            String::from_utf8(serde_json::to_vec(&value).expect("JSON")).expect("utf-8"),
            String::from_utf8(bytes).expect("utf-8")
        );
    };
    let p = prediction(true);
    canonical(p.snapshot_json());
    p.start();
    p.apply(PredictionEvent::Log {
        source: cogvisor_protocol::LogSource::Stdout,
        data: "line \"1\"\n".into(),
    });
    p.apply(PredictionEvent::Output(
        json!({"z": 1, "a": [1.5, null, "é"]}),
    ));
    p.apply(PredictionEvent::Metric {
        name: "m.n".into(),
        value: json!(3),
        mode: cogvisor_protocol::MetricMode::Replace,
    });
    canonical(p.snapshot_json());
    p.apply(PredictionEvent::Succeeded {
        predict_time: 0.0,
        is_stream: false,
    });
    p.finish(0.25);
    canonical(p.snapshot_json());
    canonical(p.sync_body_json());
    assert_eq!(
        String::from_utf8(p.sync_body_json()).expect("utf-8"),
        r#"{"id":"p1","logs":"line \"1\"\n","metrics":{"m":{"n":3},"predict_time":0.25},"output":[{"a":[1.5,null,"é"],"z":1}],"status":"succeeded"}"#
    );
    let long = prediction(false);
    long.apply(PredictionEvent::Output(json!({
        "plain": "x".repeat(1000),
        "escaped": format!("{}\"\n", "y".repeat(1000)),
    })));
    long.apply(PredictionEvent::Output(json!("z".repeat(1000))));
    long.apply(PredictionEvent::Succeeded {
        predict_time: 0.0,
        is_stream: true,
    });
    long.finish(0.5);
    canonical(long.sync_body_json());
    canonical(long.snapshot_json());
    let failed = prediction(false);
    failed.apply(PredictionEvent::Failed {
        error: "boom".into(),
    });
    failed.finish(0.5);
    canonical(failed.sync_body_json());
    assert_eq!(
        String::from_utf8(failed.sync_body_json()).expect("utf-8"),
        r#"{"error":"boom","id":"p1","logs":"","metrics":{"predict_time":0.5},"status":"failed"}"#
    );
}

#[test]
fn partial_outputs_show_in_snapshots_as_an_array_when_the_schema_says_so() {
    let p = prediction(true);
    p.apply(PredictionEvent::Output(json!("a")));
    assert_eq!(snapshot(&p)["output"], json!(["a"]));
}
