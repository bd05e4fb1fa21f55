//! `serve`: load the config with host checks, start logging, and hand over to
//! the runtime until SIGTERM/SIGINT (spec CLI §2.2 `serve`).

use super::{EXIT_RUNTIME, Failure, Global, runtime};
use crate::config::FsChecks;

pub fn run(global: &Global) -> Result<(), Failure> {
    let config = global.load_config(FsChecks::Check)?;
    crate::observe::logging::init(config.logging.level, config.logging.format);
    crate::observe::logging::configure(&config.logging);
    runtime()?
        .block_on(crate::runtime::serve(config))
        .map_err(|e| Failure::new(EXIT_RUNTIME, e.to_string()))
}
