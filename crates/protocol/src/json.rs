//! Compact JSON writing that is byte for byte `serde_json`'s, with a fast path for long strings.
//!
//! `serde_json` looks up every byte of a string in its escape table; for the multi-MiB strings of large
//! inputs and outputs that scan is most of the cost of serializing them. Here a long string that needs
//! no escape (checked with wide compares) is copied in one piece between its quotes; everything else
//! is written by `serde_json` itself, so the output is identical.

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
    if s.len() < FAST_PATH_MIN || needs_escape(s.as_bytes()) {
        return serde_json::to_writer(out, s);
    }
    put(out, b"\"")?;
    put(out, s.as_bytes())?;
    put(out, b"\"")
}

fn put<W: Write>(out: &mut W, bytes: &[u8]) -> Result<(), serde_json::Error> {
    out.write_all(bytes).map_err(serde_json::Error::io)
}

/// Whether any byte must be escaped inside a JSON string: a quote, a backslash or a control character.
pub fn needs_escape(bytes: &[u8]) -> bool {
    // No early exit inside a block, so the check compiles to wide compares.
    bytes.chunks(256).any(|block| {
        block.iter().fold(false, |hit, &b| {
            hit | (b < 0x20) | (b == b'"') | (b == b'\\')
        })
    })
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
