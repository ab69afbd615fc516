//! Outbound HTTP, shared by webhooks and uploads: one reqwest client with Cog's `User-Agent`, the
//! exponential backoff both retry with, which statuses are worth a retry, and error text that names
//! the cause.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The `User-Agent` of webhooks and uploads: Cog's, so receivers that match on `coglet/` keep working.
pub const USER_AGENT: &str = concat!(
    "coglet/",
    crate::cog_version!(),
    " (compatible; cogvisor/",
    env!("CARGO_PKG_VERSION"),
    ")"
);

/// Retries with exponential backoff: before retry `k` (1-based) wait `base × 2^min(k, max_exponent)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max_exponent: u32,
    /// Retries after the first attempt.
    pub retries: u32,
}

impl Backoff {
    /// Cog's terminal-webhook schedule: 0.2, 0.4, 0.8 … 102.4 s, 12 retries (13 attempts).
    pub const COG: Backoff = Backoff {
        base: Duration::from_millis(100),
        max_exponent: 10,
        retries: 12,
    };

    pub fn delay(&self, retry: u32) -> Duration {
        self.base * 2u32.pow(retry.min(self.max_exponent))
    }
}

/// Statuses worth retrying: rate limiting and temporary server failures.
pub fn is_transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// The HTTP client for webhooks and uploads, built once on first use.
#[derive(Debug, Clone, Default)]
pub struct HttpClient(Arc<OnceLock<Result<reqwest::Client, String>>>);

/// The HTTP client could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot create the HTTP client for webhooks and uploads: {0}")]
pub struct ClientError(pub String);

impl HttpClient {
    pub fn get(&self) -> Result<&reqwest::Client, ClientError> {
        self.0
            .get_or_init(|| {
                reqwest::Client::builder()
                    .user_agent(USER_AGENT)
                    .connect_timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| ClientError(e.clone()))
    }
}

/// An error with its causes, since reqwest's own message ("error sending request") names none.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cogs_backoff_schedule() {
        let b = Backoff::COG;
        let delays: Vec<f64> = (1..=12).map(|k| b.delay(k).as_secs_f64()).collect();
        assert_eq!(&delays[..4], &[0.2, 0.4, 0.8, 1.6]);
        assert_eq!(delays[9], 102.4);
        assert_eq!(delays[11], 102.4);
    }
}
