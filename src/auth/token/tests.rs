//! Token manager tests against a scripted backend on tokio's paused clock:
//! time only moves when a test advances it (or every task is idle), so
//! backoffs, windows and timeouts are exact and nothing sleeps real time.

use super::*;
use crate::openbao::Operation;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::Semaphore;
use tokio::time::advance;

const HOUR: Duration = Duration::from_secs(3600);
const WINDOW: Duration = Duration::from_secs(300);
const TIMEOUT: Duration = Duration::from_secs(5);
const MS: Duration = Duration::from_millis(1);

/// What one scripted backend call does.
enum Step {
    /// Grants this renewable lease.
    Lease(Duration),
    /// Waits for a `gate` permit, then grants an hour.
    Gated,
    /// OpenBao answers Unavailable.
    Fail,
    /// Never answers.
    Hang,
    Panic,
}

/// Counts calls and plays scripted steps; an empty script grants an hour.
/// Logins hand out `login-1`, `login-2`, …; renewals keep the token value.
struct Fake {
    logins: AtomicU32,
    renewals: AtomicU32,
    increments: Mutex<Vec<Duration>>,
    login_steps: Mutex<VecDeque<Step>>,
    renew_steps: Mutex<VecDeque<Step>>,
    gate: Semaphore,
}

impl Fake {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            logins: AtomicU32::new(0),
            renewals: AtomicU32::new(0),
            increments: Mutex::new(Vec::new()),
            login_steps: Mutex::new(VecDeque::new()),
            renew_steps: Mutex::new(VecDeque::new()),
            gate: Semaphore::new(0),
        })
    }

    fn script_login(&self, steps: impl IntoIterator<Item = Step>) {
        self.login_steps.lock().unwrap().extend(steps);
    }

    fn script_renew(&self, steps: impl IntoIterator<Item = Step>) {
        self.renew_steps.lock().unwrap().extend(steps);
    }

    fn calls(&self) -> (u32, u32) {
        (
            self.logins.load(Ordering::SeqCst),
            self.renewals.load(Ordering::SeqCst),
        )
    }

    async fn play(&self, step: Option<Step>) -> Option<Duration> {
        match step.unwrap_or(Step::Lease(HOUR)) {
            Step::Lease(lease) => Some(lease),
            Step::Gated => {
                self.gate.acquire().await.unwrap().forget();
                Some(HOUR)
            }
            Step::Fail => None,
            Step::Hang => std::future::pending().await,
            Step::Panic => panic!("scripted backend panic"),
        }
    }
}

#[async_trait::async_trait]
impl Authenticator for Arc<Fake> {
    async fn login(&self) -> Result<AuthGrant, AuthError> {
        let n = self.logins.fetch_add(1, Ordering::SeqCst) + 1;
        let step = self.login_steps.lock().unwrap().pop_front();
        let lease = self
            .play(step)
            .await
            .ok_or(AuthError::OpenBao(LOGIN_DOWN))?;
        Ok(AuthGrant {
            client_token: SecretString::new(format!("login-{n}")),
            lease,
            renewable: true,
        })
    }

    async fn renew(
        &self,
        _token: &SecretString,
        increment: Duration,
    ) -> Result<AuthGrant, OpenBaoError> {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        self.increments.lock().unwrap().push(increment);
        let step = self.renew_steps.lock().unwrap().pop_front();
        let lease = self.play(step).await.ok_or(RENEW_DOWN)?;
        Ok(AuthGrant {
            client_token: SecretString::new(String::new()),
            lease,
            renewable: true,
        })
    }
}

const LOGIN_DOWN: OpenBaoError = OpenBaoError {
    op: Operation::JwtLogin,
    class: ErrorClass::Unavailable,
    status: None,
};
const RENEW_DOWN: OpenBaoError = OpenBaoError {
    op: Operation::TokenRenewSelf,
    class: ErrorClass::Unavailable,
    status: None,
};

fn manager(fake: &Arc<Fake>) -> Arc<TokenManager> {
    TokenManager::with_backend(
        Box::new(Arc::clone(fake)),
        Refresh {
            login_before_expiry: WINDOW,
            renewal_increment: HOUR,
            login_timeout: TIMEOUT,
        },
    )
}

async fn token(manager: &TokenManager) -> Result<String, AuthError> {
    manager.token().await.map(|t| t.expose().to_owned())
}

async fn recover(manager: &TokenManager, rejected: &str) -> Option<String> {
    let rejected = SecretString::new(rejected.to_owned());
    manager
        .recover(&rejected)
        .await
        .map(|t| t.expose().to_owned())
}

/// Lets spawned flights run to their next wait without moving the clock.
async fn settle() {
    for _ in 0..32 {
        tokio::task::yield_now().await;
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn first_call_logs_in_and_later_calls_reuse_the_token() {
    let fake = Fake::new();
    let m = manager(&fake);
    assert_eq!(token(&m).await.unwrap(), "login-1");
    advance(HOUR - WINDOW - Duration::from_secs(1)).await;
    assert_eq!(token(&m).await.unwrap(), "login-1");
    settle().await;
    assert_eq!(fake.calls(), (1, 0), "outside the window nothing refreshes");
    assert_eq!(m.token_ttl(), Some(WINDOW + Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_renews_once_in_the_background_while_callers_keep_the_old_token() {
    let fake = Fake::new();
    fake.script_renew([Step::Gated]);
    let m = manager(&fake);
    assert_eq!(token(&m).await.unwrap(), "login-1");
    advance(HOUR - WINDOW + Duration::from_secs(1)).await;

    let asked = Instant::now();
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let m = Arc::clone(&m);
            tokio::spawn(async move { token(&m).await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), "login-1");
    }
    assert_eq!(Instant::now(), asked, "no caller waited for the renewal");
    settle().await;
    assert_eq!(fake.calls(), (1, 1), "one shared renewal, no login");
    assert_eq!(token(&m).await.unwrap(), "login-1");
    settle().await;
    assert_eq!(fake.calls(), (1, 1), "no second flight while one is out");

    fake.gate.add_permits(1);
    settle().await;
    assert_eq!(
        m.token_ttl(),
        Some(HOUR),
        "the renewed lease counts from now"
    );
    assert_eq!(*fake.increments.lock().unwrap(), [HOUR]);
    assert_eq!(token(&m).await.unwrap(), "login-1");
}

#[tokio::test(start_paused = true)]
async fn callers_without_a_token_share_one_login() {
    let fake = Fake::new();
    fake.script_login([Step::Gated]);
    let m = manager(&fake);
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let m = Arc::clone(&m);
            tokio::spawn(async move { token(&m).await })
        })
        .collect();
    settle().await;
    assert_eq!(fake.calls(), (1, 0));
    // Opened before awaiting: an idle paused runtime would jump to the login timeout.
    fake.gate.add_permits(1);
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), "login-1");
    }
    assert_eq!(fake.calls(), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_failed_or_too_short_renewal_falls_back_to_login() {
    let fake = Fake::new();
    fake.script_renew([Step::Fail, Step::Lease(WINDOW)]);
    let m = manager(&fake);
    assert_eq!(token(&m).await.unwrap(), "login-1");

    advance(HOUR - WINDOW).await;
    assert_eq!(token(&m).await.unwrap(), "login-1");
    settle().await;
    assert_eq!(fake.calls(), (2, 1));
    assert_eq!(token(&m).await.unwrap(), "login-2");
    assert_eq!(m.token_ttl(), Some(HOUR));

    advance(HOUR - WINDOW).await;
    assert_eq!(token(&m).await.unwrap(), "login-2");
    settle().await;
    assert_eq!(fake.calls(), (3, 2));
    assert_eq!(token(&m).await.unwrap(), "login-3");
}

#[tokio::test(start_paused = true)]
async fn failed_flights_back_off_and_callers_fail_fast_with_the_last_error() {
    let fake = Fake::new();
    fake.script_login([Step::Fail, Step::Fail]);
    let m = manager(&fake);
    let down = AuthError::OpenBao(LOGIN_DOWN);
    assert_eq!(token(&m).await, Err(down));
    assert_eq!(
        TokenSource::token(&*m).await.map(|_| ()),
        Err(ErrorClass::Unavailable),
        "an outage keeps its transport class"
    );

    // First backoff: 1 s ± 25 %. Inside it nothing starts and callers fail at once.
    advance(Duration::from_millis(749)).await;
    assert_eq!(token(&m).await, Err(down));
    settle().await;
    assert_eq!(fake.calls(), (1, 0));
    advance(Duration::from_millis(501)).await;
    assert_eq!(token(&m).await, Err(down));
    assert_eq!(fake.calls(), (2, 0));

    // Second backoff: 2 s ± 25 %.
    advance(Duration::from_millis(1499)).await;
    assert_eq!(token(&m).await, Err(down));
    assert_eq!(fake.calls(), (2, 0));
    advance(Duration::from_millis(1001)).await;
    assert_eq!(token(&m).await.unwrap(), "login-3");
}

#[tokio::test(start_paused = true)]
async fn a_valid_token_is_still_served_while_refreshes_back_off() {
    let fake = Fake::new();
    fake.script_renew([Step::Fail]);
    fake.script_login([Step::Lease(HOUR), Step::Fail]);
    let m = manager(&fake);
    assert_eq!(token(&m).await.unwrap(), "login-1");
    advance(HOUR - WINDOW).await;
    assert_eq!(token(&m).await.unwrap(), "login-1");
    settle().await;
    assert_eq!(
        fake.calls(),
        (2, 1),
        "renewal failed, fallback login failed"
    );

    assert_eq!(token(&m).await.unwrap(), "login-1");
    settle().await;
    assert_eq!(fake.calls(), (2, 1), "no refresh during the backoff");

    advance(Duration::from_millis(1250)).await;
    assert_eq!(token(&m).await.unwrap(), "login-1");
    settle().await;
    assert_eq!(fake.calls(), (2, 2));
    assert_eq!(m.token_ttl(), Some(HOUR));
}

#[tokio::test(start_paused = true)]
async fn recovery_logins_are_throttled_doubling_from_five_seconds_and_reset_after_a_quiet_period() {
    let fake = Fake::new();
    let m = manager(&fake);
    assert_eq!(token(&m).await.unwrap(), "login-1");
    assert_eq!(recover(&m, "login-1").await.as_deref(), Some("login-2"));

    // Spacing 5 s, then 10 s, then 20 s: a rejection inside it gets no login,
    // and the rejected token is kept (a 403 may deny one path only).
    let mut current = 2;
    for spacing in [5, 10, 20] {
        let rejected = format!("login-{current}");
        advance(Duration::from_secs(spacing) - MS).await;
        assert_eq!(recover(&m, &rejected).await, None);
        assert_eq!(token(&m).await.unwrap(), rejected);
        assert_eq!(fake.calls(), (current, 0));
        advance(MS).await;
        current += 1;
        let fresh = format!("login-{current}");
        assert_eq!(recover(&m, &rejected).await, Some(fresh));
    }

    // Ten quiet minutes start a new incident: 5 s spacing again, not 40 s.
    advance(RECOVERY_QUIET).await;
    assert_eq!(recover(&m, "login-5").await.as_deref(), Some("login-6"));
    advance(Duration::from_secs(5)).await;
    assert_eq!(recover(&m, "login-6").await.as_deref(), Some("login-7"));
}

#[tokio::test(start_paused = true)]
async fn a_lease_not_longer_than_the_refresh_window_is_rejected() {
    let fake = Fake::new();
    fake.script_login([Step::Lease(WINDOW), Step::Lease(Duration::ZERO)]);
    let m = manager(&fake);
    assert_eq!(token(&m).await, Err(AuthError::LeaseTooShort));
    assert_eq!(m.token_ttl(), None);
    assert_eq!(
        TokenSource::token(&*m).await.map(|_| ()),
        Err(ErrorClass::AuthUnavailable)
    );
    advance(Duration::from_millis(1250)).await;
    assert_eq!(token(&m).await, Err(AuthError::LeaseTooShort));
    advance(Duration::from_millis(2500)).await;
    assert_eq!(token(&m).await.unwrap(), "login-3");
}

#[tokio::test(start_paused = true)]
async fn a_hostile_lease_is_capped_instead_of_overflowing_the_clock() {
    let fake = Fake::new();
    fake.script_login([
        Step::Lease(Duration::from_secs(u64::MAX)),
        Step::Lease(HOUR),
    ]);
    fake.script_renew([Step::Lease(Duration::MAX)]);
    let m = manager(&fake);
    assert_eq!(token(&m).await.unwrap(), "login-1");
    assert_eq!(m.token_ttl(), Some(MAX_LEASE));

    assert_eq!(recover(&m, "login-1").await.as_deref(), Some("login-2"));
    advance(HOUR - WINDOW).await;
    assert_eq!(token(&m).await.unwrap(), "login-2");
    settle().await;
    assert_eq!(fake.calls(), (2, 1));
    assert_eq!(m.token_ttl(), Some(MAX_LEASE), "a renewal is capped too");
}

#[tokio::test(start_paused = true)]
async fn a_login_that_never_answers_times_out_and_is_retried_after_the_backoff() {
    let fake = Fake::new();
    fake.script_login([Step::Hang]);
    let m = manager(&fake);
    let asked = Instant::now();
    assert_eq!(token(&m).await, Err(AuthError::Timeout));
    assert!(asked.elapsed() >= TIMEOUT);
    assert_eq!(
        TokenSource::token(&*m).await.map(|_| ()),
        Err(ErrorClass::Timeout)
    );
    advance(Duration::from_millis(1250)).await;
    assert_eq!(token(&m).await.unwrap(), "login-2");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_login_clears_the_flight_and_a_later_call_starts_a_new_one() {
    let fake = Fake::new();
    fake.script_login([Step::Panic]);
    let m = manager(&fake);
    assert_eq!(token(&m).await, Err(AuthError::Unavailable));
    // The panic counts as a failed flight: fail fast through its backoff …
    assert_eq!(token(&m).await, Err(AuthError::Unavailable));
    assert_eq!(fake.calls(), (1, 0));
    // … then a fresh attempt, not a join of the dead one.
    advance(Duration::from_millis(1250)).await;
    assert_eq!(token(&m).await.unwrap(), "login-2");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_renewal_keeps_the_old_token_and_refreshes_after_the_backoff() {
    let fake = Fake::new();
    fake.script_renew([Step::Panic]);
    let m = manager(&fake);
    assert_eq!(token(&m).await.unwrap(), "login-1");
    advance(HOUR - WINDOW).await;
    assert_eq!(token(&m).await.unwrap(), "login-1");
    settle().await;
    assert_eq!(fake.calls(), (1, 1));
    assert_eq!(token(&m).await.unwrap(), "login-1");
    advance(Duration::from_millis(1250)).await;
    assert_eq!(token(&m).await.unwrap(), "login-1");
    settle().await;
    assert_eq!(fake.calls(), (1, 2));
    assert_eq!(m.token_ttl(), Some(HOUR));
}

#[test]
fn a_flight_cancelled_by_runtime_shutdown_answers_its_waiters_and_the_next_call_retries() {
    let fake = Fake::new();
    fake.script_login([Step::Hang]);
    let m = manager(&fake);
    let survivor = paused_runtime();
    let doomed = paused_runtime();

    // The flight runs on `doomed`; its caller gives up and the flight hangs on.
    doomed.block_on(async {
        assert!(tokio::time::timeout(MS, m.token()).await.is_err());
    });
    assert_eq!(fake.calls(), (1, 0));
    let waiter = {
        let _entered = survivor.enter();
        let m = Arc::clone(&m);
        tokio::spawn(async move { m.token().await.map(|_| ()) })
    };
    survivor.block_on(settle());

    drop(doomed);
    survivor.block_on(async {
        let answer = tokio::time::timeout(Duration::from_secs(60), waiter).await;
        assert_eq!(answer.unwrap().unwrap(), Err(AuthError::Unavailable));
        // Well past the backoff, whichever runtime's clock set it.
        advance(Duration::from_secs(10)).await;
        assert_eq!(token(&m).await.unwrap(), "login-2");
    });
}

#[test]
fn auth_errors_map_to_bounded_openbao_classes() {
    let login = |class| {
        AuthError::OpenBao(OpenBaoError {
            class,
            ..LOGIN_DOWN
        })
        .class()
    };
    for class in [
        ErrorClass::Sealed,
        ErrorClass::Unavailable,
        ErrorClass::TlsFailed,
        ErrorClass::DnsFailed,
        ErrorClass::ConnectionFailed,
        ErrorClass::RateLimited,
        ErrorClass::Timeout,
    ] {
        assert_eq!(login(class), class);
    }
    for class in [
        ErrorClass::Unauthenticated,
        ErrorClass::PermissionDenied,
        ErrorClass::InvalidResponse,
    ] {
        assert_eq!(login(class), ErrorClass::AuthUnavailable);
    }
    assert_eq!(AuthError::Timeout.class(), ErrorClass::Timeout);
    assert_eq!(
        AuthError::LeaseTooShort.class(),
        ErrorClass::AuthUnavailable
    );
    assert_eq!(AuthError::Unavailable.class(), ErrorClass::AuthUnavailable);
}
