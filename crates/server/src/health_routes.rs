//! Health endpoints: Cog's `/health-check` (always 200) plus `/readyz` and `/livez` for Kubernetes
//! probes, and the admin `POST /recycle`.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cogvisor_supervisor::{HealthSnapshot, HealthStatus, RecycleTrigger};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

use crate::http::AppState;

/// `GET /health-check`: runs a check (the model's `healthcheck()` and `health.command`, shared with
/// any check already running) when a worker is serving, then answers Cog's body plus `worker` and
/// `slots`. Always 200.
pub async fn health_check(State(state): State<AppState>) -> Json<HealthBody> {
    state.supervisor.check_health().await;
    Json(HealthBody(state.supervisor.health()))
}

/// The `/health-check` body, serialized straight from the snapshot: `setup.logs` (bounded, and shared
/// with the supervisor's state) is written once into the response, never copied into a JSON tree.
/// Keys in alphabetical order, as the body has always had them.
pub struct HealthBody(pub HealthSnapshot);

impl Serialize for HealthBody {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let h = &self.0;
        let mut map = serializer.serialize_map(None)?;
        // A pool (`workers.count` > 1): its size and ready workers, and every worker under `workers`.
        if let Some(pool) = &h.pool {
            map.serialize_entry("pool", pool)?;
        }
        if let Some(reason) = &h.reason {
            map.serialize_entry("reason", reason)?;
        }
        map.serialize_entry("setup", &h.setup)?;
        map.serialize_entry("slots", &h.slots)?;
        map.serialize_entry("status", &h.status)?;
        if let Some(successor) = &h.successor {
            map.serialize_entry("successor", successor)?;
        }
        if let Some(error) = &h.user_healthcheck_error {
            map.serialize_entry("user_healthcheck_error", error)?;
        }
        map.serialize_entry("version", &Version(h))?;
        map.serialize_entry("worker", &h.worker)?;
        if let Some(pool) = &h.pool {
            map.serialize_entry("workers", &pool.members)?;
        }
        map.end()
    }
}

/// coglet's `version` keys, with `coglet` the version cogvisor behaves as, and cogvisor's own beside it.
struct Version<'a>(&'a HealthSnapshot);

impl Serialize for Version<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("coglet", crate::version::COG_VERSION)?;
        map.serialize_entry("cogvisor", crate::version::COGVISOR_VERSION)?;
        if let Some(python) = &self.0.python_version {
            map.serialize_entry("python", python)?;
        }
        if let Some(sdk) = &self.0.sdk_version {
            map.serialize_entry("python_sdk", sdk)?;
        }
        map.end()
    }
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

    #[test]
    fn a_pools_health_body_adds_the_pool_and_every_worker() {
        let h = crate::metrics::tests::pool_health();
        let body = serde_json::to_value(HealthBody(h)).unwrap_or_default();
        insta::assert_json_snapshot!(
            "pool_health_body",
            serde_json::json!({"pool": body["pool"], "workers": body["workers"], "slots": body["slots"]})
        );
        let keys: Vec<&str> = body
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            ["pool", "setup", "slots", "status", "version", "worker", "workers"]
        );
    }

    #[test]
    fn a_health_body_during_an_overlapped_recycle_adds_the_successor() {
        let mut h = crate::metrics::tests::health(HealthStatus::Ready, 1, 1, 0);
        h.successor = Some(cogvisor_supervisor::SuccessorRecord {
            generation: 2,
            pid: Some(4242),
            status: HealthStatus::Recycling,
            started_at: "2026-12-07T03:00:00.000000000+00:00".into(),
        });
        let body = serde_json::to_value(HealthBody(h)).unwrap_or_default();
        insta::assert_json_snapshot!("successor_health_body", body["successor"]);
        let keys: Vec<&str> = body
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            ["setup", "slots", "status", "successor", "version", "worker"]
        );
    }

    #[test]
    fn the_health_body_has_cogs_keys_and_the_setup_logs_as_they_are() {
        let mut h = crate::metrics::tests::health(HealthStatus::Ready, 1, 0, 0);
        h.setup.logs = "[cogvisor] cogvisor 0.1.0\n[cogvisor] Server ready\n".into();
        h.python_version = Some("3.11.9".into());
        h.sdk_version = Some("0.23.1".into());
        let text = serde_json::to_string(&HealthBody(h)).unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or_default();
        let keys: Vec<&str> = body
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys, ["setup", "slots", "status", "version", "worker"]);
        assert_eq!(body["status"], "READY");
        assert_eq!(
            body["setup"]["logs"],
            "[cogvisor] cogvisor 0.1.0\n[cogvisor] Server ready\n"
        );
        assert_eq!(body["setup"]["status"], "succeeded");
        assert_eq!(body["version"]["coglet"], crate::version::COG_VERSION);
        assert_eq!(body["version"]["python"], "3.11.9");
        assert_eq!(body["version"]["python_sdk"], "0.23.1");
        assert_eq!(body["worker"]["generation"], 1);
        assert_eq!(body["slots"]["total"], 1);
        assert!(body.get("reason").is_none() && body.get("user_healthcheck_error").is_none());
    }

    #[test]
    fn the_health_body_names_the_reason_and_a_failed_check() {
        let mut h = crate::metrics::tests::health(HealthStatus::Unhealthy, 1, 0, 0);
        h.reason = Some("healthcheck failed".into());
        h.user_healthcheck_error = Some("bad".into());
        h.setup.logs = "".into();
        let body = serde_json::to_value(HealthBody(h)).unwrap_or_default();
        assert_eq!(body["reason"], "healthcheck failed");
        assert_eq!(body["user_healthcheck_error"], "bad");
        assert!(body["setup"].get("logs").is_none(), "{body}");
    }
}
