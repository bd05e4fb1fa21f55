//! `doctor`: the pre-flight checks an operator runs before (and after)
//! enabling encryption — sixteen checks with stable ids, in the reference's
//! order (spec CLI §2.2 `doctor`), then three host checks of our own.
//!
//! Doctor reads the config with host checks, the JWT, and optionally the
//! apiserver's EncryptionConfiguration; it logs in, asks OpenBao what the
//! token may do, reads the key, runs one encrypt/decrypt round trip and the
//! real KMS service in memory. It never writes state and never touches the
//! running provider's socket. Messages name checks and error classes, never
//! a path, key name, claim value or token.

use super::report::{CheckStatus, Report};
use super::{
    EXIT_CHECK_FAILED, EXIT_CONFIG, EXIT_OK, Failure, Global, output_format, runtime, write_stdout,
};
use crate::assemble::{
    self, http_client, keeper_settings, scope_of, token_manager, token_settings,
};
use crate::auth::cert::{check_chain, check_signer, open_token, read_chain};
use crate::auth::{AuthError, OAuth2Error, read_client_secret, read_jwt_file, validate_claims};
use crate::clock::unix_now;
use crate::config::{
    AuthMethod, Config, Env, FsChecks, JwtSource, LoadStage, LogLevel, Overrides, ProcessEnv,
    load_file_staged,
};
use crate::diagnostics::{
    CapabilityPaths, DebugSettings, HostPaths, check_capabilities, find_provider, inspect_debug,
    inspect_host, read_clock_state,
};
use crate::encryption_config::{self as encryption, Expected, IdentityFallback};
use crate::identity::{KeyId, hash_value};
use crate::kms::proto::key_management_service_server::KeyManagementService as _;
use crate::kms::proto::{EncryptRequest, StatusRequest};
use crate::kms::{KmsService, Limits, resolve_group};
use crate::openbao::{KeyMetadata, Transit, capabilities_self};
use crate::registry::{
    CheckpointStatus, Keeper, RecordState, Registry, StateFile, StatePaths, bootstrap_state,
    check_retained, inspect,
};
use crate::rules::{profile_findings, render_findings};
use crate::status::{Discovery, Prober, StatusCache};
use ring::rand::SecureRandom as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// AAD of doctor's Transit round trip; distinct from the provider's probes.
const DOCTOR_PROBE_AAD: &[u8] = b"openbao-kubernetes-kms/doctor-probe/v1";
/// The fixed clock a first-install state is derived with (reference value),
/// so two derivations can only differ if the derivation itself does.
const DERIVATION_CLOCK_UNIX: i64 = 1_778_277_600;

const AUTH_ID: &str = "openbao.auth";

/// Which report to produce: the full `doctor`, or `verify-key` (no host file
/// checks, no local auth or socket checks, no encrypt/decrypt; adds the local
/// registry and Transit version restrictions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Doctor,
    VerifyKey,
}

/// What doctor was asked to look at.
pub struct DoctorArgs<'a> {
    pub kind: Kind,
    pub config_path: &'a Path,
    pub overrides: &'a Overrides,
    pub env: &'a dyn Env,
    pub encryption_config: Option<&'a Path>,
}

/// The report and the exit code it implies (0, 3 or 4).
pub struct Outcome {
    pub report: Report,
    pub exit: u8,
}

impl Outcome {
    fn finish(report: Report) -> Self {
        let exit = if report.failed() {
            EXIT_CHECK_FAILED
        } else {
            EXIT_OK
        };
        Self { report, exit }
    }
}

fn auth_title(config: &Config) -> &'static str {
    match config.auth.method {
        AuthMethod::Jwt => "OpenBao JWT login",
        AuthMethod::Cert => "OpenBao cert login",
    }
}

#[derive(Debug, clap::Args)]
pub struct DoctorFlags {
    /// kube-apiserver EncryptionConfiguration to check against the config
    #[arg(long, value_name = "PATH")]
    encryption_config: Option<PathBuf>,
    /// Report format: text or json
    #[arg(long, default_value = "text")]
    output: String,
}

#[derive(Debug, clap::Args)]
pub struct VerifyKeyFlags {
    /// Report format: text or json
    #[arg(long, default_value = "text")]
    output: String,
}

/// `doctor`.
pub fn run(global: &Global, flags: &DoctorFlags) -> Result<(), Failure> {
    run_report(
        global,
        Kind::Doctor,
        flags.encryption_config.as_deref(),
        &flags.output,
    )
}

/// `verify-key`.
pub fn run_verify_key(global: &Global, flags: &VerifyKeyFlags) -> Result<(), Failure> {
    run_report(global, Kind::VerifyKey, None, &flags.output)
}

/// Both reports: the same machinery and exit rules.
fn run_report(
    global: &Global,
    kind: Kind,
    encryption_config: Option<&Path>,
    output: &str,
) -> Result<(), Failure> {
    let format = output_format(output)?;
    let env = ProcessEnv;
    let path = global.config_path();
    let overrides = global.overrides();
    let outcome = runtime()?.block_on(checks(DoctorArgs {
        kind,
        config_path: &path,
        overrides: &overrides,
        env: &env,
        encryption_config,
    }));
    write_stdout(&outcome.report.render(format))?;
    let name = match kind {
        Kind::Doctor => "doctor",
        Kind::VerifyKey => "verify-key",
    };
    match outcome.exit {
        EXIT_OK => Ok(()),
        EXIT_CONFIG => Err(Failure::new(
            EXIT_CONFIG,
            format!("{name}: configuration is invalid"),
        )),
        code => Err(Failure::new(code, format!("{name} checks failed"))),
    }
}

/// Runs every check that applies and returns the report.
async fn checks(args: DoctorArgs<'_>) -> Outcome {
    let (name, fs) = match args.kind {
        Kind::Doctor => ("doctor", FsChecks::Check),
        Kind::VerifyKey => ("verify-key", FsChecks::Skip),
    };
    let mut report = Report::new(name);
    let config = match load_file_staged(args.config_path, args.overrides, args.env, fs) {
        Ok(config) => config,
        Err((stage, error)) => {
            let message = error.to_string();
            if stage == LoadStage::Load {
                report.push("config.load", "Config load", CheckStatus::Fail, message);
            } else {
                report.push("config.load", "Config load", CheckStatus::Pass, "");
                report.push(
                    "config.validate",
                    "Config validation",
                    CheckStatus::Fail,
                    message,
                );
                report.push(
                    AUTH_ID,
                    "OpenBao login",
                    CheckStatus::Skip,
                    "config validation failed",
                );
            }
            return Outcome {
                report,
                exit: EXIT_CONFIG,
            };
        }
    };
    report.push("config.load", "Config load", CheckStatus::Pass, "");
    report.push(
        "config.validate",
        "Config validation",
        CheckStatus::Pass,
        "",
    );
    if args.kind == Kind::VerifyKey {
        remote_checks(&mut report, &config, args.kind).await;
        return Outcome::finish(report);
    }
    socket_group(&mut report, &config);
    let local_auth_ok = local_auth(&mut report, &config);
    encryption_config_check(&mut report, &config, args.encryption_config);
    if !local_auth_ok {
        report.push(
            AUTH_ID,
            auth_title(&config),
            CheckStatus::Skip,
            "local auth validation failed",
        );
    } else {
        remote_checks(&mut report, &config, args.kind).await;
    }
    // Last, so the reference's check order (and positions) stay as they are.
    host_files(&mut report, &config, args.config_path);
    host_clock(&mut report);
    host_debug(&mut report, &config);
    Outcome::finish(report)
}

fn socket_group(report: &mut Report, config: &Config) {
    let (status, message) = match resolve_group(&config.server.socket_group) {
        Ok(_) => (CheckStatus::Pass, "resolves on this host"),
        Err(_) => (CheckStatus::Fail, "group does not resolve on this host"),
    };
    report.push("socket.group", "Socket group", status, message);
}

/// Host file ownership and modes against the hardening table (an addition to
/// the reference's checks, reported after them).
fn host_files(report: &mut Report, config: &Config, config_path: &Path) {
    let mut secrets = vec![("CA bundle", config.openbao.ca_cert_file.as_path())];
    if config.auth.method == AuthMethod::Jwt && config.auth.jwt.source == JwtSource::File {
        secrets.push(("JWT file", config.auth.jwt.jwt_file.as_path()));
    }
    let paths = HostPaths {
        config_file: config_path,
        secrets,
        state_dir: config.state.path.parent().unwrap_or(Path::new("/")),
        socket_dir: config.server.socket_path.parent().unwrap_or(Path::new("/")),
        socket_gid: resolve_group(&config.server.socket_group).ok(),
    };
    let findings = inspect_host(&paths);
    let status = if findings.iter().any(|f| f.blocking) {
        CheckStatus::Fail
    } else if findings.is_empty() {
        CheckStatus::Pass
    } else {
        CheckStatus::Warn
    };
    let message = if findings.is_empty() {
        "ownership and modes match the hardening table".to_owned()
    } else {
        findings
            .iter()
            .map(|f| f.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    report.push("host.files", "Host file layout", status, message);
}

/// The kernel's clock synchronization: JWT, certificate and token lifetimes
/// are checked against this clock. A warning at worst, as doctor cannot fix it.
fn host_clock(report: &mut Report) {
    let (status, message) = match read_clock_state() {
        Ok(state) if state.synchronized => (CheckStatus::Pass, state.message()),
        Ok(state) => (CheckStatus::Warn, state.message()),
        Err(errno) => (
            CheckStatus::Warn,
            format!("cannot read the kernel clock status: {errno}"),
        ),
    };
    report.push("host.clock", "Host clock synchronization", status, message);
}

/// Debug logging, debug correlation and listeners beyond loopback: each is a
/// warning (a deliberate investigation setting, easy to forget).
fn host_debug(report: &mut Report, config: &Config) {
    let logging = &config.logging;
    let correlation = &logging.debug_correlation;
    let settings = DebugSettings {
        level_debug: logging.level == LogLevel::Debug,
        correlation: correlation
            .enabled
            .then_some((correlation.incident_id.as_str(), correlation.ttl)),
        metrics_address: &config.server.metrics_address,
        health_address: &config.server.health_address,
    };
    let lock = StatePaths::new(&config.state.path).lock;
    let findings = inspect_debug(&settings, || find_provider(&lock), SystemTime::now());
    let (status, message) = if findings.is_empty() {
        (
            CheckStatus::Pass,
            "logging is not at debug level; metrics and health listen on loopback or are disabled"
                .to_owned(),
        )
    } else {
        (CheckStatus::Warn, findings.join("; "))
    };
    report.push(
        "host.debug",
        "Debug settings and listeners",
        status,
        message,
    );
}

/// Check 4: the credential, read and checked exactly as a login would.
/// Returns whether it is usable.
fn local_auth(report: &mut Report, config: &Config) -> bool {
    match (config.auth.method, config.auth.jwt.source) {
        (AuthMethod::Jwt, JwtSource::File) => {
            let checks = token_settings(config).jwt_checks;
            let result = read_jwt_file(&config.auth.jwt.jwt_file)
                .and_then(|jwt| validate_claims(&jwt, &checks, unix_now()));
            match result {
                Ok(_) => {
                    report.push(
                        "jwt.local",
                        "JWT file",
                        CheckStatus::Pass,
                        "readable and locally valid",
                    );
                    true
                }
                Err(e) => {
                    report.push("jwt.local", "JWT file", CheckStatus::Fail, e.to_string());
                    false
                }
            }
        }
        (AuthMethod::Jwt, JwtSource::OAuth2) => {
            let file = config
                .auth
                .jwt
                .oauth2
                .as_ref()
                .map(|o| o.client_secret_file.as_path());
            let result = read_client_secret(file.unwrap_or(Path::new("")));
            let (status, message) = match result {
                Ok(_) => (
                    CheckStatus::Pass,
                    "client secret file readable and safely permissioned".to_owned(),
                ),
                Err(reason) => (
                    CheckStatus::Fail,
                    OAuth2Error::Credential(reason).to_string(),
                ),
            };
            report.push(
                "oauth2.local",
                "OAuth 2.0 client credential",
                status,
                message,
            );
            status == CheckStatus::Pass
        }
        (AuthMethod::Cert, _) => local_cert(report, config),
    }
}

/// Checks 4 for cert auth: the token (PIN file, module, key pair), the
/// certificate chain, then the leaf key against the token key with a probe.
fn local_cert(report: &mut Report, config: &Config) -> bool {
    const SIGNER: (&str, &str) = ("auth.cert.signer", "Certificate signer");
    let token = match open_token(&assemble::pkcs11_settings(config)) {
        Ok(token) => {
            report.push(
                "auth.cert.pkcs11",
                "PKCS#11 certificate source",
                CheckStatus::Pass,
                "token opened and key pair found",
            );
            Some(token)
        }
        Err(e) => {
            report.push(
                "auth.cert.pkcs11",
                "PKCS#11 certificate source",
                CheckStatus::Fail,
                e.to_string(),
            );
            None
        }
    };
    let settings = assemble::cert_login_settings(config);
    let leaf = read_chain(&settings.certificate_file)
        .and_then(|chain| check_chain(&chain, settings.checks, unix_now()));
    let leaf = match leaf {
        Ok(leaf) => {
            report.push(
                "auth.cert.local",
                "Certificate identity",
                CheckStatus::Pass,
                "chain readable and locally valid",
            );
            leaf
        }
        Err(e) => {
            report.push(
                "auth.cert.local",
                "Certificate identity",
                CheckStatus::Fail,
                e.to_string(),
            );
            report.push(
                SIGNER.0,
                SIGNER.1,
                CheckStatus::Skip,
                "certificate identity failed",
            );
            return false;
        }
    };
    let Some(token) = token else {
        report.push(
            SIGNER.0,
            SIGNER.1,
            CheckStatus::Skip,
            "PKCS#11 certificate source failed",
        );
        return false;
    };
    match check_signer(&token, &leaf) {
        Ok(()) => {
            report.push(
                SIGNER.0,
                SIGNER.1,
                CheckStatus::Pass,
                "token key matches the leaf and signs",
            );
            true
        }
        Err(e) => {
            report.push(SIGNER.0, SIGNER.1, CheckStatus::Fail, e.to_string());
            false
        }
    }
}

fn encryption_config_check(report: &mut Report, config: &Config, path: Option<&Path>) {
    const ID: &str = "kubernetes.encryption_config";
    const TITLE: &str = "EncryptionConfiguration";
    let Some(path) = path else {
        report.push(
            ID,
            TITLE,
            CheckStatus::Skip,
            "no --encryption-config path supplied",
        );
        return;
    };
    let Some(expected) = Expected::from_config(config) else {
        report.push(
            ID,
            TITLE,
            CheckStatus::Fail,
            "server.socketPath is not valid UTF-8",
        );
        return;
    };
    let result = encryption::read(path)
        .and_then(|file| encryption::check(&file, expected, IdentityFallback::Allow));
    match result {
        Ok(findings) if findings.identity_fallback => report.push(
            ID,
            TITLE,
            CheckStatus::Warn,
            "identity fallback remains configured",
        ),
        Ok(_) => report.push(
            ID,
            TITLE,
            CheckStatus::Pass,
            "KMS v2 provider matches local config",
        ),
        Err(e) => report.push(ID, TITLE, CheckStatus::Fail, e.to_string()),
    }
}

/// Checks 7–16: everything that talks to OpenBao.
async fn remote_checks(report: &mut Report, config: &Config, kind: Kind) {
    let http = match http_client(config) {
        Ok(http) => {
            report.push(
                "openbao.tls",
                "OpenBao TLS config",
                CheckStatus::Pass,
                "CA bundle and server name loaded",
            );
            http
        }
        Err(e) => {
            report.push(
                "openbao.tls",
                "OpenBao TLS config",
                CheckStatus::Fail,
                e.to_string(),
            );
            report.push(
                AUTH_ID,
                auth_title(config),
                CheckStatus::Skip,
                "TLS configuration failed",
            );
            return;
        }
    };

    // A fresh manager: its first token() is a forced login with the JWT
    // re-read and re-checked, exactly as the provider would log in.
    let tokens = match config.auth.method {
        AuthMethod::Jwt => token_manager(config, &http),
        AuthMethod::Cert => match assemble::cert_token_manager(config, None) {
            Ok(tokens) => tokens,
            Err(e) => {
                report.push(
                    AUTH_ID,
                    auth_title(config),
                    CheckStatus::Fail,
                    e.to_string(),
                );
                return;
            }
        },
    };
    let oauth2 =
        config.auth.method == AuthMethod::Jwt && config.auth.jwt.source == JwtSource::OAuth2;
    let login = tokens.token().await;
    if oauth2 {
        const ACQUIRE: (&str, &str) = ("oauth2.acquire", "OAuth 2.0 token acquisition");
        match &login {
            // The reference leaves 429/5xx to `openbao.auth`; every OAuth
            // class is reported here instead (docs/decisions.md).
            Err(e @ AuthError::OAuth2(_)) => {
                report.push(ACQUIRE.0, ACQUIRE.1, CheckStatus::Fail, e.to_string());
                report.push(
                    AUTH_ID,
                    auth_title(config),
                    CheckStatus::Skip,
                    "OAuth 2.0 token acquisition failed",
                );
                return;
            }
            Ok(_) => report.push(
                ACQUIRE.0,
                ACQUIRE.1,
                CheckStatus::Pass,
                "access token acquired and accepted by OpenBao",
            ),
            Err(_) => {}
        }
    }
    let token = match login {
        Ok(token) => {
            report.push(
                AUTH_ID,
                auth_title(config),
                CheckStatus::Pass,
                match config.auth.method {
                    AuthMethod::Jwt => "authenticated with configured JWT role",
                    AuthMethod::Cert => "authenticated with the configured certificate",
                },
            );
            token
        }
        Err(e) => {
            report.push(
                AUTH_ID,
                auth_title(config),
                CheckStatus::Fail,
                e.to_string(),
            );
            return;
        }
    };

    let paths = CapabilityPaths::new(&config.transit.mount_path, &config.transit.key_name);
    let capabilities = capabilities_self(&http, &token, &paths.all(), config.openbao.timeout).await;
    drop(token);
    let (status, message) = match capabilities {
        Ok(caps) => match check_capabilities(&paths, &caps) {
            Ok(()) => (
                CheckStatus::Pass,
                "least-privilege hot-path capabilities".to_owned(),
            ),
            Err(message) => (CheckStatus::Fail, message.to_owned()),
        },
        Err(e) => (CheckStatus::Fail, e.to_string()),
    };
    report.push(
        "transit.capabilities",
        "Transit policy capabilities",
        status,
        message,
    );

    let transit = assemble::transit(config, http, tokens);
    let meta = match transit.read_key().await {
        Ok(meta) => {
            report.push(
                "transit.metadata",
                "Transit metadata",
                CheckStatus::Pass,
                format!("latest version {}", meta.latest_version),
            );
            meta
        }
        Err(e) => {
            report.push(
                "transit.metadata",
                "Transit metadata",
                CheckStatus::Fail,
                e.to_string(),
            );
            return;
        }
    };

    let findings = profile_findings(&meta);
    let profile_safe = findings.is_empty();
    if profile_safe {
        report.push(
            "transit.profile",
            "Transit key profile",
            CheckStatus::Pass,
            "aes256-gcm96; not exportable; no plaintext backup; deletion not allowed",
        );
    } else {
        report.push(
            "transit.profile",
            "Transit key profile",
            CheckStatus::Fail,
            render_findings(&findings),
        );
    }

    let (status, message) = match transit.disable_upsert().await {
        Ok(true) => (
            CheckStatus::Pass,
            "implicit key creation disabled".to_owned(),
        ),
        Ok(false) => (
            CheckStatus::Fail,
            "mount allows implicit key creation".to_owned(),
        ),
        Err(e) => (CheckStatus::Fail, e.to_string()),
    };
    report.push(
        "transit.disable_upsert",
        "Transit disable_upsert",
        status,
        message,
    );

    if kind == Kind::VerifyKey {
        if profile_safe {
            key_id_check(report, config, &meta);
        } else {
            report.push(
                "key_id.deterministic",
                "Key ID determinism",
                CheckStatus::Skip,
                "Transit key profile failed",
            );
        }
        let state = registry_state_check(report, config, &meta);
        version_restrictions_check(report, &meta, state.as_ref());
        return;
    }
    if !profile_safe {
        for (id, title) in [
            ("transit.probe", "Transit probe"),
            ("key_id.deterministic", "Key ID determinism"),
            ("kms.status_encrypt", "Status/encrypt consistency"),
        ] {
            report.push(id, title, CheckStatus::Skip, "Transit key profile failed");
        }
        return;
    }
    transit_probe(report, &transit, &meta).await;
    let Some((key_id, local)) = key_id_check(report, config, &meta) else {
        report.push(
            "kms.status_encrypt",
            "Status/encrypt consistency",
            CheckStatus::Skip,
            "Key ID determinism failed",
        );
        return;
    };
    status_encrypt_check(report, config, transit, &key_id, local.as_ref()).await;
}

/// verify-key: the local registry state and checkpoint (read, never written).
fn registry_state_check(
    report: &mut Report,
    config: &Config,
    meta: &KeyMetadata,
) -> Option<StateFile> {
    const ID: &str = "registry.state";
    const TITLE: &str = "Local key registry state";
    let fingerprint = config.identity_fingerprint();
    let scope = Arc::new(scope_of(config));
    match inspect(&StatePaths::new(&config.state.path), &fingerprint, &scope) {
        Ok(None) => {
            let eligibility =
                match bootstrap_state(&scope, &fingerprint, meta, DERIVATION_CLOCK_UNIX) {
                    Ok(_) => "eligible=true: the key is unrotated".to_owned(),
                    Err(reason) => format!("eligible=false: {reason}"),
                };
            report.push(
                ID,
                TITLE,
                CheckStatus::Warn,
                format!("state file is absent; auto-bootstrap {eligibility}"),
            );
            None
        }
        Ok(Some((state, checkpoint))) => {
            let message = format!(
                "generation {}, checkpoint {}",
                state.generation,
                checkpoint.as_str()
            );
            let status = if checkpoint == CheckpointStatus::Current {
                CheckStatus::Pass
            } else {
                CheckStatus::Warn
            };
            report.push(ID, TITLE, status, message);
            Some(state)
        }
        Err(e) => {
            report.push(ID, TITLE, CheckStatus::Fail, e.to_string());
            None
        }
    }
}

/// verify-key: OpenBao's minimum versions must not cut off a version the
/// registry still needs (or, without state, the latest version).
fn version_restrictions_check(report: &mut Report, meta: &KeyMetadata, state: Option<&StateFile>) {
    const ID: &str = "transit.version_restrictions";
    const TITLE: &str = "Transit version restrictions";
    let mut problems: Vec<&str> = Vec::new();
    match state {
        Some(state) => {
            for record in state
                .snapshots
                .iter()
                .filter(|r| matches!(r.state, RecordState::Active | RecordState::Retired))
            {
                let v = i64::try_from(record.transit_version).unwrap_or(i64::MAX);
                if meta.min_available_version > v {
                    problems.push("minimum available version blocks required historical version");
                }
                if meta.min_decryption_version > v {
                    problems.push("minimum decryption version blocks required historical version");
                }
                if record.state == RecordState::Active && meta.min_encryption_version > v {
                    problems.push("minimum encryption version blocks active version");
                }
            }
        }
        None => {
            let latest = meta.latest_version;
            if meta.min_available_version > latest {
                problems.push("minimum available version exceeds the latest version");
            }
            if meta.min_decryption_version > latest {
                problems.push("minimum decryption version exceeds the latest version");
            }
            if meta.min_encryption_version > latest {
                problems.push("minimum encryption version exceeds the latest version");
            }
        }
    }
    problems.dedup();
    if problems.is_empty() {
        report.push(
            ID,
            TITLE,
            CheckStatus::Pass,
            "every required version is available",
        );
    } else {
        report.push(ID, TITLE, CheckStatus::Fail, problems.join("; "));
    }
}

/// Check 14: encrypt 32 random bytes with the explicit latest version, decrypt, compare.
async fn transit_probe(report: &mut Report, transit: &Transit, meta: &KeyMetadata) {
    const ID: &str = "transit.probe";
    const TITLE: &str = "Transit probe";
    let mut plaintext = zeroize::Zeroizing::new([0u8; 32]);
    if ring::rand::SystemRandom::new()
        .fill(plaintext.as_mut())
        .is_err()
    {
        report.push(ID, TITLE, CheckStatus::Fail, "random source unavailable");
        return;
    }
    let Ok(version) = u64::try_from(meta.latest_version) else {
        report.push(
            ID,
            TITLE,
            CheckStatus::Fail,
            "latest version is not positive",
        );
        return;
    };
    let result = match transit
        .encrypt(plaintext.as_ref(), DOCTOR_PROBE_AAD, version)
        .await
    {
        Ok(ciphertext) => transit
            .decrypt(ciphertext.expose(), DOCTOR_PROBE_AAD)
            .await
            .map(|clear| clear.expose() == plaintext.as_ref()),
        Err(e) => Err(e),
    };
    match result {
        Ok(true) => report.push(
            ID,
            TITLE,
            CheckStatus::Pass,
            format!("encrypt/decrypt round trip with key version {version}"),
        ),
        Ok(false) => report.push(ID, TITLE, CheckStatus::Fail, "decrypted bytes differ"),
        Err(e) => report.push(ID, TITLE, CheckStatus::Fail, e.to_string()),
    }
}

/// Check 15: the active key_id derived twice must agree (every node derives
/// it independently). With a local registry state (read, never written) the
/// state is the source and must still match Transit; without one the
/// first-install state is derived from the metadata with a fixed clock.
/// Returns the key_id and the local state on success.
fn key_id_check(
    report: &mut Report,
    config: &Config,
    meta: &KeyMetadata,
) -> Option<(KeyId, Option<StateFile>)> {
    const ID: &str = "key_id.deterministic";
    const TITLE: &str = "Key ID determinism";
    let scope = Arc::new(scope_of(config));
    let fingerprint = config.identity_fingerprint();
    let local = match local_state(config, &fingerprint) {
        Ok(local) => local,
        Err(message) => {
            report.push(ID, TITLE, CheckStatus::Fail, message);
            return None;
        }
    };
    let derive = || -> Result<KeyId, String> {
        let state = match &local {
            Some(state) => {
                check_retained(state, meta)
                    .map_err(|r| format!("local registry state does not match Transit: {r}"))?;
                state.clone()
            }
            None => bootstrap_state(&scope, &fingerprint, meta, DERIVATION_CLOCK_UNIX)
                .map_err(|r| format!("cannot derive the active key_id: {r}"))?,
        };
        Registry::from_state(&state, &scope)
            .map(|r| r.active().key_id.clone())
            .map_err(|e| e.to_string())
    };
    match (derive(), derive()) {
        (Ok(first), Ok(second)) if first == second => {
            report.push(
                ID,
                TITLE,
                CheckStatus::Pass,
                format!("active key_id hash {}", hash_value(first.as_str())),
            );
            Some((first, local))
        }
        (Ok(_), Ok(_)) => {
            report.push(ID, TITLE, CheckStatus::Fail, "derived key_ids differ");
            None
        }
        (Err(message), _) | (_, Err(message)) => {
            report.push(ID, TITLE, CheckStatus::Fail, message);
            None
        }
    }
}

/// The node's registry state, read-only. A node that has never served has
/// neither the files nor, possibly, the directory: that is "no state".
fn local_state(config: &Config, fingerprint: &str) -> Result<Option<StateFile>, String> {
    let paths = StatePaths::new(&config.state.path);
    let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    if !exists(&paths.state) && !exists(&paths.checkpoint) {
        return Ok(None);
    }
    inspect(&paths, fingerprint, &scope_of(config))
        .map(|found| found.map(|(state, _)| state))
        .map_err(|e| e.to_string())
}

/// Check 16: the real KMS service, in memory (no socket), on a status cache
/// filled by the real bootstrap probes: Status must report the key_id that
/// Encrypt then returns, and the one check 15 derived. The registry runs on
/// a private copy of the node's state, so the real state (and the running
/// provider's lock on it) is never touched.
async fn status_encrypt_check(
    report: &mut Report,
    config: &Config,
    transit: Arc<Transit>,
    derived: &KeyId,
    local: Option<&StateFile>,
) {
    const ID: &str = "kms.status_encrypt";
    const TITLE: &str = "Status/encrypt consistency";
    let scratch = match ScratchDir::create() {
        Ok(dir) => dir,
        Err(()) => {
            report.push(
                ID,
                TITLE,
                CheckStatus::Fail,
                "cannot create a private scratch directory",
            );
            return;
        }
    };
    let paths = StatePaths::new(&scratch.path.join("key-registry.json"));
    if let Some(state) = local
        && crate::registry::save(&paths, state).is_err()
    {
        report.push(
            ID,
            TITLE,
            CheckStatus::Fail,
            "cannot copy the registry state",
        );
        return;
    }
    let keeper = match Keeper::open(paths, keeper_settings(config)) {
        Ok(keeper) => Arc::new(keeper),
        Err(e) => {
            report.push(ID, TITLE, CheckStatus::Fail, e.to_string());
            return;
        }
    };
    let cache = Arc::new(StatusCache::new(config.status.status_max_staleness));
    let prober = Arc::new(Prober::new(
        Arc::clone(&transit),
        keeper,
        Arc::clone(&cache),
    ));
    let reasons = prober.bootstrap_cycle().await;
    if !reasons.is_empty() {
        let reasons: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
        report.push(
            ID,
            TITLE,
            CheckStatus::Fail,
            format!("provider would not become healthy: {}", reasons.join(", ")),
        );
        return;
    }
    let discovery = Discovery::new(Arc::clone(&prober), config.status.probe_interval);
    let service = KmsService::new(
        cache,
        discovery,
        transit,
        Limits::new(1, 1, 1),
        config.openbao.timeout,
    );
    let status = match service.status(tonic::Request::new(StatusRequest {})).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            report.push(
                ID,
                TITLE,
                CheckStatus::Fail,
                format!("Status failed: {:?}", e.code()),
            );
            return;
        }
    };
    if status.healthz != "ok" {
        report.push(ID, TITLE, CheckStatus::Fail, "Status is not healthy");
        return;
    }
    let mut seed = zeroize::Zeroizing::new(vec![0u8; 32]);
    if ring::rand::SystemRandom::new().fill(&mut seed).is_err() {
        report.push(ID, TITLE, CheckStatus::Fail, "random source unavailable");
        return;
    }
    let request = EncryptRequest {
        plaintext: seed.to_vec(),
        uid: "doctor-status-encrypt".to_owned(),
    };
    let encrypted = match service.encrypt(tonic::Request::new(request)).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            report.push(
                ID,
                TITLE,
                CheckStatus::Fail,
                format!("Encrypt failed: {:?}", e.code()),
            );
            return;
        }
    };
    if status.key_id != encrypted.key_id {
        report.push(
            ID,
            TITLE,
            CheckStatus::Fail,
            "Status and Encrypt report different key_ids",
        );
    } else if status.key_id != derived.as_str() {
        report.push(
            ID,
            TITLE,
            CheckStatus::Fail,
            "Status key_id differs from the derived key_id",
        );
    } else {
        report.push(
            ID,
            TITLE,
            CheckStatus::Pass,
            "Status and Encrypt agree on the active key_id",
        );
    }
}

/// A private (0700) directory under the temp dir, removed on drop.
struct ScratchDir {
    path: std::path::PathBuf,
}

impl ScratchDir {
    fn create() -> Result<Self, ()> {
        use std::os::unix::fs::DirBuilderExt as _;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("bao-kms-doctor-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|_| ())?;
        Ok(Self { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
