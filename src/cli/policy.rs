//! `policy openbao`: prints the least-privilege OpenBao policy for the
//! configured Transit mount and key (spec config §5.1, CLI §2.2 `policy`).
//!
//! Printing the mount and key names is the point of this command; it is the
//! one report that names them.

use super::{Failure, Global, parse_go_bool, write_stdout};
use crate::config::{Config, FsChecks};
use crate::scaffold::policy::{TokenRenewal, render};

#[derive(Debug, clap::Subcommand)]
pub enum PolicyTarget {
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

pub fn run(global: &Global, target: &PolicyTarget) -> Result<(), Failure> {
    let PolicyTarget::Openbao {
        include_token_renewal,
    } = target;
    let config = global.load_config(FsChecks::Skip)?;
    let renewal = if *include_token_renewal {
        TokenRenewal::Include
    } else {
        TokenRenewal::Omit
    };
    write_stdout(&for_config(&config, renewal))
}

/// The policy for a validated configuration.
fn for_config(config: &Config, renewal: TokenRenewal) -> String {
    render(
        &config.transit.mount_path,
        &config.transit.key_name,
        renewal,
    )
}
