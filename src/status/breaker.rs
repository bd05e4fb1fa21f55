//! A consecutive-failure circuit breaker for one probe kind (`core.md` §7.3),
//! with a half-open trial.
//!
//! Three consecutive failures open it for 30 s, as in the reference. While
//! open it still admits one trial probe per trial spacing (the probe
//! interval in `serve`): without it, Status stayed unhealthy for the rest of
//! the window after OpenBao was already back (25 s of refused Secret writes).
//! One probe per interval is what the scheduler sends anyway, so a trial
//! never adds load; a failed trial keeps the breaker open, a successful one
//! closes it.

use std::time::Duration;
use tokio::time::Instant;

const THRESHOLD: u32 = 3;
const OPEN_FOR: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    next_trial: Option<Instant>,
    /// `None`: no half-open trial before the window ends.
    trial_spacing: Option<Duration>,
}

impl Default for Breaker {
    /// No half-open trial before the window ends (the reference's breaker).
    fn default() -> Self {
        Self {
            failures: 0,
            open_until: None,
            next_trial: None,
            trial_spacing: None,
        }
    }
}

impl Breaker {
    /// A breaker that admits one trial per `spacing` while open.
    pub fn with_trial_spacing(spacing: Duration) -> Self {
        Self {
            trial_spacing: Some(spacing.min(OPEN_FOR)),
            ..Self::default()
        }
    }

    /// True while the open window lasts (for metrics and diagnostics).
    pub fn is_open(&self, now: Instant) -> bool {
        self.open_until.is_some_and(|t| now < t)
    }

    /// Whether a probe may run now. While open, admits the first probe after
    /// each trial spacing (and records that it did).
    pub fn admit(&mut self, now: Instant) -> bool {
        if !self.is_open(now) {
            return true;
        }
        if self.next_trial.is_some_and(|t| now >= t) {
            self.next_trial = self.trial_after(now);
            return true;
        }
        false
    }

    /// When the next trial may run: a tenth less than the spacing after
    /// `now`, because the scheduler's ticks are exactly one interval apart
    /// but a trial is recorded a little after its tick, so the full spacing
    /// would skip every other tick.
    fn trial_after(&self, now: Instant) -> Option<Instant> {
        self.trial_spacing
            .and_then(|spacing| now.checked_add(spacing - spacing / 10))
    }

    pub fn record(&mut self, success: bool, now: Instant) {
        if success {
            self.failures = 0;
            self.open_until = None;
            self.next_trial = None;
        } else {
            self.failures = self.failures.saturating_add(1);
            if self.failures >= THRESHOLD {
                if !self.is_open(now) {
                    self.open_until = now.checked_add(OPEN_FOR);
                }
                self.next_trial = self.trial_after(now);
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
        assert!(b.admit(now));
        b.record(false, now);
        assert!(b.is_open(now));
        assert!(!b.admit(now + Duration::from_secs(29)));
        assert!(b.admit(now + OPEN_FOR));
        b.record(true, now);
        assert!(b.admit(now));
        assert!(!b.is_open(now));
    }

    #[test]
    fn while_open_one_trial_per_spacing_and_a_good_trial_closes_it() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        let mut b = Breaker::with_trial_spacing(second);
        for _ in 0..3 {
            b.record(false, now);
        }
        assert!(!b.admit(now + second / 2), "no trial before the spacing");
        assert!(b.admit(now + second), "the half-open trial");
        assert!(!b.admit(now + second), "only one per spacing");
        // A failed trial keeps it open (the window is not extended).
        b.record(false, now + second);
        assert!(b.is_open(now + second * 29));
        assert!(!b.admit(now + second * 3 / 2));
        // The next tick comes a little less than a spacing after the trial
        // was recorded; it gets its trial.
        assert!(b.admit(now + second * 2 - Duration::from_millis(5)));
        b.record(true, now + second * 2);
        assert!(!b.is_open(now + second * 2));
        assert!(b.admit(now + second * 2));
    }
}
