//! The strict reader for credential files: the JWT file (`config-cli-auth.md`
//! §3.2), the PIN and certificate files (§3.4). Absolute path, no symlink, a
//! regular file without group-write or any world bits, the same inode before,
//! at and after the open (opened non-blocking, so a FIFO swapped in cannot
//! hang it), and a size cap. Callers map [`FileError`] to their own errors.

use std::fs::{File, Metadata};
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;
use zeroize::Zeroizing;

/// Group write/execute and any world access.
const UNSAFE_MODE_BITS: u32 = 0o037;

/// Why a credential file was refused. No path or content is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileError {
    Unreadable,
    UnsafePermissions,
    Changed,
    TooLarge,
}

fn check(meta: &Metadata) -> Result<(), FileError> {
    if !meta.file_type().is_file() {
        return Err(FileError::Unreadable);
    }
    if meta.mode() & UNSAFE_MODE_BITS != 0 {
        return Err(FileError::UnsafePermissions);
    }
    Ok(())
}

/// Reads at most `max` bytes of `path` under the rules above.
pub fn read_strict(path: &Path, max: u64) -> Result<Zeroizing<Vec<u8>>, FileError> {
    if !path.is_absolute() {
        return Err(FileError::Unreadable);
    }
    let before = std::fs::symlink_metadata(path).map_err(|_| FileError::Unreadable)?;
    check(&before)?;
    // O_NONBLOCK: a FIFO swapped in after the check cannot hang the open.
    let file = File::options()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|_| FileError::Unreadable)?;
    let opened = file.metadata().map_err(|_| FileError::Unreadable)?;
    check(&opened)?;
    let after = std::fs::symlink_metadata(path).map_err(|_| FileError::Unreadable)?;
    check(&after)?;
    let same = |a: &Metadata, b: &Metadata| a.dev() == b.dev() && a.ino() == b.ino();
    if !same(&before, &opened) || !same(&opened, &after) {
        return Err(FileError::Changed);
    }
    let mut raw = Zeroizing::new(Vec::new());
    file.take(max.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|_| FileError::Unreadable)?;
    if raw.len() as u64 > max {
        return Err(FileError::TooLarge);
    }
    Ok(raw)
}
