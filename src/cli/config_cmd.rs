//! `config` and `config schema` (spec CLI §2.2).
//!
//! `config` prints the effective configuration summary (file + environment +
//! flags, validated without host checks) and its `cfg1.` identity
//! fingerprint; `config schema` prints the JSON Schema of the file.

use super::{Failure, Global, write_stdout};
use crate::config::{CONFIG_SCHEMA, Config, FsChecks};

#[derive(Debug, clap::Subcommand)]
pub enum ConfigSub {
    /// Print the JSON Schema (draft 2020-12) of the config file
    Schema,
}

pub fn run(global: &Global, sub: Option<&ConfigSub>) -> Result<(), Failure> {
    match sub {
        None => write_stdout(&summary(&global.load_config(FsChecks::Skip)?)),
        Some(ConfigSub::Schema) => write_stdout(&schema()),
    }
}

/// The reference's `key: value` summary lines, in its order.
fn summary(config: &Config) -> String {
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
fn schema() -> String {
    format!("{}\n", CONFIG_SCHEMA.trim_end())
}
