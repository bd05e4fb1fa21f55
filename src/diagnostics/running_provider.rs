//! Finds the running `serve` next to doctor, and when it started, from
//! `/proc` alone (doctor's `host.debug` needs the start time: the debug
//! correlation window is process start + TTL).
//!
//! `serve` holds the exclusive flock on `<state.path>.lock` for its whole
//! life (`crate::registry::lock`), so the holder in `/proc/locks` is the
//! provider; the operator `--apply` commands hold the same lock briefly, so
//! the holder must also have `serve` among its arguments. Every read is
//! capped, and a failure names what could not be read, never a path of the
//! config.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `/proc/locks` and `/proc/stat` grow with the host (one line per lock,
/// per CPU); a megabyte is far beyond any real host.
const MAX_TABLE_BYTES: u64 = 1 << 20;
/// A command line beyond this is not ours to scan in full.
const MAX_CMDLINE_BYTES: u64 = 64 << 10;
/// `/proc/<pid>/stat` is one short line.
const MAX_STAT_BYTES: u64 = 4 << 10;

/// Who holds the state lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Nobody, or a short-lived operator command: no provider is serving.
    NoProvider,
    /// The running provider and its start on the wall clock.
    Serve { pid: u32, started: SystemTime },
}

/// The device and inode that identify a lock in `/proc/locks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedFile {
    pub major: u64,
    pub minor: u64,
    pub inode: u64,
}

/// Finds the `serve` process holding the lock file at `lock_path`.
pub fn find_provider(lock_path: &Path) -> Result<Holder, &'static str> {
    let meta = match std::fs::symlink_metadata(lock_path) {
        Ok(meta) => meta,
        // serve creates the lock file on start: none means none ever ran.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Holder::NoProvider),
        Err(_) => return Err("cannot inspect the state lock file"),
    };
    let file = LockedFile {
        major: nix::sys::stat::major(meta.dev()),
        minor: nix::sys::stat::minor(meta.dev()),
        inode: meta.ino(),
    };
    let locks =
        read_capped(Path::new("/proc/locks"), MAX_TABLE_BYTES).ok_or("cannot read /proc/locks")?;
    let Some(pid) = lock_holder(&locks, file) else {
        return Ok(Holder::NoProvider);
    };
    // A holder in another PID namespace shows as pid 0.
    if pid == 0 {
        return Err("the state lock is held by a process outside this PID namespace");
    }
    let cmdline = read_capped(
        Path::new(&format!("/proc/{pid}/cmdline")),
        MAX_CMDLINE_BYTES,
    )
    .ok_or("cannot read the lock holder's command line")?;
    if !cmdline.split(|b| *b == 0).any(|arg| arg == b"serve") {
        return Ok(Holder::NoProvider);
    }
    let stat = read_capped(Path::new(&format!("/proc/{pid}/stat")), MAX_STAT_BYTES)
        .ok_or("cannot read the provider's process status")?;
    let ticks = start_ticks(&stat).ok_or("cannot parse the provider's process status")?;
    let table =
        read_capped(Path::new("/proc/stat"), MAX_TABLE_BYTES).ok_or("cannot read /proc/stat")?;
    let boot = boot_time(&table).ok_or("cannot parse the boot time in /proc/stat")?;
    let hz = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz.unsigned_abs(),
        _ => return Err("cannot read the clock tick rate"),
    };
    let since_boot = Duration::from_millis(ticks.saturating_mul(1000) / hz);
    Ok(Holder::Serve {
        pid,
        started: UNIX_EPOCH + Duration::from_secs(boot) + since_boot,
    })
}

/// The whole file, or `None` when unreadable or larger than `cap`.
fn read_capped(path: &Path, cap: u64) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)
        .ok()?
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    (u64::try_from(bytes.len()).ok()? <= cap).then_some(bytes)
}

/// The pid holding an exclusive flock on `file`, from `/proc/locks` lines
/// like `1: FLOCK  ADVISORY  WRITE 5380 fe:00:10012540 0 EOF` (device numbers
/// in hex, inode in decimal). Waiters (`1: -> FLOCK …`) hold nothing.
pub fn lock_holder(table: &[u8], file: LockedFile) -> Option<u32> {
    let text = std::str::from_utf8(table).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, "FLOCK", _, "WRITE", pid, device, ..] = fields.as_slice() else {
            return None;
        };
        let mut parts = device.split(':');
        let major = u64::from_str_radix(parts.next()?, 16).ok()?;
        let minor = u64::from_str_radix(parts.next()?, 16).ok()?;
        let inode = parts.next()?.parse().ok()?;
        let found = LockedFile {
            major,
            minor,
            inode,
        };
        (found == file).then(|| pid.parse().ok()).flatten()
    })
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks after boot).
/// The command name (field 2) is in parentheses and may hold spaces and
/// parentheses itself, so the fields are counted after the last `)`.
pub fn start_ticks(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // The first field after the name is field 3.
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// `btime` of `/proc/stat`: the boot time in Unix seconds.
pub fn boot_time(table: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(table).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::PermissionsExt as _;

    const FILE: LockedFile = LockedFile {
        major: 0xfe,
        minor: 0,
        inode: 10012540,
    };

    #[test]
    fn finds_the_exclusive_flock_holder_of_the_file() {
        // A POSIX lock, a shared flock, a waiter, another device, another inode.
        let others = "1: POSIX  ADVISORY  WRITE 11 fe:00:10012540 0 EOF\n\
            2: FLOCK  ADVISORY  READ 12 fe:00:10012540 0 EOF\n\
            3: -> FLOCK  ADVISORY  WRITE 13 fe:00:10012540 0 EOF\n\
            4: FLOCK  ADVISORY  WRITE 14 fe:01:10012540 0 EOF\n\
            5: FLOCK  ADVISORY  WRITE 15 fe:00:1001254 0 EOF\n";
        assert_eq!(lock_holder(others.as_bytes(), FILE), None);
        let table = format!("{others}6: FLOCK  ADVISORY  WRITE 5380 fe:00:10012540 0 EOF\n");
        assert_eq!(lock_holder(table.as_bytes(), FILE), Some(5380));
        let hex = b"1: FLOCK  ADVISORY  WRITE 7 103:1a:42 0 EOF\n";
        let file = LockedFile {
            major: 0x103,
            minor: 0x1a,
            inode: 42,
        };
        assert_eq!(lock_holder(hex, file), Some(7));
        assert_eq!(lock_holder(b"garbage\n1: FLOCK\n", FILE), None);
        assert_eq!(lock_holder(b"\xff\xfe", FILE), None);
    }

    #[test]
    fn the_start_time_is_counted_after_the_last_parenthesis() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
        let stat = format!("5380 (bao-kms-provider) {tail}");
        assert_eq!(start_ticks(stat.as_bytes()), Some(987654));
        let tricky = format!("5380 (a) b (c) d) {tail}");
        assert_eq!(start_ticks(tricky.as_bytes()), Some(987654));
        assert_eq!(start_ticks(b"5380 (short) S 1 2"), None);
        assert_eq!(start_ticks(b"no parenthesis"), None);
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        let table = b"cpu  1 2 3\nintr 1 2 3\nctxt 99\nbtime 1778277600\nprocesses 5\n";
        assert_eq!(boot_time(table), Some(1778277600));
        assert_eq!(boot_time(b"cpu 1\n"), None);
    }

    #[test]
    fn finds_this_process_holding_a_real_lock_but_not_as_serve() {
        let dir = std::env::temp_dir().join(format!("running-provider-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = dir.join("state.lock");
        assert_eq!(find_provider(&path), Ok(Holder::NoProvider), "no file");
        let file = File::create(&path).unwrap();
        let meta = file.metadata().unwrap();
        let id = LockedFile {
            major: nix::sys::stat::major(meta.dev()),
            minor: nix::sys::stat::minor(meta.dev()),
            inode: meta.ino(),
        };
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).unwrap();
        let table = read_capped(Path::new("/proc/locks"), MAX_TABLE_BYTES).unwrap();
        assert_eq!(lock_holder(&table, id), Some(std::process::id()));
        // The test binary holds it, and it is not `serve`.
        assert_eq!(find_provider(&path), Ok(Holder::NoProvider));
        drop(lock);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_are_capped() {
        assert!(read_capped(Path::new("/proc/self/stat"), MAX_STAT_BYTES).is_some());
        assert_eq!(read_capped(Path::new("/proc/self/stat"), 4), None);
        assert_eq!(read_capped(Path::new("/nonexistent/x"), 4), None);
    }
}
