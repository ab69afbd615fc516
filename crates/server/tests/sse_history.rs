//! A prediction's SSE history as a subscriber sees it: replay order and event data, what a full or
//! absent history gives a late subscriber, live events after the replay.

mod common;

use cogvisor_server::predictions::Prediction;
use cogvisor_server::schema::Kind;
use cogvisor_supervisor::PredictionEvent;
use common::{prediction, sync_body};
use serde_json::{json, Value};

#[test]
fn sse_events_are_recorded_in_order_with_output_indexes() {
    let p = prediction(false);
    p.start();
    p.apply(PredictionEvent::Log {
        source: cogvisor_protocol::LogSource::Stdout,
        data: "a\n".into(),
    });
    p.apply(PredictionEvent::Output(json!("x")));
    p.apply(PredictionEvent::Output(json!("y")));
    p.apply(PredictionEvent::Succeeded {
        predict_time: 0.0,
        is_stream: true,
    });
    p.finish(0.1);
    let sub = p.subscribe();
    let names: Vec<&str> = sub.replay.iter().map(|e| e.name).collect();
    assert_eq!(names, ["start", "log", "output", "output", "completed"]);
    let data = |i: usize| -> Value {
        serde_json::from_str(&p.event_json(&sub.replay[i])).expect("event JSON")
    };
    assert_eq!(data(0), json!({"id": "p1", "status": "processing"}));
    assert_eq!(data(1), json!({"data": "a\n", "source": "stdout"}));
    assert_eq!(p.event_json(&sub.replay[3]), r#"{"chunk":"y","index":1}"#);
    assert_eq!(data(4), sync_body(&p));
    assert_eq!(data(4)["output"], json!(["x", "y"]));
    assert_eq!(sub.evicted, 0);
}

#[test]
fn a_full_history_counts_what_it_evicted() {
    let p = Prediction::with_history("p".into(), Kind::Prediction, json!({}), false, 1024, 2);
    for i in 0..5 {
        p.apply(PredictionEvent::Output(json!(i)));
    }
    let sub = p.subscribe();
    assert_eq!(sub.replay.len(), 2);
    assert_eq!(sub.evicted, 3);
}

#[tokio::test]
async fn with_no_history_a_subscriber_after_the_end_gets_the_completion() {
    let p = Prediction::with_history("p".into(), Kind::Prediction, json!({}), true, 1024, 0);
    p.start();
    let mut early = p.subscribe();
    p.apply(PredictionEvent::Output(json!("x")));
    p.apply(PredictionEvent::Succeeded {
        predict_time: 0.0,
        is_stream: true,
    });
    // Ended but `completed` not yet sent: a subscriber now waits for it live.
    assert!(p.subscribe().replay.is_empty());
    p.finish(0.5);
    let late = p.subscribe();
    let names: Vec<&str> = late.replay.iter().map(|e| e.name).collect();
    assert_eq!(names, ["completed"]);
    let data: Value = serde_json::from_str(&p.event_json(&late.replay[0])).expect("JSON");
    assert_eq!(data["output"], json!(["x"]));
    assert_eq!(data["metrics"]["predict_time"], json!(0.5));
    assert_eq!(early.live.recv().await.expect("live").name, "output");
    assert_eq!(early.live.recv().await.expect("live").name, "completed");
}

#[tokio::test]
async fn a_subscriber_gets_live_events_after_its_replay() {
    let p = prediction(false);
    p.start();
    let mut sub = p.subscribe();
    assert_eq!(sub.replay.len(), 1);
    p.apply(PredictionEvent::Output(json!("live")));
    let event = sub.live.recv().await.expect("live event");
    assert_eq!(event.name, "output");
}
