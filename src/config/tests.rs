//! End-to-end tests of the config loader: sample configs, required fields,
//! strict decoding, overrides, legacy inference, socket policy, filesystem
//! checks, and that error text never repeats a value.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::env::tests::MapEnv;
use super::yaml::DURATION_MESSAGE;
use super::*;

/// Spec §1.8 JWT file-source sample: the documented example itself, so the
/// docs and the loader tests cannot drift apart.
const SAMPLE: &str = include_str!("../../docs/examples/config/jwt-file-minimal.yaml");

/// Spec §1.8 OAuth2 `auth` block.
const OAUTH2_AUTH: &str = r#"auth:
  method: jwt
  loginTimeout: 10s
  jwt:
    source: oauth2
    mountPath: auth/k8s-workload-a-jwt
    role: openbao-kms-control-plane
    expectedIssuer: https://identity.example.com/realms/platform
    expectedAudience: [bao-kms-provider]
    expectedSubject: "<service-account-subject>"
    oauth2:
      tokenUrl: https://identity.example.com/realms/platform/protocol/openid-connect/token
      clientId: kms-control-plane
      authMethod: client_secret_basic
      clientSecretFile: /etc/openbao-kms/credentials/client-secret
"#;

/// Spec §1.8 PKCS#11 `auth` block.
const CERT_AUTH: &str = r#"auth:
  method: cert
  cert:
    mountPath: auth/k8s-workload-a-cert
    name: openbao-kms-control-plane
    source: pkcs11
    pkcs11:
      certificateFile: /etc/openbao-kms/client/client-chain.pem
      modulePath: /usr/lib/softhsm/libsofthsm2.so
      tokenLabel: openbao-kms
      keyLabel: openbao-kms-client
      pinFile: /etc/openbao-kms/pkcs11/pin
      maxSessions: 4
"#;

fn load(yaml: &str) -> Result<Config, ConfigError> {
    load_str(yaml, &Overrides::default(), &NoEnv)
}

fn problems(yaml: &str) -> Vec<(String, String)> {
    match load(yaml) {
        Ok(_) => Vec::new(),
        Err(err) => err
            .problems
            .into_iter()
            .map(|p| (p.field, p.message))
            .collect(),
    }
}

fn p(field: &str, message: &str) -> (String, String) {
    (field.to_owned(), message.to_owned())
}

/// The sample with one line (matched after trimming) removed.
fn without(line: &str) -> String {
    let mut found = false;
    let out: Vec<&str> = SAMPLE
        .lines()
        .filter(|l| {
            let hit = l.trim() == line;
            found |= hit;
            !hit
        })
        .collect();
    assert!(found, "sample has no line {line:?}");
    out.join("\n") + "\n"
}

/// The sample with `old` (a whole line, trimmed) replaced, keeping its indent.
fn replace(old: &str, new: &str) -> String {
    let mut found = false;
    let out: Vec<String> = SAMPLE
        .lines()
        .map(|l| {
            if l.trim() == old {
                found = true;
                let indent = &l[..l.len() - l.trim_start().len()];
                new.lines()
                    .map(|n| format!("{indent}{n}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(found, "sample has no line {old:?}");
    out.join("\n") + "\n"
}

/// The sample with a top-level block appended.
fn with(extra: &str) -> String {
    format!("{SAMPLE}{extra}")
}

/// The sample with its `auth` block swapped for `auth_block`.
fn with_auth(auth_block: &str) -> String {
    let start = SAMPLE.find("auth:\n").unwrap();
    let end = SAMPLE.find("transit:\n").unwrap();
    format!("{}{}{}", &SAMPLE[..start], auth_block, &SAMPLE[end..])
}

#[test]
fn sample_loads_with_defaults() {
    let cfg = load(SAMPLE).unwrap();
    assert_eq!(cfg.config_version, "v1alpha1");
    let s = &cfg.server;
    assert_eq!(s.socket_path, PathBuf::from("/run/openbao-kms/kms.sock"));
    assert_eq!(s.socket_mode, 0o660);
    assert_eq!(s.socket_group, "openbao-kms-socket");
    assert_eq!(s.metrics_address, "127.0.0.1:8081");
    assert_eq!(s.health_address, "127.0.0.1:8082");
    assert_eq!(
        (
            s.max_concurrent_status,
            s.max_concurrent_encrypt,
            s.max_concurrent_decrypt
        ),
        (16, 32, 64)
    );
    assert_eq!(cfg.openbao.address, "https://bao.example.internal:8200");
    assert_eq!(cfg.openbao.namespace, "");
    assert_eq!(cfg.openbao.timeout, Duration::from_secs(2));
    assert_eq!(cfg.auth.method, AuthMethod::Jwt);
    assert_eq!(cfg.auth.login_before_token_expiry, Duration::from_secs(300));
    assert_eq!(cfg.auth.token_renewal_increment, Duration::from_secs(3600));
    assert_eq!(cfg.auth.login_timeout, Duration::ZERO);
    assert_eq!(cfg.effective_login_timeout(), Duration::from_secs(5));
    let jwt = &cfg.auth.jwt;
    assert_eq!(jwt.source, JwtSource::File);
    assert_eq!(
        jwt.jwt_file,
        PathBuf::from("/var/lib/openbao-kms/identity.jwt")
    );
    assert_eq!(jwt.min_remaining_ttl, Duration::from_secs(120));
    assert_eq!(jwt.clock_skew_leeway, Duration::from_secs(30));
    assert_eq!(jwt.expected_audience, vec!["bao-kms-provider".to_owned()]);
    assert!(jwt.oauth2.is_none());
    assert_eq!(cfg.auth.cert.min_remaining_ttl, Duration::from_secs(86400));
    assert_eq!(cfg.auth.cert.clock_skew_leeway, Duration::from_secs(30));
    assert_eq!(cfg.bootstrap.grace_timeout, Duration::from_secs(60));
    assert_eq!(cfg.bootstrap.retry_interval, Duration::from_secs(5));
    assert_eq!(cfg.status.probe_interval, Duration::from_secs(30));
    assert_eq!(cfg.status.deep_probe_interval, Duration::from_secs(300));
    assert_eq!(cfg.status.status_max_staleness, Duration::from_secs(120));
    assert_eq!(
        cfg.state.path,
        PathBuf::from("/var/lib/openbao-kms/state/key-registry.json")
    );
    assert_eq!(cfg.rotation.mode, "observed");
    assert_eq!(cfg.rotation.activation_delay, Duration::from_secs(120));
    assert_eq!(cfg.rotation.require_stable_observation_count, 3);
    assert!(cfg.rotation.reject_version_rollback);
    assert_eq!(cfg.logging.level, LogLevel::Info);
    assert_eq!(cfg.logging.level.as_str(), "info");
    assert_eq!(cfg.logging.format, LogFormat::Json);
    assert!(cfg.logging.log_openbao_request_ids);
    assert!(!cfg.logging.debug_correlation.enabled);
    assert_eq!(cfg.logging.debug_correlation.ttl, Duration::from_secs(900));
    assert_eq!(
        cfg.transit.key_id_scope.key_lineage_id,
        "0123456789abcdef0123456789abcdef"
    );
}

#[test]
fn golden_identity_fingerprint_through_the_loader() {
    let yaml = replace(
        "keyLineageId: \"0123456789abcdef0123456789abcdef\"",
        "keyLineageId: 01HXEXAMPLEKEYLINEAGEID",
    );
    let cfg = load(&yaml).unwrap();
    assert_eq!(
        cfg.identity_fingerprint(),
        "cfg1.iWfCItBef04qDNcnEXME76HSYDWTVfhtoTlg2YQpdPg"
    );
    let ns = load(&replace(
        "instanceId: bao-prod-a",
        "instanceId: bao-prod-a\nnamespace: admin/workload-a",
    ))
    .unwrap();
    assert_ne!(ns.identity_fingerprint(), cfg.identity_fingerprint());
}

#[test]
fn full_upstream_style_sample_with_explicit_defaults_loads() {
    let yaml = with(
        r#"bootstrap:
  graceTimeout: 60s
  retryInterval: 5s
status:
  probeInterval: 30s
  deepProbeInterval: 5m
  statusMaxStaleness: 2m
state:
  path: /var/lib/openbao-kms/state/key-registry.json
rotation:
  mode: observed
  activationDelay: 2m
  requireStableObservationCount: 3
  rejectVersionRollback: true
logging:
  level: info
  format: json
  logOpenBaoRequestIDs: true
  debugCorrelation:
    enabled: false
    ttl: 15m
    incidentId: ""
"#,
    );
    let yaml = yaml
        .replace(
            "  socketGroup: openbao-kms-socket\n",
            "  socketGroup: \"1234\"\n  metricsAddress: 127.0.0.1:8081\n  healthAddress: 127.0.0.1:8082\n  maxConcurrentStatus: 16\n  maxConcurrentEncrypt: 32\n  maxConcurrentDecrypt: 64\n",
        )
        .replace(
            "  instanceId: bao-prod-a\n",
            "  instanceId: bao-prod-a\n  namespace: \"\"\n  timeout: 2s\n",
        )
        .replace(
            "  method: jwt\n",
            "  method: jwt\n  loginBeforeTokenExpiry: 5m\n  tokenRenewalIncrement: 1h\n  loginTimeout: 0s\n",
        )
        .replace(
            "    expectedSubject: system:openbao-kms:workload-a\n",
            "    expectedSubject: system:openbao-kms:workload-a\n    minRemainingTtl: 2m\n    clockSkewLeeway: 30s\n",
        );
    let cfg = load(&yaml).unwrap();
    assert_eq!(cfg.server.socket_group, "1234");
}

#[test]
fn oauth2_sample_loads() {
    let cfg = load(&with_auth(OAUTH2_AUTH)).unwrap();
    let jwt = &cfg.auth.jwt;
    assert_eq!(jwt.source, JwtSource::OAuth2);
    assert_eq!(jwt.jwt_file, PathBuf::new());
    let o = jwt.oauth2.as_ref().unwrap();
    assert_eq!(o.client_id, "kms-control-plane");
    assert_eq!(o.auth_method, "client_secret_basic");
    assert_eq!(
        o.client_secret_file,
        PathBuf::from("/etc/openbao-kms/credentials/client-secret")
    );
    assert_eq!(o.ca_cert_file, None);
    assert_eq!(cfg.effective_login_timeout(), Duration::from_secs(10));

    let extended = OAUTH2_AUTH.to_owned()
        + "      caCertFile: /etc/openbao-kms/issuer/ca.pem\n      scopes: [read, write]\n      audience: bao\n      resources: [\"urn:bao:production\"]\n";
    let cfg = load(&with_auth(&extended)).unwrap();
    let o = cfg.auth.jwt.oauth2.unwrap();
    assert_eq!(
        o.ca_cert_file,
        Some(PathBuf::from("/etc/openbao-kms/issuer/ca.pem"))
    );
    assert_eq!(o.scopes, vec!["read".to_owned(), "write".to_owned()]);
    assert_eq!(o.resources, vec!["urn:bao:production".to_owned()]);
}

#[test]
fn cert_sample_loads() {
    let cfg = load(&with_auth(CERT_AUTH)).unwrap();
    assert_eq!(cfg.auth.method, AuthMethod::Cert);
    let cert = &cfg.auth.cert;
    assert_eq!(cert.source, "pkcs11");
    assert_eq!(cert.pkcs11.max_sessions, 4);
    assert_eq!(cert.pkcs11.token_label, "openbao-kms");
    assert_eq!(
        cert.pkcs11.pin_file,
        PathBuf::from("/etc/openbao-kms/pkcs11/pin")
    );
}

#[test]
fn each_required_field_is_reported() {
    for (line, field) in [
        ("configVersion: v1alpha1", "configVersion"),
        ("socketGroup: openbao-kms-socket", "server.socketGroup"),
        (
            "address: https://bao.example.internal:8200",
            "openbao.address",
        ),
        (
            "caCertFile: /etc/openbao-kms/tls/ca.crt",
            "openbao.caCertFile",
        ),
        (
            "tlsServerName: bao.example.internal",
            "openbao.tlsServerName",
        ),
        ("instanceId: bao-prod-a", "openbao.instanceId"),
        ("mountPath: auth/k8s-workload-a-jwt", "auth.jwt.mountPath"),
        ("role: openbao-kms-control-plane", "auth.jwt.role"),
        (
            "jwtFile: /var/lib/openbao-kms/identity.jwt",
            "auth.jwt.jwtFile",
        ),
        ("mountPath: transit", "transit.mountPath"),
        ("keyName: k8s-workload-a-etcd", "transit.keyName"),
        (
            "providerName: openbao-kms-workload-a",
            "transit.keyIdScope.providerName",
        ),
        ("clusterId: workload-a", "transit.keyIdScope.clusterId"),
        (
            "transitMountId: transit-prod-primary",
            "transit.keyIdScope.transitMountId",
        ),
        (
            "keyLineageId: \"0123456789abcdef0123456789abcdef\"",
            "transit.keyIdScope.keyLineageId",
        ),
    ] {
        assert_eq!(
            problems(&without(line)),
            vec![p(field, "is required")],
            "{field}"
        );
    }
}

#[test]
fn blank_values_count_as_missing() {
    assert_eq!(
        problems(&replace(
            "socketGroup: openbao-kms-socket",
            "socketGroup: \"  \""
        )),
        vec![p("server.socketGroup", "is required")]
    );
    assert_eq!(
        problems(&replace("method: jwt", "method: \"\"")),
        vec![p("auth.method", "is required")]
    );
    assert_eq!(
        problems(&replace(
            "socketPath: /run/openbao-kms/kms.sock",
            "socketPath: \"\""
        )),
        vec![p("server.socketPath", "is required")]
    );
    assert_eq!(
        problems(&replace("socketMode: \"0660\"", "socketMode: \"\"")),
        vec![p("server.socketMode", "is required")]
    );
    assert_eq!(
        problems(&with("state:\n  path: \"\"\n")),
        vec![p("state.path", "is required")]
    );
}

#[test]
fn empty_document_lists_what_is_missing() {
    let got = problems("");
    assert_eq!(got.first(), Some(&p("configVersion", "is required")));
    for field in [
        "server.socketGroup",
        "openbao.address",
        "openbao.caCertFile",
        "openbao.tlsServerName",
        "openbao.instanceId",
        "auth.jwt.mountPath",
        "auth.jwt.role",
        "auth.jwt.source",
        "transit.mountPath",
        "transit.keyName",
        "transit.keyIdScope.keyLineageId",
    ] {
        assert!(got.contains(&p(field, "is required")), "{field}: {got:?}");
    }
}

#[test]
fn config_version_must_be_v1alpha1() {
    assert_eq!(
        problems(&replace("configVersion: v1alpha1", "configVersion: v1")),
        vec![p("configVersion", "must be v1alpha1")]
    );
    assert_eq!(
        problems(&replace("configVersion: v1alpha1", "configVersion: null")),
        vec![p("configVersion", "is required")]
    );
}

#[test]
fn unknown_keys_are_rejected_at_every_level() {
    assert_eq!(
        problems(&with("performance:\n  decryptMicroBatching: {}\n")),
        vec![p("performance", "is not a supported setting")]
    );
    assert_eq!(
        problems(&replace(
            "socketGroup: openbao-kms-socket",
            "socketGroup: openbao-kms-socket\nadminAddress: 127.0.0.1:9000"
        )),
        vec![p("server.adminAddress", "is not a supported setting")]
    );
    assert_eq!(
        problems(&replace("method: jwt", "method: jwt\ntokenStorage: memory")),
        vec![p("auth.tokenStorage", "is not a supported setting")]
    );
    assert_eq!(
        problems(&replace(
            "providerName: openbao-kms-workload-a",
            "providerName: openbao-kms-workload-a\nextra: x"
        )),
        vec![p("transit.keyIdScope.extra", "is not a supported setting")]
    );
    let oauth = OAUTH2_AUTH.to_owned() + "      clientSecret: inline\n";
    assert_eq!(
        problems(&with_auth(&oauth)),
        vec![p(
            "auth.jwt.oauth2.clientSecret",
            "is not a supported setting"
        )]
    );
    // Keys are case-sensitive camelCase (no Viper lower-casing).
    assert_eq!(
        problems(&replace(
            "socketPath: /run/openbao-kms/kms.sock",
            "SocketPath: /run/openbao-kms/kms.sock"
        )),
        vec![p("server.SocketPath", "is not a supported setting")]
    );
    // Flat legacy auth keys are gone.
    assert_eq!(
        problems(&replace("method: jwt", "method: jwt\nmountPath: auth/x")),
        vec![p("auth.mountPath", "is not a supported setting")]
    );
}

#[test]
fn types_are_not_coerced() {
    assert_eq!(
        problems(&replace(
            "socketGroup: openbao-kms-socket",
            "socketGroup: 1234"
        )),
        vec![p("server.socketGroup", "must be a string")]
    );
    assert_eq!(
        problems(&replace("socketMode: \"0660\"", "socketMode: 660")),
        vec![p("server.socketMode", "must be a string")]
    );
    assert_eq!(
        problems(&replace("keyName: k8s-workload-a-etcd", "keyName: 123")),
        vec![p("transit.keyName", "must be a string")]
    );
    assert_eq!(
        problems(&replace("keyName: k8s-workload-a-etcd", "keyName: 1e3")),
        vec![p("transit.keyName", "must be a string")]
    );
    assert_eq!(
        problems(&replace("keyName: k8s-workload-a-etcd", "keyName: true")),
        vec![p("transit.keyName", "must be a string")]
    );
    assert_eq!(
        problems(&replace(
            "keyName: k8s-workload-a-etcd",
            "keyName: !custom x"
        )),
        vec![p("transit.keyName", "must be a string")]
    );
    assert_eq!(
        problems(&replace(
            "keyName: k8s-workload-a-etcd",
            "keyName: \"0123\""
        )),
        vec![]
    );
    // The YAML parser reads leading-zero digit runs as strings (YAML 1.2), so
    // these keep exactly the text written; Go's yaml.v3 would see octal ints.
    let cfg = load(&replace("socketMode: \"0660\"", "socketMode: 0660")).unwrap();
    assert_eq!(cfg.server.socket_mode, 0o660);
    let cfg = load(&replace("keyName: k8s-workload-a-etcd", "keyName: 0123")).unwrap();
    assert_eq!(cfg.transit.key_name, "0123");
    assert_eq!(
        problems(&with("rotation:\n  rejectVersionRollback: \"false\"\n")),
        vec![p("rotation.rejectVersionRollback", "must be a boolean")]
    );
    assert_eq!(
        problems(&with("rotation:\n  requireStableObservationCount: \"3\"\n")),
        vec![p(
            "rotation.requireStableObservationCount",
            "must be an integer"
        )]
    );
    assert_eq!(
        problems(&replace(
            "expectedAudience: [bao-kms-provider]",
            "expectedAudience: bao-kms-provider"
        )),
        vec![p("auth.jwt.expectedAudience", "must be a list of strings")]
    );
    assert_eq!(
        problems(&with("status: []\n")),
        vec![p("status", "must be a mapping")]
    );
}

#[test]
fn durations_need_units() {
    assert_eq!(
        problems(&replace(
            "instanceId: bao-prod-a",
            "instanceId: bao-prod-a\ntimeout: 120"
        )),
        vec![p("openbao.timeout", DURATION_MESSAGE)]
    );
    assert_eq!(
        DURATION_MESSAGE,
        "must be a duration string with units, such as 30s or 0s"
    );
    for bad in ["\"1\"", "1x", "\"\"", "h", "1.5"] {
        assert_eq!(
            problems(&with(&format!("bootstrap:\n  retryInterval: {bad}\n"))),
            vec![p("bootstrap.retryInterval", DURATION_MESSAGE)],
            "{bad}"
        );
    }
    let cfg = load(&with(
        "bootstrap:\n  graceTimeout: \"0\"\n  retryInterval: 1.5h\n",
    ))
    .unwrap();
    assert_eq!(cfg.bootstrap.grace_timeout, Duration::ZERO);
    assert_eq!(cfg.bootstrap.retry_interval, Duration::from_secs(5400));
    let cfg = load(&with(
        "status:\n  probeInterval: 500ms\n  statusMaxStaleness: 1h30m\n",
    ))
    .unwrap();
    assert_eq!(cfg.status.probe_interval, Duration::from_millis(500));
    assert_eq!(cfg.status.status_max_staleness, Duration::from_secs(5400));
}

#[test]
fn duration_signs_are_checked() {
    assert_eq!(
        problems(&with(
            "bootstrap:\n  graceTimeout: -1s\n  retryInterval: 0s\n"
        )),
        vec![
            p("bootstrap.graceTimeout", "must not be negative"),
            p("bootstrap.retryInterval", "must be positive"),
        ]
    );
    assert_eq!(
        problems(&replace("method: jwt", "method: jwt\nloginTimeout: -5s")),
        vec![p("auth.loginTimeout", "must not be negative")]
    );
    assert_eq!(
        problems(&replace(
            "expectedSubject: system:openbao-kms:workload-a",
            "expectedSubject: system:openbao-kms:workload-a\nminRemainingTtl: 0s\nclockSkewLeeway: -1s"
        )),
        vec![
            p("auth.jwt.minRemainingTtl", "must be positive"),
            p("auth.jwt.clockSkewLeeway", "must not be negative"),
        ]
    );
}

#[test]
fn cross_field_rules() {
    assert_eq!(
        problems(&with("status:\n  probeInterval: 2m\n")),
        vec![p(
            "status.probeInterval",
            "must be shorter than status.statusMaxStaleness"
        )]
    );
    assert_eq!(
        problems(&replace(
            "method: jwt",
            "method: jwt\ntokenRenewalIncrement: 5m"
        )),
        vec![p(
            "auth.tokenRenewalIncrement",
            "must exceed auth.loginBeforeTokenExpiry"
        )]
    );
    let conflict = "socketGroup: openbao-kms-socket\nmetricsAddress: 127.0.0.1:0080\nhealthAddress: \"[::ffff:127.0.0.1]:80\"";
    assert_eq!(
        problems(&replace("socketGroup: openbao-kms-socket", conflict)),
        vec![p(
            "server.metricsAddress",
            "must differ from server.healthAddress for a fixed port"
        )]
    );
    for fine in [
        "metricsAddress: 127.0.0.1:0\nhealthAddress: 127.0.0.1:0",
        "metricsAddress: \"\"\nhealthAddress: 127.0.0.1:8082",
        "metricsAddress: 127.0.0.1:9\nhealthAddress: 127.0.0.2:9",
    ] {
        let yaml = replace(
            "socketGroup: openbao-kms-socket",
            &format!("socketGroup: openbao-kms-socket\n{fine}"),
        );
        assert_eq!(problems(&yaml), vec![], "{fine}");
    }
}

#[test]
fn per_field_value_rules() {
    let cases: &[(&str, &str, (&str, &str))] = &[
        (
            "address: https://bao.example.internal:8200",
            "address: http://bao.example.internal:8200",
            ("openbao.address", rules::OPENBAO_ADDRESS_MESSAGE),
        ),
        (
            "instanceId: bao-prod-a",
            "instanceId: \"bao-prod-a \"",
            ("openbao.instanceId", rules::IDENTIFIER_MESSAGE),
        ),
        (
            "mountPath: transit",
            "mountPath: /transit",
            ("transit.mountPath", "must be a relative OpenBao path"),
        ),
        (
            "keyName: k8s-workload-a-etcd",
            "keyName: k8s-etcd-",
            ("transit.keyName", rules::KEY_NAME_MESSAGE),
        ),
        (
            "caCertFile: /etc/openbao-kms/tls/ca.crt",
            "caCertFile: tls/ca.crt",
            ("openbao.caCertFile", "must be an absolute path"),
        ),
        (
            "jwtFile: /var/lib/openbao-kms/identity.jwt",
            "jwtFile: identity.jwt",
            ("auth.jwt.jwtFile", "must be an absolute path"),
        ),
        (
            "method: jwt",
            "method: kubernetes",
            ("auth.method", "must be one of jwt or cert"),
        ),
        (
            "source: file",
            "source: env",
            ("auth.jwt.source", "must be file or oauth2"),
        ),
        (
            "expectedAudience: [bao-kms-provider]",
            "expectedAudience: [\"\"]",
            ("auth.jwt.expectedAudience", "must not contain empty values"),
        ),
    ];
    for (old, new, (field, message)) in cases {
        assert_eq!(
            problems(&replace(old, new)),
            vec![p(field, message)],
            "{new}"
        );
    }
    assert_eq!(
        problems(&replace(
            "instanceId: bao-prod-a",
            "instanceId: bao-prod-a\nnamespace: /admin"
        )),
        vec![p(
            "openbao.namespace",
            "must be a relative OpenBao namespace path without percent encoding"
        )]
    );
    assert_eq!(
        problems(&replace(
            "socketGroup: openbao-kms-socket",
            "socketGroup: openbao-kms-socket\nmaxConcurrentDecrypt: 0\nmaxConcurrentStatus: 1025\nmetricsAddress: localhost"
        )),
        vec![
            p("server.metricsAddress", rules::HOST_PORT_MESSAGE),
            p("server.maxConcurrentStatus", "must be between 1 and 1024"),
            p("server.maxConcurrentDecrypt", "must be between 1 and 1024"),
        ]
    );
    assert_eq!(
        problems(&with(
            "rotation:\n  mode: automatic\n  requireStableObservationCount: 0\n"
        )),
        vec![
            p("rotation.mode", "only observed is supported"),
            p("rotation.requireStableObservationCount", "must be positive"),
        ]
    );
    assert_eq!(
        problems(&with("logging:\n  level: verbose\n  format: yaml\n")),
        vec![
            p(
                "logging.level",
                "must be one of debug, info, warn, or error"
            ),
            p("logging.format", "must be json or text"),
        ]
    );
}

#[test]
fn debug_correlation_rules() {
    assert_eq!(
        problems(&with(
            "logging:\n  logOpenBaoRequestIDs: false\n  debugCorrelation:\n    enabled: true\n    ttl: 2h\n"
        )),
        vec![
            p(
                "logging.debugCorrelation.enabled",
                "requires logging.level debug"
            ),
            p(
                "logging.logOpenBaoRequestIDs",
                "must be true when debug correlation is enabled"
            ),
            p("logging.debugCorrelation.ttl", "must not exceed 1h"),
            p(
                "logging.debugCorrelation.incidentId",
                "is required when debug correlation is enabled"
            ),
        ]
    );
    let long = "x".repeat(65);
    assert_eq!(
        problems(&with(&format!(
            "logging:\n  level: debug\n  debugCorrelation:\n    enabled: true\n    incidentId: {long}\n"
        ))),
        vec![p(
            "logging.debugCorrelation.incidentId",
            "must be at most 64 characters"
        )]
    );
    let cfg = load(&with(
        "logging:\n  level: debug\n  debugCorrelation:\n    enabled: true\n    ttl: 1h\n    incidentId: INC-42\n",
    ))
    .unwrap();
    assert!(cfg.logging.debug_correlation.enabled);
    assert_eq!(cfg.logging.debug_correlation.incident_id, "INC-42");
    // Disabled correlation is not validated, as in the reference.
    assert!(load(&with("logging:\n  debugCorrelation:\n    ttl: 3h\n")).is_ok());
}

#[test]
fn socket_rules() {
    for ok in ["\"0660\"", "\"0640\"", "\"0600\""] {
        let cfg = load(&replace(
            "socketMode: \"0660\"",
            &format!("socketMode: {ok}"),
        ))
        .unwrap();
        assert_eq!(cfg.server.socket_mode & 0o117, 0, "{ok}");
    }
    for bad in ["\"0666\"", "\"0770\"", "\"0661\"", "\"0760\""] {
        assert_eq!(
            problems(&replace(
                "socketMode: \"0660\"",
                &format!("socketMode: {bad}")
            )),
            vec![p(
                "server.socketMode",
                "must not allow world access or execute bits"
            )],
            "{bad}"
        );
    }
    assert_eq!(
        problems(&replace("socketMode: \"0660\"", "socketMode: \"rw\"")),
        vec![p("server.socketMode", rules::SOCKET_MODE_SYNTAX_MESSAGE)]
    );
    for out_of_range in ["\"01660\"", "\"0\"", "\"0000\""] {
        assert_eq!(
            problems(&replace(
                "socketMode: \"0660\"",
                &format!("socketMode: {out_of_range}")
            )),
            vec![p("server.socketMode", rules::SOCKET_MODE_RANGE_MESSAGE)],
            "{out_of_range}"
        );
    }
    assert_eq!(
        problems(&replace(
            "socketPath: /run/openbao-kms/kms.sock",
            "socketPath: /tmp/kms.sock"
        )),
        vec![p(
            "server.socketPath",
            "must be under an approved runtime socket directory"
        )]
    );
    assert_eq!(
        problems(&replace(
            "socketPath: /run/openbao-kms/kms.sock",
            "socketPath: run/openbao-kms/kms.sock"
        )),
        vec![
            p("server.socketPath", "must be an absolute Unix socket path"),
            p(
                "server.socketPath",
                "must be under an approved runtime socket directory"
            ),
        ]
    );
    for ok in [
        "/var/run/openbao-kms/kms.sock",
        "/run/openbao-kms/node/kms.sock",
    ] {
        let yaml = replace(
            "socketPath: /run/openbao-kms/kms.sock",
            &format!("socketPath: {ok}"),
        );
        assert!(load(&yaml).is_ok(), "{ok}");
    }
    assert_eq!(
        problems(&replace(
            "socketGroup: openbao-kms-socket",
            "socketGroup: \"2147483648\""
        )),
        vec![p("server.socketGroup", rules::SOCKET_GROUP_GID_MESSAGE)]
    );
}

#[test]
fn legacy_jwt_source_inference() {
    // No source key, jwtFile set: inferred file source.
    let cfg = load(&without("source: file")).unwrap();
    assert_eq!(cfg.auth.jwt.source, JwtSource::File);
    // An explicit null or empty source is taken as written.
    for explicit in ["source: null", "source: \"\"", "source:"] {
        assert_eq!(
            problems(&replace("source: file", explicit)),
            vec![p("auth.jwt.source", "is required")],
            "{explicit}"
        );
    }
    // Any oauth2 key blocks the inference, even an empty one.
    for oauth in ["oauth2: {}", "oauth2: null", "oauth2:\n  clientId: x"] {
        assert_eq!(
            problems(&replace("source: file", oauth)),
            vec![p("auth.jwt.source", "is required")],
            "{oauth}"
        );
    }
    // Without jwtFile nothing is inferred.
    let yaml =
        without("source: file").replace("    jwtFile: /var/lib/openbao-kms/identity.jwt\n", "");
    assert_eq!(problems(&yaml), vec![p("auth.jwt.source", "is required")]);
    // Under method cert the jwt block is not validated at all.
    let cert = with_auth(CERT_AUTH).replace(
        "  cert:\n",
        "  jwt:\n    jwtFile: relative\n    source: bogus\n  cert:\n",
    );
    let cfg = load(&cert).unwrap();
    assert!(cfg.auth.jwt.oauth2.is_none());
}

#[test]
fn jwt_source_exclusivity() {
    let yaml = replace("source: file", "source: file\noauth2:\n  clientId: kms");
    assert_eq!(
        problems(&yaml),
        vec![p("auth.jwt.oauth2", "must be omitted for source file")]
    );
    // An empty oauth2 mapping is "omitted".
    assert!(load(&replace("source: file", "source: file\noauth2: {}")).is_ok());
    let oauth = OAUTH2_AUTH.replace(
        "    source: oauth2\n",
        "    source: oauth2\n    jwtFile: /var/lib/openbao-kms/identity.jwt\n",
    );
    assert_eq!(
        problems(&with_auth(&oauth)),
        vec![p("auth.jwt.jwtFile", "must be omitted for source oauth2")]
    );
}

#[test]
fn oauth2_rules() {
    let bare = "auth:\n  jwt:\n    source: oauth2\n    mountPath: auth/jwt\n    role: r\n";
    assert_eq!(
        problems(&with_auth(bare)),
        vec![
            p("auth.jwt.oauth2.tokenUrl", "is required"),
            p("auth.jwt.oauth2.clientId", "is required"),
            p("auth.jwt.oauth2.clientSecretFile", "is required"),
            p("auth.jwt.oauth2.authMethod", "is required"),
            p("auth.jwt.expectedIssuer", "is required"),
            p(
                "auth.jwt.expectedAudience",
                "must contain at least one audience for source oauth2"
            ),
        ]
    );
    let bad = OAUTH2_AUTH
        .replace(
            "tokenUrl: https://identity.example.com/realms/platform/protocol/openid-connect/token",
            "tokenUrl: http://identity.example.com/token",
        )
        .replace("clientId: kms-control-plane", "clientId: \"kms\\u0007\"")
        .replace("authMethod: client_secret_basic", "authMethod: private_key_jwt")
        .replace(
            "clientSecretFile: /etc/openbao-kms/credentials/client-secret",
            "clientSecretFile: client-secret\n      scopes: [\"a b\"]\n      audience: \"x\\ty\"\n      resources: [relative]\n      caCertFile: ca.pem",
        );
    assert_eq!(
        problems(&with_auth(&bad)),
        vec![
            p("auth.jwt.oauth2.tokenUrl", rules::TOKEN_URL_MESSAGE),
            p("auth.jwt.oauth2.clientId", rules::CONTROL_MESSAGE),
            p(
                "auth.jwt.oauth2.clientSecretFile",
                "must be an absolute path"
            ),
            p(
                "auth.jwt.oauth2.authMethod",
                "must be client_secret_basic or client_secret_post"
            ),
            p("auth.jwt.oauth2.scopes", rules::SCOPE_MESSAGE),
            p("auth.jwt.oauth2.audience", rules::CONTROL_MESSAGE),
            p("auth.jwt.oauth2.resources", rules::RESOURCE_MESSAGE),
            p("auth.jwt.oauth2.caCertFile", "must be an absolute path"),
        ]
    );
    let query = OAUTH2_AUTH.replace("/openid-connect/token", "/openid-connect/token?tenant=a");
    assert!(load(&with_auth(&query)).is_ok());
}

#[test]
fn cert_rules() {
    let spiffe = CERT_AUTH.replace("source: pkcs11", "source: spiffe");
    assert_eq!(
        problems(&with_auth(&spiffe)),
        vec![p(
            "auth.cert.source",
            "spiffe is unavailable until the supported OpenBao version can derive certificate identity aliases from URI SANs"
        )]
    );
    let other = CERT_AUTH.replace("source: pkcs11", "source: file");
    assert_eq!(
        problems(&with_auth(&other)),
        vec![p("auth.cert.source", "must be pkcs11")]
    );
    let bare = "auth:\n  method: cert\n  cert:\n    source: pkcs11\n";
    assert_eq!(
        problems(&with_auth(bare)),
        vec![
            p("auth.cert.mountPath", "is required"),
            p("auth.cert.pkcs11.certificateFile", "is required"),
            p("auth.cert.pkcs11.modulePath", "is required"),
            p("auth.cert.pkcs11.tokenLabel", "is required"),
            p("auth.cert.pkcs11.keyLabel", "is required"),
            p("auth.cert.pkcs11.pinFile", "is required"),
            p("auth.cert.pkcs11.maxSessions", "must be at least 2"),
        ]
    );
    let bad = CERT_AUTH
        .replace("maxSessions: 4", "maxSessions: 1")
        .replace("pinFile: /etc/openbao-kms/pkcs11/pin", "pinFile: pin")
        .replace("tokenLabel: openbao-kms", "tokenLabel: \" openbao-kms\"")
        .replace(
            "mountPath: auth/k8s-workload-a-cert",
            "mountPath: auth/cert/",
        );
    assert_eq!(
        problems(&with_auth(&bad)),
        vec![
            p(
                "auth.cert.mountPath",
                "must not contain empty, dot, or dot-dot path segments"
            ),
            p("auth.cert.pkcs11.tokenLabel", rules::IDENTIFIER_MESSAGE),
            p("auth.cert.pkcs11.pinFile", "must be an absolute path"),
            p("auth.cert.pkcs11.maxSessions", "must be at least 2"),
        ]
    );
    // SPIFFE keys are known to the schema even though the source is gated.
    let spiffe_keys = CERT_AUTH.to_owned() + "    spiffe:\n      trustDomain: example.org\n";
    assert!(load(&with_auth(&spiffe_keys)).is_ok());
}

#[test]
fn environment_and_flag_precedence() {
    let file = replace(
        "socketGroup: openbao-kms-socket",
        "socketGroup: openbao-kms-socket\nmetricsAddress: 127.0.0.1:9101\nhealthAddress: 127.0.0.1:9102",
    )
    .replace("transit:\n", "logging:\n  level: warn\ntransit:\n");
    let none = Overrides::default();

    let cfg = load_str(&file, &none, &NoEnv).unwrap();
    assert_eq!(cfg.logging.level, LogLevel::Warn);
    assert_eq!(cfg.server.metrics_address, "127.0.0.1:9101");

    let env = MapEnv::with(&[
        ("BAO_KMS_PROVIDER_LOG_LEVEL", "debug"),
        ("BAO_KMS_PROVIDER_LOGGING_LEVEL", "error"),
        ("BAO_KMS_PROVIDER_SERVER_METRICSADDRESS", "127.0.0.1:9201"),
        ("BAO_KMS_PROVIDER_SERVER_HEALTH_ADDRESS", ""),
        ("BAO_KMS_PROVIDER_SERVER_HEALTHADDRESS", "127.0.0.1:9202"),
        // Not an allowed override: ignored.
        ("BAO_KMS_PROVIDER_OPENBAO_ADDRESS", "https://elsewhere:8200"),
    ]);
    let cfg = load_str(&file, &none, &env).unwrap();
    assert_eq!(cfg.logging.level, LogLevel::Debug);
    assert_eq!(cfg.server.metrics_address, "127.0.0.1:9201");
    assert_eq!(cfg.server.health_address, "127.0.0.1:9202");
    assert_eq!(cfg.openbao.address, "https://bao.example.internal:8200");

    let flags = Overrides {
        log_level: Some("error".to_owned()),
        metrics_address: Some(String::new()),
        health_address: None,
    };
    let cfg = load_str(&file, &flags, &env).unwrap();
    assert_eq!(cfg.logging.level, LogLevel::Error);
    assert_eq!(
        cfg.server.metrics_address, "",
        "an empty flag disables the listener"
    );
    assert_eq!(cfg.server.health_address, "127.0.0.1:9202");

    // Overrides also apply on top of defaults.
    let cfg = load_str(SAMPLE, &none, &env).unwrap();
    assert_eq!(cfg.server.metrics_address, "127.0.0.1:9201");
}

#[test]
fn override_values_are_validated() {
    let flags = Overrides {
        log_level: Some("verbose".to_owned()),
        ..Overrides::default()
    };
    let err = load_str(SAMPLE, &flags, &NoEnv).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config invalid; logging.level: must be one of debug, info, warn, or error"
    );
    let env = MapEnv::with(&[("BAO_KMS_PROVIDER_SERVER_METRICS_ADDRESS", "127.0.0.1:8082")]);
    let err = load_str(SAMPLE, &Overrides::default(), &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config invalid; server.metricsAddress: must differ from server.healthAddress for a fixed port"
    );
}

#[test]
fn all_problems_are_reported_together() {
    let yaml = SAMPLE
        .replace("socketGroup: openbao-kms-socket", "socketGroup: 5")
        .replace("configVersion: v1alpha1\n", "configVersion: v2\nextra: 1\n")
        .replace("keyName: k8s-workload-a-etcd", "keyName: \"-bad\"");
    let err = load(&yaml).unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "server.socketGroup",
            "extra",
            "configVersion",
            "transit.keyName"
        ]
    );
}

#[test]
fn errors_never_echo_values() {
    const MARK: &str = "SECRETMARKER";
    let yaml = SAMPLE
        .replace(
            "address: https://bao.example.internal:8200",
            "address: http://SECRETMARKER@bao:8200?SECRETMARKER",
        )
        .replace("instanceId: bao-prod-a", "instanceId: \" SECRETMARKER\"")
        .replace(
            "socketGroup: openbao-kms-socket",
            "socketGroup: [SECRETMARKER]",
        )
        .replace("keyName: k8s-workload-a-etcd", "keyName: SECRETMARKER/x")
        .replace("role: openbao-kms-control-plane", "role: 12345")
        .replace(
            "configVersion: v1alpha1\n",
            "configVersion: SECRETMARKER\n\"SECRETMARKER key\": SECRETMARKER\n",
        )
        .replace("mountPath: transit", "mountPath: /SECRETMARKER")
        + "status:\n  probeInterval: SECRETMARKER\n  deepProbeInterval: 99999999999999999999h\n";
    let err = load(&yaml).unwrap_err();
    let text = err.to_string();
    assert!(!text.contains(MARK), "{text}");
    assert!(!format!("{err:?}").contains(MARK));
    assert!(err.problems.len() >= 8, "{text}");

    for broken in [
        "configVersion: [SECRETMARKER\n",
        "a: SECRETMARKER\na: SECRETMARKER\n",
        "--- a\n--- SECRETMARKER\n",
        "\"SECRETMARKER\n",
    ] {
        let err = load(broken).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config invalid; config: must be a readable YAML document",
            "{broken:?}"
        );
    }
    assert_eq!(
        problems("- SECRETMARKER\n"),
        vec![p("config", "must be a YAML mapping")]
    );
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("bao-kms-config-load-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Problems other than the socket's, whose directory is fixed by policy
/// under /run and so depends on the host running the test.
fn file_problems(path: &Path, fs_checks: FsChecks) -> Vec<(String, String)> {
    match load_file(path, &Overrides::default(), &NoEnv, fs_checks) {
        Ok(_) => Vec::new(),
        Err(err) => err
            .problems
            .into_iter()
            .filter(|p| p.field != "server.socketPath")
            .map(|p| (p.field, p.message))
            .collect(),
    }
}

#[test]
fn load_file_checks_referenced_files() {
    let dir = TempDir::new();
    let ca = dir.write("ca.crt", "ca", 0o644);
    let jwt = dir.write("identity.jwt", "jwt", 0o640);
    let yaml = SAMPLE
        .replace("/etc/openbao-kms/tls/ca.crt", ca.to_str().unwrap())
        .replace("/var/lib/openbao-kms/identity.jwt", jwt.to_str().unwrap());
    let config = dir.write("config.yaml", &yaml, 0o640);
    assert_eq!(file_problems(&config, FsChecks::Check), vec![]);

    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&ca, fs::Permissions::from_mode(0o664)).unwrap();
    fs::set_permissions(&jwt, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        file_problems(&config, FsChecks::Check),
        vec![
            p(
                "config",
                "file permissions unsafe: mode must not include 0037"
            ),
            p(
                "openbao.caCertFile",
                "file permissions unsafe: mode must not include 0022"
            ),
            p(
                "auth.jwt.jwtFile",
                "file permissions unsafe: mode must not include 0037"
            ),
        ]
    );
    // Skipping filesystem checks ignores all of that.
    assert!(load_file(&config, &Overrides::default(), &NoEnv, FsChecks::Skip).is_ok());

    fs::remove_file(&jwt).unwrap();
    symlink(&ca, &jwt).unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&ca, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        file_problems(&config, FsChecks::Check),
        vec![p("auth.jwt.jwtFile", "must not be a symlink")]
    );
    fs::remove_file(&ca).unwrap();
    assert_eq!(
        file_problems(&config, FsChecks::Check),
        vec![
            p("openbao.caCertFile", "must exist and be readable"),
            p("auth.jwt.jwtFile", "must not be a symlink"),
        ]
    );
}

#[test]
fn load_file_checks_oauth2_and_cert_files() {
    let dir = TempDir::new();
    let ca = dir.write("ca.crt", "ca", 0o644);
    let secret = dir.write("client-secret", "s", 0o740);
    let issuer_ca = dir.write("issuer-ca.pem", "ca", 0o666);
    let oauth = OAUTH2_AUTH.replace(
        "/etc/openbao-kms/credentials/client-secret",
        &format!(
            "{}\n      caCertFile: {}",
            secret.display(),
            issuer_ca.display()
        ),
    );
    let yaml = with_auth(&oauth).replace("/etc/openbao-kms/tls/ca.crt", ca.to_str().unwrap());
    let config = dir.write("oauth.yaml", &yaml, 0o600);
    assert_eq!(
        file_problems(&config, FsChecks::Check),
        vec![
            p(
                "auth.jwt.oauth2.clientSecretFile",
                "file permissions unsafe: mode must not include 0137"
            ),
            p(
                "auth.jwt.oauth2.caCertFile",
                "file permissions unsafe: mode must not include 0022"
            ),
        ]
    );

    let chain = dir.write("chain.pem", "c", 0o604);
    let pin = dir.write("pin", "1234", 0o620);
    let cert = CERT_AUTH
        .replace(
            "/etc/openbao-kms/client/client-chain.pem",
            chain.to_str().unwrap(),
        )
        .replace("/etc/openbao-kms/pkcs11/pin", pin.to_str().unwrap());
    let yaml = with_auth(&cert).replace("/etc/openbao-kms/tls/ca.crt", ca.to_str().unwrap());
    let config = dir.write("cert.yaml", &yaml, 0o600);
    assert_eq!(
        file_problems(&config, FsChecks::Check),
        vec![
            p(
                "auth.cert.pkcs11.certificateFile",
                "file permissions unsafe: mode must not include 0037"
            ),
            p(
                "auth.cert.pkcs11.pinFile",
                "file permissions unsafe: mode must not include 0037"
            ),
        ]
    );
}

#[test]
fn load_file_reports_unreadable_input_without_the_path() {
    let dir = TempDir::new();
    let missing = dir.0.join("SECRETMARKER.yaml");
    let err = load_file(&missing, &Overrides::default(), &NoEnv, FsChecks::Skip).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config invalid; config: must exist and be readable"
    );

    let garbage = dir.write("garbage.yaml", "key: [SECRETMARKER\n", 0o600);
    let err = load_file(&garbage, &Overrides::default(), &NoEnv, FsChecks::Check).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config invalid; config: must be a readable YAML document"
    );

    let huge = dir.0.join("huge.yaml");
    fs::write(&huge, "#".repeat((1 << 20) + 1)).unwrap();
    let err = load_file(&huge, &Overrides::default(), &NoEnv, FsChecks::Skip).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config invalid; config: must not be larger than 1 MiB"
    );

    // A FIFO would block a plain open until a writer came; /dev/zero never ends.
    let fifo = dir.0.join("fifo.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for special in [fifo.as_path(), Path::new("/dev/zero")] {
        let err = load_file(special, &Overrides::default(), &NoEnv, FsChecks::Skip).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config invalid; config: must be a regular file"
        );
    }

    let binary = dir.0.join("binary.yaml");
    fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    let err = load_file(&binary, &Overrides::default(), &NoEnv, FsChecks::Skip).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config invalid; config: must be a readable YAML document"
    );
}

#[test]
fn load_file_refuses_symlinked_or_relative_config_when_checking() {
    let dir = TempDir::new();
    let real = dir.write("real.yaml", SAMPLE, 0o600);
    let link = dir.0.join("link.yaml");
    symlink(&real, &link).unwrap();
    let got = file_problems(&link, FsChecks::Check);
    assert_eq!(got.first(), Some(&p("config", "must not be a symlink")));

    let relative = Path::new("definitely-not-here/config.yaml");
    assert_eq!(
        file_problems(relative, FsChecks::Check),
        vec![p("config", "must exist and be readable")]
    );
}
