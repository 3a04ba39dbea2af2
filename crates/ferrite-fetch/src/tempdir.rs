//! A scratch directory (or file) that is removed when dropped, unless kept.

use crate::error::{FetchError, IoContext};
use std::path::{Path, PathBuf};

/// Removes its path (file or folder) on drop unless [`TempPath::keep`] was called.
#[derive(Debug)]
pub struct TempPath {
    path: PathBuf,
    armed: bool,
}

impl TempPath {
    pub fn new(path: PathBuf) -> Self {
        Self { path, armed: true }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the path in place (it was renamed away or is wanted).
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.armed {
            remove_any(&self.path);
        }
    }
}

/// Removes a file or a folder tree, ignoring "not found".
pub fn remove_any(path: &Path) {
    let _ = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    };
}

/// A fresh folder under the system temp dir, removed on drop (used by the unit tests).
#[cfg(test)]
pub struct TempDir(TempPath);

#[cfg(test)]
impl TempDir {
    pub fn new(tag: &str) -> Result<Self, FetchError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ferrite-fetch-{tag}-{}-{n}", std::process::id()));
        remove_any(&path);
        std::fs::create_dir_all(&path).ctx(|| format!("creating {}", path.display()))?;
        Ok(Self(TempPath::new(path)))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Creates `dir` (and parents) with a readable error.
pub fn create_dir(dir: &Path) -> Result<(), FetchError> {
    std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))
}
