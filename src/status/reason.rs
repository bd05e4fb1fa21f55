//! Bounded readiness reasons (`core.md` §7.4).

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
    VersionRollback,
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
            Self::VersionRollback => "version_rollback",
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

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
