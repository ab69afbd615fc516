//! The prediction and training routes: create (`POST`), create-or-get (`PUT`), get and cancel, for
//! sync, async (`Prefer: respond-async`) and SSE (`Accept: text/event-stream`) requests.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::http::{wrong_mode, AppState};
use crate::http_errors::{admit_error, unprocessable, ApiError};
use crate::predictions::{CreateError, PredictionService};
use crate::request::{parse_body, read_body, validate_id, PredictionBody, BODY_LIMIT};
use crate::schema::Kind;
use crate::sse;
use crate::webhook::Webhook;

pub(crate) async fn cancel_prediction(state: State<AppState>, id: Path<String>) -> Response {
    cancel(state, Kind::Prediction, id).await
}

pub(crate) async fn cancel_training(state: State<AppState>, id: Path<String>) -> Response {
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

/// Cancels the prediction if the client goes away before it ends.
struct CancelOnDrop {
    predictions: Arc<PredictionService>,
    id: String,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let id = std::mem::take(&mut self.id);
            tracing::info!(prediction_id = %id, "client disconnected; cancelling the prediction");
            self.predictions.cancel_detached(id);
        }
    }
}

pub(crate) async fn create_prediction(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run(state, Kind::Prediction, None, headers, body).await
}

pub(crate) async fn create_training(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run(state, Kind::Training, None, headers, body).await
}

pub(crate) async fn put_prediction(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run(state, Kind::Prediction, Some(id), headers, body).await
}

pub(crate) async fn put_training(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run(state, Kind::Training, Some(id), headers, body).await
}

pub(crate) async fn get_prediction(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    find(&state, Kind::Prediction, &id)
}

pub(crate) async fn get_training(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
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
    let body = match read_body(&state.body_limits, &headers, body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    // The buffer's share of the body budget is held until it is parsed.
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
