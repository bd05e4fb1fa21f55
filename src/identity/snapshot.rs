//! Key snapshots: one Transit key version bound to the configured identity scope.
//!
//! A snapshot is the unit the registry stores and the KMS service looks up by
//! key_id. Its key_id is always re-derived from its fields, never trusted from
//! storage or requests.

use super::key_id::{KeyId, derive_key_id};
use std::fmt;
use std::sync::Arc;

/// The identity-bearing part of the configuration that every key_id, AAD and
/// annotation is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub provider_name: String,
    pub cluster_id: String,
    pub openbao_instance_id: String,
    /// Empty when no OpenBao namespace is configured.
    pub openbao_namespace: String,
    pub transit_mount_id: String,
    pub transit_key_lineage_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeError {
    EmptyField(&'static str),
    InvalidVersion,
    InvalidCreatedAt,
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyField(name) => write!(f, "key identity field {name} is empty"),
            Self::InvalidVersion => f.write_str("transit version must be positive"),
            Self::InvalidCreatedAt => {
                f.write_str("transit version creation time must be after the Unix epoch")
            }
        }
    }
}

impl std::error::Error for ScopeError {}

impl Scope {
    pub(crate) fn check(&self) -> Result<(), ScopeError> {
        let required = [
            ("providerName", &self.provider_name),
            ("clusterId", &self.cluster_id),
            ("instanceId", &self.openbao_instance_id),
            ("transitMountId", &self.transit_mount_id),
            ("keyLineageId", &self.transit_key_lineage_id),
        ];
        match required.iter().find(|(_, value)| value.is_empty()) {
            Some((name, _)) => Err(ScopeError::EmptyField(name)),
            None => Ok(()),
        }
    }
}

/// Lifecycle state of a snapshot (see `core.md` §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotState {
    Active,
    Pending,
    Retired,
    Rejected,
    Removed,
}

impl SnapshotState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Pending => "pending",
            Self::Retired => "retired",
            Self::Rejected => "rejected",
            Self::Removed => "removed",
        }
    }

    /// States whose ciphertext may be decrypted.
    pub fn decryptable(self) -> bool {
        matches!(self, Self::Active | Self::Pending | Self::Retired)
    }
}

/// How a snapshot binds associated data; only `aad.required` exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AadMode {
    Required,
}

impl AadMode {
    pub fn as_str(self) -> &'static str {
        "aad.required"
    }
}

/// One Transit key version with its derived key_id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySnapshot {
    pub scope: Arc<Scope>,
    pub transit_version: u64,
    /// Creation time of the Transit version, whole Unix seconds (UTC).
    pub created_at_unix: i64,
    pub key_id: KeyId,
    pub state: SnapshotState,
    pub aad_mode: AadMode,
}

impl KeySnapshot {
    /// Builds a snapshot, deriving its key_id from the identity inputs.
    pub fn new(
        scope: Arc<Scope>,
        transit_version: u64,
        created_at_unix: i64,
        state: SnapshotState,
    ) -> Result<Self, ScopeError> {
        let key_id = derive_key_id(&scope, transit_version, created_at_unix)?;
        Ok(Self {
            scope,
            transit_version,
            created_at_unix,
            key_id,
            state,
            aad_mode: AadMode::Required,
        })
    }

    /// Re-derives the key_id and confirms it equals the stored one (defence in
    /// depth before a snapshot is used to answer Status or Encrypt).
    pub fn normalizes(&self) -> bool {
        derive_key_id(&self.scope, self.transit_version, self.created_at_unix)
            .is_ok_and(|derived| derived == self.key_id)
    }
}
