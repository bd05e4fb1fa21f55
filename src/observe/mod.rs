//! Observability side doors: structured logging, Prometheus metrics, and the
//! `/live` and `/ready` health endpoints.

pub mod health;
pub mod logging;
pub mod metrics;
mod process;
