//! `cogvisor`: serves Cog's HTTP API for a model and supervises the Python worker that runs it.
//!
//! Modules: [`config`] resolves what to serve, [`embedded`] ships the Python worker inside the binary,
//! [`http`] is the API, [`schema`] validates inputs against the model's OpenAPI schema, [`response`]
//! builds Cog's response bodies, [`error`] names every start failure.

mod config;
mod embedded;
mod error;
mod http;
mod logs;
mod predictions;
mod response;
mod schema;
mod shutdown;
mod sse;
mod upload;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use cogvisor_protocol::Mode;
use cogvisor_supervisor::runtime_dir::RuntimeDir;
use cogvisor_supervisor::{Supervisor, SupervisorConfig};
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
    /// Upload file outputs with `PUT` to this URL (plus a file name) instead of returning `data:`
    /// URLs.
    #[arg(long, value_parser = upload::parse_upload_url)]
    upload_url: Option<reqwest::Url>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cogvisor: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One plain line, last on stderr, naming what is wrong.
            eprintln!("cogvisor: error: {e}");
            ExitCode::FAILURE
        }
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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("console")) {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    let mode = match args.mode {
        ModeArg::Predict => Mode::Predict,
        ModeArg::Train => Mode::Train,
    };
    let env = |name: &str| std::env::var(name).ok();
    let resolved = config::resolve(&args.model_dir, mode, args.port, &env)?;
    let settings = predictions::ServiceSettings {
        webhook: webhook::WebhookSettings::from_env(&env).map_err(ServeError::Webhook)?,
        upload_url: args.upload_url.clone(),
        ..Default::default()
    };
    settings.http.get().map_err(ServeError::HttpClient)?;
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
    let mut config = SupervisorConfig::new(&model_dir, resolved.predictor_ref.clone());
    config.mode = resolved.mode;
    config.python = args.python.clone();
    config.python_path = vec![python_path];
    config.concurrency = resolved.concurrency;
    config.setup_timeout = resolved.setup_timeout;
    tracing::info!(
        model_dir = %model_dir.display(),
        predictor = %resolved.predictor_ref,
        concurrency = resolved.concurrency,
        %addr,
        "cogvisor {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let supervisor = Supervisor::start(config, runtime_dir).await?;

    let trigger = shutdown::ShutdownTrigger::default();
    tokio::spawn(shutdown::listen_for_signals(
        trigger.clone(),
        args.await_explicit_shutdown,
    ));
    let state = http::AppState::new(supervisor.clone(), settings, trigger.clone());
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
            predictions.drain(DRAIN_DEADLINE, CANCEL_GRACE).await;
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

/// How long running predictions may finish after a shutdown starts before they are cancelled.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
/// How long a cancelled prediction may take to end before the worker is stopped under it.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
/// How long terminal webhooks may take to deliver during shutdown.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);
