//! Why the registry refused an observation, a transition or a save. The
//! status layer maps each to its readiness reason; the CLI prints the label.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryError {
    /// No usable state: the key is already rotated and no state exists, or a
    /// discovery ran before the first state was written.
    StateUnavailable,
    /// Transit contradicts a recorded identity: a retained version's creation
    /// time changed or is missing, a skipped version has no creation time, or
    /// the newest version was retired or removed locally.
    IdentityMismatch,
    /// Transit's latest version is below the active one, or a pending
    /// version vanished.
    VersionRollback,
    /// `min_decryption_version` or `min_available_version` excludes a
    /// retained version: a setting, not an identity change.
    VersionExcluded,
    /// The state could not be saved.
    SaveFailed,
    /// After a failed save, disk holds neither the confirmed nor the attempted
    /// state: someone else changed it.
    StateDiverged,
    /// A successor state broke a progress invariant or could not be built.
    PublishFailed,
    /// The state is at the largest generation: no change can be recorded.
    GenerationExhausted,
}

impl RegistryError {
    /// A stable label for logs and CLI messages (the readiness reason's name
    /// where one exists).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StateUnavailable => "state_unavailable",
            Self::IdentityMismatch => "key_identity_invalid",
            Self::VersionRollback => "version_rollback",
            Self::VersionExcluded => "retained_version_excluded",
            Self::SaveFailed => "state_save_failed",
            Self::StateDiverged => "state_rollback",
            Self::PublishFailed => "state_publish_failed",
            Self::GenerationExhausted => "state_generation_exhausted",
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for RegistryError {}
