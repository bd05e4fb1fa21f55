//! The key registry: every snapshot the provider may decrypt with, the one
//! active snapshot it encrypts with, and the durable, hash-chained state file
//! that makes both survive restarts, nodes and mistakes.
//!
//! * `state` — the file format, its hash and validation;
//! * `store` — safe reads, atomic durable writes, the fail-closed load table;
//! * `lock` — the single-writer lock;
//! * `transition` — pure bootstrap / observation / promotion / retire / restore;
//! * `keeper` — the running provider's owner of all of the above;
//! * `error` — why the registry refused, for the status layer to map.

mod error;
mod keeper;
mod lock;
mod state;
mod store;
mod transition;

pub use error::RegistryError;
pub use keeper::{Keeper, KeeperSettings, Published};
pub use lock::{StateLock, acquire};
/// Fixtures other modules' unit tests build registries from.
#[cfg(test)]
pub(crate) use state::tests as state_tests;
pub use state::{Record, RecordState, StateError, StateFile};
#[cfg(feature = "fuzzing")]
pub(crate) use store::Checkpoint;
pub use store::{CheckpointStatus, Loaded, StatePaths, inspect, load, save};
pub use transition::{
    Mode, RotationRules, bootstrap_state, check_retained, intact_versions, observe, promote,
    restore, retire_before,
};

use crate::identity::{KeyId, KeySnapshot, Scope};
use std::collections::HashMap;
use std::sync::Arc;

/// An immutable in-memory view of one state; replaced wholesale on change.
#[derive(Debug)]
pub struct Registry {
    active: Arc<KeySnapshot>,
    by_id: HashMap<KeyId, Arc<KeySnapshot>>,
}

impl Registry {
    /// Builds the lookup view of a validated state.
    pub fn from_state(state: &StateFile, scope: &Arc<Scope>) -> Result<Self, StateError> {
        let mut by_id = HashMap::new();
        for record in &state.snapshots {
            let snapshot = Arc::new(record.snapshot(scope)?);
            by_id.insert(snapshot.key_id.clone(), snapshot);
        }
        let active_id = KeyId::parse(&state.active_key_id)
            .map_err(|_| StateError::Corrupt("active key_id malformed"))?;
        let active = by_id
            .get(&active_id)
            .filter(|s| s.state == crate::identity::SnapshotState::Active)
            .cloned()
            .ok_or(StateError::Corrupt("active record missing"))?;
        Ok(Self { active, by_id })
    }

    pub fn active(&self) -> &Arc<KeySnapshot> {
        &self.active
    }

    /// A decryptable snapshot (active, pending or retired) by key_id.
    pub fn lookup(&self, key_id: &KeyId) -> Option<&Arc<KeySnapshot>> {
        self.by_id.get(key_id).filter(|s| s.state.decryptable())
    }

    /// Whether the identity is recorded at all (removed and rejected ones
    /// included); such identities are never rediscovered.
    pub fn knows(&self, key_id: &KeyId) -> bool {
        self.by_id.contains_key(key_id)
    }

    /// Whether a pending version exists (for the rotation-state readout).
    pub fn has_pending(&self) -> bool {
        self.by_id
            .values()
            .any(|s| s.state == crate::identity::SnapshotState::Pending)
    }
}
