//! The table of keys. Each key is declared once, in [`keys!`] below: its name, flag, Rust type and
//! [`Kind`](parse::Kind) (parser and allowed text), default and help. From that one declaration come the [`Key`]
//! enum (so code names a key by a variant, and a misspelt one does not compile), the [`Settings`]
//! struct with one typed field per key, the flags of `serve` and `config`, `cogvisor config`'s
//! output, the key table of docs/configuration.md, and [`Settings::supervisor_config`].
//!
//! A default is written once, as text, and parsed by the key's own parser, so the printed default and
//! the value used cannot differ.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cogvisor_protocol::{Mode, SchemaRefs};
use cogvisor_supervisor::heartbeat::HeartbeatConfig;
use cogvisor_supervisor::{
    BudgetConfig, HealthConfig, HookPolicy, HooksConfig, OnFailure, SupervisorConfig,
    SupervisorObserver,
};

use super::parse;
use super::{Layers, SettingsError};

macro_rules! keys {
    ($(
        $variant:ident {
            field: $field:ident: $ty:ty,
            name: $name:literal,
            flag: $flag:literal,
            kind: $kind:expr,
            default: $default:literal,
            $(cog: $cog:literal,)?
            help: $help:literal $(,)?
        }
    ),* $(,)?) => {
        /// One setting. Its order here is the order of `cogvisor config` and the doc table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Key {
            $($variant),*
        }

        impl Key {
            /// Every key, in table order.
            pub const ALL: &'static [Key] = &[$(Key::$variant),*];

            /// The dotted name, as written in `cogvisor.yaml`.
            pub const fn name(self) -> &'static str {
                match self { $(Key::$variant => $name),* }
            }

            /// The command-line flag (without `--`).
            pub const fn flag(self) -> &'static str {
                match self { $(Key::$variant => $flag),* }
            }

            /// The default, as text the key's parser reads.
            pub const fn default_text(self) -> &'static str {
                match self { $(Key::$variant => $default),* }
            }

            /// What a value may be.
            pub const fn allowed(self) -> &'static str {
                match self { $(Key::$variant => $kind.allowed),* }
            }

            pub const fn help(self) -> &'static str {
                match self { $(Key::$variant => $help),* }
            }

            /// Cog's own sources of this key, below cogvisor's (applied by [`crate::config`]).
            pub const fn cog_sources(self) -> Option<&'static str> {
                match self { $(Key::$variant => keys!(@cog $($cog)?)),* }
            }
        }

        /// The parsed value of every key.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Settings {
            $(#[doc = $help] pub $field: $ty,)*
        }

        impl Settings {
            fn parse_each(layers: &Layers) -> Result<Self, SettingsError> {
                Ok(Self {
                    $($field: layers.parse(Key::$variant, &$kind)?,)*
                })
            }
        }
    };
    (@cog $cog:literal) => { Some($cog) };
    (@cog) => { None };
}

keys! {
    Concurrency {
        field: concurrency: u32,
        name: "concurrency",
        flag: "concurrency",
        kind: parse::SLOTS,
        default: "1",
        cog: "COG_MAX_CONCURRENCY, cog.yaml concurrency.max, @concurrent(max=N)",
        help: "slots: predictions run at once (more than 1 needs an async predictor)",
    },
    SetupTimeout {
        field: setup_timeout: Option<Duration>,
        name: "setup_timeout",
        flag: "setup-timeout",
        kind: parse::OPT_DURATION,
        default: "none",
        cog: "COG_SETUP_TIMEOUT",
        help: "bound on the whole worker start-up, spawn to ready",
    },
    PredictTimeout {
        field: predict_timeout: Option<Duration>,
        name: "predict_timeout",
        flag: "predict-timeout",
        kind: parse::OPT_DURATION,
        default: "none",
        help: "a prediction running longer is cancelled",
    },
    WorkersCount {
        field: workers_count: u32,
        name: "workers.count",
        flag: "workers-count",
        kind: parse::WORKERS,
        default: "1",
        help: "worker processes, each with its own process group, slots (concurrency) and generation; a prediction goes to a worker with a free slot, and planned recycles roll one worker at a time",
    },
    WorkersDevices {
        field: workers_devices: Option<Vec<String>>,
        name: "workers.devices",
        flag: "workers-devices",
        kind: parse::DEVICES,
        default: "none",
        help: "devices handed out to the workers in turn (worker i gets the (i mod n)-th), as {device} in workers.env; with no workers.env each worker gets CUDA_VISIBLE_DEVICES={device}",
    },
    WorkersEnv {
        field: workers_env: Vec<(String, String)>,
        name: "workers.env",
        flag: "workers-env",
        kind: parse::WORKER_ENV,
        default: "none",
        help: "variables set in each worker's environment, {index} (0, 1, ...) and {device} substituted for that worker",
    },
    CancelGrace {
        field: cancel_grace: Duration,
        name: "cancel_grace",
        flag: "cancel-grace",
        kind: parse::DURATION,
        default: "5s",
        help: "a cancelled prediction still running after this poisons its slot",
    },
    HealthTimeout {
        field: health_timeout: Duration,
        name: "health.timeout",
        flag: "health-timeout",
        kind: parse::DURATION,
        default: "5s",
        help: "bound on one user healthcheck or health.command run",
    },
    HealthPeriod {
        field: health_period: Option<Duration>,
        name: "health.period",
        flag: "health-period",
        kind: parse::HEALTH_PERIOD,
        default: "off",
        help: "run checks in the background this often",
    },
    HealthHeartbeatInterval {
        field: health_heartbeat_interval: Duration,
        name: "health.heartbeat_interval",
        flag: "health-heartbeat-interval",
        kind: parse::NONZERO_DURATION,
        default: "1s",
        help: "how often the runtime heartbeat is sent to the worker",
    },
    HealthHeartbeatTimeout {
        field: health_heartbeat_timeout: Option<Duration>,
        name: "health.heartbeat_timeout",
        flag: "health-heartbeat-timeout",
        kind: parse::HEARTBEAT_TIMEOUT,
        default: "10s",
        help: "a worker silent this long is UNHEALTHY, twice as long recycled; off: no heartbeat",
    },
    HealthCommand {
        field: health_command: Option<Vec<String>>,
        name: "health.command",
        flag: "health-command",
        kind: parse::COMMAND,
        default: "none",
        help: "an external check: exit status 0 is healthy",
    },
    HealthSuccessThreshold {
        field: health_success_threshold: u32,
        name: "health.success_threshold",
        flag: "health-success-threshold",
        kind: parse::THRESHOLD,
        default: "1",
        help: "good checks in a row that make UNHEALTHY READY again",
    },
    HealthFailureThreshold {
        field: health_failure_threshold: u32,
        name: "health.failure_threshold",
        flag: "health-failure-threshold",
        kind: parse::THRESHOLD,
        default: "1",
        help: "failed checks in a row that make READY UNHEALTHY",
    },
    HealthLivenessThreshold {
        field: health_liveness_threshold: u32,
        name: "health.liveness_threshold",
        flag: "health-liveness-threshold",
        kind: parse::THRESHOLD,
        default: "3",
        help: "failed checks in a row that trigger health.on_failure",
    },
    HealthOnFailure {
        field: health_on_failure: OnFailure,
        name: "health.on_failure",
        flag: "health-on-failure",
        kind: parse::ON_FAILURE,
        default: "recycle",
        help: "what the liveness threshold does: only log, recycle the worker, or go DEFUNCT",
    },
    RecycleDrainTimeout {
        field: recycle_drain_timeout: Duration,
        name: "recycle.drain_timeout",
        flag: "recycle-drain-timeout",
        kind: parse::DURATION,
        default: "30s",
        help: "how long a recycle lets in-flight predictions finish before it cancels them",
    },
    RecycleOverlap {
        field: recycle_overlap: bool,
        name: "recycle.overlap",
        flag: "recycle-overlap",
        kind: parse::BOOL,
        default: "false",
        help: "with one worker, a recycle the worker can serve through (model, admin, max_predictions, memory, liveness) sets the next worker up while the old one serves, and swaps when it is READY: no 503 window, twice the memory meanwhile; refused with workers.count above 1",
    },
    RecycleAdmissionWait {
        field: recycle_admission_wait: Duration,
        name: "recycle.admission_wait",
        flag: "recycle-admission-wait",
        kind: parse::DURATION,
        default: "30s",
        help: "with workers.count above 1 or recycle.overlap, how long a prediction waits for a worker when every one that could take it is being replaced, before it is answered 503 (one worker recycled in place answers 503 at once, as Cog does)",
    },
    RecycleMaxPredictions {
        field: recycle_max_predictions: Option<u64>,
        name: "recycle.max_predictions",
        flag: "recycle-max-predictions",
        kind: parse::OPT_COUNT,
        default: "off",
        help: "recycle the worker after this many predictions",
    },
    RecycleMaxPredictionsJitter {
        field: recycle_max_predictions_jitter: u64,
        name: "recycle.max_predictions_jitter",
        flag: "recycle-max-predictions-jitter",
        kind: parse::COUNT,
        default: "0",
        help: "add up to this many to max_predictions, drawn per worker, so replicas do not recycle together",
    },
    RecycleMaxRss {
        field: recycle_max_rss: Option<u64>,
        name: "recycle.max_rss",
        flag: "recycle-max-rss",
        kind: parse::OPT_MEMORY,
        default: "off",
        help: "recycle the worker, once its predictions finish, when the RSS of its process tree (the worker and every process it started) is past this; checked at the end of every prediction and every recycle.memory_check_interval",
    },
    RecycleMaxGpuMemory {
        field: recycle_max_gpu_memory: Option<u64>,
        name: "recycle.max_gpu_memory",
        flag: "recycle-max-gpu-memory",
        kind: parse::OPT_MEMORY,
        default: "off",
        help: "recycle the worker, once its predictions finish, when the GPU memory of its process tree (from nvidia-smi) is past this; checked every recycle.memory_check_interval. The start fails when nvidia-smi lists no GPU",
    },
    RecycleMemoryCheckInterval {
        field: recycle_memory_check_interval: Duration,
        name: "recycle.memory_check_interval",
        flag: "recycle-memory-check-interval",
        kind: parse::MEMORY_CHECK_INTERVAL,
        default: "1s",
        help: "how often recycle.max_rss and recycle.max_gpu_memory are checked while either is set",
    },
    RecycleRestartBudget {
        field: recycle_restart_budget: BudgetConfig,
        name: "recycle.restart_budget",
        flag: "recycle-restart-budget",
        kind: parse::BUDGET,
        default: "5 in 300s",
        help: "unplanned worker replacements (crashes, liveness recycles, every slot poisoned) within the window before the state is DEFUNCT",
    },
    StopGrace {
        field: stop_grace: Duration,
        name: "stop.grace",
        flag: "stop-grace",
        kind: parse::DURATION,
        default: "5s",
        help: "each wait of a worker stop: after the shutdown message, after SIGTERM",
    },
    ShutdownDrainTimeout {
        field: shutdown_drain_timeout: Duration,
        name: "shutdown.drain_timeout",
        flag: "shutdown-drain-timeout",
        kind: parse::DURATION,
        default: "30s",
        help: "on SIGTERM, how long running predictions may finish before they are cancelled",
    },
    HooksAfterHealthy {
        field: hooks_after_healthy: Option<Vec<String>>,
        name: "hooks.after_healthy",
        flag: "hooks-after-healthy",
        kind: parse::COMMAND,
        default: "none",
        help: "runs after every successful (re)start of the worker, before READY",
    },
    HooksBeforeStop {
        field: hooks_before_stop: Option<Vec<String>>,
        name: "hooks.before_stop",
        flag: "hooks-before-stop",
        kind: parse::COMMAND,
        default: "none",
        help: "runs before every worker stop (shutdown and each recycle)",
    },
    HooksTimeout {
        field: hooks_timeout: Duration,
        name: "hooks.timeout",
        flag: "hooks-timeout",
        kind: parse::NONZERO_DURATION,
        default: "30s",
        help: "a hook still running after this is killed with its process group",
    },
    HooksOnFailure {
        field: hooks_on_failure: HookPolicy,
        name: "hooks.on_failure",
        flag: "hooks-on-failure",
        kind: parse::HOOK_POLICY,
        default: "warn",
        help: "fail: an after_healthy failure counts as a failed start",
    },
    LogsMaxPerPrediction {
        field: logs_max_per_prediction: usize,
        name: "logs.max_per_prediction",
        flag: "logs-max-per-prediction",
        kind: parse::LOG_SIZE,
        default: "8MiB",
        help: "log text kept per prediction; older text is dropped with a notice",
    },
    LogsMaxSetup {
        field: logs_max_setup: usize,
        name: "logs.max_setup",
        flag: "logs-max-setup",
        kind: parse::LOG_SIZE,
        default: "2MiB",
        help: "setup.logs text kept per worker start: the first half and the last half, with a notice of the bytes dropped between them",
    },
    OutputsMaxFileSize {
        field: outputs_max_file_size: u64,
        name: "outputs.max_file_size",
        flag: "outputs-max-file-size",
        kind: parse::FILE_SIZE,
        default: "100MiB",
        help: "largest output file read into a data: URL or an upload; a larger one fails the prediction",
    },
    HttpHeaderReadTimeout {
        field: http_header_read_timeout: Duration,
        name: "http.header_read_timeout",
        flag: "http-header-read-timeout",
        kind: parse::NONZERO_DURATION,
        default: "60s",
        help: "a request's header must arrive within this of its first byte (of the connection, for the first request); else the connection is closed",
    },
    HttpBodyReadTimeout {
        field: http_body_read_timeout: Duration,
        name: "http.body_read_timeout",
        flag: "http-body-read-timeout",
        kind: parse::NONZERO_DURATION,
        default: "60s",
        help: "longest wait between two reads of a request body; then 408 and the connection is closed",
    },
    HttpKeepaliveTimeout {
        field: http_keepalive_timeout: Duration,
        name: "http.keepalive_timeout",
        flag: "http-keepalive-timeout",
        kind: parse::NONZERO_DURATION,
        default: "75s",
        help: "an idle kept-alive connection (no request in flight, no byte of the next) is closed after this",
    },
    HttpMaxConnections {
        field: http_max_connections: u32,
        name: "http.max_connections",
        flag: "http-max-connections",
        kind: parse::CONNECTIONS,
        default: "512",
        help: "client connections held at once (lowered to fit the open-file limit); more are answered 503 and closed",
    },
    HttpBodyBudget {
        field: http_body_budget: usize,
        name: "http.body_budget",
        flag: "http-body-budget",
        kind: parse::BODY_BUDGET,
        default: "128MiB",
        help: "request bodies buffered at once, all requests together; a body that does not fit is answered 503 with Retry-After",
    },
    SseHistoryMaxPerPrediction {
        field: sse_history_max_per_prediction: usize,
        name: "sse.history_max_per_prediction",
        flag: "sse-history-max-per-prediction",
        kind: parse::LOG_SIZE,
        default: "4MiB",
        help: "SSE event bytes a prediction keeps for late subscribers; past it the oldest are dropped and a late subscriber gets an error event",
    },
    SseMaxBufferedPerSubscriber {
        field: sse_max_buffered_per_subscriber: usize,
        name: "sse.max_buffered_per_subscriber",
        flag: "sse-max-buffered-per-subscriber",
        kind: parse::LOG_SIZE,
        default: "8MiB",
        help: "SSE event bytes waiting for one subscriber that does not read; past it its stream ends with an error event",
    },
    WebhooksMaxInFlight {
        field: webhooks_max_in_flight: u32,
        name: "webhooks.max_in_flight",
        flag: "webhooks-max-in-flight",
        kind: parse::THRESHOLD,
        default: "64",
        help: "webhook payloads held at once (being sent or waiting to retry); past it webhooks are dropped (docs/limits.md)",
    },
    WebhooksMaxInFlightBytes {
        field: webhooks_max_in_flight_bytes: usize,
        name: "webhooks.max_in_flight_bytes",
        flag: "webhooks-max-in-flight-bytes",
        kind: parse::LOG_SIZE,
        default: "64MiB",
        help: "bytes of webhook payloads held at once; past it webhooks are dropped (docs/limits.md)",
    },
}

impl Key {
    /// `COGVISOR_` + the name in upper snake case.
    pub fn env(self) -> String {
        format!(
            "COGVISOR_{}",
            self.name().replace('.', "_").to_ascii_uppercase()
        )
    }

    /// The key named `name` in `cogvisor.yaml`'s dotted form.
    pub fn from_name(name: &str) -> Option<Key> {
        Key::ALL.iter().copied().find(|k| k.name() == name)
    }
}

/// What the supervisor needs besides the settings: the model, the interpreter, the observer.
pub struct Runtime {
    pub model_dir: PathBuf,
    pub predictor_ref: String,
    pub mode: Mode,
    pub schema_refs: Option<SchemaRefs>,
    pub python: String,
    pub python_path: Vec<PathBuf>,
    pub runtime_parent: Option<PathBuf>,
    pub observer: Option<Arc<dyn SupervisorObserver>>,
    /// The server's port, for the hooks' `COGVISOR_PORT`.
    pub port: u16,
}

impl Settings {
    /// Parses every key and checks the bounds between keys.
    pub fn from_layers(layers: &Layers) -> Result<Self, SettingsError> {
        let settings = Self::parse_each(layers)?;
        if let Some(period) = settings.health_period {
            if period <= settings.health_timeout {
                return Err(layers.bad_value(Key::HealthPeriod));
            }
        }
        let uses_device = settings
            .workers_env
            .iter()
            .any(|(_, value)| value.contains("{device}"));
        if uses_device && settings.workers_devices.is_none() {
            return Err(layers.bad_value(Key::WorkersEnv));
        }
        if let Some(timeout) = settings.health_heartbeat_timeout {
            if timeout <= settings.health_heartbeat_interval {
                return Err(layers.bad_value(Key::HealthHeartbeatTimeout));
            }
        }
        if settings.recycle_overlap && settings.workers_count > 1 {
            return Err(layers.conflict(
                Key::RecycleOverlap,
                Key::WorkersCount,
                "overlap is for one worker; a pool already recycles one worker at a time while the others serve",
            ));
        }
        Ok(settings)
    }

    /// The health machine's thresholds and policy.
    pub fn health(&self) -> HealthConfig {
        HealthConfig {
            success_threshold: self.health_success_threshold,
            failure_threshold: self.health_failure_threshold,
            liveness_threshold: self.health_liveness_threshold,
            on_failure: self.health_on_failure,
        }
    }

    /// Worker `index`'s own variables: `workers.env` with `{index}` and `{device}` substituted, or
    /// `CUDA_VISIBLE_DEVICES` alone when only `workers.devices` is set.
    pub fn worker_env(&self, index: u32) -> Vec<(String, String)> {
        let device = self.workers_devices.as_ref().and_then(|devices| {
            let at = usize::try_from(index).unwrap_or(0) % devices.len().max(1);
            devices.get(at).cloned()
        });
        if self.workers_env.is_empty() {
            return device
                .map(|d| vec![("CUDA_VISIBLE_DEVICES".to_owned(), d)])
                .unwrap_or_default();
        }
        self.workers_env
            .iter()
            .map(|(name, value)| {
                let value = value.replace("{index}", &index.to_string());
                let value = match &device {
                    Some(d) => value.replace("{device}", d),
                    None => value,
                };
                (name.clone(), value)
            })
            .collect()
    }

    /// One supervisor configuration per worker of the pool (`workers.count`), each with its index and
    /// its own variables.
    pub fn worker_configs(&self, rt: Runtime) -> Vec<SupervisorConfig> {
        let first = self.supervisor_config(rt);
        (0..self.workers_count)
            .map(|index| SupervisorConfig {
                worker_index: index,
                worker_env: self.worker_env(index),
                ..first.clone()
            })
            .collect()
    }

    /// The whole supervisor configuration. Every field is named (no `..`), so a field added to
    /// [`SupervisorConfig`] does not compile until it is decided here.
    pub fn supervisor_config(&self, rt: Runtime) -> SupervisorConfig {
        SupervisorConfig {
            model_dir: rt.model_dir,
            predictor_ref: rt.predictor_ref,
            mode: rt.mode,
            schema_refs: rt.schema_refs,
            python: rt.python,
            python_path: rt.python_path,
            runtime_parent: rt.runtime_parent,
            observer: rt.observer,
            concurrency: self.concurrency,
            worker_index: 0,
            worker_env: self.worker_env(0),
            setup_timeout: self.setup_timeout,
            stop_grace: self.stop_grace,
            health: self.health(),
            health_timeout: self.health_timeout,
            health_period: self.health_period,
            heartbeat: self
                .health_heartbeat_timeout
                .map(|timeout| HeartbeatConfig {
                    interval: self.health_heartbeat_interval,
                    timeout,
                }),
            health_command: self.health_command.clone(),
            restart_budget: self.recycle_restart_budget,
            recycle_drain_timeout: self.recycle_drain_timeout,
            recycle_overlap: self.recycle_overlap,
            recycle_admission_wait: self.recycle_admission_wait,
            max_predictions: self.recycle_max_predictions,
            max_predictions_jitter: self.recycle_max_predictions_jitter,
            max_rss: self.recycle_max_rss,
            max_gpu_memory: self.recycle_max_gpu_memory,
            memory_check_interval: self.recycle_memory_check_interval,
            predict_timeout: self.predict_timeout,
            cancel_grace: self.cancel_grace,
            hooks: HooksConfig {
                after_healthy: self.hooks_after_healthy.clone(),
                before_stop: self.hooks_before_stop.clone(),
                timeout: self.hooks_timeout,
                on_failure: self.hooks_on_failure,
                port: rt.port,
            },
            setup_log_limit: self.logs_max_setup,
        }
    }
}
