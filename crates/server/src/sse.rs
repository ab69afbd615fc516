//! Server-sent events for one prediction: the replay history, then live events, ending after
//! `completed`. A prediction created by an SSE request is cancelled when its last subscriber leaves
//! before it ends.
//!
//! The body is written here rather than by axum's `Sse`, which copies every event's data into a
//! buffer of its own per subscriber: twenty subscribers of a stream that prints 1 MiB lines made
//! twenty copies of each line on the runtime threads (and held them). Here a large event goes out as
//! its head, the prediction's one shared rendering of its JSON, and its end; the bytes on the wire are
//! the same as `Sse`'s (`event: NAME\ndata: JSON\n\n`, and `: keep-alive\n\n` when idle).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::predictions::{EventData, Live, Prediction, PredictionService, StreamEvent};
use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::{self, Stream, StreamExt};
use serde_json::json;

/// How often an idle stream gets a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The keep-alive comment, as axum's `KeepAlive::text("keep-alive")` writes it.
const KEEP_ALIVE_FRAME: &[u8] = b": keep-alive\n\n";

/// Events whose data is at most this long are written as one buffer (a copy costs less than three
/// chunks on the wire); longer ones share the prediction's rendering.
const COPY_LIMIT: usize = 16 * 1024;

/// Counts one open stream on a prediction; the last one to leave an SSE-created, unfinished
/// prediction cancels it.
struct Watcher {
    service: Arc<PredictionService>,
    prediction: Arc<Prediction>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let last = self.prediction.unwatch();
        let owned = self
            .prediction
            .cancel_when_unwatched
            .load(std::sync::atomic::Ordering::SeqCst);
        if last && owned && !self.prediction.status().is_terminal() {
            let id = self.prediction.id.clone();
            tracing::info!(prediction_id = %id, "last stream subscriber left; cancelling the prediction");
            self.service.cancel_detached(id);
        }
    }
}

enum Phase {
    /// The history lost events: a partial replay would look complete, so say what was lost and stop.
    Truncated(u64),
    Replay(VecDeque<StreamEvent>, Live),
    Live(Live),
    Done,
}

/// One event's bytes on the wire: `event: NAME\ndata: JSON\n\n`. The JSON of a compact rendering
/// has no line break (strings escape theirs), so it is one `data:` line.
fn to_event(prediction: &Prediction, event: &StreamEvent) -> Vec<Bytes> {
    let head = format!("event: {}\ndata: ", event.name);
    let data = match &event.data {
        EventData::Text(text) if text.len() > COPY_LIMIT => {
            Bytes::from_owner(SharedText(text.clone()))
        }
        _ => Bytes::from(prediction.event_json(event).into_owned()),
    };
    frame(head, data)
}

/// The head, the data and the end of an event: one buffer when the data is short.
fn frame(head: String, data: Bytes) -> Vec<Bytes> {
    if data.len() > COPY_LIMIT {
        return vec![Bytes::from(head), data, Bytes::from_static(b"\n\n")];
    }
    let mut out = head.into_bytes();
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\n\n");
    vec![Bytes::from(out)]
}

/// An event's shared JSON text, as the bytes of a body chunk (no copy).
struct SharedText(Arc<String>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

fn error_event(message: &str, skipped: u64, reason: Option<String>) -> Vec<Bytes> {
    let mut data = json!({"error": message, "skipped": skipped});
    if let Some(reason) = reason {
        data["reason"] = reason.into();
    }
    frame(
        "event: error\ndata: ".to_owned(),
        Bytes::from(data.to_string()),
    )
}

/// The step after sending `event`: done after `completed`.
fn after(event: &StreamEvent, next: Phase) -> Phase {
    if event.name == "completed" {
        Phase::Done
    } else {
        next
    }
}

/// The next event of a live receiver and the phase after it.
async fn live_step(prediction: &Prediction, mut live: Live) -> Option<(Vec<Bytes>, Phase)> {
    match live.recv().await {
        Ok(e) => {
            let event = to_event(prediction, &e);
            Some((event, after(&e, Phase::Live(live))))
        }
        Err(lagged) => {
            tracing::warn!(
                prediction_id = %prediction.id,
                skipped = lagged.skipped(),
                reason = %lagged.reason(),
                "SSE subscriber cut off: it did not read its events"
            );
            Some((
                error_event(
                    "SSE stream lagged; events were dropped",
                    lagged.skipped(),
                    Some(lagged.reason()),
                ),
                Phase::Done,
            ))
        }
    }
}

/// The event stream of `prediction`. The watcher travels with the stream, so it is dropped (and may
/// cancel the prediction) exactly when the client goes away.
fn events(
    service: Arc<PredictionService>,
    prediction: Arc<Prediction>,
) -> impl Stream<Item = Vec<Bytes>> {
    let subscription = prediction.subscribe();
    prediction.watch();
    let watcher = Watcher {
        service,
        prediction,
    };
    let start = if subscription.evicted > 0 {
        Phase::Truncated(subscription.evicted)
    } else {
        Phase::Replay(subscription.replay.into(), subscription.live)
    };
    stream::unfold((start, watcher), |(phase, watcher)| async move {
        let (event, next) = match phase {
            Phase::Done => return None,
            Phase::Truncated(skipped) => (
                error_event(
                    "SSE stream replay truncated; events were dropped",
                    skipped,
                    None,
                ),
                Phase::Done,
            ),
            Phase::Replay(mut replay, live) => match replay.pop_front() {
                Some(e) => (
                    to_event(&watcher.prediction, &e),
                    after(&e, Phase::Replay(replay, live)),
                ),
                None => live_step(&watcher.prediction, live).await?,
            },
            Phase::Live(live) => live_step(&watcher.prediction, live).await?,
        };
        Some((event, (next, watcher)))
    })
}

/// A stream with a keep-alive comment whenever `interval` passes without an item (as axum's
/// `KeepAliveStream`): proxies and clients do not take an idle stream for a dead one.
struct KeepAlive<S> {
    inner: S,
    interval: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<S> KeepAlive<S> {
    fn new(inner: S, interval: Duration) -> Self {
        Self {
            inner,
            interval,
            timer: Box::pin(tokio::time::sleep(interval)),
        }
    }
}

impl<S: Stream<Item = Bytes> + Unpin> Stream for KeepAlive<S> {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = &mut *self;
        let item = match this.inner.poll_next_unpin(cx) {
            Poll::Ready(item) => item,
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                Some(Bytes::from_static(KEEP_ALIVE_FRAME))
            }
        };
        if item.is_some() {
            let next = tokio::time::Instant::now() + this.interval;
            this.timer.as_mut().reset(next);
        }
        Poll::Ready(item)
    }
}

/// The SSE response for `prediction`.
pub fn respond(service: Arc<PredictionService>, prediction: Arc<Prediction>) -> Response {
    let chunks = events(service, prediction).flat_map(stream::iter);
    let body = KeepAlive::new(Box::pin(chunks), KEEP_ALIVE).map(Ok::<Bytes, Infallible>);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(chunks: &[Bytes]) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    #[test]
    fn a_short_event_is_one_chunk_with_the_bytes_axum_writes() {
        let chunks = frame(
            "event: log\ndata: ".into(),
            Bytes::from_static(b"{\"a\":1}"),
        );
        assert_eq!(chunks.len(), 1);
        assert_eq!(joined(&chunks), b"event: log\ndata: {\"a\":1}\n\n");
    }

    #[test]
    fn a_long_event_shares_its_data_and_writes_the_same_bytes() {
        let text = Arc::new(format!("{{\"data\":\"{}\"}}", "x".repeat(COPY_LIMIT)));
        let data = Bytes::from_owner(SharedText(text.clone()));
        let chunks = frame("event: log\ndata: ".into(), data);
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            chunks[1].as_ptr(),
            text.as_ptr(),
            "the shared text, not a copy"
        );
        let mut want = b"event: log\ndata: ".to_vec();
        want.extend_from_slice(text.as_bytes());
        want.extend_from_slice(b"\n\n");
        assert_eq!(joined(&chunks), want);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_gets_a_keep_alive_comment_each_interval() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let inner = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let mut stream = KeepAlive::new(inner, Duration::from_secs(15));
        let first = tokio::time::timeout(Duration::from_secs(16), stream.next()).await;
        assert_eq!(
            first.expect("within 16 s"),
            Some(Bytes::from_static(KEEP_ALIVE_FRAME))
        );
        tx.send(Bytes::from_static(b"x")).expect("send");
        assert_eq!(stream.next().await, Some(Bytes::from_static(b"x")));
        // An item resets the timer: nothing for 14 s, the comment at 15 s.
        assert!(tokio::time::timeout(Duration::from_secs(14), stream.next())
            .await
            .is_err());
        let later = tokio::time::timeout(Duration::from_secs(2), stream.next()).await;
        assert_eq!(
            later.expect("at 15 s"),
            Some(Bytes::from_static(KEEP_ALIVE_FRAME))
        );
        drop(tx);
    }
}
