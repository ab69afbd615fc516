//! Compact JSON writing that is byte for byte `serde_json`'s, with a fast path for long strings.
//!
//! `serde_json` looks up every byte of a string in its escape table; for the multi-MiB strings of large
//! inputs and outputs that scan is most of the cost of serializing them. Here a long string that needs
//! no escape (checked with wide compares) is copied in one piece between its quotes, and one that does
//! is copied run by run between its escapes, each written as `serde_json` writes it; short strings
//! and everything else are written by `serde_json` itself, so the output is identical.

use std::io::Write;

use serde_json::Value;

/// Strings shorter than this go straight to `serde_json` (the check would not pay off).
const FAST_PATH_MIN: usize = 256;

/// Writes `value` as compact JSON, exactly as `serde_json::to_writer` would.
pub fn write_compact<W: Write>(out: &mut W, value: &Value) -> Result<(), serde_json::Error> {
    match value {
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            put(out, b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    put(out, b",")?;
                }
                write_compact(out, item)?;
            }
            put(out, b"]")
        }
        Value::Object(map) => {
            put(out, b"{")?;
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    put(out, b",")?;
                }
                write_str(out, key)?;
                put(out, b":")?;
                write_compact(out, item)?;
            }
            put(out, b"}")
        }
        other => serde_json::to_writer(out, other),
    }
}

/// Writes one JSON string.
pub fn write_str<W: Write>(out: &mut W, s: &str) -> Result<(), serde_json::Error> {
    if s.len() < FAST_PATH_MIN {
        return serde_json::to_writer(out, s);
    }
    write_long_str(out, s.as_bytes()).map_err(serde_json::Error::io)
}

fn put<W: Write>(out: &mut W, bytes: &[u8]) -> Result<(), serde_json::Error> {
    out.write_all(bytes).map_err(serde_json::Error::io)
}

/// A long string between its quotes: the runs that need no escape copied whole, each escape written
/// as `serde_json` writes it. Not generic, so it is compiled once, here, with this crate's
/// optimizations (the workspace's dev profile optimizes this crate: a debug server spent most of a
/// 1 MiB log line's time in an unoptimized per-byte escape).
fn write_long_str(out: &mut dyn Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(b"\"")?;
    let mut start = 0;
    while let Some(offset) = first_escape(&bytes[start..]) {
        let at = start + offset;
        out.write_all(&bytes[start..at])?;
        write_escape(out, bytes[at])?;
        start = at + 1;
    }
    out.write_all(&bytes[start..])?;
    out.write_all(b"\"")
}

/// `serde_json`'s escape of one byte: the short forms where JSON has one, `\u00XX` (lower-case hex)
/// for the other control characters.
fn write_escape(out: &mut dyn Write, b: u8) -> std::io::Result<()> {
    let short: &[u8] = match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let code = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ];
            return out.write_all(&code);
        }
    };
    out.write_all(short)
}

fn escaped(b: u8) -> bool {
    (b < 0x20) | (b == b'"') | (b == b'\\')
}

/// Where the first byte that must be escaped is: blocks without one are skipped with wide compares.
fn first_escape(bytes: &[u8]) -> Option<usize> {
    let mut offset = 0;
    for block in bytes.chunks(256) {
        if block.iter().fold(false, |hit, &b| hit | escaped(b)) {
            return block.iter().position(|&b| escaped(b)).map(|i| offset + i);
        }
        offset += block.len();
    }
    None
}

/// Whether any byte must be escaped inside a JSON string: a quote, a backslash or a control character.
pub fn needs_escape(bytes: &[u8]) -> bool {
    first_escape(bytes).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn compact(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write_compact(&mut out, v).expect("write");
        out
    }

    #[test]
    fn matches_serde_json_on_every_kind_of_value() {
        let long = "a".repeat(FAST_PATH_MIN * 3);
        for v in [
            json!(null),
            json!(true),
            json!(-1),
            json!(1.5e300),
            json!(0.1),
            json!(u64::MAX),
            json!(""),
            json!("short \"q\" \\ \n é"),
            json!(long.clone()),
            json!(format!("{long}\"")),
            json!(format!("\u{1}{long}")),
            json!(format!("{long}é🦀\u{7f}")),
            json!([]),
            json!({}),
            json!({"z": [long.clone(), {"k\n": null}], "a": 1, long.clone(): long}),
        ] {
            assert_eq!(compact(&v), serde_json::to_vec(&v).expect("json"), "{v}");
        }
    }

    #[test]
    fn escapes_are_found_anywhere_in_a_long_string() {
        let mut text = vec![b'a'; 10_000];
        assert!(!needs_escape(&text));
        for (i, b) in [(0, b'"'), (255, b'\\'), (256, 0x1f), (9_999, b'\n')] {
            let saved = text[i];
            text[i] = b;
            assert!(needs_escape(&text), "byte {b} at {i}");
            text[i] = saved;
        }
        assert!(!needs_escape("é🦀\u{7f}".as_bytes()));
    }

    #[test]
    fn long_strings_with_every_escape_match_serde_json() {
        let long = "a".repeat(FAST_PATH_MIN);
        for b in (0u8..0x20).chain([b'"', b'\\', 0x7f]) {
            let c = char::from(b);
            for text in [
                format!("{c}{long}"),
                format!("{long}{c}"),
                format!("{long}{c}{c}{long}é{c}"),
            ] {
                let v = json!(text);
                assert_eq!(
                    compact(&v),
                    serde_json::to_vec(&v).expect("json"),
                    "byte {b}"
                );
            }
        }
    }

    fn value() -> impl Strategy<Value = Value> {
        let text = prop_oneof![
            any::<String>(),
            "[a-z\"\\\\\\n\u{1}é]{0,8}".prop_map(|s| s.repeat(64)),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            text.prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn is_byte_identical_to_serde_json(v in value()) {
            prop_assert_eq!(compact(&v), serde_json::to_vec(&v).expect("json"));
        }
    }
}
