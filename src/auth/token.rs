//! The token manager: one in-memory OpenBao token shared by every caller.
//!
//! * Callers get the current token at once while it is valid; inside the
//!   refresh-ahead window one background renewal (or login) starts.
//! * Concurrent callers that need a token join one shared "flight"; the flight
//!   runs detached, so a caller that gives up does not cancel it, and a flight
//!   that panics or is cancelled still lands (as a failure).
//! * Failed flights block new ones for a jittered exponential backoff.
//! * A 401/403 from Transit triggers `recover`: the rejected token is dropped
//!   and one throttled re-login replaces it.
//!
//! No lock is held across an await: state sits in a `std::sync::Mutex` and
//! flights report through a `watch` channel. *How* to log in or renew is the
//! `Authenticator`'s business; this module only decides *when*.

use super::backoff::{failure_backoff, recovery_spacing, with_jitter};
use super::cert::{CertError, CertLogin};
use super::jwt::{JwtChecks, JwtError};
use super::login::{Authenticator, JwtFileLogin};
use super::oauth2::{OAuth2Error, OAuth2Login};
use crate::config::OAuth2Config;
use crate::observe::metrics::Metrics;
use crate::openbao::{AuthApi, AuthGrant, ErrorClass, OpenBaoError, TokenSource};
use crate::secret::SecretString;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// A quiet period this long without rejections starts a new recovery incident.
const RECOVERY_QUIET: Duration = Duration::from_secs(600);

/// Longest lease believed. OpenBao's own default ceiling is 32 days; a longer
/// answer is broken or hostile, and capping it keeps `now + lease` far from
/// the clock's overflow.
const MAX_LEASE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Why no token is available. Displays as `auth failed: <safe message>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Jwt(JwtError),
    OAuth2(OAuth2Error),
    Cert(CertError),
    OpenBao(OpenBaoError),
    LeaseTooShort,
    Timeout,
    Unavailable,
}

impl AuthError {
    /// Bounded status label for logs and metrics.
    pub fn status(self) -> &'static str {
        match self {
            Self::Jwt(e) => e.status(),
            Self::OAuth2(e) => e.status(),
            Self::Cert(e) => e.status(),
            Self::OpenBao(_) | Self::LeaseTooShort => "auth_failed",
            Self::Timeout | Self::Unavailable => "error",
        }
    }

    /// The OpenBao class a Transit call reports when it got no token. A login
    /// that failed because OpenBao was unreachable is an outage, not a
    /// credential problem: it keeps its transport class so callers see
    /// Unavailable.
    fn class(self) -> ErrorClass {
        match self {
            Self::OpenBao(e) => match e.class {
                class @ (ErrorClass::Sealed
                | ErrorClass::Unavailable
                | ErrorClass::TlsFailed
                | ErrorClass::DnsFailed
                | ErrorClass::ConnectionFailed
                | ErrorClass::RateLimited
                | ErrorClass::Timeout) => class,
                _ => ErrorClass::AuthUnavailable,
            },
            Self::Timeout => ErrorClass::Timeout,
            Self::Jwt(_)
            | Self::OAuth2(_)
            | Self::Cert(_)
            | Self::LeaseTooShort
            | Self::Unavailable => ErrorClass::AuthUnavailable,
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jwt(e) => write!(f, "auth failed: {e}"),
            Self::OAuth2(e) => write!(f, "auth failed: {e}"),
            Self::Cert(e) => write!(f, "auth failed: {e}"),
            Self::OpenBao(e) => write!(f, "auth failed: {e}"),
            Self::LeaseTooShort => {
                f.write_str("auth failed: token lease duration must exceed login-before-expiry")
            }
            Self::Timeout => f.write_str("auth failed: login timed out"),
            Self::Unavailable => f.write_str("auth failed: openbao token unavailable"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Static settings of the manager, from `auth.*`.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub jwt_mount: String,
    pub jwt_role: String,
    pub jwt_file: PathBuf,
    pub jwt_checks: JwtChecks,
    /// `Some` for `auth.jwt.source: oauth2`: the JWT comes from a fresh
    /// client-credentials grant instead of `jwt_file`.
    pub oauth2: Option<OAuth2Config>,
    pub login_before_expiry: Duration,
    pub renewal_increment: Duration,
    pub login_timeout: Duration,
}

/// The timing part of the settings: all the manager itself needs.
#[derive(Debug, Clone, Copy)]
struct Refresh {
    login_before_expiry: Duration,
    renewal_increment: Duration,
    login_timeout: Duration,
}

struct Held {
    value: SecretString,
    expires: Instant,
    renewable: bool,
}

type FlightResult = Option<Result<(), AuthError>>;

#[derive(Default)]
struct State {
    token: Option<Held>,
    flight: Option<watch::Receiver<FlightResult>>,
    failures: u32,
    blocked_until: Option<Instant>,
    last_error: Option<AuthError>,
    recoveries: u32,
    last_rejection: Option<Instant>,
    recovery_blocked_until: Option<Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlightKind {
    Renew,
    Login,
}

/// Shares one OpenBao token among all callers of the process.
pub struct TokenManager {
    core: Arc<Core>,
}

/// The shared part a detached flight keeps alive.
struct Core {
    backend: Box<dyn Authenticator>,
    refresh: Refresh,
    state: Mutex<State>,
    metrics: OnceLock<Arc<Metrics>>,
}

impl TokenManager {
    pub fn new(api: AuthApi, settings: TokenSettings) -> Arc<Self> {
        let refresh = Refresh {
            login_before_expiry: settings.login_before_expiry,
            renewal_increment: settings.renewal_increment,
            login_timeout: settings.login_timeout,
        };
        let backend: Box<dyn Authenticator> = match &settings.oauth2 {
            Some(oauth2) => Box::new(OAuth2Login::new(
                api,
                settings.jwt_mount,
                settings.jwt_role,
                oauth2,
                settings.jwt_checks,
                settings.login_timeout,
            )),
            None => Box::new(JwtFileLogin {
                api,
                mount: settings.jwt_mount,
                role: settings.jwt_role,
                file: settings.jwt_file,
                checks: settings.jwt_checks,
                timeout: settings.login_timeout,
            }),
        };
        Self::with_backend(backend, refresh)
    }

    /// A manager that logs in with the PKCS#11 certificate (`auth.method: cert`);
    /// only the timing fields of `settings` apply.
    pub fn with_cert(login: CertLogin, settings: &TokenSettings) -> Arc<Self> {
        let refresh = Refresh {
            login_before_expiry: settings.login_before_expiry,
            renewal_increment: settings.renewal_increment,
            login_timeout: settings.login_timeout,
        };
        Self::with_backend(Box::new(login), refresh)
    }

    fn with_backend(backend: Box<dyn Authenticator>, refresh: Refresh) -> Arc<Self> {
        Arc::new(Self {
            core: Arc::new(Core {
                backend,
                refresh,
                state: Mutex::new(State::default()),
                metrics: OnceLock::new(),
            }),
        })
    }

    /// Counts logins and renewals in `metrics`.
    pub fn set_metrics(&self, metrics: Arc<Metrics>) {
        let _ = self.core.metrics.set(metrics);
    }

    /// The current token, logging in or renewing as needed. Transit sees the
    /// same through `TokenSource::token`, with the error as an OpenBao class.
    pub async fn token(&self) -> Result<SecretString, AuthError> {
        self.core.token().await
    }
}

#[async_trait::async_trait]
impl TokenSource for TokenManager {
    async fn token(&self) -> Result<SecretString, ErrorClass> {
        self.core.token().await.map_err(AuthError::class)
    }

    async fn recover(&self, rejected: &SecretString) -> Option<SecretString> {
        {
            let core = &self.core;
            let mut state = core.lock();
            let now = Instant::now();
            let throttled = state.recovery_blocked_until.is_some_and(|t| t > now);
            let holds_rejected = state.token.as_ref().is_some_and(|h| h.value == *rejected);
            if holds_rejected && throttled && state.flight.is_none() {
                // OpenBao answers 403 both to a revoked token and to a path the
                // policy does not grant. While a new login is not allowed yet,
                // keep the token: it may still serve other calls (Decrypt while
                // only Encrypt is denied), and a revoked one is replaced once
                // the throttle ends.
                return None;
            }
            if holds_rejected {
                state.token = None;
            }
            // Callers rejected with the same token join a recovery already in
            // flight (or take its result); only a new recovery is throttled.
            if state.token.is_none() && state.flight.is_none() {
                if throttled {
                    return None;
                }
                let quiet = state
                    .last_rejection
                    .is_none_or(|t| now.saturating_duration_since(t) >= RECOVERY_QUIET);
                if quiet {
                    state.recoveries = 0;
                }
                state.recoveries = state.recoveries.saturating_add(1);
                state.last_rejection = Some(now);
                state.recovery_blocked_until = Some(later(now, recovery_spacing(state.recoveries)));
                core.start_flight(&mut state, FlightKind::Login);
            }
        }
        match self.core.token().await {
            Ok(fresh) if fresh != *rejected => Some(fresh),
            _ => None,
        }
    }

    fn certificate_ttl(&self) -> Option<Duration> {
        self.core.backend.certificate_ttl()
    }

    fn token_ttl(&self) -> Option<Duration> {
        let state = self.core.lock();
        state
            .token
            .as_ref()
            .map(|h| h.expires.saturating_duration_since(Instant::now()))
    }
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not wedge authentication; the state stays consistent
        // because every update is a plain field assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn token(self: &Arc<Self>) -> Result<SecretString, AuthError> {
        let mut rx = {
            let mut state = self.lock();
            let now = Instant::now();
            if let Some(held) = state.token.as_ref().filter(|h| h.expires > now) {
                let value = held.value.clone();
                let in_window =
                    held.expires.saturating_duration_since(now) <= self.refresh.login_before_expiry;
                let blocked = state.blocked_until.is_some_and(|t| t > now);
                if in_window && !blocked && state.flight.is_none() {
                    let kind = kind_for(&state, now);
                    self.start_flight(&mut state, kind);
                }
                return Ok(value);
            }
            match &state.flight {
                Some(rx) => rx.clone(),
                None => {
                    let backoff = state.blocked_until.is_some_and(|t| t > now);
                    let throttled = state.recovery_blocked_until.is_some_and(|t| t > now);
                    if backoff || throttled {
                        return Err(state.last_error.unwrap_or(AuthError::Unavailable));
                    }
                    let kind = kind_for(&state, now);
                    self.start_flight(&mut state, kind)
                }
            }
        };
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map(|v| *v)
            .map_err(|_| AuthError::Unavailable)?;
        match outcome {
            Some(Ok(())) => {
                let state = self.lock();
                state
                    .token
                    .as_ref()
                    .filter(|h| h.expires > Instant::now())
                    .map(|h| h.value.clone())
                    .ok_or(AuthError::Unavailable)
            }
            Some(Err(e)) => Err(e),
            None => Err(AuthError::Unavailable),
        }
    }

    fn start_flight(
        self: &Arc<Self>,
        state: &mut State,
        kind: FlightKind,
    ) -> watch::Receiver<FlightResult> {
        let (tx, rx) = watch::channel(None);
        state.flight = Some(rx.clone());
        let renewing = match kind {
            FlightKind::Renew => state.token.as_ref().map(|h| h.value.clone()),
            FlightKind::Login => None,
        };
        let mut flight = Flight {
            core: Arc::clone(self),
            tx: Some(tx),
        };
        tokio::spawn(async move {
            let core = &flight.core;
            let result =
                match tokio::time::timeout(core.refresh.login_timeout, core.fly(renewing)).await {
                    Ok(result) => result,
                    Err(_) => Err(AuthError::Timeout),
                };
            flight.land(result);
        });
        rx
    }

    /// Renews `renewing` if given, falling back to a login; stores the result.
    async fn fly(&self, renewing: Option<SecretString>) -> Result<(), AuthError> {
        if let Some(current) = renewing {
            let renewed = self
                .backend
                .renew(&current, self.refresh.renewal_increment)
                .await;
            match renewed {
                Ok(grant) => {
                    let mut state = self.lock();
                    // The token may have been rejected or replaced while we renewed it;
                    // a renewed lease that is too short is no better than none.
                    if state.token.as_ref().is_some_and(|h| h.value == current) {
                        let value = if grant.client_token.is_empty() {
                            current
                        } else {
                            grant.client_token.clone()
                        };
                        if self.accept(&mut state, value, &grant).is_ok() {
                            tracing::debug!(status = "ok", "auth.renewal");
                            self.count_renewal("ok");
                            return Ok(());
                        }
                    }
                    tracing::info!(status = "superseded", "auth.renewal");
                    self.count_renewal("superseded");
                }
                Err(e) => {
                    tracing::warn!(status = "auth_failed", error = %e, "auth.renewal");
                    self.count_renewal(e.class.as_str());
                }
            }
        }
        let grant = self.backend.login().await?;
        let mut state = self.lock();
        self.accept(&mut state, grant.client_token.clone(), &grant)
    }

    fn accept(
        &self,
        state: &mut State,
        value: SecretString,
        grant: &AuthGrant,
    ) -> Result<(), AuthError> {
        if grant.lease.is_zero() || grant.lease <= self.refresh.login_before_expiry {
            return Err(AuthError::LeaseTooShort);
        }
        state.token = Some(Held {
            value,
            expires: later(Instant::now(), grant.lease.min(MAX_LEASE)),
            renewable: grant.renewable,
        });
        Ok(())
    }

    fn count_renewal(&self, status: &str) {
        if let Some(metrics) = self.metrics.get() {
            metrics.auth_renewal(status);
        }
    }

    fn finish(&self, result: Result<(), AuthError>) {
        if let Some(metrics) = self.metrics.get() {
            metrics.auth_login(result.map_or_else(AuthError::status, |()| "ok"));
        }
        let mut state = self.lock();
        state.flight = None;
        match result {
            Ok(()) => {
                tracing::debug!(status = "ok", "auth.login");
                state.failures = 0;
                state.blocked_until = None;
                state.last_error = None;
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                tracing::warn!(status = e.status(), error = %e, failures = state.failures, "auth.login");
                let backoff = with_jitter(failure_backoff(state.failures));
                state.blocked_until = Some(later(Instant::now(), backoff));
                state.last_error = Some(e);
            }
        }
    }
}

/// One spawned flight. It always lands: normally through `land`, and when the
/// task panics or is dropped unfinished (aborted, runtime shutdown) through
/// `Drop`, so the in-flight marker is cleared, waiters are told, and a later
/// caller starts afresh instead of joining a flight that will never report.
struct Flight {
    core: Arc<Core>,
    tx: Option<watch::Sender<FlightResult>>,
}

impl Flight {
    fn land(&mut self, result: Result<(), AuthError>) {
        if let Some(tx) = self.tx.take() {
            self.core.finish(result);
            let _ = tx.send(Some(result));
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        // A no-op after `land`; otherwise an unfinished flight counts as a
        // failed one, so a login that keeps panicking is still backed off.
        self.land(Err(AuthError::Unavailable));
    }
}

fn kind_for(state: &State, now: Instant) -> FlightKind {
    match &state.token {
        Some(held) if held.renewable && held.expires > now => FlightKind::Renew,
        _ => FlightKind::Login,
    }
}

/// `now + delay` without overflow. Callers cap what they pass (leases at
/// `MAX_LEASE`, backoffs at minutes), so the fallback is unreachable on a real
/// clock; if it were reached, "already due" is the safe reading.
fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay).unwrap_or(now)
}

#[cfg(test)]
mod tests;
