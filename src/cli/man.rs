//! `man --out DIR` (hidden): one roff man page per command, rendered from
//! the clap definitions by clap_mangen, so the pages cannot drift from the
//! real flags. Hidden because it is a packaging step (`scripts/build-deb.sh`
//! runs it), not something an operator runs on a node; it is in the binary
//! rather than a separate tool so packaging needs no second build.

use super::{Cli, EXIT_UNCLASSIFIED, Failure};
use clap::CommandFactory as _;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Flags {
    /// Existing directory to write bao-kms-provider.1 and bao-kms-provider-<command>.1 into
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(flags: &Flags) -> Result<(), Failure> {
    // clap_mangen prefixes "v" itself; --version's string already has one.
    let mut cli = Cli::command()
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_subcommand(true);
    cli.build();
    let source = format!("bao-kms-provider {}", env!("CARGO_PKG_VERSION"));
    write_pages(cli, &flags.out, &source).map_err(|e| {
        Failure::new(
            EXIT_UNCLASSIFIED,
            format!("cannot write man pages to {}: {e}", flags.out.display()),
        )
    })
}

/// A page for `cmd` and, recursively, each visible subcommand; every page's
/// footer names the package version (subcommands have none of their own).
fn write_pages(cmd: clap::Command, out: &Path, source: &str) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), out, source)?;
    }
    clap_mangen::Man::new(cmd)
        .source(source)
        .manual("bao-kms-provider")
        .generate_to(out)
        .map(|_| ())
}
