//! Observability side doors: structured logging.

pub mod logging;
