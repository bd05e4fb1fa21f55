//! Safe Unix socket creation (`core.md` §1.1, `operations.md` §4.2–§4.3).
//!
//! The parent directory must be ours, not group/world-writable, and, when a
//! socket group is configured, belong to that group with group search
//! permission (the apiserver reaches the socket through it); an existing
//! path is only ever removed when it is a socket that refused a connection
//! (verified dead). A live peer or an indeterminate probe fails closed.

use crate::rules::{DirFault, check_socket_dir_group, check_socket_dir_shape};
use nix::unistd::{Gid, Group, geteuid};
use std::fmt;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};

const LIVENESS_DIAL_TIMEOUT: Duration = Duration::from_millis(250);

/// The one command that creates the directory as the packaged tmpfiles.d
/// entry does; every parent-directory error ends with it.
const DIR_FIX: &str = "run: install -d -m 2750 -o openbao-kms -g openbao-kms-socket /run/openbao-kms (static pod: -o 65532 -g <socket GID>)";

/// Where and how to create the socket.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    pub path: PathBuf,
    pub mode: u32,
    /// Group to own the socket; `None` leaves the process's group.
    pub gid: Option<u32>,
}

/// Why the socket could not be created. Never shows the path; the
/// parent-directory errors carry the numbers an operator needs to fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketError {
    InvalidOptions,
    /// The parent does not exist or cannot be inspected.
    ParentMissing,
    /// The parent is a symlink or not a directory.
    ParentNotDirectory,
    /// Group or world may create, delete or replace entries.
    ParentWritable {
        mode: u32,
    },
    /// Another user could swap the socket directory's contents.
    ParentNotOwned {
        owner: u32,
        euid: u32,
    },
    /// Members of the socket group could not reach the socket.
    ParentGroupMismatch {
        group: u32,
        expected: u32,
        mode: u32,
    },
    InvalidTarget,
    LiveSocketCollision,
    IndeterminateSocketState,
    UnknownGroup,
    BindFailed,
    PermissionsFailed,
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FIELD: &str = "server.socketPath";
        match *self {
            Self::ParentMissing => write!(f, "{FIELD}: parent directory does not exist; {DIR_FIX}"),
            Self::ParentNotDirectory => write!(
                f,
                "{FIELD}: parent must be a real directory, not a symlink or file; {DIR_FIX}"
            ),
            Self::ParentWritable { mode } => write!(
                f,
                "{FIELD}: parent directory must not be group-writable or world-writable (mode {mode:04o}); {DIR_FIX}"
            ),
            Self::ParentNotOwned { owner, euid } => write!(
                f,
                "{FIELD}: parent directory must be owned by the provider's user (owner uid {owner}, provider uid {euid}); {DIR_FIX}"
            ),
            Self::ParentGroupMismatch {
                group,
                expected,
                mode,
            } => write!(
                f,
                "{FIELD}: parent directory must belong to server.socketGroup (gid {expected}) with group search permission, so its members can reach the socket (group gid {group}, mode {mode:04o}); {DIR_FIX}"
            ),
            Self::InvalidOptions => f.write_str(
                "server.socketPath: socket path must be absolute and mode must have no 0117 bits",
            ),
            Self::InvalidTarget => f.write_str(
                "server.socketPath: existing path must be a Unix socket (it is never removed)",
            ),
            Self::LiveSocketCollision => f.write_str(
                "server.socketPath: another process is serving on the socket; refusing to take it over",
            ),
            Self::IndeterminateSocketState => f.write_str(
                "server.socketPath: cannot tell whether the existing socket is in use; refusing to remove it",
            ),
            Self::UnknownGroup => f.write_str("server.socketGroup: group not found"),
            Self::BindFailed => f.write_str("server.socketPath: cannot listen on the socket"),
            Self::PermissionsFailed => {
                f.write_str("server.socketPath: cannot apply socket mode or group")
            }
        }
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

impl From<DirFault> for SocketError {
    fn from(fault: DirFault) -> Self {
        match fault {
            DirFault::NotDirectory => Self::ParentNotDirectory,
            DirFault::Writable { mode } => Self::ParentWritable { mode },
            DirFault::GroupMismatch {
                group,
                expected,
                mode,
            } => Self::ParentGroupMismatch {
                group,
                expected,
                mode,
            },
        }
    }
}

/// Checks the socket directory against the ownership model (`operations.md`
/// §4.3, the rules in `crate::rules`): owned by us, no group/world write,
/// and, with a socket group, that group with search permission. A missing
/// setgid bit is only logged: the socket's group is set explicitly after
/// bind, so it changes nothing for it.
fn check_parent(path: &Path, gid: Option<u32>) -> Result<(), SocketError> {
    let parent = path.parent().ok_or(SocketError::ParentMissing)?;
    let meta = std::fs::symlink_metadata(parent).map_err(|_| SocketError::ParentMissing)?;
    check_socket_dir_shape(&meta)?;
    let euid = geteuid().as_raw();
    if meta.uid() != euid {
        return Err(SocketError::ParentNotOwned {
            owner: meta.uid(),
            euid,
        });
    }
    if let Some(expected) = gid {
        check_socket_dir_group(&meta, expected)?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o2000 == 0 {
            tracing::warn!(mode = %format!("{mode:04o}"), "socket.dir_not_setgid");
        }
    }
    Ok(())
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
    check_parent(path, options.gid)?;
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
        for mode in [0o770, 0o777, 0o752, 0o2770] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                bind_socket(&options(&dir)).await.err(),
                Some(SocketError::ParentWritable { mode }),
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
            Some(SocketError::ParentNotDirectory)
        );
        let missing = SocketOptions {
            path: dir.join("missing/kms.sock"),
            ..options(&dir)
        };
        assert_eq!(
            bind_socket(&missing).await.err(),
            Some(SocketError::ParentMissing)
        );
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // Tests run as root (uid 0, group 0); `scratch` dirs are root:root 0750.
    #[tokio::test]
    async fn the_socket_directory_must_be_ours_and_in_the_socket_group() {
        let dir = scratch("owner");
        std::os::unix::fs::chown(&dir, Some(1), None).unwrap();
        assert_eq!(
            bind_socket(&options(&dir)).await.err(),
            Some(SocketError::ParentNotOwned { owner: 1, euid: 0 })
        );
        std::os::unix::fs::chown(&dir, Some(0), None).unwrap();

        // Group 1 members could not reach a socket below a root-group directory.
        let other_group = SocketOptions {
            gid: Some(1),
            ..options(&dir)
        };
        assert_eq!(
            bind_socket(&other_group).await.err(),
            Some(SocketError::ParentGroupMismatch {
                group: 0,
                expected: 1,
                mode: 0o750
            })
        );
        // The right group without search permission is no better.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            bind_socket(&options(&dir)).await.err(),
            Some(SocketError::ParentGroupMismatch {
                group: 0,
                expected: 0,
                mode: 0o700
            })
        );
        // Without a socket group the directory's group is not ours to judge.
        let no_group = SocketOptions {
            gid: None,
            ..options(&dir)
        };
        let bound = bind_socket(&no_group).await.unwrap();
        remove_socket(&dir.join("kms.sock"), bound.inode);
        drop(bound);

        // The packaged layout: 2750, owner us, group the socket group.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2750)).unwrap();
        let bound = bind_socket(&options(&dir)).await.unwrap();
        let meta = std::fs::symlink_metadata(dir.join("kms.sock")).unwrap();
        assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, 0));
        remove_socket(&dir.join("kms.sock"), bound.inode);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parent_errors_say_what_is_wrong_and_how_to_fix_it() {
        let cases = [
            (SocketError::ParentMissing, "does not exist"),
            (SocketError::ParentNotDirectory, "not a symlink"),
            (
                SocketError::ParentWritable { mode: 0o2770 },
                "group-writable or world-writable (mode 2770)",
            ),
            (
                SocketError::ParentNotOwned {
                    owner: 0,
                    euid: 998,
                },
                "owner uid 0, provider uid 998",
            ),
            (
                SocketError::ParentGroupMismatch {
                    group: 998,
                    expected: 999,
                    mode: 0o2750,
                },
                "server.socketGroup (gid 999) with group search permission, so its members can reach the socket (group gid 998, mode 2750)",
            ),
        ];
        for (error, what) in cases {
            let text = error.to_string();
            assert!(text.starts_with("server.socketPath: parent"), "{text}");
            assert!(text.contains(what), "{text}");
            assert!(text.ends_with(DIR_FIX), "{text}");
            assert!(!text.contains('\n'), "{text}");
        }
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
