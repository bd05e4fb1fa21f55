//! The cert-auth login backend: local checks, then `POST <mount>/login` over
//! an auth-only mTLS client that is built afresh for every login.
//!
//! A fresh client per login drops the previous connection pool, so no idle
//! connection authenticated with an older certificate is reused; renewal
//! reuses the latest one, so `renew-self` is made over the same mTLS identity
//! (OpenBao cert auth keeps `disable_binding=false`).

use super::CertError;
use super::chain::{CertChecks, CheckedLeaf, check_chain, read_chain};
use super::hsm::{Pkcs11Settings, Token};
use super::pin::read_pin;
use super::signer::{TokenClientCert, sign};
use crate::auth::AuthError;
use crate::clock::unix_now;
use crate::observe::metrics::Metrics;
use crate::openbao::{AuthApi, AuthGrant, BuildError, HttpClient, OpenBaoError, TlsSettings};
use crate::secret::SecretString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The message the signer probe signs (the reference's, for parity).
const PROBE_MESSAGE: &[u8] = b"openbao-kubernetes-kms/cert-signer-probe/v1";

/// How to reach OpenBao and which cert role to log in with.
#[derive(Debug, Clone)]
pub struct CertLoginSettings {
    pub address: String,
    pub namespace: String,
    pub ca_cert_file: PathBuf,
    pub server_name: String,
    pub mount: String,
    pub name: String,
    pub certificate_file: PathBuf,
    pub checks: CertChecks,
    /// Per-request deadline of each login or renewal call.
    pub timeout: Duration,
}

/// Reads the PIN file and opens the token (blocking).
pub fn open_token(settings: &Pkcs11Settings) -> Result<Token, CertError> {
    let pin = read_pin(&settings.pin_file)?;
    Token::open(settings, &pin)
}

/// The local checks of a login (doctor's `auth.cert.local` and
/// `auth.cert.signer`). Returns the leaf's NotAfter.
pub fn check_credential(
    token: &Token,
    certificate_file: &std::path::Path,
    checks: CertChecks,
    now: i64,
) -> Result<i64, CertError> {
    let leaf = check_chain(&read_chain(certificate_file)?, checks, now)?;
    check_signer(token, &leaf)?;
    Ok(leaf.not_after)
}

/// The leaf key must be the token's key, and a probe signature made in the
/// token must verify with the leaf key.
pub fn check_signer(token: &Token, leaf: &CheckedLeaf) -> Result<(), CertError> {
    if &leaf.public_key != token.public_key() {
        return Err(CertError::KeyMismatch);
    }
    let scheme = leaf.public_key.preferred_scheme();
    let signature = sign(token, scheme, PROBE_MESSAGE)?;
    if leaf.public_key.verifies(scheme, PROBE_MESSAGE, &signature) {
        Ok(())
    } else {
        Err(CertError::ProbeFailed)
    }
}

/// Logs in with OpenBao's cert auth using the token's key.
pub struct CertLogin {
    token: Arc<Token>,
    settings: CertLoginSettings,
    metrics: Option<Arc<Metrics>>,
    /// The auth client of the last login; renewals go over it.
    current: Mutex<Option<AuthApi>>,
    /// NotAfter (unix seconds) of the leaf last checked; 0 before any check.
    not_after: AtomicI64,
}

impl CertLogin {
    pub fn new(
        token: Arc<Token>,
        settings: CertLoginSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            token,
            settings,
            metrics,
            current: Mutex::new(None),
            not_after: AtomicI64::new(0),
        }
    }

    /// A fresh mTLS auth client (new pool: no idle connection survives).
    fn fresh_client(&self) -> Result<AuthApi, BuildError> {
        let s = &self.settings;
        let tls = TlsSettings {
            ca_cert_file: &s.ca_cert_file,
            server_name: &s.server_name,
        };
        let resolver = Arc::new(TokenClientCert {
            token: Arc::clone(&self.token),
            certificate_file: s.certificate_file.clone(),
        });
        let mut http = HttpClient::with_client_cert(&s.address, &s.namespace, &tls, resolver)?;
        if let Some(metrics) = &self.metrics {
            http = http.with_metrics(Arc::clone(metrics));
        }
        let api = AuthApi::new(http);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(api.clone());
        Ok(api)
    }

    /// Seconds the last checked leaf has left, if one was checked.
    pub fn certificate_ttl(&self) -> Option<Duration> {
        let not_after = self.not_after.load(Ordering::Relaxed);
        (not_after > 0).then(|| {
            Duration::from_secs(u64::try_from(not_after.saturating_sub(unix_now())).unwrap_or(0))
        })
    }

    pub(in crate::auth) async fn log_in(&self) -> Result<AuthGrant, AuthError> {
        let token = Arc::clone(&self.token);
        let file = self.settings.certificate_file.clone();
        let checks = self.settings.checks;
        // File reads and token calls block: keep them off the async workers.
        let checked = tokio::task::spawn_blocking(move || {
            check_credential(&token, &file, checks, unix_now())
        })
        .await
        .map_err(|_| AuthError::Unavailable)?
        .map_err(AuthError::Cert)?;
        self.not_after.store(checked, Ordering::Relaxed);
        let api = self.fresh_client().map_err(|_| AuthError::Unavailable)?;
        api.cert_login(
            &self.settings.mount,
            &self.settings.name,
            self.settings.timeout,
        )
        .await
        .map_err(AuthError::OpenBao)
    }

    pub(in crate::auth) async fn renew_token(
        &self,
        token: &SecretString,
        increment: Duration,
    ) -> Result<AuthGrant, OpenBaoError> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let api = match current {
            Some(api) => api,
            None => self.fresh_client().map_err(|_| {
                OpenBaoError::new(
                    crate::openbao::Operation::TokenRenewSelf,
                    crate::openbao::ErrorClass::TlsFailed,
                )
            })?,
        };
        api.renew_self(token, increment, self.settings.timeout)
            .await
    }
}
