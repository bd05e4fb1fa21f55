//! Process facts for `process_*` metrics, read from `/proc/self`.

/// One reading of this process's resource use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub cpu_seconds: f64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
}

/// Clock ticks per second for `/proc` times; 100 on every Linux we target.
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_SIZE: u64 = 4096;

fn boot_time_seconds() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn max_fds() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// Reads `/proc/self/stat` and friends; `None` where `/proc` is unavailable.
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    // Indices are the stat(5) field numbers minus 3 (pid and comm removed, 1-based).
    let (utime, stime, start_ticks) = (field(11)?, field(12)?, field(19)?);
    let (virtual_bytes, rss_pages) = (field(20)?, field(21)?);
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(ProcessStats {
        resident_bytes: rss_pages * PAGE_SIZE,
        virtual_bytes,
        cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
        start_time_seconds: boot_time_seconds()? + start_ticks as f64 / TICKS_PER_SECOND,
        open_fds,
        max_fds: max_fds().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_plausible_values_for_this_process() {
        let p = super::read().unwrap();
        assert!(p.resident_bytes > 1024 * 1024);
        assert!(p.open_fds >= 3);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 3600.0);
    }
}
