//! Metadata and deep probes: the only code that refreshes the status cache.
//!
//! Probes are serialized through one gate so metadata and deep probes never
//! overlap, and each has its own circuit breaker.

use super::breaker::Breaker;
use super::cache::StatusCache;
use super::profile::assess_profile;
use super::reason::Reason;
use crate::clock::unix_now;
use crate::identity::DEEP_PROBE_AAD;
use crate::observe::metrics::Metrics;
use crate::openbao::{ErrorClass, KeyMetadata, Transit};
use crate::registry::{Keeper, Mode, Published, Registry, RegistryError};
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
    keeper: Arc<Keeper>,
    cache: Arc<StatusCache>,
    gate: tokio::sync::Mutex<()>,
    metadata_breaker: Mutex<Breaker>,
    deep_breaker: Mutex<Breaker>,
    metrics: Option<Arc<Metrics>>,
}

impl Prober {
    pub fn new(transit: Arc<Transit>, keeper: Arc<Keeper>, cache: Arc<StatusCache>) -> Self {
        Self {
            transit,
            keeper,
            cache,
            gate: tokio::sync::Mutex::new(()),
            metadata_breaker: Mutex::new(Breaker::default()),
            deep_breaker: Mutex::new(Breaker::default()),
            metrics: None,
        }
    }

    /// Counts metadata observations in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Breakers that admit one half-open trial per `spacing` (the probe
    /// interval) while open, so health returns within one interval of
    /// OpenBao answering again.
    pub fn with_breaker_trials(self, spacing: std::time::Duration) -> Self {
        let breaker = || Mutex::new(Breaker::with_trial_spacing(spacing));
        Self {
            metadata_breaker: breaker(),
            deep_breaker: breaker(),
            ..self
        }
    }

    /// Whether the metadata probe's circuit breaker is open right now.
    pub fn metadata_breaker_open(&self) -> bool {
        self.metadata_breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_open(Instant::now())
    }

    pub fn keeper(&self) -> &Arc<Keeper> {
        &self.keeper
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
        if let Some(metrics) = &self.metrics {
            let status = match &metadata {
                Ok(()) => "ok",
                Err((_, Some(class))) => class.as_str(),
                Err((reason, None)) => reason.as_str(),
            };
            metrics.metadata_observation(status);
        }
        let run_deep = (deep_due || self.cache.deep_required()) && !self.cache.encryption_blocked();
        if metadata.is_ok() && run_deep {
            let deep = self.deep_probe(breakers).await;
            self.log_probe("deep", &deep);
        }
        self.cache.reasons()
    }

    /// Whether the provider may serve Decrypt although Status is unhealthy for
    /// `reasons`: the registry is loaded, no identity is contradicted, and
    /// every reason is a setting drift (the deep probe is not run under one).
    pub fn serves_decrypt_despite(&self, reasons: &[Reason]) -> bool {
        self.cache.registry().is_some()
            && !self.cache.identity_refused()
            && reasons.iter().any(|r| r.is_setting_drift())
            && reasons
                .iter()
                .all(|r| r.is_setting_drift() || *r == Reason::DeepProbePending)
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
            Ok(()) => tracing::debug!(
                operation = "status.probe",
                probe_kind = kind,
                status = "ok",
                "status.probe"
            ),
            Err((reason, class)) => tracing::warn!(
                operation = "status.probe",
                probe_kind = kind,
                status = class.map_or(reason.as_str(), ErrorClass::as_str),
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
                .admit(Instant::now())
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
        let outcome = self.observe_metadata(Mode::Observe).await;
        // A finding about the key (unsafe setting, identity, a key that is
        // gone) is not an outage, so it does not trip the breaker: the next
        // probe must still see what the key has become.
        let outage = matches!(&outcome, Err(Failure { class: Some(class), .. }) if *class != ErrorClass::NotFound);
        Self::breaker_record(&self.metadata_breaker, !outage);
        match outcome {
            Ok(Observed { registry, problem }) => {
                self.cache.metadata_observed(registry, problem);
                problem.map_or(Ok(()), |reason| Err((reason, None)))
            }
            Err(Failure {
                reason,
                class,
                intact: Some(intact),
            }) => {
                self.cache
                    .metadata_contradicted(reason, class, Some(intact));
                Err((reason, class))
            }
            Err(Failure { reason, class, .. }) => {
                self.cache.metadata_failed(reason, class);
                Err((reason, class))
            }
        }
    }

    /// Hands the metadata to the keeper, which persists before we publish.
    /// File I/O (with fsync) runs off the async workers.
    fn keep(&self, meta: &KeyMetadata, mode: Mode) -> Result<Published, RegistryError> {
        let now = unix_now();
        tokio::task::block_in_place(|| self.keeper.observe(meta, mode, now))
    }

    /// Reads live metadata and validates it against the registry.
    ///
    /// Identity contradictions and outages are errors. An unsafe setting (upsert
    /// allowed, an unsafe profile, a minimum version that excludes a retained
    /// one) is an observation with a problem: the key's identity was still
    /// validated, new identities are still recorded, but nothing is counted
    /// towards promotion.
    async fn observe_metadata(&self, mode: Mode) -> Result<Observed, Failure> {
        let upsert_disabled = self
            .transit
            .disable_upsert()
            .await
            .map_err(|e| Failure::of(Reason::UpsertCheckFailed, Some(e.class)))?;
        let meta = self
            .transit
            .read_key()
            .await
            .map_err(|e| Failure::of(Reason::MetadataReadFailed, Some(e.class)))?;
        let unsafe_profile = assess_profile(&meta).map_err(|r| Failure::of(r, None))?;
        let mut drift = unsafe_profile.or((!upsert_disabled).then_some(Reason::UpsertAllowed));
        let mode = if drift.is_some() {
            Mode::Discover
        } else {
            mode
        };
        let published = match self.keep(&meta, mode) {
            Err(RegistryError::VersionExcluded) => {
                drift = Some(Reason::ProfileInvalid);
                self.keep(&meta, Mode::Discover)
            }
            other => other,
        };
        let published = match (published, drift) {
            (Ok(published), _) => published,
            // Nothing recorded yet: the unsafe setting is the useful reason.
            (Err(RegistryError::StateUnavailable), Some(reason)) => {
                return Err(Failure::of(reason, None));
            }
            // The key contradicts some recorded versions (a rollback, a
            // restore, a recreated key): the ones it still confirms stay
            // decryptable.
            (Err(e @ (RegistryError::IdentityMismatch | RegistryError::VersionRollback)), _) => {
                return Err(Failure {
                    reason: Reason::from(e),
                    class: None,
                    intact: Some(self.keeper.intact_versions(&meta)),
                });
            }
            (Err(e), _) => return Err(Failure::of(Reason::from(e), None)),
        };
        let blocked = published
            .encryption_blocked
            .then_some(Reason::EncryptionBlocked);
        Ok(Observed {
            registry: published.registry,
            problem: drift.or(blocked),
        })
    }

    /// Unknown-key_id discovery: the same validation as a metadata probe, but
    /// it only records new identities (never counts, never promotes) and
    /// publishes the registry without touching probe health. An unsafe
    /// setting does not stop it: Decrypt stays served while Encrypt is refused.
    pub async fn discover_cycle(&self) -> bool {
        let _gate = self.gate.lock().await;
        match self.observe_metadata(Mode::Discover).await {
            Ok(observed) => {
                self.cache.publish_registry(observed.registry);
                tracing::info!(result = "ok", "status.discovery");
                true
            }
            Err(Failure { reason, class, .. }) => {
                tracing::warn!(
                    result = "failed",
                    reason = reason.as_str(),
                    error_class = class.map_or("none", ErrorClass::as_str),
                    "status.discovery"
                );
                false
            }
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

/// Why a metadata observation failed; `intact` is set when live metadata
/// contradicted recorded versions, naming those it still confirms.
struct Failure {
    reason: Reason,
    class: Option<ErrorClass>,
    intact: Option<std::collections::BTreeSet<u64>>,
}

impl Failure {
    fn of(reason: Reason, class: Option<ErrorClass>) -> Self {
        Self {
            reason,
            class,
            intact: None,
        }
    }
}

/// A metadata observation whose identity checks passed: the registry to
/// publish, and why Status must still be unhealthy (an unsafe setting, or
/// encryption blocked by `min_encryption_version`).
struct Observed {
    registry: Arc<Registry>,
    problem: Option<Reason>,
}
