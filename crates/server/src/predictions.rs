//! Predictions as the server tracks them: created by a request, run in a supervisor slot, and kept for
//! a retention window after they end, independent of the HTTP connection that created them. So an
//! async prediction can be polled (`GET /predictions/{id}`), a repeated `PUT` returns the result
//! instead of running the model again, and a sync client that disconnects cancels its prediction.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use cogvisor_supervisor::{
    AdmitError, PredictionEvent, PredictionRequest, PredictionStream, Supervisor,
};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, watch};
use tokio_util::task::TaskTracker;

use crate::logs::BoundedLog;
use crate::metrics::Metrics;
use crate::response::{apply_metric, file_to_data_url};
use crate::schema::Kind;
use crate::upload::{UniqueNames, Uploader};
use crate::webhook::{self, HttpClient, HttpTransport, Notifier, Webhook, WebhookSettings};

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

/// Default bound on what finished predictions keep in memory: 1000 predictions of 8 MiB in and out
/// would otherwise hold tens of GiB.
pub const DEFAULT_MAX_RETAINED_BYTES: usize = 64 * 1024 * 1024;

/// Settings of the prediction service.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Log bytes kept per prediction.
    pub log_limit: usize,
    /// How long a finished prediction stays answerable by id.
    pub retention: Duration,
    /// How many finished predictions are kept at most.
    pub max_retained: usize,
    /// Approximate bytes (input, outputs, SSE history) of finished predictions kept at most; the
    /// newest finished one is kept whatever its size.
    pub max_retained_bytes: usize,
    /// SSE events kept per prediction for late subscribers (COG_STREAM_HISTORY_CAPACITY; 0: none).
    pub history_capacity: usize,
    /// Webhook token, throttle and retries.
    pub webhook: WebhookSettings,
    /// `--upload-url`: where file outputs are put (none: `data:` URLs).
    pub upload_url: Option<reqwest::Url>,
    /// The client webhooks and uploads use.
    pub http: HttpClient,
    /// Where predictions and webhooks are counted (`GET /metrics`).
    pub metrics: Arc<Metrics>,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            log_limit: crate::logs::DEFAULT_LOG_LIMIT,
            retention: Duration::from_secs(600),
            max_retained: 1000,
            max_retained_bytes: DEFAULT_MAX_RETAINED_BYTES,
            history_capacity: crate::config::DEFAULT_STREAM_HISTORY_CAPACITY,
            webhook: WebhookSettings::default(),
            upload_url: None,
            http: HttpClient::default(),
            metrics: Arc::default(),
        }
    }
}

/// What the model has produced so far.
#[derive(Debug)]
struct State {
    status: Status,
    started_at: Option<String>,
    completed_at: Option<String>,
    logs: BoundedLog,
    /// Shared with the SSE history's output events.
    outputs: Vec<Arc<Value>>,
    metrics: Map<String, Value>,
    error: Option<String>,
    is_stream: bool,
    predict_time: Option<f64>,
    /// Recent SSE events, for subscribers that arrive late.
    history: VecDeque<StreamEvent>,
    /// Events pushed out of `history`.
    evicted: u64,
    /// Live SSE fan-out, created by the first subscriber (a broadcast channel allocates all its
    /// slots up front, too much to keep for every retained prediction nobody streams).
    live: Option<broadcast::Sender<StreamEvent>>,
}

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

/// One prediction (or training).
#[derive(Debug)]
pub struct Prediction {
    pub id: String,
    pub kind: Kind,
    /// Shared with the supervisor's request, which streams a large one into a spill file.
    input: Arc<Value>,
    created_at: String,
    output_is_array: bool,
    state: Mutex<State>,
    done: watch::Sender<bool>,
    history_capacity: usize,
    /// Open SSE streams on this prediction.
    subscribers: AtomicUsize,
    /// Created by an SSE request: cancelled when its last subscriber leaves before it ends.
    pub cancel_when_unwatched: AtomicBool,
    /// Tells the webhook sender what happened, when the request named a webhook.
    webhook: OnceLock<Arc<Notifier>>,
}

impl Prediction {
    pub(crate) fn with_history(
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
                evicted: 0,
                live: None,
            }),
            done: watch::channel(false).0,
            history_capacity,
            subscribers: AtomicUsize::new(0),
            cancel_when_unwatched: AtomicBool::new(false),
            webhook: OnceLock::new(),
        }
    }

    /// Connects the prediction to its webhook sender (once, before it starts).
    pub(crate) fn set_webhook(&self, notifier: Arc<Notifier>) {
        let _ = self.webhook.set(notifier);
    }

    fn fire(&self, event: webhook::Event) {
        if let Some(notifier) = self.webhook.get() {
            notifier.fire(event);
        }
    }

    /// Records an SSE event and sends it to live subscribers. Called with the state locked, so a
    /// subscriber's history snapshot and its live receiver never miss or repeat an event.
    fn record(&self, state: &mut State, name: &'static str, data: EventData) {
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

    fn lock(&self) -> MutexGuard<'_, State> {
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

    /// About how many bytes this prediction holds: its input, outputs and SSE history (whose output
    /// events share the outputs).
    pub fn approx_bytes(&self) -> usize {
        let state = self.lock();
        approx_bytes(&self.input)
            + state.outputs.iter().map(|o| approx_bytes(o)).sum::<usize>()
            + state
                .history
                .iter()
                .map(|e| match &e.data {
                    EventData::Json(v) => approx_bytes(v),
                    EventData::Output { .. } | EventData::Completed => 16,
                })
                .sum::<usize>()
            + state.logs.bytes()
    }

    /// The `output` field of a finished prediction, by Cog's array rules.
    fn output(&self, state: &State) -> Field {
        if state.is_stream || self.output_is_array || state.outputs.len() > 1 {
            Field::Outputs(state.outputs.clone())
        } else {
            state
                .outputs
                .first()
                .cloned()
                .map_or(Field::Null, Field::Json)
        }
    }

    /// The full state: what async responses, polling and webhooks show.
    fn snapshot_body(&self) -> Body {
        let state = self.lock();
        let mut body = Body::new();
        body.insert("id", Field::Text(self.id.clone()));
        body.insert("status", Field::Static(state.status.as_str()));
        body.insert("input", Field::Json(self.input.clone()));
        if !state.status.is_terminal() && !state.outputs.is_empty() {
            // While running: the items so far, always as an array (as Cog's webhooks).
            body.insert("output", Field::Outputs(state.outputs.clone()));
        } else if state.status == Status::Succeeded || !state.outputs.is_empty() {
            body.insert("output", self.output(&state));
        }
        if let Some(error) = &state.error {
            body.insert("error", Field::Text(error.clone()));
        }
        body.insert("logs", Field::Text(state.logs.render()));
        body.insert("metrics", Field::Metrics(metrics_with_time(&state)));
        body.insert("created_at", Field::Text(self.created_at.clone()));
        if let Some(t) = &state.started_at {
            body.insert("started_at", Field::Text(t.clone()));
        }
        if let Some(t) = &state.completed_at {
            body.insert("completed_at", Field::Text(t.clone()));
        }
        body
    }

    /// The state of a prediction as it was created, before it started: what the 202 of the request
    /// that created it shows. Cog answers `starting` there, though the prediction runs already; later
    /// snapshots, the `start` webhook and the SSE `start` event show `processing`.
    fn created_body(&self) -> Body {
        let mut body = Body::new();
        body.insert("id", Field::Text(self.id.clone()));
        body.insert("status", Field::Static(Status::Starting.as_str()));
        body.insert("input", Field::Json(self.input.clone()));
        body.insert("logs", Field::Static(""));
        body.insert("metrics", Field::Metrics(Map::new()));
        body.insert("created_at", Field::Text(self.created_at.clone()));
        body
    }

    /// Cog's sync response body: `id, status, output|error, logs, metrics`.
    fn sync_body_fields(&self) -> Body {
        let state = self.lock();
        let mut body = Body::new();
        body.insert("id", Field::Text(self.id.clone()));
        body.insert("status", Field::Static(state.status.as_str()));
        match state.status {
            Status::Succeeded => {
                body.insert("output", self.output(&state));
            }
            _ => {
                if let Some(error) = &state.error {
                    body.insert("error", Field::Text(error.clone()));
                }
            }
        }
        body.insert("logs", Field::Text(state.logs.render()));
        body.insert("metrics", Field::Metrics(metrics_with_time(&state)));
        body
    }

    /// The full state as JSON: what async responses, polling and webhooks show. Serialized from
    /// the shared values (outside the state lock), never from a copy of them.
    pub fn snapshot_json(&self) -> Vec<u8> {
        self.snapshot_body().to_json()
    }

    /// The state as created (`starting`), as JSON: the 202 answer of an async create.
    pub fn created_json(&self) -> Vec<u8> {
        self.created_body().to_json()
    }

    /// Cog's sync response body as JSON.
    pub fn sync_body_json(&self) -> Vec<u8> {
        self.sync_body_fields().to_json()
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

    #[cfg(test)]
    pub fn snapshot(&self) -> Value {
        serde_json::from_slice(&self.snapshot_json()).expect("snapshot JSON")
    }

    #[cfg(test)]
    pub fn sync_body(&self) -> Value {
        serde_json::from_slice(&self.sync_body_json()).expect("sync body JSON")
    }

    /// Folds one event in; true when it ended the prediction.
    pub(crate) fn apply(&self, event: PredictionEvent) -> bool {
        let mut guard = self.lock();
        let state = &mut *guard;
        match event {
            PredictionEvent::Log { data, source } => {
                state.logs.push(&data);
                let source = match source {
                    cogvisor_protocol::LogSource::Stdout => "stdout",
                    cogvisor_protocol::LogSource::Stderr => "stderr",
                };
                self.record(
                    state,
                    "log",
                    EventData::Json(json!({"data": data, "source": source})),
                );
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
                    EventData::Json(json!({"mode": mode_name, "name": name, "value": value})),
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
            PredictionEvent::Canceled => state.status = Status::Canceled,
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
    pub(crate) fn start(&self) {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.status = Status::Processing;
        state.started_at = Some(now());
        self.record(
            state,
            "start",
            EventData::Json(json!({"id": self.id, "status": "processing"})),
        );
        drop(guard);
        self.fire(webhook::Event::Start);
    }

    pub(crate) fn finish(&self, predict_time: f64) {
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

/// One field of a response body, holding what it shows by reference count where that is large.
#[derive(Debug)]
enum Field {
    Null,
    Static(&'static str),
    Text(String),
    Json(Arc<Value>),
    Outputs(Vec<Arc<Value>>),
    Metrics(Map<String, Value>),
}

impl serde::Serialize for Field {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Null => serializer.serialize_unit(),
            Field::Static(s) => serializer.serialize_str(s),
            Field::Text(s) => serializer.serialize_str(s),
            Field::Json(v) => v.serialize(serializer),
            Field::Outputs(items) => serializer.collect_seq(items.iter().map(|v| &**v)),
            Field::Metrics(m) => m.serialize(serializer),
        }
    }
}

/// A response body: its fields sorted by name, as a `serde_json` object serializes them, so the
/// bytes are the same as those of the equivalent `Value`.
#[derive(Debug, Default)]
struct Body(std::collections::BTreeMap<&'static str, Field>);

impl Body {
    fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, name: &'static str, field: Field) {
        self.0.insert(name, field);
    }

    /// Compact JSON, written into a buffer sized for it up front (no regrowth copies).
    fn to_json(&self) -> Vec<u8> {
        let estimate = self
            .0
            .iter()
            .map(|(name, field)| {
                name.len()
                    + 4
                    + match field {
                        Field::Null | Field::Static(_) => 16,
                        Field::Text(s) => s.len() + 2,
                        Field::Json(v) => approx_bytes(v),
                        Field::Outputs(items) => items.iter().map(|v| approx_bytes(v)).sum(),
                        Field::Metrics(m) => m.len() * 32,
                    }
            })
            .sum::<usize>();
        let mut out = Vec::with_capacity(estimate + 64);
        if let Err(e) = self.write(&mut out) {
            // Unreachable: values that came from JSON, and a Vec never fails to write.
            tracing::error!(error = %e, "cannot encode a prediction body");
            return b"{}".to_vec();
        }
        out
    }

    /// The object, as `serde_json` writes it (fields in key order), with large values written by
    /// [`cogvisor_protocol::json`].
    fn write(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        use cogvisor_protocol::json::{write_compact, write_str};
        out.push(b'{');
        for (i, (name, field)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, name)?;
            out.push(b':');
            match field {
                Field::Json(v) => write_compact(out, v)?,
                Field::Outputs(items) => {
                    out.push(b'[');
                    for (j, item) in items.iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        write_compact(out, item)?;
                    }
                    out.push(b']');
                }
                Field::Text(s) => write_str(out, s)?,
                other => serde_json::to_writer(&mut *out, other)?,
            }
        }
        out.push(b'}');
        Ok(())
    }
}

fn metrics_with_time(state: &State) -> Map<String, Value> {
    let mut metrics = state.metrics.clone();
    if let Some(t) = state.predict_time {
        metrics.insert("predict_time".into(), t.into());
    }
    metrics
}

fn now() -> String {
    cogvisor_supervisor::supervisor::now_rfc3339()
}

/// About how many bytes `v` takes: its strings and keys, 8 per other value (no serialization).
fn approx_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 8,
        Value::Array(items) => 8 + items.iter().map(approx_bytes).sum::<usize>(),
        Value::Object(map) => {
            8 + map
                .iter()
                .map(|(k, v)| k.len() + approx_bytes(v))
                .sum::<usize>()
        }
        _ => 8,
    }
}

/// Applies a prediction's events until it ends (see [`PredictionService::create`]).
///
/// Running it on the request's own task spares a sync prediction a task spawn and one cross-task
/// wake-up on its way back to the client.
#[must_use = "a dropped Driver moves to a task of its own; call `run` to drive it here"]
pub struct Driver {
    drive: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("finished", &self.drive.is_none())
            .finish()
    }
}

impl Driver {
    /// Drives the prediction here until it has ended (and is filed as finished).
    pub async fn run(&mut self) {
        if let Some(drive) = self.drive.as_mut() {
            drive.await;
            self.drive = None;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let Some(drive) = self.drive.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(drive);
            }
            // No runtime any more (the process is exiting): nothing is left to report to.
            Err(_) => tracing::debug!("a prediction's driver dropped outside the runtime"),
        }
    }
}

/// Running and recently finished predictions, by id.
#[derive(Debug, Default)]
struct Registry {
    by_id: HashMap<String, Arc<Prediction>>,
    /// Finished predictions, oldest first, with when they finished and their approximate size.
    finished: VecDeque<Finished>,
    /// Sum of the sizes in `finished`.
    finished_bytes: usize,
}

#[derive(Debug)]
struct Finished {
    at: Instant,
    id: String,
    bytes: usize,
}

/// When finished predictions are dropped.
#[derive(Debug, Clone, Copy)]
struct RetentionLimits {
    retention: Duration,
    max_retained: usize,
    max_retained_bytes: usize,
}

impl Registry {
    /// Files a prediction that just ended.
    fn file_finished(&mut self, at: Instant, id: String, bytes: usize) {
        self.finished_bytes += bytes;
        self.finished.push_back(Finished { at, id, bytes });
    }

    /// Forgets `id` as a finished prediction (it is being run again).
    fn unfile(&mut self, id: &str) {
        let mut freed = 0;
        self.finished.retain(|f| {
            let keep = f.id != id;
            if !keep {
                freed += f.bytes;
            }
            keep
        });
        self.finished_bytes -= freed;
    }

    /// Drops finished predictions past the retention window, the count limit or the byte limit
    /// (oldest first; the newest is never dropped for its size).
    fn prune(&mut self, now: Instant, limits: RetentionLimits) {
        while let Some(oldest) = self.finished.front() {
            let expired = now.duration_since(oldest.at) > limits.retention;
            let too_many = self.finished.len() > limits.max_retained;
            let too_big =
                self.finished_bytes > limits.max_retained_bytes && self.finished.len() > 1;
            if !(expired || too_many || too_big) {
                break;
            }
            let Some(oldest) = self.finished.pop_front() else {
                break;
            };
            self.finished_bytes -= oldest.bytes;
            if self
                .by_id
                .get(&oldest.id)
                .is_some_and(|p| p.status().is_terminal())
            {
                self.by_id.remove(&oldest.id);
            }
        }
    }
}

/// Why a prediction was not created.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Admit(#[from] AdmitError),
    #[error("a prediction with id {0:?} is already running")]
    Running(String),
}

/// Creates, runs, finds and cancels predictions.
#[derive(Debug)]
pub struct PredictionService {
    supervisor: Supervisor,
    settings: ServiceSettings,
    registry: Mutex<Registry>,
    /// Set once shutdown begins: no new predictions.
    draining: AtomicBool,
    /// The webhook sender tasks, so shutdown can wait for terminal webhooks to be delivered.
    deliveries: TaskTracker,
    /// How webhooks are sent.
    transport: Arc<HttpTransport>,
    /// Where file outputs go with `--upload-url`.
    uploader: Option<Uploader>,
}

impl PredictionService {
    pub fn new(supervisor: Supervisor, settings: ServiceSettings) -> Arc<Self> {
        let transport = Arc::new(HttpTransport {
            client: settings.http.clone(),
            auth_token: settings.webhook.auth_token.clone(),
        });
        let uploader = settings
            .upload_url
            .clone()
            .map(|url| Uploader::new(settings.http.clone(), url));
        Arc::new(Self {
            supervisor,
            transport,
            uploader,
            settings,
            registry: Mutex::default(),
            draining: AtomicBool::new(false),
            deliveries: TaskTracker::new(),
        })
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A running or recently finished prediction.
    pub fn get(&self, id: &str) -> Option<Arc<Prediction>> {
        let mut registry = self.registry();
        self.prune(&mut registry);
        registry.by_id.get(id).cloned()
    }

    /// Admits a prediction into a slot and starts it; its webhooks (if any) are sent by a task on the
    /// delivery tracker. The returned [`Driver`] applies the worker's events to the prediction: a
    /// sync request runs it on its own task ([`Driver::run`]); dropping it unfinished (an async
    /// request, or a client that went away) moves it to a task of its own, so the prediction always
    /// runs to its end.
    pub async fn create(
        self: &Arc<Self>,
        kind: Kind,
        id: String,
        input: Value,
        context: std::collections::BTreeMap<String, String>,
        output_is_array: bool,
        webhook: Option<Webhook>,
    ) -> Result<(Arc<Prediction>, Driver), CreateError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(CreateError::Admit(AdmitError::ShuttingDown));
        }
        if self.get(&id).is_some_and(|p| !p.status().is_terminal()) {
            return Err(CreateError::Running(id));
        }
        let input = Arc::new(input);
        let prediction = Arc::new(Prediction::with_history(
            id.clone(),
            kind,
            input.clone(),
            output_is_array,
            self.settings.log_limit,
            self.settings.history_capacity,
        ));
        let started = Instant::now();
        let stream = self
            .supervisor
            .predict(PredictionRequest {
                id: id.clone(),
                input,
                context,
            })
            .await?;
        if let Some(webhook) = webhook {
            let notifier = Arc::new(Notifier::new(webhook.events));
            prediction.set_webhook(notifier.clone());
            let sender = webhook::Sender {
                transport: self.transport.clone(),
                webhook,
                notifier,
                prediction: prediction.clone(),
                throttle: self.settings.webhook.throttle,
                backoff: self.settings.webhook.backoff,
                metrics: self.settings.metrics.clone(),
            };
            self.deliveries.spawn(sender.run());
        }
        prediction.start();
        {
            let mut registry = self.registry();
            // Only an id run again can be filed as finished (a scan of every finished one otherwise).
            if registry.by_id.insert(id, prediction.clone()).is_some() {
                registry.unfile(&prediction.id);
            }
        }
        let driver = Driver {
            drive: Some(Box::pin(self.clone().drive(
                prediction.clone(),
                stream,
                started,
            ))),
        };
        Ok((prediction, driver))
    }

    /// Applies the worker's events until the terminal one, then files the prediction as finished.
    async fn drive(
        self: Arc<Self>,
        prediction: Arc<Prediction>,
        mut stream: PredictionStream,
        started: Instant,
    ) {
        let mut names = UniqueNames::default();
        // An upload that failed for good: the prediction is cancelled and ends failed with this.
        let mut upload_failure: Option<String> = None;
        while let Some(event) = stream.next().await {
            let event = match event {
                PredictionEvent::Output(_) | PredictionEvent::File { .. }
                    if upload_failure.is_some() =>
                {
                    continue
                }
                PredictionEvent::File { path, mime_type } => match &self.uploader {
                    None => PredictionEvent::Output(file_to_data_url(&path, mime_type.as_deref())),
                    Some(uploader) => {
                        match uploader
                            .upload(&prediction.id, &path, mime_type.as_deref(), &mut names)
                            .await
                        {
                            Ok(url) => PredictionEvent::Output(Value::String(url)),
                            Err(e) => {
                                tracing::error!(prediction_id = %prediction.id, error = %e, "output upload failed; failing the prediction");
                                upload_failure = Some(e.to_string());
                                self.supervisor.cancel(&prediction.id).await;
                                continue;
                            }
                        }
                    }
                },
                terminal if terminal.is_terminal() => match &upload_failure {
                    Some(error) => PredictionEvent::Failed {
                        error: error.clone(),
                    },
                    None => terminal,
                },
                other => other,
            };
            if prediction.apply(event) {
                break;
            }
        }
        if let Some(error) = upload_failure {
            if !prediction.status().is_terminal() {
                prediction.apply(PredictionEvent::Failed { error });
            }
        }
        prediction.finish(started.elapsed().as_secs_f64());
        let dropped = prediction.lock().logs.dropped();
        if dropped > 0 {
            tracing::warn!(prediction_id = %prediction.id, dropped_bytes = dropped, "log output over the per-prediction limit was dropped");
        }
        let status = prediction.status();
        let elapsed = started.elapsed();
        self.settings
            .metrics
            .record_prediction(prediction.kind, status, elapsed);
        let error = prediction.lock().error.clone();
        tracing::info!(
            prediction_id = %prediction.id,
            status = status.as_str(),
            predict_time = elapsed.as_secs_f64(),
            error = error.as_deref(),
            "prediction finished"
        );
        // The stream (and so the prediction's output directory) goes only now: file outputs were
        // read while applying their events.
        drop(stream);
        let bytes = prediction.approx_bytes();
        let mut registry = self.registry();
        registry.file_finished(Instant::now(), prediction.id.clone(), bytes);
        self.prune(&mut registry);
    }

    /// Drops finished predictions past the retention window, the count limit or the byte limit.
    fn prune(&self, registry: &mut Registry) {
        registry.prune(
            Instant::now(),
            RetentionLimits {
                retention: self.settings.retention,
                max_retained: self.settings.max_retained,
                max_retained_bytes: self.settings.max_retained_bytes,
            },
        );
    }

    /// Predictions that have not ended.
    pub fn running(&self) -> Vec<Arc<Prediction>> {
        self.registry()
            .by_id
            .values()
            .filter(|p| !p.status().is_terminal())
            .cloned()
            .collect()
    }

    /// True once a shutdown has begun: nothing new is admitted.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Shutdown, first part: stop admitting, give running predictions (async ones too) `deadline` to
    /// finish, then cancel the rest and give them `cancel_grace` to end. Returns how many were
    /// cancelled. What is still running after that ends when the worker is stopped.
    pub async fn drain(&self, deadline: Duration, cancel_grace: Duration) -> usize {
        self.draining.store(true, Ordering::SeqCst);
        let running = self.running();
        if !running.is_empty() {
            tracing::info!(
                running = running.len(),
                ?deadline,
                "draining: waiting for running predictions"
            );
        }
        let all_finished = |ps: &[Arc<Prediction>]| {
            let waits: Vec<_> = ps
                .iter()
                .map(|p| {
                    let p = p.clone();
                    async move { p.finished().await }
                })
                .collect();
            futures::future::join_all(waits)
        };
        let mut cancelled = 0;
        if tokio::time::timeout(deadline, all_finished(&running))
            .await
            .is_err()
        {
            let left = self.running();
            tracing::warn!(
                left = left.len(),
                "drain deadline passed; cancelling the predictions still running"
            );
            for p in &left {
                if self.supervisor.cancel(&p.id).await {
                    cancelled += 1;
                }
            }
            if tokio::time::timeout(cancel_grace, all_finished(&left))
                .await
                .is_err()
            {
                tracing::warn!(
                    "predictions still running after the cancel grace; the worker stop ends them"
                );
            }
        }
        cancelled
    }

    /// Shutdown, last part: waits up to `limit` for terminal webhooks still being delivered.
    pub async fn wait_deliveries(&self, limit: Duration) {
        self.deliveries.close();
        if tokio::time::timeout(limit, self.deliveries.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = self.deliveries.len(),
                "webhook deliveries still pending at exit"
            );
        }
    }

    /// Where predictions, webhooks and hooks are counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.settings.metrics
    }

    /// Cancels a running prediction. False when no running prediction has that id.
    pub async fn cancel(&self, id: &str) -> bool {
        match self.get(id) {
            Some(p) if !p.status().is_terminal() => self.supervisor.cancel(id).await,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prediction(output_is_array: bool) -> Prediction {
        Prediction::with_history(
            "p1".into(),
            Kind::Prediction,
            json!({"text": "x"}),
            output_is_array,
            1024,
            1024,
        )
    }

    #[test]
    fn a_new_prediction_is_starting_with_its_input_and_creation_time() {
        let p = prediction(false);
        let s = p.snapshot();
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
                   "metrics": {}, "created_at": p.snapshot()["created_at"]})
        );
        let now = p.snapshot();
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
            p.sync_body(),
            json!({"id": "p1", "status": "succeeded", "output": "hello", "logs": "hi\n", "metrics": {"predict_time": 0.5}})
        );
        let s = p.snapshot();
        assert!(s["completed_at"].is_string());
        assert_eq!(s["input"], json!({"text": "x"}));
    }

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
    fn a_stream_that_ends_without_a_result_fails() {
        let p = prediction(false);
        p.finish(0.1);
        assert_eq!(p.status(), Status::Failed);
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
            p.sync_body()["output"].clone()
        };
        assert_eq!(output(false, &[], false), Value::Null);
        assert_eq!(output(true, &[], false), json!([]));
        assert_eq!(output(false, &[json!("only")], false), json!("only"));
        assert_eq!(output(true, &[json!("only")], false), json!(["only"]));
        assert_eq!(output(false, &[json!("only")], true), json!(["only"]));
        assert_eq!(output(false, &[json!(1), json!(2)], false), json!([1, 2]));
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

    fn finished(registry: &mut Registry, id: &str, at: Instant, bytes: usize) {
        let p = Prediction::with_history(id.into(), Kind::Prediction, json!({}), false, 1024, 16);
        p.finish(0.0);
        registry.by_id.insert(id.into(), Arc::new(p));
        registry.file_finished(at, id.into(), bytes);
    }

    fn ids(registry: &Registry) -> Vec<&str> {
        registry.finished.iter().map(|f| f.id.as_str()).collect()
    }

    const LIMITS: RetentionLimits = RetentionLimits {
        retention: Duration::from_secs(600),
        max_retained: 3,
        max_retained_bytes: 100,
    };

    #[test]
    fn retention_drops_the_oldest_past_the_count_limit() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        for id in ["a", "b", "c", "d"] {
            finished(&mut r, id, t0, 1);
            r.prune(t0, LIMITS);
        }
        assert_eq!(ids(&r), ["b", "c", "d"]);
        assert!(!r.by_id.contains_key("a"));
        assert_eq!(r.finished_bytes, 3);
    }

    #[test]
    fn retention_drops_the_oldest_past_the_byte_limit_but_keeps_the_newest() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        finished(&mut r, "a", t0, 40);
        finished(&mut r, "b", t0, 40);
        r.prune(t0, LIMITS);
        assert_eq!(ids(&r), ["a", "b"]);
        finished(&mut r, "c", t0, 40);
        r.prune(t0, LIMITS);
        assert_eq!(ids(&r), ["b", "c"]);
        assert_eq!(r.finished_bytes, 80);
        // One alone over the limit is kept (until the next one ends), so it can still be polled.
        finished(&mut r, "huge", t0, 1000);
        r.prune(t0, LIMITS);
        assert_eq!(ids(&r), ["huge"]);
        assert!(r.by_id.contains_key("huge") && !r.by_id.contains_key("b"));
        assert_eq!(r.finished_bytes, 1000);
    }

    #[test]
    fn retention_drops_what_is_older_than_the_window() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        finished(&mut r, "old", t0, 1);
        finished(&mut r, "new", t0 + Duration::from_secs(500), 1);
        r.prune(t0 + Duration::from_secs(601), LIMITS);
        assert_eq!(ids(&r), ["new"]);
    }

    #[test]
    fn a_rerun_id_is_unfiled_with_its_bytes() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        finished(&mut r, "a", t0, 30);
        finished(&mut r, "b", t0, 20);
        r.unfile("a");
        assert_eq!(ids(&r), ["b"]);
        assert_eq!(r.finished_bytes, 20);
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
        assert_eq!(p.snapshot()["output"], json!(["a"]));
    }
}
