//! A prediction's server-sent events: each event is rendered once, recorded in a history bounded in
//! events and bytes for subscribers that arrive late, and queued for the live ones. Every copy of an
//! event is a reference count: a replay and each subscriber's queue share the one rendering. A
//! subscriber whose queue grows past its bound (it does not read) is cut off: its queue is freed and
//! its stream ends with an `error` event. The SSE response itself is in [`crate::sse`].

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::Notify;

use super::state::{Prediction, State};

/// Live events queued for one subscriber at most, whatever their size (Cog's broadcast capacity).
pub const LIVE_CAPACITY: usize = 1024;

/// Default bytes of SSE events a prediction keeps for late subscribers (`sse.history_max_per_prediction`).
pub const DEFAULT_HISTORY_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Default bytes of live events queued for one subscriber (`sse.max_buffered_per_subscriber`).
pub const DEFAULT_SUBSCRIBER_MAX_BYTES: usize = 8 * 1024 * 1024;

/// What an event that shares its value (an output, the completion) counts for: the reference and
/// its bookkeeping, since the value itself is held by the prediction anyway.
const SHARED_EVENT_BYTES: usize = 16;

/// The bounds of a prediction's SSE events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Events kept for late subscribers (`COG_STREAM_HISTORY_CAPACITY`; 0: none).
    pub history_capacity: usize,
    /// Bytes of events kept for late subscribers; past them the oldest are dropped.
    pub history_max_bytes: usize,
    /// Bytes of live events queued for one subscriber; past them it is cut off.
    pub subscriber_max_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            history_capacity: crate::config::DEFAULT_STREAM_HISTORY_CAPACITY,
            history_max_bytes: DEFAULT_HISTORY_MAX_BYTES,
            subscriber_max_bytes: DEFAULT_SUBSCRIBER_MAX_BYTES,
        }
    }
}

/// One server-sent event: its name and JSON data. Cloning it clones reference counts only.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub name: &'static str,
    pub data: EventData,
}

/// What an SSE event carries. A `start`, `log` or `metric` event is its JSON text, rendered once
/// and shared; an output event shares its value with the prediction's outputs, and the `completed`
/// event (the sync response body) is rendered from the final state when sent, so the history holds
/// no second copy of an output. [`Prediction::event_json`] renders it.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    /// The data line, rendered (one buffer, shared: a `String` moved in, not copied).
    Text(Arc<String>),
    /// `{"chunk": <output>, "index": <n>}`.
    Output { chunk: Arc<Value>, index: usize },
    /// The sync response body of the finished prediction.
    Completed,
}

impl StreamEvent {
    /// The bytes this event holds of its own (what the SSE bounds count).
    pub fn bytes(&self) -> usize {
        match &self.data {
            EventData::Text(text) => text.len() + SHARED_EVENT_BYTES,
            EventData::Output { .. } | EventData::Completed => SHARED_EVENT_BYTES,
        }
    }
}

/// Why a live subscriber was cut off: it did not read, and its queue reached a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lagged {
    /// More than [`LIVE_CAPACITY`] events waited for it.
    Events { skipped: u64 },
    /// More than this many bytes of events waited for it.
    Bytes { skipped: u64, limit: usize },
}

impl Lagged {
    /// The events the subscriber will not get.
    pub fn skipped(self) -> u64 {
        match self {
            Lagged::Events { skipped } | Lagged::Bytes { skipped, .. } => skipped,
        }
    }

    /// Why, in words, for the client's `error` event.
    pub fn reason(self) -> String {
        match self {
            Lagged::Events { .. } => {
                format!("more than {LIVE_CAPACITY} events waited for this client")
            }
            Lagged::Bytes { limit, .. } => format!(
                "more than {limit} bytes of events waited for this client (sse.max_buffered_per_subscriber)"
            ),
        }
    }
}

/// One live subscriber's queue, filled under the prediction's state lock and drained by its stream.
#[derive(Debug, Default)]
pub(super) struct Subscriber {
    queue: Mutex<Queue>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<StreamEvent>,
    bytes: usize,
    lagged: Option<Lagged>,
}

impl Subscriber {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Every update keeps the queue consistent, so it is usable after a panic elsewhere.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `event`; false when that cut the subscriber off (its queue is freed at once).
    fn push(&self, event: &StreamEvent, max_bytes: usize) -> bool {
        let mut queue = self.queue();
        let bytes = event.bytes();
        let lagged = if queue.events.len() >= LIVE_CAPACITY {
            Some(Lagged::Events {
                skipped: queue.events.len() as u64 + 1,
            })
        } else if queue.bytes + bytes > max_bytes {
            Some(Lagged::Bytes {
                skipped: queue.events.len() as u64 + 1,
                limit: max_bytes,
            })
        } else {
            None
        };
        match lagged {
            Some(lagged) => {
                queue.events = VecDeque::new();
                queue.bytes = 0;
                queue.lagged = Some(lagged);
            }
            None => {
                queue.bytes += bytes;
                queue.events.push_back(event.clone());
            }
        }
        drop(queue);
        self.wake.notify_one();
        lagged.is_none()
    }
}

/// A subscriber's live events, after its replay.
#[derive(Debug)]
pub struct Live {
    subscriber: Arc<Subscriber>,
}

impl Live {
    /// The next live event, or why the subscriber was cut off.
    pub async fn recv(&mut self) -> Result<StreamEvent, Lagged> {
        loop {
            {
                let mut queue = self.subscriber.queue();
                if let Some(event) = queue.events.pop_front() {
                    queue.bytes -= event.bytes();
                    return Ok(event);
                }
                if let Some(lagged) = queue.lagged {
                    return Err(lagged);
                }
            }
            // A push between the unlock and here leaves a permit, so no event is missed.
            self.subscriber.wake.notified().await;
        }
    }

    /// Bytes queued for this subscriber now.
    pub fn queued_bytes(&self) -> usize {
        self.subscriber.queue().bytes
    }
}

impl Drop for Live {
    /// A stream that goes frees what waited for it at once, not at the prediction's next event.
    fn drop(&mut self) {
        let mut queue = self.subscriber.queue();
        queue.events = VecDeque::new();
        queue.bytes = 0;
    }
}

/// What a new SSE subscriber gets: the history so far, then live events.
#[derive(Debug)]
pub struct Subscription {
    /// The history, shared with the prediction's (reference counts, not copies).
    pub replay: Vec<StreamEvent>,
    /// Events the history had to drop; a subscriber that missed any gets an error instead of a replay.
    pub evicted: u64,
    pub live: Live,
}

impl Prediction {
    /// Records an SSE event and queues it for live subscribers. Called with the state locked, so a
    /// subscriber's history snapshot and its live queue never miss or repeat an event.
    pub(super) fn record(&self, state: &mut State, name: &'static str, data: EventData) {
        let event = StreamEvent { name, data };
        let limits = self.stream_limits;
        // With no history (capacity 0) nothing is kept, so nothing counts as lost: a late subscriber
        // gets the live events only, as in Cog.
        if limits.history_capacity > 0 {
            state.history_bytes += event.bytes();
            state.history.push_back(event.clone());
            while state.history.len() > limits.history_capacity
                || state.history_bytes > limits.history_max_bytes
            {
                let Some(old) = state.history.pop_front() else {
                    break;
                };
                state.history_bytes -= old.bytes();
                state.evicted += 1;
            }
        }
        // A subscriber whose stream has gone (only this list holds it) or that was cut off now
        // leaves the list.
        state.live.retain(|subscriber| {
            Arc::strong_count(subscriber) > 1
                && subscriber.push(&event, limits.subscriber_max_bytes)
        });
        if name == "completed" {
            // Nothing follows it: each subscriber keeps its own queue until it has read it.
            state.live = Vec::new();
        }
    }

    /// Subscribes to this prediction's events.
    pub fn subscribe(&self) -> Subscription {
        let mut state = self.lock();
        let subscriber = Arc::new(Subscriber::default());
        state.live.retain(|s| Arc::strong_count(s) > 1);
        if state.completed_at.is_none() {
            state.live.push(subscriber.clone());
        }
        let mut replay: Vec<StreamEvent> = state.history.iter().cloned().collect();
        if self.stream_limits.history_capacity == 0 && state.completed_at.is_some() {
            // No history, and the `completed` event is already sent: the live queue has nothing
            // more to give, so the subscriber gets the final state at once (rendered when sent).
            replay.push(StreamEvent {
                name: "completed",
                data: EventData::Completed,
            });
        }
        Subscription {
            replay,
            evicted: state.evicted,
            live: Live { subscriber },
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

    /// The data line of an SSE event of this prediction: the shared text itself for most events.
    pub fn event_json<'e>(&self, event: &'e StreamEvent) -> Cow<'e, str> {
        match &event.data {
            EventData::Text(text) => Cow::Borrowed(text.as_str()),
            EventData::Output { chunk, index } => {
                // The keys in the order a JSON object of them serializes in.
                Cow::Owned(format!("{{\"chunk\":{chunk},\"index\":{index}}}"))
            }
            EventData::Completed => {
                Cow::Owned(String::from_utf8_lossy(&self.sync_body_json()).into_owned())
            }
        }
    }

    /// The bytes the SSE history holds now.
    pub fn history_bytes(&self) -> usize {
        self.lock().history_bytes
    }
}

/// The data of a `log` event, `{"data": <line>, "source": <source>}` (keys in the order a JSON
/// object of them serializes in), written straight from the line: no intermediate JSON value, and
/// the one buffer becomes the shared text without another copy.
pub(super) fn render_log(data: &str, source: &'static str) -> EventData {
    let mut out = Vec::with_capacity(data.len() + 32);
    out.extend_from_slice(b"{\"data\":");
    if let Err(e) = cogvisor_protocol::json::write_str(&mut out, data) {
        // Unreachable: a Vec never fails to write.
        tracing::error!(error = %e, "cannot encode a log event");
        return render(&serde_json::json!({"data": data, "source": source}));
    }
    // `source` is `stdout` or `stderr`: nothing to escape.
    out.extend_from_slice(b",\"source\":\"");
    out.extend_from_slice(source.as_bytes());
    out.extend_from_slice(b"\"}");
    match String::from_utf8(out) {
        Ok(text) => EventData::Text(Arc::new(text)),
        Err(_) => render(&serde_json::json!({"data": data, "source": source})),
    }
}

/// JSON text of `value`, shared.
pub(super) fn render(value: &Value) -> EventData {
    EventData::Text(Arc::new(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictions::testing::prediction;
    use crate::schema::Kind;
    use cogvisor_supervisor::PredictionEvent;
    use serde_json::json;

    fn log(p: &Prediction, text: &str) {
        p.apply(PredictionEvent::Log {
            source: cogvisor_protocol::LogSource::Stdout,
            data: text.into(),
        });
    }

    fn limited(history_bytes: usize, subscriber_bytes: usize) -> Prediction {
        Prediction::with_history(
            "p".into(),
            Kind::Prediction,
            json!({}),
            false,
            1 << 20,
            1024,
        )
        .with_stream_limits(StreamLimits {
            history_capacity: 1024,
            history_max_bytes: history_bytes,
            subscriber_max_bytes: subscriber_bytes,
        })
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

    #[test]
    fn the_history_is_bounded_in_bytes_and_counts_what_it_dropped() {
        let p = limited(10_000, 1 << 20);
        for _ in 0..10 {
            log(&p, &"x".repeat(3000));
        }
        let bytes = p.history_bytes();
        assert!(bytes <= 10_000, "{bytes}");
        let sub = p.subscribe();
        assert_eq!(sub.replay.len(), 3);
        assert_eq!(sub.evicted, 7);
        // What is counted is what is held.
        let held: usize = p.lock().history.iter().map(StreamEvent::bytes).sum();
        assert_eq!(held, bytes);
    }

    #[test]
    fn log_events_render_as_serde_json_would() {
        for line in ["plain\n", "quote \" and \\ and \u{1} and é\n", ""] {
            let EventData::Text(text) = render_log(line, "stderr") else {
                panic!("a log event is text");
            };
            assert_eq!(
                text.as_str(),
                json!({"data": line, "source": "stderr"}).to_string()
            );
        }
    }

    #[test]
    fn a_replay_shares_the_history_instead_of_copying_it() {
        let p = prediction(false);
        log(&p, "a line\n");
        let first = p.subscribe();
        let second = p.subscribe();
        let state = p.lock();
        let (EventData::Text(a), EventData::Text(b), EventData::Text(h)) = (
            &first.replay[0].data,
            &second.replay[0].data,
            &state.history[0].data,
        ) else {
            panic!("expected rendered log events");
        };
        assert!(Arc::ptr_eq(a, h) && Arc::ptr_eq(b, h));
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_is_cut_off_at_its_byte_bound() {
        let p = limited(1 << 20, 10_000);
        let mut slow = p.subscribe();
        let mut fast = p.subscribe();
        for _ in 0..10 {
            log(&p, &"y".repeat(3000));
            fast.live.recv().await.expect("the reader keeps up");
        }
        // The slow one was cut off when its fourth event would pass 10,000 bytes: its queue was
        // freed then, and it left the prediction's list.
        assert_eq!(slow.live.queued_bytes(), 0);
        assert_eq!(p.lock().live.len(), 1);
        let lagged = slow.live.recv().await.expect_err("cut off");
        assert_eq!(
            lagged,
            Lagged::Bytes {
                skipped: 4,
                limit: 10_000
            }
        );
        assert!(
            lagged.reason().contains("10000 bytes"),
            "{}",
            lagged.reason()
        );
    }

    #[tokio::test]
    async fn a_subscriber_past_the_event_bound_is_cut_off() {
        let p = prediction(false);
        let mut slow = p.subscribe();
        for i in 0..=LIVE_CAPACITY {
            p.apply(PredictionEvent::Output(json!(i)));
        }
        assert_eq!(
            slow.live.recv().await.expect_err("cut off"),
            Lagged::Events {
                skipped: LIVE_CAPACITY as u64 + 1
            }
        );
    }

    #[test]
    fn a_gone_subscriber_frees_its_queue_at_once_and_none_is_kept_after_the_end() {
        let p = prediction(false);
        let sub = p.subscribe();
        log(&p, "queued for it\n");
        let subscriber = p.lock().live[0].clone();
        assert!(subscriber.queue().bytes > 0);
        drop(sub);
        assert_eq!(subscriber.queue().bytes, 0);
        assert!(subscriber.queue().events.is_empty());
        let mut reader = p.subscribe();
        p.finish(0.1);
        assert!(p.lock().live.is_empty());
        // A subscriber still reading keeps its own queue, through `completed`.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let last = rt.block_on(async {
            let mut last = None;
            while let Ok(e) = reader.live.recv().await {
                let done = e.name == "completed";
                last = Some(e.name);
                if done {
                    break;
                }
            }
            last
        });
        assert_eq!(last, Some("completed"));
        // One that subscribes after the end gets the replay only.
        let _late = p.subscribe();
        assert!(p.lock().live.is_empty());
    }

    #[test]
    fn a_gone_subscriber_leaves_the_list_at_the_next_event() {
        let p = prediction(false);
        let sub = p.subscribe();
        assert_eq!(p.lock().live.len(), 1);
        drop(sub);
        log(&p, "x\n");
        assert!(p.lock().live.is_empty());
    }
}
