//! Transit key profile rules (spec config §5.2, `core.md` §6.3 step 4), each
//! with the impact the reference reports, and what kind of fault it is.
//!
//! Every finding blocks Encrypt and makes Status unhealthy. Only
//! [`Fault::Identity`] findings also stop Decrypt: they mean the live key
//! cannot be the key the registry recorded (another type or derivation, a
//! soft-deleted key, a malformed version map). [`Fault::Setting`] findings are
//! settings an admin changed on the right key (export, plaintext backup,
//! deletion, minimum versions); existing Secrets stay readable, and Transit
//! itself still enforces `min_decryption_version`.

use crate::openbao::KeyMetadata;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impact {
    CryptographicSafety,
    ApiServerAvailability,
}

impl Impact {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CryptographicSafety => "cryptographic_safety",
            Self::ApiServerAvailability => "api_server_availability",
        }
    }
}

/// Whether a finding contradicts the key's identity or is a setting drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The live key cannot be the recorded key: Decrypt is refused too.
    Identity,
    /// An unsafe setting on the recorded key: Encrypt is refused, Decrypt works.
    Setting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileFinding {
    pub impact: Impact,
    pub fault: Fault,
    pub message: &'static str,
}

/// All findings for this metadata, in the reference's order (the version
/// map check, which the reference runs separately, comes last); empty is safe.
pub fn profile_findings(meta: &KeyMetadata) -> Vec<ProfileFinding> {
    use Fault::{Identity, Setting};
    use Impact::{ApiServerAvailability as Availability, CryptographicSafety as Crypto};
    let latest = meta.latest_version;
    let rules: [(bool, Impact, Fault, &'static str); 14] = [
        (
            latest <= 0,
            Availability,
            Identity,
            "latest version is not positive",
        ),
        (
            meta.soft_deleted,
            Availability,
            Identity,
            "key is soft-deleted",
        ),
        (
            meta.min_available_version > latest,
            Availability,
            Identity,
            "minimum available version exceeds latest version",
        ),
        (
            meta.key_type != "aes256-gcm96",
            Crypto,
            Identity,
            "key type is not aes256-gcm96",
        ),
        (
            meta.exportable,
            Crypto,
            Setting,
            "key material export is enabled",
        ),
        (
            meta.allow_plaintext_backup,
            Crypto,
            Setting,
            "plaintext backup is enabled",
        ),
        (
            meta.deletion_allowed,
            Availability,
            Setting,
            "key deletion is allowed",
        ),
        (
            meta.derived,
            Crypto,
            Identity,
            "derived key mode is enabled",
        ),
        (
            meta.convergent_encryption,
            Crypto,
            Identity,
            "convergent encryption is enabled",
        ),
        (
            meta.min_encryption_version > 0 && meta.min_encryption_version > latest,
            Availability,
            Setting,
            "minimum encryption version blocks latest version",
        ),
        (
            meta.min_decryption_version > latest,
            Availability,
            Setting,
            "minimum decryption version exceeds latest version",
        ),
        (
            !meta.supports_encryption,
            Availability,
            Identity,
            "key does not support encryption",
        ),
        (
            !meta.supports_decryption,
            Availability,
            Identity,
            "key does not support decryption",
        ),
        (
            !version_map_sane(meta),
            Availability,
            Identity,
            "version creation map is malformed",
        ),
    ];
    rules
        .into_iter()
        .filter(|(hit, _, _, _)| *hit)
        .map(|(_, impact, fault, message)| ProfileFinding {
            impact,
            fault,
            message,
        })
        .collect()
}

/// The findings that contradict the key's identity.
pub fn identity_findings(meta: &KeyMetadata) -> Vec<ProfileFinding> {
    of_fault(meta, Fault::Identity)
}

/// The findings that are unsafe settings on the recorded key.
pub fn setting_findings(meta: &KeyMetadata) -> Vec<ProfileFinding> {
    of_fault(meta, Fault::Setting)
}

fn of_fault(meta: &KeyMetadata, fault: Fault) -> Vec<ProfileFinding> {
    let mut findings = profile_findings(meta);
    findings.retain(|f| f.fault == fault);
    findings
}

/// Every version in the creation map is canonical decimal, positive, at most
/// `latest`, created after the epoch, and `latest` has an entry: the provider
/// names key versions by these numbers and times.
fn version_map_sane(meta: &KeyMetadata) -> bool {
    let latest = meta.latest_version;
    meta.min_available_version >= 0
        && meta.keys.contains_key(&latest.to_string())
        && meta.keys.iter().all(|(version, created)| {
            !version.starts_with('0')
                && version.parse::<i64>().is_ok_and(|v| v > 0 && v <= latest)
                && *created > 0
        })
}

/// `blocking/<impact>: <message>` joined by `; `.
pub fn render_findings(findings: &[ProfileFinding]) -> String {
    findings
        .iter()
        .map(|f| format!("blocking/{}: {}", f.impact.as_str(), f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safe() -> KeyMetadata {
        KeyMetadata {
            key_type: "aes256-gcm96".into(),
            latest_version: 1,
            min_decryption_version: 1,
            keys: [("1".to_owned(), 100)].into(),
            supports_encryption: true,
            supports_decryption: true,
            ..KeyMetadata::default()
        }
    }

    #[test]
    fn safe_profile_has_no_findings() {
        assert!(profile_findings(&safe()).is_empty());
    }

    #[test]
    fn findings_are_ordered_and_rendered() {
        let mut meta = safe();
        meta.exportable = true;
        meta.allow_plaintext_backup = true;
        meta.deletion_allowed = true;
        assert_eq!(
            render_findings(&profile_findings(&meta)),
            "blocking/cryptographic_safety: key material export is enabled; \
             blocking/cryptographic_safety: plaintext backup is enabled; \
             blocking/api_server_availability: key deletion is allowed"
        );
        let mut meta = safe();
        meta.key_type = "chacha20-poly1305".into();
        meta.min_encryption_version = 2;
        meta.supports_decryption = false;
        let messages: Vec<_> = profile_findings(&meta).iter().map(|f| f.message).collect();
        assert_eq!(
            messages,
            [
                "key type is not aes256-gcm96",
                "minimum encryption version blocks latest version",
                "key does not support decryption"
            ]
        );
        let mut meta = safe();
        meta.latest_version = 0;
        meta.soft_deleted = true;
        // latest 0, soft-deleted, min_decryption 1 > 0, and no entry for version 0.
        assert_eq!(profile_findings(&meta).len(), 4);
    }

    #[test]
    fn settings_and_identity_are_told_apart() {
        let settings: Vec<fn(&mut KeyMetadata)> = vec![
            |m| m.exportable = true,
            |m| m.allow_plaintext_backup = true,
            |m| m.deletion_allowed = true,
            |m| m.min_encryption_version = 2,
            |m| m.min_decryption_version = 2,
        ];
        let identity: Vec<fn(&mut KeyMetadata)> = vec![
            |m| m.key_type = "chacha20-poly1305".into(),
            |m| m.derived = true,
            |m| m.convergent_encryption = true,
            |m| m.soft_deleted = true,
            |m| m.supports_encryption = false,
            |m| m.supports_decryption = false,
            |m| m.latest_version = 0,
            |m| m.latest_version = 3,
            |m| m.min_available_version = 3,
            |m| m.min_available_version = -1,
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
        for (i, mutate) in settings.iter().enumerate() {
            let mut meta = safe();
            mutate(&mut meta);
            assert!(identity_findings(&meta).is_empty(), "setting {i}");
            assert_eq!(setting_findings(&meta).len(), 1, "setting {i}");
        }
        for (i, mutate) in identity.iter().enumerate() {
            let mut meta = safe();
            mutate(&mut meta);
            assert!(!identity_findings(&meta).is_empty(), "identity {i}");
        }
    }
}
