//! The OAuth 2.0 client-credentials JWT source (`auth.jwt.source: oauth2`,
//! `config-cli-auth.md` §3.3).
//!
//! Before every OpenBao login the client secret file is re-read (so a secret
//! rotated by rename is used at once), one `client_credentials` grant is
//! POSTed to the token endpoint, the answer and the access token are checked,
//! and the access token is the JWT of OpenBao's JWT login. Renewal is
//! `renew-self` only: the issuer is never contacted for it, so an issuer
//! outage leaves a renewable OpenBao token in use.
//!
//! The grant is one plain POST on the hyper/rustls stack the OpenBao client
//! already uses (see docs/decisions.md): hyper follows no redirects (a 3xx is
//! a rejection), bodies and headers are capped, and errors are bounded
//! classes that never carry the secret, the token or the server's text.
//! Unlike the OpenBao client it honours `HTTPS_PROXY`/`NO_PROXY` (an
//! `http://` proxy, reached with CONNECT), as the reference does.

use super::jwt::{JwtChecks, JwtError, validate_claims};
use super::login::Authenticator;
use super::token::AuthError;
use crate::clock::unix_now;
use crate::config::OAuth2Config;
use crate::openbao::{AuthApi, AuthGrant, OpenBaoError};
use crate::secret::SecretString;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::fmt;
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// Token responses are small JSON documents (§3.3).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// hyper's read buffer bounds the response head, so this caps the headers.
const MAX_HEADER_BYTES: usize = 64 * 1024;
const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// Group write/execute and any world access, plus owner execute (§1.4).
const SECRET_UNSAFE_MODE_BITS: u32 = 0o137;
/// Where Debian, Fedora and Alpine keep the system CA bundle; the first one
/// that holds certificates is the "system roots" (`SSL_CERT_FILE` wins).
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why the client secret file could not be used (§3.3 `ReadClientSecret`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialReason {
    FileMissing,
    FileUnreadable,
    SymlinkUnsupported,
    RegularFileRequired,
    UnsafePermissions,
    FileChanged,
    FileTooLarge,
    InvalidContent,
}

impl CredentialReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::FileMissing => "file_missing",
            Self::FileUnreadable => "file_unreadable",
            Self::SymlinkUnsupported => "symlink_unsupported",
            Self::RegularFileRequired => "regular_file_required",
            Self::UnsafePermissions => "unsafe_permissions",
            Self::FileChanged => "file_changed",
            Self::FileTooLarge => "file_too_large",
            Self::InvalidContent => "invalid_content",
        }
    }
}

/// Why no access token was obtained. Messages name the class only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuth2Error {
    /// The token URL or the CA bundle cannot make a client (restart to fix).
    Config,
    Credential(CredentialReason),
    /// 429 or 5xx: the issuer is overloaded or down.
    Unavailable,
    /// Any other non-200, redirects included.
    Rejected,
    Response,
    /// Transport failure or timeout; the cause is not printed.
    Request,
}

impl OAuth2Error {
    /// Bounded status label for logs and metrics (§3.1 observed statuses).
    pub fn status(self) -> &'static str {
        match self {
            Self::Config => "error",
            Self::Credential(_) => "oauth2_credential",
            Self::Unavailable => "oauth2_unavailable",
            Self::Rejected => "oauth2_rejected",
            Self::Response => "oauth2_response",
            Self::Request => "oauth2_request",
        }
    }
}

impl fmt::Display for OAuth2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config => f.write_str("oauth2 config invalid"),
            Self::Credential(reason) => write!(
                f,
                "oauth2 client credential unavailable: {}",
                reason.as_str()
            ),
            Self::Unavailable => f.write_str("oauth2 token endpoint unavailable"),
            Self::Rejected => f.write_str("oauth2 token request rejected"),
            Self::Response => f.write_str("oauth2 token response invalid"),
            Self::Request => f.write_str("oauth2 token request failed"),
        }
    }
}

impl std::error::Error for OAuth2Error {}

/// Reads the client secret: no symlink, a regular file with a safe mode, the
/// same file after opening, ≤ 64 KiB, one trailing `\n` then `\r` stripped,
/// non-empty and free of NUL/CR/LF.
pub fn read_client_secret(path: &Path) -> Result<SecretString, CredentialReason> {
    use CredentialReason as R;
    if !path.is_absolute() {
        return Err(R::FileMissing);
    }
    let check = |meta: &std::fs::Metadata| {
        if meta.file_type().is_symlink() {
            Err(R::SymlinkUnsupported)
        } else if !meta.file_type().is_file() {
            Err(R::RegularFileRequired)
        } else if meta.mode() & SECRET_UNSAFE_MODE_BITS != 0 {
            Err(R::UnsafePermissions)
        } else {
            Ok(())
        }
    };
    let before = std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => R::FileMissing,
        _ => R::FileUnreadable,
    })?;
    check(&before)?;
    let file = File::options()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|e| {
            // ELOOP: a symlink was swapped in after the check.
            if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
                R::FileChanged
            } else {
                R::FileUnreadable
            }
        })?;
    let opened = file.metadata().map_err(|_| R::FileUnreadable)?;
    let after = std::fs::symlink_metadata(path).map_err(|_| R::FileChanged)?;
    let same = |a: &std::fs::Metadata, b: &std::fs::Metadata| {
        a.dev() == b.dev() && a.ino() == b.ino() && check(b).is_ok()
    };
    if !same(&before, &opened) || !same(&opened, &after) {
        return Err(R::FileChanged);
    }
    let mut raw = Zeroizing::new(Vec::new());
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|_| R::FileUnreadable)?;
    if raw.len() as u64 > MAX_SECRET_BYTES {
        return Err(R::FileTooLarge);
    }
    let mut bytes: &[u8] = &raw;
    bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if bytes.is_empty() || bytes.iter().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
        return Err(R::InvalidContent);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| R::InvalidContent)?;
    Ok(SecretString::new(text.to_owned()))
}

/// How the client authenticates at the token endpoint; never both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    Basic,
    Post,
}

/// A token endpoint client built once from `auth.jwt.oauth2` (endpoint and
/// CA changes need a restart; the secret does not).
struct TokenEndpoint {
    transport: Transport,
    uri: Uri,
    client_id: String,
    auth: ClientAuth,
    /// The form fields that do not change between grants, already encoded.
    fixed_form: String,
}

/// The connection to the token endpoint, chosen once from the environment.
enum Transport {
    Direct(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
    /// A CONNECT tunnel through the `HTTPS_PROXY` that applies to `tokenUrl`.
    Proxied(Client<HttpsConnector<Tunnel<HttpConnector>>, Full<Bytes>>),
}

impl Transport {
    async fn request(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        match self {
            Self::Direct(client) => client.request(request).await,
            Self::Proxied(client) => client.request(request).await,
        }
    }
}

/// A pooled HTTPS-only client over `connector` with the §3.3 limits.
fn https_client<T>(
    tls: rustls::ClientConfig,
    connector: T,
) -> Client<HttpsConnector<T>, Full<Bytes>>
where
    HttpsConnector<T>: Connect + Clone + Send + Sync + 'static,
{
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(2)
        .http1_max_buf_size(MAX_HEADER_BYTES)
        .build(https)
}

/// A checked access token and its `expires_in`, if the issuer sent one.
pub(crate) struct Grant {
    pub(crate) access_token: SecretString,
    pub(crate) expires_in: Option<u64>,
}

impl TokenEndpoint {
    fn new(config: &OAuth2Config, timeout: Duration) -> Result<Self, OAuth2Error> {
        let uri: Uri = config.token_url.parse().map_err(|_| OAuth2Error::Config)?;
        if uri.scheme_str() != Some("https") || uri.host().is_none_or(str::is_empty) {
            return Err(OAuth2Error::Config);
        }
        let auth = match config.auth_method.as_str() {
            "client_secret_basic" => ClientAuth::Basic,
            "client_secret_post" => ClientAuth::Post,
            _ => return Err(OAuth2Error::Config),
        };
        let roots = match &config.ca_cert_file {
            Some(path) => roots_from(path)?,
            None => system_roots()?,
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|_| OAuth2Error::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        http.set_keepalive(Some(Duration::from_secs(30)));
        // HTTPS_PROXY / https_proxy and NO_PROXY, read once: the token URL
        // is fixed, so is the route to it.
        let transport = match Matcher::from_env().intercept(&uri) {
            Some(proxy) => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), http);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Transport::Proxied(https_client(tls, tunnel))
            }
            None => Transport::Direct(https_client(tls, http)),
        };
        let mut fixed = vec![("grant_type", "client_credentials".to_owned())];
        if !config.scopes.is_empty() {
            fixed.push(("scope", config.scopes.join(" ")));
        }
        if !config.audience.is_empty() {
            fixed.push(("audience", config.audience.clone()));
        }
        for resource in &config.resources {
            fixed.push(("resource", resource.clone()));
        }
        Ok(Self {
            transport,
            uri,
            client_id: config.client_id.clone(),
            auth,
            fixed_form: encode_form(fixed.iter().map(|(k, v)| (*k, v.as_str()))),
        })
    }

    /// One grant; the caller bounds it with the login timeout.
    async fn grant(&self, secret: &SecretString) -> Result<Grant, OAuth2Error> {
        let mut body = Zeroizing::new(self.fixed_form.clone());
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json");
        match self.auth {
            ClientAuth::Post => {
                let credentials = Zeroizing::new(encode_form([
                    ("client_id", self.client_id.as_str()),
                    ("client_secret", secret.expose()),
                ]));
                body.push('&');
                body.push_str(&credentials);
            }
            ClientAuth::Basic => {
                // RFC 6749 §2.3.1: both parts form-encoded before base64.
                let pair = Zeroizing::new(format!(
                    "{}:{}",
                    form_escape(&self.client_id),
                    form_escape(secret.expose())
                ));
                let header = Zeroizing::new(format!("Basic {}", STANDARD.encode(pair.as_bytes())));
                let mut value = HeaderValue::from_str(&header)
                    .map_err(|_| OAuth2Error::Credential(CredentialReason::InvalidContent))?;
                value.set_sensitive(true);
                request = request.header("Authorization", value);
            }
        }
        let request = request
            .body(Full::new(Bytes::from(body.as_bytes().to_vec())))
            .map_err(|_| OAuth2Error::Config)?;
        let response = self
            .transport
            .request(request)
            .await
            .map_err(|_| OAuth2Error::Request)?;
        let status = response.status().as_u16();
        if status == 429 || status >= 500 {
            return Err(OAuth2Error::Unavailable);
        }
        if status != 200 {
            return Err(OAuth2Error::Rejected);
        }
        let json = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(OAuth2Error::Response);
        }
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| OAuth2Error::Response)?
            .to_bytes();
        parse_response(&body)
    }
}

/// The §3.3 response checks; unknown fields are ignored.
pub(crate) fn parse_response(body: &[u8]) -> Result<Grant, OAuth2Error> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: Option<String>,
        token_type: Option<String>,
        expires_in: Option<serde_json::Value>,
    }
    let mut answer: Answer = serde_json::from_slice(body).map_err(|_| OAuth2Error::Response)?;
    let access_token = SecretString::new(answer.access_token.take().unwrap_or_default());
    if access_token.is_empty()
        || !answer
            .token_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
    {
        return Err(OAuth2Error::Response);
    }
    let expires_in = match answer.expires_in {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .filter(|s| *s > 0)
                .ok_or(OAuth2Error::Response)?,
        ),
    };
    Ok(Grant {
        access_token,
        expires_in,
    })
}

/// A compact JWT: three non-empty parts (the signature included), no whitespace.
fn is_compact_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| !p.is_empty())
        && !token.bytes().any(|b| b.is_ascii_whitespace())
}

/// Checks the access token before it is sent to OpenBao and returns the
/// lifetime the token manager may believe: `min(exp, expires_in)`.
fn check_access_token(
    grant: &Grant,
    checks: &JwtChecks,
    requested_at: i64,
    now: i64,
) -> Result<Duration, JwtError> {
    if !is_compact_jwt(grant.access_token.expose()) {
        return Err(JwtError::Malformed);
    }
    let by_expires_in = match grant.expires_in {
        Some(seconds) => {
            let ends = requested_at.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX));
            let left = u64::try_from(ends.saturating_sub(now)).unwrap_or(0);
            if left <= checks.min_remaining_ttl.as_secs() {
                return Err(JwtError::NearExpiry);
            }
            Some(Duration::from_secs(left))
        }
        None => None,
    };
    let by_exp = validate_claims(&grant.access_token, checks, now)?;
    Ok(by_expires_in.map_or(by_exp, |d| d.min(by_exp)))
}

/// Trust for the token endpoint: the configured bundle.
fn roots_from(path: &Path) -> Result<rustls::RootCertStore, OAuth2Error> {
    let pem = crate::regular_file::read(path).map_err(|_| OAuth2Error::Config)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|_| OAuth2Error::Config)?)
            .map_err(|_| OAuth2Error::Config)?;
    }
    if roots.is_empty() {
        return Err(OAuth2Error::Config);
    }
    Ok(roots)
}

/// The host's CA bundle (`SSL_CERT_FILE`, else the first well-known path),
/// read with the same parser, so no extra crate is needed for system roots.
fn system_roots() -> Result<rustls::RootCertStore, OAuth2Error> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find_map(|path| roots_from(&path).ok())
        .ok_or(OAuth2Error::Config)
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn encode_form<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| format!("{}={}", form_escape(k), form_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The WHATWG form encoding: space as `+`, `*-._` and alphanumerics kept.
fn form_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b' ' => out.push('+'),
            b'*' | b'-' | b'.' | b'_' => out.push(b as char),
            _ if b.is_ascii_alphanumeric() => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// OpenBao JWT login with a fresh client-credentials access token.
pub(super) struct OAuth2Login {
    pub api: AuthApi,
    pub mount: String,
    pub role: String,
    endpoint: Result<TokenEndpoint, OAuth2Error>,
    secret_file: PathBuf,
    checks: JwtChecks,
    timeout: Duration,
}

impl OAuth2Login {
    /// A config problem in the endpoint is kept and reported by every login,
    /// so `serve` and doctor show it as `oauth2 config invalid`.
    pub fn new(
        api: AuthApi,
        mount: String,
        role: String,
        config: &OAuth2Config,
        checks: JwtChecks,
        timeout: Duration,
    ) -> Self {
        Self {
            api,
            mount,
            role,
            endpoint: TokenEndpoint::new(config, timeout),
            secret_file: config.client_secret_file.clone(),
            checks,
            timeout,
        }
    }
}

#[async_trait::async_trait]
impl Authenticator for OAuth2Login {
    async fn login(&self) -> Result<AuthGrant, AuthError> {
        let endpoint = self.endpoint.as_ref().map_err(|e| AuthError::OAuth2(*e))?;
        let secret = read_client_secret(&self.secret_file)
            .map_err(|r| AuthError::OAuth2(OAuth2Error::Credential(r)))?;
        let requested_at = unix_now();
        let grant = tokio::time::timeout(self.timeout, endpoint.grant(&secret))
            .await
            .map_err(|_| AuthError::OAuth2(OAuth2Error::Request))?
            .map_err(AuthError::OAuth2)?;
        drop(secret);
        let ttl = check_access_token(&grant, &self.checks, requested_at, unix_now())
            .map_err(AuthError::Jwt)?;
        tracing::debug!(
            operation = "oauth2.token",
            status = "ok",
            jwt_ttl_seconds = ttl.as_secs(),
            "oauth2.token"
        );
        self.api
            .jwt_login(&self.mount, &self.role, &grant.access_token, self.timeout)
            .await
            .map_err(AuthError::OpenBao)
    }

    async fn renew(
        &self,
        token: &SecretString,
        increment: Duration,
    ) -> Result<AuthGrant, OpenBaoError> {
        // Never the issuer: an outage there must not cost a renewable token.
        self.api.renew_self(token, increment, self.timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use std::os::unix::fs::PermissionsExt;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("oauth2-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn file(&self, name: &str, contents: &[u8], mode: u32) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn client_secret_file_rules() {
        use CredentialReason as R;
        let dir = Dir::new("secret");
        let good = dir.file("s", b"s3cret\r\n", 0o640);
        assert_eq!(read_client_secret(&good).unwrap().expose(), "s3cret");
        for (contents, mode, expected) in [
            (&b"s3cret"[..], 0o644, R::UnsafePermissions),
            (b"s3cret", 0o740, R::UnsafePermissions),
            (b"s3cret", 0o660, R::UnsafePermissions),
            (b"\n", 0o600, R::InvalidContent),
            (b"a\nb", 0o600, R::InvalidContent),
            (b"a\0b", 0o600, R::InvalidContent),
            (b"a\n\n", 0o600, R::InvalidContent),
        ] {
            let path = dir.file("t", contents, mode);
            assert_eq!(read_client_secret(&path).map(|_| ()), Err(expected));
        }
        let big = dir.file("big", &vec![b'x'; 64 * 1024 + 1], 0o600);
        assert_eq!(read_client_secret(&big).map(|_| ()), Err(R::FileTooLarge));
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert_eq!(
            read_client_secret(&link).map(|_| ()),
            Err(R::SymlinkUnsupported)
        );
        assert_eq!(
            read_client_secret(&dir.0.join("missing")).map(|_| ()),
            Err(R::FileMissing)
        );
        assert_eq!(
            read_client_secret(&dir.0).map(|_| ()),
            Err(R::RegularFileRequired)
        );
        let shown = OAuth2Error::Credential(R::FileMissing).to_string();
        assert_eq!(shown, "oauth2 client credential unavailable: file_missing");
    }

    #[test]
    fn response_checks() {
        let ok = parse_response(
            br#"{"access_token":"a.b.c","token_type":"bearer","expires_in":300,"x":1}"#,
        )
        .unwrap();
        assert_eq!(ok.expires_in, Some(300));
        assert!(
            parse_response(br#"{"access_token":"a.b.c","token_type":"Bearer"}"#)
                .unwrap()
                .expires_in
                .is_none()
        );
        for bad in [
            &br#"{"access_token":"","token_type":"Bearer"}"#[..],
            br#"{"access_token":"a.b.c","token_type":"mac"}"#,
            br#"{"access_token":"a.b.c"}"#,
            br#"{"access_token":"a.b.c","token_type":"Bearer","expires_in":0}"#,
            br#"{"access_token":"a.b.c","token_type":"Bearer","expires_in":1.5}"#,
            br#"{"access_token":"a.b.c","token_type":"Bearer","expires_in":"300"}"#,
            b"not json",
        ] {
            assert_eq!(parse_response(bad).err(), Some(OAuth2Error::Response));
        }
    }

    fn token(exp: i64) -> SecretString {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let claims =
            serde_json::json!({"iss": "https://issuer", "aud": "bao-kms-provider", "exp": exp});
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        SecretString::new(format!("{header}.{payload}.c2ln"))
    }

    #[test]
    fn access_token_lifetime_is_the_shorter_of_exp_and_expires_in() {
        let checks = JwtChecks {
            expected_issuer: "https://issuer".into(),
            expected_audience: vec!["bao-kms-provider".into()],
            min_remaining_ttl: Duration::from_secs(120),
            ..JwtChecks::default()
        };
        let now = 1_800_000_000;
        let grant = |expires_in, exp| Grant {
            access_token: token(exp),
            expires_in,
        };
        let check = |g: Grant| check_access_token(&g, &checks, now - 1, now);
        assert_eq!(
            check(grant(Some(300), now + 3600)),
            Ok(Duration::from_secs(299))
        );
        assert_eq!(
            check(grant(Some(3600), now + 600)),
            Ok(Duration::from_secs(600))
        );
        assert_eq!(check(grant(None, now + 600)), Ok(Duration::from_secs(600)));
        assert_eq!(
            check(grant(Some(121), now + 3600)),
            Err(JwtError::NearExpiry)
        );
        let opaque = Grant {
            access_token: SecretString::new("opaque-token".into()),
            expires_in: None,
        };
        assert_eq!(check(opaque), Err(JwtError::Malformed));
        let unsigned = Grant {
            access_token: SecretString::new(format!(
                "{}.",
                token(now + 600).expose().rsplit_once('.').unwrap().0
            )),
            expires_in: None,
        };
        assert_eq!(check(unsigned), Err(JwtError::Malformed));
    }

    #[test]
    fn form_encoding_follows_rfc_6749() {
        assert_eq!(form_escape("a b+c/é:*"), "a+b%2Bc%2F%C3%A9%3A*");
        assert_eq!(
            encode_form([("scope", "x y"), ("resource", "https://r/")]),
            "scope=x+y&resource=https%3A%2F%2Fr%2F"
        );
    }
}
