//! The HTTP API: routes, request parsing, and the JSON bodies Cog clients expect.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use cogvisor_protocol::Mode;
use cogvisor_supervisor::{AdmitError, Supervisor};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::predictions::{CreateError, PredictionService, ServiceSettings};
use crate::schema::{Detail, InputSchema, Kind};
use crate::shutdown::ShutdownTrigger;
use crate::webhook::Webhook;
use crate::{health_routes, sse};

/// Largest request body accepted: 100 MiB, as Cog.
pub const BODY_LIMIT: usize = 100 * 1024 * 1024;

/// Longest prediction id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub supervisor: Supervisor,
    pub predictions: Arc<PredictionService>,
    shutdown: ShutdownTrigger,
    schemas: Arc<Mutex<SchemaCache>>,
    /// `COGVISOR_ADMIN_TOKEN`: enables `POST /recycle` for bearers of it.
    pub admin_token: Option<String>,
    /// What the worker runs: `/predictions` are served in predict mode, `/trainings` in train mode.
    mode: Mode,
}

/// The compiled input schemas of the schema the worker sent, rebuilt only when a new worker sends a
/// new one.
#[derive(Default)]
struct SchemaCache {
    source: Option<Arc<Value>>,
    prediction: Option<Arc<InputSchema>>,
    training: Option<Arc<InputSchema>>,
}

impl AppState {
    pub fn new(
        supervisor: Supervisor,
        mode: Mode,
        settings: ServiceSettings,
        shutdown: ShutdownTrigger,
    ) -> Self {
        Self {
            predictions: PredictionService::new(supervisor.clone(), settings),
            supervisor,
            shutdown,
            schemas: Arc::default(),
            admin_token: None,
            mode,
        }
    }

    /// The compiled input schema for `kind`, or `None` when the model has no usable schema (then
    /// inputs go to the model unvalidated, as in Cog).
    fn input_schema(&self, kind: Kind) -> Option<Arc<InputSchema>> {
        let source = self.supervisor.schema()?;
        let mut cache = self.schemas.lock().unwrap_or_else(|e| e.into_inner());
        if !cache
            .source
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &source))
        {
            let compile = |kind| match InputSchema::compile(&source, kind) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::warn!(error = %e, "inputs are not validated");
                    None
                }
            };
            *cache = SchemaCache {
                prediction: compile(Kind::Prediction),
                training: compile(Kind::Training),
                source: Some(source),
            };
        }
        match kind {
            Kind::Prediction => cache.prediction.clone(),
            Kind::Training => cache.training.clone(),
        }
    }
}

pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/", get(root))
        .route("/health-check", get(health_routes::health_check))
        .route("/readyz", get(health_routes::readyz))
        .route("/livez", get(health_routes::livez))
        .route("/recycle", post(health_routes::recycle))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/shutdown", post(shutdown))
        .route("/predictions", post(create_prediction))
        .route("/predictions/{id}", put(put_prediction).get(get_prediction))
        .route("/predictions/{id}/cancel", post(cancel_prediction))
        .route("/trainings", post(create_training))
        .route("/trainings/{id}", put(put_training).get(get_training))
        .route("/trainings/{id}/cancel", post(cancel_training))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    json_errors(routes)
}

/// Makes every error of `router` answer JSON: unknown routes get `404 {"error": "no route GET /x"}`,
/// a known route with another method `405 {"error": "method DELETE not allowed on /x; allowed: POST"}`
/// (with axum's `Allow` header), and any other error the framework answers with a plain-text or
/// empty body (an extractor's rejection, such as a path that is not UTF-8) gets that text as
/// `{"error": ...}`.
pub fn json_errors(router: Router) -> Router {
    // The middleware wraps the whole router, not its routes (`Router::layer`): axum adds the `Allow`
    // header of a 405 outside a route's layers, and the message lists those methods.
    Router::new()
        .fallback_service(router.fallback(no_route))
        .layer(axum::middleware::from_fn(errors_as_json))
}

async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!("no route {method} {}", uri.path()),
    )
}

fn error_response(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Largest framework error body turned into JSON; anything longer is cut (they are one line).
const MAX_ERROR_TEXT: usize = 4096;

async fn errors_as_json(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    // Cheap clones (no copy of the path): only an error response reads them.
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json_response(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_ERROR_TEXT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let allow = parts
        .headers
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let message = framework_error_message(status, &method, uri.path(), allow.as_deref(), &text);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    let body = json!({ "error": message }).to_string();
    Response::from_parts(parts, Body::from(body))
}

fn is_json_response(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json)
}

/// The `error` text for a framework response that had no JSON body.
fn framework_error_message(
    status: StatusCode,
    method: &axum::http::Method,
    path: &str,
    allow: Option<&str>,
    text: &str,
) -> String {
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed: Vec<&str> = allow
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        return format!(
            "method {method} not allowed on {path}; allowed: {}",
            allowed.join(", ")
        );
    }
    if !text.is_empty() {
        return text.to_string();
    }
    match status.canonical_reason() {
        Some(reason) => format!("{reason} ({method} {path})"),
        None => format!("HTTP {} ({method} {path})", status.as_u16()),
    }
}

/// Why a route of `kind` is not served in `mode`, if it is not: a predict-mode server never runs
/// `train()` and a train-mode server never runs `predict()`, so each answers the other's routes with
/// this (as a 404) instead of running the wrong function.
pub fn mode_error(mode: Mode, kind: Kind) -> Option<&'static str> {
    match (mode, kind) {
        (Mode::Predict, Kind::Training) => Some(
            "this server runs in predict mode and serves /predictions only; /trainings needs a server \
             started in train mode (cogvisor serve --mode train, or python -m cog.server.http \
             --x-mode train)",
        ),
        (Mode::Train, Kind::Prediction) => Some(
            "this server runs in train mode and serves /trainings only; /predictions needs a server \
             started in predict mode (without --mode train)",
        ),
        _ => None,
    }
}

fn wrong_mode(state: &AppState, kind: Kind) -> Option<Response> {
    mode_error(state.mode, kind).map(|m| error_response(StatusCode::NOT_FOUND, m.to_string()))
}

async fn root(State(state): State<AppState>) -> Json<Value> {
    let mut doc = json!({
        "cog_version": crate::version::COG_VERSION,
        "cogvisor_version": crate::version::COGVISOR_VERSION,
        "healthcheck_url": "/health-check",
        "openapi_url": "/openapi.json",
        "predictions_url": "/predictions",
        "predictions_idempotent_url": "/predictions/{prediction_id}",
        "predictions_cancel_url": "/predictions/{prediction_id}/cancel",
        "shutdown_url": "/shutdown",
    });
    // Trainings are advertised only where they are served: a predict-mode server answers them 404.
    let has_training = state.mode == Mode::Train
        && state
            .supervisor
            .schema()
            .is_some_and(|s| s.pointer("/components/schemas/TrainingInput").is_some());
    if has_training {
        doc["trainings_url"] = "/trainings".into();
        doc["trainings_idempotent_url"] = "/trainings/{training_id}".into();
        doc["trainings_cancel_url"] = "/trainings/{training_id}/cancel".into();
    }
    Json(doc)
}

/// `GET /metrics`: Prometheus text format, or OpenMetrics when the `Accept` header asks for it.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = crate::metrics::Format::from_accept(
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    );
    match state
        .predictions
        .metrics()
        .render(&state.supervisor.health(), format)
    {
        Ok(text) => ([(header::CONTENT_TYPE, format.content_type())], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"detail": format!("cannot encode the metrics: {e}")})),
            )
                .into_response()
        }
    }
}

async fn openapi(State(state): State<AppState>) -> Response {
    match state.supervisor.schema() {
        Some(schema) => Json(schema.as_ref().clone()).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "OpenAPI schema not available"})),
        )
            .into_response(),
    }
}

async fn shutdown(State(state): State<AppState>) -> Json<Value> {
    state.shutdown.trigger("POST /shutdown");
    Json(json!({}))
}

async fn cancel_prediction(state: State<AppState>, id: Path<String>) -> Response {
    cancel(state, Kind::Prediction, id).await
}

async fn cancel_training(state: State<AppState>, id: Path<String>) -> Response {
    cancel(state, Kind::Training, id).await
}

async fn cancel(State(state): State<AppState>, kind: Kind, Path(id): Path<String>) -> Response {
    if let Some(refusal) = wrong_mode(&state, kind) {
        return refusal;
    }
    let is_kind = state.predictions.get(&id).is_some_and(|p| p.kind == kind);
    if is_kind && state.predictions.cancel(&id).await {
        (StatusCode::OK, Json(json!({}))).into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(json!({}))).into_response()
    }
}

/// The body of `POST /predictions`.
#[derive(Debug, Deserialize)]
struct PredictionBody {
    id: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    context: BTreeMap<String, String>,
    /// Where to `POST` the prediction's state as it changes (an empty string means none).
    #[serde(default)]
    webhook: Option<String>,
    /// Which webhook events to send (default: all).
    #[serde(default)]
    webhook_events_filter: Option<Vec<String>>,
}

/// A request the API refuses, with the status and body Cog clients expect.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 400 `{"error": ...}`: the body is not JSON, or not an object.
    #[error("{0}")]
    BadRequest(String),
    /// 413 `{"error": ...}`: the body is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415 `{"error": ...}`: a body with a content type other than JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422 in Cog's `detail` shape: one field has a bad value.
    #[error("{loc:?}: {msg}")]
    Validation {
        loc: Vec<String>,
        msg: String,
        kind: &'static str,
    },
}

impl ApiError {
    fn invalid(loc: &[&str], msg: impl Into<String>) -> Self {
        ApiError::Validation {
            loc: loc.iter().map(|s| s.to_string()).collect(),
            msg: msg.into(),
            kind: "value_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest(msg) => {
                (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response()
            }
            ApiError::TooLarge(msg) => {
                (StatusCode::PAYLOAD_TOO_LARGE, Json(json!({"error": msg}))).into_response()
            }
            ApiError::UnsupportedMediaType(msg) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Json(json!({"error": msg})),
            )
                .into_response(),
            ApiError::Validation { loc, msg, kind } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"detail": [{"loc": loc, "msg": msg, "type": kind}]})),
            )
                .into_response(),
        }
    }
}

/// Checks a client-supplied prediction id before it names anything: 1 to 128 characters of
/// `[A-Za-z0-9._-]`, and not `.` or `..`.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("prediction ID must not be empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "prediction ID must be at most {MAX_ID_LEN} characters (got {})",
            id.len()
        ));
    }
    if id == "." || id == ".." {
        return Err(format!("prediction ID {id:?} is not allowed"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "prediction ID contains {c:?}; allowed are letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Reads a request body of up to [`BODY_LIMIT`] bytes into one buffer, sized from `Content-Length`
/// when the client sent it, so the body is held once (not as its chunks plus a joined copy).
pub(crate) async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::TooLarge(format!(
            "request body is larger than the {} MiB limit",
            BODY_LIMIT / (1024 * 1024)
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // A body declared over the limit is still read up to it before the 413, as axum's limit does: a
    // client that is still sending would otherwise see its connection reset instead of the answer.
    let reserve = declared
        .filter(|&n| n <= BODY_LIMIT as u64)
        .map_or(0, |n| n as usize);
    let mut buf = BytesMut::with_capacity(reserve);
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if buf.len() + chunk.len() > BODY_LIMIT {
            return Err(too_large());
        }
        if buf.is_empty() && declared == Some(chunk.len() as u64) {
            // The whole body in one chunk (hyper ends a body at its Content-Length): no copy.
            return Ok(chunk);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Parses a JSON body: 415 for a non-JSON content type, 400 for malformed JSON, 422 for wrong types.
/// No body and no content type means `{}`, as in Cog. The body is dropped before this returns.
fn parse_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Bytes,
) -> Result<T, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let text: &[u8] = match content_type {
        None if body.is_empty() => b"{}",
        Some(ct) if !is_json(ct) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "expected Content-Type: application/json, got {ct:?}"
            )))
        }
        _ => &body,
    };
    // One pass straight into `T` for a well-formed object body. Anything else (bad JSON, a
    // non-object, wrong types, a duplicate key) takes the two passes below, whose error messages are
    // the API's.
    if text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        if let Ok(parsed) = serde_json::from_slice(text) {
            return Ok(parsed);
        }
    }
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))?;
    drop(body);
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "request body must be a JSON object".into(),
        ));
    }
    serde_json::from_value(value).map_err(|e| ApiError::Validation {
        loc: vec!["body".into()],
        msg: e.to_string(),
        kind: "type_error",
    })
}

fn is_json(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Cancels the prediction if the client goes away before it ends.
struct CancelOnDrop {
    predictions: Arc<PredictionService>,
    id: String,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let predictions = self.predictions.clone();
            let id = std::mem::take(&mut self.id);
            tracing::info!(prediction_id = %id, "client disconnected; cancelling the prediction");
            tokio::spawn(async move { predictions.cancel(&id).await });
        }
    }
}

async fn create_prediction(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run(state, Kind::Prediction, None, headers, body).await
}

async fn create_training(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run(state, Kind::Training, None, headers, body).await
}

async fn put_prediction(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run(state, Kind::Prediction, Some(id), headers, body).await
}

async fn put_training(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run(state, Kind::Training, Some(id), headers, body).await
}

async fn get_prediction(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    find(&state, Kind::Prediction, &id)
}

async fn get_training(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    find(&state, Kind::Training, &id)
}

fn find(state: &AppState, kind: Kind, id: &str) -> Response {
    if let Some(refusal) = wrong_mode(state, kind) {
        return refusal;
    }
    match state.predictions.get(id).filter(|p| p.kind == kind) {
        Some(p) => json_bytes(StatusCode::OK, p.snapshot_json()),
        None => not_found(kind),
    }
}

fn not_found(kind: Kind) -> Response {
    let what = match kind {
        Kind::Prediction => "Prediction not found",
        Kind::Training => "Training not found",
    };
    (StatusCode::NOT_FOUND, Json(json!({"error": what}))).into_response()
}

/// An `Accept` element whose media type is exactly `text/event-stream` asks for SSE (it wins over
/// `Prefer`, as in Cog).
fn wants_sse(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|element| {
                element.split(';').next().unwrap_or("").trim() == "text/event-stream"
            })
        })
    })
}

/// Why SSE is refused for this request, if it is.
fn sse_refusal(state: &AppState, kind: Kind) -> Option<Response> {
    let refuse = |message: &str| {
        Some((StatusCode::NOT_ACCEPTABLE, Json(json!({"error": message}))).into_response())
    };
    if kind == Kind::Training {
        return refuse("Training endpoints do not support streaming responses.");
    }
    let streaming = state.supervisor.schema().is_some_and(|s| {
        s.pointer("/paths/~1predictions/post/x-cog-streaming") == Some(&Value::Bool(true))
    });
    if !streaming {
        return refuse("This model does not support streaming responses. Add @cog.streaming to predict() to enable SSE.");
    }
    None
}

/// `Prefer: respond-async` (exactly, as Cog) asks for a 202 and a prediction that runs on its own.
fn wants_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.trim() == "respond-async"))
}

/// Validates, admits and runs one prediction or training. Sync requests are answered when it ends;
/// async ones at once with 202. A `PUT` for an id that exists answers with that prediction instead of
/// running the model again.
async fn run(
    state: AppState,
    kind: Kind,
    path_id: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refusal) = wrong_mode(&state, kind) {
        return refusal;
    }
    let body = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let body: PredictionBody = match parse_body(&headers, body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let is_put = path_id.is_some();
    let id = match (path_id, body.id) {
        (Some(path), Some(body)) if path != body => {
            let what = match kind {
                Kind::Prediction => "prediction",
                Kind::Training => "training",
            };
            return ApiError::invalid(
                &["body", "id"],
                format!("{what} ID must match the ID supplied in the URL"),
            )
            .into_response();
        }
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => format!("pred_{}", uuid::Uuid::new_v4().simple()),
    };
    if let Err(msg) = validate_id(&id) {
        return ApiError::invalid(&["body", "id"], msg).into_response();
    }
    let webhook = match Webhook::from_request(
        body.webhook.as_deref().filter(|w| !w.is_empty()),
        body.webhook_events_filter.as_deref(),
        &headers,
    ) {
        Ok(w) => w,
        Err(e) => {
            return ApiError::Validation {
                loc: e.loc(),
                msg: e.to_string(),
                kind: "value_error",
            }
            .into_response()
        }
    };
    let sse = wants_sse(&headers);
    if sse {
        if let Some(refusal) = sse_refusal(&state, kind) {
            return refusal;
        }
    }
    if let Some(existing) = state.predictions.get(&id).filter(|p| p.kind == kind) {
        if sse && (!existing.status().is_terminal() || is_put) {
            return sse::respond(state.predictions.clone(), existing);
        }
        if !existing.status().is_terminal() {
            // Already running (a retried PUT, or a POST reusing an id): never a second run.
            return json_bytes(StatusCode::ACCEPTED, existing.snapshot_json());
        }
        if is_put {
            // A PUT is idempotent: a finished prediction answers with its result.
            return json_bytes(StatusCode::OK, existing.snapshot_json());
        }
    }
    let input = match body.input {
        None | Some(Value::Null) => json!({}),
        Some(v) => v,
    };
    let schema = state.input_schema(kind);
    let input = match &schema {
        Some(schema) => match schema.prepare(input) {
            Ok(input) => input,
            Err(details) => return unprocessable(&details),
        },
        None if !input.is_object() => {
            return ApiError::invalid(&["body", "input"], "input must be a JSON object")
                .into_response()
        }
        None => input,
    };
    let output_is_array = schema.is_some_and(|s| s.output_is_array);
    let (prediction, mut driver) = match state
        .predictions
        .create(
            kind,
            id.clone(),
            input,
            body.context,
            output_is_array,
            webhook,
        )
        .await
    {
        Ok(p) => p,
        Err(CreateError::Admit(e)) => return admit_error(&id, e),
        Err(e @ CreateError::Running(_)) => {
            return (
                StatusCode::CONFLICT,
                Json(json!({"id": id, "error": e.to_string(), "status": "failed"})),
            )
                .into_response()
        }
    };
    if sse {
        prediction
            .cancel_when_unwatched
            .store(true, std::sync::atomic::Ordering::SeqCst);
        drop(driver);
        return sse::respond(state.predictions.clone(), prediction);
    }
    if wants_async(&headers) {
        // As Cog: the new prediction as created, `starting` (polling shows it `processing`).
        let body = prediction.created_json();
        drop(driver);
        return json_bytes(StatusCode::ACCEPTED, body);
    }
    // Declared after the driver, so dropped before it: a client that goes away cancels first, then
    // the driver moves to a task of its own and applies the cancellation.
    let mut guard = CancelOnDrop {
        predictions: state.predictions.clone(),
        id: id.clone(),
        armed: true,
    };
    driver.run().await;
    guard.armed = false;
    json_bytes(StatusCode::OK, prediction.sync_body_json())
}

/// A response of already-serialized JSON, with the content type `Json` sets.
fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Cog's 422 body for input validation failures.
fn unprocessable(details: &[Detail]) -> Response {
    let detail: Vec<Value> = details.iter().map(Detail::to_json).collect();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"detail": detail})),
    )
        .into_response()
}

fn admit_error(id: &str, e: AdmitError) -> Response {
    let status = match e {
        AdmitError::NotReady(_) | AdmitError::Recycling(_) | AdmitError::ShuttingDown => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        AdmitError::AtCapacity | AdmitError::DuplicateId(_) => StatusCode::CONFLICT,
    };
    let mut response = (
        status,
        Json(json!({"id": id, "error": e.to_string(), "status": "failed"})),
    )
        .into_response();
    // A recycle or a start ends by itself: tell the client when to come back.
    if matches!(
        e,
        AdmitError::Recycling(_)
            | AdmitError::NotReady(cogvisor_supervisor::HealthStatus::Starting)
    ) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated_before_use() {
        assert!(validate_id("pred_18ea4c3d75879b16").is_ok());
        assert!(validate_id("a.b-c_D9").is_ok());
        assert!(validate_id(&"a".repeat(MAX_ID_LEN)).is_ok());
        for bad in ["", ".", "..", "../etc", "a/b", "a\0b", "a%2fb", "é", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
        let long = validate_id(&"a".repeat(300)).unwrap_err();
        assert!(long.contains("300"), "{long}");
    }

    #[test]
    fn the_one_pass_parse_reads_what_the_two_pass_parse_reads() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/json".parse().expect("header"),
        );
        let parse = |b: &'static str| {
            parse_body::<PredictionBody>(&headers, Bytes::from_static(b.as_bytes()))
                .expect("parses")
        };
        let body = parse(
            r#" {"id": "p1", "input": {"n": 1.5, "s": "é"}, "context": {"k": "v"}, "extra": [1]}"#,
        );
        assert_eq!(body.id.as_deref(), Some("p1"));
        assert_eq!(body.input, Some(json!({"n": 1.5, "s": "é"})));
        assert_eq!(body.context.get("k").map(String::as_str), Some("v"));
        // A duplicate key fails the one-pass parse; the two-pass one keeps the last value, as before.
        let body = parse(r#"{"id": "a", "id": "b"}"#);
        assert_eq!(body.id.as_deref(), Some("b"));
    }

    #[test]
    fn each_mode_refuses_the_other_kind_only() {
        assert_eq!(mode_error(Mode::Predict, Kind::Prediction), None);
        assert_eq!(mode_error(Mode::Train, Kind::Training), None);
        let predict = mode_error(Mode::Predict, Kind::Training).expect("refused");
        assert!(predict.contains("predict mode") && predict.contains("--mode train"));
        let train = mode_error(Mode::Train, Kind::Prediction).expect("refused");
        assert!(train.contains("train mode") && train.contains("without --mode train"));
    }

    #[test]
    fn framework_errors_get_a_message() {
        let get = axum::http::Method::GET;
        let delete = axum::http::Method::DELETE;
        assert_eq!(
            framework_error_message(
                StatusCode::METHOD_NOT_ALLOWED,
                &delete,
                "/predictions",
                Some("POST"),
                ""
            ),
            "method DELETE not allowed on /predictions; allowed: POST"
        );
        assert_eq!(
            framework_error_message(
                StatusCode::METHOD_NOT_ALLOWED,
                &delete,
                "/p/x",
                Some("PUT,GET,HEAD"),
                ""
            ),
            "method DELETE not allowed on /p/x; allowed: PUT, GET, HEAD"
        );
        assert_eq!(
            framework_error_message(StatusCode::BAD_REQUEST, &get, "/p", None, "Invalid URL"),
            "Invalid URL"
        );
        assert_eq!(
            framework_error_message(StatusCode::NOT_FOUND, &get, "/x", None, ""),
            "Not Found (GET /x)"
        );
    }

    /// Serves `router` wrapped in [`json_errors`] on a free port; answers each request's status,
    /// content type, `Allow` header and body.
    async fn serve_json_errors(
        router: Router,
    ) -> impl Fn(
        reqwest::Method,
        &'static str,
    ) -> futures::future::BoxFuture<
        'static,
        (StatusCode, Option<String>, Option<String>, Value),
    > {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, json_errors(router)).await });
        let client = reqwest::Client::new();
        move |method, path| {
            let request = client.request(method, format!("http://{addr}{path}"));
            Box::pin(async move {
                let r = request.send().await.expect("request");
                let header = |name| {
                    r.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let (content_type, allow) = (header(header::CONTENT_TYPE), header(header::ALLOW));
                let status = StatusCode::from_u16(r.status().as_u16()).expect("status");
                let body = r.json::<Value>().await.expect("a JSON body");
                (status, content_type, allow, body)
            })
        }
    }

    #[tokio::test]
    async fn every_router_error_answers_json() {
        let router = Router::new()
            .route(
                "/items/{id}",
                get(|Path(id): Path<String>| async move { id }),
            )
            .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT }))
            .route(
                "/json",
                get(|| async { (StatusCode::CONFLICT, Json(json!({"error": "mine"}))) }),
            );
        let call = serve_json_errors(router).await;
        let json = Some("application/json".to_string());

        let (status, ct, _, body) = call(reqwest::Method::GET, "/nope/x").await;
        assert_eq!((status, ct.clone()), (StatusCode::NOT_FOUND, json.clone()));
        assert_eq!(body, json!({"error": "no route GET /nope/x"}));

        let (status, ct, allow, body) = call(reqwest::Method::DELETE, "/items/1").await;
        assert_eq!((status, ct), (StatusCode::METHOD_NOT_ALLOWED, json.clone()));
        assert_eq!(allow.as_deref(), Some("GET,HEAD"));
        assert_eq!(
            body,
            json!({"error": "method DELETE not allowed on /items/1; allowed: GET, HEAD"})
        );

        // An extractor's plain-text rejection keeps its status and text.
        let (status, ct, _, body) = call(reqwest::Method::GET, "/items/%FF").await;
        assert_eq!((status, ct), (StatusCode::BAD_REQUEST, json.clone()));
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("UTF-8")),
            "{body}"
        );

        // An empty error body gets the status's reason.
        let (status, _, _, body) = call(reqwest::Method::GET, "/teapot").await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert_eq!(body, json!({"error": "I'm a teapot (GET /teapot)"}));

        // A JSON error is left alone.
        let (status, _, _, body) = call(reqwest::Method::GET, "/json").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body, json!({"error": "mine"}));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/vnd.api+json"));
        assert!(!is_json("text/plain"));
    }

    fn chunked(chunks: &[&'static str]) -> Body {
        let items: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        Body::from_stream(futures::stream::iter(items))
    }

    fn with_length(n: u64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, n.into());
        headers
    }

    #[tokio::test]
    async fn a_body_in_chunks_is_read_whole_with_or_without_a_length() {
        let got = read_body(&with_length(9), chunked(&["{\"a\"", ":", "1}\n"]))
            .await
            .expect("body");
        assert_eq!(&got[..], b"{\"a\":1}\n");
        let got = read_body(&HeaderMap::new(), chunked(&["ab", "", "c"]))
            .await
            .expect("body");
        assert_eq!(&got[..], b"abc");
        let got = read_body(&with_length(3), chunked(&["abc"]))
            .await
            .expect("body");
        assert_eq!(&got[..], b"abc");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_declared_or_not() {
        let big: &'static str = Box::leak("x".repeat(BODY_LIMIT / 2 + 1).into_boxed_str());
        let declared = read_body(&with_length(BODY_LIMIT as u64 + 2), chunked(&[big, big]))
            .await
            .unwrap_err();
        assert!(matches!(declared, ApiError::TooLarge(_)), "{declared}");
        let undeclared = read_body(&HeaderMap::new(), chunked(&[big, big]))
            .await
            .unwrap_err();
        assert!(matches!(undeclared, ApiError::TooLarge(_)), "{undeclared}");
        assert_eq!(
            undeclared.into_response().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn body_parsing_errors_have_the_right_status() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/json".parse().expect("header"),
        );
        let status = |h: &HeaderMap, b: &'static str| match parse_body::<PredictionBody>(
            h,
            Bytes::from_static(b.as_bytes()),
        ) {
            Ok(_) => StatusCode::OK,
            Err(e) => e.into_response().status(),
        };
        assert_eq!(status(&headers, "{bad"), StatusCode::BAD_REQUEST);
        assert_eq!(status(&headers, "[1]"), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(&headers, r#"{"context": {"a": 1}}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(status(&headers, r#"{"input": {}}"#), StatusCode::OK);
        // A one-element array would deserialize into the struct's first field: still refused.
        assert_eq!(status(&headers, r#"["an-id"]"#), StatusCode::BAD_REQUEST);
        assert_eq!(status(&headers, r#"  ["an-id"]"#), StatusCode::BAD_REQUEST);
        assert_eq!(status(&HeaderMap::new(), ""), StatusCode::OK);
        let mut text = HeaderMap::new();
        text.insert(header::CONTENT_TYPE, "text/plain".parse().expect("header"));
        assert_eq!(status(&text, "{}"), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
