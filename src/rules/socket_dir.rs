//! Socket directory rules (`operations.md` §4.3): a real directory that group
//! and world cannot write, and, with a socket group, owned by that group with
//! group search permission. `kms::socket` refuses to bind on a violation;
//! doctor's `host.files` reports it in its own words.

use std::os::unix::fs::MetadataExt;

/// A socket directory rule that `meta` breaks, with the numbers to fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirFault {
    /// A symlink or not a directory.
    NotDirectory,
    /// Group or world may create, delete or replace entries.
    Writable { mode: u32 },
    /// Members of the socket group could not reach the socket.
    GroupMismatch {
        group: u32,
        expected: u32,
        mode: u32,
    },
}

/// The socket directory's own shape: a real directory, not writable by group
/// or world.
pub fn check_socket_dir_shape(meta: &std::fs::Metadata) -> Result<(), DirFault> {
    if !meta.file_type().is_dir() {
        return Err(DirFault::NotDirectory);
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(DirFault::Writable { mode });
    }
    Ok(())
}

/// The socket group must own the directory and be able to enter it.
pub fn check_socket_dir_group(meta: &std::fs::Metadata, expected: u32) -> Result<(), DirFault> {
    let mode = meta.mode() & 0o7777;
    if meta.gid() != expected || mode & 0o010 == 0 {
        return Err(DirFault::GroupMismatch {
            group: meta.gid(),
            expected,
            mode,
        });
    }
    Ok(())
}
