//! `completion <shell>`: a completion script generated from the command
//! definition itself, so it can never drift from the real flags.

use super::{Cli, Failure, write_stdout};
use clap::CommandFactory as _;

#[derive(Debug, clap::Args)]
pub struct Flags {
    #[arg(value_enum)]
    shell: CompletionShell,
}

/// The shells the reference generates completions for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

pub fn run(flags: &Flags) -> Result<(), Failure> {
    let shell = match flags.shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
        CompletionShell::Powershell => clap_complete::Shell::PowerShell,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "bao-kms-provider", &mut script);
    write_stdout(&String::from_utf8_lossy(&script))
}
