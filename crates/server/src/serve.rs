//! `cogvisor serve`: reads the settings, starts the supervisor and its worker, serves the HTTP API,
//! and on shutdown drains running predictions and their webhooks before the worker is stopped.

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use cogvisor_protocol::Mode;
use cogvisor_supervisor::runtime_dir::RuntimeDir;
use cogvisor_supervisor::Supervisor;
use tokio::net::TcpListener;

use crate::error::ServeError;
use crate::{
    config, embedded, http, metrics, predictions, ready_file, settings, shutdown, upload, version,
    webhook,
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
            predictions
                .drain(drain_deadline, cancel_grace, reason)
                .await;
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
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);
