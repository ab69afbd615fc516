//! Cog's encoding rules for what a prediction produces: metric merging and file outputs.

use base64::Engine;
use cogvisor_protocol::MetricMode;
use serde_json::{Map, Value};

/// Applies a metric with Cog's modes; dotted names become nested objects, `null` deletes.
pub fn apply_metric(metrics: &mut Map<String, Value>, name: &str, value: Value, mode: MetricMode) {
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

/// [`file_to_data_url`] on the blocking pool: a whole file read and base64-encoded would otherwise hold
/// an async worker thread (and every request queued on it) for as long as that takes.
pub async fn read_data_url(path: std::path::PathBuf, mime_type: Option<String>) -> Value {
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || file_to_data_url(&path, mime_type.as_deref())).await {
        Ok(value) => value,
        Err(e) => {
            tracing::error!(path = %shown, error = %e, "cannot read file output");
            Value::Null
        }
    }
}

/// Reads a file output into a `data:` URL. An unreadable file becomes an error string in its place.
/// It blocks: on an async thread use [`read_data_url`].
pub fn file_to_data_url(path: &std::path::Path, mime_type: Option<&str>) -> Value {
    match std::fs::read(path) {
        Ok(bytes) => {
            let mime = mime_type.unwrap_or("application/octet-stream");
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            Value::String(format!("data:{mime};base64,{b64}"))
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read file output");
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

    #[tokio::test]
    async fn a_file_output_is_read_off_the_async_threads_into_the_same_data_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.bin");
        std::fs::write(&path, [0u8, 1, 2, 255]).expect("write");
        assert_eq!(
            read_data_url(path.clone(), None).await,
            file_to_data_url(&path, None)
        );
        assert_eq!(
            read_data_url(dir.path().join("missing"), None).await,
            Value::Null
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
