//! A consecutive-failure circuit breaker for one probe kind (`core.md` §7.3).

use std::time::Duration;
use tokio::time::Instant;

const THRESHOLD: u32 = 3;
const OPEN_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    /// False while open; after the open window the next probe is allowed.
    pub fn allows(&self, now: Instant) -> bool {
        self.open_until.is_none_or(|t| now >= t)
    }

    pub fn record(&mut self, success: bool, now: Instant) {
        if success {
            self.failures = 0;
            self.open_until = None;
        } else {
            self.failures = self.failures.saturating_add(1);
            if self.failures >= THRESHOLD {
                self.open_until = Some(now + OPEN_FOR);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_three_failures_and_closes_on_success() {
        let now = Instant::now();
        let mut b = Breaker::default();
        b.record(false, now);
        b.record(false, now);
        assert!(b.allows(now));
        b.record(false, now);
        assert!(!b.allows(now + Duration::from_secs(29)));
        assert!(b.allows(now + OPEN_FOR));
        b.record(true, now);
        assert!(b.allows(now));
    }
}
