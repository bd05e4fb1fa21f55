//! Prometheus metrics on a registry of our own (`operations.md` §1).
//!
//! Counters and histograms are updated where things happen; gauges that
//! describe current state are read at scrape time from a [`GaugeSource`], so
//! they can never drift from what Status and `/ready` report. Every label
//! value is bounded and normalized; a key_id only ever appears hashed.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Lower-case, `[a-z0-9_]` only, `unknown` when nothing is left.
pub fn normalize(value: &str) -> String {
    let cleaned: String = value
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.chars().all(|c| c == '_') {
        "unknown".to_owned()
    } else {
        cleaned
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodStatus {
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationStatus {
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms doubling to 2.048 s, as the reference.
    Histogram::new(exponential_buckets(0.001, 2.0, 12))
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// State read at every scrape.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// `(method, handlers holding a slot)` for status, encrypt, decrypt.
    pub in_flight: Vec<(&'static str, u64)>,
    pub token_ttl_seconds: f64,
    pub active_key_id_hash: Option<String>,
    pub key_version: u64,
    pub cache_age_seconds: f64,
    pub breaker_open: bool,
    pub rotation_state: &'static str,
    pub persistence_degraded: bool,
    pub auth_method: &'static str,
    /// `pkcs11` with cert auth, `none` otherwise.
    pub certificate_source: &'static str,
    /// Seconds left on the leaf of the last cert login (0 without cert auth).
    pub certificate_ttl_seconds: f64,
    /// Every reason Status is unhealthy right now (empty when healthy).
    pub unhealthy_reasons: Vec<&'static str>,
}

/// Where scrape-time gauges come from (implemented by the runtime wiring).
pub trait GaugeSource: Send + Sync + 'static {
    fn gauges(&self) -> Gauges;
}

impl<T: GaugeSource> GaugeSource for Arc<T> {
    fn gauges(&self) -> Gauges {
        self.as_ref().gauges()
    }
}

/// The provider's metrics.
pub struct Metrics {
    registry: Registry,
    grpc_requests: Family<MethodStatus, Counter>,
    grpc_duration: HistogramFamily<Method>,
    grpc_rejections: Family<Method, Counter>,
    panic_recoveries: Family<Method, Counter>,
    openbao_requests: Family<OperationStatus, Counter>,
    openbao_duration: HistogramFamily<Operation>,
    auth_login: Family<Status, Counter>,
    auth_renewal: Family<Status, Counter>,
    metadata_observations: Family<Status, Counter>,
    aad_errors: Family<Reason, Counter>,
    key_id_errors: Family<Reason, Counter>,
    socket_restarts: Counter,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

/// Build metadata exported as `openbao_kms_build_info`.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub version: String,
    pub commit: String,
    pub build_date: String,
    pub dirty: String,
}

struct StateCollector {
    source: Box<dyn GaugeSource>,
    build: BuildInfo,
}

impl fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateCollector")
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn labelled_gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Vec<(&str, String)>, f64)],
) -> Result<(), fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        ConstGauge::new(*value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let g = self.source.gauges();
        let e = &mut encoder;
        let in_flight: Vec<_> = g
            .in_flight
            .iter()
            .map(|(m, n)| (vec![("method", (*m).to_owned())], *n as f64))
            .collect();
        labelled_gauges(
            e,
            "grpc_in_flight",
            "KMS handlers currently holding a concurrency slot",
            &in_flight,
        )?;
        gauge(
            e,
            "token_ttl_seconds",
            "Seconds left on the in-memory OpenBao token",
            g.token_ttl_seconds.max(0.0),
        )?;
        gauge(
            e,
            "certificate_ttl_seconds",
            "Seconds left on the cert-auth client certificate (0 without cert auth)",
            g.certificate_ttl_seconds.max(0.0),
        )?;
        let hash: Vec<_> = g
            .active_key_id_hash
            .iter()
            .map(|h| (vec![("hash", h.clone())], 1.0))
            .collect();
        labelled_gauges(
            e,
            "status_key_id_hash",
            "Hash of the active key_id (1 for the active key); equal on every node",
            &hash,
        )?;
        gauge(
            e,
            "key_version",
            "Transit version new encryptions use",
            g.key_version as f64,
        )?;
        gauge(
            e,
            "status_cache_age_seconds",
            "Age of the last successful metadata observation",
            g.cache_age_seconds,
        )?;
        let reasons: Vec<_> = g
            .unhealthy_reasons
            .iter()
            .map(|r| (vec![("reason", (*r).to_owned())], 1.0))
            .collect();
        labelled_gauges(
            e,
            "status_unhealthy_reason",
            "1 for each reason Status is unhealthy now (no series when healthy)",
            &reasons,
        )?;
        gauge(
            e,
            "circuit_breaker_state",
            "Metadata probe circuit breaker: 0 closed, 1 open",
            f64::from(u8::from(g.breaker_open)),
        )?;
        let rotation: Vec<_> = ["active", "pending", "unknown"]
            .iter()
            .map(|s| {
                (
                    vec![("state", (*s).to_owned())],
                    f64::from(u8::from(*s == g.rotation_state)),
                )
            })
            .collect();
        labelled_gauges(
            e,
            "rotation_state",
            "Rotation state; exactly one series is 1",
            &rotation,
        )?;
        gauge(
            e,
            "rotation_persistence_degraded",
            "1 while the last registry state save failed.",
            f64::from(u8::from(g.persistence_degraded)),
        )?;
        labelled_gauges(
            e,
            "auth_method_info",
            "The configured auth method",
            &[(vec![("method", g.auth_method.to_owned())], 1.0)],
        )?;
        labelled_gauges(
            e,
            "certificate_source_info",
            "The client certificate source",
            &[(vec![("source", g.certificate_source.to_owned())], 1.0)],
        )?;
        let b = &self.build;
        labelled_gauges(
            e,
            "build_info",
            "Build metadata",
            &[(
                vec![
                    ("version", b.version.clone()),
                    ("commit", b.commit.clone()),
                    ("build_date", b.build_date.clone()),
                    ("dirty", b.dirty.clone()),
                ],
                1.0,
            )],
        )?;
        Ok(())
    }
}

/// `process_*` metrics for this process, read from `/proc/self`.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(p) = super::process::read() else {
            return Ok(());
        };
        let e = &mut encoder;
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            p.resident_bytes as f64,
        )?;
        gauge(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            p.virtual_bytes as f64,
        )?;
        gauge(
            e,
            "process_open_fds",
            "Open file descriptors",
            p.open_fds as f64,
        )?;
        gauge(
            e,
            "process_max_fds",
            "Maximum open file descriptors",
            p.max_fds as f64,
        )?;
        gauge(
            e,
            "process_start_time_seconds",
            "Start time since the Unix epoch in seconds",
            p.start_time_seconds,
        )?;
        let cpu = e.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time in seconds",
            None,
            MetricType::Counter,
        )?;
        prometheus_client::metrics::counter::ConstCounter::new(p.cpu_seconds).encode(cpu)
    }
}

impl Metrics {
    /// A fresh registry with every metric registered (no global state).
    pub fn new(source: Box<dyn GaugeSource>, build: BuildInfo) -> Arc<Self> {
        let mut registry = Registry::default();
        let m = Self {
            grpc_requests: Family::default(),
            grpc_duration: Family::new_with_constructor(latency_histogram),
            grpc_rejections: Family::default(),
            panic_recoveries: Family::default(),
            openbao_requests: Family::default(),
            openbao_duration: Family::new_with_constructor(latency_histogram),
            auth_login: Family::default(),
            auth_renewal: Family::default(),
            metadata_observations: Family::default(),
            aad_errors: Family::default(),
            key_id_errors: Family::default(),
            socket_restarts: Counter::default(),
            registry: Registry::default(),
        };
        {
            let kms = registry.sub_registry_with_prefix("openbao_kms");
            kms.register(
                "grpc_requests",
                "KMS v2 RPCs by method and gRPC status",
                m.grpc_requests.clone(),
            );
            kms.register(
                "grpc_duration_seconds",
                "KMS v2 handler latency",
                m.grpc_duration.clone(),
            );
            kms.register(
                "grpc_concurrency_rejections",
                "RPCs refused because the method's concurrency limit was full",
                m.grpc_rejections.clone(),
            );
            kms.register(
                "openbao_requests",
                "OpenBao HTTP calls by operation and outcome",
                m.openbao_requests.clone(),
            );
            kms.register(
                "openbao_duration_seconds",
                "OpenBao call latency",
                m.openbao_duration.clone(),
            );
            kms.register(
                "auth_login",
                "Login attempts by outcome",
                m.auth_login.clone(),
            );
            kms.register(
                "auth_renewal",
                "Token renew-self attempts by outcome",
                m.auth_renewal.clone(),
            );
            kms.register(
                "transit_metadata_observation",
                "Background metadata probe outcomes",
                m.metadata_observations.clone(),
            );
            kms.register(
                "aad_validation_errors",
                "Decrypts refused by AAD or annotation checks",
                m.aad_errors.clone(),
            );
            kms.register(
                "decrypt_key_id_errors",
                "Decrypts refused because of their key_id",
                m.key_id_errors.clone(),
            );
            kms.register(
                "panic_recoveries",
                "Handler panics recovered: each answered that one request with INTERNAL",
                m.panic_recoveries.clone(),
            );
            kms.register(
                "socket_restarts",
                "Stale sockets verified dead and removed before bind",
                m.socket_restarts.clone(),
            );
            kms.register_collector(Box::new(StateCollector { source, build }));
        }
        registry.register_collector(Box::new(ProcessCollector));
        Arc::new(Self { registry, ..m })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    pub fn kms_request(&self, method: &str, grpc_status: &str, elapsed: Duration) {
        let method = normalize(method);
        self.grpc_requests
            .get_or_create(&MethodStatus {
                method: method.clone(),
                status: normalize(grpc_status),
            })
            .inc();
        self.grpc_duration
            .get_or_create(&Method { method })
            .observe(elapsed.as_secs_f64());
    }

    pub fn concurrency_rejected(&self, method: &str) {
        self.grpc_rejections
            .get_or_create(&Method {
                method: normalize(method),
            })
            .inc();
    }

    pub fn panic_recovered(&self, method: &str) {
        self.panic_recoveries
            .get_or_create(&Method {
                method: normalize(method),
            })
            .inc();
    }

    pub fn openbao_request(&self, operation: &str, status: &str, elapsed: Duration) {
        let operation = normalize(operation);
        self.openbao_requests
            .get_or_create(&OperationStatus {
                operation: operation.clone(),
                status: normalize(status),
            })
            .inc();
        self.openbao_duration
            .get_or_create(&Operation { operation })
            .observe(elapsed.as_secs_f64());
    }

    pub fn auth_login(&self, status: &str) {
        self.auth_login
            .get_or_create(&Status {
                status: normalize(status),
            })
            .inc();
    }

    pub fn auth_renewal(&self, status: &str) {
        self.auth_renewal
            .get_or_create(&Status {
                status: normalize(status),
            })
            .inc();
    }

    pub fn metadata_observation(&self, status: &str) {
        self.metadata_observations
            .get_or_create(&Status {
                status: normalize(status),
            })
            .inc();
    }

    pub fn aad_error(&self, reason: &str) {
        self.aad_errors
            .get_or_create(&Reason {
                reason: normalize(reason),
            })
            .inc();
    }

    pub fn key_id_error(&self, reason: &str) {
        self.key_id_errors
            .get_or_create(&Reason {
                reason: normalize(reason),
            })
            .inc();
    }

    pub fn socket_restart(&self) {
        self.socket_restarts.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl GaugeSource for Fixed {
        fn gauges(&self) -> Gauges {
            Gauges {
                in_flight: vec![("status", 0), ("encrypt", 1), ("decrypt", 2)],
                active_key_id_hash: Some("h".repeat(43)),
                key_version: 3,
                rotation_state: "pending",
                auth_method: "jwt",
                certificate_source: "none",
                unhealthy_reasons: vec!["profile_invalid", "deep_probe_failed"],
                ..Gauges::default()
            }
        }
    }

    fn metrics() -> Arc<Metrics> {
        let build = BuildInfo {
            version: "v0.1.0".into(),
            commit: "c".into(),
            build_date: "d".into(),
            dirty: "false".into(),
        };
        Metrics::new(Box::new(Fixed), build)
    }

    #[test]
    fn normalizes_label_values() {
        assert_eq!(normalize("transit decrypt"), "transit_decrypt");
        assert_eq!(normalize(" OK "), "ok");
        assert_eq!(normalize("///"), "unknown");
        assert_eq!(normalize(""), "unknown");
    }

    #[test]
    fn renders_the_catalogue_with_the_documented_buckets() {
        let m = metrics();
        m.kms_request("decrypt", "not_found", Duration::from_millis(3));
        m.openbao_request("transit_decrypt", "ok", Duration::from_millis(1));
        m.socket_restart();
        let text = m.render();
        for needle in [
            "openbao_kms_grpc_requests_total{method=\"decrypt\",status=\"not_found\"} 1",
            "openbao_kms_grpc_duration_seconds_bucket{method=\"decrypt\",le=\"0.004\"} 1",
            "openbao_kms_grpc_duration_seconds_bucket{method=\"decrypt\",le=\"2.048\"} 1",
            "openbao_kms_openbao_requests_total{operation=\"transit_decrypt\",status=\"ok\"} 1",
            "openbao_kms_socket_restarts_total 1",
            "openbao_kms_rotation_state{state=\"pending\"} 1",
            "openbao_kms_rotation_state{state=\"active\"} 0",
            "openbao_kms_key_version 3",
            "openbao_kms_status_unhealthy_reason{reason=\"profile_invalid\"} 1",
            "openbao_kms_status_unhealthy_reason{reason=\"deep_probe_failed\"} 1",
            "openbao_kms_grpc_in_flight{method=\"decrypt\"} 2",
            "openbao_kms_build_info{version=\"v0.1.0\",commit=\"c\",build_date=\"d\",dirty=\"false\"} 1",
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert_eq!(text.matches("openbao_kms_build_info{").count(), 1);
    }
}
