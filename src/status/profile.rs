//! The key profile as the status layer sees it (`core.md` §6.3 step 4): the
//! rules live in `crate::rules`; here each finding becomes a readiness reason
//! of the right kind.

use super::reason::Reason;
use crate::openbao::KeyMetadata;
use crate::rules::{identity_findings, setting_findings};

/// `Err(key_identity_invalid)` when the live key cannot be the recorded key
/// (Decrypt refused); `Ok(Some(profile_invalid))` for an unsafe setting on it
/// (Encrypt refused, Decrypt served); `Ok(None)` for a safe profile.
pub fn assess_profile(meta: &KeyMetadata) -> Result<Option<Reason>, Reason> {
    if !identity_findings(meta).is_empty() {
        return Err(Reason::KeyIdentityInvalid);
    }
    Ok((!setting_findings(meta).is_empty()).then_some(Reason::ProfileInvalid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::state_tests::key_meta;

    // Which rule is which kind is tested in `crate::rules`; here, that each
    // kind becomes its reason and that identity wins over a setting.
    #[test]
    fn settings_are_drift_and_identity_wins() {
        assert_eq!(assess_profile(&key_meta(2)), Ok(None));
        let mut drift = key_meta(2);
        drift.deletion_allowed = true;
        assert_eq!(assess_profile(&drift), Ok(Some(Reason::ProfileInvalid)));
        let mut recreated = key_meta(2);
        recreated.derived = true;
        assert_eq!(assess_profile(&recreated), Err(Reason::KeyIdentityInvalid));
        recreated.exportable = true;
        assert_eq!(assess_profile(&recreated), Err(Reason::KeyIdentityInvalid));
    }
}
