//! The login and renewal backend behind the token manager.
//!
//! The manager decides *when* to log in or renew; an `Authenticator` only
//! knows *how*. Production uses `JwtFileLogin` (JWT file re-read and checked
//! before each login, then OpenBao's JWT auth) or `CertLogin` (PKCS#11 key,
//! see `auth::cert`); unit tests drive the manager
//! with fakes that count calls, choose leases and errors, or never answer.

use super::cert::CertLogin;
use super::jwt::{JwtChecks, read_jwt_file, validate_claims};
use super::token::AuthError;
use crate::clock::unix_now;
use crate::openbao::{AuthApi, AuthGrant, OpenBaoError};
use crate::secret::SecretString;
use std::path::PathBuf;
use std::time::Duration;

/// Obtains and renews OpenBao tokens.
#[async_trait::async_trait]
pub(super) trait Authenticator: Send + Sync {
    /// A fresh token from the configured credential.
    async fn login(&self) -> Result<AuthGrant, AuthError>;

    /// `renew-self` of `token`, asking for `increment` more lease time.
    async fn renew(
        &self,
        token: &SecretString,
        increment: Duration,
    ) -> Result<AuthGrant, OpenBaoError>;

    /// Remaining lifetime of the client certificate last used, for cert auth.
    fn certificate_ttl(&self) -> Option<Duration> {
        None
    }
}

/// JWT-file login against OpenBao's JWT auth method (`auth.jwt.*`).
pub(super) struct JwtFileLogin {
    pub api: AuthApi,
    pub mount: String,
    pub role: String,
    pub file: PathBuf,
    pub checks: JwtChecks,
    /// Per-request deadline of each login or renewal call.
    pub timeout: Duration,
}

#[async_trait::async_trait]
impl Authenticator for JwtFileLogin {
    async fn login(&self) -> Result<AuthGrant, AuthError> {
        // Re-read every time: the projected token file is rotated underneath us.
        let jwt = read_jwt_file(&self.file).map_err(AuthError::Jwt)?;
        validate_claims(&jwt, &self.checks, unix_now()).map_err(AuthError::Jwt)?;
        self.api
            .jwt_login(&self.mount, &self.role, &jwt, self.timeout)
            .await
            .map_err(AuthError::OpenBao)
    }

    async fn renew(
        &self,
        token: &SecretString,
        increment: Duration,
    ) -> Result<AuthGrant, OpenBaoError> {
        self.api.renew_self(token, increment, self.timeout).await
    }
}

#[async_trait::async_trait]
impl Authenticator for CertLogin {
    async fn login(&self) -> Result<AuthGrant, AuthError> {
        self.log_in().await
    }

    async fn renew(
        &self,
        token: &SecretString,
        increment: Duration,
    ) -> Result<AuthGrant, OpenBaoError> {
        self.renew_token(token, increment).await
    }

    fn certificate_ttl(&self) -> Option<Duration> {
        CertLogin::certificate_ttl(self)
    }
}
