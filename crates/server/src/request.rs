//! What a prediction request carries and how it is read: the body limit, the server-wide budget of
//! buffered bodies and the read timeout, reading the body into one buffer, parsing it as JSON with the
//! API's statuses, and checking a client-supplied id.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http_errors::ApiError;

/// Largest request body accepted: 100 MiB, as Cog.
pub const BODY_LIMIT: usize = 100 * 1024 * 1024;

/// Longest prediction id accepted.
pub const MAX_ID_LEN: usize = 128;

/// The body of `POST /predictions`.
#[derive(Debug, Deserialize)]
pub(crate) struct PredictionBody {
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) input: Option<Value>,
    #[serde(default)]
    pub(crate) context: BTreeMap<String, String>,
    /// Where to `POST` the prediction's state as it changes (an empty string means none).
    #[serde(default)]
    pub(crate) webhook: Option<String>,
    /// Which webhook events to send (default: all).
    #[serde(default)]
    pub(crate) webhook_events_filter: Option<Vec<String>>,
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

/// The default of `http.body_budget`: request bodies buffered at once, all requests together.
pub const DEFAULT_BODY_BUDGET: usize = 128 * 1024 * 1024;

/// The default of `http.body_read_timeout`: the longest wait between two reads of a body (nginx's
/// `client_body_timeout`).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a refused body (over the limit, or over the budget) is still read and thrown away before
/// the answer, so a client that is still sending sees the answer rather than a reset connection.
/// Nothing of it is kept.
pub const DISCARD_LINGER: Duration = Duration::from_secs(5);

/// What bounds reading request bodies, shared by every request: the server-wide budget of buffered
/// bytes and the wait between two reads.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    read_timeout: Duration,
}

impl BodyLimits {
    pub fn new(budget_bytes: usize, read_timeout: Duration) -> Self {
        Self {
            budget: Arc::new(Semaphore::new(budget_bytes.min(Semaphore::MAX_PERMITS))),
            budget_bytes,
            read_timeout,
        }
    }

    /// Bytes of the budget held by bodies being read or parsed now.
    pub fn in_use(&self) -> usize {
        self.budget_bytes
            .min(Semaphore::MAX_PERMITS)
            .saturating_sub(self.budget.available_permits())
    }

    fn take(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(n).ok()?;
        self.budget.clone().try_acquire_many_owned(n).ok()
    }

    fn busy(&self) -> ApiError {
        ApiError::Busy(format!(
            "the server is buffering {} MiB of request bodies already (http.body_budget); retry later",
            self.budget_bytes / (1024 * 1024)
        ))
    }
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self::new(DEFAULT_BODY_BUDGET, DEFAULT_BODY_READ_TIMEOUT)
    }
}

/// A request body read whole, with the share of the body budget it holds until it is dropped.
#[derive(Debug)]
pub struct Buffered {
    pub bytes: Bytes,
    _budget: Option<OwnedSemaphorePermit>,
}

impl From<Bytes> for Buffered {
    /// A body that holds no share of a budget.
    fn from(bytes: Bytes) -> Self {
        Self {
            bytes,
            _budget: None,
        }
    }
}

/// Reads a request body of up to `max` bytes into one buffer, sized from `Content-Length` when the
/// client sent it, so the body is held once (not as its chunks plus a joined copy).
///
/// The buffer is counted in the server-wide budget ([`BodyLimits`]): a declared length is reserved
/// before the first byte is read, an undeclared one as it arrives; a body that does not fit is
/// answered 503 with `Retry-After`. A client that sends nothing for the read timeout gets 408.
pub(crate) async fn read_body(
    limits: &BodyLimits,
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<Buffered, ApiError> {
    let too_large = || {
        ApiError::TooLarge(if max >= 1024 * 1024 {
            format!(
                "request body is larger than the {} MiB limit",
                max / (1024 * 1024)
            )
        } else {
            format!("request body is larger than the {} KiB limit", max / 1024)
        })
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut chunks = body.into_data_stream();
    // A body refused before it is read is still read (and thrown away) for a while before the answer,
    // as axum's limit does: a client that is still sending would otherwise see its connection reset
    // instead of the answer.
    if declared.is_some_and(|n| n > max as u64) {
        discard(&mut chunks, max).await;
        return Err(too_large());
    }
    let reserve = declared.map_or(0, |n| n as usize);
    let mut budget = match limits.take(reserve) {
        Some(permit) => permit,
        None => {
            discard(&mut chunks, max).await;
            return Err(limits.busy());
        }
    };
    let mut buf = BytesMut::with_capacity(reserve);
    loop {
        let chunk = match tokio::time::timeout(limits.read_timeout, chunks.next()).await {
            Err(_) => {
                return Err(ApiError::Timeout(format!(
                    "no part of the request body arrived for {:?} (http.body_read_timeout)",
                    limits.read_timeout
                )))
            }
            Ok(None) => break,
            Ok(Some(chunk)) => chunk,
        };
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if buf.len() + chunk.len() > max {
            drop(buf);
            discard(&mut chunks, max).await;
            return Err(too_large());
        }
        if declared.is_none() {
            match limits.take(chunk.len()) {
                Some(more) => budget.merge(more),
                None => {
                    drop(buf);
                    discard(&mut chunks, max).await;
                    return Err(limits.busy());
                }
            }
        }
        if buf.is_empty() && declared == Some(chunk.len() as u64) {
            // The whole body in one chunk (hyper ends a body at its Content-Length): no copy.
            return Ok(Buffered {
                bytes: chunk,
                _budget: Some(budget),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Buffered {
        bytes: buf.freeze(),
        _budget: Some(budget),
    })
}

/// Reads and drops up to `max` bytes of what is left of a body, for at most [`DISCARD_LINGER`].
async fn discard(chunks: &mut axum::body::BodyDataStream, max: usize) {
    let deadline = tokio::time::Instant::now() + DISCARD_LINGER;
    let mut seen = 0usize;
    while seen <= max {
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(Some(Ok(chunk))) => seen += chunk.len(),
            _ => return,
        }
    }
}

/// Parses a JSON body: 415 for a non-JSON content type, 400 for malformed JSON, 422 for wrong types.
/// No body and no content type means `{}`, as in Cog. The body (and its share of the body budget) is
/// dropped before this returns.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Buffered,
) -> Result<T, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let text: &[u8] = match content_type {
        None if body.bytes.is_empty() => b"{}",
        Some(ct) if !is_json(ct) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "expected Content-Type: application/json, got {ct:?}"
            )))
        }
        _ => &body.bytes,
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

pub(crate) fn is_json(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use serde_json::json;

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
            parse_body::<PredictionBody>(&headers, Bytes::from_static(b.as_bytes()).into())
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
        let limits = BodyLimits::default();
        let got = read_body(
            &limits,
            &with_length(9),
            chunked(&["{\"a\"", ":", "1}\n"]),
            BODY_LIMIT,
        )
        .await
        .expect("body");
        assert_eq!(&got.bytes[..], b"{\"a\":1}\n");
        drop(got);
        let got = read_body(
            &limits,
            &HeaderMap::new(),
            chunked(&["ab", "", "c"]),
            BODY_LIMIT,
        )
        .await
        .expect("body");
        assert_eq!(&got.bytes[..], b"abc");
        drop(got);
        let got = read_body(&limits, &with_length(3), chunked(&["abc"]), BODY_LIMIT)
            .await
            .expect("body");
        assert_eq!(&got.bytes[..], b"abc");
        assert_eq!(limits.in_use(), 3, "held while the body is");
        drop(got);
        assert_eq!(limits.in_use(), 0);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_declared_or_not() {
        let big: &'static str = Box::leak("x".repeat(BODY_LIMIT / 2 + 1).into_boxed_str());
        let limits = BodyLimits::new(2 * BODY_LIMIT, DEFAULT_BODY_READ_TIMEOUT);
        let declared = read_body(
            &limits,
            &with_length(BODY_LIMIT as u64 + 2),
            chunked(&[big, big]),
            BODY_LIMIT,
        )
        .await
        .unwrap_err();
        assert!(matches!(declared, ApiError::TooLarge(_)), "{declared}");
        let undeclared = read_body(&limits, &HeaderMap::new(), chunked(&[big, big]), BODY_LIMIT)
            .await
            .unwrap_err();
        assert_eq!(limits.in_use(), 0, "a refused body holds nothing");
        assert!(matches!(undeclared, ApiError::TooLarge(_)), "{undeclared}");
        assert_eq!(
            undeclared.into_response().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[tokio::test]
    async fn bodies_past_the_budget_are_503_with_retry_after_declared_or_not() {
        let limits = BodyLimits::new(1 << 20, DEFAULT_BODY_READ_TIMEOUT);
        let half: &'static str = Box::leak("x".repeat(600 << 10).into_boxed_str());
        let first = read_body(
            &limits,
            &with_length(600 << 10),
            chunked(&[half]),
            BODY_LIMIT,
        )
        .await
        .expect("fits");
        let declared = read_body(
            &limits,
            &with_length(600 << 10),
            chunked(&[half]),
            BODY_LIMIT,
        )
        .await
        .unwrap_err();
        assert!(matches!(declared, ApiError::Busy(_)), "{declared}");
        let undeclared = read_body(
            &limits,
            &HeaderMap::new(),
            chunked(&["ab", half]),
            BODY_LIMIT,
        )
        .await
        .unwrap_err();
        assert!(matches!(undeclared, ApiError::Busy(_)), "{undeclared}");
        let response = undeclared.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(limits.in_use(), 600 << 10);
        drop(first);
        read_body(
            &limits,
            &with_length(600 << 10),
            chunked(&[half]),
            BODY_LIMIT,
        )
        .await
        .expect("fits once the first is gone");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_is_408_after_the_read_timeout() {
        let limits = BodyLimits::new(1 << 20, Duration::from_secs(60));
        let stalled = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{"))])
            .chain(futures::stream::pending());
        let started = tokio::time::Instant::now();
        let err = read_body(
            &limits,
            &with_length(10),
            Body::from_stream(stalled),
            BODY_LIMIT,
        )
        .await
        .unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        assert!(matches!(err, ApiError::Timeout(_)), "{err}");
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        assert_eq!(limits.in_use(), 0);
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
            Bytes::from_static(b.as_bytes()).into(),
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
