//! Retention as a poller sees it: which finished predictions can still be found by id after the
//! window, the count limit or the byte limit, and that a running one (or an id run again) never goes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cogvisor_server::predictions::{Prediction, Registry, RetentionLimits, Status};
use cogvisor_server::schema::Kind;
use cogvisor_supervisor::PredictionEvent;
use serde_json::json;

const LIMITS: RetentionLimits = RetentionLimits {
    retention: Duration::from_secs(600),
    max_retained: 2,
    max_retained_bytes: 1000,
};

fn start(registry: &mut Registry, id: &str) -> Arc<Prediction> {
    let p = Arc::new(Prediction::with_history(
        id.into(),
        Kind::Prediction,
        json!({}),
        false,
        1024,
        16,
    ));
    p.start();
    registry.insert(p.clone());
    p
}

fn end(registry: &mut Registry, p: &Prediction, at: Instant, bytes: usize) {
    p.apply(PredictionEvent::Succeeded {
        predict_time: 0.0,
        is_stream: false,
    });
    p.finish(0.0);
    registry.file_finished(at, p.id.clone(), bytes);
}

fn found(registry: &Registry, ids: &[&str]) -> Vec<bool> {
    ids.iter().map(|id| registry.get(id).is_some()).collect()
}

#[test]
fn finished_predictions_go_oldest_first_past_the_count_limit_and_running_ones_stay() {
    let mut r = Registry::default();
    let t0 = Instant::now();
    start(&mut r, "running");
    for id in ["a", "b", "c"] {
        let p = start(&mut r, id);
        end(&mut r, &p, t0, 1);
        r.prune(t0, LIMITS);
    }
    assert_eq!(
        found(&r, &["a", "b", "c", "running"]),
        [false, true, true, true]
    );
    assert_eq!(r.finished_ids().collect::<Vec<_>>(), ["b", "c"]);
    let running: Vec<&str> = r.running().map(|p| p.id.as_str()).collect();
    assert_eq!(running, ["running"]);
    assert_eq!(
        r.get("running").map(|p| p.status()),
        Some(Status::Processing)
    );
}

#[test]
fn past_the_window_a_finished_prediction_is_gone_but_not_a_running_one() {
    let mut r = Registry::default();
    let t0 = Instant::now();
    let p = start(&mut r, "old");
    end(&mut r, &p, t0, 1);
    start(&mut r, "long");
    r.prune(t0 + Duration::from_secs(599), LIMITS);
    assert_eq!(found(&r, &["old", "long"]), [true, true]);
    r.prune(t0 + Duration::from_secs(601), LIMITS);
    assert_eq!(found(&r, &["old", "long"]), [false, true]);
    assert_eq!(r.finished_bytes(), 0);
}

#[test]
fn the_byte_limit_keeps_the_newest_whatever_its_size() {
    let mut r = Registry::default();
    let t0 = Instant::now();
    for (id, bytes) in [("small", 10), ("huge", 5000)] {
        let p = start(&mut r, id);
        end(&mut r, &p, t0, bytes);
        r.prune(t0, LIMITS);
    }
    assert_eq!(found(&r, &["small", "huge"]), [false, true]);
    assert_eq!(r.finished_bytes(), 5000);
}

#[test]
fn an_id_run_again_is_no_longer_counted_as_finished() {
    let mut r = Registry::default();
    let t0 = Instant::now();
    let first = start(&mut r, "again");
    end(&mut r, &first, t0, 300);
    assert_eq!(r.finished_bytes(), 300);
    let second = start(&mut r, "again");
    assert_eq!(r.finished_ids().count(), 0);
    assert_eq!(r.finished_bytes(), 0);
    // Pruning long after the first run ended leaves the second, still running, in place.
    r.prune(t0 + Duration::from_secs(3600), LIMITS);
    let kept = r.get("again").expect("still there");
    assert!(Arc::ptr_eq(kept, &second));
}
