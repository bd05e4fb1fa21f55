//! Bounded readiness reasons (`core.md` §7.4), and which of them contradict
//! the key's identity (Decrypt refused before Transit) rather than describe
//! an unsafe setting or an outage (Decrypt still served; see
//! `docs/kms-behaviour.md`, "What each fault stops").

use crate::registry::RegistryError;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    StateUnavailable,
    StatusStale,
    MetadataUnverified,
    UpsertCheckFailed,
    MetadataReadFailed,
    UpsertAllowed,
    ProfileInvalid,
    KeyIdentityInvalid,
    VersionRollback,
    StateRollback,
    StateSaveFailed,
    StatePublishFailed,
    EncryptionBlocked,
    DeepProbePending,
    DeepProbeFailed,
    DeepProbeInvalid,
    CircuitBreakerOpen,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StateUnavailable => "state_unavailable",
            Self::StatusStale => "status_stale",
            Self::MetadataUnverified => "metadata_unverified",
            Self::UpsertCheckFailed => "upsert_check_failed",
            Self::MetadataReadFailed => "metadata_read_failed",
            Self::UpsertAllowed => "upsert_allowed",
            Self::ProfileInvalid => "profile_invalid",
            Self::KeyIdentityInvalid => "key_identity_invalid",
            Self::VersionRollback => "version_rollback",
            Self::StateRollback => "state_rollback",
            Self::StateSaveFailed => "state_save_failed",
            Self::StatePublishFailed => "state_publish_failed",
            Self::EncryptionBlocked => "encryption_blocked",
            Self::DeepProbePending => "deep_probe_pending",
            Self::DeepProbeFailed => "deep_probe_failed",
            Self::DeepProbeInvalid => "deep_probe_invalid",
            Self::CircuitBreakerOpen => "circuit_breaker_open",
        }
    }
}

impl Reason {
    /// True when live metadata or disk contradicts the recorded identities:
    /// old ciphertext must then never reach whatever the key is now.
    pub fn contradicts_identity(self) -> bool {
        matches!(
            self,
            Self::KeyIdentityInvalid | Self::VersionRollback | Self::StateRollback
        )
    }
}

impl Reason {
    /// True for an unsafe setting on the recorded key (or encryption blocked
    /// by a minimum version): Encrypt is refused, Decrypt is still served.
    pub fn is_setting_drift(self) -> bool {
        matches!(
            self,
            Self::ProfileInvalid | Self::UpsertAllowed | Self::EncryptionBlocked
        )
    }
}

impl From<RegistryError> for Reason {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::StateUnavailable => Self::StateUnavailable,
            RegistryError::IdentityMismatch => Self::KeyIdentityInvalid,
            RegistryError::VersionRollback => Self::VersionRollback,
            // A minimum version is a setting: Transit enforces it on Decrypt.
            RegistryError::VersionExcluded => Self::ProfileInvalid,
            RegistryError::SaveFailed => Self::StateSaveFailed,
            RegistryError::StateDiverged => Self::StateRollback,
            RegistryError::PublishFailed | RegistryError::GenerationExhausted => {
                Self::StatePublishFailed
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
