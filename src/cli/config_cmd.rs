//! `config` and `config schema` (spec CLI §2.2).
//!
//! `config` prints the effective configuration summary (file + environment +
//! flags, validated without host checks) and its `cfg1.` identity
//! fingerprint; `config schema` prints the JSON Schema of the file.

use crate::config::{CONFIG_SCHEMA, Config};

/// The reference's `key: value` summary lines, in its order.
pub fn summary(config: &Config) -> String {
    let lines = [
        ("configVersion", config.config_version.clone()),
        (
            "socketPath",
            config.server.socket_path.to_string_lossy().into_owned(),
        ),
        ("metricsAddress", config.server.metrics_address.clone()),
        ("healthAddress", config.server.health_address.clone()),
        ("authMethod", config.auth.method.as_str().to_owned()),
        ("identityFingerprint", config.identity_fingerprint()),
    ];
    lines
        .iter()
        .map(|(key, value)| format!("{key}: {value}\n"))
        .collect()
}

/// The schema with exactly one trailing newline.
pub fn schema() -> String {
    format!("{}\n", CONFIG_SCHEMA.trim_end())
}
