//! What the unit tests share: a temporary directory that removes itself. (The end-to-end
//! tests have their own, in tests/integration/support.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system's temporary directory, named after the test's
/// `label`, this process and a counter, and removed (with what it holds) when dropped.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
}

impl TempDir {
    /// Creates the directory (empty: a leftover of the same name is removed first).
    pub(crate) fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("relevo-unit-{}-{label}-{n}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir { path }
    }

    /// A path inside it.
    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
