//! The slot pool: which slot is idle, which runs which prediction, which is poisoned and why.
//!
//! A slot is released the moment its prediction's terminal message arrives, so a client that sends
//! its next request right after a response never meets a spurious 409.

use cogvisor_protocol::SlotId;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::DropGuard;

use crate::health::{PoisonedSlot, SlotsRecord};
use crate::PredictionEvent;

/// A prediction running in a slot.
#[derive(Debug)]
pub struct Running {
    pub id: String,
    pub events: UnboundedSender<PredictionEvent>,
    /// Cancels the prediction's token (a child of its generation's) when it leaves the slot, however
    /// it leaves (terminal message, poisoned slot, failed worker, a new pool): the tasks that watch
    /// the prediction (`crate::watchers`) end with it.
    pub(crate) ended: DropGuard,
}

/// One slot's state.
#[derive(Debug)]
pub enum SlotState {
    Idle,
    Busy(Running),
    Poisoned { reason: String },
}

/// All slots of one worker generation.
#[derive(Debug)]
pub struct SlotPool {
    slots: Vec<SlotState>,
}

impl SlotPool {
    pub fn new(n: u32) -> Self {
        Self {
            slots: (0..n).map(|_| SlotState::Idle).collect(),
        }
    }

    /// Takes the first idle slot for `running`. `None` when every slot is busy or poisoned; the
    /// prediction is handed back then.
    pub fn acquire(&mut self, running: Running) -> Result<SlotId, Running> {
        match self.slots.iter().position(|s| matches!(s, SlotState::Idle)) {
            Some(i) => {
                self.slots[i] = SlotState::Busy(running);
                Ok(SlotId(i as u32))
            }
            None => Err(running),
        }
    }

    /// Frees `slot` if it runs prediction `id`, returning that prediction.
    pub fn release(&mut self, slot: SlotId, id: &str) -> Option<Running> {
        let state = self.slots.get_mut(slot.0 as usize)?;
        match state {
            SlotState::Busy(r) if r.id == id => match std::mem::replace(state, SlotState::Idle) {
                SlotState::Busy(r) => Some(r),
                _ => None,
            },
            _ => None,
        }
    }

    /// The prediction running in `slot`, if any.
    pub fn running(&self, slot: SlotId) -> Option<&Running> {
        match self.slots.get(slot.0 as usize)? {
            SlotState::Busy(r) => Some(r),
            _ => None,
        }
    }

    /// Poisons `slot` (it takes no more work) and returns the prediction it was running. A slot
    /// poisoned twice keeps its first reason.
    pub fn poison(&mut self, slot: SlotId, reason: impl Into<String>) -> Option<Running> {
        let state = self.slots.get_mut(slot.0 as usize)?;
        if matches!(state, SlotState::Poisoned { .. }) {
            return None;
        }
        match std::mem::replace(
            state,
            SlotState::Poisoned {
                reason: reason.into(),
            },
        ) {
            SlotState::Busy(r) => Some(r),
            _ => None,
        }
    }

    /// Takes every running prediction out (the worker is gone); slots become poisoned with `reason`.
    pub fn drain(&mut self, reason: &str) -> Vec<Running> {
        let mut out = Vec::new();
        for state in &mut self.slots {
            if let SlotState::Busy(r) = std::mem::replace(
                state,
                SlotState::Poisoned {
                    reason: reason.to_string(),
                },
            ) {
                out.push(r);
            }
        }
        out
    }

    /// The slot running prediction `id`.
    pub fn find(&self, id: &str) -> Option<SlotId> {
        self.slots
            .iter()
            .position(|s| matches!(s, SlotState::Busy(r) if r.id == id))
            .map(|i| SlotId(i as u32))
    }

    /// True when no slot can take work again (every slot poisoned). An empty pool is not.
    pub fn all_poisoned(&self) -> bool {
        !self.slots.is_empty()
            && self
                .slots
                .iter()
                .all(|s| matches!(s, SlotState::Poisoned { .. }))
    }

    /// How many slots run a prediction.
    pub fn busy_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, SlotState::Busy(_)))
            .count()
    }

    /// The ids and slots of every running prediction.
    pub fn running_ids(&self) -> Vec<(SlotId, String)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                SlotState::Busy(r) => Some((SlotId(i as u32), r.id.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn idle_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, SlotState::Idle))
            .count()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Occupancy for `/health-check`.
    pub fn record(&self) -> SlotsRecord {
        SlotsRecord {
            total: self.slots.len() as u32,
            busy: self
                .slots
                .iter()
                .filter(|s| matches!(s, SlotState::Busy(_)))
                .count() as u32,
            poisoned: self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| match s {
                    SlotState::Poisoned { reason } => Some(PoisonedSlot {
                        slot: i as u32,
                        reason: reason.clone(),
                    }),
                    _ => None,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn running(id: &str) -> Running {
        let (events, _rx) = mpsc::unbounded_channel();
        Running {
            id: id.into(),
            events,
            ended: tokio_util::sync::CancellationToken::new().drop_guard(),
        }
    }

    #[test]
    fn a_prediction_that_leaves_its_slot_has_its_token_cancelled() {
        let mut pool = SlotPool::new(3);
        let mut tokens = Vec::new();
        for id in ["released", "poisoned", "drained"] {
            let r = running(id);
            tokens.push(r.ended.token().clone());
            pool.acquire(r).expect("idle slot");
        }
        assert!(tokens.iter().all(|t| !t.is_cancelled()));
        drop(pool.release(SlotId(0), "released"));
        assert!(tokens[0].is_cancelled());
        assert!(!tokens[1].is_cancelled());
        drop(pool.poison(SlotId(1), "broken"));
        assert!(tokens[1].is_cancelled());
        assert!(!tokens[2].is_cancelled());
        drop(pool.drain("server shut down"));
        assert!(tokens[2].is_cancelled());
    }

    #[test]
    fn acquire_takes_idle_slots_in_order_then_refuses() {
        let mut pool = SlotPool::new(2);
        assert_eq!(pool.acquire(running("a")).ok(), Some(SlotId(0)));
        assert_eq!(pool.acquire(running("b")).ok(), Some(SlotId(1)));
        let refused = pool.acquire(running("c")).unwrap_err();
        assert_eq!(refused.id, "c");
        assert_eq!(pool.find("b"), Some(SlotId(1)));
    }

    #[test]
    fn release_frees_the_slot_at_once_but_only_for_its_own_prediction() {
        let mut pool = SlotPool::new(1);
        let slot = pool.acquire(running("a")).expect("idle slot");
        assert!(pool.release(slot, "other").is_none());
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(pool.release(slot, "a").map(|r| r.id), Some("a".into()));
        assert_eq!(pool.idle_count(), 1);
        assert_eq!(pool.acquire(running("b")).ok(), Some(slot));
    }

    #[test]
    fn poisoned_slot_takes_no_work_and_keeps_its_first_reason() {
        let mut pool = SlotPool::new(1);
        let slot = pool.acquire(running("a")).expect("idle slot");
        assert_eq!(
            pool.poison(slot, "socket closed").map(|r| r.id),
            Some("a".into())
        );
        assert!(pool.poison(slot, "second reason").is_none());
        assert!(pool.acquire(running("b")).is_err());
        let record = pool.record();
        assert_eq!(record.total, 1);
        assert_eq!(record.busy, 0);
        assert_eq!(record.poisoned.len(), 1);
        assert_eq!(record.poisoned[0].reason, "socket closed");
    }

    #[test]
    fn drain_returns_every_running_prediction() {
        let mut pool = SlotPool::new(3);
        pool.acquire(running("a")).expect("slot");
        pool.acquire(running("b")).expect("slot");
        let mut ids: Vec<String> = pool
            .drain("worker exited")
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        assert_eq!(ids, vec!["a", "b"]);
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(pool.record().poisoned.len(), 3);
    }
}
