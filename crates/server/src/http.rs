//! The HTTP API's shared state and its routes: the router, and the routes that only describe the
//! server (`/`, `/openapi.json`, `/metrics`, `POST /shutdown`). Predictions are served by
//! [`crate::prediction_routes`], health by [`crate::health_routes`].

use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use cogvisor_protocol::Mode;
use cogvisor_supervisor::WorkerPool;
use serde_json::{json, Value};

use crate::health_routes;
use crate::http_errors::{error_response, json_errors};
use crate::prediction_routes::{
    cancel_prediction, cancel_training, create_prediction, create_training, get_prediction,
    get_training, put_prediction, put_training,
};
use crate::predictions::{PredictionService, ServiceSettings};
use crate::request::{BodyLimits, BODY_LIMIT};
use crate::schema::{InputSchema, Kind};
use crate::shutdown::ShutdownTrigger;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub supervisor: WorkerPool,
    pub predictions: Arc<PredictionService>,
    shutdown: ShutdownTrigger,
    schemas: Arc<Mutex<SchemaCache>>,
    /// `COGVISOR_ADMIN_TOKEN`: enables `POST /recycle` for bearers of it.
    pub admin_token: Option<String>,
    /// What the worker runs: `/predictions` are served in predict mode, `/trainings` in train mode.
    mode: Mode,
    /// The server-wide budget of buffered request bodies and the body read timeout.
    pub body_limits: BodyLimits,
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
        supervisor: WorkerPool,
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
            body_limits: BodyLimits::default(),
        }
    }

    /// The compiled input schema for `kind`, or `None` when the model has no usable schema (then
    /// inputs go to the model unvalidated, as in Cog).
    pub(crate) fn input_schema(&self, kind: Kind) -> Option<Arc<InputSchema>> {
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

pub(crate) fn wrong_mode(state: &AppState, kind: Kind) -> Option<Response> {
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
    let metrics = state.predictions.metrics();
    let each = state.supervisor.worker_memories().await;
    metrics.set_worker_memory(&cogvisor_supervisor::total_memory(&each));
    metrics.set_pool_memory(&each);
    match metrics.render(&state.supervisor.health(), format) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_refuses_the_other_kind_only() {
        assert_eq!(mode_error(Mode::Predict, Kind::Prediction), None);
        assert_eq!(mode_error(Mode::Train, Kind::Training), None);
        let predict = mode_error(Mode::Predict, Kind::Training).expect("refused");
        assert!(predict.contains("predict mode") && predict.contains("--mode train"));
        let train = mode_error(Mode::Train, Kind::Prediction).expect("refused");
        assert!(train.contains("train mode") && train.contains("without --mode train"));
    }
}
