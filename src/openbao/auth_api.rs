//! OpenBao auth endpoints: JWT login, cert login and token renew-self.

use super::error::{ErrorClass, OpenBaoError, Operation};
use super::http::{Call, HttpClient};
use crate::secret::SecretString;
use http::Method;
use serde::Deserialize;
use std::time::Duration;

const AUTH_LIMIT: usize = 256 * 1024;

/// A token granted by login or renewal.
#[derive(Debug)]
pub struct AuthGrant {
    /// Empty on a renewal that keeps the current token value.
    pub client_token: SecretString,
    pub lease: Duration,
    pub renewable: bool,
}

#[derive(Deserialize)]
struct AuthEnvelope {
    auth: Option<AuthData>,
}

#[derive(Deserialize)]
struct AuthData {
    #[serde(default)]
    client_token: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

/// The auth endpoints over the shared HTTPS client.
#[derive(Clone)]
pub struct AuthApi {
    http: HttpClient,
}

impl AuthApi {
    pub fn new(http: HttpClient) -> Self {
        Self { http }
    }

    /// `POST /v1/<mount>/login` with `{"role", "jwt"}`; no token header.
    pub async fn jwt_login(
        &self,
        mount: &str,
        role: &str,
        jwt: &SecretString,
        timeout: Duration,
    ) -> Result<AuthGrant, OpenBaoError> {
        let op = Operation::JwtLogin;
        let body = zeroize::Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({ "role": role, "jwt": jwt.expose() }))
                .unwrap_or_default(),
        );
        self.post_login(op, mount, body.to_vec(), timeout).await
    }

    /// `POST /v1/<mount>/login` with `{"name"}` (omitted when empty); the
    /// client certificate is this client's TLS identity.
    pub async fn cert_login(
        &self,
        mount: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<AuthGrant, OpenBaoError> {
        let op = Operation::CertLogin;
        let body = if name.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::json!({ "name": name })
        };
        self.post_login(
            op,
            mount,
            serde_json::to_vec(&body).unwrap_or_default(),
            timeout,
        )
        .await
    }

    /// `POST /v1/<mount>/login` without a token; the answer must carry a grant.
    async fn post_login(
        &self,
        op: Operation,
        mount: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<AuthGrant, OpenBaoError> {
        let answer = self
            .http
            .send(
                Call {
                    op,
                    method: Method::POST,
                    path: &format!("{mount}/login"),
                    token: None,
                    body: Some(body),
                    limit: AUTH_LIMIT,
                },
                timeout,
            )
            .await?;
        grant(op, &answer.body, true)
    }

    /// `POST /v1/auth/token/renew-self` with `{"increment": "<N>s"}`.
    pub async fn renew_self(
        &self,
        token: &SecretString,
        increment: Duration,
        timeout: Duration,
    ) -> Result<AuthGrant, OpenBaoError> {
        let op = Operation::TokenRenewSelf;
        let seconds = increment
            .as_secs()
            .saturating_add(u64::from(increment.subsec_nanos() > 0));
        let body =
            serde_json::to_vec(&serde_json::json!({ "increment": format!("{}s", seconds.max(1)) }))
                .unwrap_or_default();
        let answer = self
            .http
            .send(
                Call {
                    op,
                    method: Method::POST,
                    path: "auth/token/renew-self",
                    token: Some(token),
                    body: Some(body),
                    limit: AUTH_LIMIT,
                },
                timeout,
            )
            .await?;
        grant(op, &answer.body, false)
    }
}

fn grant(op: Operation, body: &[u8], token_required: bool) -> Result<AuthGrant, OpenBaoError> {
    let invalid = || OpenBaoError::new(op, ErrorClass::InvalidResponse);
    let envelope: AuthEnvelope = serde_json::from_slice(body).map_err(|_| invalid())?;
    let data = envelope.auth.ok_or_else(invalid)?;
    if token_required && data.client_token.is_empty() {
        return Err(invalid());
    }
    Ok(AuthGrant {
        client_token: SecretString::new(data.client_token),
        lease: Duration::from_secs(data.lease_duration),
        renewable: data.renewable,
    })
}
