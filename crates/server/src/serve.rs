//! `cogvisor serve`: reads the settings, starts the supervisor and its worker, serves the HTTP API
//! ([`crate::http_server`]: its connection limit and timeouts),
//! and on shutdown drains running predictions and their webhooks before the worker is stopped.
//!
//! It makes the process's cancellation tree and its task tracker (see `shutdown.rs`): the root is
//! passed to the supervisor and the ready file, the drain token to the prediction service, and every
//! task the server starts (the signal listener, the ready file, drivers moved off their request,
//! cancels for clients that went away) runs on the tracker, waited for with a deadline at exit.

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use cogvisor_protocol::Mode;
use cogvisor_supervisor::runtime_dir::RuntimeDir;
use cogvisor_supervisor::WorkerPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ServeError;
use crate::{
    config, embedded, http, http_server, metrics, predictions, ready_file, request, settings,
    shutdown, upload, version, webhook,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Predict,
    Train,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
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

pub async fn serve(args: ServeArgs, flags: settings::Flags) -> Result<(), ServeError> {
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
    // The process's cancellation tree and the tracker of the server's own tasks.
    let process = CancellationToken::new();
    let trigger = shutdown::ShutdownTrigger::under(&process);
    let tasks = TaskTracker::new();
    let service_settings = predictions::ServiceSettings {
        webhook: webhook::WebhookSettings {
            max_in_flight: settings.webhooks_max_in_flight as usize,
            max_in_flight_bytes: settings.webhooks_max_in_flight_bytes,
            ..webhook::WebhookSettings::from_env(&env).map_err(ServeError::Webhook)?
        },
        upload_url: args.upload_url.clone(),
        log_limit: settings.logs_max_per_prediction,
        history_capacity: resolved.stream_history_capacity,
        history_max_bytes: settings.sse_history_max_per_prediction,
        subscriber_max_bytes: settings.sse_max_buffered_per_subscriber,
        metrics: metrics.clone(),
        max_output_file: settings.outputs_max_file_size,
        shutdown: trigger.token().clone(),
        tasks: tasks.clone(),
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
    let configs = settings.worker_configs(settings::Runtime {
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
        workers = settings.workers_count,
        %addr,
        "cogvisor {} (compatible with Cog {}) starting",
        version::COGVISOR_VERSION,
        version::COG_VERSION
    );
    let supervisor = WorkerPool::start(configs, runtime_dir, &process).await?;

    tasks.spawn(shutdown::listen_for_signals(
        trigger.clone(),
        args.await_explicit_shutdown,
    ));
    if ready_file::enabled(&env) {
        tasks.spawn(ready_file::follow(
            supervisor.watch_status(),
            std::path::PathBuf::from(ready_file::READY_FILE),
            process.clone(),
        ));
    }
    let mut state = http::AppState::new(
        supervisor.clone(),
        resolved.mode,
        service_settings,
        trigger.clone(),
    );
    state.admin_token = env("COGVISOR_ADMIN_TOKEN").filter(|t| !t.is_empty());
    state.body_limits =
        request::BodyLimits::new(settings.http_body_budget, settings.http_body_read_timeout);
    let wanted = settings.http_max_connections as usize;
    let nofile = http_server::open_file_limit();
    let max_connections = http_server::fit_connections(wanted, nofile);
    if max_connections < wanted {
        tracing::warn!(
            wanted,
            max_connections,
            open_file_limit = nofile,
            "http.max_connections lowered to fit the open-file limit (ulimit -n)"
        );
    }
    let limits = http_server::ServerLimits {
        header_read_timeout: settings.http_header_read_timeout,
        keepalive_timeout: settings.http_keepalive_timeout,
        max_connections,
    };
    let drain = shutdown::Drain {
        predictions: state.predictions.clone(),
        supervisor,
        process,
        deadline: settings.shutdown_drain_timeout,
        cancel_grace: settings.cancel_grace,
    };
    run(listener, state, limits, drain, trigger, tasks).await
}

/// Serves `state` on `listener` within `limits` until `trigger` fires, runs `drain`, and waits for the
/// terminal webhooks and then for the server's `tasks`, each with a deadline. The shutdown is a
/// parameter, so whoever calls this (a test) can drive it.
pub async fn run(
    listener: TcpListener,
    state: http::AppState,
    limits: http_server::ServerLimits,
    drain: shutdown::Drain,
    trigger: shutdown::ShutdownTrigger,
    tasks: TaskTracker,
) -> Result<(), ServeError> {
    let predictions = drain.predictions.clone();
    http_server::serve(listener, http::router(state), limits, drain.run(trigger)).await;
    // Terminal webhooks of predictions the worker stop ended.
    predictions.wait_deliveries(Duration::from_secs(10)).await;
    tasks.close();
    if tokio::time::timeout(TASKS_DEADLINE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(pending = tasks.len(), "server tasks still running at exit");
    }
    tracing::info!("stopped");
    Ok(())
}

pub use crate::shutdown::DELIVERY_DEADLINE;

/// How long the server's own tasks (drivers of predictions the worker stop ended, cancels, the
/// ready file) may take to end once the supervisor has stopped.
pub const TASKS_DEADLINE: Duration = Duration::from_secs(10);
