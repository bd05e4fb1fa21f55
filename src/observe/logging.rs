//! Structured logs: one JSON object per line (default) or readable text.
//!
//! Event names go in the `message` field (e.g. `kms.request`, `serve.ready`);
//! fields are bounded values only. Secrets cannot reach here by construction:
//! they live in redacting types whose `Debug` prints a marker.

use crate::config::{LogFormat, LogLevel};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

/// Installs the process-wide subscriber writing to stderr. Calling it twice is
/// harmless (the second call is ignored), which keeps tests simple.
///
/// Only our own events pass below `warn`: dependencies (hyper, h2, rustls) log
/// connection details at debug level that are not part of our log contract.
pub fn init(level: LogLevel, format: LogFormat) {
    let targets = Targets::new()
        .with_target(env!("CARGO_CRATE_NAME"), filter(level))
        .with_default(LevelFilter::WARN.min(filter(level)));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_filter(targets),
            )
            .try_init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer.with_ansi(false).with_filter(targets))
            .try_init(),
    };
}
