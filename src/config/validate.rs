//! Validation of a decoded configuration and its narrowing into [`Config`].
//!
//! Problems are collected in the reference's order (spec §1.5): required
//! fields, per-field values, cross-field relationships, then socket policy.
//! Filesystem checks are separate (see `files`). Value checks skip empty
//! values so a missing field is reported once, as "is required".

use std::path::PathBuf;
use std::time::Duration;

use super::error::Problem;
use super::model::{
    AuthConfig, AuthMethod, BootstrapConfig, CertConfig, Config, DebugCorrelationConfig, JwtConfig,
    JwtSource, KeyIdScope, LogFormat, LogLevel, LoggingConfig, OAuth2Config, OpenBaoConfig,
    Pkcs11Config, RotationConfig, ServerConfig, StateConfig, StatusConfig, TransitConfig,
};
use super::raw::{DEFAULT_CONFIG_VERSION, RawAuth, RawCert, RawConfig, RawJwt, RawLogging};
use super::rules;

/// Upper bound of each per-method concurrency limit.
const MAX_CONCURRENT_REQUESTS: i64 = 1024;
/// Debug correlation is a temporary incident aid; it may not stay on for long.
const MAX_DEBUG_CORRELATION_TTL: i64 = 3_600_000_000_000;
const MAX_INCIDENT_ID_BYTES: usize = 64;
const SOCKET_DISALLOWED_MODE: u32 = 0o117;

pub const SPIFFE_GATED_MESSAGE: &str = "spiffe is unavailable until the supported OpenBao version can derive certificate identity aliases from URI SANs";

/// Accumulates problems with the small helpers every rule needs.
#[derive(Default)]
struct Checks {
    problems: Vec<Problem>,
}

impl Checks {
    fn add(&mut self, field: &str, message: &str) {
        self.problems.push(Problem::new(field, message));
    }

    /// Blank means empty or whitespace only.
    fn required(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.add(field, "is required");
        }
    }

    /// Applies a rule to a set value; empty values are the `required` check's business.
    fn rule(&mut self, field: &str, value: &str, rule: fn(&str) -> Result<(), &'static str>) {
        if !value.is_empty()
            && let Err(message) = rule(value)
        {
            self.add(field, message);
        }
    }

    fn absolute(&mut self, field: &str, value: &str) {
        if !value.is_empty() && !value.starts_with('/') {
            self.add(field, "must be an absolute path");
        }
    }

    fn positive(&mut self, field: &str, nanos: i64) {
        if nanos <= 0 {
            self.add(field, "must be positive");
        }
    }

    fn non_negative(&mut self, field: &str, nanos: i64) {
        if nanos < 0 {
            self.add(field, "must not be negative");
        }
    }

    fn between(&mut self, field: &str, value: i64, min: i64, max: i64, message: &str) {
        if value < min || value > max {
            self.add(field, message);
        }
    }
}

/// Every rule of spec §1.2–§1.3 except filesystem checks, in reporting order.
pub fn validate(raw: &RawConfig) -> Vec<Problem> {
    let mut c = Checks::default();
    match raw.config_version.as_deref() {
        None => c.add("configVersion", "is required"),
        Some(v) if v != DEFAULT_CONFIG_VERSION => c.add("configVersion", "must be v1alpha1"),
        Some(_) => {}
    }
    required_fields(&mut c, raw);
    values(&mut c, raw);
    relationships(&mut c, raw);
    socket_policy(&mut c, raw);
    c.problems
}

fn required_fields(c: &mut Checks, raw: &RawConfig) {
    c.required("server.socketPath", &raw.server.socket_path);
    c.required("server.socketMode", &raw.server.socket_mode);
    c.required("server.socketGroup", &raw.server.socket_group);
    c.required("openbao.address", &raw.openbao.address);
    c.required("openbao.caCertFile", &raw.openbao.ca_cert_file);
    c.required("openbao.tlsServerName", &raw.openbao.tls_server_name);
    c.required("openbao.instanceId", &raw.openbao.instance_id);
    c.required("auth.method", &raw.auth.method);
    match raw.auth.method.as_str() {
        "jwt" => {
            let jwt = &raw.auth.jwt;
            c.required("auth.jwt.mountPath", &jwt.mount_path);
            c.required("auth.jwt.role", &jwt.role);
            c.required("auth.jwt.source", &jwt.source);
            if jwt.source == "file" {
                c.required("auth.jwt.jwtFile", &jwt.jwt_file);
            }
        }
        "cert" => {
            let cert = &raw.auth.cert;
            c.required("auth.cert.mountPath", &cert.mount_path);
            c.required("auth.cert.source", &cert.source);
            if cert.source == "pkcs11" {
                let p = &cert.pkcs11;
                c.required("auth.cert.pkcs11.certificateFile", &p.certificate_file);
                c.required("auth.cert.pkcs11.modulePath", &p.module_path);
                c.required("auth.cert.pkcs11.tokenLabel", &p.token_label);
                c.required("auth.cert.pkcs11.keyLabel", &p.key_label);
                c.required("auth.cert.pkcs11.pinFile", &p.pin_file);
            }
        }
        _ => {}
    }
    c.required("transit.mountPath", &raw.transit.mount_path);
    c.required("transit.keyName", &raw.transit.key_name);
    c.required(
        "transit.keyIdScope.providerName",
        &raw.transit.provider_name,
    );
    c.required("transit.keyIdScope.clusterId", &raw.transit.cluster_id);
    c.required(
        "transit.keyIdScope.transitMountId",
        &raw.transit.transit_mount_id,
    );
    c.required(
        "transit.keyIdScope.keyLineageId",
        &raw.transit.key_lineage_id,
    );
    // The reference has no required check here, but every command that uses
    // the config needs the state file; an empty path would only fail later.
    c.required("state.path", &raw.state_path);
}

fn values(c: &mut Checks, raw: &RawConfig) {
    let server = &raw.server;
    c.rule(
        "openbao.address",
        &raw.openbao.address,
        rules::check_openbao_address,
    );
    c.rule(
        "openbao.namespace",
        &raw.openbao.namespace,
        rules::check_namespace,
    );
    c.absolute("openbao.caCertFile", &raw.openbao.ca_cert_file);
    for (field, address) in [
        ("server.metricsAddress", &server.metrics_address),
        ("server.healthAddress", &server.health_address),
    ] {
        // Blank disables the listener.
        if !address.trim().is_empty()
            && let Err(message) = rules::parse_host_port(address)
        {
            c.add(field, message);
        }
    }
    let limit_message = "must be between 1 and 1024";
    for (field, value) in [
        ("server.maxConcurrentStatus", server.max_concurrent_status),
        ("server.maxConcurrentEncrypt", server.max_concurrent_encrypt),
        ("server.maxConcurrentDecrypt", server.max_concurrent_decrypt),
    ] {
        c.between(field, value, 1, MAX_CONCURRENT_REQUESTS, limit_message);
    }
    c.rule(
        "server.socketGroup",
        &server.socket_group,
        rules::check_socket_group,
    );

    auth_values(c, &raw.auth);

    let t = &raw.transit;
    c.rule("transit.mountPath", &t.mount_path, rules::check_mount_path);
    c.rule(
        "transit.keyName",
        &t.key_name,
        rules::check_transit_key_name,
    );
    c.rule(
        "transit.keyIdScope.providerName",
        &t.provider_name,
        rules::check_identifier,
    );
    c.rule(
        "transit.keyIdScope.clusterId",
        &t.cluster_id,
        rules::check_identifier,
    );
    c.rule(
        "transit.keyIdScope.transitMountId",
        &t.transit_mount_id,
        rules::check_identifier,
    );
    c.rule(
        "transit.keyIdScope.keyLineageId",
        &t.key_lineage_id,
        rules::check_identifier,
    );
    c.rule(
        "openbao.instanceId",
        &raw.openbao.instance_id,
        rules::check_identifier,
    );

    if raw.rotation.mode != "observed" {
        c.add("rotation.mode", "only observed is supported");
    }
    c.positive("openbao.timeout", raw.openbao.timeout);
    c.positive(
        "auth.loginBeforeTokenExpiry",
        raw.auth.login_before_token_expiry,
    );
    c.positive(
        "auth.tokenRenewalIncrement",
        raw.auth.token_renewal_increment,
    );
    c.non_negative("auth.loginTimeout", raw.auth.login_timeout);
    c.non_negative("bootstrap.graceTimeout", raw.bootstrap.grace_timeout);
    c.positive("bootstrap.retryInterval", raw.bootstrap.retry_interval);
    c.positive("status.probeInterval", raw.status.probe_interval);
    c.positive("status.deepProbeInterval", raw.status.deep_probe_interval);
    c.positive("status.statusMaxStaleness", raw.status.status_max_staleness);
    c.absolute("state.path", &raw.state_path);
    c.positive("rotation.activationDelay", raw.rotation.activation_delay);
    let count = raw.rotation.require_stable_observation_count;
    if count <= 0 {
        c.add("rotation.requireStableObservationCount", "must be positive");
    } else if u32::try_from(count).is_err() {
        c.add("rotation.requireStableObservationCount", "is too large");
    }
    logging_values(c, &raw.logging);
}

fn auth_values(c: &mut Checks, auth: &RawAuth) {
    match auth.method.as_str() {
        "jwt" => jwt_values(c, &auth.jwt),
        "cert" => cert_values(c, &auth.cert),
        "" => {}
        _ => c.add("auth.method", "must be one of jwt or cert"),
    }
}

fn jwt_values(c: &mut Checks, jwt: &RawJwt) {
    match jwt.source.as_str() {
        "file" => {
            c.absolute("auth.jwt.jwtFile", &jwt.jwt_file);
            if !jwt.oauth2.is_zero() {
                c.add("auth.jwt.oauth2", "must be omitted for source file");
            }
        }
        "oauth2" => {
            if !jwt.jwt_file.is_empty() {
                c.add("auth.jwt.jwtFile", "must be omitted for source oauth2");
            }
            oauth2_values(c, jwt);
        }
        // A blank source is already reported as required.
        s if s.trim().is_empty() => {}
        _ => c.add("auth.jwt.source", "must be file or oauth2"),
    }
    c.rule(
        "auth.jwt.mountPath",
        &jwt.mount_path,
        rules::check_mount_path,
    );
    c.rule("auth.jwt.role", &jwt.role, rules::check_identifier);
    c.rule(
        "auth.jwt.expectedIssuer",
        &jwt.expected_issuer,
        rules::check_identifier,
    );
    c.rule(
        "auth.jwt.expectedSubject",
        &jwt.expected_subject,
        rules::check_identifier,
    );
    for audience in &jwt.expected_audience {
        if audience.is_empty() {
            c.add("auth.jwt.expectedAudience", "must not contain empty values");
        } else {
            c.rule(
                "auth.jwt.expectedAudience",
                audience,
                rules::check_identifier,
            );
        }
    }
    c.positive("auth.jwt.minRemainingTtl", jwt.min_remaining_ttl);
    c.non_negative("auth.jwt.clockSkewLeeway", jwt.clock_skew_leeway);
}

/// The reference reports only the first OAuth problem, on `auth.jwt.oauth2`;
/// here each sub-field is reported on its own so all are fixed in one go.
fn oauth2_values(c: &mut Checks, jwt: &RawJwt) {
    let o = &jwt.oauth2;
    c.required("auth.jwt.oauth2.tokenUrl", &o.token_url);
    c.rule(
        "auth.jwt.oauth2.tokenUrl",
        &o.token_url,
        rules::check_token_url,
    );
    c.required("auth.jwt.oauth2.clientId", &o.client_id);
    c.rule(
        "auth.jwt.oauth2.clientId",
        &o.client_id,
        rules::check_no_control,
    );
    c.required("auth.jwt.oauth2.clientSecretFile", &o.client_secret_file);
    c.absolute("auth.jwt.oauth2.clientSecretFile", &o.client_secret_file);
    c.required("auth.jwt.oauth2.authMethod", &o.auth_method);
    if !o.auth_method.trim().is_empty()
        && o.auth_method != "client_secret_basic"
        && o.auth_method != "client_secret_post"
    {
        c.add(
            "auth.jwt.oauth2.authMethod",
            "must be client_secret_basic or client_secret_post",
        );
    }
    if o.scopes.iter().any(|s| rules::check_scope(s).is_err()) {
        c.add("auth.jwt.oauth2.scopes", rules::SCOPE_MESSAGE);
    }
    c.rule(
        "auth.jwt.oauth2.audience",
        &o.audience,
        rules::check_no_control,
    );
    if o.resources
        .iter()
        .any(|r| rules::check_resource_uri(r).is_err())
    {
        c.add("auth.jwt.oauth2.resources", rules::RESOURCE_MESSAGE);
    }
    c.absolute("auth.jwt.oauth2.caCertFile", &o.ca_cert_file);
    // A token minted by a third party must be pinned to who issued it and for whom.
    c.required("auth.jwt.expectedIssuer", &jwt.expected_issuer);
    if jwt.expected_audience.is_empty() {
        c.add(
            "auth.jwt.expectedAudience",
            "must contain at least one audience for source oauth2",
        );
    }
}

fn cert_values(c: &mut Checks, cert: &RawCert) {
    c.rule(
        "auth.cert.mountPath",
        &cert.mount_path,
        rules::check_mount_path,
    );
    c.rule("auth.cert.name", &cert.name, rules::check_identifier);
    c.positive("auth.cert.minRemainingTtl", cert.min_remaining_ttl);
    c.non_negative("auth.cert.clockSkewLeeway", cert.clock_skew_leeway);
    match cert.source.as_str() {
        "pkcs11" => {
            let p = &cert.pkcs11;
            c.absolute("auth.cert.pkcs11.certificateFile", &p.certificate_file);
            c.absolute("auth.cert.pkcs11.modulePath", &p.module_path);
            c.rule(
                "auth.cert.pkcs11.tokenLabel",
                &p.token_label,
                rules::check_identifier,
            );
            c.rule(
                "auth.cert.pkcs11.keyLabel",
                &p.key_label,
                rules::check_identifier,
            );
            c.absolute("auth.cert.pkcs11.pinFile", &p.pin_file);
            if p.max_sessions < 2 {
                c.add("auth.cert.pkcs11.maxSessions", "must be at least 2");
            } else if u32::try_from(p.max_sessions).is_err() {
                c.add("auth.cert.pkcs11.maxSessions", "is too large");
            }
        }
        "spiffe" => c.add("auth.cert.source", SPIFFE_GATED_MESSAGE),
        s if s.trim().is_empty() => {}
        _ => c.add("auth.cert.source", "must be pkcs11"),
    }
}

fn logging_values(c: &mut Checks, logging: &RawLogging) {
    if parse_level(&logging.level).is_none() {
        c.add(
            "logging.level",
            "must be one of debug, info, warn, or error",
        );
    }
    if parse_format(&logging.format).is_none() {
        c.add("logging.format", "must be json or text");
    }
    if !logging.debug_correlation_enabled {
        return;
    }
    if logging.level != "debug" {
        c.add(
            "logging.debugCorrelation.enabled",
            "requires logging.level debug",
        );
    }
    if !logging.log_openbao_request_ids {
        c.add(
            "logging.logOpenBaoRequestIDs",
            "must be true when debug correlation is enabled",
        );
    }
    let ttl = logging.debug_correlation_ttl;
    c.positive("logging.debugCorrelation.ttl", ttl);
    if ttl > MAX_DEBUG_CORRELATION_TTL {
        c.add("logging.debugCorrelation.ttl", "must not exceed 1h");
    }
    let incident = &logging.debug_correlation_incident_id;
    let field = "logging.debugCorrelation.incidentId";
    if incident.is_empty() {
        c.add(field, "is required when debug correlation is enabled");
        return;
    }
    // Bytes, not characters, as the reference counts them.
    if incident.len() > MAX_INCIDENT_ID_BYTES {
        c.add(field, "must be at most 64 characters");
    }
    c.rule(field, incident, rules::check_identifier);
}

fn relationships(c: &mut Checks, raw: &RawConfig) {
    let status = &raw.status;
    if status.probe_interval > 0
        && status.status_max_staleness > 0
        && status.probe_interval >= status.status_max_staleness
    {
        c.add(
            "status.probeInterval",
            "must be shorter than status.statusMaxStaleness",
        );
    }
    let auth = &raw.auth;
    if auth.token_renewal_increment > 0
        && auth.login_before_token_expiry > 0
        && auth.token_renewal_increment <= auth.login_before_token_expiry
    {
        c.add(
            "auth.tokenRenewalIncrement",
            "must exceed auth.loginBeforeTokenExpiry",
        );
    }
    if rules::same_fixed_listener(&raw.server.health_address, &raw.server.metrics_address) {
        c.add(
            "server.metricsAddress",
            "must differ from server.healthAddress for a fixed port",
        );
    }
}

fn socket_policy(c: &mut Checks, raw: &RawConfig) {
    let path = &raw.server.socket_path;
    if !path.trim().is_empty() {
        if !path.starts_with('/') {
            c.add("server.socketPath", "must be an absolute Unix socket path");
        }
        if !rules::socket_dir_allowed(path) {
            c.add(
                "server.socketPath",
                "must be under an approved runtime socket directory",
            );
        }
    }
    let mode = &raw.server.socket_mode;
    if !mode.trim().is_empty() {
        match rules::parse_socket_mode(mode) {
            Err(message) => c.add("server.socketMode", message),
            Ok(bits) if bits & SOCKET_DISALLOWED_MODE != 0 => c.add(
                "server.socketMode",
                "must not allow world access or execute bits",
            ),
            Ok(_) => {}
        }
    }
}

fn parse_level(level: &str) -> Option<LogLevel> {
    match level {
        "debug" => Some(LogLevel::Debug),
        "info" => Some(LogLevel::Info),
        "warn" => Some(LogLevel::Warn),
        "error" => Some(LogLevel::Error),
        _ => None,
    }
}

fn parse_format(format: &str) -> Option<LogFormat> {
    match format {
        "json" => Some(LogFormat::Json),
        "text" => Some(LogFormat::Text),
        _ => None,
    }
}

/// Durations in sections that validation skipped (e.g. `auth.cert` under
/// `method: jwt`) may still be negative; they are unused, so zero is fine.
fn duration(nanos: i64) -> Duration {
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// Counts validated to be in range convert exactly; unvalidated ones (in an
/// unused section) fall back to zero.
fn count(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// Narrows a configuration for which [`validate`] returned no problems.
///
/// The fallbacks below are reachable only for fields validation ignores
/// (the auth section that is not selected), never for fields in use.
pub fn build(raw: RawConfig) -> Config {
    let RawConfig {
        config_version,
        server,
        openbao,
        auth,
        transit,
        bootstrap,
        status,
        state_path,
        rotation,
        logging,
    } = raw;
    let blank_is_disabled = |address: String| {
        if address.trim().is_empty() {
            String::new()
        } else {
            address
        }
    };
    let jwt_source = if auth.jwt.source == "oauth2" {
        JwtSource::OAuth2
    } else {
        JwtSource::File
    };
    let oauth2 = auth.jwt.oauth2;
    let oauth2 = (jwt_source == JwtSource::OAuth2).then(|| OAuth2Config {
        token_url: oauth2.token_url,
        client_id: oauth2.client_id,
        client_secret_file: PathBuf::from(oauth2.client_secret_file),
        auth_method: oauth2.auth_method,
        scopes: oauth2.scopes,
        audience: oauth2.audience,
        resources: oauth2.resources,
        ca_cert_file: (!oauth2.ca_cert_file.is_empty()).then(|| PathBuf::from(oauth2.ca_cert_file)),
    });
    let pkcs11 = auth.cert.pkcs11;
    Config {
        config_version: config_version.unwrap_or_else(|| DEFAULT_CONFIG_VERSION.to_owned()),
        server: ServerConfig {
            socket_path: PathBuf::from(server.socket_path),
            socket_mode: rules::parse_socket_mode(&server.socket_mode).unwrap_or(0),
            socket_group: server.socket_group,
            metrics_address: blank_is_disabled(server.metrics_address),
            health_address: blank_is_disabled(server.health_address),
            max_concurrent_status: count(server.max_concurrent_status),
            max_concurrent_encrypt: count(server.max_concurrent_encrypt),
            max_concurrent_decrypt: count(server.max_concurrent_decrypt),
        },
        openbao: OpenBaoConfig {
            address: openbao.address,
            namespace: openbao.namespace,
            ca_cert_file: PathBuf::from(openbao.ca_cert_file),
            tls_server_name: openbao.tls_server_name,
            timeout: duration(openbao.timeout),
            instance_id: openbao.instance_id,
        },
        auth: AuthConfig {
            method: if auth.method == "cert" {
                AuthMethod::Cert
            } else {
                AuthMethod::Jwt
            },
            login_before_token_expiry: duration(auth.login_before_token_expiry),
            token_renewal_increment: duration(auth.token_renewal_increment),
            login_timeout: duration(auth.login_timeout),
            jwt: JwtConfig {
                source: jwt_source,
                mount_path: auth.jwt.mount_path,
                role: auth.jwt.role,
                jwt_file: PathBuf::from(auth.jwt.jwt_file),
                min_remaining_ttl: duration(auth.jwt.min_remaining_ttl),
                clock_skew_leeway: duration(auth.jwt.clock_skew_leeway),
                expected_issuer: auth.jwt.expected_issuer,
                expected_audience: auth.jwt.expected_audience,
                expected_subject: auth.jwt.expected_subject,
                oauth2,
            },
            cert: CertConfig {
                mount_path: auth.cert.mount_path,
                name: auth.cert.name,
                min_remaining_ttl: duration(auth.cert.min_remaining_ttl),
                clock_skew_leeway: duration(auth.cert.clock_skew_leeway),
                source: auth.cert.source,
                pkcs11: Pkcs11Config {
                    certificate_file: PathBuf::from(pkcs11.certificate_file),
                    module_path: PathBuf::from(pkcs11.module_path),
                    token_label: pkcs11.token_label,
                    key_label: pkcs11.key_label,
                    pin_file: PathBuf::from(pkcs11.pin_file),
                    max_sessions: count(pkcs11.max_sessions),
                },
            },
        },
        transit: TransitConfig {
            mount_path: transit.mount_path,
            key_name: transit.key_name,
            key_id_scope: KeyIdScope {
                provider_name: transit.provider_name,
                cluster_id: transit.cluster_id,
                transit_mount_id: transit.transit_mount_id,
                key_lineage_id: transit.key_lineage_id,
            },
        },
        bootstrap: BootstrapConfig {
            grace_timeout: duration(bootstrap.grace_timeout),
            retry_interval: duration(bootstrap.retry_interval),
        },
        status: StatusConfig {
            probe_interval: duration(status.probe_interval),
            deep_probe_interval: duration(status.deep_probe_interval),
            status_max_staleness: duration(status.status_max_staleness),
        },
        state: StateConfig {
            path: PathBuf::from(state_path),
        },
        rotation: RotationConfig {
            mode: rotation.mode,
            activation_delay: duration(rotation.activation_delay),
            require_stable_observation_count: count(rotation.require_stable_observation_count),
            reject_version_rollback: rotation.reject_version_rollback,
        },
        logging: LoggingConfig {
            level: parse_level(&logging.level).unwrap_or(LogLevel::Info),
            format: parse_format(&logging.format).unwrap_or(LogFormat::Json),
            log_openbao_request_ids: logging.log_openbao_request_ids,
            debug_correlation: DebugCorrelationConfig {
                enabled: logging.debug_correlation_enabled,
                ttl: duration(logging.debug_correlation_ttl),
                incident_id: logging.debug_correlation_incident_id,
            },
        },
    }
}
