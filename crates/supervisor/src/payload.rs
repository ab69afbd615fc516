//! Payloads on the slot channels, without file I/O on the async threads: a payload that fits inline
//! is decided and copied on the calling thread (pure computation, the common case); a spill file is
//! written or read on the blocking pool.

use std::path::PathBuf;
use std::sync::Arc;

use cogvisor_protocol::{spill, ProtocolError};

/// Why a payload could not be prepared or taken.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error(transparent)]
    Spill(#[from] ProtocolError),
    #[error("the spill file task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A prediction's input: inline when it fits, else streamed into a spill file in `dir`.
pub async fn prepare_input(
    dir: PathBuf,
    input: Arc<serde_json::Value>,
) -> Result<spill::Payload, PayloadError> {
    if spill::is_inline(&input)? {
        return Ok(spill::Payload::Inline((*input).clone()));
    }
    let path = tokio::task::spawn_blocking(move || spill::write_new(&dir, &input)).await??;
    Ok(spill::Payload::File(path))
}

/// An oversized output: reads and deletes the spill file `path`, which must lie directly in `dir`
/// ([`spill::take`]).
pub async fn take_output(dir: PathBuf, path: PathBuf) -> Result<serde_json::Value, PayloadError> {
    Ok(tokio::task::spawn_blocking(move || spill::take(&dir, &path)).await??)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_small_input_is_inline_and_a_large_one_round_trips_through_a_spill_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = Arc::new(serde_json::json!({"text": "hi"}));
        assert_eq!(
            prepare_input(dir.path().to_path_buf(), small.clone())
                .await
                .expect("prepare"),
            spill::Payload::Inline((*small).clone())
        );
        let big = serde_json::json!({"text": "a".repeat(cogvisor_protocol::MAX_INLINE_PAYLOAD)});
        let spill::Payload::File(path) =
            prepare_input(dir.path().to_path_buf(), Arc::new(big.clone()))
                .await
                .expect("prepare")
        else {
            panic!("a payload over the limit was sent inline");
        };
        let value = take_output(dir.path().to_path_buf(), path.clone())
            .await
            .expect("take");
        assert_eq!(value, big);
        assert!(!path.exists(), "the spill file was kept");
    }

    #[tokio::test]
    async fn a_spill_path_outside_the_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let other = tempfile::tempdir().expect("tempdir");
        let outside = other.path().join("spill-x.json");
        std::fs::write(&outside, "1").expect("write");
        let err = take_output(dir.path().to_path_buf(), outside.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, PayloadError::Spill(_)), "{err}");
        assert!(outside.exists());
    }
}
