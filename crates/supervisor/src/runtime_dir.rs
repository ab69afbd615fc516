//! The private runtime directory: mode 0700, owned by the supervisor, removed when it is dropped.
//!
//! ```text
//! cogvisor-XXXXXX/          0700
//!   slot-<generation>-<n>.sock   slot sockets (filesystem sockets, not abstract ones: any process in
//!                                the network namespace could connect to an abstract socket)
//!   spill/                  spill files in both directions
//!   outputs/<uuid>/         one directory per prediction for its file outputs, removed after it ends
//!   python/                 the embedded worker and SDK (written by the server crate)
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::SupervisorError;

/// The private runtime directory. Dropping it removes the whole tree.
#[derive(Debug)]
pub struct RuntimeDir {
    dir: tempfile::TempDir,
}

impl RuntimeDir {
    /// Creates `cogvisor-XXXXXX` with mode 0700 under `parent` (default: the system temp dir).
    pub fn create(parent: Option<&Path>) -> Result<Self, SupervisorError> {
        let parent = parent
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
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

    /// The socket path of `slot` in worker `generation`.
    pub fn slot_socket(&self, generation: u64, slot: u32) -> PathBuf {
        self.dir
            .path()
            .join(format!("slot-{generation}-{slot}.sock"))
    }
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
    fn names_the_parent_when_it_cannot_be_created() {
        let err = RuntimeDir::create(Some(Path::new("/nonexistent/cogvisor-test"))).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/cogvisor-test"),
            "{err}"
        );
    }
}
