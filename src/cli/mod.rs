//! The command line: global flags, subcommands and the exit-code contract
//! (0 ok, 1 unclassified, 2 usage, 3 config, 4 check failed, 5 runtime).
//!
//! This module parses and dispatches; each command's flags and logic live in
//! its own file (`serve`, `doctor` with `verify-key`, `probe`, `config_cmd`,
//! `init`, `policy`, `rotation` with its four commands, `benchmark`,
//! `version`, `completion`, and the hidden packaging step `man`).

mod benchmark;
mod completion;
mod config_cmd;
mod doctor;
mod fields;
mod init;
mod man;
mod policy;
mod probe;
mod report;
mod rotation;
mod serve;
mod version;

pub use report::{Check, CheckStatus, OutputFormat, Report};

use crate::config::{self, Config, ConfigError, FsChecks, Overrides, ProcessEnv};
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
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// The flags every command accepts (config location and overrides).
#[derive(Debug, clap::Args)]
struct Global {
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
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve KMS v2 on the Unix socket until SIGTERM/SIGINT
    Serve,
    /// Check config, credentials, OpenBao policy, the Transit key and the KMS path
    Doctor(doctor::DoctorFlags),
    /// Read-only key checks: login, policy, key profile, key_id, local registry, version restrictions
    VerifyKey(doctor::VerifyKeyFlags),
    /// Check a running provider through its socket (Status, Encrypt, Decrypt)
    Probe(probe::Flags),
    /// Print the effective config summary and its identity fingerprint
    Config {
        #[command(subcommand)]
        sub: Option<config_cmd::ConfigSub>,
    },
    /// Generate config, EncryptionConfigurations, OpenBao policy and setup scripts from a values file
    Init(init::Flags),
    /// Print OpenBao artefacts derived from the config
    #[command(subcommand_required = true, arg_required_else_help = true)]
    Policy {
        #[command(subcommand)]
        target: policy::PolicyTarget,
    },
    /// Show the local registry and live Transit metadata: what a rotation would do next
    RotationPlan(rotation::PlanFlags),
    /// Like rotation-plan, stating what local evidence cannot prove
    VerifyRotation(rotation::PlanFlags),
    /// Plan (or apply) removing retired key versions below N from this node's registry
    RetireVersions(rotation::RetireFlags),
    /// Plan (or apply) returning removed key versions to decrypt-only service
    RestoreVersions(rotation::RestoreFlags),
    /// Measure Transit from this host (--mode transit) or the running provider through its socket (--mode socket)
    Benchmark(benchmark::Flags),
    /// Print build information: version, commit, build date, dirty tree, rustc
    Version(version::Flags),
    /// Print a shell completion script (bash, zsh, fish or powershell)
    Completion(completion::Flags),
    /// Write one man page per command into a directory (a packaging step)
    #[command(hide = true)]
    Man(man::Flags),
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
    ExitCode::from(match execute(&cli) {
        Ok(()) => EXIT_OK,
        Err(Failure { code, message }) => {
            eprintln!("error: {message}");
            code
        }
    })
}

/// One function per command, each in the command's own file.
fn execute(cli: &Cli) -> Result<(), Failure> {
    let global = &cli.global;
    match &cli.command {
        Command::Serve => serve::run(global),
        Command::Doctor(flags) => doctor::run(global, flags),
        Command::VerifyKey(flags) => doctor::run_verify_key(global, flags),
        Command::Probe(flags) => probe::run(flags),
        Command::Config { sub } => config_cmd::run(global, sub.as_ref()),
        Command::Init(flags) => init::run(global, flags),
        Command::Policy { target } => policy::run(global, target),
        Command::RotationPlan(flags) => rotation::run_plan(global, flags),
        Command::VerifyRotation(flags) => rotation::run_verify(global, flags),
        Command::RetireVersions(flags) => rotation::run_retire(global, flags),
        Command::RestoreVersions(flags) => rotation::run_restore(global, flags),
        Command::Benchmark(flags) => benchmark::run(global, flags),
        Command::Version(flags) => version::run(flags),
        Command::Completion(flags) => completion::run(flags),
        Command::Man(flags) => man::run(flags),
    }
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

/// `--output text|json`, checked before any work is done (exit 2).
fn output_format(output: &str) -> Result<OutputFormat, Failure> {
    OutputFormat::parse(output).map_err(|m| Failure::new(EXIT_USAGE, m))
}

impl Global {
    fn overrides(&self) -> Overrides {
        Overrides {
            log_level: self.log_level.clone(),
            metrics_address: self.metrics_address.clone(),
            health_address: self.health_address.clone(),
        }
    }

    /// `--config`, else the environment, else the default path.
    fn config_path(&self) -> PathBuf {
        config::config_path(self.config.as_deref(), &ProcessEnv)
    }

    fn load_config(&self, fs: FsChecks) -> Result<Config, Failure> {
        config::load_file(&self.config_path(), &self.overrides(), &ProcessEnv, fs)
            .map_err(|e: ConfigError| Failure::new(EXIT_CONFIG, e.to_string()))
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
