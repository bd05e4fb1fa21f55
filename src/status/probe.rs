//! Metadata and deep probes: the only code that refreshes the status cache.
//!
//! Probes are serialized through one gate so metadata and deep probes never
//! overlap, and each has its own circuit breaker.

use super::breaker::Breaker;
use super::cache::StatusCache;
use super::profile::check_profile;
use super::reason::Reason;
use crate::identity::{DEEP_PROBE_AAD, Scope};
use crate::openbao::{ErrorClass, Transit};
use crate::registry::Registry;
use ring::rand::SecureRandom as _;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::time::Instant;

const KMS_CIPHERTEXT_LIMIT: usize = 1024;

type ProbeError = (Reason, Option<ErrorClass>);

/// Whether a probe honours an open circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breakers {
    Respect,
    Ignore,
}

pub struct Prober {
    transit: Arc<Transit>,
    scope: Arc<Scope>,
    cache: Arc<StatusCache>,
    reject_rollback: bool,
    gate: tokio::sync::Mutex<()>,
    metadata_breaker: Mutex<Breaker>,
    deep_breaker: Mutex<Breaker>,
}

impl Prober {
    pub fn new(
        transit: Arc<Transit>,
        scope: Arc<Scope>,
        cache: Arc<StatusCache>,
        reject_rollback: bool,
    ) -> Self {
        Self {
            transit,
            scope,
            cache,
            reject_rollback,
            gate: tokio::sync::Mutex::new(()),
            metadata_breaker: Mutex::new(Breaker::default()),
            deep_breaker: Mutex::new(Breaker::default()),
        }
    }

    pub fn cache(&self) -> &Arc<StatusCache> {
        &self.cache
    }

    /// Runs a metadata probe, then a deep probe if one is due. Returns the
    /// resulting unhealthy reasons (empty when healthy).
    pub async fn probe_cycle(&self, deep_due: bool) -> Vec<Reason> {
        self.cycle(deep_due, Breakers::Respect).await
    }

    /// The bootstrap variant: both probes, ignoring open breakers. Bootstrap
    /// already spaces its attempts by `retryInterval`; an open breaker would
    /// only make it miss an OpenBao that came back within the grace period.
    pub async fn bootstrap_cycle(&self) -> Vec<Reason> {
        self.cycle(true, Breakers::Ignore).await
    }

    async fn cycle(&self, deep_due: bool, breakers: Breakers) -> Vec<Reason> {
        let _gate = self.gate.lock().await;
        let metadata = self.metadata_probe(breakers).await;
        self.log_probe("metadata", &metadata);
        let run_deep = (deep_due || self.cache.deep_required()) && !self.cache.encryption_blocked();
        if metadata.is_ok() && run_deep {
            let deep = self.deep_probe(breakers).await;
            self.log_probe("deep", &deep);
        }
        self.cache.reasons()
    }

    /// Runs only the deep probe (its own interval).
    pub async fn deep_cycle(&self) {
        let _gate = self.gate.lock().await;
        if self.cache.registry().is_some() && !self.cache.encryption_blocked() {
            let deep = self.deep_probe(Breakers::Respect).await;
            self.log_probe("deep", &deep);
        }
    }

    fn log_probe(&self, kind: &'static str, result: &Result<(), ProbeError>) {
        match result {
            Ok(()) => tracing::debug!(probe = kind, result = "ok", "status.probe"),
            Err((reason, class)) => tracing::warn!(
                probe = kind,
                result = "failed",
                reason = reason.as_str(),
                error_class = class.map_or("none", ErrorClass::as_str),
                "status.probe"
            ),
        }
    }

    fn breaker_allows(breaker: &Mutex<Breaker>, breakers: Breakers) -> bool {
        breakers == Breakers::Ignore
            || breaker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .allows(Instant::now())
    }

    fn breaker_record(breaker: &Mutex<Breaker>, success: bool) {
        breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(success, Instant::now());
    }

    async fn metadata_probe(&self, breakers: Breakers) -> Result<(), ProbeError> {
        if !Self::breaker_allows(&self.metadata_breaker, breakers) {
            self.cache.metadata_failed(Reason::CircuitBreakerOpen, None);
            return Err((Reason::CircuitBreakerOpen, None));
        }
        let outcome = self.observe_metadata().await;
        // A policy finding (upsert allowed, unsafe profile) is not an outage, so it
        // does not trip the breaker.
        let outage = matches!(&outcome, Err((_, Some(_))));
        Self::breaker_record(&self.metadata_breaker, !outage);
        match outcome {
            Ok(Checked {
                registry,
                blocked: true,
            }) => {
                self.cache.metadata_blocked(registry);
                Err((Reason::EncryptionBlocked, None))
            }
            Ok(Checked {
                registry,
                blocked: false,
            }) => {
                self.cache.metadata_succeeded(registry);
                Ok(())
            }
            Err((reason, class)) => {
                self.cache.metadata_failed(reason, class);
                Err((reason, class))
            }
        }
    }

    async fn observe_metadata(&self) -> Result<Checked, ProbeError> {
        match self.transit.disable_upsert().await {
            Ok(true) => {}
            Ok(false) => return Err((Reason::UpsertAllowed, None)),
            Err(e) => return Err((Reason::UpsertCheckFailed, Some(e.class))),
        }
        let meta = self
            .transit
            .read_key()
            .await
            .map_err(|e| (Reason::MetadataReadFailed, Some(e.class)))?;
        check_profile(&meta).map_err(|r| (r, None))?;
        let registry = match self.cache.registry() {
            Some(existing) => existing,
            None => Arc::new(Registry::bootstrap(&self.scope, &meta).map_err(|r| (r, None))?),
        };
        match registry.validate_against(&meta, self.reject_rollback) {
            Ok(()) => Ok(Checked {
                registry,
                blocked: false,
            }),
            Err(Reason::EncryptionBlocked) => Ok(Checked {
                registry,
                blocked: true,
            }),
            Err(reason) => Err((reason, None)),
        }
    }

    async fn deep_probe(&self, breakers: Breakers) -> Result<(), ProbeError> {
        let result = if Self::breaker_allows(&self.deep_breaker, breakers) {
            let result = self.encrypt_decrypt_round_trip().await;
            Self::breaker_record(&self.deep_breaker, result.is_ok());
            result
        } else {
            Err((Reason::CircuitBreakerOpen, None))
        };
        self.cache.deep_result(result);
        result
    }

    async fn encrypt_decrypt_round_trip(&self) -> Result<(), ProbeError> {
        let Some(registry) = self.cache.registry() else {
            return Err((Reason::DeepProbePending, None));
        };
        let version = registry.active().transit_version;
        let mut probe = zeroize::Zeroizing::new([0u8; 32]);
        ring::rand::SystemRandom::new()
            .fill(probe.as_mut())
            .map_err(|_| (Reason::DeepProbeFailed, None))?;
        let failed = |e: crate::openbao::OpenBaoError| (Reason::DeepProbeFailed, Some(e.class));
        let ciphertext = self
            .transit
            .encrypt(probe.as_ref(), DEEP_PROBE_AAD, version)
            .await
            .map_err(failed)?;
        if ciphertext.len() >= KMS_CIPHERTEXT_LIMIT {
            return Err((Reason::DeepProbeInvalid, None));
        }
        let plaintext = self
            .transit
            .decrypt(ciphertext.expose(), DEEP_PROBE_AAD)
            .await
            .map_err(failed)?;
        if plaintext.expose() == probe.as_ref() {
            Ok(())
        } else {
            Err((Reason::DeepProbeInvalid, None))
        }
    }
}

/// A validated registry and whether encryption is blocked by `min_encryption_version`.
struct Checked {
    registry: Arc<Registry>,
    blocked: bool,
}
