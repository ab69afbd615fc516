//! The prediction service: admits a prediction into a supervisor slot, connects its webhook sender,
//! hands back its [`Driver`], finds and cancels predictions by id, and drains them at shutdown.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cogvisor_supervisor::{AdmitError, PredictionRequest, WorkerPool};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::driver::Driver;
use super::history::StreamLimits;
use super::registry::{Registry, RetentionLimits};
use super::state::Prediction;
use crate::metrics::Metrics;
use crate::outbound::HttpClient;
use crate::schema::Kind;
use crate::upload::Uploader;
use crate::webhook::{self, DeliveryBudget, HttpTransport, Notifier, Webhook, WebhookSettings};

/// Default bound on what finished predictions keep in memory: 1000 predictions of 8 MiB in and out
/// would otherwise hold tens of GiB.
pub const DEFAULT_MAX_RETAINED_BYTES: usize = 64 * 1024 * 1024;

/// Settings of the prediction service.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Log bytes kept per prediction.
    pub log_limit: usize,
    /// How long a finished prediction stays answerable by id.
    pub retention: Duration,
    /// How many finished predictions are kept at most.
    pub max_retained: usize,
    /// Approximate bytes (input, outputs, SSE history) of finished predictions kept at most, less
    /// what webhook deliveries hold; the newest finished one is kept whatever its size.
    pub max_retained_bytes: usize,
    /// SSE events kept per prediction for late subscribers (COG_STREAM_HISTORY_CAPACITY; 0: none).
    pub history_capacity: usize,
    /// Bytes of SSE events kept per prediction for late subscribers (`sse.history_max_per_prediction`).
    pub history_max_bytes: usize,
    /// Bytes of live SSE events queued for one subscriber before it is cut off
    /// (`sse.max_buffered_per_subscriber`).
    pub subscriber_max_bytes: usize,
    /// Webhook token, throttle and retries.
    pub webhook: WebhookSettings,
    /// `--upload-url`: where file outputs are put (none: `data:` URLs).
    pub upload_url: Option<reqwest::Url>,
    /// The client webhooks and uploads use.
    pub http: HttpClient,
    /// Where predictions and webhooks are counted (`GET /metrics`).
    pub metrics: Arc<Metrics>,
    /// `outputs.max_file_size`: the largest output file read into a `data:` URL or an upload.
    pub max_output_file: u64,
    /// The server's drain token (`crate::shutdown`): once cancelled nothing new is admitted.
    /// [`PredictionService::drain`] cancels it too.
    pub shutdown: CancellationToken,
    /// The server's task tracker: drivers moved off their request and cancels for clients that went
    /// away run on it.
    pub tasks: TaskTracker,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            log_limit: crate::logs::DEFAULT_LOG_LIMIT,
            retention: Duration::from_secs(600),
            max_retained: 1000,
            max_retained_bytes: DEFAULT_MAX_RETAINED_BYTES,
            history_capacity: crate::config::DEFAULT_STREAM_HISTORY_CAPACITY,
            history_max_bytes: super::history::DEFAULT_HISTORY_MAX_BYTES,
            subscriber_max_bytes: super::history::DEFAULT_SUBSCRIBER_MAX_BYTES,
            webhook: WebhookSettings::default(),
            upload_url: None,
            http: HttpClient::default(),
            metrics: Arc::default(),
            max_output_file: crate::output_file::DEFAULT_MAX_OUTPUT_FILE,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }
}
/// Why a prediction was not created.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Admit(#[from] AdmitError),
    #[error("a prediction with id {0:?} is already running")]
    Running(String),
}

/// The `error` of a prediction a shutdown cancelled.
pub fn shutdown_cancel_reason(why: &str, deadline: Duration) -> String {
    format!(
        "prediction canceled: the server is shutting down ({why}) and the prediction did not finish within shutdown.drain_timeout ({}s)",
        deadline.as_secs_f64()
    )
}

/// Creates, runs, finds and cancels predictions.
#[derive(Debug)]
pub struct PredictionService {
    pub(super) supervisor: WorkerPool,
    pub(super) settings: ServiceSettings,
    pub(super) registry: Mutex<Registry>,
    /// The webhook sender tasks, so shutdown can wait for terminal webhooks to be delivered.
    pub(super) deliveries: TaskTracker,
    /// How webhooks are sent.
    pub(super) transport: Arc<HttpTransport>,
    /// What webhook deliveries hold, server-wide.
    pub(super) delivery_budget: Arc<DeliveryBudget>,
    /// Where file outputs go with `--upload-url`.
    pub(super) uploader: Option<Uploader>,
}

impl PredictionService {
    pub fn new(supervisor: WorkerPool, settings: ServiceSettings) -> Arc<Self> {
        let transport = Arc::new(HttpTransport {
            client: settings.http.clone(),
            auth_token: settings.webhook.auth_token.clone(),
        });
        let uploader = settings
            .upload_url
            .clone()
            .map(|url| Uploader::new(settings.http.clone(), url));
        let delivery_budget = Arc::new(DeliveryBudget::new(
            settings.webhook.max_in_flight,
            settings.webhook.max_in_flight_bytes,
        ));
        Arc::new(Self {
            supervisor,
            transport,
            uploader,
            settings,
            delivery_budget,
            registry: Mutex::default(),
            deliveries: TaskTracker::new(),
        })
    }

    pub(super) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A running or recently finished prediction.
    pub fn get(&self, id: &str) -> Option<Arc<Prediction>> {
        let mut registry = self.registry();
        self.prune(&mut registry);
        registry.get(id).cloned()
    }

    /// Admits a prediction into a slot and starts it; its webhooks (if any) are sent by a task on the
    /// delivery tracker. The returned [`Driver`] applies the worker's events to the prediction: a
    /// sync request runs it on its own task ([`Driver::run`]); dropping it unfinished (an async
    /// request, or a client that went away) moves it to a task of its own, so the prediction always
    /// runs to its end.
    pub async fn create(
        self: &Arc<Self>,
        kind: Kind,
        id: String,
        input: Value,
        context: std::collections::BTreeMap<String, String>,
        output_is_array: bool,
        webhook: Option<Webhook>,
    ) -> Result<(Arc<Prediction>, Driver), CreateError> {
        if self.is_draining() {
            return Err(CreateError::Admit(AdmitError::ShuttingDown));
        }
        if self.get(&id).is_some_and(|p| !p.status().is_terminal()) {
            return Err(CreateError::Running(id));
        }
        let input = Arc::new(input);
        let prediction = Arc::new(
            Prediction::with_history(
                id.clone(),
                kind,
                input.clone(),
                output_is_array,
                self.settings.log_limit,
                self.settings.history_capacity,
            )
            .with_stream_limits(StreamLimits {
                history_capacity: self.settings.history_capacity,
                history_max_bytes: self.settings.history_max_bytes,
                subscriber_max_bytes: self.settings.subscriber_max_bytes,
            }),
        );
        let stream = self
            .supervisor
            .predict(PredictionRequest {
                id: id.clone(),
                input,
                context,
            })
            .await?;
        // From the admission, as `started_at`: a prediction that waited for a worker being
        // replaced (`recycle.admission_wait`) does not count the wait in `predict_time`.
        let started = Instant::now();
        if let Some(webhook) = webhook {
            let notifier = Arc::new(Notifier::new(webhook.events));
            prediction.set_webhook(notifier.clone());
            let sender = webhook::Sender {
                transport: self.transport.clone(),
                webhook,
                notifier,
                prediction: prediction.clone(),
                throttle: self.settings.webhook.throttle,
                backoff: self.settings.webhook.backoff,
                metrics: self.settings.metrics.clone(),
                budget: self.delivery_budget.clone(),
            };
            self.deliveries.spawn(sender.run());
        }
        prediction.start();
        {
            self.registry().insert(prediction.clone());
        }
        let driver = Driver {
            tasks: self.settings.tasks.clone(),
            drive: Some(Box::pin(self.clone().drive(
                prediction.clone(),
                stream,
                started,
            ))),
        };
        Ok((prediction, driver))
    }

    /// Drops finished predictions past the retention window, the count limit or the byte limit.
    /// The byte limit is shared with the webhook deliveries: the payloads they hold (each a finished
    /// prediction's state, being sent or waiting for a retry) count first, and the finished
    /// predictions kept for `GET` get what is left (the newest is always kept). So a receiver that
    /// never answers costs no more memory than the retention budget, not that plus the deliveries'.
    pub(super) fn prune(&self, registry: &mut Registry) {
        let (_, delivering) = self.delivery_budget.in_use();
        registry.prune(
            Instant::now(),
            RetentionLimits {
                retention: self.settings.retention,
                max_retained: self.settings.max_retained,
                max_retained_bytes: self.settings.max_retained_bytes.saturating_sub(delivering),
            },
        );
    }

    /// Predictions that have not ended.
    pub fn running(&self) -> Vec<Arc<Prediction>> {
        self.registry().running().cloned().collect()
    }

    /// True once a shutdown has begun: nothing new is admitted.
    pub fn is_draining(&self) -> bool {
        self.settings.shutdown.is_cancelled()
    }

    /// Shutdown, first part: stop admitting, give running predictions (async ones too) `deadline` to
    /// finish, then cancel the rest and give them `cancel_grace` to end. A prediction cancelled here
    /// ends `canceled` with an `error` naming the shutdown and `why` (what asked for it: `SIGTERM`,
    /// `SIGINT`, `POST /shutdown`). Returns how many were cancelled. What is still running after
    /// that ends when the worker is stopped.
    pub async fn drain(&self, deadline: Duration, cancel_grace: Duration, why: &str) -> usize {
        self.settings.shutdown.cancel();
        let running = self.running();
        if !running.is_empty() {
            tracing::info!(
                running = running.len(),
                ?deadline,
                "draining: waiting for running predictions"
            );
        }
        let all_finished = |ps: &[Arc<Prediction>]| {
            let waits: Vec<_> = ps
                .iter()
                .map(|p| {
                    let p = p.clone();
                    async move { p.finished().await }
                })
                .collect();
            futures::future::join_all(waits)
        };
        let mut cancelled = 0;
        if tokio::time::timeout(deadline, all_finished(&running))
            .await
            .is_err()
        {
            let left = self.running();
            tracing::warn!(
                left = left.len(),
                "drain deadline passed; cancelling the predictions still running"
            );
            let reason = shutdown_cancel_reason(why, deadline);
            for p in &left {
                p.set_cancel_reason(reason.clone());
                if self.supervisor.cancel(&p.id).await {
                    cancelled += 1;
                }
            }
            if tokio::time::timeout(cancel_grace, all_finished(&left))
                .await
                .is_err()
            {
                tracing::warn!(
                    "predictions still running after the cancel grace; the worker stop ends them"
                );
            }
        }
        cancelled
    }

    /// Shutdown, last part: waits up to `limit` for terminal webhooks still being delivered.
    pub async fn wait_deliveries(&self, limit: Duration) {
        self.deliveries.close();
        if tokio::time::timeout(limit, self.deliveries.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = self.deliveries.len(),
                "webhook deliveries still pending at exit"
            );
        }
    }

    /// Where predictions, webhooks and hooks are counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.settings.metrics
    }

    /// [`PredictionService::cancel`] on a task of its own, on the server's tracker: for a drop (a
    /// client that went away) that cannot wait.
    pub fn cancel_detached(self: &Arc<Self>, id: String) {
        let this = self.clone();
        self.settings.tasks.spawn(async move {
            this.cancel(&id).await;
        });
    }

    /// Cancels a running prediction. False when no running prediction has that id.
    pub async fn cancel(&self, id: &str) -> bool {
        match self.get(id) {
            Some(p) if !p.status().is_terminal() => self.supervisor.cancel(id).await,
            _ => false,
        }
    }
}
