//! Retry spacing for failed logins and token recovery (`core.md` §7.7).
//!
//! The jitter is a pure function of a given random value so its edges can be
//! tested; `with_jitter` only adds the cryptographic RNG.

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
/// Without randomness the plain backoff is still a valid spacing.
pub fn with_jitter(b: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes) {
        Ok(()) => jitter(b, u64::from_le_bytes(bytes)),
        Err(_) => b,
    }
}

/// `b` moved by `random mod (2q + 1) - q` milliseconds, `q = b/4`, clamped to
/// the cap. Backoffs under 4 ms have no room for jitter and stay as they are.
fn jitter(b: Duration, random: u64) -> Duration {
    let millis = u64::try_from(b.as_millis()).unwrap_or(u64::MAX);
    let quarter = millis / 4;
    if quarter == 0 {
        return b;
    }
    // quarter <= u64::MAX / 4, so the span cannot overflow.
    let offset = random % (quarter * 2 + 1);
    let jittered = millis.saturating_add(offset).saturating_sub(quarter);
    Duration::from_millis(jittered).min(CAP)
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
        assert_eq!(failure_backoff(0), BASE);
        assert_eq!(failure_backoff(u32::MAX), CAP);
        assert_eq!(recovery_spacing(u32::MAX), RECOVERY_CAP);
    }

    #[test]
    fn jitter_edges_are_exactly_a_quarter_either_way() {
        let b = Duration::from_secs(8);
        // span = 2 * 2000 + 1 = 4001 values of the random input.
        assert_eq!(jitter(b, 0), Duration::from_secs(6));
        assert_eq!(jitter(b, 2000), b);
        assert_eq!(jitter(b, 4000), Duration::from_secs(10));
        assert_eq!(
            jitter(b, 4001),
            Duration::from_secs(6),
            "wraps modulo the span"
        );
        let top = u64::MAX % 4001;
        assert_eq!(jitter(b, u64::MAX), Duration::from_millis(6000 + top));
    }

    #[test]
    fn jitter_is_clamped_to_the_cap() {
        assert_eq!(jitter(CAP, 0), Duration::from_secs(45));
        assert_eq!(jitter(CAP, 30_000), CAP, "+25 % of the cap is the cap");
        assert_eq!(jitter(Duration::from_secs(50), 25_000), CAP);
    }

    #[test]
    fn jitter_leaves_tiny_and_huge_backoffs_sane() {
        assert_eq!(jitter(Duration::ZERO, u64::MAX), Duration::ZERO);
        assert_eq!(
            jitter(Duration::from_millis(3), 7),
            Duration::from_millis(3)
        );
        assert_eq!(
            jitter(Duration::from_millis(4), 0),
            Duration::from_millis(3)
        );
        assert_eq!(
            jitter(Duration::from_millis(4), 2),
            Duration::from_millis(5)
        );
        assert_eq!(jitter(Duration::MAX, u64::MAX), CAP);
        assert_eq!(jitter(Duration::MAX, 0), CAP);
    }

    #[test]
    fn rng_jitter_stays_within_a_quarter_and_the_cap() {
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
