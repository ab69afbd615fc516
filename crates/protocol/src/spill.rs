//! Spill files: a payload whose JSON exceeds [`MAX_INLINE_PAYLOAD`] travels as a file in the private
//! runtime directory instead of inline. The writer creates it; the reader deletes it after reading.

use std::path::{Path, PathBuf};

use crate::{ProtocolError, MAX_INLINE_PAYLOAD};

/// A JSON value ready to send: inline when small, else the path of the spill file holding it.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Inline(serde_json::Value),
    File(PathBuf),
}

/// Measures `value`'s JSON without keeping it; if it exceeds [`MAX_INLINE_PAYLOAD`] writes it to a new
/// spill file in `dir`. (An inline value is serialized once more into its frame: measuring allocates
/// nothing, which costs less than holding the bytes for a frame that rarely spills.)
pub fn prepare(dir: &Path, value: serde_json::Value) -> Result<Payload, ProtocolError> {
    if json_len(&value)? <= MAX_INLINE_PAYLOAD {
        return Ok(Payload::Inline(value));
    }
    let bytes = serde_json::to_vec(&value).map_err(ProtocolError::Encode)?;
    let path = dir.join(format!("spill-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, &bytes).map_err(|source| ProtocolError::SpillIo {
        path: path.clone(),
        source,
    })?;
    Ok(Payload::File(path))
}

/// The length of `value`'s compact JSON, counted without allocating it.
fn json_len(value: &serde_json::Value) -> Result<usize, ProtocolError> {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).map_err(ProtocolError::Encode)?;
    Ok(counter.0)
}

/// Reads the spill file at `path`, which must lie directly in `dir`, deletes it, and parses it.
///
/// The file is deleted before parsing so a corrupt file is removed too. A path outside `dir` is refused
/// without touching it: the path comes from the other end of a channel.
pub fn take(dir: &Path, path: &Path) -> Result<serde_json::Value, ProtocolError> {
    let outside = || ProtocolError::SpillOutsideDir {
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
    };
    let parent = path.parent().ok_or_else(outside)?;
    let (parent, dir_canon) = match (parent.canonicalize(), dir.canonicalize()) {
        (Ok(p), Ok(d)) => (p, d),
        _ => return Err(outside()),
    };
    if parent != dir_canon || path.file_name().is_none() {
        return Err(outside());
    }
    let bytes = std::fs::read(path).map_err(|source| ProtocolError::SpillIo {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::remove_file(path).map_err(|source| ProtocolError::SpillIo {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ProtocolError::SpillMalformed {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_payload_stays_inline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let got = prepare(dir.path(), json!({"text": "hi"})).expect("prepare");
        assert_eq!(got, Payload::Inline(json!({"text": "hi"})));
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[test]
    fn the_measured_length_is_the_serialized_length() {
        for value in [
            json!(null),
            json!({"text": "hé\"\n", "n": [1, 2.5, -3], "nested": {"a": true}}),
            json!("x".repeat(1000)),
        ] {
            let bytes = serde_json::to_vec(&value).expect("serialize");
            assert_eq!(json_len(&value).expect("measure"), bytes.len(), "{value}");
        }
    }

    #[test]
    fn a_payload_of_exactly_the_limit_stays_inline_and_one_more_byte_spills() {
        let dir = tempfile::tempdir().expect("tempdir");
        // `"…"`: the string plus its two quotes.
        let at_limit = json!("a".repeat(MAX_INLINE_PAYLOAD - 2));
        assert!(matches!(
            prepare(dir.path(), at_limit).expect("prepare"),
            Payload::Inline(_)
        ));
        let over = json!("a".repeat(MAX_INLINE_PAYLOAD - 1));
        assert!(matches!(
            prepare(dir.path(), over).expect("prepare"),
            Payload::File(_)
        ));
    }

    #[test]
    fn large_payload_spills_and_the_reader_deletes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = json!({"text": "a".repeat(MAX_INLINE_PAYLOAD + 1)});
        let Payload::File(path) = prepare(dir.path(), big.clone()).expect("prepare") else {
            panic!("expected a spill file");
        };
        assert!(path.starts_with(dir.path()));
        assert_eq!(take(dir.path(), &path).expect("take"), big);
        assert!(!path.exists(), "the reader deletes the spill file");
    }

    #[test]
    fn corrupt_spill_file_is_an_error_and_is_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spill-x.json");
        std::fs::write(&path, "not json").expect("write");
        let err = take(dir.path(), &path).unwrap_err();
        assert!(matches!(err, ProtocolError::SpillMalformed { .. }), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn path_outside_the_spill_dir_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let other = tempfile::tempdir().expect("tempdir");
        let victim = other.path().join("precious.json");
        std::fs::write(&victim, "{}").expect("write");
        let sneaky = dir
            .path()
            .join("..")
            .join(other.path().file_name().expect("name"))
            .join("precious.json");
        let err = take(dir.path(), &sneaky).unwrap_err();
        assert!(
            matches!(err, ProtocolError::SpillOutsideDir { .. }),
            "{err}"
        );
        assert!(victim.exists());
        let err = take(dir.path(), &victim).unwrap_err();
        assert!(
            matches!(err, ProtocolError::SpillOutsideDir { .. }),
            "{err}"
        );
    }

    #[test]
    fn missing_spill_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = take(dir.path(), &dir.path().join("gone.json")).unwrap_err();
        assert!(matches!(err, ProtocolError::SpillIo { .. }), "{err}");
    }
}
