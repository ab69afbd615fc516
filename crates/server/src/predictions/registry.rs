//! Running and recently finished predictions by id, and the retention that bounds the finished ones
//! by age, count and approximate bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::Prediction;

/// Running and recently finished predictions, by id.
#[derive(Debug, Default)]
pub struct Registry {
    by_id: HashMap<String, Arc<Prediction>>,
    /// Finished predictions, oldest first, with when they finished and their approximate size.
    finished: VecDeque<Finished>,
    /// Sum of the sizes in `finished`.
    finished_bytes: usize,
}

#[derive(Debug)]
struct Finished {
    at: Instant,
    id: String,
    bytes: usize,
}

/// When finished predictions are dropped.
#[derive(Debug, Clone, Copy)]
pub struct RetentionLimits {
    /// How long a finished prediction is kept.
    pub retention: Duration,
    /// How many finished predictions are kept at most.
    pub max_retained: usize,
    /// Approximate bytes of finished predictions kept at most (the newest is kept whatever its size).
    pub max_retained_bytes: usize,
}

impl Registry {
    /// A running or retained prediction.
    pub fn get(&self, id: &str) -> Option<&Arc<Prediction>> {
        self.by_id.get(id)
    }

    /// Adds a prediction that is starting. An id run again replaces the finished prediction of that
    /// id, which stops counting against the limits (only then is the finished list scanned).
    pub fn insert(&mut self, prediction: Arc<Prediction>) {
        if self
            .by_id
            .insert(prediction.id.clone(), prediction.clone())
            .is_some()
        {
            self.unfile(&prediction.id);
        }
    }

    /// Predictions that have not ended.
    pub fn running(&self) -> impl Iterator<Item = &Arc<Prediction>> {
        self.by_id.values().filter(|p| !p.status().is_terminal())
    }

    /// The ids of the finished predictions retained, oldest first.
    pub fn finished_ids(&self) -> impl Iterator<Item = &str> {
        self.finished.iter().map(|f| f.id.as_str())
    }

    /// The approximate bytes the finished predictions retained hold.
    pub fn finished_bytes(&self) -> usize {
        self.finished_bytes
    }

    /// Files a prediction that just ended, `bytes` its approximate size.
    pub fn file_finished(&mut self, at: Instant, id: String, bytes: usize) {
        self.finished_bytes += bytes;
        self.finished.push_back(Finished { at, id, bytes });
    }

    /// Forgets `id` as a finished prediction (it is being run again).
    fn unfile(&mut self, id: &str) {
        let mut freed = 0;
        self.finished.retain(|f| {
            let keep = f.id != id;
            if !keep {
                freed += f.bytes;
            }
            keep
        });
        self.finished_bytes -= freed;
    }

    /// Drops finished predictions past the retention window, the count limit or the byte limit
    /// (oldest first; the newest is never dropped for its size).
    pub fn prune(&mut self, now: Instant, limits: RetentionLimits) {
        while let Some(oldest) = self.finished.front() {
            let expired = now.duration_since(oldest.at) > limits.retention;
            let too_many = self.finished.len() > limits.max_retained;
            let too_big =
                self.finished_bytes > limits.max_retained_bytes && self.finished.len() > 1;
            if !(expired || too_many || too_big) {
                break;
            }
            let Some(oldest) = self.finished.pop_front() else {
                break;
            };
            self.finished_bytes -= oldest.bytes;
            if self
                .by_id
                .get(&oldest.id)
                .is_some_and(|p| p.status().is_terminal())
            {
                self.by_id.remove(&oldest.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Kind;
    use serde_json::json;

    fn finished(registry: &mut Registry, id: &str, at: Instant, bytes: usize) {
        let p = Prediction::with_history(id.into(), Kind::Prediction, json!({}), false, 1024, 16);
        p.finish(0.0);
        registry.by_id.insert(id.into(), Arc::new(p));
        registry.file_finished(at, id.into(), bytes);
    }

    fn ids(registry: &Registry) -> Vec<&str> {
        registry.finished.iter().map(|f| f.id.as_str()).collect()
    }

    const LIMITS: RetentionLimits = RetentionLimits {
        retention: Duration::from_secs(600),
        max_retained: 3,
        max_retained_bytes: 100,
    };

    #[test]
    fn retention_drops_the_oldest_past_the_count_limit() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        for id in ["a", "b", "c", "d"] {
            finished(&mut r, id, t0, 1);
            r.prune(t0, LIMITS);
        }
        assert_eq!(ids(&r), ["b", "c", "d"]);
        assert!(!r.by_id.contains_key("a"));
        assert_eq!(r.finished_bytes, 3);
    }

    #[test]
    fn retention_drops_the_oldest_past_the_byte_limit_but_keeps_the_newest() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        finished(&mut r, "a", t0, 40);
        finished(&mut r, "b", t0, 40);
        r.prune(t0, LIMITS);
        assert_eq!(ids(&r), ["a", "b"]);
        finished(&mut r, "c", t0, 40);
        r.prune(t0, LIMITS);
        assert_eq!(ids(&r), ["b", "c"]);
        assert_eq!(r.finished_bytes, 80);
        // One alone over the limit is kept (until the next one ends), so it can still be polled.
        finished(&mut r, "huge", t0, 1000);
        r.prune(t0, LIMITS);
        assert_eq!(ids(&r), ["huge"]);
        assert!(r.by_id.contains_key("huge") && !r.by_id.contains_key("b"));
        assert_eq!(r.finished_bytes, 1000);
    }

    #[test]
    fn retention_drops_what_is_older_than_the_window() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        finished(&mut r, "old", t0, 1);
        finished(&mut r, "new", t0 + Duration::from_secs(500), 1);
        r.prune(t0 + Duration::from_secs(601), LIMITS);
        assert_eq!(ids(&r), ["new"]);
    }

    #[test]
    fn a_rerun_id_is_unfiled_with_its_bytes() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        finished(&mut r, "a", t0, 30);
        finished(&mut r, "b", t0, 20);
        r.unfile("a");
        assert_eq!(ids(&r), ["b"]);
        assert_eq!(r.finished_bytes, 20);
    }
}
