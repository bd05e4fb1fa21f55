//! Reading a small operator-named file by path without ever blocking.
//!
//! A path from the command line or the config can name a FIFO (a plain open
//! waits for a writer forever), a device (`/dev/zero` never ends) or a
//! directory. Such a path is refused before it is opened; the open itself is
//! non-blocking and the opened handle is checked again, so a FIFO swapped in
//! between the check and the open cannot hang the caller either. Reads are
//! capped, and the bytes are wiped when dropped because some of these files
//! hold key material (an EncryptionConfiguration with other providers' keys).
//!
//! The JWT and registry state files have stricter readers of their own (no
//! symlinks, same-inode checks, permission masks); this one keeps the
//! caller's symlink policy and checks only what could block or exhaust.

use nix::fcntl::OFlag;
use std::fmt;
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use zeroize::Zeroizing;

/// Every file read this way is small; anything larger is a mistake.
pub const MAX_BYTES: u64 = 1 << 20;

/// Why a file could not be read. Messages name no path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// Missing, not permitted, or an I/O error.
    Unreadable,
    /// A FIFO, device, socket or directory.
    NotRegular,
    /// Larger than [`MAX_BYTES`].
    TooLarge,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unreadable => "must exist and be readable",
            Self::NotRegular => "must be a regular file",
            Self::TooLarge => "must not be larger than 1 MiB",
        })
    }
}

impl std::error::Error for ReadError {}

/// Reads the regular file at `path`, at most [`MAX_BYTES`] (symlinks
/// followed; the target must be a regular file).
pub fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let meta = std::fs::metadata(path).map_err(|_| ReadError::Unreadable)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    let file = File::options()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|_| ReadError::Unreadable)?;
    read_opened(file, MAX_BYTES)
}

/// The opened handle decides: the path may have been replaced after the
/// first check. `O_NONBLOCK` has no effect on reads from a regular file.
fn read_opened(file: File, max_bytes: u64) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let opened = file.metadata().map_err(|_| ReadError::Unreadable)?;
    if !opened.is_file() {
        return Err(ReadError::NotRegular);
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|_| ReadError::Unreadable)?;
    if bytes.len() as u64 > max_bytes {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    struct Dir(std::path::PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "bao-kms-regular-file-{name}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fifo(dir: &Dir) -> std::path::PathBuf {
        let path = dir.0.join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        path
    }

    #[test]
    fn reads_a_regular_file_and_caps_its_size() {
        let dir = Dir::new("regular");
        let path = dir.0.join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read(&path).unwrap().as_slice(), b"12345");
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read(&link).unwrap().as_slice(), b"12345");
        assert_eq!(read(&dir.0.join("missing")), Err(ReadError::Unreadable));
        let limit = usize::try_from(MAX_BYTES).unwrap();
        std::fs::write(&path, vec![b'#'; limit]).unwrap();
        assert_eq!(read(&path).unwrap().len(), limit);
        std::fs::write(&path, vec![b'#'; limit + 1]).unwrap();
        assert_eq!(read(&path), Err(ReadError::TooLarge));
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_without_blocking() {
        let dir = Dir::new("special");
        let started = Instant::now();
        let fifo = fifo(&dir);
        let link = dir.0.join("link-to-fifo");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        for path in [
            fifo.as_path(),
            link.as_path(),
            Path::new("/dev/zero"),
            Path::new("/dev/null"),
            dir.0.as_path(),
        ] {
            assert_eq!(read(path), Err(ReadError::NotRegular), "{path:?}");
        }
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_fifo_swapped_in_after_the_path_check_is_refused_on_the_handle() {
        // What `read` does after its path check, given the FIFO an attacker
        // swapped in: the non-blocking open returns at once and the handle
        // check refuses it instead of reading (which would wait forever).
        let dir = Dir::new("swap");
        let fifo = fifo(&dir);
        let file = File::options()
            .read(true)
            .custom_flags(OFlag::O_NONBLOCK.bits())
            .open(&fifo)
            .unwrap();
        assert_eq!(read_opened(file, MAX_BYTES), Err(ReadError::NotRegular));
    }
}
