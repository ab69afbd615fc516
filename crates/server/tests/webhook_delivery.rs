//! Webhook delivery through a recording transport, on paused time: order, throttling that coalesces,
//! the events filter, the terminal webhook's retries and backoff, and the counted outcomes.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cogvisor_server::metrics::Metrics;
use cogvisor_server::outbound::Backoff;
use cogvisor_server::predictions::Prediction;
use cogvisor_server::schema::Kind;
use cogvisor_server::webhook::{
    DeliveryBudget, Event, EventSet, Notifier, SendResult, Sender, Transport, Webhook,
    DEFAULT_THROTTLE,
};
use cogvisor_supervisor::PredictionEvent;
use reqwest::Url;
use serde_json::{json, Value};
use tokio::time::Instant;

/// Records every send with the (paused, so exact) time it happened, answering from a script.
struct Recorder {
    start: Instant,
    sent: Mutex<Vec<(Duration, Value)>>,
    /// Where each body's bytes were: the same place for every attempt of one payload.
    bodies: Mutex<Vec<usize>>,
    script: Mutex<Vec<SendResult>>,
    latency: Duration,
}

impl Recorder {
    fn new(script: Vec<SendResult>) -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            sent: Mutex::default(),
            bodies: Mutex::default(),
            script: Mutex::new(script),
            latency: Duration::ZERO,
        })
    }

    fn slow(script: Vec<SendResult>, latency: Duration) -> Arc<Self> {
        let mut rec = Arc::into_inner(Self::new(script)).expect("new");
        rec.latency = latency;
        Arc::new(rec)
    }

    fn sent(&self) -> Vec<(Duration, Value)> {
        self.sent.lock().expect("lock").clone()
    }
}

impl Transport for Recorder {
    async fn send(&self, _webhook: &Webhook, body: bytes::Bytes) -> SendResult {
        self.bodies
            .lock()
            .expect("lock")
            .push(body.as_ptr() as usize);
        tokio::time::sleep(self.latency).await;
        let value: Value = serde_json::from_slice(&body).expect("json");
        self.sent
            .lock()
            .expect("lock")
            .push((self.start.elapsed(), value));
        let mut script = self.script.lock().expect("lock");
        if script.is_empty() {
            Ok(200)
        } else {
            script.remove(0)
        }
    }
}

fn setup(
    events: EventSet,
    recorder: Arc<Recorder>,
    throttle: Duration,
) -> (Arc<Prediction>, tokio::task::JoinHandle<()>) {
    setup_counted(events, recorder, throttle, Arc::default())
}

fn setup_counted(
    events: EventSet,
    recorder: Arc<Recorder>,
    throttle: Duration,
    metrics: Arc<Metrics>,
) -> (Arc<Prediction>, tokio::task::JoinHandle<()>) {
    setup_budgeted(events, recorder, throttle, metrics, Arc::default())
}

fn setup_budgeted(
    events: EventSet,
    recorder: Arc<Recorder>,
    throttle: Duration,
    metrics: Arc<Metrics>,
    budget: Arc<DeliveryBudget>,
) -> (Arc<Prediction>, tokio::task::JoinHandle<()>) {
    let notifier = Arc::new(Notifier::new(events));
    let prediction = Arc::new(Prediction::with_history(
        "w1".into(),
        Kind::Prediction,
        json!({}),
        false,
        1024,
        16,
    ));
    prediction.set_webhook(notifier.clone());
    let sender = Sender {
        transport: recorder,
        webhook: Webhook {
            url: Url::parse("http://receiver/hook").expect("url"),
            events,
            trace: Vec::new(),
        },
        notifier,
        prediction: prediction.clone(),
        throttle,
        backoff: Backoff::COG,
        metrics,
        budget,
    };
    (prediction, tokio::spawn(sender.run()))
}

fn log(p: &Prediction, text: &str) {
    p.apply(PredictionEvent::Log {
        source: cogvisor_protocol::LogSource::Stdout,
        data: text.into(),
    });
}

fn end(p: &Prediction) {
    p.apply(PredictionEvent::Succeeded {
        predict_time: 0.0,
        is_stream: false,
    });
    p.finish(1.0);
}

/// Lets the sender task run until it waits for time or an event.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn webhooks_go_in_order_and_the_last_one_is_terminal() {
    let rec = Recorder::new(vec![]);
    let (p, task) = setup(EventSet::ALL, rec.clone(), DEFAULT_THROTTLE);
    p.start();
    settle().await;
    p.apply(PredictionEvent::Output(json!("a")));
    settle().await;
    end(&p);
    task.await.expect("sender");
    let statuses: Vec<String> = rec
        .sent()
        .iter()
        .map(|(_, v)| v["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(statuses, ["processing", "processing", "succeeded"]);
    let sent = rec.sent();
    assert_eq!(sent[1].1["output"], json!(["a"]));
    assert_eq!(sent[2].1["output"], json!("a"));
    assert!(sent[2].1["completed_at"].is_string());
    assert_eq!(sent[0].1["input"], json!({}));
}

#[tokio::test(start_paused = true)]
async fn throttled_logs_are_coalesced_into_a_later_send_not_dropped() {
    let rec = Recorder::new(vec![]);
    let throttle = Duration::from_millis(500);
    let (p, task) = setup(EventSet::ALL, rec.clone(), throttle);
    p.start();
    settle().await;
    // Three lines inside the throttle window after `start`: one send at +0.5 s with all three.
    for line in ["a\n", "b\n", "c\n"] {
        log(&p, line);
        settle().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    settle().await;
    let sent = rec.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1].0, throttle);
    assert_eq!(sent[1].1["logs"], "a\nb\nc\n");
    assert_eq!(sent[1].1["status"], "processing");
    // A line long after the last send goes at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    log(&p, "d\n");
    settle().await;
    assert_eq!(rec.sent().len(), 3);
    end(&p);
    task.await.expect("sender");
    assert_eq!(rec.sent().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_output_during_the_throttle_carries_the_pending_logs_at_once() {
    let rec = Recorder::new(vec![]);
    let (p, task) = setup(EventSet::ALL, rec.clone(), Duration::from_secs(10));
    p.start();
    settle().await;
    log(&p, "x\n");
    settle().await;
    p.apply(PredictionEvent::Output(json!(1)));
    settle().await;
    let sent = rec.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].0, Duration::ZERO);
    assert_eq!(sent[1].1["logs"], "x\n");
    end(&p);
    task.await.expect("sender");
}

#[tokio::test(start_paused = true)]
async fn the_filter_limits_what_is_sent() {
    let rec = Recorder::new(vec![]);
    let only_completed = EventSet::default().with(Event::Completed);
    let (p, task) = setup(only_completed, rec.clone(), Duration::ZERO);
    p.start();
    log(&p, "x\n");
    p.apply(PredictionEvent::Output(json!(1)));
    settle().await;
    assert!(rec.sent().is_empty());
    end(&p);
    task.await.expect("sender");
    let sent = rec.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1["status"], "succeeded");

    let rec = Recorder::new(vec![]);
    let only_start = EventSet::default().with(Event::Start);
    let (p, task) = setup(only_start, rec.clone(), Duration::ZERO);
    p.start();
    settle().await;
    log(&p, "x\n");
    end(&p);
    task.await.expect("sender");
    assert_eq!(rec.sent().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_terminal_webhook_is_retried_with_backoff_on_transient_failures() {
    let rec = Recorder::new(vec![
        Ok(503),
        Err("connection refused".into()),
        Ok(429),
        Ok(200),
    ]);
    let (p, task) = setup(
        EventSet::default().with(Event::Completed),
        rec.clone(),
        DEFAULT_THROTTLE,
    );
    p.start();
    end(&p);
    task.await.expect("sender");
    let times: Vec<f64> = rec.sent().iter().map(|(t, _)| t.as_secs_f64()).collect();
    assert_eq!(times.len(), 4);
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let expected = [0.2, 0.4, 0.8];
    for (gap, want) in gaps.iter().zip(expected) {
        assert!((gap - want).abs() < 1e-6, "{gaps:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn every_request_is_counted_by_outcome() {
    let rec = Recorder::new(vec![
        Ok(503),
        Err("connection refused".into()),
        Ok(429),
        Ok(204),
    ]);
    let metrics = Arc::new(Metrics::new());
    let (p, task) = setup_counted(
        EventSet::default().with(Event::Completed),
        rec.clone(),
        DEFAULT_THROTTLE,
        metrics.clone(),
    );
    p.start();
    end(&p);
    task.await.expect("sender");
    let health = common::health(cogvisor_supervisor::HealthStatus::Ready, 1, 0, 0);
    let text = metrics
        .render(&health, cogvisor_server::metrics::Format::Prometheus)
        .expect("render");
    for line in [
        r#"cogvisor_webhook_deliveries_total{outcome="refused"} 2"#,
        r#"cogvisor_webhook_deliveries_total{outcome="error"} 1"#,
        r#"cogvisor_webhook_deliveries_total{outcome="delivered"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_final_refusal_is_not_retried_and_retries_are_bounded() {
    let rec = Recorder::new(vec![Ok(400)]);
    let (p, task) = setup(EventSet::ALL, rec.clone(), DEFAULT_THROTTLE);
    end(&p);
    task.await.expect("sender");
    assert_eq!(rec.sent().len(), 1);

    let rec = Recorder::new((0..20).map(|_| Ok(500)).collect());
    let (p, task) = setup(EventSet::ALL, rec.clone(), DEFAULT_THROTTLE);
    end(&p);
    task.await.expect("sender");
    assert_eq!(rec.sent().len(), 13);
}

fn dropped_count(metrics: &Metrics) -> u64 {
    let health = common::health(cogvisor_supervisor::HealthStatus::Ready, 1, 0, 0);
    let text = metrics
        .render(&health, cogvisor_server::metrics::Format::Prometheus)
        .expect("render");
    text.lines()
        .find_map(|l| l.strip_prefix(r#"cogvisor_webhook_deliveries_total{outcome="dropped"} "#))
        .and_then(|n| n.parse().ok())
        .expect("the dropped outcome is rendered")
}

#[tokio::test(start_paused = true)]
async fn retries_send_the_same_bytes_and_the_sender_lets_the_prediction_go() {
    let rec = Recorder::new(vec![Ok(503), Ok(503), Ok(200)]);
    let budget = Arc::new(DeliveryBudget::default());
    let (p, task) = setup_budgeted(
        EventSet::default().with(Event::Completed),
        rec.clone(),
        DEFAULT_THROTTLE,
        Arc::default(),
        budget.clone(),
    );
    p.start();
    end(&p);
    let weak = Arc::downgrade(&p);
    drop(p);
    settle().await;
    // Between retries the delivery holds its payload, in the budget, and not the prediction.
    assert_eq!(rec.sent().len(), 1);
    assert!(
        weak.upgrade().is_none(),
        "the sender still holds the prediction"
    );
    let (count, bytes) = budget.in_use();
    assert_eq!(count, 1);
    assert!(bytes > 0);
    task.await.expect("sender");
    let bodies = rec.bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 3);
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "a copy per attempt: {bodies:?}"
    );
    assert_eq!(budget.in_use(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_full_budget_drops_non_terminal_webhooks_and_keeps_room_for_the_terminal() {
    let rec = Recorder::new(vec![]);
    let metrics = Arc::new(Metrics::new());
    let budget = Arc::new(DeliveryBudget::new(2, 1 << 20));
    // Another prediction's webhook takes the half non-terminal ones may use.
    let other = budget.hold(10, false).expect("room");
    let (p, task) = setup_budgeted(
        EventSet::ALL,
        rec.clone(),
        DEFAULT_THROTTLE,
        metrics.clone(),
        budget.clone(),
    );
    p.start();
    settle().await;
    p.apply(PredictionEvent::Output(json!("a")));
    settle().await;
    end(&p);
    task.await.expect("sender");
    let sent = rec.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    // The terminal one carries what the dropped ones would have.
    assert_eq!(sent[0].1["status"], "succeeded");
    assert_eq!(sent[0].1["output"], json!("a"));
    assert_eq!(dropped_count(&metrics), 2);
    drop(other);
    assert_eq!(budget.in_use(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_terminal_webhook_that_does_not_fit_is_dropped_and_counted() {
    let rec = Recorder::new(vec![]);
    let metrics = Arc::new(Metrics::new());
    let budget = Arc::new(DeliveryBudget::new(1, 1 << 20));
    let other = budget.hold(10, true).expect("room");
    let (p, task) = setup_budgeted(
        EventSet::default().with(Event::Completed),
        rec.clone(),
        DEFAULT_THROTTLE,
        metrics.clone(),
        budget.clone(),
    );
    p.start();
    end(&p);
    task.await.expect("sender");
    assert!(rec.sent().is_empty());
    assert_eq!(dropped_count(&metrics), 1);
    drop(other);
    assert_eq!(budget.in_use(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_slow_receiver_does_not_keep_a_finished_prediction() {
    let rec = Recorder::slow(vec![], Duration::from_secs(10));
    let (p, task) = setup(EventSet::ALL, rec.clone(), DEFAULT_THROTTLE);
    p.start();
    settle().await;
    // The `start` webhook is in flight for 10 s; the prediction ends meanwhile.
    end(&p);
    let weak = Arc::downgrade(&p);
    drop(p);
    settle().await;
    assert!(
        weak.upgrade().is_none(),
        "the sender still holds the prediction"
    );
    task.await.expect("sender");
    let statuses: Vec<Value> = rec
        .sent()
        .iter()
        .map(|(_, v)| v["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("processing"), json!("succeeded")]);
}
