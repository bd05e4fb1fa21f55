//! Whether the kernel reports the wall clock synchronized (doctor's
//! `host.clock`), decided exactly as systemd's `timedatectl` decides
//! `NTPSynchronized`: an `adjtimex(2)` query that returns `TIME_ERROR` or sets
//! `STA_UNSYNC` means not synchronized.
//!
//! This module holds the crate's only `unsafe` code, in one function: neither
//! nix nor rustix wraps `adjtimex`, and the read-only query is one FFI call
//! (see docs/decisions.md). A test below keeps the exemption from spreading.

use nix::errno::Errno;
use std::ffi::c_int;

/// The kernel's answer, with its maximum error estimate in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockState {
    pub synchronized: bool,
    pub max_error_us: i64,
}

impl ClockState {
    /// The `host.clock` message for this state.
    pub fn message(self) -> String {
        if self.synchronized {
            format!(
                "kernel reports the clock synchronized (maxerror {} µs)",
                self.max_error_us
            )
        } else {
            format!(
                "kernel reports the clock not synchronized (maxerror {} µs): JWT, certificate and token expiry checks depend on it; run chrony, systemd-timesyncd or ntpd",
                self.max_error_us
            )
        }
    }
}

/// The decision on an `adjtimex` reading (`return_value` is the clock state
/// it returned, `status` its `STA_*` bits).
pub fn clock_status(return_value: c_int, status: c_int, max_error_us: i64) -> ClockState {
    ClockState {
        synchronized: return_value != libc::TIME_ERROR && status & libc::STA_UNSYNC == 0,
        max_error_us,
    }
}

/// Reads the kernel's clock status (no privileges needed).
pub fn read_clock_state() -> Result<ClockState, Errno> {
    let (return_value, timex) = adjtimex_query()?;
    // `maxerror` is a C long: i64 here, i32 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let max_error_us = i64::from(timex.maxerror);
    Ok(clock_status(return_value, timex.status, max_error_us))
}

/// `adjtimex` with `modes = 0`: a query that changes nothing.
#[allow(unsafe_code)]
fn adjtimex_query() -> Result<(c_int, libc::timex), Errno> {
    // SAFETY: `timex` is a C struct of integers, so all-zero bytes are a valid
    // value, and zero `modes` makes adjtimex(2) a read-only query. The kernel
    // only writes into `timex`, which is ours and outlives the call.
    let (return_value, timex) = unsafe {
        let mut timex: libc::timex = std::mem::zeroed();
        (libc::adjtimex(&mut timex), timex)
    };
    if return_value == -1 {
        return Err(Errno::last());
    }
    Ok((return_value, timex))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn synchronized_only_without_time_error_and_without_sta_unsync() {
        let synced = |ret, status| clock_status(ret, status, 1_000).synchronized;
        assert!(synced(libc::TIME_OK, 0x2001), "STA_PLL | STA_NANO");
        assert!(synced(libc::TIME_OK, 0));
        assert!(synced(libc::TIME_INS, 0x0001), "a leap second pending");
        assert!(!synced(libc::TIME_OK, libc::STA_UNSYNC));
        assert!(!synced(libc::TIME_OK, 0x2001 | libc::STA_UNSYNC));
        assert!(!synced(libc::TIME_ERROR, 0x2001), "TIME_ERROR alone");
        assert!(!synced(libc::TIME_ERROR, libc::STA_UNSYNC));
    }

    #[test]
    fn messages_say_what_depends_on_the_clock() {
        let synced = clock_status(libc::TIME_OK, 0x2001, 4_500);
        assert_eq!(
            synced.message(),
            "kernel reports the clock synchronized (maxerror 4500 µs)"
        );
        let unsynced = clock_status(libc::TIME_ERROR, libc::STA_UNSYNC, 16_000_000).message();
        assert!(unsynced.contains("not synchronized (maxerror 16000000 µs)"));
        assert!(unsynced.contains("JWT, certificate and token expiry"));
    }

    #[test]
    fn the_kernel_answers_the_query() {
        // The state itself depends on the host; the query must succeed.
        assert!(read_clock_state().is_ok());
    }

    /// Every line of `src/` that opens unsafe code or changes the
    /// `unsafe_code` lint, as `(file, line)`.
    fn unsafe_lines(dir: &Path, root: &Path, found: &mut Vec<(String, String)>) {
        // Spelled in two halves so this test's own source does not match.
        let word = concat!("un", "safe");
        let lint = concat!("un", "safe_code");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                unsafe_lines(&path, root, found);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("").trim();
                let opens = code.match_indices(word).any(|(at, _)| {
                    let before = code[..at].chars().next_back();
                    let rest = code[at + word.len()..].trim_start();
                    before.is_none_or(|c| !c.is_alphanumeric() && c != '_')
                        && (rest.starts_with(['{', '('])
                            || ["fn ", "impl", "trait ", "extern "]
                                .iter()
                                .any(|k| rest.starts_with(k)))
                });
                if opens || code.contains(lint) {
                    let file = path.strip_prefix(root).unwrap().display().to_string();
                    found.push((file, code.to_owned()));
                }
            }
        }
    }

    #[test]
    fn the_exemption_stays_in_adjtimex_query() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut found = Vec::new();
        unsafe_lines(&root.join("src"), root, &mut found);
        found.sort();
        let this = "src/diagnostics/clock_sync.rs";
        let expected = [
            (this, format!("#[allow({})]", concat!("un", "safe_code"))),
            (
                this,
                format!("let (return_value, timex) = {} {{", concat!("un", "safe")),
            ),
            (
                "src/lib.rs",
                format!("#![deny({})]", concat!("un", "safe_code")),
            ),
        ];
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(f, l)| (f.to_owned(), l))
            .collect();
        assert_eq!(found, expected, "unsafe code outside adjtimex_query");
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("{} = \"deny\"", concat!("un", "safe_code"))),
            "the crate-wide lint must stay deny"
        );
    }
}
