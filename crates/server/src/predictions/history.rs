//! A prediction's server-sent events: each event is recorded in a bounded history for subscribers that
//! arrive late and sent to the live ones; the SSE response itself is in [`crate::sse`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use super::state::{Prediction, State};

/// Events buffered for live SSE subscribers that fall behind.
const LIVE_CAPACITY: usize = 1024;

/// One server-sent event: its name and JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub name: &'static str,
    pub data: EventData,
}

/// What an SSE event carries. An output event shares its value with the prediction's outputs, and
/// the `completed` event (the sync response body) is rendered from the final state when sent, so the
/// history holds no second copy of an output. [`Prediction::event_json`] renders it.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    Json(Value),
    /// `{"chunk": <output>, "index": <n>}`.
    Output {
        chunk: Arc<Value>,
        index: usize,
    },
    /// The sync response body of the finished prediction.
    Completed,
}

/// What a new SSE subscriber gets: the history so far, then live events.
#[derive(Debug)]
pub struct Subscription {
    pub replay: Vec<StreamEvent>,
    /// Events the history had to drop; a subscriber that missed any gets an error instead of a replay.
    pub evicted: u64,
    pub live: broadcast::Receiver<StreamEvent>,
}

impl Prediction {
    /// Records an SSE event and sends it to live subscribers. Called with the state locked, so a
    /// subscriber's history snapshot and its live receiver never miss or repeat an event.
    pub(super) fn record(&self, state: &mut State, name: &'static str, data: EventData) {
        let event = StreamEvent { name, data };
        // With no history (capacity 0) nothing is kept, so nothing counts as lost: a late subscriber
        // gets the live events only, as in Cog.
        if self.history_capacity > 0 {
            if state.history.len() == self.history_capacity {
                state.history.pop_front();
                state.evicted += 1;
            }
            state.history.push_back(event.clone());
        }
        if let Some(live) = &state.live {
            let _ = live.send(event);
        }
    }

    /// Subscribes to this prediction's events.
    pub fn subscribe(&self) -> Subscription {
        let mut state = self.lock();
        let live = state
            .live
            .get_or_insert_with(|| broadcast::channel(LIVE_CAPACITY).0)
            .subscribe();
        let mut replay: Vec<StreamEvent> = state.history.iter().cloned().collect();
        if self.history_capacity == 0 && state.completed_at.is_some() {
            // No history, and the `completed` event is already sent: the live channel has nothing
            // more to give, so the subscriber gets the final state at once (rendered when sent).
            replay.push(StreamEvent {
                name: "completed",
                data: EventData::Completed,
            });
        }
        Subscription {
            replay,
            evicted: state.evicted,
            live,
        }
    }

    /// Counts an SSE stream in; the returned count is the number open now.
    pub fn watch(&self) -> usize {
        self.subscribers.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Counts an SSE stream out; true when it was the last one.
    pub fn unwatch(&self) -> bool {
        self.subscribers.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// The data line of an SSE event of this prediction.
    pub fn event_json(&self, event: &StreamEvent) -> String {
        match &event.data {
            EventData::Json(v) => v.to_string(),
            EventData::Output { chunk, index } => {
                // The keys in the order a JSON object of them serializes in.
                format!("{{\"chunk\":{chunk},\"index\":{index}}}")
            }
            EventData::Completed => String::from_utf8_lossy(&self.sync_body_json()).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictions::testing::prediction;
    use crate::schema::Kind;
    use cogvisor_supervisor::PredictionEvent;
    use serde_json::json;

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
        assert_eq!(data(4), p.sync_body());
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

    #[test]
    fn no_history_means_no_replay_and_nothing_counted_lost() {
        let p = Prediction::with_history("p".into(), Kind::Prediction, json!({}), false, 1024, 0);
        p.start();
        for i in 0..3 {
            p.apply(PredictionEvent::Output(json!(i)));
        }
        let sub = p.subscribe();
        assert!(sub.replay.is_empty());
        assert_eq!(sub.evicted, 0);
        assert!(p.lock().history.is_empty());
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

    #[test]
    fn no_live_channel_is_allocated_until_someone_subscribes() {
        let p = prediction(false);
        p.start();
        p.apply(PredictionEvent::Output(json!("x")));
        assert!(p.lock().live.is_none());
        let sub = p.subscribe();
        assert_eq!(sub.replay.len(), 2);
        assert!(p.lock().live.is_some());
    }

    #[test]
    fn the_history_shares_outputs_instead_of_copying_them() {
        let p = prediction(false);
        p.apply(PredictionEvent::Output(json!("big")));
        let state = p.lock();
        let EventData::Output { chunk, index: 0 } = &state.history[0].data else {
            panic!("expected an output event: {:?}", state.history[0]);
        };
        assert!(Arc::ptr_eq(chunk, &state.outputs[0]));
    }
}
