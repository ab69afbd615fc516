//! One prediction's state: what the model has produced so far, folded in from the worker's events,
//! and the signals that it started and ended.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cogvisor_supervisor::PredictionEvent;
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::body::approx_bytes;
use super::history::{render, render_log, EventData, StreamEvent, StreamLimits, Subscriber};
use crate::logs::BoundedLog;
use crate::response::{apply_metric, file_to_data_url};
use crate::schema::Kind;
use crate::webhook::{self, Notifier};

/// Cog's prediction statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Processing => "processing",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Canceled)
    }
}
/// What the model has produced so far.
#[derive(Debug)]
pub(super) struct State {
    pub(super) status: Status,
    pub(super) started_at: Option<String>,
    pub(super) completed_at: Option<String>,
    pub(super) logs: BoundedLog,
    /// Shared with the SSE history's output events.
    pub(super) outputs: Vec<Arc<Value>>,
    pub(super) metrics: Map<String, Value>,
    pub(super) error: Option<String>,
    pub(super) is_stream: bool,
    pub(super) predict_time: Option<f64>,
    /// Recent SSE events, for subscribers that arrive late.
    pub(super) history: VecDeque<StreamEvent>,
    /// What the events in `history` hold ([`super::history::StreamEvent::bytes`]).
    pub(super) history_bytes: usize,
    /// Events pushed out of `history`.
    pub(super) evicted: u64,
    /// The live SSE subscribers' queues.
    pub(super) live: Vec<Arc<Subscriber>>,
    /// Why a cancel was asked for, when the server asked (a shutdown): the `error` of the
    /// prediction if it ends `canceled`.
    pub(super) cancel_reason: Option<String>,
}
/// One prediction (or training).
#[derive(Debug)]
pub struct Prediction {
    pub id: String,
    pub kind: Kind,
    /// Shared with the supervisor's request, which streams a large one into a spill file.
    pub(super) input: Arc<Value>,
    pub(super) created_at: String,
    pub(super) output_is_array: bool,
    pub(super) state: Mutex<State>,
    pub(super) done: watch::Sender<bool>,
    pub(super) stream_limits: StreamLimits,
    /// Open SSE streams on this prediction.
    pub(super) subscribers: AtomicUsize,
    /// Created by an SSE request: cancelled when its last subscriber leaves before it ends.
    pub cancel_when_unwatched: AtomicBool,
    /// Tells the webhook sender what happened, when the request named a webhook.
    pub(super) webhook: OnceLock<Arc<Notifier>>,
}

impl Prediction {
    pub fn with_history(
        id: String,
        kind: Kind,
        input: impl Into<Arc<Value>>,
        output_is_array: bool,
        log_limit: usize,
        history_capacity: usize,
    ) -> Self {
        Self {
            id,
            kind,
            input: input.into(),
            created_at: now(),
            output_is_array,
            state: Mutex::new(State {
                status: Status::Starting,
                started_at: None,
                completed_at: None,
                logs: BoundedLog::new(log_limit),
                outputs: Vec::new(),
                metrics: Map::new(),
                error: None,
                is_stream: false,
                predict_time: None,
                history: VecDeque::new(),
                history_bytes: 0,
                evicted: 0,
                live: Vec::new(),
                cancel_reason: None,
            }),
            done: watch::channel(false).0,
            stream_limits: StreamLimits {
                history_capacity,
                ..StreamLimits::default()
            },
            subscribers: AtomicUsize::new(0),
            cancel_when_unwatched: AtomicBool::new(false),
            webhook: OnceLock::new(),
        }
    }

    /// The same prediction with these SSE bounds.
    pub fn with_stream_limits(mut self, limits: StreamLimits) -> Self {
        self.stream_limits = limits;
        self
    }

    /// Records why the server is about to cancel this prediction: if it ends `canceled`, this is
    /// its `error`.
    pub fn set_cancel_reason(&self, reason: impl Into<String>) {
        self.lock().cancel_reason = Some(reason.into());
    }

    /// Connects the prediction to its webhook sender (once, before it starts).
    pub fn set_webhook(&self, notifier: Arc<Notifier>) {
        let _ = self.webhook.set(notifier);
    }

    pub(super) fn fire(&self, event: webhook::Event) {
        if let Some(notifier) = self.webhook.get() {
            notifier.fire(event);
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a plain field write, so the state is consistent even after a panic elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> Status {
        self.lock().status
    }

    /// Resolves once the prediction has ended.
    pub async fn finished(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// About how many bytes this prediction holds: its input, outputs, SSE history (whose output
    /// events share the outputs) and logs.
    pub fn approx_bytes(&self) -> usize {
        let state = self.lock();
        approx_bytes(&self.input)
            + state.outputs.iter().map(|o| approx_bytes(o)).sum::<usize>()
            + state.history_bytes
            + state.logs.bytes()
    }
    /// Folds one event in; true when it ended the prediction. A `File` event is read and encoded
    /// here, blocking: the driver turns files into outputs off the async threads before they get here.
    pub fn apply(&self, event: PredictionEvent) -> bool {
        let mut guard = self.lock();
        let state = &mut *guard;
        match event {
            PredictionEvent::Log { data, source } => {
                state.logs.push(&data);
                let source = match source {
                    cogvisor_protocol::LogSource::Stdout => "stdout",
                    cogvisor_protocol::LogSource::Stderr => "stderr",
                };
                self.record(state, "log", render_log(&data, source));
                self.fire(webhook::Event::Logs);
            }
            PredictionEvent::Output(v) => self.push_output(state, v),
            PredictionEvent::File { path, mime_type } => {
                let value = file_to_data_url(&path, mime_type.as_deref());
                self.push_output(state, value);
            }
            PredictionEvent::Metric { name, value, mode } => {
                let mode_name = match mode {
                    cogvisor_protocol::MetricMode::Replace => "replace",
                    cogvisor_protocol::MetricMode::Increment => "increment",
                    cogvisor_protocol::MetricMode::Append => "append",
                };
                self.record(
                    state,
                    "metric",
                    render(&json!({"mode": mode_name, "name": name, "value": value})),
                );
                apply_metric(&mut state.metrics, &name, value, mode)
            }
            PredictionEvent::Succeeded { is_stream, .. } => {
                state.is_stream = is_stream;
                state.status = Status::Succeeded;
            }
            PredictionEvent::Failed { error } => {
                state.error = Some(error);
                state.status = Status::Failed;
            }
            PredictionEvent::Canceled => {
                if let Some(reason) = state.cancel_reason.take() {
                    state.error = Some(reason);
                }
                state.status = Status::Canceled;
            }
        }
        state.status.is_terminal()
    }

    fn push_output(&self, state: &mut State, value: Value) {
        let index = state.outputs.len();
        let chunk = Arc::new(value);
        self.record(
            state,
            "output",
            EventData::Output {
                chunk: chunk.clone(),
                index,
            },
        );
        state.outputs.push(chunk);
        self.fire(webhook::Event::Output);
    }

    /// Marks the prediction as processing and announces it.
    pub fn start(&self) {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.status = Status::Processing;
        state.started_at = Some(now());
        self.record(
            state,
            "start",
            render(&json!({"id": self.id, "status": "processing"})),
        );
        drop(guard);
        self.fire(webhook::Event::Start);
    }

    pub fn finish(&self, predict_time: f64) {
        {
            let mut state = self.lock();
            if !state.status.is_terminal() {
                state.status = Status::Failed;
                state.error = Some("the prediction ended without a result".into());
            }
            state.predict_time = Some(predict_time);
            state.completed_at = Some(now());
            // The state is final from here on, so the body rendered when this event is sent is the
            // one of this moment.
            self.record(&mut state, "completed", EventData::Completed);
        }
        self.done.send_replace(true);
        self.fire(webhook::Event::Completed);
    }
}
pub(super) fn now() -> String {
    cogvisor_supervisor::supervisor::now_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictions::testing::prediction;
    use serde_json::json;

    #[test]
    fn failures_keep_their_logs_and_metrics() {
        let p = prediction(false);
        p.apply(PredictionEvent::Log {
            source: cogvisor_protocol::LogSource::Stderr,
            data: "Traceback\n".into(),
        });
        p.apply(PredictionEvent::Metric {
            name: "steps".into(),
            value: json!(2),
            mode: cogvisor_protocol::MetricMode::Replace,
        });
        p.apply(PredictionEvent::Failed {
            error: "ValueError: x".into(),
        });
        p.finish(0.2);
        let body = p.sync_body();
        assert_eq!(body["status"], "failed");
        assert_eq!(body["error"], "ValueError: x");
        assert_eq!(body["logs"], "Traceback\n");
        assert_eq!(body["metrics"]["steps"], 2);
    }

    #[test]
    fn a_cancel_the_server_asked_for_ends_canceled_with_its_reason() {
        let p = prediction(false);
        p.set_cancel_reason("prediction canceled: the server is shutting down (SIGTERM)");
        p.apply(PredictionEvent::Canceled);
        p.finish(0.1);
        let body = p.sync_body();
        assert_eq!(body["status"], "canceled");
        assert_eq!(
            body["error"],
            "prediction canceled: the server is shutting down (SIGTERM)"
        );
        // A plain cancel (the client's) has no error, as in Cog.
        let q = prediction(false);
        q.apply(PredictionEvent::Canceled);
        q.finish(0.1);
        assert!(q.sync_body().get("error").is_none());
    }

    #[test]
    fn a_stream_that_ends_without_a_result_fails() {
        let p = prediction(false);
        p.finish(0.1);
        assert_eq!(p.status(), Status::Failed);
    }

    #[test]
    fn approx_bytes_counts_input_outputs_history_and_logs() {
        let big = "x".repeat(100_000);
        let p = Prediction::with_history(
            "p".into(),
            Kind::Prediction,
            json!({"data": big}),
            false,
            1024,
            16,
        );
        let before = p.approx_bytes();
        assert!((100_000..100_100).contains(&before), "{before}");
        p.apply(PredictionEvent::Output(json!(big)));
        // The output once: its SSE history event shares it.
        let after = p.approx_bytes();
        assert!((200_000..200_100).contains(&after), "{after}");
        p.apply(PredictionEvent::Log {
            source: cogvisor_protocol::LogSource::Stdout,
            data: "12345".into(),
        });
        assert!(p.approx_bytes() >= after + 5);
    }
}
