//! Pure state transitions: first-install bootstrap, metadata observation
//! (`core.md` §6.3), promotion, operator retire/restore, and the progress
//! invariants every automatic transition must keep.
//!
//! Nothing here touches files, clocks or OpenBao: callers pass the live
//! metadata and the current Unix time, and persist what comes back.

use super::error::RegistryError;
use super::state::{Record, RecordState, SCHEMA_V1ALPHA2, StateError, StateFile};
use crate::identity::Scope;
use crate::openbao::KeyMetadata;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Whether an observation may count towards promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A scheduled metadata probe: counts stable observations.
    Observe,
    /// Unknown-key_id discovery on Decrypt: records new identities only.
    Discover,
}

/// Rotation settings from `rotation.*`.
#[derive(Debug, Clone, Copy)]
pub struct RotationRules {
    pub required_count: u64,
    pub reject_rollback: bool,
}

/// The result of one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The successor state when anything changed (persist it, then publish).
    pub next: Option<StateFile>,
    /// key_id of a pending record for the latest version that is stable.
    pub stable_candidate: Option<String>,
    /// `min_encryption_version` is above the active version.
    pub encryption_blocked: bool,
}

fn version_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// First install: a state at generation 1 with version 1 active, only if the
/// key has never been rotated and nothing below version 1 is unavailable.
pub fn bootstrap_state(
    scope: &Arc<Scope>,
    fingerprint: &str,
    meta: &KeyMetadata,
    now: i64,
) -> Result<StateFile, RegistryError> {
    if meta.latest_version != 1 || meta.min_available_version > 1 || meta.min_decryption_version > 1
    {
        return Err(RegistryError::StateUnavailable);
    }
    let created = meta
        .keys
        .get("1")
        .copied()
        .ok_or(RegistryError::IdentityMismatch)?;
    let mut record = Record::new(scope, 1, created, RecordState::Active)
        .map_err(|_| RegistryError::IdentityMismatch)?;
    record.observed_at_unix = now;
    record.promoted_at_unix = now;
    Ok(StateFile {
        schema_version: SCHEMA_V1ALPHA2.to_owned(),
        identity_fingerprint: fingerprint.to_owned(),
        generation: 1,
        previous_hash: String::new(),
        current_hash: String::new(),
        active_key_id: record.kubernetes_key_id.clone(),
        snapshots: vec![record],
    }
    .seal())
}

/// Every retained record must still exist in Transit with the same creation
/// second, and no minimum may exclude it (`core.md` §5.7 last paragraph).
/// Identity comes first: a recreated key is reported as such even when its
/// minimums also exclude a version.
pub fn check_retained(state: &StateFile, meta: &KeyMetadata) -> Result<(), RegistryError> {
    check_retained_identity(state, meta)?;
    check_retained_available(state, meta)
}

/// Every retained record still exists in Transit with the same creation
/// second. OpenBao leaves versions below `min_decryption_version` (archived)
/// or `min_available_version` (trimmed) out of the key's version map: such a
/// record is excluded by a setting ([`check_retained_available`]), not
/// contradicted, unless a version is listed with another creation time.
fn check_retained_identity(state: &StateFile, meta: &KeyMetadata) -> Result<(), RegistryError> {
    let floor = meta.min_decryption_version.max(meta.min_available_version);
    let intact = state
        .snapshots
        .iter()
        .filter(|r| r.state.retained())
        .all(|r| match meta.keys.get(&r.transit_version.to_string()) {
            Some(created) => *created == r.transit_version_created_at_unix,
            None => version_i64(r.transit_version) < floor,
        });
    if intact {
        Ok(())
    } else {
        Err(RegistryError::IdentityMismatch)
    }
}

/// The retained versions whose identity live metadata still confirms: listed
/// with the recorded creation time. After a contradiction (a rollback, a
/// recreated key) Decrypt is still served for exactly these.
pub fn intact_versions(state: &StateFile, meta: &KeyMetadata) -> BTreeSet<u64> {
    state
        .snapshots
        .iter()
        .filter(|r| r.state.retained())
        .filter(|r| {
            meta.keys.get(&r.transit_version.to_string())
                == Some(&r.transit_version_created_at_unix)
        })
        .map(|r| r.transit_version)
        .collect()
}

/// No `min_available_version` or `min_decryption_version` excludes a retained record.
fn check_retained_available(state: &StateFile, meta: &KeyMetadata) -> Result<(), RegistryError> {
    let excluded = state
        .snapshots
        .iter()
        .filter(|r| r.state.retained())
        .any(|r| {
            let version = version_i64(r.transit_version);
            meta.min_available_version > version || meta.min_decryption_version > version
        });
    if excluded {
        Err(RegistryError::VersionExcluded)
    } else {
        Ok(())
    }
}

/// One metadata observation against `state`.
pub fn observe(
    state: &StateFile,
    meta: &KeyMetadata,
    scope: &Arc<Scope>,
    now: i64,
    rules: RotationRules,
    mode: Mode,
) -> Result<Observation, RegistryError> {
    let active = state
        .active_record()
        .ok_or(RegistryError::StateUnavailable)?;
    let active_version = version_i64(active.transit_version);
    let latest = meta.latest_version;
    let has_pending = state
        .snapshots
        .iter()
        .any(|r| r.state == RecordState::Pending);
    // Rollbacks first: they explain the missing versions check_retained would see.
    if latest < active_version && rules.reject_rollback {
        return Err(RegistryError::VersionRollback);
    }
    if latest == active_version && has_pending {
        // A pending version that vanished from Transit is a rollback too.
        return Err(RegistryError::VersionRollback);
    }
    check_retained_identity(state, meta)?;
    if mode == Mode::Observe {
        // Discovery only records identities, so a minimum version that
        // excludes an old one (a setting) must not stop it.
        check_retained_available(state, meta)?;
    }
    let encryption_blocked = meta.min_encryption_version > active_version;
    if latest <= active_version {
        return Ok(Observation {
            next: None,
            stable_candidate: None,
            encryption_blocked,
        });
    }

    let mut records = state.snapshots.clone();
    let mut changed = false;
    let by_version: HashMap<u64, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.transit_version, i))
        .collect();
    let latest_u = u64::try_from(latest).map_err(|_| RegistryError::IdentityMismatch)?;
    for version in active.transit_version + 1..latest_u {
        match by_version.get(&version) {
            Some(&i) if records[i].state == RecordState::Pending => {
                // Superseded by a newer version: kept decryptable, never promoted.
                let r = &mut records[i];
                r.state = RecordState::Retired;
                r.stable_observation_count = 0;
                r.stable_at_unix = 0;
                changed = true;
            }
            Some(_) => {}
            None => {
                // Another node may already have encrypted with a skipped version;
                // without its creation time we cannot name it, so fail closed.
                let created = meta
                    .keys
                    .get(&version.to_string())
                    .copied()
                    .ok_or(RegistryError::IdentityMismatch)?;
                let mut r = Record::new(scope, version, created, RecordState::Retired)
                    .map_err(|_| RegistryError::IdentityMismatch)?;
                r.observed_at_unix = now;
                records.push(r);
                changed = true;
            }
        }
    }
    let latest_created = meta
        .keys
        .get(&latest.to_string())
        .copied()
        .ok_or(RegistryError::IdentityMismatch)?;
    let candidate = match by_version.get(&latest_u) {
        None => {
            let mut r = Record::new(scope, latest_u, latest_created, RecordState::Pending)
                .map_err(|_| RegistryError::IdentityMismatch)?;
            r.observed_at_unix = now;
            records.push(r);
            changed = true;
            records.len() - 1
        }
        Some(&i) if records[i].state == RecordState::Pending => i,
        // The newest version was retired or removed locally: never adopt it.
        Some(_) => return Err(RegistryError::IdentityMismatch),
    };
    let pending = &mut records[candidate];
    if mode == Mode::Observe {
        // Count up to the threshold only, so a waiting rotation does not
        // rewrite the state on every probe.
        if pending.stable_observation_count < rules.required_count {
            pending.stable_observation_count += 1;
            changed = true;
        }
        if pending.stable_observation_count >= rules.required_count && pending.stable_at_unix == 0 {
            pending.stable_at_unix = now.max(pending.observed_at_unix);
            changed = true;
        }
    }
    let stable =
        pending.stable_at_unix != 0 && pending.stable_observation_count >= rules.required_count;
    let stable_candidate = stable.then(|| pending.kubernetes_key_id.clone());
    let next = if changed {
        let next = state
            .successor(state.active_key_id.clone(), records)
            .map_err(|_| RegistryError::GenerationExhausted)?;
        check_progress(state, &next).map_err(|_| RegistryError::PublishFailed)?;
        Some(next)
    } else {
        None
    };
    Ok(Observation {
        next,
        stable_candidate,
        encryption_blocked,
    })
}

/// Promotes the pending record `key_id`; the previous active becomes retired.
pub fn promote(state: &StateFile, key_id: &str, now: i64) -> Result<StateFile, StateError> {
    let mut records = state.snapshots.clone();
    let mut found = false;
    for r in &mut records {
        if r.kubernetes_key_id == key_id && r.state == RecordState::Pending {
            r.state = RecordState::Active;
            r.promoted_at_unix = now.max(r.observed_at_unix);
            found = true;
        } else if r.state == RecordState::Active {
            r.state = RecordState::Retired;
            r.stable_observation_count = 0;
            r.stable_at_unix = 0;
        }
    }
    if !found {
        return Err(StateError::Progress("promotion candidate is not pending"));
    }
    let next = state.successor(key_id.to_owned(), records)?;
    check_progress(state, &next)?;
    Ok(next)
}

/// The invariants of `core.md` §6.3e for automatic transitions.
pub fn check_progress(prev: &StateFile, next: &StateFile) -> Result<(), StateError> {
    if Some(next.generation) != prev.generation.checked_add(1)
        || next.previous_hash != prev.current_hash
    {
        return Err(StateError::Progress("hash chain broken"));
    }
    let version_of = |s: &StateFile| s.active_record().map(|r| r.transit_version);
    if version_of(next) < version_of(prev) {
        return Err(StateError::Progress("active version went backwards"));
    }
    for old in &prev.snapshots {
        let Some(new) = next
            .snapshots
            .iter()
            .find(|r| r.kubernetes_key_id == old.kubernetes_key_id)
        else {
            return Err(StateError::Progress("a known identity was dropped"));
        };
        let allowed = match old.state {
            RecordState::Active | RecordState::Retired => {
                matches!(new.state, RecordState::Active | RecordState::Retired)
            }
            RecordState::Pending => {
                matches!(
                    new.state,
                    RecordState::Pending | RecordState::Active | RecordState::Retired
                )
            }
            RecordState::Removed | RecordState::Rejected => new == old,
        };
        if !allowed {
            return Err(StateError::Progress(
                "a known identity changed state illegally",
            ));
        }
    }
    Ok(())
}

/// `retire-versions --before-version n`: retired records below `n` become
/// removed. Returns the successor (or `None` when nothing changes) and the
/// records removed. The only transition that drops decrypt eligibility.
pub fn retire_before(
    state: &StateFile,
    n: u64,
) -> Result<(Option<StateFile>, Vec<Record>), StateError> {
    let active = state
        .active_record()
        .ok_or(StateError::Corrupt("no active record"))?;
    if n <= 1 || n > active.transit_version {
        return Err(StateError::Progress(
            "--before-version must be greater than 1 and at most the active version",
        ));
    }
    let mut records = state.snapshots.clone();
    let mut removed = Vec::new();
    for r in &mut records {
        if r.state == RecordState::Retired && r.transit_version < n {
            r.state = RecordState::Removed;
            removed.push(r.clone());
        }
    }
    if removed.is_empty() {
        return Ok((None, removed));
    }
    Ok((
        Some(state.successor(state.active_key_id.clone(), records)?),
        removed,
    ))
}

/// `restore-versions`: the selected removed records become retired again.
pub fn restore(
    state: &StateFile,
    versions: &[u64],
) -> Result<(StateFile, Vec<Record>), StateError> {
    let active = state
        .active_record()
        .ok_or(StateError::Corrupt("no active record"))?;
    let mut sorted = versions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.is_empty() || sorted.len() != versions.len() {
        return Err(StateError::Progress(
            "--versions must list distinct versions",
        ));
    }
    if sorted
        .iter()
        .any(|v| *v == 0 || *v >= active.transit_version)
    {
        return Err(StateError::Progress(
            "restored versions must be positive and below the active version",
        ));
    }
    let mut records = state.snapshots.clone();
    let mut restored = Vec::new();
    for version in &sorted {
        let Some(r) = records.iter_mut().find(|r| r.transit_version == *version) else {
            return Err(StateError::Progress(
                "a selected version is not in the local state",
            ));
        };
        if r.state != RecordState::Removed {
            return Err(StateError::Progress("a selected version is not removed"));
        }
        r.state = RecordState::Retired;
        restored.push(r.clone());
    }
    Ok((
        state.successor(state.active_key_id.clone(), records)?,
        restored,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::state::tests::{FP, golden_scope, key_meta as meta};

    const RULES: RotationRules = RotationRules {
        required_count: 3,
        reject_rollback: true,
    };

    fn first() -> StateFile {
        bootstrap_state(&golden_scope(), FP, &meta(1), 1_700_000_100).unwrap()
    }

    fn run(state: &StateFile, m: &KeyMetadata, now: i64) -> Observation {
        observe(state, m, &golden_scope(), now, RULES, Mode::Observe).unwrap()
    }

    #[test]
    fn bootstrap_only_for_an_unrotated_key() {
        let s = first();
        assert_eq!(s.generation, 1);
        assert_eq!(s.validate(FP, &golden_scope()), Ok(()));
        assert_eq!(
            bootstrap_state(&golden_scope(), FP, &meta(2), 0),
            Err(RegistryError::StateUnavailable)
        );
    }

    #[test]
    fn a_new_version_becomes_pending_then_stable_then_active() {
        let s1 = first();
        assert_eq!(
            run(&s1, &meta(1), 1),
            Observation {
                next: None,
                stable_candidate: None,
                encryption_blocked: false
            }
        );
        let o = run(&s1, &meta(2), 1_700_000_200);
        let s2 = o.next.unwrap();
        assert_eq!(s2.generation, 2);
        assert!(o.stable_candidate.is_none());
        let pending = s2
            .snapshots
            .iter()
            .find(|r| r.state == RecordState::Pending)
            .unwrap();
        assert_eq!(
            (pending.transit_version, pending.stable_observation_count),
            (2, 1)
        );
        let s3 = run(&s2, &meta(2), 1_700_000_230).next.unwrap();
        let o = run(&s3, &meta(2), 1_700_000_260);
        let s4 = o.next.unwrap();
        let candidate = o.stable_candidate.unwrap();
        // Stable: further observations change nothing.
        assert_eq!(run(&s4, &meta(2), 1_700_000_290).next, None);
        let s5 = promote(&s4, &candidate, 1_700_000_400).unwrap();
        assert_eq!(s5.active_key_id, candidate);
        assert_eq!(s5.validate(FP, &golden_scope()), Ok(()));
        let old = s5
            .snapshots
            .iter()
            .find(|r| r.transit_version == 1)
            .unwrap();
        assert_eq!(old.state, RecordState::Retired);
        assert_eq!(run(&s5, &meta(2), 1_700_000_500).next, None);
    }

    #[test]
    fn skipped_versions_are_retired_and_older_pendings_superseded() {
        let s2 = run(&first(), &meta(2), 1_700_000_200).next.unwrap();
        let s3 = run(&s2, &meta(4), 1_700_000_300).next.unwrap();
        let state_of = |v| {
            s3.snapshots
                .iter()
                .find(|r| r.transit_version == v)
                .unwrap()
                .state
        };
        assert_eq!(state_of(2), RecordState::Retired);
        assert_eq!(state_of(3), RecordState::Retired);
        assert_eq!(state_of(4), RecordState::Pending);
        let mut missing = meta(4);
        missing.keys.remove("3");
        assert_eq!(
            observe(&first(), &missing, &golden_scope(), 0, RULES, Mode::Observe),
            Err(RegistryError::IdentityMismatch)
        );
    }

    #[test]
    fn a_generation_at_its_maximum_is_a_clear_refusal() {
        let mut last = first();
        last.generation = u64::MAX;
        let last = last.seal();
        assert_eq!(
            observe(&last, &meta(2), &golden_scope(), 0, RULES, Mode::Observe),
            Err(RegistryError::GenerationExhausted)
        );
        // Nothing to record, nothing refused.
        assert!(
            observe(&last, &meta(1), &golden_scope(), 0, RULES, Mode::Observe)
                .unwrap()
                .next
                .is_none()
        );
        assert_eq!(
            last.successor(last.active_key_id.clone(), last.snapshots.clone()),
            Err(StateError::Progress(
                crate::registry::state::GENERATION_EXHAUSTED
            ))
        );
    }

    #[test]
    fn discovery_records_identities_but_never_counts() {
        let o = observe(
            &first(),
            &meta(2),
            &golden_scope(),
            1_700_000_200,
            RULES,
            Mode::Discover,
        )
        .unwrap();
        let s2 = o.next.unwrap();
        let pending = s2
            .snapshots
            .iter()
            .find(|r| r.state == RecordState::Pending)
            .unwrap();
        assert_eq!(pending.stable_observation_count, 0);
        assert_eq!(
            observe(&s2, &meta(2), &golden_scope(), 1, RULES, Mode::Discover)
                .unwrap()
                .next,
            None
        );
    }

    #[test]
    fn rollback_recreation_and_minimums_fail_closed() {
        let s2 = run(&first(), &meta(2), 1_700_000_200).next.unwrap();
        let promoted = promote(
            &run(&run(&s2, &meta(2), 1).next.unwrap(), &meta(2), 2)
                .next
                .unwrap(),
            &s2.snapshots[1].kubernetes_key_id,
            3,
        );
        let promoted = promoted.unwrap();
        assert_eq!(
            observe(
                &promoted,
                &meta(1),
                &golden_scope(),
                0,
                RULES,
                Mode::Observe
            ),
            Err(RegistryError::VersionRollback)
        );
        let lenient = RotationRules {
            reject_rollback: false,
            ..RULES
        };
        assert!(
            observe(
                &promoted,
                &meta(1),
                &golden_scope(),
                0,
                lenient,
                Mode::Observe
            )
            .is_err(),
            "v2 is missing from Transit"
        );
        // Pending version vanished.
        assert_eq!(
            observe(&s2, &meta(1), &golden_scope(), 0, RULES, Mode::Observe),
            Err(RegistryError::VersionRollback)
        );
        // Same name, recreated key: different creation times.
        let mut recreated = meta(1);
        recreated.keys.insert("1".into(), 1_800_000_000);
        assert_eq!(
            observe(
                &first(),
                &recreated,
                &golden_scope(),
                0,
                RULES,
                Mode::Observe
            ),
            Err(RegistryError::IdentityMismatch)
        );
        let mut min_dec = meta(2);
        min_dec.min_decryption_version = 2;
        assert_eq!(
            observe(
                &promoted,
                &min_dec,
                &golden_scope(),
                0,
                RULES,
                Mode::Observe
            ),
            Err(RegistryError::VersionExcluded)
        );
        // A recreated key whose minimums also exclude a version is an identity fault.
        let mut both = min_dec.clone();
        both.keys.insert("1".into(), 1_800_000_000);
        assert_eq!(
            observe(&promoted, &both, &golden_scope(), 0, RULES, Mode::Observe),
            Err(RegistryError::IdentityMismatch)
        );
        // OpenBao leaves archived versions out of the map: still a setting.
        let mut archived = min_dec.clone();
        archived.keys.remove("1");
        assert_eq!(
            observe(
                &promoted,
                &archived,
                &golden_scope(),
                0,
                RULES,
                Mode::Observe
            ),
            Err(RegistryError::VersionExcluded)
        );
        let mut vanished = meta(2);
        vanished.keys.remove("1");
        assert_eq!(
            observe(
                &promoted,
                &vanished,
                &golden_scope(),
                0,
                RULES,
                Mode::Observe
            ),
            Err(RegistryError::IdentityMismatch),
            "a version missing without a minimum that explains it"
        );
        // Discovery records identities even while a minimum excludes one.
        assert!(
            observe(
                &promoted,
                &min_dec,
                &golden_scope(),
                0,
                RULES,
                Mode::Discover
            )
            .is_ok()
        );
        let mut min_enc = meta(2);
        min_enc.min_encryption_version = 3;
        min_enc.latest_version = 3;
        min_enc.keys.insert("3".into(), 1_700_000_180);
        assert!(
            observe(
                &promoted,
                &min_enc,
                &golden_scope(),
                0,
                RULES,
                Mode::Observe
            )
            .unwrap()
            .encryption_blocked
        );
    }

    #[test]
    fn retire_and_restore_are_reversible_and_guarded() {
        let s2 = run(&first(), &meta(2), 1_700_000_200).next.unwrap();
        let key = s2
            .snapshots
            .iter()
            .find(|r| r.state == RecordState::Pending)
            .unwrap()
            .kubernetes_key_id
            .clone();
        let active2 = promote(&s2, &key, 1_700_000_300).unwrap();
        assert!(retire_before(&active2, 1).is_err());
        assert!(retire_before(&active2, 3).is_err());
        let (retired, removed) = retire_before(&active2, 2).unwrap();
        let retired = retired.unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(retired.generation, active2.generation + 1);
        assert!(
            check_retained(&retired, &{
                let mut m = meta(2);
                m.min_decryption_version = 2;
                m
            })
            .is_ok()
        );
        assert_eq!(
            retire_before(&retired, 2).unwrap().0,
            None,
            "nothing left to remove"
        );
        assert!(
            check_progress(
                &retired,
                &retired
                    .successor(retired.active_key_id.clone(), retired.snapshots.clone())
                    .unwrap()
            )
            .is_ok()
        );
        let (restored, back) = restore(&retired, &[1]).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(
            restored
                .snapshots
                .iter()
                .find(|r| r.transit_version == 1)
                .unwrap()
                .state,
            RecordState::Retired
        );
        assert!(restore(&restored, &[1]).is_err(), "not removed any more");
        assert!(restore(&retired, &[2]).is_err(), "the active version");
        assert!(restore(&retired, &[1, 1]).is_err());
        // Automatic transitions may never resurrect or drop removed records.
        let mut tampered = retired.snapshots.clone();
        tampered.retain(|r| r.state != RecordState::Removed);
        let bad = retired
            .successor(retired.active_key_id.clone(), tampered)
            .unwrap();
        assert!(check_progress(&retired, &bad).is_err());
    }
}
