//! The configuration as written, with defaults filled in, before validation.
//!
//! Values keep the loose types the file can express (strings, signed
//! nanoseconds, `i64`) so validation can say *why* a value is wrong (negative,
//! out of range) before it is narrowed into the typed [`super::Config`]. The
//! decoder below is also the schema: every key it reads is a known key, and
//! anything else in the file is rejected by the walker.

use serde_norway::Mapping;

use super::yaml::{Section, Walk};

/// Nanoseconds per second, for readable defaults.
const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

pub const DEFAULT_CONFIG_VERSION: &str = "v1alpha1";
pub const DEFAULT_SOCKET_PATH: &str = "/run/openbao-kms/kms.sock";
pub const DEFAULT_SOCKET_MODE: &str = "0660";
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:8081";
pub const DEFAULT_HEALTH_ADDRESS: &str = "127.0.0.1:8082";
pub const DEFAULT_STATE_PATH: &str = "/var/lib/openbao-kms/state/key-registry.json";

#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    /// `None` when the file did not set it; the reference then refuses the file.
    pub config_version: Option<String>,
    pub server: RawServer,
    pub openbao: RawOpenBao,
    pub auth: RawAuth,
    pub transit: RawTransit,
    pub bootstrap: RawBootstrap,
    pub status: RawStatus,
    pub state_path: String,
    pub rotation: RawRotation,
    pub logging: RawLogging,
}

#[derive(Debug, Clone, Default)]
pub struct RawServer {
    pub socket_path: String,
    pub socket_mode: String,
    pub socket_group: String,
    pub metrics_address: String,
    pub health_address: String,
    pub max_concurrent_status: i64,
    pub max_concurrent_encrypt: i64,
    pub max_concurrent_decrypt: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RawOpenBao {
    pub address: String,
    pub namespace: String,
    pub ca_cert_file: String,
    pub tls_server_name: String,
    pub timeout: i64,
    pub instance_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct RawAuth {
    pub method: String,
    pub login_before_token_expiry: i64,
    pub token_renewal_increment: i64,
    pub login_timeout: i64,
    pub jwt: RawJwt,
    pub cert: RawCert,
}

#[derive(Debug, Clone, Default)]
pub struct RawJwt {
    pub source: String,
    pub mount_path: String,
    pub role: String,
    pub jwt_file: String,
    pub min_remaining_ttl: i64,
    pub clock_skew_leeway: i64,
    pub expected_issuer: String,
    pub expected_audience: Vec<String>,
    pub expected_subject: String,
    pub oauth2: RawOAuth2,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawOAuth2 {
    pub token_url: String,
    pub client_id: String,
    pub client_secret_file: String,
    pub auth_method: String,
    pub scopes: Vec<String>,
    pub audience: String,
    pub resources: Vec<String>,
    pub ca_cert_file: String,
}

impl RawOAuth2 {
    /// Nothing set at all: what "omitted" means for source `file`.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Default)]
pub struct RawCert {
    pub mount_path: String,
    pub name: String,
    pub min_remaining_ttl: i64,
    pub clock_skew_leeway: i64,
    pub source: String,
    pub pkcs11: RawPkcs11,
}

#[derive(Debug, Clone, Default)]
pub struct RawPkcs11 {
    pub certificate_file: String,
    pub module_path: String,
    pub token_label: String,
    pub key_label: String,
    pub pin_file: String,
    pub max_sessions: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RawTransit {
    pub mount_path: String,
    pub key_name: String,
    pub provider_name: String,
    pub cluster_id: String,
    pub transit_mount_id: String,
    pub key_lineage_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct RawBootstrap {
    pub grace_timeout: i64,
    pub retry_interval: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RawStatus {
    pub probe_interval: i64,
    pub deep_probe_interval: i64,
    pub status_max_staleness: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RawRotation {
    pub mode: String,
    pub activation_delay: i64,
    pub require_stable_observation_count: i64,
    pub reject_version_rollback: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RawLogging {
    pub level: String,
    pub format: String,
    pub log_openbao_request_ids: bool,
    pub debug_correlation_enabled: bool,
    pub debug_correlation_ttl: i64,
    pub debug_correlation_incident_id: String,
}

/// Reads every known key from the top-level mapping (`None` for an empty
/// document), applies built-in defaults, and infers the legacy JWT source.
/// Type errors and unknown keys are recorded in `w`.
pub fn decode(doc: Option<&Mapping>, w: &mut Walk) -> RawConfig {
    let mut root = Section::root(doc);
    let text = |s: Option<String>, default: &str| s.unwrap_or_else(|| default.to_owned());

    let config_version = root.string(w, "configVersion");

    let mut s = root.section(w, "server");
    let server = RawServer {
        socket_path: text(s.string(w, "socketPath"), DEFAULT_SOCKET_PATH),
        socket_mode: text(s.string(w, "socketMode"), DEFAULT_SOCKET_MODE),
        socket_group: text(s.string(w, "socketGroup"), ""),
        metrics_address: text(s.string(w, "metricsAddress"), DEFAULT_METRICS_ADDRESS),
        health_address: text(s.string(w, "healthAddress"), DEFAULT_HEALTH_ADDRESS),
        max_concurrent_status: s.int(w, "maxConcurrentStatus").unwrap_or(16),
        max_concurrent_encrypt: s.int(w, "maxConcurrentEncrypt").unwrap_or(32),
        max_concurrent_decrypt: s.int(w, "maxConcurrentDecrypt").unwrap_or(64),
    };
    s.finish(w);

    let mut s = root.section(w, "openbao");
    let openbao = RawOpenBao {
        address: text(s.string(w, "address"), ""),
        namespace: text(s.string(w, "namespace"), ""),
        ca_cert_file: text(s.string(w, "caCertFile"), ""),
        tls_server_name: text(s.string(w, "tlsServerName"), ""),
        timeout: s.duration(w, "timeout").unwrap_or(2 * SECOND),
        instance_id: text(s.string(w, "instanceId"), ""),
    };
    s.finish(w);

    let mut a = root.section(w, "auth");
    let method = text(a.string(w, "method"), "jwt");
    let login_before_token_expiry = a
        .duration(w, "loginBeforeTokenExpiry")
        .unwrap_or(5 * MINUTE);
    let token_renewal_increment = a.duration(w, "tokenRenewalIncrement").unwrap_or(HOUR);
    let login_timeout = a.duration(w, "loginTimeout").unwrap_or(0);

    let mut j = a.section(w, "jwt");
    let mut source = j.string(w, "source");
    let mount_path = text(j.string(w, "mountPath"), "");
    let role = text(j.string(w, "role"), "");
    let jwt_file = text(j.string(w, "jwtFile"), "");
    let min_remaining_ttl = j.duration(w, "minRemainingTtl").unwrap_or(2 * MINUTE);
    let clock_skew_leeway = j.duration(w, "clockSkewLeeway").unwrap_or(30 * SECOND);
    let expected_issuer = text(j.string(w, "expectedIssuer"), "");
    let expected_audience = j.strings(w, "expectedAudience").unwrap_or_default();
    let expected_subject = text(j.string(w, "expectedSubject"), "");
    let mut o = j.section(w, "oauth2");
    let oauth2 = RawOAuth2 {
        token_url: text(o.string(w, "tokenUrl"), ""),
        client_id: text(o.string(w, "clientId"), ""),
        client_secret_file: text(o.string(w, "clientSecretFile"), ""),
        auth_method: text(o.string(w, "authMethod"), ""),
        scopes: o.strings(w, "scopes").unwrap_or_default(),
        audience: text(o.string(w, "audience"), ""),
        resources: o.strings(w, "resources").unwrap_or_default(),
        ca_cert_file: text(o.string(w, "caCertFile"), ""),
    };
    o.finish(w);
    j.finish(w);

    // Before OAuth support, jwtFile alone selected the file source. Any
    // explicit source (even null or empty) or any oauth2 key disables the
    // inference, so an OAuth config can never silently fall back to a file.
    if method == "jwt"
        && !jwt_file.is_empty()
        && !w.is_present("auth.jwt.source")
        && !w.is_present("auth.jwt.oauth2")
    {
        source = Some("file".to_owned());
    }
    let jwt = RawJwt {
        source: source.unwrap_or_default(),
        mount_path,
        role,
        jwt_file,
        min_remaining_ttl,
        clock_skew_leeway,
        expected_issuer,
        expected_audience,
        expected_subject,
        oauth2,
    };

    let mut c = a.section(w, "cert");
    let cert_mount_path = text(c.string(w, "mountPath"), "");
    let cert_name = text(c.string(w, "name"), "");
    let cert_min_ttl = c.duration(w, "minRemainingTtl").unwrap_or(24 * HOUR);
    let cert_leeway = c.duration(w, "clockSkewLeeway").unwrap_or(30 * SECOND);
    let cert_source = text(c.string(w, "source"), "");
    let mut p = c.section(w, "pkcs11");
    let pkcs11 = RawPkcs11 {
        certificate_file: text(p.string(w, "certificateFile"), ""),
        module_path: text(p.string(w, "modulePath"), ""),
        token_label: text(p.string(w, "tokenLabel"), ""),
        key_label: text(p.string(w, "keyLabel"), ""),
        pin_file: text(p.string(w, "pinFile"), ""),
        max_sessions: p.int(w, "maxSessions").unwrap_or(0),
    };
    p.finish(w);
    // SPIFFE keys are part of the reference schema (so strict decoding accepts
    // them) but the source is gated off; they are type-checked and dropped.
    let mut sp = c.section(w, "spiffe");
    for key in ["workloadAPISocket", "spiffeID", "trustDomain"] {
        sp.string(w, key);
    }
    sp.finish(w);
    c.finish(w);
    let cert = RawCert {
        mount_path: cert_mount_path,
        name: cert_name,
        min_remaining_ttl: cert_min_ttl,
        clock_skew_leeway: cert_leeway,
        source: cert_source,
        pkcs11,
    };
    a.finish(w);
    let auth = RawAuth {
        method,
        login_before_token_expiry,
        token_renewal_increment,
        login_timeout,
        jwt,
        cert,
    };

    let mut t = root.section(w, "transit");
    let transit_mount_path = text(t.string(w, "mountPath"), "");
    let key_name = text(t.string(w, "keyName"), "");
    let mut k = t.section(w, "keyIdScope");
    let transit = RawTransit {
        mount_path: transit_mount_path,
        key_name,
        provider_name: text(k.string(w, "providerName"), ""),
        cluster_id: text(k.string(w, "clusterId"), ""),
        transit_mount_id: text(k.string(w, "transitMountId"), ""),
        key_lineage_id: text(k.string(w, "keyLineageId"), ""),
    };
    k.finish(w);
    t.finish(w);

    let mut s = root.section(w, "bootstrap");
    let bootstrap = RawBootstrap {
        grace_timeout: s.duration(w, "graceTimeout").unwrap_or(60 * SECOND),
        retry_interval: s.duration(w, "retryInterval").unwrap_or(5 * SECOND),
    };
    s.finish(w);

    let mut s = root.section(w, "status");
    let status = RawStatus {
        probe_interval: s.duration(w, "probeInterval").unwrap_or(30 * SECOND),
        deep_probe_interval: s.duration(w, "deepProbeInterval").unwrap_or(5 * MINUTE),
        status_max_staleness: s.duration(w, "statusMaxStaleness").unwrap_or(2 * MINUTE),
    };
    s.finish(w);

    let mut s = root.section(w, "state");
    let state_path = text(s.string(w, "path"), DEFAULT_STATE_PATH);
    s.finish(w);

    let mut s = root.section(w, "rotation");
    let rotation = RawRotation {
        mode: text(s.string(w, "mode"), "observed"),
        activation_delay: s.duration(w, "activationDelay").unwrap_or(2 * MINUTE),
        require_stable_observation_count: s.int(w, "requireStableObservationCount").unwrap_or(3),
        reject_version_rollback: s.boolean(w, "rejectVersionRollback").unwrap_or(true),
    };
    s.finish(w);

    let mut s = root.section(w, "logging");
    let level = text(s.string(w, "level"), "info");
    let format = text(s.string(w, "format"), "json");
    let log_openbao_request_ids = s.boolean(w, "logOpenBaoRequestIDs").unwrap_or(true);
    let mut d = s.section(w, "debugCorrelation");
    let logging = RawLogging {
        level,
        format,
        log_openbao_request_ids,
        debug_correlation_enabled: d.boolean(w, "enabled").unwrap_or(false),
        debug_correlation_ttl: d.duration(w, "ttl").unwrap_or(15 * MINUTE),
        debug_correlation_incident_id: text(d.string(w, "incidentId"), ""),
    };
    d.finish(w);
    s.finish(w);

    root.finish(w);

    RawConfig {
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
    }
}
