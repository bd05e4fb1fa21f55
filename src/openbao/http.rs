//! HTTPS transport to OpenBao.
//!
//! Trust is pinned to the configured CA bundle (no system roots), the TLS server
//! name is the configured one regardless of the address host, TLS 1.2 is the
//! floor, proxies and redirects are never followed (hyper does neither), every
//! call has a whole-request deadline and response bodies are capped. A name
//! that resolves to several nodes is served by whichever answers
//! ([`super::failover`]).

use super::error::{ErrorClass, OpenBaoError, Operation};
use super::failover::{DnsError, Failover};
use crate::observe::metrics::Metrics;
use crate::regular_file::ReadError;
use crate::secret::SecretString;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{HttpConnector, HttpInfo, capture_connection};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Error bodies are only classified, never shown, so a small cap suffices.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS inputs for the OpenBao connection.
pub struct TlsSettings<'a> {
    pub ca_cert_file: &'a Path,
    pub server_name: &'a str,
}

/// Why a client could not be built (config-time problems; no values shown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildError {
    CaUnreadable,
    CaNotRegular,
    CaEmpty,
    BadServerName,
    BadAddress,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CaUnreadable => "openbao.caCertFile: must contain PEM certificates",
            Self::CaNotRegular => "openbao.caCertFile: must be a regular file",
            Self::CaEmpty => "openbao.caCertFile: contains no certificate",
            Self::BadServerName => "openbao.tlsServerName: not a valid TLS server name",
            Self::BadAddress => "openbao.address: must be an https URL",
        })
    }
}

impl std::error::Error for BuildError {}

/// A pooled HTTPS client bound to one OpenBao endpoint.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Failover, Full<Bytes>>,
    /// The client's connector, told which node a request timed out on.
    failover: Failover,
    /// `scheme://authority` plus any path prefix, without a trailing slash.
    base: Arc<str>,
    namespace: Option<HeaderValue>,
    metrics: Option<Arc<Metrics>>,
}

/// One request to OpenBao.
#[derive(Clone)]
pub struct Call<'a> {
    pub op: Operation,
    pub method: Method,
    /// API path below `/v1/`.
    pub path: &'a str,
    pub token: Option<&'a SecretString>,
    pub body: Option<Vec<u8>>,
    /// Cap on a successful body; error bodies have their own small cap.
    pub limit: usize,
}

/// A successful (2xx) answer.
pub struct Answer {
    pub body: Bytes,
}

impl HttpClient {
    pub fn new(address: &str, namespace: &str, tls: &TlsSettings<'_>) -> Result<Self, BuildError> {
        Self::build(address, namespace, tls, None)
    }

    /// A client that presents the certificate `resolver` picks on every
    /// handshake (the cert-auth client; Transit's client presents none).
    pub fn with_client_cert(
        address: &str,
        namespace: &str,
        tls: &TlsSettings<'_>,
        resolver: Arc<dyn rustls::client::ResolvesClientCert>,
    ) -> Result<Self, BuildError> {
        Self::build(address, namespace, tls, Some(resolver))
    }

    fn build(
        address: &str,
        namespace: &str,
        tls: &TlsSettings<'_>,
        client_cert: Option<Arc<dyn rustls::client::ResolvesClientCert>>,
    ) -> Result<Self, BuildError> {
        let uri: Uri = address.parse().map_err(|_| BuildError::BadAddress)?;
        if uri.scheme_str() != Some("https") || uri.authority().is_none() || uri.query().is_some() {
            return Err(BuildError::BadAddress);
        }
        let mut roots = rustls::RootCertStore::empty();
        // Read through the non-blocking reader: commands that skip the host
        // checks (rotation-plan, benchmark) must not hang on a FIFO here.
        let pem = crate::regular_file::read(tls.ca_cert_file).map_err(|e| match e {
            ReadError::NotRegular => BuildError::CaNotRegular,
            ReadError::Unreadable | ReadError::TooLarge => BuildError::CaUnreadable,
        })?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(cert.map_err(|_| BuildError::CaUnreadable)?)
                .map_err(|_| BuildError::CaUnreadable)?;
        }
        if roots.is_empty() {
            return Err(BuildError::CaEmpty);
        }
        let server_name = rustls::pki_types::ServerName::try_from(tls.server_name.to_owned())
            .map_err(|_| BuildError::BadServerName)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|_| BuildError::BadServerName)?
            .with_root_certificates(roots);
        let config = match client_cert {
            Some(resolver) => builder.with_client_cert_resolver(resolver),
            None => builder.with_no_client_auth(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_keepalive(Some(Duration::from_secs(30)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(server_name))
            .enable_http1()
            .wrap_connector(http);
        let failover = Failover::new(https);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(16)
            .build(failover.clone());
        let namespace = if namespace.is_empty() {
            None
        } else {
            Some(HeaderValue::from_str(namespace).map_err(|_| BuildError::BadAddress)?)
        };
        Ok(Self {
            client,
            failover,
            base: address.trim_end_matches('/').into(),
            namespace,
            metrics: None,
        })
    }

    /// Counts every call in `metrics` (set before the client is cloned).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sends one request and returns the 2xx body (at most `limit` bytes).
    ///
    /// The whole exchange, body included, is bounded by `timeout`.
    pub async fn send(&self, call: Call<'_>, timeout: Duration) -> Result<Answer, OpenBaoError> {
        let op = call.op;
        let started = std::time::Instant::now();
        let result = self.exchange(call, timeout).await;
        let status = result.as_ref().map_or_else(|e| e.class.as_str(), |_| "ok");
        let elapsed = started.elapsed();
        if let Some(metrics) = &self.metrics {
            metrics.openbao_request(op.label(), status, elapsed);
        }
        // Parsing the body again for its request id is only worth it when the
        // debug event will actually be written.
        let request_id = if tracing::enabled!(tracing::Level::DEBUG) {
            result.as_ref().ok().and_then(request_id)
        } else {
            None
        };
        tracing::debug!(
            operation = "openbao.request",
            openbao_operation = op.name(),
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            openbao_request_id = request_id.as_deref(),
            "openbao.request"
        );
        result
    }

    async fn exchange(&self, call: Call<'_>, timeout: Duration) -> Result<Answer, OpenBaoError> {
        let Call {
            op,
            method,
            path,
            token,
            body,
            limit,
        } = call;
        let fail = |class| OpenBaoError::new(op, class);
        let uri = format!("{}/v1/{}", self.base, escape_path(path));
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token.expose())
                .map_err(|_| fail(ErrorClass::AuthUnavailable))?;
            value.set_sensitive(true);
            request = request.header("X-Vault-Token", value);
        }
        if let Some(ns) = &self.namespace {
            request = request.header("X-Vault-Namespace", ns.clone());
        }
        if body.is_some() {
            request = request.header("Content-Type", "application/json");
        }
        let mut request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| fail(ErrorClass::InvalidRequest))?;
        let connection = capture_connection(&mut request);
        match tokio::time::timeout(timeout, self.respond(op, request, limit)).await {
            Ok(result) => result,
            Err(_) => {
                // A node that accepted the request and never answered is hung:
                // new connections should try the other addresses first.
                let remote = connection.connection_metadata().as_ref().and_then(|c| {
                    let mut extensions = http::Extensions::new();
                    c.get_extras(&mut extensions);
                    extensions.get::<HttpInfo>().map(HttpInfo::remote_addr)
                });
                if let Some(addr) = remote {
                    self.failover.avoid(addr);
                }
                Err(fail(ErrorClass::Timeout))
            }
        }
    }

    async fn respond(
        &self,
        op: Operation,
        request: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<Answer, OpenBaoError> {
        let fail = |class| OpenBaoError::new(op, class);
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| fail(classify_transport(&e)))?;
        let status = response.status().as_u16();
        let ok = response.status().is_success();
        let cap = if ok { limit } else { ERROR_BODY_LIMIT };
        let body = Limited::new(response.into_body(), cap)
            .collect()
            .await
            .map_err(|_| OpenBaoError {
                op,
                class: ErrorClass::Unavailable,
                status: Some(status),
            })?
            .to_bytes();
        if ok {
            return Ok(Answer { body });
        }
        let text = String::from_utf8_lossy(&body);
        Err(OpenBaoError {
            op,
            class: ErrorClass::from_response(status, &text),
            status: Some(status),
        })
    }
}

/// The response's `request_id`, when logging them is enabled and it is sane.
fn request_id(answer: &Answer) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct WithId {
        #[serde(default)]
        request_id: String,
    }
    if !crate::observe::logging::request_ids_enabled() {
        return None;
    }
    let id = serde_json::from_slice::<WithId>(&answer.body)
        .ok()?
        .request_id;
    crate::observe::logging::usable_request_id(&id).then_some(id)
}

/// Percent-encodes everything outside the unreserved set, keeping `/` as the
/// segment separator. Mount paths and key names are validated in config, so
/// this is defence in depth against path tricks.
fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Maps a transport failure to a class by walking its cause chain.
///
/// `io::Error::source()` skips the error it wraps, so wrapped io errors are
/// unpacked with `get_ref()` as well.
fn classify_transport(error: &(dyn std::error::Error + 'static)) -> ErrorClass {
    let mut pending: Vec<&(dyn std::error::Error + 'static)> = vec![error];
    let mut class = ErrorClass::Unavailable;
    while let Some(e) = pending.pop() {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return ErrorClass::TlsFailed;
        }
        if e.downcast_ref::<DnsError>().is_some() {
            return ErrorClass::DnsFailed;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                pending.push(inner);
            }
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::NotConnected
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::TimedOut
            ) {
                class = ErrorClass::ConnectionFailed;
            }
        }
        if let Some(source) = e.source() {
            pending.push(source);
        }
    }
    class
}

#[cfg(test)]
mod tests {
    use super::{BuildError, HttpClient, TlsSettings, escape_path};

    #[test]
    fn a_fifo_or_device_as_ca_file_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("bao-kms-http-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("ca.pem");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for ca in [fifo.as_path(), std::path::Path::new("/dev/zero")] {
            let tls = TlsSettings {
                ca_cert_file: ca,
                server_name: "localhost",
            };
            let built = HttpClient::new("https://127.0.0.1:8200", "", &tls);
            assert_eq!(built.err(), Some(BuildError::CaNotRegular));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn path_escaping_keeps_segments_and_escapes_the_rest() {
        assert_eq!(
            escape_path("transit/keys/k8s-etcd"),
            "transit/keys/k8s-etcd"
        );
        assert_eq!(escape_path("a b/%2e?x#"), "a%20b/%252e%3Fx%23");
    }
}
