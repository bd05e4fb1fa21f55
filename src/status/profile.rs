//! Transit key profile validation (`core.md` §6.3 step 4).
//!
//! The provider only serves a key that can never leave OpenBao and never be
//! deleted: aes256-gcm96, not exportable, no plaintext backup, no deletion,
//! not derived, not convergent.

use super::reason::Reason;
use crate::diagnostics::profile_findings;
use crate::openbao::KeyMetadata;

/// Checks the key profile (the same findings `doctor` reports) and the shape
/// of its version map, which the provider relies on to name key versions.
pub fn check_profile(meta: &KeyMetadata) -> Result<(), Reason> {
    let latest = meta.latest_version;
    let sane_map = meta.min_available_version >= 0
        && meta.keys.contains_key(&latest.to_string())
        && meta.keys.iter().all(|(version, created)| {
            let canonical = !version.starts_with('0');
            canonical && version.parse::<i64>().is_ok_and(|v| v > 0 && v <= latest) && *created > 0
        });
    if profile_findings(meta).is_empty() && sane_map {
        Ok(())
    } else {
        Err(Reason::ProfileInvalid)
    }
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
    fn accepts_the_safe_profile_only() {
        assert_eq!(check_profile(&good()), Ok(()));
        let unsafe_variants: Vec<fn(&mut KeyMetadata)> = vec![
            |m| m.key_type = "chacha20-poly1305".into(),
            |m| m.exportable = true,
            |m| m.allow_plaintext_backup = true,
            |m| m.deletion_allowed = true,
            |m| m.derived = true,
            |m| m.convergent_encryption = true,
            |m| m.soft_deleted = true,
            |m| m.supports_encryption = false,
            |m| m.latest_version = 0,
            |m| m.latest_version = 3,
            |m| m.min_available_version = 3,
            |m| m.min_encryption_version = 3,
            |m| {
                m.keys.insert("7".into(), 1);
            },
            |m| {
                m.keys.insert("01".into(), 1);
            },
            |m| {
                m.keys.insert("1".into(), 0);
            },
        ];
        for (i, mutate) in unsafe_variants.iter().enumerate() {
            let mut meta = good();
            mutate(&mut meta);
            assert_eq!(
                check_profile(&meta),
                Err(Reason::ProfileInvalid),
                "variant {i}"
            );
        }
    }
}
