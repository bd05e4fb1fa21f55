//! Retry spacing for failed logins and token recovery (`core.md` §7.7).

use std::time::Duration;

const BASE: Duration = Duration::from_secs(1);
const CAP: Duration = Duration::from_secs(60);
const RECOVERY_BASE: Duration = Duration::from_secs(5);
const RECOVERY_CAP: Duration = Duration::from_secs(300);

/// Exponential backoff after `failures` consecutive failures: 1, 2, 4 … 60 s.
pub fn failure_backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    BASE.saturating_mul(1 << shift).min(CAP)
}

/// Adds a uniform offset in `[-b/4, +b/4]` (whole milliseconds) from a
/// cryptographic RNG, so nodes that failed together do not retry together.
pub fn with_jitter(b: Duration) -> Duration {
    let quarter = u64::try_from(b.as_millis() / 4).unwrap_or(0);
    let mut bytes = [0u8; 8];
    if quarter == 0
        || ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err()
    {
        return b;
    }
    let span = quarter * 2 + 1;
    let offset = u64::from_le_bytes(bytes) % span;
    let millis = u64::try_from(b.as_millis()).unwrap_or(u64::MAX);
    let jittered = (millis + offset).saturating_sub(quarter);
    if jittered == 0 {
        b
    } else {
        Duration::from_millis(jittered).min(CAP)
    }
}

/// Spacing of recovery logins while the token is empty: 5, 10, 20 … 300 s, no jitter.
pub fn recovery_spacing(recoveries: u32) -> Duration {
    let shift = recoveries.saturating_sub(1).min(16);
    RECOVERY_BASE.saturating_mul(1 << shift).min(RECOVERY_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_sequence() {
        let secs: Vec<u64> = (1..=9).map(|n| failure_backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        let rec: Vec<u64> = (1..=8).map(|n| recovery_spacing(n).as_secs()).collect();
        assert_eq!(rec, [5, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn jitter_stays_within_a_quarter_and_the_cap() {
        for failures in 1..10 {
            let b = failure_backoff(failures);
            for _ in 0..200 {
                let j = with_jitter(b);
                assert!(
                    j >= b - b / 4 && j <= (b + b / 4).min(CAP),
                    "{j:?} for {b:?}"
                );
            }
        }
    }
}
