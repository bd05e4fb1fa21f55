//! Turns a validated [`Config`] into the runtime parts: the identity scope,
//! the OpenBao client, token manager and Transit client, the registry keeper
//! and the build metadata.
//!
//! `serve` and the CLI commands (doctor, rotation, benchmark) build their
//! parts here, so a diagnostic logs in and reads state exactly as the
//! provider would.

use crate::auth::cert::{
    CertChecks, CertError, CertLogin, CertLoginSettings, Pkcs11Settings, open_token,
};
use crate::auth::{JwtChecks, TokenManager, TokenSettings};
use crate::config::{AuthMethod, Config, JwtSource};
use crate::identity::Scope;
use crate::observe::metrics::{BuildInfo, Metrics};
use crate::openbao::{AuthApi, BuildError, HttpClient, TlsSettings, Transit};
use crate::registry::{Keeper, KeeperSettings, RotationRules, StateError, StatePaths};
use std::fmt;
use std::sync::Arc;

/// Why the parts could not be built from an accepted config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssembleError {
    /// The PKCS#11 token, PIN file or key pair of `auth.method: cert` is unusable.
    Cert(CertError),
    /// The CA bundle, server name or address cannot make a TLS client.
    Tls(BuildError),
    /// The registry state is locked, unsafe or refused.
    State(StateError),
}

impl fmt::Display for AssembleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cert(e) => write!(f, "auth.cert.pkcs11: {e}"),
            Self::Tls(e) => e.fmt(f),
            Self::State(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AssembleError {}

/// The identity scope every key_id and AAD is bound to.
pub fn scope_of(config: &Config) -> Scope {
    let ids = &config.transit.key_id_scope;
    Scope {
        provider_name: ids.provider_name.clone(),
        cluster_id: ids.cluster_id.clone(),
        openbao_instance_id: config.openbao.instance_id.clone(),
        openbao_namespace: config.openbao.namespace.clone(),
        transit_mount_id: ids.transit_mount_id.clone(),
        transit_key_lineage_id: ids.key_lineage_id.clone(),
    }
}

/// The pinned-CA HTTPS client for `openbao.*`.
pub fn http_client(config: &Config) -> Result<HttpClient, AssembleError> {
    let tls = TlsSettings {
        ca_cert_file: &config.openbao.ca_cert_file,
        server_name: &config.openbao.tls_server_name,
    };
    HttpClient::new(&config.openbao.address, &config.openbao.namespace, &tls)
        .map_err(AssembleError::Tls)
}

/// A token manager that logs in over `http` with the configured JWT role.
pub fn token_manager(config: &Config, http: &HttpClient) -> Arc<TokenManager> {
    TokenManager::new(AuthApi::new(http.clone()), token_settings(config))
}

/// Opens the PKCS#11 token (PIN file read once, here) and a token manager
/// that logs in with its certificate over an auth-only mTLS client.
///
/// Blocks (dlopen, C_Login) once at start-up, before anything is served.
pub fn cert_token_manager(
    config: &Config,
    metrics: Option<&Arc<Metrics>>,
) -> Result<Arc<TokenManager>, AssembleError> {
    let token = open_token(&pkcs11_settings(config)).map_err(AssembleError::Cert)?;
    let login = CertLogin::new(
        Arc::new(token),
        cert_login_settings(config),
        metrics.cloned(),
    );
    Ok(TokenManager::with_cert(login, &token_settings(config)))
}

/// Where the PKCS#11 module, token, key and PIN are (`auth.cert.pkcs11.*`).
pub fn pkcs11_settings(config: &Config) -> Pkcs11Settings {
    let p = &config.auth.cert.pkcs11;
    Pkcs11Settings {
        module_path: p.module_path.clone(),
        token_label: p.token_label.clone(),
        key_label: p.key_label.clone(),
        pin_file: p.pin_file.clone(),
        max_sessions: p.max_sessions,
        session_wait: config.effective_login_timeout(),
    }
}

/// The cert login's endpoint, role, certificate file and checks (`auth.cert.*`).
pub fn cert_login_settings(config: &Config) -> CertLoginSettings {
    let cert = &config.auth.cert;
    CertLoginSettings {
        address: config.openbao.address.clone(),
        namespace: config.openbao.namespace.clone(),
        ca_cert_file: config.openbao.ca_cert_file.clone(),
        server_name: config.openbao.tls_server_name.clone(),
        mount: cert.mount_path.clone(),
        name: cert.name.clone(),
        certificate_file: cert.pkcs11.certificate_file.clone(),
        checks: CertChecks {
            min_remaining_ttl: cert.min_remaining_ttl,
            clock_skew_leeway: cert.clock_skew_leeway,
        },
        timeout: config.effective_login_timeout(),
    }
}

/// The Transit client for the configured mount and key.
pub fn transit(config: &Config, http: HttpClient, tokens: Arc<TokenManager>) -> Arc<Transit> {
    Arc::new(Transit::new(
        http,
        tokens,
        &config.transit.mount_path,
        &config.transit.key_name,
        config.openbao.timeout,
    ))
}

/// Builds the Transit client with its token manager from the config.
pub fn build_transit(config: &Config) -> Result<Arc<Transit>, AssembleError> {
    build_transit_with(config, None)
}

/// [`build_transit`], counting OpenBao calls, logins and renewals in `metrics`.
pub fn build_transit_with(
    config: &Config,
    metrics: Option<&Arc<Metrics>>,
) -> Result<Arc<Transit>, AssembleError> {
    let mut http = http_client(config)?;
    if let Some(metrics) = metrics {
        http = http.with_metrics(Arc::clone(metrics));
    }
    let tokens = match config.auth.method {
        AuthMethod::Cert => cert_token_manager(config, metrics)?,
        AuthMethod::Jwt => token_manager(config, &http),
    };
    if let Some(metrics) = metrics {
        tokens.set_metrics(Arc::clone(metrics));
    }
    Ok(transit(config, http, tokens))
}

/// The token manager's settings for the JWT sources (`auth.*`).
pub fn token_settings(config: &Config) -> TokenSettings {
    let jwt = &config.auth.jwt;
    TokenSettings {
        jwt_mount: jwt.mount_path.clone(),
        jwt_role: jwt.role.clone(),
        jwt_file: jwt.jwt_file.clone(),
        oauth2: match jwt.source {
            JwtSource::OAuth2 => jwt.oauth2.clone(),
            JwtSource::File => None,
        },
        jwt_checks: JwtChecks {
            expected_issuer: jwt.expected_issuer.clone(),
            expected_audience: jwt.expected_audience.clone(),
            expected_subject: jwt.expected_subject.clone(),
            min_remaining_ttl: jwt.min_remaining_ttl,
            clock_skew_leeway: jwt.clock_skew_leeway,
        },
        login_before_expiry: config.auth.login_before_token_expiry,
        renewal_increment: config.auth.token_renewal_increment,
        login_timeout: config.effective_login_timeout(),
    }
}

/// Build metadata for `openbao_kms_build_info`, stamped in at compile time.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: crate::identity::plugin_version().to_owned(),
        commit: option_env!("BAO_KMS_PROVIDER_COMMIT")
            .unwrap_or("unknown")
            .to_owned(),
        build_date: option_env!("BAO_KMS_PROVIDER_BUILD_DATE")
            .unwrap_or("unknown")
            .to_owned(),
        dirty: option_env!("BAO_KMS_PROVIDER_DIRTY")
            .unwrap_or("unknown")
            .to_owned(),
    }
}

/// Locks and loads the registry state at `state.path`.
pub fn open_keeper(config: &Config) -> Result<Keeper, AssembleError> {
    Keeper::open(StatePaths::new(&config.state.path), keeper_settings(config))
        .map_err(AssembleError::State)
}

/// The identity and rotation rules the registry keeper enforces.
pub fn keeper_settings(config: &Config) -> KeeperSettings {
    KeeperSettings {
        fingerprint: config.identity_fingerprint(),
        scope: Arc::new(scope_of(config)),
        rules: RotationRules {
            required_count: u64::from(config.rotation.require_stable_observation_count),
            reject_rollback: config.rotation.reject_version_rollback,
        },
        activation_delay: config.rotation.activation_delay,
    }
}
