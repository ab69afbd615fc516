//! Health endpoints: Cog's `/health-check` (always 200) plus `/readyz` and `/livez` for Kubernetes
//! probes, and the admin `POST /recycle`.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cogvisor_supervisor::{HealthSnapshot, HealthStatus, RecycleTrigger};
use serde_json::{json, Value};

use crate::http::AppState;

/// `GET /health-check`: runs a check (the model's `healthcheck()` and `health.command`, shared with
/// any check already running) when a worker is serving, then answers Cog's body plus `worker` and
/// `slots`. Always 200.
pub async fn health_check(State(state): State<AppState>) -> Json<Value> {
    state.supervisor.check_health().await;
    Json(body(&state.supervisor.health()))
}

fn body(h: &HealthSnapshot) -> Value {
    let mut version = serde_json::Map::new();
    // coglet's keys, with `coglet` the version cogvisor behaves as, and cogvisor's own beside it.
    version.insert("coglet".into(), crate::version::COG_VERSION.into());
    version.insert("cogvisor".into(), crate::version::COGVISOR_VERSION.into());
    if let Some(sdk) = &h.sdk_version {
        version.insert("python_sdk".into(), sdk.clone().into());
    }
    if let Some(python) = &h.python_version {
        version.insert("python".into(), python.clone().into());
    }
    let mut out = json!({
        "status": h.status,
        "setup": h.setup,
        "version": version,
        "worker": h.worker,
        "slots": h.slots,
    });
    if let Some(error) = &h.user_healthcheck_error {
        out["user_healthcheck_error"] = error.clone().into();
    }
    if let Some(reason) = &h.reason {
        out["reason"] = reason.clone().into();
    }
    out
}

/// True when traffic should be sent here: a prediction would be admitted now, or every slot is merely
/// busy.
pub fn is_ready(h: &HealthSnapshot) -> bool {
    matches!(h.status, HealthStatus::Ready | HealthStatus::Busy)
}

/// True unless the process should be restarted.
pub fn is_live(h: &HealthSnapshot) -> bool {
    !matches!(h.status, HealthStatus::SetupFailed | HealthStatus::Defunct)
}

/// `GET /readyz`: 200 when ready, else 503; both with the status and reason. It does not run a check
/// (the monitor and `/health-check` do): a probe must be cheap.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let h = state.supervisor.health();
    if state.predictions.is_draining() {
        // Shutting down: send no more traffic here, whatever the worker's state.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": h.status, "reason": "the server is shutting down"})),
        )
            .into_response();
    }
    probe(is_ready(&h), &h)
}

/// `GET /livez`: 503 only for SETUP_FAILED and DEFUNCT.
pub async fn livez(State(state): State<AppState>) -> Response {
    let h = state.supervisor.health();
    probe(is_live(&h), &h)
}

fn probe(ok: bool, h: &HealthSnapshot) -> Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({"status": h.status});
    if let Some(reason) = h
        .reason
        .as_ref()
        .or(h.user_healthcheck_error.as_ref())
        .or(h.worker.exit.as_ref())
    {
        body["reason"] = reason.clone().into();
    }
    (status, Json(body)).into_response()
}

/// Largest `POST /recycle` body read (it carries a reason only): 64 KiB.
pub const RECYCLE_BODY_LIMIT: usize = 64 * 1024;

/// `POST /recycle` with `Authorization: Bearer $COGVISOR_ADMIN_TOKEN`: replaces the worker as
/// `cog.recycle_worker()` would. 404 when no token is configured (the route does not exist then), 403
/// without the right token, 409 when no worker is serving, 202 when the recycle has started.
pub async fn recycle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(token) = state.admin_token.as_deref() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "POST /recycle is disabled: set COGVISOR_ADMIN_TOKEN to enable it"})),
        )
            .into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "POST /recycle needs Authorization: Bearer <COGVISOR_ADMIN_TOKEN>"})),
        )
            .into_response();
    }
    // Only after the token: a client without it gets nothing read.
    let body =
        match crate::request::read_body(&state.body_limits, &headers, body, RECYCLE_BODY_LIMIT)
            .await
        {
            Ok(body) => body,
            Err(e) => return e.into_response(),
        };
    let reason = serde_json::from_slice::<Value>(&body.bytes)
        .ok()
        .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_string))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "requested with POST /recycle".to_string());
    if state
        .supervisor
        .request_recycle(RecycleTrigger::Admin, &reason)
    {
        (
            StatusCode::ACCEPTED,
            Json(json!({"status": "RECYCLING", "reason": reason})),
        )
            .into_response()
    } else {
        let h = state.supervisor.health();
        (
            StatusCode::CONFLICT,
            Json(json!({"error": format!("no worker is serving (status {})", h.status), "status": h.status})),
        )
            .into_response()
    }
}

/// Compares without an early exit, so response time says nothing about how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
