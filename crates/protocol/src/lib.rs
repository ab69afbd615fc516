//! The wire protocol between the cogvisor supervisor (Rust) and its Python worker.
//!
//! Two kinds of channel carry the same framing:
//!
//! * the **control channel**: the worker's stdin (supervisor → worker) and stdout (worker → supervisor),
//!   carrying [`ControlRequest`] and [`ControlResponse`];
//! * one **slot channel** per concurrency slot: a Unix socket in the supervisor's private runtime
//!   directory, carrying [`SlotRequest`] and [`SlotResponse`] for the prediction running in that slot.
//!
//! Modules:
//!
//! * [`control`]: control-channel messages.
//! * [`slot`]: slot-channel messages.
//! * [`codec`]: the frame codec (4-byte big-endian length + one JSON object).
//! * [`limits`]: frame, spill and log limits, and log truncation.
//! * [`spill`]: payloads too large for a frame travel as files.
//! * [`error`]: every way a channel can fail, as one enum.
//! * [`json`]: compact JSON writing identical to `serde_json`'s, faster on long strings.
//!
//! The Python side (`python/cogvisor_worker/protocol.py`) builds the same JSON; both suites assert it
//! against one fixture file (`protocol-fixtures/messages.json`) so the two ends cannot drift.
//! The human description lives in `docs/protocol.md`.

pub mod codec;
pub mod control;
pub mod error;
pub mod json;
pub mod limits;
pub mod slot;
pub mod spill;

pub use codec::FrameCodec;
pub use control::{
    ControlRequest, ControlResponse, HealthcheckStatus, LogLevel, Mode, SchemaRefs, SetupMode,
    SlotSocket,
};
pub use error::ProtocolError;
pub use limits::{
    truncate_log, LOG_TRUNCATION_NOTICE, MAX_FRAME_LEN, MAX_INLINE_PAYLOAD, MAX_LOG_LEN,
};
pub use slot::{FileOutputKind, LogSource, MetricMode, SlotRequest, SlotResponse};

/// The protocol version sent in `init`. A worker that speaks another version fails setup.
pub const PROTOCOL_VERSION: u32 = 1;

/// Identifies one concurrency slot: its index, `0..concurrency`.
///
/// Slots are numbered by the supervisor and are stable for the life of a worker generation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct SlotId(pub u32);

impl std::fmt::Display for SlotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
