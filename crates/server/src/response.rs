//! Cog's encoding rules for what a prediction produces: metric merging and file outputs.

use std::path::PathBuf;

use base64::Engine;
use cogvisor_protocol::MetricMode;
use serde_json::{Map, Value};

use crate::output_file::{
    read_output_blocking, read_regular_blocking, OutputFileError, DEFAULT_MAX_OUTPUT_FILE,
};

/// Longest metric name applied, in bytes: coglet's limit (`MAX_METRIC_NAME`, python/cog/_runtime.py).
pub const MAX_METRIC_NAME: usize = 128;

/// Most dot-separated segments of a metric name applied: coglet's limit (`MAX_METRIC_SEGMENTS`).
pub const MAX_METRIC_SEGMENTS: usize = 4;

/// Why a metric from the worker was not applied: the SDK refuses such names in model code with
/// coglet's message, so only a frame written past the SDK carries one.
pub fn metric_name_error(name: &str) -> Option<String> {
    if name.len() > MAX_METRIC_NAME {
        return Some(format!(
            "metric name must be {MAX_METRIC_NAME} characters or fewer (got {} characters)",
            name.len()
        ));
    }
    let segments = name.split('.').count();
    if segments > MAX_METRIC_SEGMENTS {
        return Some(format!(
            "metric name must have at most {MAX_METRIC_SEGMENTS} dot-separated segments (got {segments})"
        ));
    }
    None
}

/// Applies a metric with Cog's modes; dotted names become nested objects, `null` deletes.
///
/// A name past coglet's bounds ([`metric_name_error`]) is dropped with a warning in the server's log:
/// the nesting it would build is what bounds the depth of the metrics object, which is dropped and
/// serialized recursively.
pub fn apply_metric(metrics: &mut Map<String, Value>, name: &str, value: Value, mode: MetricMode) {
    if let Some(error) = metric_name_error(name) {
        let shown: String = name.chars().take(MAX_METRIC_NAME).collect();
        tracing::warn!(metric = %shown, %error, "metric from the worker dropped");
        return;
    }
    let mut parts: Vec<&str> = name.split('.').collect();
    let Some(leaf) = parts.pop() else { return };
    let mut target = metrics;
    for part in parts {
        let entry = target
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else { return };
        target = next;
    }
    if value.is_null() {
        target.remove(leaf);
        return;
    }
    match mode {
        MetricMode::Replace => {
            target.insert(leaf.to_string(), value);
        }
        MetricMode::Increment => {
            let sum = match (target.get(leaf), &value) {
                (Some(Value::Number(a)), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
                    (Some(x), Some(y)) => x.checked_add(y).map(Value::from),
                    _ => None,
                }
                .or_else(|| {
                    Some(Value::from(
                        a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0),
                    ))
                }),
                _ => Some(value),
            };
            if let Some(sum) = sum {
                target.insert(leaf.to_string(), sum);
            }
        }
        MetricMode::Append => match target.get_mut(leaf) {
            Some(Value::Array(items)) => items.push(value),
            _ => {
                target.insert(leaf.to_string(), Value::Array(vec![value]));
            }
        },
    }
}

/// `bytes` as a `data:` URL of `mime_type` (`application/octet-stream` when unknown).
pub fn data_url(bytes: &[u8], mime_type: Option<&str>) -> Value {
    let mime = mime_type.unwrap_or("application/octet-stream");
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    Value::String(format!("data:{mime};base64,{b64}"))
}

/// Output file `path` of the prediction whose output directory is `dir`, as a `data:` URL, read and
/// encoded on the blocking pool (a whole file read and base64-encoded would otherwise hold an async
/// worker thread, and every request queued on it, for as long as that takes). Only a regular file
/// inside `dir` of at most `max` bytes is read: see [`crate::output_file`].
pub async fn read_data_url(
    dir: PathBuf,
    path: PathBuf,
    mime_type: Option<String>,
    max: u64,
) -> Result<Value, OutputFileError> {
    let shown = path.clone();
    tokio::task::spawn_blocking(move || {
        read_output_blocking(&dir, &path, max).map(|bytes| data_url(&bytes, mime_type.as_deref()))
    })
    .await
    .unwrap_or_else(|e| {
        Err(OutputFileError::Io {
            path: shown,
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// Reads a file output into a `data:` URL: a regular file (a link, a FIFO or a device is refused) of
/// at most [`DEFAULT_MAX_OUTPUT_FILE`] bytes. An unreadable file becomes `null` in its place. It
/// blocks: the driver reads file outputs with [`read_data_url`] instead.
pub fn file_to_data_url(path: &std::path::Path, mime_type: Option<&str>) -> Value {
    match read_regular_blocking(path, DEFAULT_MAX_OUTPUT_FILE) {
        Ok(bytes) => data_url(&bytes, mime_type),
        Err(e) => {
            tracing::error!(error = %e, "cannot read file output");
            Value::Null
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metric_modes_follow_cog() {
        let mut m = Map::new();
        apply_metric(&mut m, "tokens", json!(2), MetricMode::Increment);
        apply_metric(&mut m, "tokens", json!(3), MetricMode::Increment);
        apply_metric(&mut m, "steps", json!("a"), MetricMode::Append);
        apply_metric(&mut m, "steps", json!("b"), MetricMode::Append);
        apply_metric(&mut m, "timing.pre", json!(0.5), MetricMode::Replace);
        apply_metric(&mut m, "gone", json!(1), MetricMode::Replace);
        apply_metric(&mut m, "gone", Value::Null, MetricMode::Replace);
        assert_eq!(
            Value::Object(m),
            json!({"tokens": 5, "steps": ["a", "b"], "timing": {"pre": 0.5}})
        );
    }

    #[test]
    fn metric_names_past_coglets_bounds_are_dropped() {
        let mut m = Map::new();
        apply_metric(&mut m, "a.b.c.d", json!(1), MetricMode::Replace);
        apply_metric(&mut m, "a.b.c.d.e", json!(1), MetricMode::Replace);
        apply_metric(&mut m, &"x".repeat(129), json!(1), MetricMode::Replace);
        // A name of 100,000 segments would nest 100,000 objects, whose drop overflows the stack.
        let deep = vec!["a"; 100_000].join(".");
        apply_metric(&mut m, &deep, json!(1), MetricMode::Append);
        assert_eq!(Value::Object(m), json!({"a": {"b": {"c": {"d": 1}}}}));
        assert_eq!(metric_name_error(&"x".repeat(128)), None);
        assert!(metric_name_error(&deep).is_some_and(|e| e.contains("128 characters")));
        assert!(metric_name_error("a.b.c.d.e").is_some_and(|e| e.contains("got 5")));
    }

    #[tokio::test]
    async fn a_file_output_is_read_off_the_async_threads_into_the_same_data_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.bin");
        std::fs::write(&path, [0u8, 1, 2, 255]).expect("write");
        let max = DEFAULT_MAX_OUTPUT_FILE;
        let root = dir.path().to_path_buf();
        assert_eq!(
            read_data_url(root.clone(), path.clone(), None, max)
                .await
                .expect("read"),
            file_to_data_url(&path, None)
        );
        let missing = read_data_url(root.clone(), root.join("missing"), None, max)
            .await
            .unwrap_err();
        assert!(missing.to_string().contains("missing"), "{missing}");
        let outside = read_data_url(root.join("sub"), path, None, max)
            .await
            .unwrap_err();
        assert!(
            matches!(outside, OutputFileError::Outside { .. }),
            "{outside}"
        );
    }

    #[test]
    fn file_output_becomes_a_data_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "hi").expect("write");
        assert_eq!(
            file_to_data_url(&path, Some("text/plain")),
            json!("data:text/plain;base64,aGk=")
        );
    }
}
