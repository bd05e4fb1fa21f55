//! The live view behind scrape-time gauges and `/ready`: reads the status
//! cache, limits, token source, prober and keeper, never OpenBao.

use crate::identity::hash_value;
use crate::kms::Limits;
use crate::observe::health::{Readiness, ReadinessSource};
use crate::observe::metrics::{GaugeSource, Gauges};
use crate::openbao::TokenSource;
use crate::status::{Prober, StatusCache};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The parts the view reads; set once the runtime has built them.
pub struct Parts {
    pub cache: Arc<StatusCache>,
    pub limits: Limits,
    pub tokens: Arc<dyn TokenSource>,
    pub prober: Arc<Prober>,
    pub max_staleness: Duration,
    /// `auth_method_info` and `certificate_source_info` labels.
    pub auth_method: &'static str,
    pub certificate_source: &'static str,
}

/// Filled in after construction, because metrics are needed to build the parts.
#[derive(Default)]
pub struct LiveView {
    parts: OnceLock<Parts>,
}

impl LiveView {
    pub fn set(&self, parts: Parts) {
        let _ = self.parts.set(parts);
    }

    fn rotation_state(parts: &Parts) -> &'static str {
        match parts.cache.registry() {
            None => "unknown",
            Some(registry) if registry.has_pending() => "pending",
            Some(_) => "active",
        }
    }
}

impl GaugeSource for LiveView {
    fn gauges(&self) -> Gauges {
        let Some(parts) = self.parts.get() else {
            return Gauges {
                rotation_state: "unknown",
                auth_method: "jwt",
                certificate_source: "none",
                ..Gauges::default()
            };
        };
        let registry = parts.cache.registry();
        Gauges {
            in_flight: parts.limits.in_flight(),
            token_ttl_seconds: parts.tokens.token_ttl().map_or(0.0, |d| d.as_secs_f64()),
            active_key_id_hash: registry
                .as_ref()
                .map(|r| hash_value(r.active().key_id.as_str())),
            key_version: registry.as_ref().map_or(0, |r| r.active().transit_version),
            cache_age_seconds: parts
                .cache
                .age_of_last_success()
                .map_or(0.0, |d| d.as_secs_f64()),
            breaker_open: parts.prober.metadata_breaker_open(),
            rotation_state: Self::rotation_state(parts),
            persistence_degraded: parts.prober.keeper().persistence_degraded(),
            unhealthy_reasons: parts.cache.reasons().iter().map(|r| r.as_str()).collect(),
            auth_method: parts.auth_method,
            certificate_source: parts.certificate_source,
            certificate_ttl_seconds: parts
                .tokens
                .certificate_ttl()
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }
}

impl ReadinessSource for LiveView {
    fn readiness(&self) -> Readiness {
        let Some(parts) = self.parts.get() else {
            return Readiness {
                ready: false,
                status: "unavailable",
                healthz: "unhealthy",
                cache_age_ms: None,
                stale: true,
                rotation_state: "unknown",
                reasons: vec!["diagnostics_unavailable"],
                metadata_error_class: None,
                deep_error_class: None,
            };
        };
        let ready = parts.cache.healthy_active().is_ok();
        let age = parts.cache.age_of_last_success();
        let (metadata_class, deep_class) = parts.cache.error_classes();
        Readiness {
            ready,
            status: if ready { "ok" } else { "unavailable" },
            healthz: if ready { "ok" } else { "unhealthy" },
            cache_age_ms: age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
            stale: age.is_none_or(|a| a > parts.max_staleness),
            rotation_state: Self::rotation_state(parts),
            reasons: parts.cache.reasons().iter().map(|r| r.as_str()).collect(),
            metadata_error_class: metadata_class.map(|c| c.as_str()),
            deep_error_class: deep_class.map(|c| c.as_str()),
        }
    }
}
