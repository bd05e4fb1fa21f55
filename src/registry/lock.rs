//! The single-writer lock on `<state.path>.lock` (`core.md` §5.8).
//!
//! `serve` and the `--apply` operator commands hold it for as long as they may
//! write state; a second writer is refused instead of racing the first.

use super::state::StateError;
use super::store::StatePaths;
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::geteuid;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// Held while alive; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    _lock: Flock<File>,
}

/// Takes the exclusive, non-blocking writer lock.
pub fn acquire(paths: &StatePaths) -> Result<StateLock, StateError> {
    let euid = geteuid().as_raw();
    let dir = std::fs::symlink_metadata(&paths.dir)
        .map_err(|_| StateError::Io("state directory must exist"))?;
    if !dir.file_type().is_dir() || dir.uid() != euid || dir.mode() & 0o022 != 0 {
        return Err(StateError::UnsafeFile(
            "state directory must be owned by the provider user and not be group-writable or world-writable",
        ));
    }
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&paths.lock)
        .map_err(|_| StateError::UnsafeFile("lock file must be a regular file, not a symlink"))?;
    let meta = file
        .metadata()
        .map_err(|_| StateError::Io("cannot inspect lock file"))?;
    if !meta.file_type().is_file()
        || meta.uid() != euid
        || meta.mode() & 0o077 != 0
        || meta.nlink() != 1
    {
        return Err(StateError::UnsafeFile(
            "lock file must be a private (0600) regular file owned by the provider user",
        ));
    }
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(StateLock { _lock: lock }),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(StateError::Locked),
        Err(_) => Err(StateError::Io(
            "advisory locks are not supported on the state filesystem",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_second_writer_is_refused_until_the_first_releases() {
        let dir = std::env::temp_dir().join(format!("state-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let paths = StatePaths::new(&dir.join("key-registry.json"));
        let first = acquire(&paths).unwrap();
        assert_eq!(acquire(&paths).unwrap_err(), StateError::Locked);
        drop(first);
        let again = acquire(&paths).unwrap();
        assert_eq!(
            std::fs::metadata(&paths.lock).unwrap().mode() & 0o777,
            0o600
        );
        drop(again);
        std::fs::set_permissions(&paths.lock, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(acquire(&paths), Err(StateError::UnsafeFile(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
