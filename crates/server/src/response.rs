//! Turning a prediction's events into Cog's response body.

use base64::Engine;
use cogvisor_protocol::MetricMode;
use cogvisor_supervisor::PredictionEvent;
use serde_json::{Map, Value};

/// How a prediction ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded,
    Failed(String),
    Canceled,
}

/// Everything collected from one prediction's events.
#[derive(Debug, Default)]
pub struct Collected {
    pub logs: String,
    pub outputs: Vec<Value>,
    pub metrics: Map<String, Value>,
    pub is_stream: bool,
    pub outcome: Option<Outcome>,
}

impl Collected {
    /// Folds one event in. Returns true when it was the terminal event.
    pub fn push(&mut self, event: PredictionEvent) -> bool {
        match event {
            PredictionEvent::Log { data, .. } => self.logs.push_str(&data),
            PredictionEvent::Output(v) => self.outputs.push(v),
            PredictionEvent::File { path, mime_type } => self
                .outputs
                .push(file_to_data_url(&path, mime_type.as_deref())),
            PredictionEvent::Metric { name, value, mode } => {
                apply_metric(&mut self.metrics, &name, value, mode)
            }
            PredictionEvent::Succeeded { is_stream, .. } => {
                self.is_stream = is_stream;
                self.outcome = Some(Outcome::Succeeded);
                return true;
            }
            PredictionEvent::Failed { error } => {
                self.outcome = Some(Outcome::Failed(error));
                return true;
            }
            PredictionEvent::Canceled => {
                self.outcome = Some(Outcome::Canceled);
                return true;
            }
        }
        false
    }

    /// The output as Cog shows it: an array when the worker streamed (list, generator) or the schema
    /// says the output is an array; else nothing, the one value, or an array of several.
    pub fn output(&self, output_is_array: bool) -> Value {
        if self.is_stream || output_is_array || self.outputs.len() > 1 {
            Value::Array(self.outputs.clone())
        } else {
            self.outputs.first().cloned().unwrap_or(Value::Null)
        }
    }

    /// Cog's sync response body: `id, status, output|error, logs, metrics`.
    /// `predict_time` is measured by the supervisor from admission to the terminal event, as Cog does.
    pub fn to_body(&self, id: &str, predict_time: f64, output_is_array: bool) -> Value {
        let mut body = Map::new();
        body.insert("id".into(), id.into());
        let mut metrics = self.metrics.clone();
        metrics.insert("predict_time".into(), predict_time.into());
        match &self.outcome {
            Some(Outcome::Succeeded) => {
                body.insert("status".into(), "succeeded".into());
                body.insert("output".into(), self.output(output_is_array));
            }
            Some(Outcome::Failed(error)) => {
                body.insert("status".into(), "failed".into());
                body.insert("error".into(), error.clone().into());
            }
            Some(Outcome::Canceled) => {
                body.insert("status".into(), "canceled".into());
            }
            None => {
                body.insert("status".into(), "failed".into());
                body.insert("error".into(), "prediction ended without a result".into());
            }
        }
        body.insert("logs".into(), self.logs.clone().into());
        body.insert("metrics".into(), Value::Object(metrics));
        Value::Object(body)
    }
}

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

/// Reads a file output into a `data:` URL. An unreadable file becomes an error string in its place.
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

    #[test]
    fn succeeded_body_has_cogs_shape() {
        let mut c = Collected::default();
        c.push(PredictionEvent::Log {
            source: cogvisor_protocol::LogSource::Stdout,
            data: "hi\n".into(),
        });
        c.push(PredictionEvent::Output(json!("hello world")));
        assert!(c.push(PredictionEvent::Succeeded {
            predict_time: 0.5,
            is_stream: false
        }));
        assert_eq!(
            c.to_body("p1", 0.5, false),
            json!({"id": "p1", "status": "succeeded", "output": "hello world", "logs": "hi\n", "metrics": {"predict_time": 0.5}})
        );
    }

    #[test]
    fn stream_outputs_become_an_array() {
        let mut c = Collected::default();
        c.push(PredictionEvent::Output(json!(1)));
        c.push(PredictionEvent::Output(json!(2)));
        c.push(PredictionEvent::Succeeded {
            predict_time: 0.1,
            is_stream: true,
        });
        assert_eq!(c.output(false), json!([1, 2]));
    }

    #[test]
    fn outputs_follow_cogs_array_rules() {
        let mut c = Collected::default();
        assert_eq!(c.output(false), Value::Null);
        assert_eq!(c.output(true), json!([]));
        c.push(PredictionEvent::Output(json!("only")));
        assert_eq!(c.output(false), json!("only"));
        assert_eq!(c.output(true), json!(["only"]));
        c.push(PredictionEvent::Output(json!("two")));
        assert_eq!(c.output(false), json!(["only", "two"]));
    }

    #[test]
    fn failed_body_carries_the_error() {
        let mut c = Collected::default();
        c.push(PredictionEvent::Failed {
            error: "ValueError: bad".into(),
        });
        let body = c.to_body("p2", 0.25, false);
        assert_eq!(body["status"], "failed");
        assert_eq!(body["error"], "ValueError: bad");
        assert_eq!(body["metrics"]["predict_time"], 0.25);
        assert!(body.get("output").is_none());
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
