//! Provider configuration: loading, validation and the typed model (spec config §1).
//!
//! Loading is one pass that collects every problem before failing:
//! parse YAML → strictly decode known keys with defaults (`raw`) → apply flag
//! and environment overrides (`env`) → validate values and relationships
//! (`validate`) → optionally check the host filesystem (`files`) → narrow into
//! [`Config`]. Problems name fields, never values, because the error text is
//! logged and printed.

mod duration;
mod env;
mod error;
pub mod files;
pub mod fingerprint;
mod model;
mod raw;
pub mod rules;
mod schema;
mod validate;
mod yaml;

use std::collections::BTreeSet;
use std::path::Path;

use crate::regular_file;

pub use duration::parse_go_duration;
pub use env::{DEFAULT_CONFIG_PATH, Env, NoEnv, Overrides, ProcessEnv, config_path};
pub use error::{ConfigError, Problem};
pub use fingerprint::IdentityFields;
pub use model::{
    AuthConfig, AuthMethod, BootstrapConfig, CertConfig, Config, DebugCorrelationConfig, JwtConfig,
    JwtSource, KeyIdScope, LogFormat, LogLevel, LoggingConfig, OAuth2Config, OpenBaoConfig,
    Pkcs11Config, RotationConfig, ServerConfig, StateConfig, StatusConfig, TransitConfig,
};
pub use raw::{
    DEFAULT_CONFIG_VERSION, DEFAULT_HEALTH_ADDRESS, DEFAULT_METRICS_ADDRESS, DEFAULT_SOCKET_MODE,
    DEFAULT_SOCKET_PATH, DEFAULT_STATE_PATH,
};
pub use schema::CONFIG_SCHEMA;

/// Whether loading also inspects the host filesystem (spec §1.4). Only
/// `serve` and `doctor` ask for it: other commands run on machines where the
/// provider's files need not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsChecks {
    Skip,
    Check,
}

/// Reads, validates and (with [`FsChecks::Check`]) host-checks the config file
/// at `path`, including the file's own permissions (field `config`).
pub fn load_file(
    path: &Path,
    overrides: &Overrides,
    env: &dyn Env,
    fs: FsChecks,
) -> Result<Config, ConfigError> {
    load_file_staged(path, overrides, env, fs).map_err(|(_, e)| e)
}

/// Which part of loading failed, for `doctor`'s separate `config.load` and
/// `config.validate` checks. The problems are the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStage {
    /// Unreadable, not YAML, unknown keys, wrong types, no `configVersion`.
    Load,
    /// Values, relationships and (when asked) the host filesystem.
    Validate,
}

/// [`load_file`], also telling which stage failed.
pub fn load_file_staged(
    path: &Path,
    overrides: &Overrides,
    env: &dyn Env,
    fs: FsChecks,
) -> Result<Config, (LoadStage, ConfigError)> {
    // A mistaken `--config /dev/zero`, a FIFO or a huge file is refused
    // at once: it must neither block nor exhaust memory.
    let bytes = regular_file::read(path)
        .map_err(|e| (LoadStage::Load, single("config", &e.to_string())))?;
    let fs_checks_for = (fs == FsChecks::Check).then_some(path);
    load(&bytes, overrides, env, fs_checks_for)
}

/// Validates in-memory YAML; no filesystem checks.
pub fn load_str(yaml: &str, overrides: &Overrides, env: &dyn Env) -> Result<Config, ConfigError> {
    load(yaml.as_bytes(), overrides, env, None).map_err(|(_, e)| e)
}

/// Runs filesystem checks only when given the config file's path.
fn load(
    bytes: &[u8],
    overrides: &Overrides,
    env: &dyn Env,
    fs_checks_for: Option<&Path>,
) -> Result<Config, (LoadStage, ConfigError)> {
    let load_error = |message| (LoadStage::Load, single("config", message));
    // The parser's error text can quote the document, so it is dropped.
    let Ok(doc) = serde_norway::from_slice::<serde_norway::Value>(bytes) else {
        return Err(load_error("must be a readable YAML document"));
    };
    let root = match &doc {
        serde_norway::Value::Mapping(map) => Some(map),
        serde_norway::Value::Null => None,
        _ => return Err(load_error("must be a YAML mapping")),
    };
    let mut walk = yaml::Walk::new();
    let mut raw = raw::decode(root, &mut walk);
    env::apply(&mut raw, overrides, env);

    let mut problems = walk.into_problems();
    // Decoding problems and a missing configVersion are load failures in
    // the reference; everything after is validation.
    let stage = if problems.is_empty() && raw.config_version.is_some() {
        LoadStage::Validate
    } else {
        LoadStage::Load
    };
    // A field that could not be decoded already has its problem; its default
    // would only add a misleading second one ("is required").
    let undecodable: BTreeSet<String> = problems.iter().map(|p| p.field.clone()).collect();
    problems.extend(
        validate::validate(&raw)
            .into_iter()
            .filter(|p| !undecodable.contains(&p.field)),
    );
    if let Some(config_file) = fs_checks_for {
        problems.extend(files::check_all(&raw, config_file));
    }
    if problems.is_empty() {
        Ok(validate::build(raw))
    } else {
        Err((stage, ConfigError { problems }))
    }
}

fn single(field: &str, message: &str) -> ConfigError {
    ConfigError {
        problems: vec![Problem::new(field, message)],
    }
}

#[cfg(test)]
mod tests;
