//! Errors of the wire protocol: one enum for every way a frame or a spill file can be bad.

use std::path::PathBuf;

/// A failure on one channel. None of these is a reason to stop the process: the owner of the channel
/// decides what breaks (a slot is poisoned, a worker is recycled).
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge { len: usize, max: usize },

    #[error("malformed message ({len}-byte frame): {source}")]
    Malformed {
        len: usize,
        #[source]
        source: serde_json::Error,
    },

    #[error("could not encode message: {0}")]
    Encode(#[source] serde_json::Error),

    #[error("channel I/O failed: {0}")]
    Io(#[from] std::io::Error),

    #[error("spill file {path}: {source}")]
    SpillIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("spill file {path} is not valid JSON: {source}")]
    SpillMalformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("spill file {path} is outside the spill directory {dir}")]
    SpillOutsideDir { path: PathBuf, dir: PathBuf },

    #[error("spill file {path} is not a regular file: it is {what}")]
    SpillNotRegular { path: PathBuf, what: &'static str },

    #[error("predict message {id:?} carries neither `input` nor `input_file`")]
    MissingInput { id: String },
}
