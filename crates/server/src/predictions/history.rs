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
