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

    fn good() -> KeyMetadata {
        KeyMetadata {
            key_type: "aes256-gcm96".into(),
            latest_version: 2,
            min_decryption_version: 1,
            keys: [("1".to_owned(), 100), ("2".to_owned(), 200)].into(),
            supports_encryption: true,
            supports_decryption: true,
            ..KeyMetadata::default()
        }
    }

    #[test]
    fn settings_are_drift_and_shape_is_identity() {
        assert_eq!(assess_profile(&good()), Ok(None));
        let settings: Vec<fn(&mut KeyMetadata)> = vec![
            |m| m.exportable = true,
            |m| m.allow_plaintext_backup = true,
            |m| m.deletion_allowed = true,
            |m| m.min_encryption_version = 3,
            |m| m.min_decryption_version = 3,
        ];
        for (i, mutate) in settings.iter().enumerate() {
            let mut meta = good();
            mutate(&mut meta);
            assert_eq!(
                assess_profile(&meta),
                Ok(Some(Reason::ProfileInvalid)),
                "setting {i}"
            );
        }
        let identity: Vec<fn(&mut KeyMetadata)> = vec![
            |m| m.key_type = "chacha20-poly1305".into(),
            |m| m.derived = true,
            |m| m.convergent_encryption = true,
            |m| m.soft_deleted = true,
            |m| m.supports_encryption = false,
            |m| m.latest_version = 0,
            |m| m.latest_version = 3,
            |m| m.min_available_version = 3,
            |m| {
                m.keys.insert("7".into(), 1);
            },
            |m| {
                m.keys.insert("01".into(), 1);
            },
            |m| {
                m.keys.insert("1".into(), 0);
            },
            // An unsafe setting does not hide an identity contradiction.
            |m| {
                m.exportable = true;
                m.derived = true;
            },
        ];
        for (i, mutate) in identity.iter().enumerate() {
            let mut meta = good();
            mutate(&mut meta);
            assert_eq!(
                assess_profile(&meta),
                Err(Reason::KeyIdentityInvalid),
                "identity {i}"
            );
        }
    }
}
