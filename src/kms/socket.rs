//! Safe Unix socket creation (`core.md` §1.1, `operations.md` §4.2).
//!
//! The parent directory must be ours and not group/world-writable; an existing
//! path is only ever removed when it is a socket that refused a connection
//! (verified dead). A live peer or an indeterminate probe fails closed.

use nix::unistd::{Gid, Group, geteuid};
use std::fmt;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};

const LIVENESS_DIAL_TIMEOUT: Duration = Duration::from_millis(250);

/// Where and how to create the socket.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    pub path: PathBuf,
    pub mode: u32,
    /// Group to own the socket; `None` leaves the process's group.
    pub gid: Option<u32>,
}

/// Why the socket could not be created. Never shows the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketError {
    InvalidOptions,
    UnsafeParent,
    InvalidTarget,
    LiveSocketCollision,
    IndeterminateSocketState,
    UnknownGroup,
    BindFailed,
    PermissionsFailed,
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidOptions => "server.socketPath: socket path must be absolute and mode must have no 0117 bits",
            Self::UnsafeParent => {
                "server.socketPath: parent directory must exist, be a real directory owned by the provider user, and not be group-writable or world-writable"
            }
            Self::InvalidTarget => "server.socketPath: existing path must be a Unix socket (it is never removed)",
            Self::LiveSocketCollision => "server.socketPath: another process is serving on the socket; refusing to take it over",
            Self::IndeterminateSocketState => {
                "server.socketPath: cannot tell whether the existing socket is in use; refusing to remove it"
            }
            Self::UnknownGroup => "server.socketGroup: group not found",
            Self::BindFailed => "server.socketPath: cannot listen on the socket",
            Self::PermissionsFailed => "server.socketPath: cannot apply socket mode or group",
        })
    }
}

impl std::error::Error for SocketError {}

/// Resolves `server.socketGroup` exactly as config validation reads it: all
/// digits is a numeric GID, anything else a group name that must exist.
pub fn resolve_group(group: &str) -> Result<u32, SocketError> {
    if !group.is_empty() && group.bytes().all(|b| b.is_ascii_digit()) {
        return group.parse::<u32>().map_err(|_| SocketError::UnknownGroup);
    }
    match Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        _ => Err(SocketError::UnknownGroup),
    }
}

/// A listening socket; `stale_removed` tells whether a dead socket was reclaimed.
pub struct BoundSocket {
    pub listener: UnixListener,
    pub stale_removed: bool,
    pub inode: u64,
}

fn check_parent(path: &Path) -> Result<(), SocketError> {
    let parent = path.parent().ok_or(SocketError::UnsafeParent)?;
    let meta = std::fs::symlink_metadata(parent).map_err(|_| SocketError::UnsafeParent)?;
    let safe =
        meta.file_type().is_dir() && meta.mode() & 0o022 == 0 && meta.uid() == geteuid().as_raw();
    if safe {
        Ok(())
    } else {
        Err(SocketError::UnsafeParent)
    }
}

/// Inspects an existing target; returns true when a dead socket must be removed.
async fn existing_is_dead(path: &Path) -> Result<bool, SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(_) => return Err(SocketError::IndeterminateSocketState),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::InvalidTarget);
    }
    match tokio::time::timeout(LIVENESS_DIAL_TIMEOUT, UnixStream::connect(path)).await {
        Ok(Ok(_peer)) => Err(SocketError::LiveSocketCollision),
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => Ok(true),
        _ => Err(SocketError::IndeterminateSocketState),
    }
}

/// Creates the listening socket per the rules above, then applies mode and group.
pub async fn bind_socket(options: &SocketOptions) -> Result<BoundSocket, SocketError> {
    let path = &options.path;
    if !path.is_absolute()
        || options.mode == 0
        || options.mode & !0o777 != 0
        || options.mode & 0o117 != 0
    {
        return Err(SocketError::InvalidOptions);
    }
    check_parent(path)?;
    let stale_removed = existing_is_dead(path).await?;
    if stale_removed {
        std::fs::remove_file(path).map_err(|_| SocketError::IndeterminateSocketState)?;
        tracing::warn!("socket.stale_removed");
    }
    let listener = UnixListener::bind(path).map_err(|_| SocketError::BindFailed)?;
    let applied = std::fs::set_permissions(path, std::fs::Permissions::from_mode(options.mode))
        .and_then(|()| match options.gid {
            Some(gid) => std::os::unix::fs::chown(path, None, Some(Gid::from_raw(gid).as_raw())),
            None => Ok(()),
        })
        .and_then(|()| std::fs::symlink_metadata(path));
    match applied {
        Ok(meta) => Ok(BoundSocket {
            listener,
            stale_removed,
            inode: meta.ino(),
        }),
        Err(_) => {
            drop(listener);
            let _ = std::fs::remove_file(path);
            Err(SocketError::PermissionsFailed)
        }
    }
}

/// Removes the socket file on shutdown, only if it is still the one we bound.
pub fn remove_socket(path: &Path, inode: u64) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket() && m.ino() == inode)
    {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        dir
    }

    fn options(dir: &Path) -> SocketOptions {
        SocketOptions {
            path: dir.join("kms.sock"),
            mode: 0o660,
            gid: Some(0),
        }
    }

    #[tokio::test]
    async fn binds_with_mode_and_group_and_removes_only_its_own_socket() {
        let dir = scratch("ok");
        let bound = bind_socket(&options(&dir)).await.unwrap();
        let meta = std::fs::symlink_metadata(dir.join("kms.sock")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), 0);
        assert!(!bound.stale_removed);
        // A live listener is never taken over.
        assert_eq!(
            bind_socket(&options(&dir)).await.err(),
            Some(SocketError::LiveSocketCollision)
        );
        remove_socket(&dir.join("kms.sock"), bound.inode + 1);
        assert!(dir.join("kms.sock").exists());
        remove_socket(&dir.join("kms.sock"), bound.inode);
        assert!(!dir.join("kms.sock").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn reclaims_a_dead_socket_once() {
        let dir = scratch("stale");
        let path = dir.join("kms.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let bound = bind_socket(&options(&dir)).await.unwrap();
        assert!(bound.stale_removed);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn refuses_unsafe_parents_targets_and_modes() {
        let dir = scratch("unsafe");
        for mode in [0o664, 0o770, 0o4660, 0] {
            let opts = SocketOptions {
                mode,
                ..options(&dir)
            };
            assert_eq!(
                bind_socket(&opts).await.err(),
                Some(SocketError::InvalidOptions),
                "{mode:o}"
            );
        }
        std::fs::write(dir.join("kms.sock"), b"").unwrap();
        assert_eq!(
            bind_socket(&options(&dir)).await.err(),
            Some(SocketError::InvalidTarget)
        );
        assert!(
            dir.join("kms.sock").exists(),
            "a regular file is never removed"
        );
        std::fs::remove_file(dir.join("kms.sock")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.join("kms.sock")).unwrap();
        assert_eq!(
            bind_socket(&options(&dir)).await.err(),
            Some(SocketError::InvalidTarget)
        );
        std::fs::remove_file(dir.join("kms.sock")).unwrap();
        for mode in [0o770, 0o777, 0o752] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                bind_socket(&options(&dir)).await.err(),
                Some(SocketError::UnsafeParent),
                "{mode:o}"
            );
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let link = dir.with_extension("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let via_link = SocketOptions {
            path: link.join("kms.sock"),
            ..options(&dir)
        };
        assert_eq!(
            bind_socket(&via_link).await.err(),
            Some(SocketError::UnsafeParent)
        );
        let missing = SocketOptions {
            path: dir.join("missing/kms.sock"),
            ..options(&dir)
        };
        assert_eq!(
            bind_socket(&missing).await.err(),
            Some(SocketError::UnsafeParent)
        );
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resolves_numeric_and_named_groups() {
        assert_eq!(resolve_group("0"), Ok(0));
        assert_eq!(resolve_group("-1"), Err(SocketError::UnknownGroup));
        assert_eq!(resolve_group("root"), Ok(0));
        assert_eq!(
            resolve_group("no-such-group-xyz"),
            Err(SocketError::UnknownGroup)
        );
    }
}
