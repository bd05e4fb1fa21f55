//! Discovery tests with a scripted attempt on tokio's paused clock.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use tokio::sync::Semaphore;
use tokio::time::advance;

const INTERVAL: Duration = Duration::from_secs(30);

/// Counts attempts; each answers `ok`, after a gate permit when `gated`,
/// and the attempt numbered `panic_on` panics.
struct Script {
    attempts: AtomicU32,
    ok: AtomicBool,
    gated: AtomicBool,
    panic_on: AtomicU32,
    hang: AtomicBool,
    gate: Semaphore,
}

impl Script {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            attempts: AtomicU32::new(0),
            ok: AtomicBool::new(true),
            gated: AtomicBool::new(false),
            panic_on: AtomicU32::new(0),
            hang: AtomicBool::new(false),
            gate: Semaphore::new(0),
        })
    }

    fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }

    async fn run(&self) -> bool {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.gated.load(Ordering::SeqCst) {
            self.gate.acquire().await.unwrap().forget();
        }
        if self.panic_on.load(Ordering::SeqCst) == n {
            panic!("scripted discovery panic");
        }
        self.ok.load(Ordering::SeqCst)
    }
}

fn discovery(script: &Arc<Script>) -> Arc<Discovery> {
    let script = Arc::clone(script);
    Discovery::with_attempt(
        Arc::new(move || {
            let script = Arc::clone(&script);
            Box::pin(async move { script.run().await })
        }),
        INTERVAL,
    )
}

async fn settle() {
    for _ in 0..32 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_attempt() {
    let script = Script::new();
    script.gated.store(true, Ordering::SeqCst);
    let d = discovery(&script);
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let d = Arc::clone(&d);
            tokio::spawn(async move { d.discover().await })
        })
        .collect();
    settle().await;
    assert_eq!(script.attempts(), 1);
    script.gate.add_permits(1);
    for caller in callers {
        assert!(caller.await.unwrap());
    }
    assert_eq!(script.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn at_most_one_attempt_per_interval_and_its_result_is_reused() {
    let script = Script::new();
    script.ok.store(false, Ordering::SeqCst);
    let d = discovery(&script);
    assert!(!d.discover().await);
    script.ok.store(true, Ordering::SeqCst);
    advance(INTERVAL - Duration::from_millis(1)).await;
    assert!(
        !d.discover().await,
        "the last result is reused inside the interval"
    );
    assert_eq!(script.attempts(), 1);
    advance(Duration::from_millis(1)).await;
    assert!(d.discover().await);
    assert_eq!(script.attempts(), 2);
    assert!(d.discover().await);
    assert_eq!(script.attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_attempt_clears_the_flight_and_a_later_call_retries() {
    let script = Script::new();
    script.panic_on.store(1, Ordering::SeqCst);
    let d = discovery(&script);
    assert!(!d.discover().await, "a panicked attempt answers as failed");
    assert!(!d.discover().await);
    assert_eq!(script.attempts(), 1, "still one attempt per interval");
    advance(INTERVAL).await;
    assert!(d.discover().await);
    assert_eq!(script.attempts(), 2);
}

#[test]
fn an_attempt_cancelled_by_runtime_shutdown_answers_its_waiters_and_a_later_call_retries() {
    let paused = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    };
    let script = Script::new();
    script.hang.store(true, Ordering::SeqCst);
    let d = discovery(&script);
    let survivor = paused();
    let doomed = paused();

    doomed.block_on(async {
        let gave_up = tokio::time::timeout(Duration::from_millis(1), d.discover()).await;
        assert!(gave_up.is_err());
    });
    let waiter = {
        let _entered = survivor.enter();
        let d = Arc::clone(&d);
        tokio::spawn(async move { d.discover().await })
    };
    survivor.block_on(settle());

    drop(doomed);
    script.hang.store(false, Ordering::SeqCst);
    survivor.block_on(async {
        let answer = tokio::time::timeout(Duration::from_secs(1), waiter).await;
        assert!(!answer.unwrap().unwrap());
        advance(INTERVAL * 2).await;
        assert!(d.discover().await);
        assert_eq!(script.attempts(), 2);
    });
}
