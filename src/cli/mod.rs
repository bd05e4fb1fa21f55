//! The command line: global flags, subcommands and the exit-code contract
//! (0 ok, 1 unclassified, 2 usage, 3 config, 4 check failed, 5 runtime).

mod benchmark;
mod fields;
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
}

/// Parses the command line, runs the command and returns its exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => EXIT_OK,
                _ => EXIT_USAGE,
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

fn load_config(cli: &Cli, fs: FsChecks) -> Result<Config, Failure> {
    let env = ProcessEnv;
    let path = config::config_path(cli.config.as_deref(), &env);
    let overrides = Overrides {
        log_level: cli.log_level.clone(),
        metrics_address: cli.metrics_address.clone(),
        health_address: cli.health_address.clone(),
    };
    config::load_file(&path, &overrides, &env, fs)
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
