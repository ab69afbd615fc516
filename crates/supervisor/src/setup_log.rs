//! `setup.logs`, bounded: the first half of the bound and the last half are kept, and a line between
//! them says how many bytes of setup output were dropped. The head holds the runtime's start-up
//! milestones and the model's first lines, the tail the error and traceback of a failed setup and
//! `Server ready`; a `setup()` printing 100 MB costs the bound, not 100 MB. The kept text is rendered
//! and escaped as JSON once per change ([`SetupLogs`]) and shared by every `/health-check` until the
//! next change: a request copies it into its body, it does not escape it again.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// Default bound on `setup.logs`: 2 MiB, the first 1 MiB and the last 1 MiB.
pub const DEFAULT_SETUP_LOG_LIMIT: usize = 2 * 1024 * 1024;

/// A cut is moved to the end of the line it falls in when that line ends within this many bytes (or
/// a quarter of the part cut, if less), so the kept text starts and ends with whole lines unless a
/// line is longer than this.
const LINE_SLACK: usize = 4096;

/// Setup output with the middle dropped past a limit.
#[derive(Debug)]
pub(crate) struct SetupLogText {
    head: String,
    /// Set once text did not fit in the head: nothing is added to the head after that.
    head_sealed: bool,
    tail: VecDeque<String>,
    tail_len: usize,
    dropped: u64,
    head_limit: usize,
    tail_limit: usize,
    /// The text as `/health-check` shows it, rendered on demand and kept until the next push.
    rendered: Option<SetupLogs>,
}

/// `setup.logs` as shown: the kept text and its JSON string, made once and shared (cheap to clone).
#[derive(Debug, Clone)]
pub struct SetupLogs {
    text: Arc<str>,
    json: Arc<RawValue>,
}

impl SetupLogs {
    pub fn new(text: &str) -> Self {
        let text: Arc<str> = Arc::from(text);
        let json = match serde_json::value::to_raw_value(&*text) {
            Ok(raw) => Arc::from(raw),
            // A string always serializes: not reached; `null` rather than a panic.
            Err(_) => Arc::from(RawValue::NULL.to_owned()),
        };
        Self { text, json }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

impl From<&str> for SetupLogs {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl std::ops::Deref for SetupLogs {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for SetupLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq<&str> for SetupLogs {
    fn eq(&self, other: &&str) -> bool {
        &*self.text == *other
    }
}

/// Written as the JSON string made once, through serde_json's raw values: meant for serde_json's
/// serializers (`to_writer`, `to_string`, `to_value`), the only ones the health body goes through.
impl Serialize for SetupLogs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

impl SetupLogText {
    /// At most `limit` bytes of text are kept (plus the notice): half from the start, half from the end.
    pub(crate) fn new(limit: usize) -> Self {
        let head_limit = limit / 2;
        Self {
            head: String::new(),
            head_sealed: false,
            tail: VecDeque::new(),
            tail_len: 0,
            dropped: 0,
            head_limit,
            tail_limit: limit - head_limit,
            rendered: None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_empty() && self.tail_len == 0
    }

    /// Whether the text ends with a newline (false when empty).
    pub(crate) fn ends_with_newline(&self) -> bool {
        match self.tail.back() {
            Some(last) => last.ends_with('\n'),
            None => self.head.ends_with('\n'),
        }
    }

    pub(crate) fn push(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.rendered = None;
        let mut rest = text;
        if !self.head_sealed {
            let room = self.head_limit - self.head.len();
            if rest.len() <= room {
                self.head.push_str(rest);
                return;
            }
            let at_line_start = self.head.is_empty() || self.head.ends_with('\n');
            let slack = LINE_SLACK.min(self.head_limit / 4);
            let cut = head_cut(rest, room, at_line_start, slack);
            self.head.push_str(&rest[..cut]);
            self.head_sealed = true;
            rest = &rest[cut..];
        }
        self.push_tail(rest);
    }

    fn push_tail(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        // Of a chunk longer than the whole tail only its end can stay: drop the rest before copying.
        let slack = LINE_SLACK.min(self.tail_limit / 4);
        let text = if text.len() > self.tail_limit {
            let cut = tail_cut(text, text.len() - self.tail_limit, slack);
            self.dropped += cut as u64;
            &text[cut..]
        } else {
            text
        };
        self.tail.push_back(text.to_string());
        self.tail_len += text.len();
        while self.tail_len > self.tail_limit {
            let excess = self.tail_len - self.tail_limit;
            let Some(front) = self.tail.front_mut() else {
                break;
            };
            let cut = tail_cut(front, excess, slack);
            if cut >= front.len() {
                self.tail_len -= front.len();
                self.dropped += front.len() as u64;
                self.tail.pop_front();
            } else {
                front.drain(..cut);
                self.tail_len -= cut;
                self.dropped += cut as u64;
            }
        }
    }

    /// Bytes of setup output dropped so far.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes of text kept (the notice aside).
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.head.len() + self.tail_len
    }

    /// The text: the head, the notice when anything was dropped, the tail. Rendered once per change;
    /// the same `Arc` until the next push.
    pub(crate) fn text(&mut self) -> SetupLogs {
        if let Some(rendered) = &self.rendered {
            return rendered.clone();
        }
        let rendered = SetupLogs::new(&self.render());
        self.rendered = Some(rendered.clone());
        rendered
    }

    fn render(&self) -> String {
        let mut out = String::with_capacity(self.head.len() + self.tail_len + 120);
        out.push_str(&self.head);
        if self.dropped > 0 {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!(
                "[cogvisor: {} bytes of setup output dropped; setup.logs keeps the first {} and the last {} bytes]\n",
                self.dropped, self.head_limit, self.tail_limit
            ));
        }
        for chunk in &self.tail {
            out.push_str(chunk);
        }
        out
    }
}

/// Where to end the head in `text` when `room` bytes are left: at the last line end within `room`
/// (the start of `text` is one when the head ends a line) if it is near, else at the character
/// boundary at or before `room`.
fn head_cut(text: &str, room: usize, at_line_start: bool, slack: usize) -> usize {
    let mut cut = room.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let line_end = match text[..cut].rfind('\n') {
        Some(newline) => Some(newline + 1),
        None if at_line_start => Some(0),
        None => None,
    };
    match line_end {
        Some(end) if cut - end <= slack => end,
        _ => cut,
    }
}

/// How much of the front of `text` to drop when at least `excess` bytes must go: up to the end of
/// the line the cut falls in if it is near, else to the character boundary at or after `excess`.
fn tail_cut(text: &str, excess: usize, slack: usize) -> usize {
    let mut cut = excess.min(text.len());
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    if cut > 0 && text.as_bytes()[cut - 1] == b'\n' {
        return cut;
    }
    match text[cut..].find('\n') {
        Some(offset) if offset < slack => cut + offset + 1,
        _ => cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize) -> String {
        format!("[cogvisor::setup] line {i:06}\n")
    }

    #[test]
    fn short_output_is_kept_whole() {
        let mut log = SetupLogText::new(1024);
        log.push("[cogvisor] cogvisor 0.1.0\n");
        log.push("[cogvisor::setup] loading\n");
        assert_eq!(
            &*log.text(),
            "[cogvisor] cogvisor 0.1.0\n[cogvisor::setup] loading\n"
        );
        assert_eq!(log.dropped(), 0);
        assert!(log.ends_with_newline());
    }

    #[test]
    fn head_and_tail_are_kept_with_a_notice_naming_what_was_dropped() {
        let mut log = SetupLogText::new(1000);
        let mut total = 0;
        for i in 0..1000 {
            let l = line(i);
            total += l.len();
            log.push(&l);
        }
        let text = log.text();
        assert!(text.starts_with(&(line(0) + &line(1))), "{text}");
        assert!(text.ends_with(&(line(998) + &line(999))), "{text}");
        let dropped = log.dropped();
        assert_eq!(dropped as usize, total - log.kept());
        assert!(log.kept() <= 1000);
        // Whole lines only: each kept part is cut at line ends (lines are 30 bytes here).
        assert!(log.kept() > 1000 - 2 * 30, "{}", log.kept());
        let notice = format!(
            "\n[cogvisor: {dropped} bytes of setup output dropped; setup.logs keeps the first 500 and the last 500 bytes]\n"
        );
        assert!(text.contains(&notice), "{text}");
        let (head, tail) = text.split_once(&notice).unwrap_or_default();
        assert!(head
            .lines()
            .all(|l| l.starts_with("[cogvisor::setup] line ")));
        assert!(tail
            .lines()
            .all(|l| l.starts_with("[cogvisor::setup] line ")));
        assert_eq!(
            head.len() + 1 + tail.len(),
            log.kept(),
            "the head, the tail and nothing else"
        );
    }

    #[test]
    fn a_failure_traceback_at_the_end_survives_a_flood() {
        let mut log = SetupLogText::new(64 * 1024);
        log.push("[cogvisor] cogvisor 0.1.0\n[cogvisor] Spawning worker subprocess\n");
        let flood = "[cogvisor::setup] ".to_string() + &"x".repeat(100) + "\n";
        for _ in 0..20_000 {
            log.push(&flood);
        }
        let traceback = "[cogvisor::setup] Traceback (most recent call last):\n\
                         [cogvisor::setup]   File \"predict.py\", line 9, in setup\n\
                         [cogvisor::setup] RuntimeError: boom in setup\n";
        log.push(traceback);
        log.push("setup failed: RuntimeError: boom in setup");
        let text = log.text();
        assert!(
            text.starts_with("[cogvisor] cogvisor 0.1.0\n[cogvisor] Spawning worker subprocess\n")
        );
        assert!(text.ends_with(&format!(
            "{traceback}setup failed: RuntimeError: boom in setup"
        )));
        assert!(!log.ends_with_newline());
        assert!(text.len() <= 64 * 1024 + 200, "{}", text.len());
        assert!(text.contains("bytes of setup output dropped"));
    }

    #[test]
    fn memory_stays_bounded_and_the_rendering_is_shared_until_a_push() {
        let mut log = SetupLogText::new(4096);
        let chunk = "y".repeat(999) + "\n";
        for _ in 0..10_000 {
            log.push(&chunk);
        }
        assert!(log.kept() <= 4096);
        assert_eq!(log.dropped() as usize, 10_000 * 1000 - log.kept());
        let a = log.text();
        let b = log.text();
        assert!(Arc::ptr_eq(&a.text, &b.text) && Arc::ptr_eq(&a.json, &b.json));
        log.push("z\n");
        assert!(log.text().ends_with("y\nz\n"));
    }

    #[test]
    fn one_chunk_larger_than_the_bound_keeps_its_start_and_end() {
        let mut log = SetupLogText::new(2000);
        let big: String = (0..1000).map(line).collect();
        log.push(&big);
        let text = log.text();
        assert!(text.starts_with(&line(0)));
        assert!(text.ends_with(&line(999)));
        assert!(log.kept() <= 2000);
        assert_eq!(log.dropped() as usize, big.len() - log.kept());
    }

    #[test]
    fn a_line_longer_than_the_slack_is_cut_inside_on_character_boundaries() {
        let mut log = SetupLogText::new(2 * 1024);
        let crabs = "🦀".repeat(10_000); // 40,000 bytes, no newline
        log.push(&crabs);
        let text = log.text();
        let (head, tail) = text
            .split_once("\n[cogvisor: ")
            .expect("a notice after the head");
        assert!(!head.is_empty() && head.chars().all(|c| c == '🦀'));
        let tail = tail.split_once("]\n").map(|(_, t)| t).unwrap_or_default();
        assert!(!tail.is_empty() && tail.chars().all(|c| c == '🦀'));
        assert!(log.kept() <= 2 * 1024);
        assert_eq!(log.dropped() as usize, crabs.len() - log.kept());
    }

    #[test]
    fn the_logs_serialize_as_their_json_string() {
        let logs = SetupLogs::new("[cogvisor] a \"quoted\" line\n\ttab 🦀\n");
        let json = serde_json::to_string(&logs).unwrap_or_default();
        assert_eq!(json, r#""[cogvisor] a \"quoted\" line\n\ttab 🦀\n""#);
        assert_eq!(
            serde_json::to_value(&logs).ok(),
            Some(serde_json::Value::from(logs.as_str()))
        );
        let empty = serde_json::to_string(&SetupLogs::new("")).unwrap_or_default();
        assert_eq!(empty, "\"\"");
    }

    #[test]
    fn output_after_the_head_filled_goes_to_the_tail_in_order() {
        let mut log = SetupLogText::new(100);
        log.push(&"a".repeat(49));
        log.push("bb\n"); // does not fit in the 50-byte head: the head is sealed
        log.push("c\n");
        let text = log.text();
        assert_eq!(log.dropped(), 0);
        assert_eq!(&*text, &format!("{}bb\nc\n", "a".repeat(49)));
    }
}
