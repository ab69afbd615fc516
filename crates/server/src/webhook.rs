//! Webhooks: a prediction's state `POST`ed to the URL its request named, as Cog sends them.
//!
//! Each prediction with a webhook gets one sender task, so its webhooks arrive in order. The prediction
//! only marks which events happened ([`Notifier::fire`]); the sender builds the payload when it sends,
//! so a payload always carries everything so far, and events that arrive while a send is in flight or
//! while `logs` are throttled are coalesced into the next send instead of being dropped
//! (≠ coglet, which drops throttled `logs` and sends unordered). `start` and `output` are sent at once,
//! `logs` at most once per throttle interval, and the terminal webhook (`completed`) is retried with
//! exponential backoff on 429, 5xx and connection errors. Sender tasks run on the service's delivery
//! tracker, so a shutdown waits for them.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use reqwest::Url;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::{Metrics, WebhookOutcome};
use crate::outbound::{error_chain, is_transient, Backoff, HttpClient};
use crate::predictions::Prediction;

/// Cog's default `COG_THROTTLE_RESPONSE_INTERVAL`: 0.5 s.
pub const DEFAULT_THROTTLE: Duration = Duration::from_millis(500);

/// Timeout of one webhook request (Cog's).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// One kind of webhook event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Start,
    Output,
    Logs,
    Completed,
}

impl Event {
    pub const ALL: [Event; 4] = [Event::Start, Event::Output, Event::Logs, Event::Completed];

    fn bit(self) -> u8 {
        match self {
            Event::Start => 1,
            Event::Output => 2,
            Event::Logs => 4,
            Event::Completed => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Output => "output",
            Event::Logs => "logs",
            Event::Completed => "completed",
        }
    }

    pub fn parse(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// A set of events (a `webhook_events_filter`, or what is pending).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventSet(u8);

impl EventSet {
    pub const ALL: EventSet = EventSet(15);

    pub fn contains(self, event: Event) -> bool {
        self.0 & event.bit() != 0
    }

    pub fn with(self, event: Event) -> EventSet {
        EventSet(self.0 | event.bit())
    }
}

/// Why a request's webhook fields are refused (422, naming the field).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook {url:?} is not a valid http or https URL: {reason}")]
    Url { url: String, reason: String },
    #[error("webhook_events_filter item {value:?} is not one of \"start\", \"output\", \"logs\", \"completed\"")]
    UnknownEvent { index: usize, value: String },
}

impl WebhookError {
    /// The request field at fault, as a 422 `loc`.
    pub fn loc(&self) -> Vec<String> {
        match self {
            WebhookError::Url { .. } => vec!["body".into(), "webhook".into()],
            WebhookError::UnknownEvent { index, .. } => vec![
                "body".into(),
                "webhook_events_filter".into(),
                index.to_string(),
            ],
        }
    }
}

/// Where one prediction's webhooks go, which events, and the trace headers passed on.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: Url,
    pub events: EventSet,
    /// The request's `traceparent` and `tracestate`, copied verbatim.
    pub trace: Vec<(HeaderName, HeaderValue)>,
}

impl Webhook {
    /// The webhook a request asks for, if any. The filter defaults to every event, as in Cog.
    pub fn from_request(
        url: Option<&str>,
        filter: Option<&[String]>,
        headers: &HeaderMap,
    ) -> Result<Option<Webhook>, WebhookError> {
        let events = match filter {
            None => EventSet::ALL,
            Some(items) => {
                let mut set = EventSet::default();
                for (index, item) in items.iter().enumerate() {
                    let event = Event::parse(item).ok_or_else(|| WebhookError::UnknownEvent {
                        index,
                        value: item.clone(),
                    })?;
                    set = set.with(event);
                }
                set
            }
        };
        let Some(url) = url else { return Ok(None) };
        let bad = |reason: &str| WebhookError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(&format!(
                "the scheme is {:?}, not http or https",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("it has no host"));
        }
        let trace = ["traceparent", "tracestate"]
            .into_iter()
            .filter_map(|name| {
                let value = headers.get(name)?.clone();
                Some((HeaderName::from_static(name), value))
            })
            .collect();
        Ok(Some(Webhook {
            url: parsed,
            events,
            trace,
        }))
    }
}

/// Webhook settings shared by every prediction.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// `WEBHOOK_AUTH_TOKEN`: sent as `Authorization: Bearer <token>`.
    pub auth_token: Option<String>,
    /// `COG_THROTTLE_RESPONSE_INTERVAL`: least time between two `logs` sends.
    pub throttle: Duration,
    /// Retries of the terminal webhook.
    pub backoff: Backoff,
    /// `webhooks.max_in_flight`: payloads held at once by every delivery ([`DeliveryBudget`]).
    pub max_in_flight: usize,
    /// `webhooks.max_in_flight_bytes`: their bytes.
    pub max_in_flight_bytes: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            auth_token: None,
            throttle: DEFAULT_THROTTLE,
            backoff: Backoff::COG,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
        }
    }
}

/// A bad webhook setting in the environment.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name}={value:?} is not valid: {allowed}")]
pub struct SettingError {
    pub name: &'static str,
    pub value: String,
    pub allowed: &'static str,
}

impl WebhookSettings {
    /// Reads `WEBHOOK_AUTH_TOKEN` and `COG_THROTTLE_RESPONSE_INTERVAL` (float seconds, default 0.5).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let auth_token = env("WEBHOOK_AUTH_TOKEN").filter(|t| !t.is_empty());
        let throttle = match env("COG_THROTTLE_RESPONSE_INTERVAL") {
            None => DEFAULT_THROTTLE,
            Some(v) if v.trim().is_empty() => DEFAULT_THROTTLE,
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or(SettingError {
                    name: "COG_THROTTLE_RESPONSE_INTERVAL",
                    value: v,
                    allowed: "a number of seconds, 0 or more",
                })?,
        };
        Ok(Self {
            auth_token,
            throttle,
            ..Self::default()
        })
    }
}

/// How a prediction tells its sender what happened.
#[derive(Debug)]
pub struct Notifier {
    filter: EventSet,
    pending: AtomicU8,
    wake: Notify,
}

impl Notifier {
    pub fn new(filter: EventSet) -> Self {
        Self {
            filter,
            pending: AtomicU8::new(0),
            wake: Notify::new(),
        }
    }

    /// Marks `event` as happened. Events outside the filter are ignored, except `completed`, which
    /// always ends the sender (and is sent only when in the filter).
    pub fn fire(&self, event: Event) {
        if event == Event::Completed || self.filter.contains(event) {
            self.pending.fetch_or(event.bit(), Ordering::SeqCst);
            self.wake.notify_one();
        }
    }

    fn peek(&self) -> EventSet {
        EventSet(self.pending.load(Ordering::SeqCst))
    }

    fn take(&self) -> EventSet {
        EventSet(self.pending.swap(0, Ordering::SeqCst))
    }
}

/// What a send produced: an HTTP status, or a transport error.
pub type SendResult = Result<u16, String>;

/// Sends one webhook request. [`HttpTransport`] in the server; a recorder in tests. The body is
/// shared: a retry sends the same bytes, not a copy.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, webhook: &Webhook, body: Bytes) -> impl Future<Output = SendResult> + Send;
}

/// Webhooks over HTTP with reqwest.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    pub client: HttpClient,
    pub auth_token: Option<String>,
}

impl Transport for HttpTransport {
    async fn send(&self, webhook: &Webhook, body: Bytes) -> SendResult {
        let client = self.client.get().map_err(|e| e.to_string())?;
        let mut request = client
            .post(webhook.url.clone())
            .timeout(SEND_TIMEOUT)
            .header("content-type", "application/json")
            .header("accept", "*/*")
            .body(body);
        if let Some(token) = &self.auth_token {
            request = request.bearer_auth(token);
        }
        for (name, value) in &webhook.trace {
            request = request.header(name.clone(), value.clone());
        }
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) => Err(error_chain(&e)),
        }
    }
}

/// Default of `webhooks.max_in_flight`: webhook payloads held at once, server-wide.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Default of `webhooks.max_in_flight_bytes`: bytes of webhook payloads held at once, server-wide.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;

/// What webhook deliveries hold, server-wide: the payload of every request being sent, and of every
/// terminal webhook waiting for its next retry. A payload is held only while it is in the budget.
///
/// The policy when it is full, chosen so that what is lost is what matters least:
/// * a non-terminal webhook (`start`, `output`, `logs`) may use only half of the budget (count and
///   bytes); when it does not fit it is not sent, and its state rides on the next webhook of the
///   prediction (the body is always the whole state so far), the terminal one at the latest;
/// * the terminal webhook may use all of it; when it does not fit it is dropped with an error in
///   the log and `cogvisor_webhook_deliveries_total{outcome="dropped"}`, and the prediction stays
///   answerable by `GET /predictions/{id}` for its retention window. A terminal payload larger than
///   the whole budget is sent when no other delivery holds anything.
#[derive(Debug)]
pub struct DeliveryBudget {
    max_count: usize,
    max_bytes: usize,
    used: std::sync::Mutex<Used>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Used {
    count: usize,
    bytes: usize,
}

impl Default for DeliveryBudget {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_BYTES)
    }
}

impl DeliveryBudget {
    pub fn new(max_count: usize, max_bytes: usize) -> Self {
        Self {
            max_count,
            max_bytes,
            used: std::sync::Mutex::default(),
        }
    }

    fn used(&self) -> std::sync::MutexGuard<'_, Used> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Payloads and their bytes held now.
    pub fn in_use(&self) -> (usize, usize) {
        let used = *self.used();
        (used.count, used.bytes)
    }

    /// Takes room for a payload of `bytes`, by the policy above; `None` when it does not fit.
    pub fn hold(self: &Arc<Self>, bytes: usize, terminal: bool) -> Option<Hold> {
        let mut used = self.used();
        let fits = if terminal {
            (used.count < self.max_count && used.bytes + bytes <= self.max_bytes) || used.count == 0
        } else {
            used.count < self.max_count.div_ceil(2) && used.bytes + bytes <= self.max_bytes / 2
        };
        if !fits {
            return None;
        }
        used.count += 1;
        used.bytes += bytes;
        Some(Hold {
            budget: self.clone(),
            bytes,
        })
    }
}

/// Room held in the [`DeliveryBudget`] for one payload; given back when dropped.
#[derive(Debug)]
pub struct Hold {
    budget: Arc<DeliveryBudget>,
    bytes: usize,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut used = self.budget.used();
        used.count -= 1;
        used.bytes -= self.bytes;
    }
}

/// The one task that sends a prediction's webhooks, in order.
pub struct Sender<T: Transport> {
    pub transport: Arc<T>,
    pub webhook: Webhook,
    pub notifier: Arc<Notifier>,
    /// Held until the terminal payload is built; its retries hold only that payload.
    pub prediction: Arc<Prediction>,
    pub throttle: Duration,
    pub backoff: Backoff,
    /// Counts every request by outcome.
    pub metrics: Arc<Metrics>,
    /// What every delivery of the server holds.
    pub budget: Arc<DeliveryBudget>,
}

/// What sends the requests of one prediction's webhooks, without the prediction.
struct Delivery<T: Transport> {
    transport: Arc<T>,
    webhook: Webhook,
    backoff: Backoff,
    metrics: Arc<Metrics>,
    budget: Arc<DeliveryBudget>,
    id: String,
}

impl<T: Transport> Sender<T> {
    /// Sends until the terminal webhook has gone (or given up).
    pub async fn run(self) {
        let Sender {
            transport,
            webhook,
            notifier,
            prediction,
            throttle,
            backoff,
            metrics,
            budget,
        } = self;
        let delivery = Delivery {
            transport,
            webhook,
            backoff,
            metrics,
            budget,
            id: prediction.id.clone(),
        };
        let mut run = Run {
            prediction: Some(prediction),
            terminal: None,
        };
        let mut last_sent: Option<Instant> = None;
        loop {
            let pending = notifier.peek();
            if pending.contains(Event::Completed) {
                let pending = notifier.take();
                let Some(terminal) = run.terminal_payload(&delivery) else {
                    return;
                };
                if delivery.webhook.events.contains(Event::Completed) {
                    delivery.send_terminal(terminal).await;
                } else if pending != EventSet::default().with(Event::Completed) {
                    // Not asked for `completed`, but the last output or logs are: send them, as
                    // a non-terminal webhook.
                    let Terminal { body, hold } = terminal;
                    drop(hold);
                    delivery.send_once(body, &notifier, &mut run).await;
                }
                return;
            }
            if pending.contains(Event::Start) || pending.contains(Event::Output) {
                notifier.take();
                if let Some(body) = run.payload() {
                    delivery.send_once(body, &notifier, &mut run).await;
                }
                last_sent = Some(Instant::now());
                continue;
            }
            if pending.contains(Event::Logs) {
                let due = last_sent.map_or_else(Instant::now, |t| t + throttle);
                if Instant::now() >= due {
                    notifier.take();
                    if let Some(body) = run.payload() {
                        delivery.send_once(body, &notifier, &mut run).await;
                    }
                    last_sent = Some(Instant::now());
                } else {
                    // Throttled: wait for the interval to pass, or for an event sent at once
                    // (output, completed), which then carries these logs too.
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = notifier.wake.notified() => {}
                    }
                }
                continue;
            }
            notifier.wake.notified().await;
        }
    }
}

/// The terminal webhook's payload, built once, and its room in the budget.
struct Terminal {
    body: Bytes,
    hold: Option<Hold>,
}

/// What a sender holds of its prediction: the prediction itself until it ends, then only the
/// terminal payload.
struct Run {
    prediction: Option<Arc<Prediction>>,
    terminal: Option<Terminal>,
}

impl Run {
    /// The state now, for a non-terminal webhook (none once the prediction has ended).
    fn payload(&self) -> Option<Bytes> {
        self.prediction
            .as_ref()
            .map(|p| Bytes::from(p.snapshot_json()))
    }

    /// The prediction has ended: builds the terminal payload, takes its room in the budget, and
    /// lets go of the prediction (its input, outputs, history and logs).
    fn end<T: Transport>(&mut self, delivery: &Delivery<T>) {
        if let Some(prediction) = self.prediction.take() {
            let body = Bytes::from(prediction.snapshot_json());
            drop(prediction);
            let hold = delivery.budget.hold(body.len(), true);
            self.terminal = Some(Terminal { body, hold });
        }
    }

    fn terminal_payload<T: Transport>(&mut self, delivery: &Delivery<T>) -> Option<Terminal> {
        self.end(delivery);
        self.terminal.take()
    }
}

impl<T: Transport> Delivery<T> {
    /// Sends one request and counts its outcome.
    async fn send(&self, body: &Bytes) -> SendResult {
        let result = self.transport.send(&self.webhook, body.clone()).await;
        self.metrics.record_webhook(WebhookOutcome::of(&result));
        result
    }

    /// A non-terminal webhook: one attempt (the next send carries the same state anyway), if the
    /// budget has room for it. If the prediction ends meanwhile, its terminal payload is built at
    /// once and the prediction let go, so a slow receiver does not keep a finished prediction alive.
    async fn send_once(&self, body: Bytes, notifier: &Notifier, run: &mut Run) {
        let Some(_hold) = self.budget.hold(body.len(), false) else {
            let (count, bytes) = self.budget.in_use();
            tracing::debug!(prediction_id = %self.id, url = %self.webhook.url, payload_bytes = body.len(), in_flight = count, in_flight_bytes = bytes, "webhook not sent: the delivery budget is full; the next webhook carries its state");
            self.metrics.record_webhook(WebhookOutcome::Dropped);
            return;
        };
        let send = self.send(&body);
        tokio::pin!(send);
        let result = loop {
            tokio::select! {
                result = &mut send => break result,
                _ = notifier.wake.notified(), if run.prediction.is_some() => {
                    // Whatever woke this is still pending for the run loop, which peeks first.
                    if notifier.peek().contains(Event::Completed) {
                        run.end(self);
                    }
                }
            }
        };
        match result {
            Ok(status) if (200..300).contains(&status) => {}
            Ok(status) => {
                tracing::warn!(prediction_id = %self.id, url = %self.webhook.url, status, "webhook refused")
            }
            Err(error) => {
                tracing::warn!(prediction_id = %self.id, url = %self.webhook.url, %error, "webhook not delivered")
            }
        }
    }

    /// The terminal webhook, retried on 429, 5xx and connection errors, if the budget has room.
    async fn send_terminal(&self, terminal: Terminal) {
        let Terminal { body, hold } = terminal;
        let Some(_hold) = hold else {
            let (count, bytes) = self.budget.in_use();
            tracing::error!(
                prediction_id = %self.id,
                url = %self.webhook.url,
                payload_bytes = body.len(),
                in_flight = count,
                in_flight_bytes = bytes,
                "terminal webhook dropped: the delivery budget (webhooks.max_in_flight, webhooks.max_in_flight_bytes) is full"
            );
            self.metrics.record_webhook(WebhookOutcome::Dropped);
            return;
        };
        let mut retry = 0;
        loop {
            let outcome = self.send(&body).await;
            let transient = match &outcome {
                Ok(status) if (200..300).contains(status) => return,
                Ok(status) => is_transient(*status),
                Err(_) => true,
            };
            let what = match &outcome {
                Ok(status) => format!("HTTP {status}"),
                Err(e) => e.clone(),
            };
            if !transient || retry >= self.backoff.retries {
                tracing::error!(
                    prediction_id = %self.id,
                    url = %self.webhook.url,
                    attempts = retry + 1,
                    error = %what,
                    "terminal webhook not delivered; giving up"
                );
                return;
            }
            retry += 1;
            let delay = self.backoff.delay(retry);
            tracing::warn!(
                prediction_id = %self.id,
                url = %self.webhook.url,
                error = %what,
                retry_in = ?delay,
                "terminal webhook failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_defaults_to_every_event_and_rejects_unknown_ones() {
        let h = HeaderMap::new();
        let w = Webhook::from_request(Some("http://example.com/hook"), None, &h)
            .expect("valid")
            .expect("some");
        assert_eq!(w.events, EventSet::ALL);
        let w = Webhook::from_request(
            Some("https://example.com/hook"),
            Some(&["start".into(), "completed".into()]),
            &h,
        )
        .expect("valid")
        .expect("some");
        assert!(w.events.contains(Event::Start) && w.events.contains(Event::Completed));
        assert!(!w.events.contains(Event::Logs));
        let e = Webhook::from_request(
            Some("http://x/"),
            Some(&["start".into(), "bogus".into()]),
            &h,
        )
        .expect_err("unknown event");
        assert_eq!(e.loc(), ["body", "webhook_events_filter", "1"]);
        assert!(e.to_string().contains("\"bogus\""), "{e}");
        assert!(Webhook::from_request(None, None, &h)
            .expect("no webhook")
            .is_none());
    }

    #[test]
    fn webhook_urls_must_be_http_or_https() {
        let h = HeaderMap::new();
        for bad in [
            "not a url",
            "ftp://example.com/x",
            "file:///etc/passwd",
            "http://",
        ] {
            let e = Webhook::from_request(Some(bad), None, &h).expect_err(bad);
            assert_eq!(e.loc(), ["body", "webhook"]);
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn trace_headers_are_passed_on() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static("00-abc-def-01"));
        h.insert("tracestate", HeaderValue::from_static("k=v"));
        h.insert("x-other", HeaderValue::from_static("no"));
        let w = Webhook::from_request(Some("http://h/"), None, &h)
            .expect("valid")
            .expect("some");
        let names: Vec<&str> = w.trace.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["traceparent", "tracestate"]);
    }

    #[test]
    fn the_delivery_budget_keeps_half_for_terminal_webhooks() {
        let budget = Arc::new(DeliveryBudget::new(4, 1000));
        let a = budget.hold(300, false).expect("room");
        assert!(
            budget.hold(300, false).is_none(),
            "non-terminal: half the bytes"
        );
        let b = budget.hold(100, false).expect("room");
        assert!(
            budget.hold(10, false).is_none(),
            "non-terminal: half the count"
        );
        let c = budget.hold(500, true).expect("terminal: all of it");
        assert!(budget.hold(200, true).is_none(), "over the bytes");
        let d = budget.hold(100, true).expect("room");
        assert!(budget.hold(0, true).is_none(), "over the count");
        assert_eq!(budget.in_use(), (4, 1000));
        drop((a, b, c, d));
        assert_eq!(budget.in_use(), (0, 0));
        // A terminal payload larger than the whole budget goes when nothing else is held.
        let huge = budget.hold(5000, true).expect("alone");
        assert!(budget.hold(1, true).is_none());
        drop(huge);
        let small = budget.hold(1, true).expect("room");
        assert!(budget.hold(5000, true).is_none(), "not alone");
        drop(small);
    }

    #[test]
    fn throttle_from_the_environment() {
        let none = |_: &str| None;
        assert_eq!(
            WebhookSettings::from_env(&none).expect("default").throttle,
            DEFAULT_THROTTLE
        );
        let env = |name: &str| match name {
            "COG_THROTTLE_RESPONSE_INTERVAL" => Some("0.25".to_string()),
            "WEBHOOK_AUTH_TOKEN" => Some("tok".to_string()),
            _ => None,
        };
        let s = WebhookSettings::from_env(&env).expect("valid");
        assert_eq!(s.throttle, Duration::from_millis(250));
        assert_eq!(s.auth_token.as_deref(), Some("tok"));
        for bad in ["-1", "abc", "inf"] {
            let env = move |name: &str| {
                (name == "COG_THROTTLE_RESPONSE_INTERVAL").then(|| bad.to_string())
            };
            let e = WebhookSettings::from_env(&env).expect_err(bad);
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
