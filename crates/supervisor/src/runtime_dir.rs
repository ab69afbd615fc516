//! The private runtime directory: mode 0700, owned by the supervisor, removed when it is dropped.
//!
//! ```text
//! cogvisor-XXXXXX/          0700
//!   slot-<worker>-<generation>-<n>.sock   slot sockets (filesystem sockets, not abstract ones: any process in
//!                                the network namespace could connect to an abstract socket)
//!   spill/                  spill files in both directions
//!   outputs/<worker>-<n>/   one directory per prediction with file outputs (the worker creates it on
//!                           its first file), removed after it ends
//!   python/                 the embedded worker and SDK (written by the server crate)
//!   owner                   "<pid> <start time>" of the cogvisor that owns it
//! ```
//!
//! A cogvisor killed with SIGKILL cannot remove its directory; its worker's group guard does
//! (python/cogvisor_worker/guard.py, the same `owner` rule). As a backstop (a SIGKILL before any worker
//! ran), the next cogvisor started with the same parent removes every `cogvisor-*` directory whose
//! `owner` names a process that no longer exists (the start time guards against a reused pid), so such
//! leftovers never pile up.
//!
//! A Unix socket's path has a hard limit (107 bytes on Linux). The directory goes under the system temp
//! dir (`TMPDIR`) when that leaves room for every slot socket the server can ever create (up to 999
//! workers, generation 99,999,999, 9,999 slots), and under `/tmp` otherwise, with a warning: a long
//! `TMPDIR` would otherwise break the first socket bind, or worse, a recycle hours later when the
//! generation gains a digit.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::SupervisorError;

/// The private runtime directory. Dropping it removes the whole tree.
#[derive(Debug)]
pub struct RuntimeDir {
    dir: tempfile::TempDir,
}

/// The longest path `bind(2)` takes for a Unix socket: `sun_path` holds 108 bytes on Linux (104 on
/// macOS and the BSDs), the last of them the NUL.
#[cfg(target_os = "linux")]
pub const SOCKET_PATH_MAX: usize = 107;
#[cfg(not(target_os = "linux"))]
pub const SOCKET_PATH_MAX: usize = 103;

/// What a slot socket's path adds to the parent: this directory and the longest name `slot_socket`
/// gives for up to 999 workers, generation 99,999,999 and 9,999 slots.
const SOCKET_ROOM: usize = "/cogvisor-XXXXXX/slot-999-99999999-9999.sock".len();

/// The longest parent that leaves room for every slot socket.
pub const PARENT_MAX: usize = SOCKET_PATH_MAX - SOCKET_ROOM;

/// Where the directory goes when the system temp dir's path is too long for sockets.
const FALLBACK_PARENT: &str = "/tmp";

/// The parent for the directory when none is given: the system temp dir if sockets fit under it.
fn default_parent(temp_dir: PathBuf) -> PathBuf {
    if temp_dir.as_os_str().len() <= PARENT_MAX {
        return temp_dir;
    }
    tracing::warn!(
        temp_dir = %temp_dir.display(),
        fallback = FALLBACK_PARENT,
        max = PARENT_MAX,
        "the system temp dir's path is too long for the slot sockets (Unix socket paths are at most {SOCKET_PATH_MAX} bytes); the runtime directory goes under {FALLBACK_PARENT}"
    );
    PathBuf::from(FALLBACK_PARENT)
}

impl RuntimeDir {
    /// Creates `cogvisor-XXXXXX` with mode 0700 under `parent` (default: the system temp dir, or
    /// `/tmp` when that path is too long for the slot sockets). A given `parent` that is too long is
    /// an error.
    pub fn create(parent: Option<&Path>) -> Result<Self, SupervisorError> {
        let parent = match parent {
            Some(parent) if parent.as_os_str().len() > PARENT_MAX => {
                return Err(SupervisorError::RuntimeDirTooLong {
                    dir: parent.to_path_buf(),
                    len: parent.as_os_str().len(),
                    max: PARENT_MAX,
                })
            }
            Some(parent) => parent.to_path_buf(),
            None => default_parent(std::env::temp_dir()),
        };
        let err = |source| SupervisorError::RuntimeDir {
            dir: parent.clone(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("cogvisor-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&parent)
            .map_err(err)?;
        std::fs::create_dir(dir.path().join("spill")).map_err(err)?;
        std::fs::create_dir(dir.path().join("outputs")).map_err(err)?;
        if let Some(me) = process_identity(std::process::id()) {
            std::fs::write(dir.path().join("owner"), me).map_err(err)?;
        }
        let removed = remove_stale(&parent, dir.path());
        if removed > 0 {
            tracing::info!(removed, parent = %parent.display(), "removed runtime directories of cogvisor processes that are gone");
        }
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where spill files are written and the only place they are read from.
    pub fn spill_dir(&self) -> PathBuf {
        self.dir.path().join("spill")
    }

    /// Parent of the per-prediction output directories.
    pub fn outputs_dir(&self) -> PathBuf {
        self.dir.path().join("outputs")
    }

    /// The socket path of `slot` in generation `generation` of pool worker `worker`.
    pub fn slot_socket(&self, worker: u32, generation: u64, slot: u32) -> PathBuf {
        self.dir
            .path()
            .join(format!("slot-{worker}-{generation}-{slot}.sock"))
    }
}

/// `"<pid> <start time in clock ticks>"`, which names one process for the life of the machine.
fn process_identity(pid: u32) -> Option<String> {
    let stat = crate::procfs::read_stat(pid)?;
    Some(format!("{pid} {}", stat.start_time))
}

/// Removes `cogvisor-*` directories under `parent` (other than `keep`) whose owner is gone. Directories
/// without an owner file (another cogvisor may be creating one right now) are left alone.
fn remove_stale(parent: &Path, keep: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("cogvisor-"));
        if !is_ours || path == keep || !path.is_dir() {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(path.join("owner")) else {
            continue;
        };
        let owner = owner.trim();
        let alive = owner
            .split_whitespace()
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
            .and_then(process_identity)
            .is_some_and(|now| now == owner);
        if !alive && std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_private_and_removed_on_drop() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = RuntimeDir::create(Some(parent.path())).expect("create");
        let mode = std::fs::metadata(dir.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(dir.spill_dir().is_dir());
        assert!(dir.outputs_dir().is_dir());
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn directories_of_dead_owners_are_removed_at_start_and_live_ones_kept() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dead = parent.path().join("cogvisor-dead01");
        std::fs::create_dir_all(dead.join("spill")).expect("mkdir");
        // A pid that existed with another start time: a reused or long-gone process.
        std::fs::write(dead.join("owner"), format!("{} 1", std::process::id())).expect("write");
        let unowned = parent.path().join("cogvisor-new001");
        std::fs::create_dir(&unowned).expect("mkdir");
        let live = RuntimeDir::create(Some(parent.path())).expect("first");
        let second = RuntimeDir::create(Some(parent.path())).expect("second");
        assert!(!dead.exists(), "a dead owner's directory was kept");
        assert!(
            unowned.exists(),
            "a directory without an owner file was removed"
        );
        assert!(live.path().exists(), "a live owner's directory was removed");
        assert!(second.path().exists());
    }

    #[test]
    fn a_temp_dir_too_long_for_sockets_falls_back_to_tmp() {
        let fits = PathBuf::from(format!("/{}", "t".repeat(PARENT_MAX - 1)));
        assert_eq!(default_parent(fits.clone()), fits);
        let too_long = PathBuf::from(format!("/{}", "t".repeat(PARENT_MAX)));
        assert_eq!(default_parent(too_long), PathBuf::from("/tmp"));
    }

    #[test]
    fn the_longest_slot_socket_fits_under_the_longest_parent() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = RuntimeDir::create(Some(parent.path())).expect("create");
        let name = dir.slot_socket(999, 99_999_999, 9_999);
        let name = name.file_name().expect("name").len();
        let dir_name = dir.path().file_name().expect("dir name").len();
        assert_eq!(PARENT_MAX + 1 + dir_name + 1 + name, SOCKET_PATH_MAX);
    }

    #[test]
    fn a_given_parent_too_long_for_sockets_is_refused_by_name() {
        let long = PathBuf::from(format!("/{}", "p".repeat(PARENT_MAX)));
        let err = RuntimeDir::create(Some(&long)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&*long.to_string_lossy()), "{msg}");
        assert!(msg.contains(&format!("at most {PARENT_MAX}")), "{msg}");
    }

    #[test]
    fn names_the_parent_when_it_cannot_be_created() {
        let err = RuntimeDir::create(Some(Path::new("/nonexistent/cogvisor-test"))).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/cogvisor-test"),
            "{err}"
        );
    }
}
