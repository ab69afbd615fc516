//! Server-sent events for one prediction: the replay history, then live events, ending after
//! `completed`. A prediction created by an SSE request is cancelled when its last subscriber leaves
//! before it ends.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use crate::predictions::{Live, Prediction, PredictionService, StreamEvent};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use serde_json::json;

/// How often an idle stream gets a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

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

fn to_event(prediction: &Prediction, event: &StreamEvent) -> Event {
    Event::default()
        .event(event.name)
        .data(prediction.event_json(event))
}

fn error_event(message: &str, skipped: u64, reason: Option<String>) -> Event {
    let mut data = json!({"error": message, "skipped": skipped});
    if let Some(reason) = reason {
        data["reason"] = reason.into();
    }
    Event::default().event("error").data(data.to_string())
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
async fn live_step(prediction: &Prediction, mut live: Live) -> Option<(Event, Phase)> {
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
) -> impl Stream<Item = Result<Event, Infallible>> {
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
        Some((Ok(event), (next, watcher)))
    })
}

/// The SSE response for `prediction`.
pub fn respond(service: Arc<PredictionService>, prediction: Arc<Prediction>) -> Response {
    Sse::new(events(service, prediction))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}
