//! How often a worker may be replaced without anyone asking (it crashed, failed its liveness checks, or
//! lost every slot), and how long to wait before each replacement.
//!
//! The first restart in a quiet period is immediate; each further one inside the window waits twice as
//! long as the one before (capped). More than `max` restarts within `window` exhaust the budget: the
//! worker is not replaced again and health goes DEFUNCT, so the platform replaces the container.
//! The history is part of the health machine's state ([`crate::health_machine::Machine`]); time and
//! the settings are passed in, so every rule is tested without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The restart budget's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Restarts allowed within `window`.
    pub max: u32,
    pub window: Duration,
    /// Wait before the second restart in a window; doubles each time after.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for BudgetConfig {
    /// 5 restarts in 300 s, backoff 0, 0.5 s, 1 s, 2 s, 4 s (capped at 30 s).
    fn default() -> Self {
        Self {
            max: 5,
            window: Duration::from_secs(300),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// The budget is spent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("restart budget exhausted: {restarts} unplanned restarts within {window:?}")]
pub struct BudgetExhausted {
    pub restarts: usize,
    pub window: Duration,
}

/// Restarts recorded within the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartBudget {
    restarts: VecDeque<Instant>,
}

impl RestartBudget {
    /// Records an unplanned restart at `now` and returns how long to wait before it, or that the
    /// budget is spent (then nothing is recorded).
    pub fn restart(
        &mut self,
        now: Instant,
        config: &BudgetConfig,
    ) -> Result<Duration, BudgetExhausted> {
        while let Some(first) = self.restarts.front() {
            if now.saturating_duration_since(*first) > config.window {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        if self.restarts.len() >= config.max as usize {
            return Err(BudgetExhausted {
                restarts: self.restarts.len() + 1,
                window: config.window,
            });
        }
        let earlier = self.restarts.len() as u32;
        self.restarts.push_back(now);
        Ok(match earlier {
            0 => Duration::ZERO,
            n => config
                .base_backoff
                .saturating_mul(1u32 << (n - 1).min(16))
                .min(config.max_backoff),
        })
    }

    /// Restarts inside the window as of the last call.
    pub fn recent(&self) -> usize {
        self.restarts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_first_restart_is_immediate_then_backoff_doubles() {
        let (mut b, c) = (RestartBudget::default(), BudgetConfig::default());
        let t = Instant::now();
        let waits: Vec<Duration> = (0..5)
            .map(|i| b.restart(t + secs(i), &c).expect("within budget"))
            .collect();
        assert_eq!(
            waits,
            [0, 500, 1000, 2000, 4000]
                .map(Duration::from_millis)
                .to_vec()
        );
    }

    #[test]
    fn one_more_restart_inside_the_window_exhausts_the_budget() {
        let (mut b, c) = (RestartBudget::default(), BudgetConfig::default());
        let t = Instant::now();
        for i in 0..5 {
            b.restart(t + secs(i), &c).expect("within budget");
        }
        let err = b.restart(t + secs(10), &c).unwrap_err();
        assert_eq!(err.restarts, 6);
        assert_eq!(
            err.to_string(),
            "restart budget exhausted: 6 unplanned restarts within 300s"
        );
    }

    #[test]
    fn restarts_older_than_the_window_no_longer_count() {
        let (mut b, c) = (RestartBudget::default(), BudgetConfig::default());
        let t = Instant::now();
        for i in 0..5 {
            b.restart(t + secs(i), &c).expect("within budget");
        }
        // 301 s after the first one, the first has left the window.
        assert!(b.restart(t + secs(301), &c).is_ok());
        assert_eq!(b.recent(), 5);
        // A long quiet period resets the backoff too.
        let (mut b, c) = (RestartBudget::default(), BudgetConfig::default());
        b.restart(t, &c).expect("first");
        b.restart(t + secs(1), &c).expect("second");
        assert_eq!(
            b.restart(t + secs(1000), &c).expect("after quiet"),
            Duration::ZERO
        );
    }

    #[test]
    fn backoff_is_capped() {
        let config = BudgetConfig {
            max: 100,
            max_backoff: secs(3),
            ..BudgetConfig::default()
        };
        let (mut b, c) = (RestartBudget::default(), config);
        let t = Instant::now();
        let last = (0..20)
            .map(|i| b.restart(t + secs(i), &c).expect("within budget"))
            .last();
        assert_eq!(last, Some(secs(3)));
    }
}
