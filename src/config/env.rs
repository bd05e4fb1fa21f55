//! Command-line and environment overrides (spec config §1.1.1, §1.1.8–10).
//!
//! Only three settings can be overridden, and never secrets or identity:
//! changing those outside the file would make nodes disagree silently.
//! Precedence is flag (when given) > environment > file > default.

use std::path::{Path, PathBuf};

use super::raw::RawConfig;

/// The config path used when neither `--config` nor the environment names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/openbao-kms/config.yaml";

const CONFIG_PATH_VARS: [&str; 2] = ["BAO_KMS_PROVIDER_CONFIG", "BAO_KMS_PROVIDER_CONFIG_PATH"];
const LOG_LEVEL_VARS: [&str; 2] = [
    "BAO_KMS_PROVIDER_LOG_LEVEL",
    "BAO_KMS_PROVIDER_LOGGING_LEVEL",
];
const METRICS_ADDRESS_VARS: [&str; 2] = [
    "BAO_KMS_PROVIDER_SERVER_METRICS_ADDRESS",
    "BAO_KMS_PROVIDER_SERVER_METRICSADDRESS",
];
const HEALTH_ADDRESS_VARS: [&str; 2] = [
    "BAO_KMS_PROVIDER_SERVER_HEALTH_ADDRESS",
    "BAO_KMS_PROVIDER_SERVER_HEALTHADDRESS",
];

/// Values given on the command line (highest precedence). `Some` means the
/// flag was given, even with an empty value (an empty address disables a
/// listener).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub log_level: Option<String>,
    pub metrics_address: Option<String>,
    pub health_address: Option<String>,
}

/// Env lookup seam so tests need not mutate the process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// An empty environment, for loaders that must ignore ambient overrides
/// (`init` renders the same output on every host).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn var(&self, _name: &str) -> Option<String> {
        None
    }
}

/// The first of `names` that is set to a non-empty value. Empty counts as
/// unset, as in the reference (Viper ignores empty environment values).
fn first_set(env: &dyn Env, names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|name| env.var(name))
        .find(|value| !value.is_empty())
}

/// The config file path: `--config`, else `BAO_KMS_PROVIDER_CONFIG`, else
/// `BAO_KMS_PROVIDER_CONFIG_PATH`, else [`DEFAULT_CONFIG_PATH`]. An empty
/// flag value counts as not given.
pub fn config_path(flag: Option<&Path>, env: &dyn Env) -> PathBuf {
    if let Some(path) = flag.filter(|p| !p.as_os_str().is_empty()) {
        return path.to_path_buf();
    }
    first_set(env, &CONFIG_PATH_VARS)
        .map_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH), PathBuf::from)
}

/// Applies flag and environment overrides on top of the file values.
pub fn apply(raw: &mut RawConfig, overrides: &Overrides, env: &dyn Env) {
    let pick = |flag: &Option<String>, vars: &[&str]| flag.clone().or_else(|| first_set(env, vars));
    if let Some(level) = pick(&overrides.log_level, &LOG_LEVEL_VARS) {
        raw.logging.level = level;
    }
    if let Some(address) = pick(&overrides.metrics_address, &METRICS_ADDRESS_VARS) {
        raw.server.metrics_address = address;
    }
    if let Some(address) = pick(&overrides.health_address, &HEALTH_ADDRESS_VARS) {
        raw.server.health_address = address;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use super::{DEFAULT_CONFIG_PATH, Env, NoEnv, config_path};

    /// A fixed environment for tests.
    #[derive(Default)]
    pub(crate) struct MapEnv(pub(crate) HashMap<&'static str, &'static str>);

    impl MapEnv {
        pub(crate) fn with(pairs: &[(&'static str, &'static str)]) -> Self {
            Self(pairs.iter().copied().collect())
        }
    }

    impl Env for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| (*v).to_owned())
        }
    }

    #[test]
    fn config_path_precedence() {
        let both = MapEnv::with(&[
            ("BAO_KMS_PROVIDER_CONFIG", "/a.yaml"),
            ("BAO_KMS_PROVIDER_CONFIG_PATH", "/b.yaml"),
        ]);
        assert_eq!(
            config_path(Some(Path::new("/flag.yaml")), &both),
            PathBuf::from("/flag.yaml")
        );
        assert_eq!(config_path(None, &both), PathBuf::from("/a.yaml"));
        assert_eq!(
            config_path(Some(Path::new("")), &both),
            PathBuf::from("/a.yaml")
        );
        let second = MapEnv::with(&[
            ("BAO_KMS_PROVIDER_CONFIG", ""),
            ("BAO_KMS_PROVIDER_CONFIG_PATH", "/b.yaml"),
        ]);
        assert_eq!(config_path(None, &second), PathBuf::from("/b.yaml"));
        assert_eq!(
            config_path(None, &NoEnv),
            PathBuf::from(DEFAULT_CONFIG_PATH)
        );
    }
}
