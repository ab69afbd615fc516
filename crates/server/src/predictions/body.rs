//! A prediction's JSON bodies: the sync response, the full snapshot (async responses, polling,
//! webhooks) and the state as created. Each is written from the shared values, fields in key order,
//! so the bytes are those `serde_json` gives for the equivalent `Value`, without a copy of the outputs.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::state::{Prediction, State, Status};

impl Prediction {
    /// The `output` field of a finished prediction, by Cog's array rules.
    fn output(&self, state: &State) -> Field {
        if state.is_stream || self.output_is_array || state.outputs.len() > 1 {
            Field::Outputs(state.outputs.clone())
        } else {
            state
                .outputs
                .first()
                .cloned()
                .map_or(Field::Null, Field::Json)
        }
    }

    /// The full state: what async responses, polling and webhooks show.
    fn snapshot_body(&self) -> Body {
        let state = self.lock();
        let mut body = Body::new();
        body.insert("id", Field::Text(self.id.clone()));
        body.insert("status", Field::Static(state.status.as_str()));
        body.insert("input", Field::Json(self.input.clone()));
        if !state.status.is_terminal() && !state.outputs.is_empty() {
            // While running: the items so far, always as an array (as Cog's webhooks).
            body.insert("output", Field::Outputs(state.outputs.clone()));
        } else if state.status == Status::Succeeded || !state.outputs.is_empty() {
            body.insert("output", self.output(&state));
        }
        if let Some(error) = &state.error {
            body.insert("error", Field::Text(error.clone()));
        }
        body.insert("logs", Field::Text(state.logs.render()));
        body.insert("metrics", Field::Metrics(metrics_with_time(&state)));
        body.insert("created_at", Field::Text(self.created_at.clone()));
        if let Some(t) = &state.started_at {
            body.insert("started_at", Field::Text(t.clone()));
        }
        if let Some(t) = &state.completed_at {
            body.insert("completed_at", Field::Text(t.clone()));
        }
        body
    }

    /// The state of a prediction as it was created, before it started: what the 202 of the request
    /// that created it shows. Cog answers `starting` there, though the prediction runs already; later
    /// snapshots, the `start` webhook and the SSE `start` event show `processing`.
    fn created_body(&self) -> Body {
        let mut body = Body::new();
        body.insert("id", Field::Text(self.id.clone()));
        body.insert("status", Field::Static(Status::Starting.as_str()));
        body.insert("input", Field::Json(self.input.clone()));
        body.insert("logs", Field::Static(""));
        body.insert("metrics", Field::Metrics(Map::new()));
        body.insert("created_at", Field::Text(self.created_at.clone()));
        body
    }

    /// Cog's sync response body: `id, status, output|error, logs, metrics`.
    fn sync_body_fields(&self) -> Body {
        let state = self.lock();
        let mut body = Body::new();
        body.insert("id", Field::Text(self.id.clone()));
        body.insert("status", Field::Static(state.status.as_str()));
        match state.status {
            Status::Succeeded => {
                body.insert("output", self.output(&state));
            }
            _ => {
                if let Some(error) = &state.error {
                    body.insert("error", Field::Text(error.clone()));
                }
            }
        }
        body.insert("logs", Field::Text(state.logs.render()));
        body.insert("metrics", Field::Metrics(metrics_with_time(&state)));
        body
    }

    /// The full state as JSON: what async responses, polling and webhooks show. Serialized from
    /// the shared values (outside the state lock), never from a copy of them.
    pub fn snapshot_json(&self) -> Vec<u8> {
        self.snapshot_body().to_json()
    }

    /// The state as created (`starting`), as JSON: the 202 answer of an async create.
    pub fn created_json(&self) -> Vec<u8> {
        self.created_body().to_json()
    }

    /// Cog's sync response body as JSON.
    pub fn sync_body_json(&self) -> Vec<u8> {
        self.sync_body_fields().to_json()
    }

    #[cfg(test)]
    pub fn snapshot(&self) -> Value {
        serde_json::from_slice(&self.snapshot_json()).expect("snapshot JSON")
    }

    #[cfg(test)]
    pub fn sync_body(&self) -> Value {
        serde_json::from_slice(&self.sync_body_json()).expect("sync body JSON")
    }
}

/// One field of a response body, holding what it shows by reference count where that is large.
#[derive(Debug)]
enum Field {
    Null,
    Static(&'static str),
    Text(String),
    Json(Arc<Value>),
    Outputs(Vec<Arc<Value>>),
    Metrics(Map<String, Value>),
}

impl serde::Serialize for Field {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Null => serializer.serialize_unit(),
            Field::Static(s) => serializer.serialize_str(s),
            Field::Text(s) => serializer.serialize_str(s),
            Field::Json(v) => v.serialize(serializer),
            Field::Outputs(items) => serializer.collect_seq(items.iter().map(|v| &**v)),
            Field::Metrics(m) => m.serialize(serializer),
        }
    }
}

/// A response body: its fields sorted by name, as a `serde_json` object serializes them, so the
/// bytes are the same as those of the equivalent `Value`.
#[derive(Debug, Default)]
struct Body(std::collections::BTreeMap<&'static str, Field>);

impl Body {
    fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, name: &'static str, field: Field) {
        self.0.insert(name, field);
    }

    /// Compact JSON, written into a buffer sized for it up front (no regrowth copies).
    fn to_json(&self) -> Vec<u8> {
        let estimate = self
            .0
            .iter()
            .map(|(name, field)| {
                name.len()
                    + 4
                    + match field {
                        Field::Null | Field::Static(_) => 16,
                        Field::Text(s) => s.len() + 2,
                        Field::Json(v) => approx_bytes(v),
                        Field::Outputs(items) => items.iter().map(|v| approx_bytes(v)).sum(),
                        Field::Metrics(m) => m.len() * 32,
                    }
            })
            .sum::<usize>();
        let mut out = Vec::with_capacity(estimate + 64);
        if let Err(e) = self.write(&mut out) {
            // Unreachable: values that came from JSON, and a Vec never fails to write.
            tracing::error!(error = %e, "cannot encode a prediction body");
            return b"{}".to_vec();
        }
        out
    }

    /// The object, as `serde_json` writes it (fields in key order), with large values written by
    /// [`cogvisor_protocol::json`].
    fn write(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        use cogvisor_protocol::json::{write_compact, write_str};
        out.push(b'{');
        for (i, (name, field)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, name)?;
            out.push(b':');
            match field {
                Field::Json(v) => write_compact(out, v)?,
                Field::Outputs(items) => {
                    out.push(b'[');
                    for (j, item) in items.iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        write_compact(out, item)?;
                    }
                    out.push(b']');
                }
                Field::Text(s) => write_str(out, s)?,
                other => serde_json::to_writer(&mut *out, other)?,
            }
        }
        out.push(b'}');
        Ok(())
    }
}

fn metrics_with_time(state: &State) -> Map<String, Value> {
    let mut metrics = state.metrics.clone();
    if let Some(t) = state.predict_time {
        metrics.insert("predict_time".into(), t.into());
    }
    metrics
}
/// About how many bytes `v` takes: its strings and keys, 8 per other value (no serialization).
pub(super) fn approx_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 8,
        Value::Array(items) => 8 + items.iter().map(approx_bytes).sum::<usize>(),
        Value::Object(map) => {
            8 + map
                .iter()
                .map(|(k, v)| k.len() + approx_bytes(v))
                .sum::<usize>()
        }
        _ => 8,
    }
}
