//! Unknown-key_id discovery for Decrypt (`core.md` §6.6): at most one attempt
//! per probe interval, shared by every caller that needs it, detached from
//! any one caller's cancellation.

use super::probe::Prober;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Default)]
struct Attempts {
    last_started: Option<Instant>,
    last_ok: bool,
    flight: Option<watch::Receiver<Option<bool>>>,
}

/// Rate-limited, single-flight discovery.
pub struct Discovery {
    prober: Arc<Prober>,
    interval: Duration,
    attempts: Mutex<Attempts>,
}

impl Discovery {
    pub fn new(prober: Arc<Prober>, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            prober,
            interval,
            attempts: Mutex::new(Attempts::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Attempts> {
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
                let (tx, rx) = watch::channel(None);
                attempts.last_started = Some(Instant::now());
                attempts.flight = Some(rx.clone());
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    let ok = this.prober.discover_cycle().await;
                    {
                        let mut attempts = this.lock();
                        attempts.flight = None;
                        attempts.last_ok = ok;
                    }
                    let _ = tx.send(Some(ok));
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
