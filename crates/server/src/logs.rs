//! A prediction's log text, bounded: the newest `limit` bytes are kept and a notice says how much
//! older text was dropped, so a model printing 50 MB cannot grow the server without bound.

use std::collections::VecDeque;

/// Default bound: 8 MiB per prediction.
pub const DEFAULT_LOG_LIMIT: usize = 8 * 1024 * 1024;

/// Log text with the oldest part dropped past a limit.
#[derive(Debug, Clone)]
pub struct BoundedLog {
    chunks: VecDeque<String>,
    len: usize,
    dropped: u64,
    limit: usize,
}

impl BoundedLog {
    pub fn new(limit: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            len: 0,
            dropped: 0,
            limit,
        }
    }

    pub fn push(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.chunks.push_back(text.to_string());
        self.len += text.len();
        while self.len > self.limit {
            let excess = self.len - self.limit;
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() <= excess {
                self.len -= front.len();
                self.dropped += front.len() as u64;
                self.chunks.pop_front();
            } else {
                // Cut the front chunk on a character boundary at or after `excess`.
                let mut cut = excess;
                while !front.is_char_boundary(cut) {
                    cut += 1;
                }
                front.drain(..cut);
                self.len -= cut;
                self.dropped += cut as u64;
            }
        }
    }

    /// Bytes of text kept.
    pub fn bytes(&self) -> usize {
        self.len
    }

    /// Bytes of older text dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The text, led by a notice when anything was dropped.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.len + 80);
        if self.dropped > 0 {
            out.push_str(&format!(
                "[cogvisor: {} bytes of earlier log output dropped; a prediction keeps its last {} bytes]\n",
                self.dropped, self.limit
            ));
        }
        for chunk in &self.chunks {
            out.push_str(chunk);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_logs_are_kept_whole() {
        let mut log = BoundedLog::new(100);
        log.push("a\n");
        log.push("b\n");
        assert_eq!(log.render(), "a\nb\n");
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn the_oldest_text_is_dropped_with_a_notice() {
        let mut log = BoundedLog::new(10);
        for i in 0..10 {
            log.push(&format!("line{i}\n"));
        }
        let text = log.render();
        assert!(
            text.starts_with("[cogvisor: 50 bytes of earlier log output dropped"),
            "{text}"
        );
        assert!(text.ends_with("\nne8\nline9\n"), "{text}");
        assert_eq!(log.dropped(), 50);
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let mut log = BoundedLog::new(5);
        log.push("🦀🦀🦀");
        let text = log.render();
        assert!(text.ends_with("🦀"));
        assert_eq!(log.dropped(), 8);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood() {
        let mut log = BoundedLog::new(1024);
        let line = "x".repeat(100) + "\n";
        for _ in 0..100_000 {
            log.push(&line);
        }
        assert!(log.len <= 1024);
        assert_eq!(log.dropped(), 101 * 100_000 - log.len as u64);
    }
}
