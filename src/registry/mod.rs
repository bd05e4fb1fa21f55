//! The key registry: every snapshot the provider may decrypt with, and the one
//! active snapshot it encrypts with.
//!
//! This version derives the registry from Transit metadata for an unrotated key
//! only (latest version 1), mirroring the reference's first-install bootstrap.
//! A key that already has more versions needs the durable registry state, so it
//! is refused with `state_unavailable` rather than guessed at.

use crate::identity::{KeyId, KeySnapshot, Scope, SnapshotState};
use crate::openbao::KeyMetadata;
use crate::status::Reason;
use std::collections::HashMap;
use std::sync::Arc;

/// An immutable registry; a new one replaces it wholesale on change.
#[derive(Debug)]
pub struct Registry {
    active: Arc<KeySnapshot>,
    by_id: HashMap<KeyId, Arc<KeySnapshot>>,
}

impl Registry {
    /// First-install bootstrap: only a key still at version 1, with nothing
    /// below it made unavailable, becomes the active snapshot.
    pub fn bootstrap(scope: &Arc<Scope>, meta: &KeyMetadata) -> Result<Self, Reason> {
        if meta.latest_version != 1
            || meta.min_available_version > 1
            || meta.min_decryption_version > 1
        {
            return Err(Reason::StateUnavailable);
        }
        let created = meta.keys.get("1").copied().ok_or(Reason::ProfileInvalid)?;
        let active = KeySnapshot::new(Arc::clone(scope), 1, created, SnapshotState::Active)
            .map_err(|_| Reason::ProfileInvalid)?;
        let active = Arc::new(active);
        let by_id = HashMap::from([(active.key_id.clone(), Arc::clone(&active))]);
        Ok(Self { active, by_id })
    }

    pub fn active(&self) -> &Arc<KeySnapshot> {
        &self.active
    }

    /// A decryptable snapshot by key_id.
    pub fn lookup(&self, key_id: &KeyId) -> Option<&Arc<KeySnapshot>> {
        self.by_id.get(key_id).filter(|s| s.state.decryptable())
    }

    /// Checks the retained snapshots against live metadata (`core.md` §5.7, §6.3):
    /// a version going backwards, a changed creation time (deleted and recreated
    /// key) or a minimum version above a retained one is refused.
    pub fn validate_against(
        &self,
        meta: &KeyMetadata,
        reject_rollback: bool,
    ) -> Result<(), Reason> {
        let active_version = i64::try_from(self.active.transit_version).unwrap_or(i64::MAX);
        if meta.latest_version < active_version && reject_rollback {
            return Err(Reason::VersionRollback);
        }
        for snapshot in self.by_id.values().filter(|s| s.state.decryptable()) {
            let live = meta
                .keys
                .get(&snapshot.transit_version.to_string())
                .copied();
            if live != Some(snapshot.created_at_unix) {
                return Err(Reason::ProfileInvalid);
            }
            let version = i64::try_from(snapshot.transit_version).unwrap_or(i64::MAX);
            if meta.min_available_version > version || meta.min_decryption_version > version {
                return Err(Reason::ProfileInvalid);
            }
        }
        if meta.min_encryption_version > active_version {
            return Err(Reason::EncryptionBlocked);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Arc<Scope> {
        Arc::new(Scope {
            provider_name: "p".into(),
            cluster_id: "c".into(),
            openbao_instance_id: "i".into(),
            openbao_namespace: String::new(),
            transit_mount_id: "m".into(),
            transit_key_lineage_id: "l".into(),
        })
    }

    fn meta(latest: i64, created: &[(i64, i64)]) -> KeyMetadata {
        KeyMetadata {
            latest_version: latest,
            keys: created.iter().map(|(v, t)| (v.to_string(), *t)).collect(),
            ..KeyMetadata::default()
        }
    }

    #[test]
    fn bootstraps_only_an_unrotated_key() {
        let registry = Registry::bootstrap(&scope(), &meta(1, &[(1, 1_700_000_000)])).unwrap();
        assert_eq!(registry.active().transit_version, 1);
        assert!(registry.lookup(&registry.active().key_id).is_some());
        assert_eq!(
            Registry::bootstrap(&scope(), &meta(2, &[(1, 1), (2, 2)])).unwrap_err(),
            Reason::StateUnavailable
        );
        let mut blocked = meta(1, &[(1, 1)]);
        blocked.min_decryption_version = 2;
        assert_eq!(
            Registry::bootstrap(&scope(), &blocked).unwrap_err(),
            Reason::StateUnavailable
        );
    }

    #[test]
    fn refuses_recreated_rolled_back_or_blocked_keys() {
        let registry = Registry::bootstrap(&scope(), &meta(1, &[(1, 100)])).unwrap();
        assert_eq!(
            registry.validate_against(&meta(1, &[(1, 100)]), true),
            Ok(())
        );
        // Rotated upstream: still serves v1 until durable rotation promotes v2.
        assert_eq!(
            registry.validate_against(&meta(2, &[(1, 100), (2, 200)]), true),
            Ok(())
        );
        assert_eq!(
            registry.validate_against(&meta(1, &[(1, 101)]), true),
            Err(Reason::ProfileInvalid)
        );
        assert_eq!(
            registry.validate_against(&meta(0, &[]), true),
            Err(Reason::VersionRollback)
        );
        let mut min_dec = meta(2, &[(1, 100), (2, 200)]);
        min_dec.min_decryption_version = 2;
        assert_eq!(
            registry.validate_against(&min_dec, true),
            Err(Reason::ProfileInvalid)
        );
        let mut min_enc = meta(2, &[(1, 100), (2, 200)]);
        min_enc.min_encryption_version = 2;
        assert_eq!(
            registry.validate_against(&min_enc, true),
            Err(Reason::EncryptionBlocked)
        );
    }
}
