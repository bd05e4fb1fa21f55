//! Bootstrap grace loop and the background probe scheduler (`core.md` §7.2, §7.5).

use super::probe::Prober;
use super::reason::Reason;
use std::fmt;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval_at};

/// The bootstrap probes did not succeed within the grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapError {
    pub grace: Duration,
    pub reasons: Vec<Reason>,
}

impl fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reasons: Vec<&str> = self.reasons.iter().map(|r| r.as_str()).collect();
        write!(
            f,
            "bootstrap probes did not succeed within {}s: {}",
            self.grace.as_secs_f64(),
            reasons.join(", ")
        )
    }
}

impl std::error::Error for BootstrapError {}

/// Retries metadata + deep probes every `retry` until both succeed or `grace`
/// runs out (a zero grace means exactly one attempt). The last sleep is clipped
/// to the remaining time. A key already in the registry whose only faults are
/// unsafe settings also ends the loop: the provider then serves Decrypt with
/// Status unhealthy.
pub async fn bootstrap(
    prober: &Prober,
    grace: Duration,
    retry: Duration,
) -> Result<(), BootstrapError> {
    let deadline = Instant::now() + grace;
    loop {
        let reasons = prober.bootstrap_cycle().await;
        if reasons.is_empty() {
            return Ok(());
        }
        // An unsafe setting on a key already in the registry must not keep
        // every Secret unreadable after a restart: serve Decrypt, Status
        // stays unhealthy and Encrypt refused until the setting is fixed.
        if prober.serves_decrypt_despite(&reasons) {
            tracing::warn!(reasons = joined(&reasons), "serve.bootstrap_degraded");
            return Ok(());
        }
        let now = Instant::now();
        if grace.is_zero() || now >= deadline {
            return Err(BootstrapError { grace, reasons });
        }
        tracing::info!(reasons = joined(&reasons), "serve.bootstrap_retry");
        tokio::time::sleep(retry.min(deadline - now)).await;
    }
}

fn joined(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs metadata probes every `probe_interval` and deep probes every
/// `deep_interval` until `shutdown` turns true.
pub async fn run_scheduler(
    prober: &Prober,
    probe_interval: Duration,
    deep_interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let start = Instant::now();
    let mut metadata_tick = interval_at(start + probe_interval, probe_interval);
    let mut deep_tick = interval_at(start + deep_interval, deep_interval);
    metadata_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    deep_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = metadata_tick.tick() => {
                #[cfg(feature = "fault-injection")]
                {
                    use crate::fault::{Point, hit, panic_at};
                    panic_at(Point::SchedulerPanic);
                    if hit(Point::SchedulerExit) {
                        return;
                    }
                }
                prober.probe_cycle(false).await;
            }
            _ = deep_tick.tick() => prober.deep_cycle().await,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}
