//! Private scratch directories for tests.
//!
//! A tiny stand-in for the `tempfile` crate: each directory gets a name that is
//! unique across processes and threads, is created `0700` (OpenBao keys, root
//! tokens and JWTs live in it), and is removed recursively on drop.

use std::fs::{self, DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Distinguishes directories created by the same process in the same nanosecond.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory under [`std::env::temp_dir`] that is deleted when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/<prefix>-<pid>-<nanos>-<n>` with mode `0700`.
    pub fn new(prefix: &str) -> TempDir {
        Self::new_in(&std::env::temp_dir(), prefix)
    }

    /// Like [`TempDir::new`] but below `base` (e.g. `/run/openbao-kms`, the
    /// only place the provider accepts a socket).
    pub fn new_in(base: &Path, prefix: &str) -> TempDir {
        fs::create_dir_all(base).unwrap_or_else(|e| panic!("creating {}: {e}", base.display()));
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("{prefix}-{}-{nanos}-{n}", std::process::id()));
            // `create` (not `create_all`) fails on an existing name, so two
            // creators can never share a directory; a collision just retries.
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    // The umask may have narrowed the mode further; make it exact
                    // because tests assert on file modes beneath it.
                    fs::set_permissions(&path, Permissions::from_mode(0o700))
                        .unwrap_or_else(|e| panic!("chmod 0700 {}: {e}", path.display()));
                    return TempDir { path };
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("creating temp dir {}: {e}", path.display()),
            }
        }
    }

    /// The directory's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a failure here must not turn a passing test into a panic
        // (or a failing one into an abort from a double panic).
        let _ = fs::remove_dir_all(&self.path);
    }
}
