//! Spill files: a payload whose JSON exceeds [`MAX_INLINE_PAYLOAD`] travels as a file in the private
//! runtime directory instead of inline. The writer creates it; the reader deletes it after reading.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{ProtocolError, MAX_INLINE_PAYLOAD};

/// A JSON value ready to send: inline when small, else the path of the spill file holding it.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Inline(serde_json::Value),
    File(PathBuf),
}

/// Serializes `value` inline when its JSON fits in [`MAX_INLINE_PAYLOAD`], else streams it into a new
/// spill file in `dir`.
///
/// No full-size buffer is built on either path: the size is measured by serializing into a counter
/// that stops at the limit (skipped when the strings alone are over it), and a spilled value is
/// written to the file through a small buffer. The caller keeps `value`; an inline payload is a copy.
pub fn prepare(dir: &Path, value: &serde_json::Value) -> Result<Payload, ProtocolError> {
    if is_inline(value)? {
        return Ok(Payload::Inline(value.clone()));
    }
    write_new(dir, value).map(Payload::File)
}

/// Whether `value` travels inline (its compact JSON is at most [`MAX_INLINE_PAYLOAD`] bytes). Pure
/// computation, no I/O: a caller on an async thread can decide here and write a spill file
/// ([`write_new`]) elsewhere.
pub fn is_inline(value: &serde_json::Value) -> Result<bool, ProtocolError> {
    Ok(min_json_len(value) <= MAX_INLINE_PAYLOAD && fits_inline(value)?)
}

/// Streams `value` into a new spill file in `dir`, whatever its size, and returns its path. Blocking.
pub fn write_new(dir: &Path, value: &serde_json::Value) -> Result<PathBuf, ProtocolError> {
    let path = dir.join(format!("spill-{}.json", uuid::Uuid::new_v4()));
    match write_spill(&path, value) {
        Ok(()) => Ok(path),
        Err(e) => {
            // A partial file is useless to the reader; nothing else will delete it.
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Buffer of the spill file writer.
const SPILL_WRITE_BUFFER: usize = 256 * 1024;

fn write_spill(path: &Path, value: &serde_json::Value) -> Result<(), ProtocolError> {
    let io_err = |source| ProtocolError::SpillIo {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err)?;
    let mut out = std::io::BufWriter::with_capacity(SPILL_WRITE_BUFFER, file);
    crate::json::write_compact(&mut out, value).map_err(|e| match e.io_error_kind() {
        Some(kind) => io_err(std::io::Error::new(kind, e.to_string())),
        None => ProtocolError::Encode(e),
    })?;
    out.flush().map_err(io_err)?;
    Ok(())
}

/// Whether the compact JSON of `value` is at most [`MAX_INLINE_PAYLOAD`] bytes; stops counting at
/// the limit.
fn fits_inline(value: &serde_json::Value) -> Result<bool, ProtocolError> {
    let mut counter = Counter {
        len: 0,
        limit: MAX_INLINE_PAYLOAD,
    };
    match crate::json::write_compact(&mut counter, value) {
        Ok(()) => Ok(true),
        Err(_) if counter.len > counter.limit => Ok(false),
        Err(e) => Err(ProtocolError::Encode(e)),
    }
}

/// A writer that only counts, and fails once the count passes `limit`.
struct Counter {
    len: usize,
    limit: usize,
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.len = self.len.saturating_add(buf.len());
        if self.len > self.limit {
            return Err(std::io::Error::other("over the inline payload limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A lower bound of the compact JSON length of `v`, without serializing it: every string takes at
/// least its bytes and two quotes.
fn min_json_len(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(_) => 1,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => items
            .iter()
            .fold(2 + items.len().saturating_sub(1), |n, item| {
                n.saturating_add(min_json_len(item))
            }),
        Value::Object(map) => map
            .iter()
            .fold(2 + map.len().saturating_sub(1), |n, (k, item)| {
                n.saturating_add(k.len() + 3)
                    .saturating_add(min_json_len(item))
            }),
    }
}

/// Reads the spill file at `path`, which must lie directly in `dir`, deletes it, and parses it.
///
/// The file is deleted before parsing so a corrupt file is removed too. A path outside `dir` is refused
/// without touching it: the path comes from the other end of a channel. So is a `dir` that is a
/// symbolic link, and a file that is not a regular file: it is opened without following a link in
/// its last component (`O_NOFOLLOW`) and without waiting on a FIFO (`O_NONBLOCK`), then checked on the
/// open descriptor. A refused link or FIFO is removed (it is in the spill directory), never its target.
pub fn take(dir: &Path, path: &Path) -> Result<serde_json::Value, ProtocolError> {
    let outside = || ProtocolError::SpillOutsideDir {
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
    };
    let parent = path.parent().ok_or_else(outside)?;
    if !dir.symlink_metadata().is_ok_and(|m| m.file_type().is_dir()) {
        return Err(outside());
    }
    let (parent, dir_canon) = match (parent.canonicalize(), dir.canonicalize()) {
        (Ok(p), Ok(d)) => (p, d),
        _ => return Err(outside()),
    };
    if parent != dir_canon || path.file_name().is_none() {
        return Err(outside());
    }
    let io_err = |source| ProtocolError::SpillIo {
        path: path.to_path_buf(),
        source,
    };
    let read = read_regular(path);
    std::fs::remove_file(path).map_err(io_err)?;
    let bytes = read?;
    let bytes = match plain_string(bytes) {
        Ok(value) => return Ok(value),
        Err(bytes) => bytes,
    };
    serde_json::from_slice(&bytes).map_err(|source| ProtocolError::SpillMalformed {
        path: path.to_path_buf(),
        source,
    })
}

/// The whole of the regular file at `path`, opened without following a link and without blocking.
fn read_regular(path: &Path) -> Result<Vec<u8>, ProtocolError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let io_err = |source| ProtocolError::SpillIo {
        path: path.to_path_buf(),
        source,
    };
    let not_regular = |what| ProtocolError::SpillNotRegular {
        path: path.to_path_buf(),
        what,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => not_regular("a symbolic link"),
            _ => io_err(e),
        })?;
    let meta = file.metadata().map_err(io_err)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(not_regular(if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        }));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(io_err)?;
    Ok(bytes)
}

/// The value of a payload that is one JSON string with nothing escaped in it (the usual shape of a
/// large text output): its own bytes without the quotes, so the value costs no second buffer and no
/// parse. Anything else is handed back for the JSON parser (which also reports what is malformed).
fn plain_string(bytes: Vec<u8>) -> Result<serde_json::Value, Vec<u8>> {
    let n = bytes.len();
    if n < 2
        || bytes[0] != b'"'
        || bytes[n - 1] != b'"'
        || crate::json::needs_escape(&bytes[1..n - 1])
    {
        return Err(bytes);
    }
    let mut text = String::from_utf8(bytes).map_err(|e| e.into_bytes())?;
    // Both quotes are ASCII, so these cuts are on character boundaries.
    text.pop();
    text.remove(0);
    Ok(serde_json::Value::String(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_payload_stays_inline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let got = prepare(dir.path(), &json!({"text": "hi"})).expect("prepare");
        assert_eq!(got, Payload::Inline(json!({"text": "hi"})));
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[test]
    fn large_payload_spills_and_the_reader_deletes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = json!({"text": "a".repeat(MAX_INLINE_PAYLOAD + 1)});
        let Payload::File(path) = prepare(dir.path(), &big).expect("prepare") else {
            panic!("expected a spill file");
        };
        assert!(path.starts_with(dir.path()));
        assert_eq!(take(dir.path(), &path).expect("take"), big);
        assert!(!path.exists(), "the reader deletes the spill file");
    }

    /// `{"t":"…"}` with a string of `n` bytes: its JSON is `n + 8` bytes.
    fn sized(n: usize) -> serde_json::Value {
        json!({"t": "a".repeat(n)})
    }

    #[test]
    fn a_payload_of_exactly_the_limit_is_inline_and_one_byte_more_spills() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = sized(MAX_INLINE_PAYLOAD - 8);
        assert_eq!(
            serde_json::to_vec(&at).expect("json").len(),
            MAX_INLINE_PAYLOAD
        );
        assert_eq!(
            prepare(dir.path(), &at).expect("prepare"),
            Payload::Inline(at)
        );
        let over = sized(MAX_INLINE_PAYLOAD - 7);
        assert!(matches!(
            prepare(dir.path(), &over).expect("prepare"),
            Payload::File(_)
        ));
    }

    #[test]
    fn a_spill_file_holds_exactly_the_compact_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Far over the limit (streamed without measuring), and nested with escapes and numbers.
        let big = json!({"b": ["é\"\n", 1.5, -2, null, true], "a": "x".repeat(MAX_INLINE_PAYLOAD)});
        let Payload::File(path) = prepare(dir.path(), &big).expect("prepare") else {
            panic!("expected a spill file");
        };
        let written = std::fs::read(&path).expect("read");
        assert_eq!(written, serde_json::to_vec(&big).expect("json"));
    }

    #[test]
    fn escapes_that_push_a_payload_over_the_limit_spill_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Its bytes are under the limit, but each control character is six bytes of JSON.
        let escaped = json!("\u{1}".repeat(MAX_INLINE_PAYLOAD / 2));
        assert!(min_json_len(&escaped) <= MAX_INLINE_PAYLOAD);
        let Payload::File(path) = prepare(dir.path(), &escaped).expect("prepare") else {
            panic!("expected a spill file");
        };
        assert_eq!(take(dir.path(), &path).expect("take"), escaped);
    }

    #[test]
    fn min_json_len_never_exceeds_the_real_length() {
        for v in [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-12.5e300),
            json!(""),
            json!("é\n\"x"),
            json!([]),
            json!([1, [2, {}], "a"]),
            json!({}),
            json!({"k": {"": [null, false]}, "z": "\u{0}"}),
        ] {
            let real = serde_json::to_vec(&v).expect("json").len();
            assert!(
                min_json_len(&v) <= real,
                "{v}: {} > {real}",
                min_json_len(&v)
            );
        }
        // Exact for plain strings and containers of them.
        let v = json!({"ab": ["c", "de"]});
        assert_eq!(
            min_json_len(&v),
            serde_json::to_vec(&v).expect("json").len()
        );
    }

    #[test]
    fn an_unwritable_spill_dir_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let err = prepare(&missing, &sized(MAX_INLINE_PAYLOAD)).unwrap_err();
        assert!(matches!(err, ProtocolError::SpillIo { .. }), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
    }

    fn take_text(dir: &Path, text: &[u8]) -> Result<serde_json::Value, ProtocolError> {
        let path = dir.join(format!("spill-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).expect("write");
        let got = take(dir, &path);
        assert!(!path.exists(), "the reader deletes the spill file");
        got
    }

    #[test]
    fn a_spilled_string_reads_as_the_json_parser_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        for text in [
            &br#""""#[..],
            br#""plain text""#,
            "\"é🦀 ünïcode\"".as_bytes(),
            br#""with \"escapes\" \n \u00e9 \\""#,
            br#""a"  "#,
            br#" "a""#,
            br#"{"a": "b"}"#,
            br#"["x"]"#,
        ] {
            let expected: serde_json::Value = serde_json::from_slice(text).expect("valid JSON");
            assert_eq!(
                take_text(dir.path(), text).expect("take"),
                expected,
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_malformed_spilled_string_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        for text in [
            &b"\""[..],
            b"\"a\tb\"",
            b"\"a\"b\"",
            b"\"bad \xff utf-8\"",
            b"\"unterminated",
            b"\"\\\"",
        ] {
            let err = take_text(dir.path(), text).unwrap_err();
            assert!(
                matches!(err, ProtocolError::SpillMalformed { .. }),
                "{text:?}: {err}"
            );
        }
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
    fn a_link_in_the_spill_dir_is_refused_and_its_target_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let other = tempfile::tempdir().expect("tempdir");
        let victim = other.path().join("precious.json");
        std::fs::write(&victim, "{}").expect("write");
        let link = dir.path().join("spill-link.json");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        let err = take(dir.path(), &link).unwrap_err();
        assert!(
            matches!(
                err,
                ProtocolError::SpillNotRegular {
                    what: "a symbolic link",
                    ..
                }
            ),
            "{err}"
        );
        assert!(victim.exists(), "the link's target is kept");
        assert!(link.symlink_metadata().is_err(), "the link is removed");
        // A link to a device, and a spill directory that is itself a link.
        std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
        assert!(matches!(
            take(dir.path(), &link).unwrap_err(),
            ProtocolError::SpillNotRegular { .. }
        ));
        let linked_dir = dir.path().join("linked");
        std::os::unix::fs::symlink(other.path(), &linked_dir).expect("symlink");
        let err = take(&linked_dir, &linked_dir.join("precious.json")).unwrap_err();
        assert!(
            matches!(err, ProtocolError::SpillOutsideDir { .. }),
            "{err}"
        );
        assert!(victim.exists());
    }

    #[test]
    fn a_fifo_in_the_spill_dir_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("spill-fifo.json");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: `c` is a valid NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let err = take(dir.path(), &fifo).unwrap_err();
        assert!(
            matches!(err, ProtocolError::SpillNotRegular { what: "a FIFO", .. }),
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
