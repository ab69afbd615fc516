//! `GET /metrics`: Prometheus metrics, kept with the `prometheus-client` crate.
//!
//! Counters and histograms are updated where things happen: predictions when they end
//! ([`Metrics::record_prediction`]), webhook requests when they return ([`Metrics::record_webhook`]),
//! hooks when they end ([`Metrics::record_hook_run`]), and recycles and health checks through the
//! supervisor's observer ([`SupervisorObserver`]). Gauges (slots, health state) are read from the
//! supervisor's health snapshot at scrape time, so they are never stale; so is the worker's RSS
//! ([`Metrics::set_worker_memory`], a scan of its process tree per scrape), while its GPU memory is the
//! last sample of `recycle.max_gpu_memory`'s sampler. docs/metrics.md lists every
//! metric; a test checks that list against the output.

use std::time::Duration;

use cogvisor_supervisor::health::SlotsRecord;
use cogvisor_supervisor::{
    HealthSnapshot, HealthStatus, RecycleTrigger, SupervisorEvent, SupervisorObserver, WorkerMemory,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::predictions::Status;
use crate::schema::Kind;

/// Every metric name starts with this.
pub const PREFIX: &str = "cogvisor";

/// The Prometheus text format's content type (version 0.0.4), the default.
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The OpenMetrics text format's content type, sent when the scraper asks for it.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prediction durations: 5 ms to about 45 minutes.
const PREDICTION_BUCKETS: [f64; 14] = [
    0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 2700.0,
];

/// Recycle and restart durations: 50 ms to 30 minutes (a recycle includes setup).
const RECYCLE_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// Health check durations: 1 ms to 30 s (the default check timeout is 5 s).
const HEALTHCHECK_BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// Outcomes of a hook run.
pub const HOOK_OUTCOMES: [&str; 3] = ["succeeded", "failed", "timed_out"];

/// The hooks (docs/hooks.md).
pub const HOOKS: [&str; 2] = ["after_healthy", "before_stop"];

const TRIGGERS: [RecycleTrigger; 8] = [
    RecycleTrigger::Model,
    RecycleTrigger::Admin,
    RecycleTrigger::MaxPredictions,
    RecycleTrigger::MaxRss,
    RecycleTrigger::MaxGpuMemory,
    RecycleTrigger::Liveness,
    RecycleTrigger::AllSlotsPoisoned,
    RecycleTrigger::WorkerExit,
];

const STATES: [HealthStatus; 7] = [
    HealthStatus::Starting,
    HealthStatus::Ready,
    HealthStatus::Busy,
    HealthStatus::Unhealthy,
    HealthStatus::Recycling,
    HealthStatus::SetupFailed,
    HealthStatus::Defunct,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PredictionLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// One worker of a pool (`workers.count` > 1), by index.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: u32,
}

/// One worker of a pool and one state (a health state or a slot state).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerStateLabels {
    worker: u32,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecycleLabels {
    trigger: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    hook: String,
    outcome: String,
}

/// How a webhook request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A 2xx answer.
    Delivered,
    /// Another HTTP status.
    Refused,
    /// No HTTP answer (connection refused, timeout, TLS error).
    Error,
    /// Not sent: the delivery budget was full (`webhooks.max_in_flight`, `webhooks.max_in_flight_bytes`).
    Dropped,
}

impl WebhookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Delivered => "delivered",
            WebhookOutcome::Refused => "refused",
            WebhookOutcome::Error => "error",
            WebhookOutcome::Dropped => "dropped",
        }
    }

    /// The outcome of a webhook request that answered `result`.
    pub fn of(result: &Result<u16, String>) -> Self {
        match result {
            Ok(status) if (200..300).contains(status) => WebhookOutcome::Delivered,
            Ok(_) => WebhookOutcome::Refused,
            Err(_) => WebhookOutcome::Error,
        }
    }
}

const WEBHOOK_OUTCOMES: [WebhookOutcome; 4] = [
    WebhookOutcome::Delivered,
    WebhookOutcome::Refused,
    WebhookOutcome::Error,
    WebhookOutcome::Dropped,
];

fn prediction_histogram() -> Histogram {
    Histogram::new(PREDICTION_BUCKETS)
}

/// Which text format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text (ends with `# EOF`).
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, else Prometheus text.
    pub fn from_accept(accept: Option<&str>) -> Self {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Every metric of the server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    predictions: Family<PredictionLabels, Counter>,
    prediction_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    slots: Family<StateLabels, Gauge>,
    health_state: Family<StateLabels, Gauge>,
    recycles: Family<RecycleLabels, Counter>,
    recycle_duration: Histogram,
    healthcheck_duration: Histogram,
    healthcheck_failures: Counter,
    heartbeats_missed: Counter,
    webhook_requests: Family<OutcomeLabels, Counter>,
    hook_runs: Family<HookLabels, Counter>,
    /// No labels; no series while there is nothing to show (no worker, no GPU sample).
    worker_rss: Family<NoLabels, Gauge>,
    worker_gpu_memory: Family<NoLabels, Gauge>,
    /// Per worker of a pool; no series with one worker (the families above are that worker).
    pool_worker_state: Family<WorkerStateLabels, Gauge>,
    pool_worker_slots: Family<WorkerStateLabels, Gauge>,
    pool_worker_generation: Family<WorkerLabels, Gauge>,
    pool_worker_rss: Family<WorkerLabels, Gauge>,
}

/// The label set of a gauge with none, kept in a family so it can have no series at all.
type NoLabels = Vec<(String, String)>;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric. Label combinations known in advance start at 0, so a rate over them
    /// exists before the first event.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let predictions = Family::<PredictionLabels, Counter>::default();
        registry.register(
            "predictions",
            "Predictions and trainings that ended, by kind and outcome",
            predictions.clone(),
        );
        let prediction_duration: Family<KindLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(prediction_histogram);
        registry.register_with_unit(
            "prediction_duration",
            "Time from admission to the end of a prediction or training, by kind",
            Unit::Seconds,
            prediction_duration.clone(),
        );
        let slots = Family::<StateLabels, Gauge>::default();
        registry.register(
            "slots",
            "Slots of the current worker by state: busy (running a prediction), idle, poisoned",
            slots.clone(),
        );
        let health_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "health_state",
            "1 for the current health state (as /health-check shows it), 0 for the others",
            health_state.clone(),
        );
        let recycles = Family::<RecycleLabels, Counter>::default();
        registry.register(
            "worker_recycles",
            "Worker recycles and crash restarts that ended, by trigger and outcome",
            recycles.clone(),
        );
        let recycle_duration = Histogram::new(RECYCLE_BUCKETS);
        registry.register_with_unit(
            "worker_recycle_duration",
            "Time from a recycle's start (or a crash) until the replacement worker is ready or has failed",
            Unit::Seconds,
            recycle_duration.clone(),
        );
        let healthcheck_duration = Histogram::new(HEALTHCHECK_BUCKETS);
        registry.register_with_unit(
            "healthcheck_duration",
            "Time one health check took (user healthcheck() and health.command)",
            Unit::Seconds,
            healthcheck_duration.clone(),
        );
        let healthcheck_failures = Counter::default();
        registry.register(
            "healthcheck_failures",
            "Health checks that failed (False, an exception, a timeout or a non-zero exit)",
            healthcheck_failures.clone(),
        );
        let heartbeats_missed = Counter::default();
        registry.register(
            "heartbeats_missed",
            "Runtime heartbeats the worker left unanswered for health.heartbeat_timeout",
            heartbeats_missed.clone(),
        );
        let webhook_requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook requests sent, by outcome: delivered (2xx), refused (another status), error (no answer), dropped (not sent: the delivery budget was full)",
            webhook_requests.clone(),
        );
        let hook_runs = Family::<HookLabels, Counter>::default();
        registry.register(
            "hook_runs",
            "Lifecycle hook runs, by hook and outcome (succeeded, failed, timed_out)",
            hook_runs.clone(),
        );
        let worker_rss = Family::<NoLabels, Gauge>::default();
        registry.register_with_unit(
            "worker_rss",
            "Resident set size of the worker's process tree (the worker, its descendants, the orphans it left), summed over its processes; read at each scrape",
            Unit::Bytes,
            worker_rss.clone(),
        );
        let worker_gpu_memory = Family::<NoLabels, Gauge>::default();
        registry.register_with_unit(
            "worker_gpu_memory",
            "GPU memory of the worker's process tree as nvidia-smi reported it at the last sample; only while recycle.max_gpu_memory is set",
            Unit::Bytes,
            worker_gpu_memory.clone(),
        );
        let pool_worker_state = Family::<WorkerStateLabels, Gauge>::default();
        registry.register(
            "pool_worker_state",
            "With workers.count > 1: 1 for each worker's own health state, 0 for its others",
            pool_worker_state.clone(),
        );
        let pool_worker_slots = Family::<WorkerStateLabels, Gauge>::default();
        registry.register(
            "pool_worker_slots",
            "With workers.count > 1: each worker's slots by state (busy, idle, poisoned)",
            pool_worker_slots.clone(),
        );
        let pool_worker_generation = Family::<WorkerLabels, Gauge>::default();
        registry.register(
            "pool_worker_generation",
            "With workers.count > 1: each worker's generation (1 at start, one more per recycle or restart)",
            pool_worker_generation.clone(),
        );
        let pool_worker_rss = Family::<WorkerLabels, Gauge>::default();
        registry.register_with_unit(
            "pool_worker_rss",
            "With workers.count > 1: resident set size of each worker's process tree; read at each scrape",
            Unit::Bytes,
            pool_worker_rss.clone(),
        );
        let metrics = Self {
            registry,
            predictions,
            prediction_duration,
            slots,
            health_state,
            recycles,
            recycle_duration,
            healthcheck_duration,
            healthcheck_failures,
            heartbeats_missed,
            webhook_requests,
            hook_runs,
            worker_rss,
            worker_gpu_memory,
            pool_worker_state,
            pool_worker_slots,
            pool_worker_generation,
            pool_worker_rss,
        };
        metrics.create_known_series();
        metrics
    }

    fn create_known_series(&self) {
        for kind in [Kind::Prediction, Kind::Training] {
            let kind = kind_name(kind);
            for outcome in [Status::Succeeded, Status::Failed, Status::Canceled] {
                let _ = self.predictions.get_or_create(&PredictionLabels {
                    kind,
                    outcome: outcome.as_str(),
                });
            }
            let _ = self.prediction_duration.get_or_create(&KindLabels { kind });
        }
        for trigger in TRIGGERS {
            for outcome in ["succeeded", "failed"] {
                let _ = self.recycles.get_or_create(&RecycleLabels {
                    trigger: trigger.as_str(),
                    outcome,
                });
            }
        }
        for outcome in WEBHOOK_OUTCOMES {
            let _ = self.webhook_requests.get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            });
        }
        for hook in HOOKS {
            for outcome in HOOK_OUTCOMES {
                let _ = self.hook_runs.get_or_create(&HookLabels {
                    hook: hook.to_string(),
                    outcome: outcome.to_string(),
                });
            }
        }
    }

    /// A prediction (or training) ended with `status` after `duration`.
    pub fn record_prediction(&self, kind: Kind, status: Status, duration: Duration) {
        let kind = kind_name(kind);
        self.predictions
            .get_or_create(&PredictionLabels {
                kind,
                outcome: status.as_str(),
            })
            .inc();
        self.prediction_duration
            .get_or_create(&KindLabels { kind })
            .observe(duration.as_secs_f64());
    }

    /// One webhook request ended with `outcome`.
    pub fn record_webhook(&self, outcome: WebhookOutcome) {
        self.webhook_requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Hook `hook` (`after_healthy`, `before_stop`) ended with `outcome` (`succeeded`, `failed`,
    /// `timed_out`). For the hooks runner.
    pub fn record_hook_run(&self, hook: &str, outcome: &str) {
        self.hook_runs
            .get_or_create(&HookLabels {
                hook: hook.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Sets the worker's memory gauges; a value that is `None` has no series.
    pub fn set_worker_memory(&self, memory: &WorkerMemory) {
        for (family, value) in [
            (&self.worker_rss, memory.rss_bytes),
            (&self.worker_gpu_memory, memory.gpu_bytes),
        ] {
            match value {
                Some(bytes) => {
                    family
                        .get_or_create(&Vec::new())
                        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                }
                None => family.clear(),
            }
        }
    }

    /// Sets each pool worker's RSS gauge (by index); with one worker (`each` shorter than 2) there is
    /// none, `worker_rss` is that worker's.
    pub fn set_pool_memory(&self, each: &[WorkerMemory]) {
        self.pool_worker_rss.clear();
        if each.len() < 2 {
            return;
        }
        for (index, memory) in (0u32..).zip(each) {
            if let Some(bytes) = memory.rss_bytes {
                self.pool_worker_rss
                    .get_or_create(&WorkerLabels { worker: index })
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
    }

    /// The metrics as text in `format`, with the gauges set from `health` first.
    pub fn render(
        &self,
        health: &HealthSnapshot,
        format: Format,
    ) -> Result<String, std::fmt::Error> {
        self.set_gauges(health);
        let mut out = String::new();
        match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)?
            }
        }
        Ok(out)
    }

    fn set_gauges(&self, health: &HealthSnapshot) {
        for (state, value) in slot_counts(&health.slots) {
            self.slots.get_or_create(&StateLabels { state }).set(value);
        }
        for state in STATES {
            self.health_state
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(i64::from(state == health.status));
        }
        self.pool_worker_state.clear();
        self.pool_worker_slots.clear();
        self.pool_worker_generation.clear();
        let Some(pool) = &health.pool else {
            return;
        };
        for member in &pool.members {
            let worker = member.index;
            for state in STATES {
                self.pool_worker_state
                    .get_or_create(&WorkerStateLabels {
                        worker,
                        state: state.as_str(),
                    })
                    .set(i64::from(state == member.status));
            }
            for (state, value) in slot_counts(&member.slots) {
                self.pool_worker_slots
                    .get_or_create(&WorkerStateLabels { worker, state })
                    .set(value);
            }
            self.pool_worker_generation
                .get_or_create(&WorkerLabels { worker })
                .set(i64::try_from(member.worker.generation).unwrap_or(i64::MAX));
        }
    }
}

/// Busy, idle and poisoned slots of `slots`.
fn slot_counts(slots: &SlotsRecord) -> [(&'static str, i64); 3] {
    let total = i64::from(slots.total);
    let busy = i64::from(slots.busy);
    let poisoned = slots.poisoned.len() as i64;
    [
        ("busy", busy),
        ("idle", (total - busy - poisoned).max(0)),
        ("poisoned", poisoned),
    ]
}

impl SupervisorObserver for Metrics {
    fn observe(&self, event: SupervisorEvent) {
        match event {
            SupervisorEvent::RecycleFinished {
                trigger,
                duration,
                succeeded,
            } => {
                self.recycles
                    .get_or_create(&RecycleLabels {
                        trigger: trigger.as_str(),
                        outcome: if succeeded { "succeeded" } else { "failed" },
                    })
                    .inc();
                self.recycle_duration.observe(duration.as_secs_f64());
            }
            SupervisorEvent::HealthcheckFinished { duration, healthy } => {
                self.healthcheck_duration.observe(duration.as_secs_f64());
                if !healthy {
                    self.healthcheck_failures.inc();
                }
            }
            SupervisorEvent::HeartbeatMissed => {
                self.heartbeats_missed.inc();
            }
            SupervisorEvent::HookFinished { hook, outcome, .. } => {
                self.record_hook_run(hook, outcome)
            }
        }
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Prediction => "prediction",
        Kind::Training => "training",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cogvisor_supervisor::health::{
        PoisonedSlot, SetupRecord, SetupStatus, SlotsRecord, WorkerRecord,
    };

    pub(crate) fn health(
        status: HealthStatus,
        total: u32,
        busy: u32,
        poisoned: u32,
    ) -> HealthSnapshot {
        HealthSnapshot {
            status,
            setup: SetupRecord {
                started_at: String::new(),
                completed_at: None,
                status: SetupStatus::Succeeded,
                logs: "".into(),
            },
            worker: WorkerRecord {
                pid: None,
                generation: 1,
                started_at: None,
                restarts: 0,
                exit: None,
                last_recycle: None,
            },
            slots: SlotsRecord {
                total,
                busy,
                poisoned: (0..poisoned)
                    .map(|slot| PoisonedSlot {
                        slot,
                        reason: "test".into(),
                    })
                    .collect(),
            },
            python_version: None,
            sdk_version: None,
            reason: None,
            user_healthcheck_error: None,
            pool: None,
            successor: None,
        }
    }

    /// A pool of two workers: worker 0 RECYCLING at generation 4, worker 1 READY at generation 3,
    /// one busy slot of two in the pool.
    pub(crate) fn pool_health() -> HealthSnapshot {
        use cogvisor_supervisor::{PoolRecord, PoolWorkerRecord};
        let mut h = health(HealthStatus::Ready, 2, 1, 0);
        let worker = |index: u32, status, generation: u64| {
            let mut one = health(status, 1, 0, 0);
            one.worker.generation = generation;
            one.worker.restarts = generation - 1;
            one.worker.pid = Some(100 + index);
            PoolWorkerRecord {
                index,
                status,
                reason: (status == HealthStatus::Recycling)
                    .then(|| "max_predictions reached (3)".to_owned()),
                worker: one.worker,
                slots: one.slots,
            }
        };
        h.pool = Some(PoolRecord {
            workers: 2,
            ready: 1,
            members: vec![
                worker(0, HealthStatus::Recycling, 4),
                worker(1, HealthStatus::Ready, 3),
            ],
        });
        h
    }

    #[test]
    fn a_pool_has_each_workers_state_slots_generation_and_rss_and_one_worker_has_none() {
        let m = Metrics::new();
        let mut h = pool_health();
        if let Some(pool) = &mut h.pool {
            pool.members[1].slots.busy = 1;
        }
        m.set_pool_memory(&[
            WorkerMemory {
                rss_bytes: Some(300),
                gpu_bytes: None,
            },
            WorkerMemory {
                rss_bytes: Some(500),
                gpu_bytes: None,
            },
        ]);
        let text = m.render(&h, Format::Prometheus).expect("render");
        let got = lines(&text);
        for want in [
            r#"cogvisor_pool_worker_state{worker="0",state="RECYCLING"} 1"#,
            r#"cogvisor_pool_worker_state{worker="0",state="READY"} 0"#,
            r#"cogvisor_pool_worker_state{worker="1",state="READY"} 1"#,
            r#"cogvisor_pool_worker_slots{worker="0",state="idle"} 1"#,
            r#"cogvisor_pool_worker_slots{worker="1",state="busy"} 1"#,
            r#"cogvisor_pool_worker_slots{worker="1",state="idle"} 0"#,
            r#"cogvisor_pool_worker_generation{worker="0"} 4"#,
            r#"cogvisor_pool_worker_generation{worker="1"} 3"#,
            r#"cogvisor_pool_worker_rss_bytes{worker="0"} 300"#,
            r#"cogvisor_pool_worker_rss_bytes{worker="1"} 500"#,
        ] {
            assert!(got.contains(&want), "missing {want:?} in\n{text}");
        }

        // Back to one worker (or a pool seen as one): the per-worker series go away.
        m.set_pool_memory(&[WorkerMemory {
            rss_bytes: Some(300),
            gpu_bytes: None,
        }]);
        let text = m
            .render(&health(HealthStatus::Ready, 1, 0, 0), Format::Prometheus)
            .expect("render");
        assert!(
            !text.lines().any(|l| l.starts_with("cogvisor_pool_")),
            "{text}"
        );
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn counters_and_histograms_show_what_happened_in_prometheus_text() {
        let m = Metrics::new();
        m.record_prediction(
            Kind::Prediction,
            Status::Succeeded,
            Duration::from_millis(300),
        );
        m.record_prediction(Kind::Prediction, Status::Failed, Duration::from_secs(2));
        m.record_prediction(Kind::Training, Status::Canceled, Duration::from_secs(40));
        m.record_webhook(WebhookOutcome::Delivered);
        m.record_webhook(WebhookOutcome::Error);
        m.record_hook_run("after_healthy", "timed_out");
        m.observe(SupervisorEvent::RecycleFinished {
            trigger: RecycleTrigger::Admin,
            duration: Duration::from_millis(700),
            succeeded: true,
        });
        m.observe(SupervisorEvent::HealthcheckFinished {
            duration: Duration::from_millis(3),
            healthy: false,
        });
        m.observe(SupervisorEvent::HookFinished {
            hook: "before_stop",
            outcome: "succeeded",
        });
        let text = m
            .render(&health(HealthStatus::Busy, 4, 3, 1), Format::Prometheus)
            .expect("render");
        let l = lines(&text);
        for expected in [
            "# TYPE cogvisor_predictions_total counter",
            r#"cogvisor_predictions_total{kind="prediction",outcome="succeeded"} 1"#,
            r#"cogvisor_predictions_total{kind="prediction",outcome="failed"} 1"#,
            r#"cogvisor_predictions_total{kind="prediction",outcome="canceled"} 0"#,
            r#"cogvisor_predictions_total{kind="training",outcome="canceled"} 1"#,
            "# TYPE cogvisor_prediction_duration_seconds histogram",
            r#"cogvisor_prediction_duration_seconds_bucket{kind="prediction",le="0.25"} 0"#,
            r#"cogvisor_prediction_duration_seconds_bucket{kind="prediction",le="0.5"} 1"#,
            r#"cogvisor_prediction_duration_seconds_bucket{kind="prediction",le="2.5"} 2"#,
            r#"cogvisor_prediction_duration_seconds_bucket{kind="prediction",le="+Inf"} 2"#,
            r#"cogvisor_prediction_duration_seconds_count{kind="prediction"} 2"#,
            r#"cogvisor_prediction_duration_seconds_sum{kind="prediction"} 2.3"#,
            r#"cogvisor_prediction_duration_seconds_count{kind="training"} 1"#,
            "# TYPE cogvisor_slots gauge",
            r#"cogvisor_slots{state="busy"} 3"#,
            r#"cogvisor_slots{state="idle"} 0"#,
            r#"cogvisor_slots{state="poisoned"} 1"#,
            "# TYPE cogvisor_health_state gauge",
            r#"cogvisor_health_state{state="BUSY"} 1"#,
            r#"cogvisor_health_state{state="READY"} 0"#,
            r#"cogvisor_health_state{state="DEFUNCT"} 0"#,
            r#"cogvisor_worker_recycles_total{trigger="admin",outcome="succeeded"} 1"#,
            r#"cogvisor_worker_recycles_total{trigger="worker_exit",outcome="failed"} 0"#,
            "cogvisor_worker_recycle_duration_seconds_count 1",
            r#"cogvisor_worker_recycle_duration_seconds_bucket{le="0.5"} 0"#,
            r#"cogvisor_worker_recycle_duration_seconds_bucket{le="1"} 1"#,
            "cogvisor_healthcheck_duration_seconds_count 1",
            "cogvisor_healthcheck_failures_total 1",
            r#"cogvisor_webhook_deliveries_total{outcome="delivered"} 1"#,
            r#"cogvisor_webhook_deliveries_total{outcome="refused"} 0"#,
            r#"cogvisor_webhook_deliveries_total{outcome="error"} 1"#,
            r#"cogvisor_hook_runs_total{hook="after_healthy",outcome="timed_out"} 1"#,
            r#"cogvisor_hook_runs_total{hook="before_stop",outcome="succeeded"} 1"#,
            r#"cogvisor_hook_runs_total{hook="before_stop",outcome="failed"} 0"#,
        ] {
            assert!(l.contains(&expected), "missing {expected:?} in:\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn gauges_follow_the_health_snapshot_at_each_scrape() {
        let m = Metrics::new();
        let text = m
            .render(&health(HealthStatus::Starting, 2, 0, 0), Format::Prometheus)
            .expect("render");
        assert!(lines(&text).contains(&r#"cogvisor_health_state{state="STARTING"} 1"#));
        assert!(lines(&text).contains(&r#"cogvisor_slots{state="idle"} 2"#));
        let text = m
            .render(&health(HealthStatus::Ready, 2, 1, 0), Format::Prometheus)
            .expect("render");
        let l = lines(&text);
        assert!(l.contains(&r#"cogvisor_health_state{state="STARTING"} 0"#));
        assert!(l.contains(&r#"cogvisor_health_state{state="READY"} 1"#));
        assert!(l.contains(&r#"cogvisor_slots{state="idle"} 1"#));
        assert!(l.contains(&r#"cogvisor_slots{state="busy"} 1"#));
        let ones = l
            .iter()
            .filter(|line| line.starts_with("cogvisor_health_state{") && line.ends_with(" 1"))
            .count();
        assert_eq!(ones, 1, "{text}");
    }

    #[test]
    fn the_workers_memory_shows_while_known_and_memory_recycles_are_counted_by_trigger() {
        let m = Metrics::new();
        let render = || {
            m.render(&health(HealthStatus::Ready, 1, 0, 0), Format::Prometheus)
                .expect("render")
        };
        // Nothing known yet: the gauges are absent, not 0.
        let text = render();
        assert!(!text.contains("cogvisor_worker_rss_bytes"), "{text}");
        assert!(!text.contains("cogvisor_worker_gpu_memory_bytes"), "{text}");
        for trigger in ["max_rss", "max_gpu_memory"] {
            let zero = format!(
                r#"cogvisor_worker_recycles_total{{trigger="{trigger}",outcome="succeeded"}} 0"#
            );
            assert!(lines(&text).contains(&zero.as_str()), "{text}");
        }
        m.set_worker_memory(&WorkerMemory {
            rss_bytes: Some(425_000_000),
            gpu_bytes: Some(2 << 30),
        });
        m.observe(SupervisorEvent::RecycleFinished {
            trigger: RecycleTrigger::MaxRss,
            duration: Duration::from_millis(400),
            succeeded: true,
        });
        let text = render();
        let l = lines(&text);
        assert!(l.contains(&"cogvisor_worker_rss_bytes 425000000"), "{text}");
        assert!(
            l.contains(&"cogvisor_worker_gpu_memory_bytes 2147483648"),
            "{text}"
        );
        assert!(
            l.contains(
                &r#"cogvisor_worker_recycles_total{trigger="max_rss",outcome="succeeded"} 1"#
            ),
            "{text}"
        );
        // The worker is gone: no series rather than a stale one.
        m.set_worker_memory(&WorkerMemory::default());
        let text = render();
        assert!(!text.contains("cogvisor_worker_rss_bytes"), "{text}");
        assert!(!text.contains("cogvisor_worker_gpu_memory_bytes"), "{text}");
    }

    #[test]
    fn openmetrics_is_served_when_asked_for_and_ends_with_eof() {
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(
            Format::from_accept(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
            Format::Prometheus
        );
        let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(Format::from_accept(Some(accept)), Format::OpenMetrics);
        let text = Metrics::new()
            .render(&health(HealthStatus::Ready, 1, 0, 0), Format::OpenMetrics)
            .expect("render");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE cogvisor_predictions counter\n"),
            "{text}"
        );
        assert!(text.contains("# UNIT cogvisor_prediction_duration_seconds seconds\n"));
    }

    #[test]
    fn webhook_outcomes_follow_the_answer() {
        assert_eq!(WebhookOutcome::of(&Ok(204)), WebhookOutcome::Delivered);
        assert_eq!(WebhookOutcome::of(&Ok(503)), WebhookOutcome::Refused);
        assert_eq!(
            WebhookOutcome::of(&Err("connection refused".into())),
            WebhookOutcome::Error
        );
    }

    /// docs/metrics.md names every metric with its type, and nothing the server does not export.
    #[test]
    fn the_metrics_doc_lists_every_metric_with_its_type() {
        let doc = include_str!("../../../docs/metrics.md");
        let m = Metrics::new();
        // The memory gauges have a series only while there is something to show.
        m.set_worker_memory(&WorkerMemory {
            rss_bytes: Some(1),
            gpu_bytes: Some(1),
        });
        m.set_pool_memory(&[
            WorkerMemory {
                rss_bytes: Some(1),
                gpu_bytes: None,
            },
            WorkerMemory {
                rss_bytes: Some(1),
                gpu_bytes: None,
            },
        ]);
        let text = m
            .render(&pool_health(), Format::Prometheus)
            .expect("render");
        let mut exported = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                    panic!("bad TYPE line {line:?}");
                };
                exported.push(name.to_string());
                let row = format!("| `{name}` | {kind} |");
                assert!(doc.contains(&row), "docs/metrics.md lacks the row {row:?}");
            }
        }
        assert_eq!(exported.len(), 17, "{exported:?}");
        for line in doc.lines() {
            if let Some(rest) = line.strip_prefix("| `cogvisor_") {
                let name = format!("cogvisor_{}", rest.split('`').next().unwrap_or_default());
                assert!(
                    exported.contains(&name),
                    "docs/metrics.md lists {name}, which the server does not export"
                );
            }
        }
    }
}
