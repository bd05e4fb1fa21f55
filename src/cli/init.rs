//! `init`: generates every identity-sharing file of an installation from one
//! values file (spec CLI §2.2 `init`). It never contacts OpenBao, never
//! writes outside `--out` and never overwrites: the directory must be new or
//! empty, and each file is created with `O_EXCL` and its final mode.
//!
//! Values are a partial config read without environment overrides (the
//! output must not depend on the shell it was generated in); host-layout
//! defaults fill the gaps, then the result is validated, rendered, re-read
//! and cross-checked before anything is written.

use super::{
    EXIT_CONFIG, EXIT_UNCLASSIFIED, EXIT_USAGE, Failure, Global, parse_go_bool, write_stdout,
};
use crate::config::{AuthMethod, Config, ConfigError, JwtSource, NoEnv, Overrides, Problem};
use crate::scaffold::{self, Model, Options, Plan};
use ring::rand::SecureRandom as _;
use serde_norway::{Mapping, Value};
use std::fmt::Write as _;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEFAULT_CA_FILE: &str = "/etc/openbao-kms/tls/ca.crt";
const SYSTEMD_JWT_FILE: &str = "/var/lib/openbao-kms/identity.jwt";
const STATIC_POD_JWT_FILE: &str = "/var/lib/openbao-kms/credentials/identity.jwt";
const SYSTEMD_SOCKET_GROUP: &str = "openbao-kms-socket";
/// Where `deploy/systemd/bao-kms-provider-pkcs11.service` expects the cert
/// auth credentials (its `ConditionPathExists=`).
const SYSTEMD_CERT_CHAIN_FILE: &str = "/etc/openbao-kms/client/client-chain.pem";
const SYSTEMD_PIN_FILE: &str = "/etc/openbao-kms/pkcs11/pin";
/// The generated JWT and cert roles issue 30-minute tokens; refreshing must
/// start earlier.
const ROLE_TOKEN_TTL: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, clap::Args)]
pub struct Flags {
    /// Values file: a partial config (host-layout defaults fill the rest)
    #[arg(long, value_name = "PATH")]
    values: PathBuf,
    /// Output directory; must not exist (created 0750) or be empty
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// How the provider runs on the nodes
    #[arg(long, value_enum, default_value = "systemd")]
    model: InitModel,
    /// Generate a new keyLineageId (the values must not contain one)
    #[arg(
        long,
        value_name = "BOOL",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = parse_go_bool
    )]
    new_key: bool,
    /// OpenBao policy name [default: openbao-kms-<clusterId>]
    #[arg(long, value_name = "NAME")]
    policy_name: Option<String>,
    /// Provider image pinned by digest (static-pod only)
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    /// Host group ID allowed on the socket (static-pod only)
    #[arg(long, value_name = "GID")]
    socket_gid: Option<u32>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum InitModel {
    Systemd,
    StaticPod,
}

/// `init`: the global flags do not apply (the values file is the whole
/// input), then the flag rules, then generation.
pub fn run(global: &Global, flags: &Flags) -> Result<(), Failure> {
    for (given, flag) in [
        (global.config.is_some(), "--config"),
        (global.log_level.is_some(), "--log-level"),
        (global.metrics_address.is_some(), "--metrics-address"),
        (global.health_address.is_some(), "--health-address"),
    ] {
        if given {
            return Err(Failure::new(
                EXIT_USAGE,
                format!("{flag} does not apply to init; put configuration in --values"),
            ));
        }
    }
    let args = InitArgs {
        values: &flags.values,
        out: &flags.out,
        model: match flags.model {
            InitModel::Systemd => Model::Systemd,
            InitModel::StaticPod => Model::StaticPod,
        },
        new_key: flags.new_key,
        policy_name: flags.policy_name.as_deref(),
        image: flags.image.as_deref(),
        socket_gid: flags.socket_gid,
    };
    check_flags(&args)?;
    write_stdout(&generate(&args)?)
}

/// The parsed `init` flags.
struct InitArgs<'a> {
    pub values: &'a Path,
    pub out: &'a Path,
    pub model: Model,
    pub new_key: bool,
    pub policy_name: Option<&'a str>,
    pub image: Option<&'a str>,
    pub socket_gid: Option<u32>,
}

/// Flag rules that need no file access (exit 2).
fn check_flags(args: &InitArgs<'_>) -> Result<(), Failure> {
    let usage = |m: &str| Err(Failure::new(EXIT_USAGE, m));
    if let Some(name) = args.policy_name
        && !valid_policy_name(name)
    {
        return usage(
            "--policy-name must match ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ and not be root or default",
        );
    }
    match args.model {
        Model::Systemd => {
            if args.image.is_some() || args.socket_gid.is_some() {
                return usage("--image and --socket-gid apply only to --model static-pod");
            }
        }
        Model::StaticPod => {
            match args.image {
                None => return usage("--model static-pod requires --image"),
                Some(image) if !pinned_by_digest(image) => {
                    return usage("--image must be pinned by digest (name@sha256:<64 hex>)");
                }
                Some(_) => {}
            }
            match args.socket_gid {
                None => return usage("--model static-pod requires --socket-gid"),
                Some(gid) if gid == 0 || i32::try_from(gid).is_err() => {
                    return usage("--socket-gid must be a positive 32-bit group ID");
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn valid_policy_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let first_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
    first_ok
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && name != "root"
        && name != "default"
}

fn pinned_by_digest(image: &str) -> bool {
    image.split_once("@sha256:").is_some_and(|(name, digest)| {
        !name.is_empty()
            && digest.len() == 64
            && digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Runs `init` after [`check_flags`]; returns the summary for stdout.
fn generate(args: &InitArgs<'_>) -> Result<String, Failure> {
    let (config, generated_lineage) = load_values(args)?;
    let policy_name = match args.policy_name {
        Some(name) => name.to_owned(),
        None => {
            let name = format!("openbao-kms-{}", config.transit.key_id_scope.cluster_id);
            if !valid_policy_name(&name) {
                return Err(config_failure(
                    "transit.keyIdScope.clusterId",
                    "cannot form the default policy name; pass --policy-name",
                ));
            }
            name
        }
    };
    let options = Options {
        model: args.model,
        policy_name,
        image: args.image.map(str::to_owned),
        socket_gid: args.socket_gid,
    };
    let plan = scaffold::plan(&config, &options)
        .map_err(|e| Failure::new(EXIT_UNCLASSIFIED, e.to_string()))?;
    write_plan(args.out, &plan)?;
    Ok(summary(args.out, &plan, generated_lineage.as_deref()))
}

fn config_failure(field: &str, message: &str) -> Failure {
    let error = ConfigError {
        problems: vec![Problem::new(field, message)],
    };
    Failure::new(EXIT_CONFIG, error.to_string())
}

/// Reads the values, fills host-layout defaults, validates. Returns the
/// config and the lineage id when `--new-key` generated one.
fn load_values(args: &InitArgs<'_>) -> Result<(Config, Option<String>), Failure> {
    let bytes = crate::regular_file::read(args.values)
        .map_err(|e| config_failure("values", &e.to_string()))?;
    // The parser's message could quote the document; it is dropped.
    let mut doc: Value = serde_norway::from_slice(&bytes)
        .map_err(|_| config_failure("values", "must be a readable YAML document"))?;
    if doc.is_null() {
        doc = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(root) = &mut doc else {
        return Err(config_failure("values", "must be a YAML mapping"));
    };
    let generated = fill_host_layout(root, args)?;
    let text = serde_norway::to_string(&doc)
        .map_err(|_| config_failure("values", "must be a readable YAML document"))?;
    let config = crate::config::load_str(&text, &Overrides::default(), &NoEnv)
        .map_err(|e| Failure::new(EXIT_CONFIG, e.to_string()))?;
    setup_rules(&config, args.model)?;
    Ok((config, generated))
}

/// The mapping at `key` (created when absent or null); `None` when the
/// value has another type, which the loader will then report.
fn section<'a>(map: &'a mut Mapping, key: &str) -> Option<&'a mut Mapping> {
    let entry = map
        .entry(Value::String(key.to_owned()))
        .or_insert(Value::Null);
    if entry.is_null() {
        *entry = Value::Mapping(Mapping::new());
    }
    entry.as_mapping_mut()
}

fn is_unset(map: &Mapping, key: &str) -> bool {
    match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

fn set(map: &mut Mapping, key: &str, value: String) {
    map.insert(Value::String(key.to_owned()), Value::String(value));
}

fn fill_host_layout(root: &mut Mapping, args: &InitArgs<'_>) -> Result<Option<String>, Failure> {
    if let Some(openbao) = section(root, "openbao")
        && is_unset(openbao, "caCertFile")
    {
        set(openbao, "caCertFile", DEFAULT_CA_FILE.to_owned());
    }
    if let Some(server) = section(root, "server") {
        match (args.model, args.socket_gid) {
            (Model::StaticPod, Some(gid)) => set(server, "socketGroup", gid.to_string()),
            _ if is_unset(server, "socketGroup") => {
                set(server, "socketGroup", SYSTEMD_SOCKET_GROUP.to_owned());
            }
            _ => {}
        }
    }
    if let Some(auth) = section(root, "auth") {
        let method_is_jwt = match auth.get("method") {
            None | Some(Value::Null) => true,
            Some(v) => v.as_str() == Some("jwt"),
        };
        let method_is_cert = auth.get("method").and_then(Value::as_str) == Some("cert");
        // Only systemd runs cert auth (static-pod is refused later): the
        // credential paths are the PKCS#11 unit's.
        if method_is_cert
            && let Some(pkcs11) = section(auth, "cert").and_then(|c| section(c, "pkcs11"))
        {
            for (key, path) in [
                ("certificateFile", SYSTEMD_CERT_CHAIN_FILE),
                ("pinFile", SYSTEMD_PIN_FILE),
            ] {
                if is_unset(pkcs11, key) {
                    set(pkcs11, key, path.to_owned());
                }
            }
        }
        if method_is_jwt && let Some(jwt) = section(auth, "jwt") {
            let file_source = match jwt.get("source") {
                Some(Value::String(s)) => s == "file",
                Some(_) => false,
                // Without a source the file is inferred unless OAuth is configured.
                None => !jwt.contains_key("oauth2"),
            };
            if file_source && is_unset(jwt, "jwtFile") {
                let path = match args.model {
                    Model::Systemd => SYSTEMD_JWT_FILE,
                    Model::StaticPod => STATIC_POD_JWT_FILE,
                };
                set(jwt, "jwtFile", path.to_owned());
            }
        }
    }
    if !args.new_key {
        return Ok(None);
    }
    let Some(scope) = section(root, "transit").and_then(|t| section(t, "keyIdScope")) else {
        return Ok(None);
    };
    if !is_unset(scope, "keyLineageId") {
        return Err(config_failure(
            "transit.keyIdScope.keyLineageId",
            "must not be set with --new-key",
        ));
    }
    let lineage = random_lineage()?;
    set(scope, "keyLineageId", lineage.clone());
    Ok(Some(lineage))
}

/// 16 random bytes as 32 lowercase hex characters.
fn random_lineage() -> Result<String, Failure> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Failure::new(EXIT_UNCLASSIFIED, "random source unavailable"))?;
    Ok(bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// What the generated setup script and node layout need beyond validity.
fn setup_rules(config: &Config, model: Model) -> Result<(), Failure> {
    let mut problems = Vec::new();
    if model == Model::StaticPod && config.auth.method != AuthMethod::Jwt {
        problems.push(Problem::new(
            "auth.method",
            "must be jwt for --model static-pod",
        ));
    }
    if config.auth.login_before_token_expiry >= ROLE_TOKEN_TTL {
        problems.push(Problem::new(
            "auth.loginBeforeTokenExpiry",
            "must be shorter than the generated role's 30m token TTL",
        ));
    }
    if config.auth.method == AuthMethod::Cert {
        let cert = &config.auth.cert;
        if !cert.mount_path.starts_with("auth/") {
            problems.push(Problem::new("auth.cert.mountPath", "must start with auth/"));
        }
        // The setup script writes the role `certs/<name>`.
        if cert.name.is_empty() {
            problems.push(Problem::new("auth.cert.name", "is required by init"));
        }
    }
    if config.auth.method == AuthMethod::Jwt {
        let jwt = &config.auth.jwt;
        if !jwt.mount_path.starts_with("auth/") {
            problems.push(Problem::new("auth.jwt.mountPath", "must start with auth/"));
        }
        if jwt.expected_issuer.is_empty() {
            problems.push(Problem::new(
                "auth.jwt.expectedIssuer",
                "is required by init",
            ));
        }
        if jwt.expected_audience.is_empty() {
            problems.push(Problem::new(
                "auth.jwt.expectedAudience",
                "must contain at least one audience for init",
            ));
        }
        if jwt.expected_subject.is_empty() {
            problems.push(Problem::new(
                "auth.jwt.expectedSubject",
                "is required by init",
            ));
        }
        if model == Model::StaticPod && jwt.source != JwtSource::File {
            problems.push(Problem::new(
                "auth.jwt.source",
                "must be file for --model static-pod",
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            EXIT_CONFIG,
            ConfigError { problems }.to_string(),
        ))
    }
}

/// Creates (0750) or accepts an empty `out`, then writes each file with
/// `O_EXCL` and its exact mode. Errors name the file, never the directory.
fn write_plan(out: &Path, plan: &Plan) -> Result<(), Failure> {
    let refuse = |m: &str| Failure::new(EXIT_UNCLASSIFIED, m);
    match fs::symlink_metadata(out) {
        Ok(meta) if meta.file_type().is_symlink() || !meta.is_dir() => {
            return Err(refuse("--out must be a directory, not a file or symlink"));
        }
        Ok(_) => {
            let mut entries =
                fs::read_dir(out).map_err(|_| refuse("--out directory is not readable"))?;
            if entries.next().is_some() {
                return Err(refuse(
                    "--out directory is not empty; init never overwrites files",
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(out)
                .and_then(|()| fs::set_permissions(out, Permissions::from_mode(0o750)))
                .map_err(|_| refuse("cannot create the --out directory"))?;
        }
        Err(_) => return Err(refuse("cannot inspect the --out directory")),
    }
    for file in &plan.files {
        let path = out.join(file.name);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .and_then(|mut f| {
                // The umask may have narrowed the mode; make it exact.
                f.set_permissions(Permissions::from_mode(file.mode))?;
                f.write_all(file.contents.as_bytes())?;
                f.sync_all()
            });
        if written.is_err() {
            return Err(Failure::new(
                EXIT_UNCLASSIFIED,
                format!("cannot write {}", file.name),
            ));
        }
    }
    Ok(())
}

fn summary(out: &Path, plan: &Plan, generated_lineage: Option<&str>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Wrote {} files to {}:", plan.files.len(), out.display());
    for file in &plan.files {
        let _ = writeln!(o, "  {:<24} {}", file.name, file.purpose);
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "identityFingerprint: {}", plan.identity_fingerprint);
    if let Some(lineage) = generated_lineage {
        let _ = writeln!(
            o,
            "keyLineageId: {lineage} (generated; record it with your values file)"
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Next: review the files, run openbao-setup.sh with an OpenBao administrator token, then node-setup.sh on each control-plane node (see installation.json)."
    );
    o
}

#[cfg(test)]
mod tests {
    use super::{pinned_by_digest, valid_policy_name};

    #[test]
    fn policy_names_and_image_digests() {
        for ok in ["openbao-kms-workload-a", "_x", "a.b-c"] {
            assert!(valid_policy_name(ok), "{ok}");
        }
        for bad in ["", "-a", "root", "default", "a b", "a/b"] {
            assert!(!valid_policy_name(bad), "{bad}");
        }
        let digest = "a".repeat(64);
        assert!(pinned_by_digest(&format!(
            "registry.example/kms@sha256:{digest}"
        )));
        assert!(!pinned_by_digest("registry.example/kms:1.0"));
        assert!(!pinned_by_digest(&format!("@sha256:{digest}")));
        assert!(!pinned_by_digest("kms@sha256:abc"));
        assert!(!pinned_by_digest(&format!("kms@sha256:{}", "A".repeat(64))));
    }
}
