//! Transit key profile findings (spec config §5.2), each with the impact the
//! reference reports. Every finding is blocking.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileFinding {
    pub impact: Impact,
    pub message: &'static str,
}

/// All findings for this metadata, in the reference's order; empty is safe.
pub fn profile_findings(meta: &KeyMetadata) -> Vec<ProfileFinding> {
    use Impact::{ApiServerAvailability as Availability, CryptographicSafety as Crypto};
    let latest = meta.latest_version;
    let rules: [(bool, Impact, &'static str); 13] = [
        (latest <= 0, Availability, "latest version is not positive"),
        (meta.soft_deleted, Availability, "key is soft-deleted"),
        (
            meta.min_available_version > latest,
            Availability,
            "minimum available version exceeds latest version",
        ),
        (
            meta.key_type != "aes256-gcm96",
            Crypto,
            "key type is not aes256-gcm96",
        ),
        (meta.exportable, Crypto, "key material export is enabled"),
        (
            meta.allow_plaintext_backup,
            Crypto,
            "plaintext backup is enabled",
        ),
        (
            meta.deletion_allowed,
            Availability,
            "key deletion is allowed",
        ),
        (meta.derived, Crypto, "derived key mode is enabled"),
        (
            meta.convergent_encryption,
            Crypto,
            "convergent encryption is enabled",
        ),
        (
            meta.min_encryption_version > 0 && meta.min_encryption_version > latest,
            Availability,
            "minimum encryption version blocks latest version",
        ),
        (
            meta.min_decryption_version > latest,
            Availability,
            "minimum decryption version exceeds latest version",
        ),
        (
            !meta.supports_encryption,
            Availability,
            "key does not support encryption",
        ),
        (
            !meta.supports_decryption,
            Availability,
            "key does not support decryption",
        ),
    ];
    rules
        .into_iter()
        .filter(|(hit, _, _)| *hit)
        .map(|(_, impact, message)| ProfileFinding { impact, message })
        .collect()
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
        assert_eq!(profile_findings(&meta).len(), 3);
    }
}
