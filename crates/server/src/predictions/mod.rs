//! Predictions as the server tracks them: created by a request, run in a supervisor slot, and kept for
//! a retention window after they end, independent of the HTTP connection that created them. So an
//! async prediction can be polled (`GET /predictions/{id}`), a repeated `PUT` returns the result
//! instead of running the model again, and a sync client that disconnects cancels its prediction.
//!
//! * `state.rs`: one prediction's state, folded from the worker's events ([`Prediction`], [`Status`]).
//! * `history.rs`: its server-sent events: the replay history and the live fan-out.
//! * `body.rs`: its JSON bodies (sync response, snapshot, the 202 of an async create), serialized from
//!   the shared values.
//! * `registry.rs`: running and recently finished predictions by id, and the retention limits.
//! * `driver.rs`: the loop that applies one prediction's events from its slot until it ends.
//! * `service.rs`: creates, finds, cancels and drains predictions ([`PredictionService`]).

mod body;
mod driver;
mod history;
mod registry;
mod service;
mod state;

pub use driver::Driver;
pub use history::{
    EventData, Lagged, Live, StreamEvent, StreamLimits, Subscription, DEFAULT_HISTORY_MAX_BYTES,
    DEFAULT_SUBSCRIBER_MAX_BYTES, LIVE_CAPACITY,
};
pub use registry::{Registry, RetentionLimits};
pub use service::{CreateError, PredictionService, ServiceSettings, DEFAULT_MAX_RETAINED_BYTES};
pub use state::{Prediction, Status};

/// What the unit tests of these modules share.
#[cfg(test)]
mod testing {
    use serde_json::json;

    use super::Prediction;
    use crate::schema::Kind;

    /// A new prediction `p1` with input `{"text": "x"}` and room for 1024 log bytes and SSE events.
    pub(super) fn prediction(output_is_array: bool) -> Prediction {
        Prediction::with_history(
            "p1".into(),
            Kind::Prediction,
            json!({"text": "x"}),
            output_is_array,
            1024,
            1024,
        )
    }
}
