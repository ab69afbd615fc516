//! `cogvisor`: serves Cog's HTTP API for a model and supervises the Python worker that runs it.
//!
//! Modules: [`config`] resolves what to serve, [`embedded`] ships the Python worker inside the binary,
//! [`http`] is the API, [`schema`] validates inputs against the model's OpenAPI schema, [`response`]
//! builds Cog's response bodies, [`error`] names every start failure.

mod config;
#[cfg(test)]
mod deploy_manifests;
mod embedded;
mod error;
mod health_routes;
mod http;
mod logs;
mod metrics;
mod predictions;
mod ready_file;
mod response;
mod schema;
mod settings;
mod shutdown;
mod sse;
mod upload;
mod version;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use cogvisor_protocol::Mode;
use cogvisor_supervisor::runtime_dir::RuntimeDir;
use cogvisor_supervisor::Supervisor;
use tokio::net::TcpListener;

use crate::error::ServeError;

#[derive(Debug, Parser)]
#[command(
    name = "cogvisor",
    version,
    about = "Serve a Cog model with a supervised Python worker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the model in MODEL_DIR (default: the current directory).
    Serve(ServeArgs),
    /// Print the effective configuration for MODEL_DIR and where each value came from.
    Config(ConfigArgs),
}

#[derive(Debug, clap::Args)]
struct ConfigArgs {
    /// The model directory.
    #[arg(default_value = ".")]
    model_dir: PathBuf,
    /// The settings file [default: MODEL_DIR/cogvisor.yaml].
    #[arg(long)]
    config: Option<PathBuf>,
    /// The mode `serve` would run in (it decides which predictor's `@concurrent` counts).
    #[arg(long, value_enum, default_value = "predict")]
    mode: ModeArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Predict,
    Train,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The model directory (holds cog.yaml and the predictor).
    #[arg(default_value = ".")]
    model_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    host: String,
    /// Port to listen on [default: $PORT, else 5000].
    #[arg(long)]
    port: Option<u16>,
    /// Python interpreter for the worker.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Use the worker and SDK from this source tree instead of the embedded copy (development).
    #[arg(long)]
    python_path: Option<PathBuf>,
    /// Run `predict()`/`run()` or `train()`.
    #[arg(long, value_enum, default_value = "predict")]
    mode: ModeArg,
    /// Ignore SIGTERM: only `POST /shutdown` or SIGINT stop the server. Takes an optional boolean
    /// (`--await-explicit-shutdown false` leaves it off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    await_explicit_shutdown: bool,
    /// The settings file [default: MODEL_DIR/cogvisor.yaml].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Upload file outputs with `PUT` to this URL (plus a file name) instead of returning `data:`
    /// URLs.
    #[arg(long, value_parser = upload::parse_upload_url)]
    upload_url: Option<reqwest::Url>,
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Predict => Mode::Predict,
            ModeArg::Train => Mode::Train,
        }
    }
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .mut_subcommand("serve", |c| c.args(settings::cli::flag_args()))
        .mut_subcommand("config", |c| c.args(settings::cli::flag_args()))
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (m, cli)));
    let (matches, cli) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return settings::cli::clap_failure(&e),
    };
    let flags = matches
        .subcommand()
        .map(|(_, m)| settings::cli::flags_from(m))
        .unwrap_or_default();
    if let Command::Config(args) = &cli.command {
        let env = |name: &str| std::env::var(name).ok();
        return settings::cli::config_command(
            &args.model_dir,
            args.mode.into(),
            args.config.as_deref(),
            &flags,
            &env,
        );
    }
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return settings::cli::fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args, flags)),
        Command::Config(_) => return ExitCode::SUCCESS,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // One plain line, last on stderr, naming what is wrong.
        Err(e) => settings::cli::fail(&e),
    }
}

fn init_logging() {
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

async fn serve(args: ServeArgs, flags: settings::Flags) -> Result<(), ServeError> {
    let env = |name: &str| std::env::var(name).ok();
    let resolved = config::resolve(&args.model_dir, args.mode.into(), args.port, &env)?;
    for warning in &resolved.warnings {
        tracing::warn!("{warning}");
    }
    // cogvisor's own keys sit above Cog's sources (COG_MAX_CONCURRENCY, COG_SETUP_TIMEOUT, cog.yaml).
    let (_, settings) = settings::load(
        &args.model_dir,
        args.config.as_deref(),
        &flags,
        &env,
        &resolved.cog,
    )?;
    let metrics = std::sync::Arc::new(metrics::Metrics::new());
    let service_settings = predictions::ServiceSettings {
        webhook: webhook::WebhookSettings::from_env(&env).map_err(ServeError::Webhook)?,
        upload_url: args.upload_url.clone(),
        log_limit: settings.logs_max_per_prediction,
        history_capacity: resolved.stream_history_capacity,
        metrics: metrics.clone(),
        ..Default::default()
    };
    service_settings
        .http
        .get()
        .map_err(ServeError::HttpClient)?;
    let model_dir = resolved
        .model_dir
        .canonicalize()
        .map_err(|_| ServeError::ModelDir(resolved.model_dir.clone()))?;

    let addr = format!("{}:{}", args.host, resolved.port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;

    let runtime_dir = RuntimeDir::create(None)?;
    let python_path = match &args.python_path {
        Some(dir) => dir.clone(),
        None => embedded::write_python_tree(runtime_dir.path())?,
    };
    let config = settings.supervisor_config(settings::Runtime {
        model_dir: model_dir.clone(),
        predictor_ref: resolved.predictor_ref.clone(),
        mode: resolved.mode,
        schema_refs: Some(resolved.schema_refs.clone()),
        python: args.python.clone(),
        python_path: vec![python_path],
        runtime_parent: None,
        observer: Some(metrics),
        port: resolved.port,
    });
    tracing::info!(
        model_dir = %model_dir.display(),
        predictor = %resolved.predictor_ref,
        concurrency = settings.concurrency,
        %addr,
        "cogvisor {} (compatible with Cog {}) starting",
        version::COGVISOR_VERSION,
        version::COG_VERSION
    );
    let supervisor = Supervisor::start(config, runtime_dir).await?;

    let trigger = shutdown::ShutdownTrigger::default();
    tokio::spawn(shutdown::listen_for_signals(
        trigger.clone(),
        args.await_explicit_shutdown,
    ));
    if ready_file::enabled(&env) {
        tokio::spawn(ready_file::follow(
            supervisor.watch_status(),
            std::path::PathBuf::from(ready_file::READY_FILE),
        ));
    }
    let mut state = http::AppState::new(
        supervisor.clone(),
        resolved.mode,
        service_settings,
        trigger.clone(),
    );
    state.admin_token = env("COGVISOR_ADMIN_TOKEN").filter(|t| !t.is_empty());
    let drain_deadline = settings.shutdown_drain_timeout;
    let cancel_grace = settings.cancel_grace;
    let predictions = state.predictions.clone();
    let app = http::router(state);
    let drain = {
        let predictions = predictions.clone();
        let supervisor = supervisor.clone();
        async move {
            let reason = trigger.triggered().await;
            tracing::info!(
                reason,
                "shutting down: admitting nothing new, draining running predictions"
            );
            predictions.drain(drain_deadline, cancel_grace).await;
            predictions.wait_deliveries(DELIVERY_DEADLINE).await;
            // Whatever still runs is ended by stopping the worker, so no HTTP request waits forever.
            supervisor.shutdown().await;
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(drain)
        .await
        .map_err(ServeError::Http)?;
    // Terminal webhooks of predictions the worker stop ended.
    predictions.wait_deliveries(Duration::from_secs(10)).await;
    tracing::info!("stopped");
    Ok(())
}

/// How long terminal webhooks may take to deliver during shutdown.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);

#[cfg(test)]
mod log_filter_tests {
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
