//! The status cache: the only thing Status, Encrypt and `/ready` consult.
//!
//! Health is `metadata_ok && deep_ok && !stale`. Staleness uses the larger of
//! monotonic and wall-clock age since the last successful metadata probe, so a
//! backward clock step can never make an old observation look fresh.

use super::reason::Reason;
use crate::clock::{SystemClock, WallClock};
use crate::identity::KeySnapshot;
use crate::openbao::ErrorClass;
use crate::registry::Registry;
use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Why Status/Encrypt are refused right now (all bounded reasons, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy(pub Vec<Reason>);

#[derive(Debug, Default)]
struct Inner {
    registry: Option<Arc<Registry>>,
    metadata_ok: bool,
    deep_ok: bool,
    last_metadata_success: Option<(Instant, SystemTime)>,
    metadata_reason: Option<Reason>,
    deep_reason: Option<Reason>,
    metadata_class: Option<ErrorClass>,
    deep_class: Option<ErrorClass>,
    /// Set once live metadata contradicted the registry (key missing,
    /// recreated, rolled back): the versions it still confirmed, the only ones
    /// Decrypt serves. Sticky (and only ever narrowed) until a metadata
    /// observation validates the key again.
    contradicted: Option<BTreeSet<u64>>,
}

/// Shared, lock-protected health view. Locks are never held across an await.
pub struct StatusCache {
    inner: RwLock<Inner>,
    max_staleness: Duration,
    wall: Arc<dyn WallClock>,
}

impl StatusCache {
    pub fn new(max_staleness: Duration) -> Self {
        Self::with_wall_clock(max_staleness, Arc::new(SystemClock))
    }

    /// A cache whose wall-clock readings come from `wall` (monotonic time is
    /// tokio's, which tests pause and advance).
    pub fn with_wall_clock(max_staleness: Duration, wall: Arc<dyn WallClock>) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            max_staleness,
            wall,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn age(&self, inner: &Inner) -> Option<Duration> {
        inner.last_metadata_success.map(|(mono, wall)| {
            let monotonic = mono.elapsed();
            let wall_clock = self.wall.now().duration_since(wall).unwrap_or_default();
            monotonic.max(wall_clock)
        })
    }

    /// Age of the last successful metadata observation.
    pub fn age_of_last_success(&self) -> Option<Duration> {
        self.age(&self.read())
    }

    /// The active snapshot when the provider may serve Status `ok` and Encrypt.
    pub fn healthy_active(&self) -> Result<Arc<KeySnapshot>, Unhealthy> {
        let inner = self.read();
        let reasons = self.reasons_of(&inner);
        match (&inner.registry, reasons.is_empty()) {
            (Some(registry), true) => Ok(Arc::clone(registry.active())),
            _ => Err(Unhealthy(reasons)),
        }
    }

    /// Every reason the provider is not healthy; empty when healthy.
    pub fn reasons(&self) -> Vec<Reason> {
        self.reasons_of(&self.read())
    }

    fn reasons_of(&self, inner: &Inner) -> Vec<Reason> {
        let mut reasons = Vec::new();
        if inner.registry.is_none() {
            reasons.push(Reason::StateUnavailable);
        }
        match self.age(inner) {
            None => reasons.push(Reason::MetadataUnverified),
            Some(age) if age > self.max_staleness => reasons.push(Reason::StatusStale),
            Some(_) => {}
        }
        if !inner.metadata_ok {
            reasons.extend(inner.metadata_reason);
        }
        if !inner.deep_ok {
            reasons.push(inner.deep_reason.unwrap_or(Reason::DeepProbePending));
        }
        reasons.dedup();
        reasons
    }

    /// The registry for Decrypt lookups (served even while unhealthy: Decrypt
    /// fails closed at Transit, not on cached health).
    pub fn registry(&self) -> Option<Arc<Registry>> {
        self.read().registry.clone()
    }

    /// True once live metadata contradicted the registry (key missing,
    /// recreated, versions rolled back) and until an observation validates the
    /// key again.
    pub fn identity_refused(&self) -> bool {
        self.read().contradicted.is_some()
    }

    /// Whether Decrypt may send data of Transit `version` to OpenBao: always,
    /// unless a contradiction left that version unconfirmed (then Decrypt
    /// refuses before calling Transit).
    pub fn version_decryptable(&self, version: u64) -> bool {
        self.read()
            .contradicted
            .as_ref()
            .is_none_or(|intact| intact.contains(&version))
    }

    /// Error classes of the last failed probes, for diagnostics.
    pub fn error_classes(&self) -> (Option<ErrorClass>, Option<ErrorClass>) {
        let inner = self.read();
        (inner.metadata_class, inner.deep_class)
    }

    /// A metadata observation validated the key's identity: publish
    /// `registry` and count the observation as fresh. `problem` (an unsafe
    /// setting, encryption blocked) keeps Status unhealthy with that reason.
    pub(super) fn metadata_observed(&self, registry: Arc<Registry>, problem: Option<Reason>) {
        let mut inner = self.write();
        // A new active key must pass its own deep probe before Status is healthy.
        let active_changed = inner
            .registry
            .as_ref()
            .is_some_and(|old| old.active().key_id != registry.active().key_id);
        if active_changed {
            inner.deep_ok = false;
            inner.deep_reason = None;
            inner.deep_class = None;
        }
        inner.registry = Some(registry);
        inner.metadata_ok = problem.is_none();
        inner.metadata_reason = problem;
        inner.metadata_class = None;
        inner.contradicted = None;
        inner.last_metadata_success = Some((Instant::now(), self.wall.now()));
    }

    /// Publishes a registry with newly discovered identities; the active key
    /// is unchanged (discovery never promotes), so health is untouched.
    pub(super) fn publish_registry(&self, registry: Arc<Registry>) {
        let mut inner = self.write();
        let same_active = inner
            .registry
            .as_ref()
            .is_none_or(|old| old.active().key_id == registry.active().key_id);
        if same_active {
            inner.registry = Some(registry);
        }
    }

    /// A metadata probe failed. Outages and unsafe settings never stop
    /// Decrypt.
    pub(super) fn metadata_failed(&self, reason: Reason, class: Option<ErrorClass>) {
        // A key that is gone confirms no version.
        let gone = reason == Reason::MetadataReadFailed && class == Some(ErrorClass::NotFound);
        let intact = (gone || reason.contradicts_identity()).then(BTreeSet::new);
        self.metadata_contradicted(reason, class, intact);
    }

    /// A metadata probe failed; with `intact`, live metadata contradicted the
    /// registry and only those versions stay decryptable.
    pub(super) fn metadata_contradicted(
        &self,
        reason: Reason,
        class: Option<ErrorClass>,
        intact: Option<BTreeSet<u64>>,
    ) {
        let mut inner = self.write();
        if let Some(intact) = intact {
            let narrowed = match inner.contradicted.take() {
                Some(before) => before.intersection(&intact).copied().collect(),
                None => intact,
            };
            inner.contradicted = Some(narrowed);
        }
        inner.metadata_ok = false;
        inner.metadata_reason = Some(reason);
        // A probe skipped by the open breaker keeps the class of the failure
        // that opened it (`metadata_error_class` then still says why).
        if reason != Reason::CircuitBreakerOpen {
            inner.metadata_class = class;
        }
    }

    pub(super) fn deep_result(&self, result: Result<(), (Reason, Option<ErrorClass>)>) {
        let mut inner = self.write();
        match result {
            Ok(()) => {
                inner.deep_ok = true;
                inner.deep_reason = None;
                inner.deep_class = None;
            }
            Err((reason, class)) => {
                inner.deep_ok = false;
                inner.deep_reason = Some(reason);
                if reason != Reason::CircuitBreakerOpen {
                    inner.deep_class = class;
                }
            }
        }
    }

    pub(super) fn deep_required(&self) -> bool {
        !self.read().deep_ok
    }

    pub(super) fn encryption_blocked(&self) -> bool {
        self.read().metadata_reason == Some(Reason::EncryptionBlocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::registry::bootstrap_state;
    use crate::registry::state_tests::{FP, golden_scope, key_meta};
    use std::time::UNIX_EPOCH;

    fn registry() -> Arc<Registry> {
        let state = bootstrap_state(&golden_scope(), FP, &key_meta(1), 1_700_000_100).unwrap();
        Arc::new(Registry::from_state(&state, &golden_scope()).unwrap())
    }

    fn healthy(wall: &Arc<ManualClock>) -> StatusCache {
        let cache = StatusCache::with_wall_clock(Duration::from_secs(120), wall.clone());
        cache.metadata_observed(registry(), None);
        cache.deep_result(Ok(()));
        cache
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[tokio::test(start_paused = true)]
    async fn unhealthy_until_both_probes_pass() {
        let wall = Arc::new(ManualClock::new(at(1_000)));
        let cache = StatusCache::with_wall_clock(Duration::from_secs(120), wall);
        assert_eq!(
            cache.reasons(),
            [
                Reason::StateUnavailable,
                Reason::MetadataUnverified,
                Reason::DeepProbePending
            ]
        );
        cache.metadata_observed(registry(), None);
        assert_eq!(cache.reasons(), [Reason::DeepProbePending]);
        cache.deep_result(Ok(()));
        assert!(cache.healthy_active().is_ok());
        // A metadata success never clears a deep failure.
        cache.deep_result(Err((Reason::DeepProbeFailed, None)));
        cache.metadata_observed(registry(), None);
        assert_eq!(cache.reasons(), [Reason::DeepProbeFailed]);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_after_max_staleness_on_either_clock() {
        let wall = Arc::new(ManualClock::new(at(1_000)));
        let cache = healthy(&wall);
        tokio::time::advance(Duration::from_secs(120)).await;
        assert!(cache.healthy_active().is_ok(), "exactly at the bound");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(cache.reasons(), [Reason::StatusStale]);

        // A forward wall-clock jump (suspend) expires the cache early.
        let cache = healthy(&wall);
        wall.set(at(1_121));
        assert_eq!(cache.reasons(), [Reason::StatusStale]);

        // A backward step never makes an old observation look fresh.
        wall.set(at(1_000));
        let cache = healthy(&wall);
        wall.set(at(500));
        tokio::time::advance(Duration::from_secs(121)).await;
        assert_eq!(cache.reasons(), [Reason::StatusStale]);
    }

    #[tokio::test(start_paused = true)]
    async fn setting_drift_keeps_decrypt_and_identity_faults_stop_it() {
        let wall = Arc::new(ManualClock::new(at(1_000)));
        let cache = healthy(&wall);
        // An unsafe setting: fresh observation, Status unhealthy, Decrypt served.
        cache.metadata_observed(registry(), Some(Reason::ProfileInvalid));
        assert_eq!(cache.reasons(), [Reason::ProfileInvalid]);
        assert!(!cache.identity_refused());
        tokio::time::advance(Duration::from_secs(200)).await;
        cache.metadata_observed(registry(), Some(Reason::UpsertAllowed));
        assert_eq!(
            cache.reasons(),
            [Reason::UpsertAllowed],
            "observation stays fresh"
        );
        // Outages and unsafe-setting failures never refuse Decrypt.
        for (reason, class) in [
            (Reason::MetadataReadFailed, Some(ErrorClass::Unavailable)),
            (Reason::UpsertCheckFailed, Some(ErrorClass::Sealed)),
            (Reason::CircuitBreakerOpen, None),
            (Reason::ProfileInvalid, None),
            (Reason::StateSaveFailed, None),
        ] {
            cache.metadata_failed(reason, class);
            assert!(!cache.identity_refused(), "{reason}");
        }
        // A rollback keeps the versions live metadata still confirms, and a
        // later contradiction only narrows them.
        cache.metadata_contradicted(
            Reason::VersionRollback,
            None,
            Some([1, 2].into_iter().collect()),
        );
        assert!(cache.version_decryptable(1) && cache.version_decryptable(2));
        assert!(!cache.version_decryptable(3));
        cache.metadata_contradicted(
            Reason::KeyIdentityInvalid,
            None,
            Some([2, 3].into_iter().collect()),
        );
        assert!(!cache.version_decryptable(1) && cache.version_decryptable(2));
        assert!(!cache.version_decryptable(3), "never widened");
        cache.metadata_observed(registry(), None);
        assert!(cache.version_decryptable(3));
        // A probe skipped by the open breaker keeps the class that opened it.
        cache.metadata_failed(Reason::MetadataReadFailed, Some(ErrorClass::Sealed));
        cache.metadata_failed(Reason::CircuitBreakerOpen, None);
        assert_eq!(cache.error_classes().0, Some(ErrorClass::Sealed));
        // Identity contradictions do, until the key validates again.
        for (reason, class) in [
            (Reason::KeyIdentityInvalid, None),
            (Reason::VersionRollback, None),
            (Reason::StateRollback, None),
            (Reason::MetadataReadFailed, Some(ErrorClass::NotFound)),
        ] {
            cache.metadata_failed(reason, class);
            assert!(cache.identity_refused(), "{reason}");
            // A later outage does not clear it.
            cache.metadata_failed(Reason::MetadataReadFailed, Some(ErrorClass::Unavailable));
            assert!(cache.identity_refused(), "{reason} is sticky");
            cache.metadata_observed(registry(), None);
            assert!(!cache.identity_refused());
        }
    }
}
