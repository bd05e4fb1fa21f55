//! The command line: global flags, subcommands and the exit-code contract
//! (0 ok, 1 unclassified, 2 usage, 3 config, 4 check failed, 5 runtime).

mod benchmark;
mod config_cmd;
mod doctor;
mod fields;
mod init;
mod policy;
mod probe;
mod report;
mod rotation;

pub use report::{Check, CheckStatus, OutputFormat, Report};

use crate::config::{self, Config, ConfigError, FsChecks, Overrides, ProcessEnv};
use crate::identity::KeyId;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

pub const EXIT_OK: u8 = 0;
pub const EXIT_UNCLASSIFIED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_CONFIG: u8 = 3;
pub const EXIT_CHECK_FAILED: u8 = 4;
pub const EXIT_RUNTIME: u8 = 5;

/// Kubernetes KMS v2 plugin backed by an OpenBao Transit key.
#[derive(Debug, Parser)]
#[command(name = "bao-kms-provider", version = crate::identity::plugin_version(), arg_required_else_help = true)]
struct Cli {
    /// Config file [default: $BAO_KMS_PROVIDER_CONFIG, $BAO_KMS_PROVIDER_CONFIG_PATH, /etc/openbao-kms/config.yaml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Override logging.level (debug, info, warn, error)
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Override server.metricsAddress (host:port, empty disables)
    #[arg(long, global = true, value_name = "HOST:PORT")]
    metrics_address: Option<String>,
    /// Override server.healthAddress (host:port, empty disables)
    #[arg(long, global = true, value_name = "HOST:PORT")]
    health_address: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve KMS v2 on the Unix socket until SIGTERM/SIGINT
    Serve,
    /// Check config, credentials, OpenBao policy, the Transit key and the KMS path
    Doctor {
        /// kube-apiserver EncryptionConfiguration to check against the config
        #[arg(long, value_name = "PATH")]
        encryption_config: Option<PathBuf>,
        /// Report format: text or json
        #[arg(long, default_value = "text")]
        output: String,
    },
    /// Read-only key checks: login, policy, key profile, key_id, local registry, version restrictions
    VerifyKey {
        /// Report format: text or json
        #[arg(long, default_value = "text")]
        output: String,
    },
    /// Check a running provider through its socket (Status, Encrypt, Decrypt)
    Probe {
        /// Provider socket
        #[arg(long, default_value = "/run/openbao-kms/kms.sock")]
        socket: PathBuf,
        /// Deadline for the whole probe (Go duration, e.g. 10s)
        #[arg(long, default_value = "10s")]
        timeout: String,
        /// Fail unless Status reports this key ID
        #[arg(long, value_name = "KEY_ID")]
        expected_key_id: Option<String>,
        /// Report format: text or json
        #[arg(long, default_value = "text")]
        output: String,
    },
    /// Print the effective config summary and its identity fingerprint
    Config {
        #[command(subcommand)]
        sub: Option<ConfigSub>,
    },
    /// Generate config, EncryptionConfigurations, OpenBao policy and setup scripts from a values file
    Init {
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
    },
    /// Print OpenBao artefacts derived from the config
    #[command(subcommand_required = true, arg_required_else_help = true)]
    Policy {
        #[command(subcommand)]
        target: PolicyTarget,
    },
    /// Show the local registry and live Transit metadata: what a rotation would do next
    RotationPlan {
        /// Report format: text or json
        #[arg(long, default_value = "text")]
        output: String,
    },
    /// Like rotation-plan, stating what local evidence cannot prove
    VerifyRotation {
        /// Report format: text or json
        #[arg(long, default_value = "text")]
        output: String,
    },
    /// Plan (or apply) removing retired key versions below N from this node's registry
    RetireVersions {
        /// Remove retired versions below this version (> 1, at most the active version)
        #[arg(long, value_name = "N")]
        before_version: Option<u64>,
        /// Write the change (the provider must be stopped); needs --expected-state-hash
        #[arg(long)]
        apply: bool,
        /// stateHash of the reviewed plan
        #[arg(long, value_name = "HASH")]
        expected_state_hash: Option<String>,
        /// Report format: text or json
        #[arg(long, default_value = "text")]
        output: String,
    },
    /// Plan (or apply) returning removed key versions to decrypt-only service
    RestoreVersions {
        /// Versions to restore, comma-separated (e.g. 1,2)
        #[arg(long, value_name = "LIST", value_delimiter = ',')]
        versions: Vec<u64>,
        /// Write the change (the provider must be stopped); needs --expected-state-hash
        #[arg(long)]
        apply: bool,
        /// stateHash of the reviewed plan
        #[arg(long, value_name = "HASH")]
        expected_state_hash: Option<String>,
        /// Report format: text or json
        #[arg(long, default_value = "text")]
        output: String,
    },
    /// Measure Transit from this host (--mode transit) or the running provider through its socket (--mode socket)
    Benchmark {
        /// transit: sequential Transit encrypt/decrypt with the configured credentials; socket: the KMS path under load
        #[arg(long, default_value = "transit")]
        mode: String,
        /// Round trips in transit mode
        #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
        iterations: i64,
        /// Provider socket (socket mode)
        #[arg(long, default_value = "/run/openbao-kms/kms.sock")]
        socket: PathBuf,
        /// Concurrent callers (socket mode, 1-1024)
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// How long to drive load (socket mode; Go duration, at most 1h)
        #[arg(long, default_value = "10s")]
        duration: String,
        /// Plaintext bytes per Encrypt (socket mode, 1-512; the apiserver sends 32)
        #[arg(long, default_value_t = 32)]
        plaintext_size: usize,
        /// Distinct ciphertexts decrypted at once after the load phase (socket mode, 0-4096)
        #[arg(long, default_value_t = 256)]
        storm: usize,
        /// Report format: text or json
        #[arg(long, default_value = "text")]
        output: String,
    },
    /// Print build information
    Version,
    /// Print a shell completion script (bash, zsh, fish or powershell)
    Completion {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

/// The shells the reference generates completions for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum InitModel {
    Systemd,
    StaticPod,
}

#[derive(Debug, Subcommand)]
enum ConfigSub {
    /// Print the JSON Schema (draft 2020-12) of the config file
    Schema,
}

#[derive(Debug, Subcommand)]
enum PolicyTarget {
    /// Print the least-privilege OpenBao token policy (HCL) for the configured key
    Openbao {
        /// Include the auth/token/renew-self stanza (--include-token-renewal=false drops it)
        #[arg(
            long,
            value_name = "BOOL",
            default_value = "true",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true",
            value_parser = parse_go_bool
        )]
        include_token_renewal: bool,
    },
}

/// Go's `strconv.ParseBool`, the spelling the reference's boolean flags accept.
fn parse_go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("must be true or false".to_owned()),
    }
}

/// Parses the command line, runs the command and returns its exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                // Help asked for, or shown because a command group was
                // named alone: a report, so stdout and success.
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    print!("{}", e.render());
                    EXIT_OK
                }
                _ => {
                    let _ = e.print();
                    EXIT_USAGE
                }
            };
            return ExitCode::from(code);
        }
    };
    ExitCode::from(match execute(cli) {
        Ok(()) => EXIT_OK,
        Err(Failure { code, message }) => {
            eprintln!("error: {message}");
            code
        }
    })
}

/// A command failure: exit code and one line for stderr.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|_| Failure::new(EXIT_RUNTIME, "cannot start the async runtime"))
}

/// Writes a whole report to stdout; a failed write (closed pipe, full disk)
/// is exit 1, as in the reference.
fn write_stdout(text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|_| Failure::new(EXIT_UNCLASSIFIED, "cannot write to stdout"))
}

fn overrides(cli: &Cli) -> Overrides {
    Overrides {
        log_level: cli.log_level.clone(),
        metrics_address: cli.metrics_address.clone(),
        health_address: cli.health_address.clone(),
    }
}

fn load_config(cli: &Cli, fs: FsChecks) -> Result<Config, Failure> {
    let env = ProcessEnv;
    let path = config::config_path(cli.config.as_deref(), &env);
    config::load_file(&path, &overrides(cli), &env, fs)
        .map_err(|e: ConfigError| Failure::new(EXIT_CONFIG, e.to_string()))
}

/// `--apply` needs the reviewed `--expected-state-hash`; a hash alone is a usage error.
fn apply_hash(apply: bool, hash: Option<&str>) -> Result<Option<&str>, Failure> {
    match (apply, hash) {
        (true, Some(h)) => Ok(Some(h)),
        (false, None) => Ok(None),
        (true, None) => Err(Failure::new(
            EXIT_USAGE,
            "--apply requires --expected-state-hash from a reviewed plan",
        )),
        (false, Some(_)) => Err(Failure::new(
            EXIT_USAGE,
            "--expected-state-hash is only used with --apply",
        )),
    }
}

/// `doctor` and `verify-key`: the same report machinery and exit rules.
fn run_doctor(
    cli: &Cli,
    kind: doctor::Kind,
    encryption_config: Option<&std::path::Path>,
    output: &str,
) -> Result<(), Failure> {
    let format = OutputFormat::parse(output).map_err(|m| Failure::new(EXIT_USAGE, m))?;
    let env = ProcessEnv;
    let path = config::config_path(cli.config.as_deref(), &env);
    let overrides = overrides(cli);
    let outcome = runtime()?.block_on(doctor::run(doctor::DoctorArgs {
        kind,
        config_path: &path,
        overrides: &overrides,
        env: &env,
        encryption_config,
    }));
    write_stdout(&outcome.report.render(format))?;
    let name = match kind {
        doctor::Kind::Doctor => "doctor",
        doctor::Kind::VerifyKey => "verify-key",
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

fn execute(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Serve => {
            let config = load_config(&cli, FsChecks::Check)?;
            crate::observe::logging::init(config.logging.level, config.logging.format);
            crate::observe::logging::configure(&config.logging);
            runtime()?
                .block_on(crate::runtime::serve(config))
                .map_err(|e| Failure::new(EXIT_RUNTIME, e.to_string()))
        }
        Command::Doctor {
            encryption_config,
            output,
        } => run_doctor(
            &cli,
            doctor::Kind::Doctor,
            encryption_config.as_deref(),
            output,
        ),
        Command::VerifyKey { output } => run_doctor(&cli, doctor::Kind::VerifyKey, None, output),
        Command::Probe {
            socket,
            timeout,
            expected_key_id,
            output,
        } => {
            let format = OutputFormat::parse(output).map_err(|m| Failure::new(EXIT_USAGE, m))?;
            let timeout = config::parse_go_duration(timeout)
                .filter(|nanos| *nanos > 0)
                .map(|nanos| std::time::Duration::from_nanos(nanos.unsigned_abs()))
                .ok_or_else(|| {
                    Failure::new(
                        EXIT_USAGE,
                        "--timeout must be a positive duration such as 10s",
                    )
                })?;
            if !socket.is_absolute() {
                return Err(Failure::new(
                    EXIT_USAGE,
                    "--socket must be an absolute path",
                ));
            }
            let expected = match expected_key_id {
                Some(raw) => Some(KeyId::parse(raw).map_err(|_| {
                    Failure::new(EXIT_USAGE, "--expected-key-id is not a provider key ID")
                })?),
                None => None,
            };
            let report = runtime()?.block_on(probe::run_probe(socket, timeout, expected.as_ref()));
            print!("{}", report.render(format));
            if report.failed() {
                Err(Failure::new(
                    EXIT_CHECK_FAILED,
                    "running provider probe failed",
                ))
            } else {
                Ok(())
            }
        }
        Command::Init {
            values,
            out,
            model,
            new_key,
            policy_name,
            image,
            socket_gid,
        } => {
            for (given, flag) in [
                (cli.config.is_some(), "--config"),
                (cli.log_level.is_some(), "--log-level"),
                (cli.metrics_address.is_some(), "--metrics-address"),
                (cli.health_address.is_some(), "--health-address"),
            ] {
                if given {
                    return Err(Failure::new(
                        EXIT_USAGE,
                        format!("{flag} does not apply to init; put configuration in --values"),
                    ));
                }
            }
            let args = init::InitArgs {
                values,
                out,
                model: match model {
                    InitModel::Systemd => crate::scaffold::Model::Systemd,
                    InitModel::StaticPod => crate::scaffold::Model::StaticPod,
                },
                new_key: *new_key,
                policy_name: policy_name.as_deref(),
                image: image.as_deref(),
                socket_gid: *socket_gid,
            };
            init::check_flags(&args)?;
            write_stdout(&init::run(&args)?)
        }
        Command::Config { sub: None } => {
            let config = load_config(&cli, FsChecks::Skip)?;
            write_stdout(&config_cmd::summary(&config))
        }
        Command::Config {
            sub: Some(ConfigSub::Schema),
        } => write_stdout(&config_cmd::schema()),
        Command::Policy {
            target: PolicyTarget::Openbao {
                include_token_renewal,
            },
        } => {
            let config = load_config(&cli, FsChecks::Skip)?;
            let renewal = if *include_token_renewal {
                crate::scaffold::policy::TokenRenewal::Include
            } else {
                crate::scaffold::policy::TokenRenewal::Omit
            };
            write_stdout(&policy::for_config(&config, renewal))
        }
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
                CompletionShell::Powershell => clap_complete::Shell::PowerShell,
            };
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "bao-kms-provider", &mut script);
            write_stdout(&String::from_utf8_lossy(&script))
        }
        Command::RotationPlan { output } | Command::VerifyRotation { output } => {
            let format = OutputFormat::parse(output).map_err(|m| Failure::new(EXIT_USAGE, m))?;
            let verify = matches!(cli.command, Command::VerifyRotation { .. });
            let config = load_config(&cli, FsChecks::Skip)?;
            let (fields, outcome) = runtime()?.block_on(rotation::plan(&config, verify));
            print!("{}", fields.render(format));
            outcome
        }
        Command::RetireVersions {
            before_version,
            apply,
            expected_state_hash,
            output,
        } => {
            let format = OutputFormat::parse(output).map_err(|m| Failure::new(EXIT_USAGE, m))?;
            let before = before_version
                .ok_or_else(|| Failure::new(EXIT_USAGE, "--before-version is required"))?;
            let expected = apply_hash(*apply, expected_state_hash.as_deref())?;
            let config = load_config(&cli, FsChecks::Skip)?;
            let (fields, outcome) = runtime()?.block_on(rotation::change(
                &config,
                rotation::Change::RetireBefore(before),
                expected,
            ));
            print!("{}", fields.render(format));
            outcome
        }
        Command::RestoreVersions {
            versions,
            apply,
            expected_state_hash,
            output,
        } => {
            let format = OutputFormat::parse(output).map_err(|m| Failure::new(EXIT_USAGE, m))?;
            if versions.is_empty() {
                return Err(Failure::new(
                    EXIT_USAGE,
                    "--versions is required; --apply also requires --expected-state-hash from a reviewed plan",
                ));
            }
            let expected = apply_hash(*apply, expected_state_hash.as_deref())?;
            let config = load_config(&cli, FsChecks::Skip)?;
            let (fields, outcome) = runtime()?.block_on(rotation::change(
                &config,
                rotation::Change::Restore(versions.clone()),
                expected,
            ));
            print!("{}", fields.render(format));
            outcome
        }
        Command::Benchmark {
            mode,
            iterations,
            socket,
            concurrency,
            duration,
            plaintext_size,
            storm,
            output,
        } => {
            let format = OutputFormat::parse(output).map_err(|m| Failure::new(EXIT_USAGE, m))?;
            let usage = |m: &str| Failure::new(EXIT_USAGE, m);
            let report = match mode.trim().to_ascii_lowercase().as_str() {
                "transit" => {
                    let iterations = usize::try_from(*iterations)
                        .ok()
                        .filter(|n| (1..=100_000).contains(n))
                        .ok_or_else(|| usage("--iterations must be between 1 and 100000"))?;
                    let config = load_config(&cli, FsChecks::Skip)?;
                    runtime()?.block_on(benchmark::transit(&config, iterations))?
                }
                "socket" => {
                    let duration = config::parse_go_duration(duration)
                        .filter(|n| *n > 0 && *n <= 3_600_000_000_000)
                        .map(|n| std::time::Duration::from_nanos(n.unsigned_abs()))
                        .ok_or_else(|| {
                            usage(
                                "--duration must be a positive duration of at most 1h, such as 10s",
                            )
                        })?;
                    if !(1..=1024).contains(concurrency) {
                        return Err(usage("--concurrency must be between 1 and 1024"));
                    }
                    if !(1..=512).contains(plaintext_size) {
                        return Err(usage("--plaintext-size must be between 1 and 512"));
                    }
                    if *storm > 4096 {
                        return Err(usage("--storm must be at most 4096"));
                    }
                    if !socket.is_absolute() {
                        return Err(usage("--socket must be an absolute path"));
                    }
                    let run = benchmark::SocketRun {
                        socket,
                        concurrency: *concurrency,
                        duration,
                        plaintext_size: *plaintext_size,
                        storm: *storm,
                    };
                    runtime()?.block_on(benchmark::socket(run))?
                }
                _ => return Err(usage("--mode must be transit or socket")),
            };
            if format == OutputFormat::Text {
                println!("benchmark");
            }
            print!("{}", report.render(format));
            Ok(())
        }
        Command::Version => {
            println!("version: {}", crate::identity::plugin_version());
            println!(
                "commit: {}",
                option_env!("BAO_KMS_PROVIDER_COMMIT").unwrap_or("unknown")
            );
            println!(
                "buildDate: {}",
                option_env!("BAO_KMS_PROVIDER_BUILD_DATE").unwrap_or("unknown")
            );
            println!(
                "dirty: {}",
                option_env!("BAO_KMS_PROVIDER_DIRTY").unwrap_or("unknown")
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn positional_arguments_are_rejected() {
        assert!(Cli::try_parse_from(["bao-kms-provider", "serve", "extra"]).is_err());
        assert!(Cli::try_parse_from(["bao-kms-provider", "extra"]).is_err());
    }
}
