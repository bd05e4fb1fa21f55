//! Structured logs: one JSON object per line (default) or readable text.
//!
//! Event names go in the `message` field (e.g. `kms.request`, `serve.ready`);
//! fields are bounded values only. Secrets cannot reach here by construction:
//! they live in redacting types whose `Debug` prints a marker.

use crate::config::{LogFormat, LogLevel};
use tracing::level_filters::LevelFilter;

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
pub fn init(level: LogLevel, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(filter(level))
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}
