//! The registry state file: schema, canonical hash, strict decoding and the
//! structural validation every loaded or produced state must pass.
//!
//! Byte compatibility with the Go reference matters here: the `krs1.` hash is
//! SHA-256 over the compact JSON of the file minus `currentHash`, with the
//! same member order and omit-empty rules, and Go's HTML-safe escaping.

use crate::identity::{KeyId, KeySnapshot, Scope, SnapshotState};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

pub const SCHEMA_V1ALPHA2: &str = "keyregistry.openbao-kms/v1alpha2";
pub const SCHEMA_V1ALPHA1: &str = "keyregistry.openbao-kms/v1alpha1";
const HASH_PREFIX: &str = "krs1.";
const FINGERPRINT_PREFIX: &str = "cfg1.";
const AAD_REQUIRED: &str = "aad.required";

/// Lifecycle state of one record as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    Active,
    Pending,
    Retired,
    Rejected,
    Removed,
}

impl RecordState {
    /// Sort priority of `core.md` §5.4.
    fn priority(self) -> u8 {
        match self {
            Self::Active => 0,
            Self::Pending => 1,
            Self::Retired => 2,
            Self::Rejected => 3,
            Self::Removed => 4,
        }
    }

    pub fn snapshot_state(self) -> SnapshotState {
        match self {
            Self::Active => SnapshotState::Active,
            Self::Pending => SnapshotState::Pending,
            Self::Retired => SnapshotState::Retired,
            Self::Rejected => SnapshotState::Rejected,
            Self::Removed => SnapshotState::Removed,
        }
    }

    /// Records whose versions must stay available in Transit.
    pub fn retained(self) -> bool {
        matches!(self, Self::Active | Self::Pending | Self::Retired)
    }
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// One snapshot record (field order and omit-empty rules are the file format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Record {
    pub provider_name: String,
    pub cluster_id: String,
    pub openbao_instance_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub openbao_namespace: String,
    pub transit_mount_id: String,
    pub transit_key_lineage_id: String,
    pub transit_version: u64,
    pub transit_version_created_at_unix: i64,
    pub kubernetes_key_id: String,
    pub state: RecordState,
    pub aad_mode: String,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub observed_at_unix: i64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub stable_observation_count: u64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub stable_at_unix: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub promoted_at_unix: i64,
}

impl Record {
    /// A new record for `version` in `scope`, with its derived key_id.
    pub fn new(
        scope: &Arc<Scope>,
        version: u64,
        created_at: i64,
        state: RecordState,
    ) -> Result<Self, StateError> {
        let snapshot = KeySnapshot::new(
            Arc::clone(scope),
            version,
            created_at,
            state.snapshot_state(),
        )
        .map_err(|_| StateError::Corrupt("record identity invalid"))?;
        Ok(Self {
            provider_name: scope.provider_name.clone(),
            cluster_id: scope.cluster_id.clone(),
            openbao_instance_id: scope.openbao_instance_id.clone(),
            openbao_namespace: scope.openbao_namespace.clone(),
            transit_mount_id: scope.transit_mount_id.clone(),
            transit_key_lineage_id: scope.transit_key_lineage_id.clone(),
            transit_version: version,
            transit_version_created_at_unix: created_at,
            kubernetes_key_id: snapshot.key_id.as_str().to_owned(),
            state,
            aad_mode: AAD_REQUIRED.to_owned(),
            observed_at_unix: 0,
            stable_observation_count: 0,
            stable_at_unix: 0,
            promoted_at_unix: 0,
        })
    }

    fn scope(&self) -> Scope {
        Scope {
            provider_name: self.provider_name.clone(),
            cluster_id: self.cluster_id.clone(),
            openbao_instance_id: self.openbao_instance_id.clone(),
            openbao_namespace: self.openbao_namespace.clone(),
            transit_mount_id: self.transit_mount_id.clone(),
            transit_key_lineage_id: self.transit_key_lineage_id.clone(),
        }
    }

    /// The snapshot this record describes, with its key_id re-derived and
    /// compared to the stored one.
    pub fn snapshot(&self, scope: &Arc<Scope>) -> Result<KeySnapshot, StateError> {
        let snapshot = KeySnapshot::new(
            Arc::clone(scope),
            self.transit_version,
            self.transit_version_created_at_unix,
            self.state.snapshot_state(),
        )
        .map_err(|_| StateError::Corrupt("record identity invalid"))?;
        let stored = KeyId::parse(&self.kubernetes_key_id)
            .map_err(|_| StateError::Corrupt("record key_id malformed"))?;
        if stored != snapshot.key_id {
            return Err(StateError::Corrupt(
                "record key_id does not match its identity",
            ));
        }
        Ok(snapshot)
    }

    fn sane(&self) -> bool {
        let times_ok =
            self.observed_at_unix >= 0 && self.stable_at_unix >= 0 && self.promoted_at_unix >= 0;
        let count_ok = self.stable_observation_count == 0 || self.observed_at_unix != 0;
        let stable_ok = self.stable_at_unix == 0 || self.stable_observation_count > 0;
        let order_ok = (self.observed_at_unix == 0
            || self.stable_at_unix == 0
            || self.stable_at_unix >= self.observed_at_unix)
            && (self.observed_at_unix == 0
                || self.promoted_at_unix == 0
                || self.promoted_at_unix >= self.observed_at_unix);
        times_ok && count_ok && stable_ok && order_ok && self.aad_mode == AAD_REQUIRED
    }
}

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateFile {
    pub schema_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identity_fingerprint: String,
    pub generation: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub previous_hash: String,
    pub current_hash: String,
    pub active_key_id: String,
    pub snapshots: Vec<Record>,
}

/// The hashed body: the file minus `currentHash`, same order and rules.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HashBody<'a> {
    schema_version: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    identity_fingerprint: &'a str,
    generation: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    previous_hash: &'a str,
    active_key_id: &'a str,
    snapshots: &'a [Record],
}

/// Why a state is refused. Messages name the case, never values.
/// Why a state at the largest generation cannot change any more.
pub const GENERATION_EXHAUSTED: &str =
    "state generation is at its maximum; no further change can be recorded";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    Corrupt(&'static str),
    ScopeMismatch,
    FingerprintMismatch,
    Rollback(&'static str),
    MissingWithCheckpoint,
    UnsafeFile(&'static str),
    Io(&'static str),
    Locked,
    Progress(&'static str),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Corrupt(why) => write!(
                f,
                "registry state corrupt: {why}; restore the state and checkpoint pair from backup or a healthy peer (never edit it by hand)"
            ),
            Self::ScopeMismatch => f.write_str(
                "config invalid; state: registry state belongs to another key identity (provider, cluster, instance, namespace, mount id or lineage changed)",
            ),
            Self::FingerprintMismatch => f.write_str(
                "config invalid; state: registry state was written for another config identity (fingerprint differs)",
            ),
            Self::Rollback(why) => write!(f, "registry state rollback detected: {why}; restore the newest state and checkpoint pair from backup or a healthy peer"),
            Self::MissingWithCheckpoint => f.write_str(
                "registry state rollback detected: state file missing with checkpoint present; restore the state file from backup or a healthy peer",
            ),
            Self::UnsafeFile(why) => write!(
                f,
                "registry state unsafe: {why}; fix ownership and modes (state directory 0750 and files 0640, owned by the provider user)"
            ),
            Self::Io(why) => write!(f, "registry state unavailable: {why}"),
            Self::Locked => f.write_str("registry state is locked by another process"),
            Self::Progress(why) => write!(f, "registry state transition refused: {why}"),
        }
    }
}

impl std::error::Error for StateError {}

/// Go's encoder escapes these inside strings; they cannot occur outside
/// strings in JSON, so a replacement over the whole output is exact.
fn go_html_escape(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn well_formed_digest(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|tail| {
        tail.len() == 43 && URL_SAFE_NO_PAD.decode(tail).is_ok_and(|b| b.len() == 32)
    })
}

impl StateFile {
    /// `krs1.` + base64url(SHA-256(compact hash body)).
    pub fn compute_hash(&self) -> String {
        let body = HashBody {
            schema_version: &self.schema_version,
            identity_fingerprint: &self.identity_fingerprint,
            generation: self.generation,
            previous_hash: &self.previous_hash,
            active_key_id: &self.active_key_id,
            snapshots: &self.snapshots,
        };
        let json = go_html_escape(serde_json::to_string(&body).unwrap_or_default());
        let digest = ring::digest::digest(&ring::digest::SHA256, json.as_bytes());
        format!("{HASH_PREFIX}{}", URL_SAFE_NO_PAD.encode(digest))
    }

    /// Sorts records (active, pending, retired, rejected, removed; newest
    /// version first; key_id) and sets `currentHash`.
    pub fn seal(mut self) -> Self {
        self.snapshots.sort_by(|a, b| {
            (
                a.state.priority(),
                std::cmp::Reverse(a.transit_version),
                &a.kubernetes_key_id,
            )
                .cmp(&(
                    b.state.priority(),
                    std::cmp::Reverse(b.transit_version),
                    &b.kubernetes_key_id,
                ))
        });
        self.current_hash = self.compute_hash();
        self
    }

    /// The successor of `self` (generation + 1, chained) with `snapshots`.
    /// A generation at its maximum has no successor: the state can record no
    /// further change (a clear refusal, never a wrap-around).
    pub fn successor(
        &self,
        active_key_id: String,
        snapshots: Vec<Record>,
    ) -> Result<Self, StateError> {
        let generation = self
            .generation
            .checked_add(1)
            .ok_or(StateError::Progress(GENERATION_EXHAUSTED))?;
        Ok(Self {
            schema_version: SCHEMA_V1ALPHA2.to_owned(),
            identity_fingerprint: self.identity_fingerprint.clone(),
            generation,
            previous_hash: self.current_hash.clone(),
            current_hash: String::new(),
            active_key_id,
            snapshots,
        }
        .seal())
    }

    /// Strict decoding: unknown fields, duplicate fields and trailing data are errors.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        serde_json::from_slice(bytes).map_err(|_| StateError::Corrupt("not a valid state document"))
    }

    /// Indented JSON as written to disk (the hash is over the compact form).
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            go_html_escape(serde_json::to_string_pretty(self).unwrap_or_default()).into_bytes();
        out.push(b'\n');
        out
    }

    pub fn active_record(&self) -> Option<&Record> {
        self.snapshots
            .iter()
            .find(|r| r.kubernetes_key_id == self.active_key_id)
    }

    /// Structure, hash and identity checks (`core.md` §5.7), against the
    /// current config's fingerprint and scope.
    pub fn validate(&self, fingerprint: &str, scope: &Scope) -> Result<(), StateError> {
        if self.schema_version == SCHEMA_V1ALPHA1 {
            return Err(StateError::Corrupt(
                "legacy v1alpha1 state is not bound to a config; fresh bound state required",
            ));
        }
        if self.schema_version != SCHEMA_V1ALPHA2 {
            return Err(StateError::Corrupt("unknown schema version"));
        }
        if self.generation == 0 || self.active_key_id.is_empty() || self.snapshots.is_empty() {
            return Err(StateError::Corrupt(
                "generation, active key or snapshots missing",
            ));
        }
        let chained = if self.generation == 1 {
            self.previous_hash.is_empty()
        } else {
            well_formed_digest(&self.previous_hash, HASH_PREFIX)
        };
        if !chained || !well_formed_digest(&self.current_hash, HASH_PREFIX) {
            return Err(StateError::Corrupt("hash chain fields malformed"));
        }
        if self.compute_hash() != self.current_hash {
            return Err(StateError::Corrupt("content does not match its hash"));
        }
        if !well_formed_digest(&self.identity_fingerprint, FINGERPRINT_PREFIX) {
            return Err(StateError::Corrupt("identity fingerprint malformed"));
        }
        if self.identity_fingerprint != fingerprint {
            return Err(StateError::FingerprintMismatch);
        }
        let mut seen = HashSet::new();
        let mut actives = 0;
        let mut versions = HashSet::new();
        let shared_scope = Arc::new(scope.clone());
        for record in &self.snapshots {
            if record.scope() != *scope {
                return Err(StateError::ScopeMismatch);
            }
            if !record.sane() {
                return Err(StateError::Corrupt("record times or counts inconsistent"));
            }
            record.snapshot(&shared_scope)?;
            if !seen.insert(record.kubernetes_key_id.as_str())
                || !versions.insert(record.transit_version)
            {
                return Err(StateError::Corrupt("duplicate key_id or version"));
            }
            if record.state == RecordState::Active {
                actives += 1;
            }
        }
        match self.active_record() {
            Some(active) if active.state == RecordState::Active && actives == 1 => Ok(()),
            _ => Err(StateError::Corrupt(
                "exactly one active record must match activeKeyId",
            )),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::openbao::KeyMetadata;

    /// A config fingerprint for fixtures.
    pub(crate) const FP: &str = "cfg1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    /// Safe metadata of a key with versions 1..=latest, created a minute apart.
    pub(crate) fn key_meta(latest: i64) -> KeyMetadata {
        KeyMetadata {
            key_type: "aes256-gcm96".into(),
            latest_version: latest,
            min_decryption_version: 1,
            keys: (1..=latest)
                .map(|v| (v.to_string(), 1_700_000_000 + v * 60))
                .collect(),
            supports_encryption: true,
            supports_decryption: true,
            ..KeyMetadata::default()
        }
    }

    pub(crate) fn golden_scope() -> Arc<Scope> {
        Arc::new(Scope {
            provider_name: "openbao-kms-workload-a".into(),
            cluster_id: "workload-a".into(),
            openbao_instance_id: "bao-prod-a".into(),
            openbao_namespace: String::new(),
            transit_mount_id: "transit-prod-primary".into(),
            transit_key_lineage_id: "01HXEXAMPLEKEYLINEAGEID".into(),
        })
    }

    fn v1(state: RecordState) -> Record {
        let mut r = Record::new(&golden_scope(), 1, 1_700_000_060, state).unwrap();
        r.observed_at_unix = 1_700_000_000;
        r.promoted_at_unix = 1_700_000_000;
        r
    }

    fn v2_pending() -> Record {
        let mut r = Record::new(&golden_scope(), 2, 1_700_000_120, RecordState::Pending).unwrap();
        r.observed_at_unix = 1_700_000_060;
        r
    }

    fn v2_active() -> Record {
        let mut r = v2_pending();
        r.state = RecordState::Active;
        r.stable_observation_count = 1;
        r.stable_at_unix = 1_700_000_060;
        r.promoted_at_unix = 1_700_000_060;
        r
    }

    fn state(
        schema: &str,
        fingerprint: &str,
        generation: u64,
        previous: &str,
        active: &Record,
        records: Vec<Record>,
    ) -> StateFile {
        StateFile {
            schema_version: schema.into(),
            identity_fingerprint: fingerprint.into(),
            generation,
            previous_hash: previous.into(),
            current_hash: String::new(),
            active_key_id: active.kubernetes_key_id.clone(),
            snapshots: records,
        }
        .seal()
    }

    /// Appendix B of `core.md`: recomputed hashes of the reference fixtures.
    #[test]
    fn appendix_b_hash_vectors() {
        let initial = state(
            SCHEMA_V1ALPHA1,
            "",
            1,
            "",
            &v1(RecordState::Active),
            vec![v1(RecordState::Active)],
        );
        assert_eq!(
            initial.current_hash,
            "krs1.DqMdjGGzCtdXlX6PD1Z5bcj4EyeiEzFav7vchElfAMo"
        );
        let discovered = state(
            SCHEMA_V1ALPHA1,
            "",
            2,
            &initial.current_hash,
            &v1(RecordState::Active),
            vec![v1(RecordState::Active), v2_pending()],
        );
        assert_eq!(
            discovered.current_hash,
            "krs1.ioQLvK6_XSz5XwNq5VG8uOWZuJEnpF6pd2HWzuYY8wY"
        );
        let rotated = state(
            SCHEMA_V1ALPHA1,
            "",
            2,
            &initial.current_hash,
            &v2_active(),
            vec![v2_active(), v1(RecordState::Retired)],
        );
        assert_eq!(
            rotated.current_hash,
            "krs1.evEbhkz0ZC9-duP2_n0HgzZ3szBdAPtktM6iSYw1On4"
        );
        let removed = state(
            SCHEMA_V1ALPHA1,
            "",
            3,
            &rotated.current_hash,
            &v2_active(),
            vec![v2_active(), v1(RecordState::Removed)],
        );
        assert_eq!(
            removed.current_hash,
            "krs1.Zili0tHx1ISlfX_wqk2m329knsaAIgPOdet9cBMJCCw"
        );
        let fingerprint = format!("cfg1.{}", "A".repeat(43));
        let bound = state(
            SCHEMA_V1ALPHA2,
            &fingerprint,
            1,
            "",
            &v1(RecordState::Active),
            vec![v1(RecordState::Active)],
        );
        assert_eq!(
            bound.current_hash,
            "krs1.9-fz5pQFzhSS72pb0qvCzeEJ3fnqQhwETsx1LEHB8Us"
        );
        let bound_discovered = state(
            SCHEMA_V1ALPHA2,
            &fingerprint,
            2,
            &bound.current_hash,
            &v1(RecordState::Active),
            vec![v1(RecordState::Active), v2_pending()],
        );
        assert_eq!(
            bound_discovered.current_hash,
            "krs1.tu6TkH8g61rdindHuId9bXZcMXbUgYPcygzMWgtzBgk"
        );
    }

    #[test]
    fn round_trips_and_validates() {
        let fingerprint = format!("cfg1.{}", "A".repeat(43));
        let s = state(
            SCHEMA_V1ALPHA2,
            &fingerprint,
            1,
            "",
            &v1(RecordState::Active),
            vec![v1(RecordState::Active)],
        );
        let decoded = StateFile::decode(&s.encode()).unwrap();
        assert_eq!(decoded, s);
        assert_eq!(decoded.validate(&fingerprint, &golden_scope()), Ok(()));
        let other = format!("cfg1.{}", "B".repeat(43));
        assert_eq!(
            decoded.validate(&other, &golden_scope()),
            Err(StateError::FingerprintMismatch)
        );
        let mut scope = (*golden_scope()).clone();
        scope.cluster_id = "workload-b".into();
        assert_eq!(
            decoded.validate(&fingerprint, &scope),
            Err(StateError::ScopeMismatch)
        );
    }

    #[test]
    fn refuses_tampering_and_sloppy_documents() {
        let fingerprint = format!("cfg1.{}", "A".repeat(43));
        let good = state(
            SCHEMA_V1ALPHA2,
            &fingerprint,
            1,
            "",
            &v1(RecordState::Active),
            vec![v1(RecordState::Active)],
        );
        let text = String::from_utf8(good.encode()).unwrap();
        let tampered = text.replace("1700000060", "1700000061");
        let decoded = StateFile::decode(tampered.as_bytes()).unwrap();
        assert!(matches!(
            decoded.validate(&fingerprint, &golden_scope()),
            Err(StateError::Corrupt(_))
        ));
        for bad in [
            text.replace("\"generation\"", "\"extra\": 1, \"generation\""),
            format!("{text} {{}}"),
            text.replace("\"active\"", "\"bogus\""),
            "not json".to_owned(),
        ] {
            assert!(StateFile::decode(bad.as_bytes()).is_err(), "{bad}");
        }
        let legacy = state(
            SCHEMA_V1ALPHA1,
            "",
            1,
            "",
            &v1(RecordState::Active),
            vec![v1(RecordState::Active)],
        );
        assert!(matches!(
            legacy.validate(&fingerprint, &golden_scope()),
            Err(StateError::Corrupt(_))
        ));
        let two_active = state(
            SCHEMA_V1ALPHA2,
            &fingerprint,
            1,
            "",
            &v1(RecordState::Active),
            vec![v1(RecordState::Active), v2_active()],
        );
        assert!(matches!(
            two_active.validate(&fingerprint, &golden_scope()),
            Err(StateError::Corrupt(_))
        ));
    }

    #[test]
    fn html_characters_are_escaped_like_go() {
        assert_eq!(
            go_html_escape("{\"a\":\"<&>\"}".into()),
            "{\"a\":\"\\u003c\\u0026\\u003e\"}"
        );
    }
}
