//! Error responses: the JSON body every refusal carries (a request the API refuses, an admission
//! refused by the supervisor, failed input validation), and the middleware that gives the framework's
//! own errors (unknown route, wrong method, an extractor's rejection) a JSON body too.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use cogvisor_supervisor::AdmitError;
use serde_json::{json, Value};

use crate::request::is_json;
use crate::schema::Detail;

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

pub(crate) fn error_response(status: StatusCode, message: String) -> Response {
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

/// A request the API refuses, with the status and body Cog clients expect.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 400 `{"error": ...}`: the body is not JSON, or not an object.
    #[error("{0}")]
    BadRequest(String),
    /// 413 `{"error": ...}`: the body is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// 408 `{"error": ...}` and `Connection: close`: the body stopped arriving.
    #[error("{0}")]
    Timeout(String),
    /// 503 `{"error": ...}` with `Retry-After`: the server-wide body budget is in use.
    #[error("{0}")]
    Busy(String),
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
    pub(crate) fn invalid(loc: &[&str], msg: impl Into<String>) -> Self {
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
            ApiError::Timeout(msg) => (
                StatusCode::REQUEST_TIMEOUT,
                [(header::CONNECTION, "close")],
                Json(json!({"error": msg})),
            )
                .into_response(),
            ApiError::Busy(msg) => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1"), (header::CONNECTION, "close")],
                Json(json!({"error": msg})),
            )
                .into_response(),
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

/// Cog's 422 body for input validation failures.
pub(crate) fn unprocessable(details: &[Detail]) -> Response {
    let detail: Vec<Value> = details.iter().map(Detail::to_json).collect();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"detail": detail})),
    )
        .into_response()
}

pub(crate) fn admit_error(id: &str, e: AdmitError) -> Response {
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
}
