//! What the model prints, and what `setup.logs` holds.
//!
//! Model output is not a runtime log: it is written to the server's log under its own targets, one
//! event per line, and the server's log filter lets these targets through at any `COG_LOG_LEVEL` (as
//! coglet does for its `coglet::setup` and `coglet::user`):
//!
//! * [`SETUP_TARGET`] (`cogvisor::setup`): what the model printed while it was imported and set up;
//! * [`USER_TARGET`] (`cogvisor::user`): what it printed afterwards, with the `prediction_id` when the
//!   line belongs to a prediction.
//!
//! `setup.logs` is built as coglet builds it: one `[<target>] <message>` line per event from the start
//! of a worker's setup to its `Server ready`, in arrival order: the runtime's own milestones (in
//! coglet's words), the worker's diagnostics and the model's output. Nothing is added after that.

use cogvisor_protocol::{LogLevel, LogSource};

/// The log target of what the model prints during setup.
pub const SETUP_TARGET: &str = "cogvisor::setup";
/// The log target of what the model prints after setup.
pub const USER_TARGET: &str = "cogvisor::user";
/// The target of the runtime's start-up milestones in `setup.logs`.
pub const RUNTIME_TARGET: &str = "cogvisor";
/// The target of the worker's own diagnostics (`worker_log`).
pub const WORKER_TARGET: &str = "cogvisor::worker";

/// Milestones of a worker's start, in coglet's words and in coglet's order.
pub const MILESTONE_SLOT_TRANSPORT: &str = "Creating slot transport";
pub const MILESTONE_SPAWNING: &str = "Spawning worker subprocess";
pub const MILESTONE_READY: &str = "Server ready";

/// The first line of every setup: which runtime this is.
pub fn version_milestone() -> String {
    format!("cogvisor {}", env!("CARGO_PKG_VERSION"))
}

fn source_name(source: LogSource) -> &'static str {
    match source {
        LogSource::Stdout => "stdout",
        LogSource::Stderr => "stderr",
    }
}

/// The lines of one chunk of output (a trailing newline ends the last line, it does not start one).
pub fn lines(data: &str) -> impl Iterator<Item = &str> {
    let data = data.strip_suffix('\n').unwrap_or(data);
    data.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
}

/// Writes setup output to the server's log, one event per line.
pub fn log_setup_output(source: LogSource, data: &str) {
    let source = source_name(source);
    for line in lines(data) {
        tracing::info!(target: "cogvisor::setup", source, "{line}");
    }
}

/// Writes output printed after setup to the server's log, one event per line.
pub fn log_user_output(source: LogSource, data: &str, prediction_id: Option<&str>) {
    let source = source_name(source);
    for line in lines(data) {
        match prediction_id {
            Some(id) => {
                tracing::info!(target: "cogvisor::user", prediction_id = id, source, "{line}")
            }
            None => tracing::info!(target: "cogvisor::user", source, "{line}"),
        }
    }
}

/// Writes one of the worker's own diagnostics to the server's log at its level.
pub fn log_worker_message(level: LogLevel, message: &str) {
    match level {
        LogLevel::Debug => tracing::debug!(target: "cogvisor::worker", "{message}"),
        LogLevel::Info => tracing::info!(target: "cogvisor::worker", "{message}"),
        LogLevel::Warning => tracing::warn!(target: "cogvisor::worker", "{message}"),
        LogLevel::Error => tracing::error!(target: "cogvisor::worker", "{message}"),
    }
}

/// The `setup.logs` text of setup output: each line as `[cogvisor::setup] <line>`.
pub fn setup_output_lines(data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 20);
    for line in lines(data) {
        push_line(&mut out, SETUP_TARGET, line);
    }
    out
}

/// The `setup.logs` line of one event: `[<target>] <message>`.
pub fn setup_line(target: &str, message: &str) -> String {
    let mut out = String::with_capacity(target.len() + message.len() + 4);
    push_line(&mut out, target, message);
    out
}

/// Whether a worker diagnostic goes into `setup.logs` (debug ones do not, at any log level).
pub fn worker_message_in_setup_logs(level: LogLevel) -> bool {
    !matches!(level, LogLevel::Debug)
}

fn push_line(out: &mut String, target: &str, message: &str) {
    out.push('[');
    out.push_str(target);
    out.push_str("] ");
    out.push_str(message.strip_suffix('\n').unwrap_or(message));
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_split_into_lines_and_a_trailing_newline_adds_none() {
        assert_eq!(lines("a\nb\n").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(lines("a\r\n\nb").collect::<Vec<_>>(), ["a", "", "b"]);
        assert_eq!(lines("partial").collect::<Vec<_>>(), ["partial"]);
    }

    #[test]
    fn setup_logs_lines_carry_their_target_as_coglets_do() {
        assert_eq!(
            setup_output_lines("loading\nweights 2/3\n"),
            "[cogvisor::setup] loading\n[cogvisor::setup] weights 2/3\n"
        );
        assert_eq!(
            setup_line(RUNTIME_TARGET, MILESTONE_READY),
            "[cogvisor] Server ready\n"
        );
        assert_eq!(
            setup_line(WORKER_TARGET, "Loading predictor\n"),
            "[cogvisor::worker] Loading predictor\n"
        );
        assert!(version_milestone().starts_with("cogvisor "));
    }

    #[test]
    fn debug_diagnostics_stay_out_of_setup_logs() {
        assert!(!worker_message_in_setup_logs(LogLevel::Debug));
        for level in [LogLevel::Info, LogLevel::Warning, LogLevel::Error] {
            assert!(worker_message_in_setup_logs(level));
        }
    }
}
