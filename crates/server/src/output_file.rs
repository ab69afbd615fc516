//! Reading a file the worker names as a prediction's output (`file_output`): only a regular file inside
//! that prediction's output directory, reached without following a symbolic link, no larger than the
//! size cap, read on the blocking pool.
//!
//! The path comes from the other end of a channel the model can write to, so it is checked before it
//! is opened and the opened file is checked again: a FIFO (whose `open` would wait for a writer),
//! `/dev/zero` (endless), a directory or a link to a file elsewhere is refused with an error naming the
//! path, and the prediction fails with it; the worker is kept.
//!
//! Each directory between the output directory and the file is checked with `lstat` before the open,
//! and the file itself is opened with `O_NOFOLLOW | O_NONBLOCK`, then checked with `fstat` on the open
//! descriptor. A model that swaps a directory for a link between the check and the open can at most
//! make the server read a regular file of the same user that the model could read itself; it cannot
//! make the server block or read without end.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// The default largest output file read (into a `data:` URL or an upload): 100 MiB, the size of the
/// largest request body.
pub const DEFAULT_MAX_OUTPUT_FILE: u64 = 100 * 1024 * 1024;

/// Why an output file was not read. The prediction fails with this message.
#[derive(Debug, thiserror::Error)]
pub enum OutputFileError {
    #[error("output file {path} is outside the prediction's output directory {dir}")]
    Outside { path: PathBuf, dir: PathBuf },
    #[error("output file {path} is not a regular file: it is {what}")]
    NotRegular { path: PathBuf, what: &'static str },
    #[error(
        "output file {path} is {size} bytes, over the {max}-byte limit (outputs.max_file_size)"
    )]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("cannot read output file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn describe(kind: std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file inside `dir` reached through real directories
/// only, and no larger than `max` bytes. Blocks (briefly: it never waits on a FIFO).
pub fn open_output(dir: &Path, path: &Path, max: u64) -> Result<(File, u64), OutputFileError> {
    let outside = || OutputFileError::Outside {
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
    };
    let rest = path.strip_prefix(dir).map_err(|_| outside())?;
    let parts: Vec<&std::ffi::OsStr> = rest
        .components()
        .map(|c| match c {
            Component::Normal(part) => Ok(part),
            _ => Err(outside()),
        })
        .collect::<Result<_, _>>()?;
    if parts.is_empty() {
        return Err(outside());
    }
    // The output directory and every directory below it on the way: real directories, no links.
    let mut at = dir.to_path_buf();
    for (i, part) in std::iter::once(None)
        .chain(parts[..parts.len() - 1].iter().map(Some))
        .enumerate()
    {
        if let Some(part) = part {
            at.push(part);
        }
        let meta = at
            .symlink_metadata()
            .map_err(|source| OutputFileError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if !meta.file_type().is_dir() {
            return Err(if i == 0 {
                outside()
            } else {
                OutputFileError::NotRegular {
                    path: at.clone(),
                    what: describe(meta.file_type()),
                }
            });
        }
    }
    open_regular(path, max)
}

/// Opens `path` without following a link in its last component and without waiting on a FIFO, and
/// checks the open file is regular and at most `max` bytes.
fn open_regular(path: &Path, max: u64) -> Result<(File, u64), OutputFileError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => OutputFileError::NotRegular {
                path: path.to_path_buf(),
                what: "a symbolic link",
            },
            _ => OutputFileError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
    let meta = file.metadata().map_err(|source| OutputFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(OutputFileError::NotRegular {
            path: path.to_path_buf(),
            what: describe(meta.file_type()),
        });
    }
    if meta.len() > max {
        return Err(OutputFileError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            max,
        });
    }
    Ok((file, meta.len()))
}

/// Reads what [`open_output`] opened, never more than `max` bytes (a file still growing is refused).
fn read_capped(path: &Path, file: File, size: u64, max: u64) -> Result<Vec<u8>, OutputFileError> {
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| OutputFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > max {
        return Err(OutputFileError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}

/// The bytes of output file `path` of the prediction whose output directory is `dir`, read whole.
/// Blocks: on an async thread use [`read_output_file`].
pub fn read_output_blocking(dir: &Path, path: &Path, max: u64) -> Result<Vec<u8>, OutputFileError> {
    let (file, size) = open_output(dir, path, max)?;
    read_capped(path, file, size, max)
}

/// The bytes of a regular file at `path`, not following a link in its last component, at most `max`
/// bytes; no directory check (for callers without an output directory). Blocks.
pub fn read_regular_blocking(path: &Path, max: u64) -> Result<Vec<u8>, OutputFileError> {
    let (file, size) = open_regular(path, max)?;
    read_capped(path, file, size, max)
}

/// [`read_output_blocking`] on the blocking pool.
pub async fn read_output_file(
    dir: PathBuf,
    path: PathBuf,
    max: u64,
) -> Result<Vec<u8>, OutputFileError> {
    let shown = path.clone();
    tokio::task::spawn_blocking(move || read_output_blocking(&dir, &path, max))
        .await
        .unwrap_or_else(|e| {
            Err(OutputFileError::Io {
                path: shown,
                source: std::io::Error::other(e.to_string()),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("outputs").join("0");
        std::fs::create_dir_all(&dir).expect("mkdir");
        (root, dir)
    }

    #[test]
    fn a_regular_file_inside_the_directory_is_read() {
        let (_root, dir) = setup();
        let path = dir.join("a.bin");
        std::fs::write(&path, b"abc").expect("write");
        assert_eq!(read_output_blocking(&dir, &path, 10).expect("read"), b"abc");
        std::fs::create_dir(dir.join("sub")).expect("mkdir");
        std::fs::write(dir.join("sub/b"), b"x").expect("write");
        assert_eq!(
            read_output_blocking(&dir, &dir.join("sub/b"), 10).expect("read"),
            b"x"
        );
    }

    #[test]
    fn paths_outside_the_directory_are_refused() {
        let (root, dir) = setup();
        let elsewhere = root.path().join("secret");
        std::fs::write(&elsewhere, b"s").expect("write");
        for bad in [
            elsewhere.clone(),
            dir.join("../../secret"),
            dir.clone(),
            PathBuf::from("/etc/passwd"),
            PathBuf::from("/dev/zero"),
        ] {
            let err = read_output_blocking(&dir, &bad, 10).unwrap_err();
            assert!(
                matches!(err, OutputFileError::Outside { .. }),
                "{bad:?}: {err}"
            );
            assert!(
                err.to_string().contains(&bad.display().to_string()),
                "{err}"
            );
        }
    }

    #[test]
    fn links_fifos_and_devices_are_not_regular_files() {
        let (root, dir) = setup();
        let target = root.path().join("secret");
        std::fs::write(&target, b"s").expect("write");
        std::os::unix::fs::symlink(&target, dir.join("link")).expect("symlink");
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).expect("symlink");
        std::os::unix::fs::symlink(root.path(), dir.join("up")).expect("symlink");
        nix_mkfifo(&dir.join("fifo"));
        for (name, what) in [
            ("link", "a symbolic link"),
            ("zero", "a symbolic link"),
            ("fifo", "a FIFO"),
            ("up/secret", "a symbolic link"),
        ] {
            let err = read_output_blocking(&dir, &dir.join(name), 10).unwrap_err();
            match &err {
                OutputFileError::NotRegular { what: got, .. } => assert_eq!(*got, what, "{name}"),
                other => panic!("{name}: {other}"),
            }
        }
        // Without the directory check, a device is still refused by what the open descriptor is.
        let err = read_regular_blocking(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(
            matches!(
                err,
                OutputFileError::NotRegular {
                    what: "a character device",
                    ..
                }
            ),
            "{err}"
        );
    }

    fn nix_mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: `c` is a valid NUL-terminated path that lives across the call.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(rc, 0, "mkfifo");
    }

    #[test]
    fn a_file_over_the_cap_is_refused_with_both_sizes() {
        let (_root, dir) = setup();
        let path = dir.join("big");
        std::fs::write(&path, [0u8; 11]).expect("write");
        let err = read_output_blocking(&dir, &path, 10).unwrap_err();
        assert!(
            matches!(
                err,
                OutputFileError::TooLarge {
                    size: 11,
                    max: 10,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("outputs.max_file_size"), "{err}");
        assert_eq!(
            read_output_blocking(&dir, &path, 11).expect("read").len(),
            11
        );
    }

    #[tokio::test]
    async fn the_async_read_is_the_blocking_read() {
        let (_root, dir) = setup();
        let path = dir.join("a");
        std::fs::write(&path, b"hi").expect("write");
        assert_eq!(
            read_output_file(dir.clone(), path, 10).await.expect("read"),
            b"hi"
        );
        assert!(read_output_file(dir.clone(), dir.join("missing"), 10)
            .await
            .is_err());
    }
}
