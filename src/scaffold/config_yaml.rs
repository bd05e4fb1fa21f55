//! Renders a validated [`Config`] as a complete config file: every setting
//! explicit, so a node's behaviour never depends on the defaults of the
//! binary version that reads it (spec CLI §2.2 `init`, `config.yaml`).
//!
//! Strings are written as double-quoted YAML scalars (JSON string syntax), so
//! values such as `"0660"`, `"1234"` or a hex lineage id can never be read
//! back as numbers. Durations use the largest unit that is exact.

use crate::config::{AuthMethod, Config, JwtSource};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// A YAML double-quoted scalar.
pub fn quote(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

fn list(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| quote(v)).collect();
    format!("[{}]", items.join(", "))
}

/// `0s`, else the largest of `h`, `m`, `s`, `ms`, `us`, `ns` that divides
/// the duration exactly (so `90s` stays `90s`, `1h` is not `60m`).
pub fn duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    const UNITS: [(&str, u128); 6] = [
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    UNITS
        .iter()
        .find(|(_, size)| nanos.is_multiple_of(*size))
        .map(|(unit, size)| format!("{}{unit}", nanos / size))
        .unwrap_or_default()
}

/// The whole file. `writeln!` into a `String` cannot fail.
pub fn render(config: &Config, header: &str) -> String {
    let mut o = String::new();
    let c = config;
    let _ = writeln!(o, "{header}");
    let _ = writeln!(o, "configVersion: {}", quote(&c.config_version));
    let s = &c.server;
    let _ = writeln!(o, "server:");
    let _ = writeln!(o, "  socketPath: {}", quote_path(&s.socket_path));
    let _ = writeln!(o, "  socketMode: \"{:04o}\"", s.socket_mode);
    let _ = writeln!(o, "  socketGroup: {}", quote(&s.socket_group));
    let _ = writeln!(o, "  metricsAddress: {}", quote(&s.metrics_address));
    let _ = writeln!(o, "  healthAddress: {}", quote(&s.health_address));
    let _ = writeln!(o, "  maxConcurrentStatus: {}", s.max_concurrent_status);
    let _ = writeln!(o, "  maxConcurrentEncrypt: {}", s.max_concurrent_encrypt);
    let _ = writeln!(o, "  maxConcurrentDecrypt: {}", s.max_concurrent_decrypt);
    let b = &c.openbao;
    let _ = writeln!(o, "openbao:");
    let _ = writeln!(o, "  address: {}", quote(&b.address));
    let _ = writeln!(o, "  namespace: {}", quote(&b.namespace));
    let _ = writeln!(o, "  caCertFile: {}", quote_path(&b.ca_cert_file));
    let _ = writeln!(o, "  tlsServerName: {}", quote(&b.tls_server_name));
    let _ = writeln!(o, "  timeout: {}", duration(b.timeout));
    let _ = writeln!(o, "  instanceId: {}", quote(&b.instance_id));
    let a = &c.auth;
    let _ = writeln!(o, "auth:");
    let _ = writeln!(o, "  method: {}", a.method.as_str());
    let _ = writeln!(
        o,
        "  loginBeforeTokenExpiry: {}",
        duration(a.login_before_token_expiry)
    );
    let _ = writeln!(
        o,
        "  tokenRenewalIncrement: {}",
        duration(a.token_renewal_increment)
    );
    let _ = writeln!(o, "  loginTimeout: {}", duration(a.login_timeout));
    match a.method {
        AuthMethod::Jwt => render_jwt(&mut o, config),
        AuthMethod::Cert => render_cert(&mut o, config),
    }
    let t = &c.transit;
    let _ = writeln!(o, "transit:");
    let _ = writeln!(o, "  mountPath: {}", quote(&t.mount_path));
    let _ = writeln!(o, "  keyName: {}", quote(&t.key_name));
    let _ = writeln!(o, "  keyIdScope:");
    let k = &t.key_id_scope;
    let _ = writeln!(o, "    providerName: {}", quote(&k.provider_name));
    let _ = writeln!(o, "    clusterId: {}", quote(&k.cluster_id));
    let _ = writeln!(o, "    transitMountId: {}", quote(&k.transit_mount_id));
    let _ = writeln!(o, "    keyLineageId: {}", quote(&k.key_lineage_id));
    let _ = writeln!(o, "bootstrap:");
    let _ = writeln!(o, "  graceTimeout: {}", duration(c.bootstrap.grace_timeout));
    let _ = writeln!(
        o,
        "  retryInterval: {}",
        duration(c.bootstrap.retry_interval)
    );
    let st = &c.status;
    let _ = writeln!(o, "status:");
    let _ = writeln!(o, "  probeInterval: {}", duration(st.probe_interval));
    let _ = writeln!(
        o,
        "  deepProbeInterval: {}",
        duration(st.deep_probe_interval)
    );
    let _ = writeln!(
        o,
        "  statusMaxStaleness: {}",
        duration(st.status_max_staleness)
    );
    let _ = writeln!(o, "state:");
    let _ = writeln!(o, "  path: {}", quote_path(&c.state.path));
    let r = &c.rotation;
    let _ = writeln!(o, "rotation:");
    let _ = writeln!(o, "  mode: {}", quote(&r.mode));
    let _ = writeln!(o, "  activationDelay: {}", duration(r.activation_delay));
    let _ = writeln!(
        o,
        "  requireStableObservationCount: {}",
        r.require_stable_observation_count
    );
    let _ = writeln!(o, "  rejectVersionRollback: {}", r.reject_version_rollback);
    let l = &c.logging;
    let _ = writeln!(o, "logging:");
    let _ = writeln!(o, "  level: {}", l.level.as_str());
    let _ = writeln!(o, "  format: {}", l.format.as_str());
    let _ = writeln!(o, "  logOpenBaoRequestIDs: {}", l.log_openbao_request_ids);
    let _ = writeln!(o, "  debugCorrelation:");
    let d = &l.debug_correlation;
    let _ = writeln!(o, "    enabled: {}", d.enabled);
    let _ = writeln!(o, "    ttl: {}", duration(d.ttl));
    let _ = writeln!(o, "    incidentId: {}", quote(&d.incident_id));
    o
}

fn render_jwt(o: &mut String, config: &Config) {
    let j = &config.auth.jwt;
    let _ = writeln!(o, "  jwt:");
    let _ = writeln!(o, "    source: {}", j.source.as_str());
    let _ = writeln!(o, "    mountPath: {}", quote(&j.mount_path));
    let _ = writeln!(o, "    role: {}", quote(&j.role));
    if !j.jwt_file.as_os_str().is_empty() {
        let _ = writeln!(o, "    jwtFile: {}", quote_path(&j.jwt_file));
    }
    let _ = writeln!(o, "    minRemainingTtl: {}", duration(j.min_remaining_ttl));
    let _ = writeln!(o, "    clockSkewLeeway: {}", duration(j.clock_skew_leeway));
    let _ = writeln!(o, "    expectedIssuer: {}", quote(&j.expected_issuer));
    let _ = writeln!(o, "    expectedAudience: {}", list(&j.expected_audience));
    let _ = writeln!(o, "    expectedSubject: {}", quote(&j.expected_subject));
    if let (JwtSource::OAuth2, Some(oa)) = (j.source, &j.oauth2) {
        let _ = writeln!(o, "    oauth2:");
        let _ = writeln!(o, "      tokenUrl: {}", quote(&oa.token_url));
        let _ = writeln!(o, "      clientId: {}", quote(&oa.client_id));
        let _ = writeln!(
            o,
            "      clientSecretFile: {}",
            quote_path(&oa.client_secret_file)
        );
        let _ = writeln!(o, "      authMethod: {}", quote(&oa.auth_method));
        let _ = writeln!(o, "      scopes: {}", list(&oa.scopes));
        let _ = writeln!(o, "      audience: {}", quote(&oa.audience));
        let _ = writeln!(o, "      resources: {}", list(&oa.resources));
        if let Some(ca) = &oa.ca_cert_file {
            let _ = writeln!(o, "      caCertFile: {}", quote_path(ca));
        }
    }
}

fn render_cert(o: &mut String, config: &Config) {
    let c = &config.auth.cert;
    let p = &c.pkcs11;
    let _ = writeln!(o, "  cert:");
    let _ = writeln!(o, "    mountPath: {}", quote(&c.mount_path));
    let _ = writeln!(o, "    name: {}", quote(&c.name));
    let _ = writeln!(o, "    minRemainingTtl: {}", duration(c.min_remaining_ttl));
    let _ = writeln!(o, "    clockSkewLeeway: {}", duration(c.clock_skew_leeway));
    let _ = writeln!(o, "    source: {}", quote(&c.source));
    let _ = writeln!(o, "    pkcs11:");
    let _ = writeln!(
        o,
        "      certificateFile: {}",
        quote_path(&p.certificate_file)
    );
    let _ = writeln!(o, "      modulePath: {}", quote_path(&p.module_path));
    let _ = writeln!(o, "      tokenLabel: {}", quote(&p.token_label));
    let _ = writeln!(o, "      keyLabel: {}", quote(&p.key_label));
    let _ = writeln!(o, "      pinFile: {}", quote_path(&p.pin_file));
    let _ = writeln!(o, "      maxSessions: {}", p.max_sessions);
}

#[cfg(test)]
mod tests {
    use super::{duration, render};
    use crate::config::{NoEnv, Overrides, load_str};
    use std::time::Duration;

    #[test]
    fn durations_use_the_largest_exact_unit() {
        let cases = [
            (0, "0s"),
            (3_600_000_000_000, "1h"),
            (5_400_000_000_000, "90m"),
            (90_000_000_000, "90s"),
            (120_000_000_000, "2m"),
            (500_000_000, "500ms"),
            (1_500, "1500ns"),
            (2_000, "2us"),
        ];
        for (nanos, text) in cases {
            assert_eq!(duration(Duration::from_nanos(nanos)), text);
        }
    }

    const VALUES: &str = r#"configVersion: v1alpha1
server: {socketGroup: "1234"}
openbao:
  address: https://bao.example.internal:8200
  caCertFile: /etc/openbao-kms/tls/ca.crt
  tlsServerName: bao.example.internal
  instanceId: bao-prod-a
  namespace: admin/a
auth:
  jwt:
    mountPath: auth/jwt
    role: r
    jwtFile: /var/lib/openbao-kms/identity.jwt
transit:
  mountPath: transit
  keyName: k
  keyIdScope: {providerName: p, clusterId: c, transitMountId: m, keyLineageId: "0123"}
bootstrap: {graceTimeout: 90s}
"#;

    #[test]
    fn rendered_config_reloads_to_the_same_identity() {
        let config = load_str(VALUES, &Overrides::default(), &NoEnv).unwrap();
        let text = render(&config, "# test");
        let again = load_str(&text, &Overrides::default(), &NoEnv).unwrap();
        assert_eq!(again.identity_fingerprint(), config.identity_fingerprint());
        assert!(text.contains("  graceTimeout: 90s\n"));
        assert!(text.contains("  socketMode: \"0660\"\n"));
        assert!(text.contains("  socketGroup: \"1234\"\n"));
        assert!(text.contains("    keyLineageId: \"0123\"\n"));
        assert!(text.contains("    expectedAudience: []\n"));
        assert!(!text.contains("oauth2"));
        assert!(!text.contains("cert:"));
        // Rendering is a fixed point.
        assert_eq!(render(&again, "# test"), text);
    }
}
