//! The running provider's registry owner: holds the writer lock, the last
//! durable state, the in-process activation deadline, and turns each metadata
//! observation into "persist, then publish".
//!
//! A new state is always saved (state file, then checkpoint, both fsynced)
//! before the registry built from it is returned for publication, so Status
//! can never expose an identity that a crash would forget.

use super::Registry;
use super::lock::{StateLock, acquire};
use super::state::{StateError, StateFile};
use super::store::{Loaded, StatePaths, inspect, load, save};
use super::transition::{Mode, RotationRules, bootstrap_state, observe, promote};
use crate::identity::{Scope, hash_value};
use crate::openbao::KeyMetadata;
use crate::status::Reason;
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

pub struct Keeper {
    paths: StatePaths,
    settings: KeeperSettings,
    inner: Mutex<Inner>,
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
            _lock: lock,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True while a state save failed and has not been recovered.
    pub fn persistence_degraded(&self) -> bool {
        let inner = self.lock();
        inner.failed_attempt.is_some() || inner.broken
    }

    fn persist(&self, inner: &mut Inner, next: StateFile) -> Result<StateFile, Reason> {
        match save(&self.paths, &next) {
            Ok(()) => {
                inner.confirmed = Some(next.clone());
                Ok(next)
            }
            Err(e) => {
                tracing::error!(error = %e, generation = next.generation, "state.save_failed");
                inner.failed_attempt = Some(next);
                Err(Reason::StateSaveFailed)
            }
        }
    }

    /// After a failed save, disk must hold exactly the confirmed or the
    /// attempted state; anything else is a rollback and stops all writes.
    fn recover(&self, inner: &mut Inner) -> Result<(), Reason> {
        let Some(attempt) = inner.failed_attempt.take() else {
            return Ok(());
        };
        match inspect(
            &self.paths,
            &self.settings.fingerprint,
            &self.settings.scope,
        ) {
            Ok(Some((disk, _))) if Some(&disk) == inner.confirmed.as_ref() => Ok(()),
            Ok(Some((disk, _))) if disk == attempt => {
                inner.confirmed = Some(disk);
                Ok(())
            }
            Ok(None) if inner.confirmed.is_none() => Ok(()),
            _ => {
                tracing::error!("state.rollback_detected");
                inner.broken = true;
                Err(Reason::StateSaveFailed)
            }
        }
    }

    /// One metadata observation: bootstrap, record new identities, count
    /// stable observations, promote when the activation deadline has passed;
    /// persist every change, then return the registry to publish.
    pub fn observe(
        &self,
        meta: &KeyMetadata,
        mode: Mode,
        now_unix: i64,
    ) -> Result<Published, Reason> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.broken {
            return Err(Reason::StateSaveFailed);
        }
        self.recover(inner)?;
        let settings = &self.settings;
        let mut current = match inner.confirmed.clone() {
            Some(state) => state,
            None if mode == Mode::Discover => return Err(Reason::StateUnavailable),
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
                            .map_err(|_| Reason::StatePublishFailed)?;
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
            .map_err(|_| Reason::StatePublishFailed)?;
        Ok(Published {
            registry: Arc::new(registry),
            encryption_blocked: observation.encryption_blocked,
            promoted,
        })
    }
}
