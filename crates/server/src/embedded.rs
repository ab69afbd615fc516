//! The Python worker and SDK, embedded at build time and written into the private runtime directory,
//! so a container needs only the one binary.

use std::path::{Path, PathBuf};

use include_dir::{include_dir, Dir, DirEntry};

use crate::error::ServeError;

static PYTHON: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../python");

/// The packages the worker imports; tests and caches in `python/` are not shipped.
const PACKAGES: [&str; 2] = ["cog", "cogvisor_worker"];

/// Writes the embedded packages to `<runtime_dir>/python` and returns that directory.
pub fn write_python_tree(runtime_dir: &Path) -> Result<PathBuf, ServeError> {
    let root = runtime_dir.join("python");
    for package in PACKAGES {
        if let Some(dir) = PYTHON.get_dir(package) {
            write_dir(dir, &root)?;
        }
    }
    Ok(root)
}

fn write_dir(dir: &Dir<'_>, root: &Path) -> Result<(), ServeError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ServeError::Embed { path, source }
    };
    let target = root.join(dir.path());
    std::fs::create_dir_all(&target).map_err(err(&target))?;
    for entry in dir.entries() {
        match entry {
            DirEntry::Dir(sub) => {
                if sub.path().file_name().is_some_and(|n| n == "__pycache__") {
                    continue;
                }
                write_dir(sub, root)?;
            }
            DirEntry::File(file) => {
                if file.path().extension().is_some_and(|e| e == "pyc") {
                    continue;
                }
                let path = root.join(file.path());
                std::fs::write(&path, file.contents()).map_err(err(&path))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_worker_and_sdk_packages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = write_python_tree(dir.path()).expect("write");
        assert!(root.join("cogvisor_worker/__main__.py").is_file());
        assert!(root.join("cog/__init__.py").is_file());
        assert!(!root.join("tests").exists(), "python/tests is not shipped");
    }
}
