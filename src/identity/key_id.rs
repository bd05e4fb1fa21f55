//! The KMS key_id: `obk2.` + base64url(SHA-256(scope parts, version, created-at)).
//!
//! Every part, including the last, is followed by a NUL byte; the reference's
//! golden vectors only match with that trailing NUL.

use super::snapshot::{Scope, ScopeError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;

const DOMAIN: &str = "openbao-kubernetes-kms/key-id/v1";
const PREFIX: &str = "obk2.";
/// Every valid key_id is exactly this long: `obk2.` + 43 base64url chars.
pub const KEY_ID_LEN: usize = 48;

/// A well-formed key_id. Constructed only by derivation or strict parsing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

/// Why a presented key_id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyIdError;

impl fmt::Display for KeyIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("key_id malformed")
    }
}

impl std::error::Error for KeyIdError {}

impl KeyId {
    /// Accepts only `obk2.` + 43 chars of raw base64url that decode to 32 bytes.
    pub fn parse(s: &str) -> Result<Self, KeyIdError> {
        let tail = s.strip_prefix(PREFIX).ok_or(KeyIdError)?;
        if s.len() != KEY_ID_LEN {
            return Err(KeyIdError);
        }
        match URL_SAFE_NO_PAD.decode(tail.as_bytes()) {
            Ok(bytes) if bytes.len() == 32 => Ok(Self(s.to_owned())),
            _ => Err(KeyIdError),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // key_ids are public by design (Kubernetes may log them), but our own
        // logs and metrics carry only the hash; Debug follows the same rule.
        write!(f, "KeyId(hash={})", super::hash_value(&self.0))
    }
}

/// Derives the key_id for one Transit version within `scope`.
pub fn derive_key_id(
    scope: &Scope,
    transit_version: u64,
    created_at_unix: i64,
) -> Result<KeyId, ScopeError> {
    scope.check()?;
    if transit_version == 0 {
        return Err(ScopeError::InvalidVersion);
    }
    if created_at_unix <= 0 {
        return Err(ScopeError::InvalidCreatedAt);
    }
    let version = transit_version.to_string();
    let created = created_at_unix.to_string();
    let mut parts: Vec<&str> = vec![
        DOMAIN,
        &scope.provider_name,
        &scope.cluster_id,
        &scope.openbao_instance_id,
    ];
    if !scope.openbao_namespace.is_empty() {
        parts.push(&scope.openbao_namespace);
    }
    parts.extend([
        scope.transit_mount_id.as_str(),
        scope.transit_key_lineage_id.as_str(),
        version.as_str(),
        created.as_str(),
    ]);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    Ok(KeyId(format!(
        "{PREFIX}{}",
        URL_SAFE_NO_PAD.encode(ctx.finish())
    )))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn golden_scope(namespace: &str) -> Scope {
        Scope {
            provider_name: "openbao-kms-workload-a".into(),
            cluster_id: "workload-a".into(),
            openbao_instance_id: "bao-prod-a".into(),
            openbao_namespace: namespace.into(),
            transit_mount_id: "transit-prod-primary".into(),
            transit_key_lineage_id: "01HXEXAMPLEKEYLINEAGEID".into(),
        }
    }

    #[test]
    fn golden_vectors() {
        let scope = golden_scope("");
        for (version, created, expected) in [
            (
                3,
                1715803200,
                "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk",
            ),
            (
                2,
                1700000120,
                "obk2.ImmpIXr3v4Fw4Im7457LAJiZdLOqK2dL6Nm3DEk-KEY",
            ),
            (
                1,
                1700000060,
                "obk2.SU0bKFnl1E6uEttJ3yhQy_uGBWZ6MUOJrNH4VJwtz0k",
            ),
        ] {
            let id = derive_key_id(&scope, version, created).unwrap();
            assert_eq!(id.as_str(), expected);
            assert_eq!(KeyId::parse(expected).unwrap(), id);
        }
    }

    #[test]
    fn namespace_vector() {
        let id = derive_key_id(&golden_scope("admin/workload-a"), 3, 1715803200).unwrap();
        assert_eq!(
            id.as_str(),
            "obk2.b3fTfWDr7h30L8wdr0uCJOzAF3nVfRJf5r_hBWywYik"
        );
    }

    #[test]
    fn rejects_bad_inputs() {
        let scope = golden_scope("");
        assert_eq!(derive_key_id(&scope, 0, 1), Err(ScopeError::InvalidVersion));
        assert_eq!(
            derive_key_id(&scope, 1, 0),
            Err(ScopeError::InvalidCreatedAt)
        );
        let mut empty = scope.clone();
        empty.cluster_id.clear();
        assert!(matches!(
            derive_key_id(&empty, 1, 1),
            Err(ScopeError::EmptyField(_))
        ));
    }

    #[test]
    fn parse_is_strict() {
        let good = "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk";
        for bad in [
            "",
            "obk2.",
            &good[..47],
            &format!("{good}A"),
            &good.replace("obk2.", "obk3."),
            &good.replace('_', "/"),
            &good.replace('i', "="),
            "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSl",
        ] {
            assert_eq!(KeyId::parse(bad), Err(KeyIdError), "{bad:?}");
        }
    }

    #[test]
    fn debug_shows_only_the_hash() {
        let good = "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk";
        let shown = format!("{:?}", KeyId::parse(good).unwrap());
        assert!(!shown.contains(good));
    }
}
