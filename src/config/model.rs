//! The typed, validated provider configuration.
//!
//! A value of [`Config`] only comes out of the loader after every rule in
//! spec §1 passed, so consumers can rely on the invariants documented here
//! instead of re-checking. None of these types hold secrets: credentials are
//! referenced by path and read by the auth layer, which is why deriving
//! `Debug` is safe.

use std::path::PathBuf;
use std::time::Duration;

use super::fingerprint::{IdentityFields, identity_fingerprint};

/// The login timeout floor used when `auth.loginTimeout` is `0s` (spec §1.7).
const MIN_DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Config {
    /// Always `v1alpha1`.
    pub config_version: String,
    pub server: ServerConfig,
    pub openbao: OpenBaoConfig,
    pub auth: AuthConfig,
    pub transit: TransitConfig,
    pub bootstrap: BootstrapConfig,
    pub status: StatusConfig,
    pub state: StateConfig,
    pub rotation: RotationConfig,
    pub logging: LoggingConfig,
}

impl Config {
    /// `auth.loginTimeout` when positive, else `max(openbao.timeout, 5s)`.
    pub fn effective_login_timeout(&self) -> Duration {
        if self.auth.login_timeout > Duration::ZERO {
            self.auth.login_timeout
        } else {
            self.openbao.timeout.max(MIN_DEFAULT_LOGIN_TIMEOUT)
        }
    }

    /// The `cfg1.` identity fingerprint binding state to this configuration's
    /// identity-bearing fields (spec §1.6). Validation guarantees they are set.
    pub fn identity_fingerprint(&self) -> String {
        identity_fingerprint(&self.identity_fields())
    }

    /// The identity-bearing fields, borrowed, in fingerprint terms.
    pub fn identity_fields(&self) -> IdentityFields<'_> {
        let scope = &self.transit.key_id_scope;
        IdentityFields {
            provider_name: &scope.provider_name,
            cluster_id: &scope.cluster_id,
            openbao_instance_id: &self.openbao.instance_id,
            openbao_namespace: &self.openbao.namespace,
            transit_mount_id: &scope.transit_mount_id,
            key_lineage_id: &scope.key_lineage_id,
            transit_mount_path: &self.transit.mount_path,
            transit_key_name: &self.transit.key_name,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Absolute; its parent is `/run/openbao-kms` or `/var/run/openbao-kms` or below.
    pub socket_path: PathBuf,
    /// Permission bits (≤ 0o777) with no execute bits and nothing for others.
    pub socket_mode: u32,
    /// A group name, or a decimal GID that fits `i32` when all digits.
    pub socket_group: String,
    /// `host:port`, or empty when the listener is disabled.
    pub metrics_address: String,
    /// `host:port`, or empty when the listener is disabled.
    pub health_address: String,
    /// 1..=1024.
    pub max_concurrent_status: u32,
    /// 1..=1024.
    pub max_concurrent_encrypt: u32,
    /// 1..=1024.
    pub max_concurrent_decrypt: u32,
}

#[derive(Debug, Clone)]
pub struct OpenBaoConfig {
    /// `https://host[:port][/prefix]`, no user info, query or fragment.
    pub address: String,
    /// Empty for the root namespace.
    pub namespace: String,
    pub ca_cert_file: PathBuf,
    pub tls_server_name: String,
    /// Positive.
    pub timeout: Duration,
    pub instance_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Jwt,
    Cert,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::Cert => "cert",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub method: AuthMethod,
    /// Positive.
    pub login_before_token_expiry: Duration,
    /// Strictly greater than `login_before_token_expiry`.
    pub token_renewal_increment: Duration,
    /// Zero means "use [`Config::effective_login_timeout`]".
    pub login_timeout: Duration,
    /// Validated only when `method` is [`AuthMethod::Jwt`].
    pub jwt: JwtConfig,
    /// Validated only when `method` is [`AuthMethod::Cert`].
    pub cert: CertConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtSource {
    File,
    OAuth2,
}

impl JwtSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::OAuth2 => "oauth2",
        }
    }
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub source: JwtSource,
    pub mount_path: String,
    pub role: String,
    /// Set (absolute) for [`JwtSource::File`], empty for [`JwtSource::OAuth2`].
    pub jwt_file: PathBuf,
    pub min_remaining_ttl: Duration,
    pub clock_skew_leeway: Duration,
    /// Empty means "not checked" (source file only; required for OAuth2).
    pub expected_issuer: String,
    /// Empty means "not checked" (source file only; non-empty for OAuth2).
    pub expected_audience: Vec<String>,
    /// Empty means "not checked".
    pub expected_subject: String,
    /// `Some` exactly when `source` is [`JwtSource::OAuth2`].
    pub oauth2: Option<OAuth2Config>,
}

#[derive(Debug, Clone)]
pub struct OAuth2Config {
    /// `https` URL; a fixed query is allowed, user info and fragments are not.
    pub token_url: String,
    pub client_id: String,
    /// Absolute path of the file holding the client secret.
    pub client_secret_file: PathBuf,
    /// `client_secret_basic` or `client_secret_post`.
    pub auth_method: String,
    pub scopes: Vec<String>,
    /// Empty when no `audience` request parameter is sent.
    pub audience: String,
    pub resources: Vec<String>,
    /// `None` means the system roots are trusted for the token endpoint.
    pub ca_cert_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct CertConfig {
    pub mount_path: String,
    /// Empty lets OpenBao try every cert role on the mount.
    pub name: String,
    pub min_remaining_ttl: Duration,
    pub clock_skew_leeway: Duration,
    /// `pkcs11` when `method` is cert.
    pub source: String,
    pub pkcs11: Pkcs11Config,
}

#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    pub certificate_file: PathBuf,
    pub module_path: PathBuf,
    pub token_label: String,
    pub key_label: String,
    pub pin_file: PathBuf,
    /// At least 2 when used: one session stays reserved for login state.
    pub max_sessions: u32,
}

#[derive(Debug, Clone)]
pub struct TransitConfig {
    pub mount_path: String,
    pub key_name: String,
    pub key_id_scope: KeyIdScope,
}

#[derive(Debug, Clone)]
pub struct KeyIdScope {
    pub provider_name: String,
    pub cluster_id: String,
    pub transit_mount_id: String,
    pub key_lineage_id: String,
}

#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    /// Zero means a single startup probe attempt.
    pub grace_timeout: Duration,
    /// Positive.
    pub retry_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct StatusConfig {
    /// Positive and shorter than `status_max_staleness`.
    pub probe_interval: Duration,
    pub deep_probe_interval: Duration,
    pub status_max_staleness: Duration,
}

#[derive(Debug, Clone)]
pub struct StateConfig {
    /// Absolute path of the key registry state file.
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct RotationConfig {
    /// Always `observed`.
    pub mode: String,
    pub activation_delay: Duration,
    pub require_stable_observation_count: u32,
    pub reject_version_rollback: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub level: LogLevel,
    pub format: LogFormat,
    pub log_openbao_request_ids: bool,
    pub debug_correlation: DebugCorrelationConfig,
}

#[derive(Debug, Clone)]
pub struct DebugCorrelationConfig {
    /// When true: level is debug, request IDs are logged, `ttl` is in (0, 1h]
    /// and `incident_id` is a set identifier of at most 64 bytes.
    pub enabled: bool,
    pub ttl: Duration,
    pub incident_id: String,
}
