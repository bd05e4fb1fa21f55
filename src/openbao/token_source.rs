//! The token-source interface Transit authenticates with.
//!
//! `openbao` defines it and `auth` implements it, so the client never depends
//! on how tokens are obtained (and `auth` may depend on `openbao` without a
//! cycle). Failures are reported as OpenBao's own bounded error classes.

use super::error::ErrorClass;
use crate::secret::SecretString;
use std::time::Duration;

/// Where Transit gets the token it sends, and where it reports rejections.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    /// A currently valid token. The error class says why none is available;
    /// an outage keeps its transport class so callers answer Unavailable.
    async fn token(&self) -> Result<SecretString, ErrorClass>;

    /// Called after OpenBao rejected `rejected` with 401/403. Returns a
    /// different token to retry with once, or `None` when recovery is
    /// throttled (the rejected token is then kept: a 403 may be a policy
    /// denial of one path only) or failed.
    async fn recover(&self, rejected: &SecretString) -> Option<SecretString>;

    /// Remaining lifetime of the current token, for diagnostics.
    fn token_ttl(&self) -> Option<Duration>;

    /// Remaining lifetime of the client certificate of the last cert login.
    fn certificate_ttl(&self) -> Option<Duration> {
        None
    }
}
