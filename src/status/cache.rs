//! The status cache: the only thing Status, Encrypt and `/ready` consult.
//!
//! Health is `metadata_ok && deep_ok && !stale`. Staleness uses the larger of
//! monotonic and wall-clock age since the last successful metadata probe, so a
//! backward clock step can never make an old observation look fresh.

use super::reason::Reason;
use crate::identity::KeySnapshot;
use crate::openbao::ErrorClass;
use crate::registry::Registry;
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
    /// Live metadata contradicted the registry (key missing, recreated, rolled
    /// back). Sticky until a metadata observation validates the key again.
    identity_contradicted: bool,
}

/// Shared, lock-protected health view. Locks are never held across an await.
#[derive(Debug)]
pub struct StatusCache {
    inner: RwLock<Inner>,
    max_staleness: Duration,
}

impl StatusCache {
    pub fn new(max_staleness: Duration) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            max_staleness,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn age(inner: &Inner) -> Option<Duration> {
        inner.last_metadata_success.map(|(mono, wall)| {
            let monotonic = mono.elapsed();
            let wall_clock = SystemTime::now().duration_since(wall).unwrap_or_default();
            monotonic.max(wall_clock)
        })
    }

    /// Age of the last successful metadata observation.
    pub fn age_of_last_success(&self) -> Option<Duration> {
        Self::age(&self.read())
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
        match Self::age(inner) {
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
    /// key again: Decrypt then refuses before calling Transit.
    pub fn identity_refused(&self) -> bool {
        self.read().identity_contradicted
    }

    /// Error classes of the last failed probes, for diagnostics.
    pub fn error_classes(&self) -> (Option<ErrorClass>, Option<ErrorClass>) {
        let inner = self.read();
        (inner.metadata_class, inner.deep_class)
    }

    pub(super) fn metadata_succeeded(&self, registry: Arc<Registry>) {
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
        inner.metadata_ok = true;
        inner.metadata_reason = None;
        inner.metadata_class = None;
        inner.identity_contradicted = false;
        inner.last_metadata_success = Some((Instant::now(), SystemTime::now()));
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

    pub(super) fn metadata_failed(&self, reason: Reason, class: Option<ErrorClass>) {
        let mut inner = self.write();
        let contradicted = matches!(reason, Reason::ProfileInvalid | Reason::VersionRollback)
            || (reason == Reason::MetadataReadFailed && class == Some(ErrorClass::NotFound));
        inner.identity_contradicted |= contradicted;
        inner.metadata_ok = false;
        inner.metadata_reason = Some(reason);
        inner.metadata_class = class;
    }

    /// Metadata was read and is valid, but encryption is blocked: observation
    /// counts as fresh, Status stays unhealthy.
    pub(super) fn metadata_blocked(&self, registry: Arc<Registry>) {
        self.metadata_succeeded(registry);
        let mut inner = self.write();
        inner.metadata_ok = false;
        inner.metadata_reason = Some(Reason::EncryptionBlocked);
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
                inner.deep_class = class;
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
