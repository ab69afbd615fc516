//! Size limits of the protocol and the log truncation rule.

/// Largest frame payload (the JSON after the 4-byte length), in bytes: 8 MiB.
pub const MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// Largest JSON payload (an input or an output value) sent inline: 6 MiB. Larger ones are spilled to a
/// file, which leaves 2 MiB of a frame for the rest of the message.
pub const MAX_INLINE_PAYLOAD: usize = 6 * 1024 * 1024;

/// Largest log message text, in bytes of UTF-8: 4 MiB. Longer text is cut with [`LOG_TRUNCATION_NOTICE`].
pub const MAX_LOG_LEN: usize = 4 * 1024 * 1024;

/// Appended to a log message cut at [`MAX_LOG_LEN`].
pub const LOG_TRUNCATION_NOTICE: &str = "\n[cogvisor: log message truncated at 4 MiB]\n";

/// Cuts `text` so that it is at most [`MAX_LOG_LEN`] bytes including the notice, on a character
/// boundary. Text within the limit is returned unchanged.
pub fn truncate_log(mut text: String) -> String {
    if text.len() <= MAX_LOG_LEN {
        return text;
    }
    let mut cut = MAX_LOG_LEN - LOG_TRUNCATION_NOTICE.len();
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(LOG_TRUNCATION_NOTICE);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_unchanged() {
        let text = "🦀".repeat(10);
        assert_eq!(truncate_log(text.clone()), text);
    }

    #[test]
    fn text_at_the_limit_is_unchanged() {
        let text = "a".repeat(MAX_LOG_LEN);
        assert_eq!(truncate_log(text.clone()), text);
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_with_the_notice() {
        // 4-byte characters, so the cut point must move back to a boundary.
        let text = "🦀".repeat(MAX_LOG_LEN / 4 + 1);
        let cut = truncate_log(text);
        assert!(cut.len() <= MAX_LOG_LEN);
        assert!(cut.ends_with(LOG_TRUNCATION_NOTICE));
        let body = &cut[..cut.len() - LOG_TRUNCATION_NOTICE.len()];
        assert!(body.chars().all(|c| c == '🦀'));
    }
}
