//! kube-apiserver `EncryptionConfiguration` files: strict parsing, the checks
//! of spec config §6 against the provider config, and the two files `init`
//! generates (readers phase and writers phase).
//!
//! The file may hold inline key material (`aescbc`, `aesgcm`, `secretbox`), so
//! parse errors are reported as one fixed sentence that never echoes the
//! document, secrets live in [`SecretString`], and problems name fields only.

use crate::config::{Config, parse_go_duration, rules};
use crate::secret::SecretString;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::Path;

pub const API_VERSION: &str = "apiserver.config.k8s.io/v1";
pub const KIND: &str = "EncryptionConfiguration";
/// The KMS timeout written into generated files.
pub const GENERATED_TIMEOUT: &str = "3s";

/// A parsed EncryptionConfiguration. Only the fields the checks need are
/// typed; unknown fields anywhere are a parse error, as in the reference.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfiguration {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resources: Vec<ResourceConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceConfig {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<ProviderConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfig {
    kms: Option<KmsConfig>,
    identity: Option<IdentityConfig>,
    aescbc: Option<SymmetricConfig>,
    aesgcm: Option<SymmetricConfig>,
    secretbox: Option<SymmetricConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityConfig {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SymmetricConfig {
    #[serde(default)]
    keys: Vec<SymmetricKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SymmetricKey {
    #[serde(default)]
    name: String,
    #[serde(default, deserialize_with = "secret")]
    secret: SecretString,
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    Ok(SecretString::new(String::deserialize(d)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KmsConfig {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    endpoint: String,
    timeout: Option<String>,
    cachesize: Option<i64>,
}

impl fmt::Debug for EncryptionConfiguration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionConfiguration")
            .field("resources", &self.resources.len())
            .finish_non_exhaustive()
    }
}

/// Why a file is not acceptable. Displays as the reference's one line:
/// `encryption configuration invalid; <field>: <message>; ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionConfigError {
    pub problems: Vec<(String, String)>,
}

impl EncryptionConfigError {
    pub const KIND: &'static str = "encryption configuration invalid";

    fn single(message: &str) -> Self {
        Self {
            problems: vec![(String::new(), message.to_owned())],
        }
    }
}

impl fmt::Display for EncryptionConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::KIND)?;
        for (field, message) in &self.problems {
            if field.is_empty() {
                write!(f, ": {message}")?;
            } else {
                write!(f, "; {field}: {message}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for EncryptionConfigError {}

/// Whether an `identity` provider is tolerated (doctor: yes, with a warning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityFallback {
    Allow,
    Reject,
}

/// What an accepted file looks like, for the caller's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Findings {
    /// An `identity` provider is configured: data written through it (or
    /// before KMS was enabled) stays in clear text in etcd.
    pub identity_fallback: bool,
}

const MALFORMED: &str = "malformed YAML or unsupported field";

/// Parses exactly one YAML document, strictly.
pub fn parse(bytes: &[u8]) -> Result<EncryptionConfiguration, EncryptionConfigError> {
    // The parser's message could quote inline key material; it is dropped.
    serde_norway::from_slice(bytes).map_err(|_| EncryptionConfigError::single(MALFORMED))
}

/// Reads and parses a file (size-capped). Read errors name no path.
pub fn read(path: &Path) -> Result<EncryptionConfiguration, EncryptionConfigError> {
    use crate::regular_file::ReadError;
    let bytes = crate::regular_file::read(path).map_err(|e| match e {
        ReadError::TooLarge => EncryptionConfigError::single("file is larger than 1 MiB"),
        ReadError::NotRegular | ReadError::Unreadable => {
            EncryptionConfigError::single(&format!("file {e}"))
        }
    })?;
    parse(&bytes)
}

/// The expected provider: `transit.keyIdScope.providerName` and `server.socketPath`.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub provider_name: &'a str,
    pub socket_path: &'a str,
}

impl<'a> Expected<'a> {
    /// `None` when the socket path is not UTF-8 (it cannot be in a YAML URL).
    pub fn from_config(config: &'a Config) -> Option<Self> {
        Some(Self {
            provider_name: &config.transit.key_id_scope.provider_name,
            socket_path: config.server.socket_path.to_str()?,
        })
    }
}

/// Runs every check of spec config §6, collecting all problems.
pub fn check(
    file: &EncryptionConfiguration,
    expected: Expected<'_>,
    identity: IdentityFallback,
) -> Result<Findings, EncryptionConfigError> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let mut add = |field: String, message: &str| problems.push((field, message.to_owned()));
    if file.api_version != API_VERSION {
        add(
            "encryptionConfig.apiVersion".into(),
            "must be apiserver.config.k8s.io/v1",
        );
    }
    if file.kind != KIND {
        add(
            "encryptionConfig.kind".into(),
            "must be EncryptionConfiguration",
        );
    }
    if file.resources.is_empty() {
        add(
            "encryptionConfig.resources".into(),
            "must contain at least one entry",
        );
    }
    let mut any_kms = false;
    let mut configured_seen = false;
    let mut identity_seen = false;
    for (i, resource) in file.resources.iter().enumerate() {
        let at = format!("encryptionConfig.resources[{i}]");
        if resource.resources.is_empty() {
            add(format!("{at}.resources"), "must not be empty");
        }
        if resource.providers.is_empty() {
            add(format!("{at}.providers"), "must not be empty");
        }
        for (j, provider) in resource.providers.iter().enumerate() {
            let at = format!("{at}.providers[{j}]");
            let kinds = [
                provider.kms.is_some(),
                provider.identity.is_some(),
                provider.aescbc.is_some(),
                provider.aesgcm.is_some(),
                provider.secretbox.is_some(),
            ];
            if kinds.iter().filter(|set| **set).count() != 1 {
                add(at.clone(), "must configure exactly one provider type");
            }
            if provider.identity.is_some() {
                identity_seen = true;
                if identity == IdentityFallback::Reject {
                    add(format!("{at}.identity"), "identity fallback is not allowed");
                }
            }
            for (name, symmetric) in [
                ("aescbc", &provider.aescbc),
                ("aesgcm", &provider.aesgcm),
                ("secretbox", &provider.secretbox),
            ] {
                if let Some(symmetric) = symmetric {
                    check_symmetric(&format!("{at}.{name}"), symmetric, &mut add);
                }
            }
            if let Some(kms) = &provider.kms {
                any_kms = true;
                let at = format!("{at}.kms");
                let configured = check_kms(&at, kms, expected, &mut add);
                configured_seen |= configured;
            }
        }
    }
    if !any_kms {
        add(
            "encryptionConfig.resources".into(),
            "must include a KMS provider",
        );
    } else if !configured_seen {
        add(
            "encryptionConfig.resources".into(),
            "must include the configured KMS provider",
        );
    }
    if problems.is_empty() {
        Ok(Findings {
            identity_fallback: identity_seen,
        })
    } else {
        Err(EncryptionConfigError { problems })
    }
}

fn check_symmetric(at: &str, symmetric: &SymmetricConfig, add: &mut impl FnMut(String, &str)) {
    if symmetric.keys.is_empty() {
        add(format!("{at}.keys"), "must contain at least one key");
    }
    for (k, key) in symmetric.keys.iter().enumerate() {
        if key.name.is_empty() {
            add(format!("{at}.keys[{k}].name"), "is required");
        }
        if key.secret.is_empty() {
            add(format!("{at}.keys[{k}].secret"), "is required");
        }
    }
}

/// Checks one KMS entry; returns whether it is the configured provider.
fn check_kms(
    at: &str,
    kms: &KmsConfig,
    expected: Expected<'_>,
    add: &mut impl FnMut(String, &str),
) -> bool {
    if kms.name.is_empty() {
        add(format!("{at}.name"), "is required");
    }
    if !matches!(kms.api_version.as_str(), "" | "v1" | "v2") {
        add(format!("{at}.apiVersion"), "must be v1 or v2");
    }
    if kms.api_version == "v2" && kms.cachesize.is_some() {
        add(
            format!("{at}.cachesize"),
            "is only allowed for KMS v1 providers",
        );
    }
    let socket = unix_endpoint_path(&kms.endpoint);
    if socket.is_none() {
        add(
            format!("{at}.endpoint"),
            "must be a unix:// URL with an absolute socket path",
        );
    }
    if let Some(timeout) = &kms.timeout
        && parse_go_duration(timeout).is_none_or(|nanos| nanos <= 0)
    {
        add(format!("{at}.timeout"), "must be a positive duration");
    }
    if kms.name != expected.provider_name {
        return false;
    }
    if kms.api_version != "v2" {
        add(
            format!("{at}.apiVersion"),
            "must be v2 for the configured provider",
        );
    }
    if socket.is_some_and(|path| path != expected.socket_path) {
        add(format!("{at}.endpoint"), "must match server.socketPath");
    }
    true
}

/// The socket path of a `unix:` URL with no host (`unix:///run/x.sock`),
/// like Go's `url.Parse` followed by the reference's host/path checks. A
/// query, fragment or percent escape is refused: the apiserver would dial a
/// different file than the one compared here.
fn unix_endpoint_path(endpoint: &str) -> Option<&str> {
    let url = rules::split_url(endpoint)?;
    let ok = url.scheme == "unix"
        && url.opaque.is_none()
        && url.userinfo.is_none()
        && url.host.is_empty()
        && url.path.starts_with('/')
        && url.query.is_none()
        && url.fragment.is_none()
        && !url.path.contains('%');
    ok.then_some(url.path)
}

/// Provider order of a generated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Phase 1, rolled out to every apiserver first: `[identity, kms]` —
    /// still writes in clear, but can already read KMS-encrypted data.
    Readers,
    /// Phase 2: `[kms, identity]` — writes through KMS, reads old data.
    Writers,
}

/// A generated EncryptionConfiguration for the configured provider.
pub fn render(provider_name: &str, socket_path: &str, phase: Phase) -> String {
    let kms = format!(
        "      - kms:\n          apiVersion: v2\n          name: {}\n          endpoint: {}\n          timeout: {GENERATED_TIMEOUT}\n",
        yaml_scalar(provider_name),
        yaml_scalar(&format!("unix://{socket_path}")),
    );
    let identity = "      - identity: {}\n";
    let providers = match phase {
        Phase::Readers => format!("{identity}{kms}"),
        Phase::Writers => format!("{kms}{identity}"),
    };
    format!(
        "apiVersion: {API_VERSION}\nkind: {KIND}\nresources:\n  - resources:\n      - secrets\n    providers:\n{providers}"
    )
}

/// A double-quoted YAML scalar (JSON string syntax is valid YAML).
fn yaml_scalar(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCKET: &str = "/run/openbao-kms/kms.sock";
    const NAME: &str = "openbao-kms-workload-a";

    fn expected() -> Expected<'static> {
        Expected {
            provider_name: NAME,
            socket_path: SOCKET,
        }
    }

    fn check_text(text: &str) -> Result<Findings, EncryptionConfigError> {
        check(
            &parse(text.as_bytes())?,
            expected(),
            IdentityFallback::Allow,
        )
    }

    fn fields(err: &EncryptionConfigError) -> Vec<&str> {
        err.problems.iter().map(|(f, _)| f.as_str()).collect()
    }

    const GOOD: &str = "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          apiVersion: v2
          name: openbao-kms-workload-a
          endpoint: unix:///run/openbao-kms/kms.sock
          timeout: 3s
";

    #[test]
    fn accepts_the_configured_v2_provider() {
        assert_eq!(
            check_text(GOOD),
            Ok(Findings {
                identity_fallback: false
            })
        );
    }

    #[test]
    fn identity_is_a_warning_or_an_error_by_mode() {
        let text = format!("{GOOD}      - identity: {{}}\n");
        assert_eq!(
            check_text(&text),
            Ok(Findings {
                identity_fallback: true
            })
        );
        let strict = check(
            &parse(text.as_bytes()).unwrap(),
            expected(),
            IdentityFallback::Reject,
        )
        .unwrap_err();
        assert_eq!(
            strict.to_string(),
            "encryption configuration invalid; encryptionConfig.resources[0].providers[1].identity: identity fallback is not allowed"
        );
    }

    #[test]
    fn generated_phases_pass_and_order_providers() {
        let readers = render(NAME, SOCKET, Phase::Readers);
        let writers = render(NAME, SOCKET, Phase::Writers);
        for text in [&readers, &writers] {
            assert_eq!(
                check_text(text),
                Ok(Findings {
                    identity_fallback: true
                }),
                "{text}"
            );
        }
        assert!(readers.find("identity").unwrap() < readers.find("kms").unwrap());
        assert!(writers.find("kms").unwrap() < writers.find("identity").unwrap());
        assert!(writers.contains("timeout: 3s\n"));
        assert!(writers.contains("endpoint: \"unix:///run/openbao-kms/kms.sock\"\n"));
    }

    #[test]
    fn configured_provider_must_be_v2_on_the_socket() {
        let v1 = GOOD.replace("apiVersion: v2", "apiVersion: v1");
        assert_eq!(
            fields(&check_text(&v1).unwrap_err()),
            ["encryptionConfig.resources[0].providers[0].kms.apiVersion"]
        );
        let other_socket = GOOD.replace("kms.sock", "other.sock");
        let err = check_text(&other_socket).unwrap_err();
        assert_eq!(
            err.to_string(),
            "encryption configuration invalid; encryptionConfig.resources[0].providers[0].kms.endpoint: must match server.socketPath"
        );
        let other_name = GOOD.replace("workload-a", "workload-b");
        assert_eq!(
            check_text(&other_name).unwrap_err().problems[0].1,
            "must include the configured KMS provider"
        );
    }

    #[test]
    fn migration_files_with_other_providers_first_are_accepted() {
        let text = "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets, configmaps]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: c2VjcmV0IGlzIHNlY3VyZQ==
      - kms:
          apiVersion: v2
          name: old-provider
          endpoint: unix:///run/other/kms.sock
      - kms:
          apiVersion: v2
          name: openbao-kms-workload-a
          endpoint: unix:///run/openbao-kms/kms.sock
";
        assert!(check_text(text).is_ok());
    }

    #[test]
    fn endpoint_shapes() {
        assert_eq!(
            unix_endpoint_path("unix:///run/openbao-kms/kms.sock"),
            Some(SOCKET)
        );
        for bad in [
            "unix://run/openbao-kms/kms.sock",
            "unix:run/kms.sock",
            "tcp:///run/openbao-kms/kms.sock",
            "/run/openbao-kms/kms.sock",
            "unix://",
            "unix:///run/openbao-kms/kms.sock?x=1",
            "unix:///run/openbao-kms/kms%2esock",
        ] {
            assert_eq!(unix_endpoint_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_rule_is_reported_in_one_pass() {
        let text = "apiVersion: v1
kind: Other
resources:
  - resources: []
    providers:
      - kms:
          apiVersion: v3
          name: ''
          endpoint: unix://host/x
          timeout: 0s
      - kms:
          apiVersion: v2
          name: x
          endpoint: unix:///x
          cachesize: 10
      - {}
      - aesgcm:
          keys: [{name: '', secret: ''}]
      - secretbox: {}
";
        let err = check_text(text).unwrap_err();
        assert_eq!(
            fields(&err),
            [
                "encryptionConfig.apiVersion",
                "encryptionConfig.kind",
                "encryptionConfig.resources[0].resources",
                "encryptionConfig.resources[0].providers[0].kms.name",
                "encryptionConfig.resources[0].providers[0].kms.apiVersion",
                "encryptionConfig.resources[0].providers[0].kms.endpoint",
                "encryptionConfig.resources[0].providers[0].kms.timeout",
                "encryptionConfig.resources[0].providers[1].kms.cachesize",
                "encryptionConfig.resources[0].providers[2]",
                "encryptionConfig.resources[0].providers[3].aesgcm.keys[0].name",
                "encryptionConfig.resources[0].providers[3].aesgcm.keys[0].secret",
                "encryptionConfig.resources[0].providers[4].secretbox.keys",
                "encryptionConfig.resources",
            ]
        );
        assert_eq!(
            err.problems.last().unwrap().1,
            "must include the configured KMS provider"
        );
    }

    #[test]
    fn parse_errors_never_echo_the_document() {
        let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA==";
        for text in [
            format!(
                "{GOOD}      - aescbc:\n          keys: [{{name: k, secret: {secret}, extra: 1}}]\n"
            ),
            format!("{GOOD}unknown: {secret}\n"),
            format!("{GOOD}---\n{GOOD}"),
            "resources: [".to_owned(),
            format!("{GOOD}      - identity: {{x: {secret}}}\n"),
        ] {
            let err = match parse(text.as_bytes()) {
                Ok(_) => panic!("accepted: {text}"),
                Err(e) => e,
            };
            assert_eq!(
                err.to_string(),
                "encryption configuration invalid: malformed YAML or unsupported field"
            );
        }
        let parsed = parse(
            format!("{GOOD}      - aescbc:\n          keys: [{{name: k, secret: {secret}}}]\n")
                .as_bytes(),
        )
        .unwrap();
        assert!(!format!("{parsed:?}").contains(secret));
    }

    #[test]
    fn a_bare_number_timeout_is_not_a_duration() {
        // Like Go's yaml.v3, the scalar decodes as the string "3", which
        // then fails the duration rule.
        let wrong = GOOD.replace("timeout: 3s", "timeout: 3");
        assert_eq!(
            fields(&check_text(&wrong).unwrap_err()),
            ["encryptionConfig.resources[0].providers[0].kms.timeout"]
        );
    }
}
