//! The process's own log: a `tracing` subscriber writing JSON lines (or text with
//! `LOG_FORMAT=console`) to stderr at `COG_LOG_LEVEL`, with the model's output let through at any level.

/// Installs the subscriber; call once, first thing.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let level = match std::env::var("COG_LOG_LEVEL")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "debug" => "debug",
        "warn" | "warning" => "warn",
        "error" => "error",
        _ => "info",
    };
    // What the model prints is model output, not a runtime log: its targets are let through at any
    // level (coglet does the same for coglet::setup and coglet::user). RUST_LOG replaces all of it.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_log_filter(level)));
    // Colours only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("console")) {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

/// The log filter without `RUST_LOG`: the runtime at `level`, the model's output always.
fn default_log_filter(level: &str) -> String {
    use cogvisor_supervisor::model_output::{SETUP_TARGET, USER_TARGET};
    format!("{level},{SETUP_TARGET}=info,{USER_TARGET}=info")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use cogvisor_protocol::{LogLevel, LogSource};
    use cogvisor_supervisor::model_output;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged_at(level: &str) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                super::default_log_filter(level),
            ))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            model_output::log_setup_output(LogSource::Stdout, "loading weights\n");
            model_output::log_user_output(LogSource::Stderr, "step 1\nstep 2\n", Some("p1"));
            model_output::log_user_output(LogSource::Stdout, "orphan line", None);
            model_output::log_worker_message(LogLevel::Info, "Loading predictor");
            tracing::info!(target: "cogvisor::predictions", "prediction finished");
            tracing::warn!(target: "cogvisor", "a runtime warning");
        });
        let bytes = buffer.0.lock().expect("buffer").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn model_output_passes_every_level_and_runtime_logs_obey_it() {
        for level in ["error", "warn", "info"] {
            let text = logged_at(level);
            for line in ["loading weights", "step 1", "step 2", "orphan line"] {
                assert!(text.contains(line), "{level}: {line} missing from {text}");
            }
            assert!(text.contains("prediction_id=\"p1\""), "{text}");
        }
        let warn = logged_at("warn");
        assert!(!warn.contains("prediction finished"), "{warn}");
        assert!(!warn.contains("Loading predictor"), "{warn}");
        assert!(warn.contains("a runtime warning"), "{warn}");
        let error = logged_at("error");
        assert!(!error.contains("a runtime warning"), "{error}");
        let info = logged_at("info");
        assert!(info.contains("prediction finished") && info.contains("Loading predictor"));
    }
}
