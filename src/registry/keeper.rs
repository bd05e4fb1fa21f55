//! The running provider's registry owner: holds the writer lock, the last
//! durable state, the in-process activation deadline, and turns each metadata
//! observation into "persist, then publish".
//!
//! A new state is always saved (state file, then checkpoint, both fsynced)
//! before the registry built from it is returned for publication, so Status
//! can never expose an identity that a crash would forget.

use super::Registry;
use super::error::RegistryError;
use super::lock::{StateLock, acquire};
use super::state::{StateError, StateFile};
use super::store::{Loaded, StatePaths, inspect, load, save};
use super::transition::{Mode, RotationRules, bootstrap_state, intact_versions, observe, promote};
use crate::identity::{Scope, hash_value};
use crate::openbao::KeyMetadata;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Identity and rotation settings the keeper enforces.
#[derive(Debug, Clone)]
pub struct KeeperSettings {
    pub fingerprint: String,
    pub scope: Arc<Scope>,
    pub rules: RotationRules,
    pub activation_delay: Duration,
}

/// What an observation publishes.
#[derive(Debug)]
pub struct Published {
    pub registry: Arc<Registry>,
    pub encryption_blocked: bool,
    pub promoted: bool,
}

#[derive(Default)]
struct Inner {
    /// The newest state known to be durable on disk.
    confirmed: Option<StateFile>,
    /// A state whose save failed; disk may hold it or `confirmed`.
    failed_attempt: Option<StateFile>,
    /// Pending key_id and the monotonic instant it may be promoted at.
    activation: Option<(String, Instant)>,
    /// Disk no longer matches anything we wrote: refuse until restart.
    broken: bool,
}

/// Writes a state durably (state file, checkpoint, fsyncs): `store::save`,
/// replaced in unit tests to make saves fail.
type SaveFn = dyn Fn(&StatePaths, &StateFile) -> Result<(), StateError> + Send + Sync;

pub struct Keeper {
    paths: StatePaths,
    settings: KeeperSettings,
    inner: Mutex<Inner>,
    save: Box<SaveFn>,
    _lock: StateLock,
}

impl Keeper {
    /// Takes the writer lock and loads the state (fail closed on every case
    /// of the load table). A missing pair is fine here: the first metadata
    /// observation decides whether this is a first install.
    pub fn open(paths: StatePaths, settings: KeeperSettings) -> Result<Self, StateError> {
        let lock = acquire(&paths)?;
        let confirmed = match load(&paths, &settings.fingerprint, &settings.scope)? {
            Loaded::Present(state) => Some(state),
            Loaded::Absent => None,
        };
        Ok(Self {
            paths,
            settings,
            inner: Mutex::new(Inner {
                confirmed,
                ..Inner::default()
            }),
            save: Box::new(save),
            _lock: lock,
        })
    }

    /// Replaces the durable write (unit tests plant save failures with it).
    #[cfg(test)]
    fn with_save(
        mut self,
        save: impl Fn(&StatePaths, &StateFile) -> Result<(), StateError> + Send + Sync + 'static,
    ) -> Self {
        self.save = Box::new(save);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The confirmed state's versions that `meta` still confirms (see
    /// [`intact_versions`]); none without a state.
    pub fn intact_versions(&self, meta: &KeyMetadata) -> BTreeSet<u64> {
        self.lock()
            .confirmed
            .as_ref()
            .map(|state| intact_versions(state, meta))
            .unwrap_or_default()
    }

    /// True while a state save failed and has not been recovered.
    pub fn persistence_degraded(&self) -> bool {
        let inner = self.lock();
        inner.failed_attempt.is_some() || inner.broken
    }

    fn persist(&self, inner: &mut Inner, next: StateFile) -> Result<StateFile, RegistryError> {
        match (self.save)(&self.paths, &next) {
            Ok(()) => {
                inner.confirmed = Some(next.clone());
                Ok(next)
            }
            Err(e) => {
                tracing::error!(error = %e, generation = next.generation, "state.save_failed");
                inner.failed_attempt = Some(next);
                Err(RegistryError::SaveFailed)
            }
        }
    }

    /// After a failed save, disk must hold exactly the confirmed or the
    /// attempted state; anything else is a rollback and stops all writes.
    /// When it holds the attempted state, that state is written again, so the
    /// durability barriers (fsync of the file and the directory, the
    /// checkpoint) that the failed save may have missed are repeated before
    /// anything built on it is published (`core.md` §5.6). If that write
    /// fails too, recovery runs again next time.
    fn recover(&self, inner: &mut Inner) -> Result<(), RegistryError> {
        let Some(attempt) = inner.failed_attempt.take() else {
            return Ok(());
        };
        let on_disk = match inspect(
            &self.paths,
            &self.settings.fingerprint,
            &self.settings.scope,
        ) {
            Ok(Some((disk, _))) if Some(&disk) == inner.confirmed.as_ref() || disk == attempt => {
                Some(disk)
            }
            Ok(None) if inner.confirmed.is_none() => None,
            _ => {
                tracing::error!("state.rollback_detected");
                inner.broken = true;
                return Err(RegistryError::StateDiverged);
            }
        };
        let Some(disk) = on_disk.filter(|disk| Some(disk) != inner.confirmed.as_ref()) else {
            // Disk holds the confirmed state (or nothing yet): it is durable already.
            return Ok(());
        };
        if let Err(e) = (self.save)(&self.paths, &disk) {
            tracing::error!(error = %e, generation = disk.generation, "state.save_failed");
            inner.failed_attempt = Some(attempt);
            return Err(RegistryError::SaveFailed);
        }
        tracing::info!(generation = disk.generation, "state.recovered");
        inner.confirmed = Some(disk);
        Ok(())
    }

    /// One metadata observation: bootstrap, record new identities, count
    /// stable observations, promote when the activation deadline has passed;
    /// persist every change, then return the registry to publish.
    pub fn observe(
        &self,
        meta: &KeyMetadata,
        mode: Mode,
        now_unix: i64,
    ) -> Result<Published, RegistryError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.broken {
            return Err(RegistryError::StateDiverged);
        }
        self.recover(inner)?;
        let settings = &self.settings;
        let mut current = match inner.confirmed.clone() {
            Some(state) => state,
            None if mode == Mode::Discover => return Err(RegistryError::StateUnavailable),
            None => {
                let first =
                    bootstrap_state(&settings.scope, &settings.fingerprint, meta, now_unix)?;
                let first = self.persist(inner, first)?;
                tracing::info!(generation = 1, key_id_hash = %hash_value(&first.active_key_id), "state.bootstrapped");
                first
            }
        };
        let observation = observe(
            &current,
            meta,
            &settings.scope,
            now_unix,
            settings.rules,
            mode,
        )?;
        if let Some(next) = observation.next {
            current = self.persist(inner, next)?;
        }
        let mut promoted = false;
        if mode == Mode::Observe {
            match observation.stable_candidate {
                Some(candidate) => {
                    let deadline = match &inner.activation {
                        Some((id, at)) if *id == candidate => *at,
                        _ => {
                            let at = Instant::now() + settings.activation_delay;
                            inner.activation = Some((candidate.clone(), at));
                            at
                        }
                    };
                    if Instant::now() >= deadline {
                        let previous = current.active_key_id.clone();
                        let previous_version =
                            current.active_record().map_or(0, |r| r.transit_version);
                        let next = promote(&current, &candidate, now_unix)
                            .map_err(|_| RegistryError::PublishFailed)?;
                        current = self.persist(inner, next)?;
                        inner.activation = None;
                        promoted = true;
                        let version = current.active_record().map_or(0, |r| r.transit_version);
                        tracing::info!(
                            previous_key_id_hash = %hash_value(&previous),
                            key_id_hash = %hash_value(&current.active_key_id),
                            previous_transit_key_version = previous_version,
                            transit_key_version = version,
                            generation = current.generation,
                            "key.promoted"
                        );
                    }
                }
                None => inner.activation = None,
            }
        }
        let registry = Registry::from_state(&current, &settings.scope)
            .map_err(|_| RegistryError::PublishFailed)?;
        Ok(Published {
            registry: Arc::new(registry),
            encryption_blocked: observation.encryption_blocked,
            promoted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::state::tests::{FP, golden_scope, key_meta as meta};
    use crate::registry::transition::RotationRules;
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn scratch(name: &str) -> StatePaths {
        let dir = std::env::temp_dir().join(format!("keeper-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        StatePaths::new(&dir.join("key-registry.json"))
    }

    fn settings(delay: Duration) -> KeeperSettings {
        KeeperSettings {
            fingerprint: FP.into(),
            scope: golden_scope(),
            rules: RotationRules {
                required_count: 1,
                reject_rollback: true,
            },
            activation_delay: delay,
        }
    }

    fn on_disk(paths: &StatePaths) -> StateFile {
        inspect(paths, FP, &golden_scope()).unwrap().unwrap().0
    }

    /// Counts saves; `plan(n)` says what the n-th save does.
    fn planned_save(
        plan: impl Fn(u32) -> Plan + Send + Sync + 'static,
    ) -> (
        Arc<AtomicU32>,
        impl Fn(&StatePaths, &StateFile) -> Result<(), StateError>,
    ) {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&calls);
        let save_fn = move |paths: &StatePaths, state: &StateFile| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            match plan(n) {
                Plan::Write => save(paths, state),
                Plan::Fail => Err(StateError::Io("planted save failure")),
                // The rename happened but a durability barrier failed.
                Plan::WriteThenFail => {
                    save(paths, state)?;
                    Err(StateError::Io("planted fsync failure"))
                }
            }
        };
        (calls, save_fn)
    }

    enum Plan {
        Write,
        Fail,
        WriteThenFail,
    }

    #[test]
    fn a_failed_save_is_recovered_by_writing_the_attempt_again() {
        let paths = scratch("recover");
        // 1: bootstrap, 2: the pending record's save "fails" after the rename,
        // 3: recovery's rewrite of that state.
        let (calls, save_fn) = planned_save(|n| {
            if n == 2 {
                Plan::WriteThenFail
            } else {
                Plan::Write
            }
        });
        let keeper = Keeper::open(paths.clone(), settings(Duration::from_secs(3600)))
            .unwrap()
            .with_save(save_fn);
        keeper.observe(&meta(1), Mode::Observe, 100).unwrap();
        assert_eq!(
            keeper.observe(&meta(2), Mode::Observe, 200).unwrap_err(),
            RegistryError::SaveFailed
        );
        assert!(keeper.persistence_degraded());
        let attempted = on_disk(&paths);
        assert_eq!(attempted.generation, 2);
        // The next observation rewrites the attempted state before using it.
        let published = keeper.observe(&meta(2), Mode::Observe, 300).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "recovery repeats the save");
        assert!(!keeper.persistence_degraded());
        assert_eq!(on_disk(&paths), attempted);
        assert!(published.registry.has_pending());
    }

    #[test]
    fn a_failed_rewrite_keeps_the_registry_unpublished() {
        let paths = scratch("rewrite");
        let (_, save_fn) = planned_save(|n| match n {
            1 => Plan::Write,
            2 => Plan::WriteThenFail,
            _ => Plan::Fail,
        });
        let keeper = Keeper::open(paths.clone(), settings(Duration::ZERO))
            .unwrap()
            .with_save(save_fn);
        keeper.observe(&meta(1), Mode::Observe, 100).unwrap();
        assert!(keeper.observe(&meta(2), Mode::Observe, 200).is_err());
        for _ in 0..3 {
            assert_eq!(
                keeper.observe(&meta(2), Mode::Observe, 300).unwrap_err(),
                RegistryError::SaveFailed
            );
            assert!(keeper.persistence_degraded());
        }
    }

    #[test]
    fn disk_changed_after_a_failed_save_is_a_rollback() {
        let paths = scratch("diverged");
        let (_, save_fn) = planned_save(|n| if n == 2 { Plan::Fail } else { Plan::Write });
        let keeper = Keeper::open(paths.clone(), settings(Duration::ZERO))
            .unwrap()
            .with_save(save_fn);
        keeper.observe(&meta(1), Mode::Observe, 100).unwrap();
        assert!(keeper.observe(&meta(2), Mode::Observe, 200).is_err());
        // Someone removes the state file behind the provider's back.
        std::fs::remove_file(&paths.state).unwrap();
        assert_eq!(
            keeper.observe(&meta(2), Mode::Observe, 300).unwrap_err(),
            RegistryError::StateDiverged
        );
        // Sticky: nothing is written or published any more.
        assert_eq!(
            keeper.observe(&meta(1), Mode::Observe, 400).unwrap_err(),
            RegistryError::StateDiverged
        );
    }

    #[tokio::test(start_paused = true)]
    async fn promotion_waits_for_the_activation_delay_on_the_monotonic_clock() {
        let paths = scratch("activation");
        let keeper = Keeper::open(paths, settings(Duration::from_secs(120))).unwrap();
        let first = keeper.observe(&meta(1), Mode::Observe, 100).unwrap();
        let v1 = first.registry.active().key_id.clone();
        let observed = keeper.observe(&meta(2), Mode::Observe, 200).unwrap();
        assert!(!observed.promoted);
        tokio::time::advance(Duration::from_secs(119)).await;
        let waiting = keeper.observe(&meta(2), Mode::Observe, 319).unwrap();
        assert!(!waiting.promoted);
        assert_eq!(waiting.registry.active().key_id, v1);
        // Discovery never promotes, even after the delay.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            !keeper
                .observe(&meta(2), Mode::Discover, 320)
                .unwrap()
                .promoted
        );
        let promoted = keeper.observe(&meta(2), Mode::Observe, 321).unwrap();
        assert!(promoted.promoted);
        assert_eq!(promoted.registry.active().transit_version, 2);
    }
}
