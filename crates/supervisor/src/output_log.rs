//! What the model prints during predictions, written to the server's log on a thread of its own.
//!
//! Formatting a line into the log (a JSON event, its text escaped) and writing it to stderr is CPU
//! and a blocking write: for a model printing 1 MiB lines, milliseconds a line, and as long as the
//! reader of stderr likes when a log collector stalls. Done on the async runtime's threads, that
//! time is taken from every request, `/health-check` included. Here the slot readers hand each
//! chunk of output to one writer thread and go on; what the thread has not written yet is held
//! within [`BUDGET_BYTES`]. A slot reader whose chunk does not fit waits (without holding a runtime
//! thread) until the writer catches up, so the model is slowed to what the log can take and nothing
//! is dropped; see docs/limits.md.

use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cogvisor_protocol::LogSource;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::model_output::log_user_output;

/// The model output held for the writer thread at most, in bytes.
pub const BUDGET_BYTES: usize = 16 << 20;

struct Chunk {
    source: LogSource,
    data: String,
    prediction_id: String,
    /// Given back when the chunk is written.
    _held: OwnedSemaphorePermit,
}

struct OutputLog {
    budget: Arc<Semaphore>,
    chunks: mpsc::Sender<Chunk>,
}

/// The process's one writer, started on first use. `None` when the thread cannot be started: the
/// caller writes the chunk itself.
fn writer() -> Option<&'static OutputLog> {
    static WRITER: OnceLock<Option<OutputLog>> = OnceLock::new();
    WRITER
        .get_or_init(|| {
            let (chunks, rx) = mpsc::channel::<Chunk>();
            let started = std::thread::Builder::new()
                .name("cogvisor-output-log".into())
                .spawn(move || {
                    for chunk in rx {
                        log_user_output(chunk.source, &chunk.data, Some(&chunk.prediction_id));
                    }
                });
            match started {
                Ok(_) => Some(OutputLog {
                    budget: Arc::new(Semaphore::new(BUDGET_BYTES)),
                    chunks,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the model output log thread; writing model output inline");
                    None
                }
            }
        })
        .as_ref()
}

/// The permits a chunk of `len` bytes holds: its size, within the budget (a chunk larger than the
/// whole budget holds all of it, so it waits for an empty queue instead of forever).
fn permits_for(len: usize) -> u32 {
    let held = len.clamp(1, BUDGET_BYTES);
    u32::try_from(held).unwrap_or(u32::MAX)
}

/// Queues one chunk of a prediction's output for the server's log; waits while the writer holds
/// [`BUDGET_BYTES`] not yet written.
pub async fn write(source: LogSource, data: &str, prediction_id: &str) {
    let Some(log) = writer() else {
        log_user_output(source, data, Some(prediction_id));
        return;
    };
    let Ok(held) = log
        .budget
        .clone()
        .acquire_many_owned(permits_for(data.len()))
        .await
    else {
        // The semaphore is never closed; write inline rather than lose the line.
        log_user_output(source, data, Some(prediction_id));
        return;
    };
    let chunk = Chunk {
        source,
        data: data.to_owned(),
        prediction_id: prediction_id.to_owned(),
        _held: held,
    };
    if let Err(mpsc::SendError(chunk)) = log.chunks.send(chunk) {
        // The writer thread is gone (it panicked): write this one here.
        log_user_output(chunk.source, &chunk.data, Some(&chunk.prediction_id));
    }
}

/// Waits until everything queued is written, or `deadline` passes: called before the process
/// exits, so the last lines a model printed reach the log.
pub async fn flush(deadline: Duration) -> bool {
    let Some(log) = writer() else { return true };
    let all = permits_for(BUDGET_BYTES);
    matches!(
        tokio::time::timeout(deadline, log.budget.acquire_many(all)).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_holds_its_size_within_the_budget() {
        assert_eq!(permits_for(0), 1);
        assert_eq!(permits_for(10), 10);
        assert_eq!(permits_for(BUDGET_BYTES * 4), permits_for(BUDGET_BYTES));
    }

    #[tokio::test]
    async fn queued_output_is_written_before_flush_returns() {
        for i in 0..100 {
            write(LogSource::Stdout, &"x".repeat(1 << 20), &format!("p{i}")).await;
        }
        assert!(flush(Duration::from_secs(30)).await);
        let log = writer().expect("writer thread");
        assert_eq!(log.budget.available_permits(), BUDGET_BYTES);
    }
}
