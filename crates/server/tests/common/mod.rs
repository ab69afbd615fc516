//! What the integration tests share.
#![allow(dead_code)] // each test binary uses its own part

use cogvisor_server::predictions::Prediction;
use cogvisor_server::schema::Kind;
use serde_json::{json, Value};

/// A new prediction `p1` with input `{"text": "x"}` and room for 1024 log bytes and SSE events.
pub fn prediction(output_is_array: bool) -> Prediction {
    Prediction::with_history(
        "p1".into(),
        Kind::Prediction,
        json!({"text": "x"}),
        output_is_array,
        1024,
        1024,
    )
}

/// The full state, parsed.
pub fn snapshot(p: &Prediction) -> Value {
    serde_json::from_slice(&p.snapshot_json()).expect("snapshot JSON")
}

/// Cog's sync response body, parsed.
pub fn sync_body(p: &Prediction) -> Value {
    serde_json::from_slice(&p.sync_body_json()).expect("sync body JSON")
}

/// A health snapshot with `total` slots, `busy` of them running, `poisoned` poisoned.
pub fn health(
    status: cogvisor_supervisor::HealthStatus,
    total: u32,
    busy: u32,
    poisoned: u32,
) -> cogvisor_supervisor::HealthSnapshot {
    use cogvisor_supervisor::health::{
        PoisonedSlot, SetupRecord, SetupStatus, SlotsRecord, WorkerRecord,
    };
    cogvisor_supervisor::HealthSnapshot {
        status,
        setup: SetupRecord {
            started_at: String::new(),
            completed_at: None,
            status: SetupStatus::Succeeded,
            logs: "".into(),
        },
        worker: WorkerRecord {
            pid: None,
            generation: 1,
            started_at: None,
            restarts: 0,
            exit: None,
            last_recycle: None,
        },
        slots: SlotsRecord {
            total,
            busy,
            poisoned: (0..poisoned)
                .map(|slot| PoisonedSlot {
                    slot,
                    reason: "test".into(),
                })
                .collect(),
        },
        python_version: None,
        sdk_version: None,
        reason: None,
        user_healthcheck_error: None,
        pool: None,
        successor: None,
    }
}
