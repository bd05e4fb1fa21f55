//! `policy openbao`: prints the least-privilege OpenBao policy for the
//! configured Transit mount and key (spec config §5.1, CLI §2.2 `policy`).
//!
//! Printing the mount and key names is the point of this command; it is the
//! one report that names them.

use crate::config::Config;
use crate::scaffold::policy::{TokenRenewal, render};

/// The policy for a validated configuration.
pub fn for_config(config: &Config, renewal: TokenRenewal) -> String {
    render(
        &config.transit.mount_path,
        &config.transit.key_name,
        renewal,
    )
}
