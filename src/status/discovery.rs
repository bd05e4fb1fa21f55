//! Unknown-key_id discovery for Decrypt (`core.md` §6.6): at most one attempt
//! per probe interval, shared by every caller that needs it, detached from
//! any one caller's cancellation, and never wedged by an attempt that panics
//! or is cancelled.

use super::probe::Prober;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// One discovery attempt; `true` when it refreshed what Decrypt looks up.
/// Production runs the prober's discovery cycle; tests plug in their own.
type Attempt = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

#[derive(Default)]
struct Attempts {
    last_started: Option<Instant>,
    last_ok: bool,
    flight: Option<watch::Receiver<Option<bool>>>,
}

/// Rate-limited, single-flight discovery.
pub struct Discovery {
    attempt: Attempt,
    interval: Duration,
    attempts: Mutex<Attempts>,
}

impl Discovery {
    pub fn new(prober: Arc<Prober>, interval: Duration) -> Arc<Self> {
        Self::with_attempt(
            Arc::new(move || {
                let prober = Arc::clone(&prober);
                Box::pin(async move { prober.discover_cycle().await })
            }),
            interval,
        )
    }

    fn with_attempt(attempt: Attempt, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            attempt,
            interval,
            attempts: Mutex::new(Attempts::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Attempts> {
        // Every update is a plain field assignment, so a poisoned lock is still consistent.
        self.attempts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs (or joins, or reuses the result of) a discovery attempt.
    /// `false` means the attempt failed and the caller should answer
    /// Unavailable; `true` means look the key_id up again.
    pub async fn discover(self: &Arc<Self>) -> bool {
        let mut rx = {
            let mut attempts = self.lock();
            if let Some(rx) = &attempts.flight {
                rx.clone()
            } else if attempts
                .last_started
                .is_some_and(|t| t.elapsed() < self.interval)
            {
                return attempts.last_ok;
            } else {
                // Built before any state changes, so even a panic here leaves
                // no flight behind.
                let attempt = (self.attempt)();
                let (tx, rx) = watch::channel(None);
                attempts.last_started = Some(Instant::now());
                attempts.flight = Some(rx.clone());
                let mut flight = Flight {
                    discovery: Arc::clone(self),
                    tx: Some(tx),
                };
                tokio::spawn(async move {
                    let ok = attempt.await;
                    flight.land(ok);
                });
                rx
            }
        };
        rx.wait_for(Option::is_some)
            .await
            .map(|v| v.unwrap_or(false))
            .unwrap_or(false)
    }
}

/// The spawned attempt's landing: through `land` when it finishes, through
/// `Drop` (as a failure) when it panics or is dropped unfinished, so the
/// flight is always cleared and its waiters always answered.
struct Flight {
    discovery: Arc<Discovery>,
    tx: Option<watch::Sender<Option<bool>>>,
}

impl Flight {
    fn land(&mut self, ok: bool) {
        if let Some(tx) = self.tx.take() {
            {
                let mut attempts = self.discovery.lock();
                attempts.flight = None;
                attempts.last_ok = ok;
            }
            let _ = tx.send(Some(ok));
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        // A no-op after `land`.
        self.land(false);
    }
}

#[cfg(test)]
mod tests;
