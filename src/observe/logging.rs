//! Structured logs: one JSON object per line (default) or readable text.
//!
//! JSON lines carry `ts` (RFC 3339, milliseconds, UTC), `level` (upper case),
//! `message` (the event name, e.g. `kms.request`) and the event's fields, all
//! bounded values. Secrets cannot reach here by construction: they live in
//! redacting types whose `Debug` prints a marker.
//!
//! The log policy also decides two opt-in extras: OpenBao request ids
//! (`logging.logOpenBaoRequestIDs`) and debug correlation, which adds hashed
//! request uids for a limited time only.

use crate::clock::{rfc3339, rfc3339_millis};
use crate::config::{LogFormat, LogLevel, LoggingConfig};
use std::fmt;
use std::sync::OnceLock;
use std::time::SystemTime;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

/// Collects an event's fields as JSON values.
struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

/// `{"ts":…,"level":…,"message":…,<fields>}` per event.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = JsonFields(serde_json::Map::new());
        event.record(&mut fields);
        let mut line = serde_json::Map::new();
        line.insert("ts".into(), rfc3339_millis(SystemTime::now()).into());
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert(
            "message".into(),
            fields.0.remove("message").unwrap_or_else(|| "".into()),
        );
        line.extend(fields.0);
        writeln!(writer, "{}", serde_json::Value::Object(line))
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
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer.event_format(JsonLines).with_filter(targets))
            .try_init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(
                layer
                    .with_target(false)
                    .with_ansi(false)
                    .with_filter(targets),
            )
            .try_init(),
    };
}

/// The opt-in log extras, fixed at start-up.
#[derive(Debug)]
struct Policy {
    request_ids: bool,
    /// Incident id and the wall-clock end of the correlation window.
    correlation: Option<(String, SystemTime)>,
}

static POLICY: OnceLock<Policy> = OnceLock::new();

/// Fixes the policy from `logging.*` (validation already enforced that
/// correlation needs debug level, request ids on, an incident and TTL ≤ 1h).
pub fn configure(config: &LoggingConfig) {
    let correlation = config.debug_correlation.enabled.then(|| {
        (
            config.debug_correlation.incident_id.clone(),
            SystemTime::now() + config.debug_correlation.ttl,
        )
    });
    let _ = POLICY.set(Policy {
        request_ids: config.log_openbao_request_ids,
        correlation,
    });
}

/// Whether OpenBao request ids may be logged.
pub fn request_ids_enabled() -> bool {
    POLICY.get().is_some_and(|p| p.request_ids)
}

/// The active debug correlation: `(incident, expires_at RFC 3339)`, or `None`
/// when disabled or past its TTL (checked on every call, so it switches
/// itself off without a restart).
pub fn correlation() -> Option<(&'static str, String)> {
    let (incident, expires) = POLICY.get()?.correlation.as_ref()?;
    if SystemTime::now() >= *expires {
        return None;
    }
    let secs = expires
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some((
        incident.as_str(),
        rfc3339(i64::try_from(secs).unwrap_or(i64::MAX)),
    ))
}

/// An OpenBao `request_id` is logged only when it has the expected shape.
pub fn usable_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_shape() {
        assert!(usable_request_id("0b6a2c1e-5d2f-4f0a-9a3b-1c2d3e4f5a6b"));
        assert!(!usable_request_id(""));
        assert!(!usable_request_id("has space"));
        assert!(!usable_request_id(&"a".repeat(129)));
    }
}
