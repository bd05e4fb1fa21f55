//! KMS annotations: built on Encrypt, strictly parsed and cross-checked on Decrypt.
//!
//! Annotations are stored in etcd in clear next to the wrapped seed, so they
//! carry only hashes and versions. On Decrypt they never select a key: they are
//! checked against the snapshot the key_id already selected.

use super::hash::{hash_value, is_hash_shaped};
use super::snapshot::KeySnapshot;
use std::collections::BTreeMap;
use std::fmt;

pub const PROVIDER_KEY: &str = "provider.kms.openbao.org";
pub const KEY_ID_HASH_KEY: &str = "key-id-hash.kms.openbao.org";
pub const KEY_VERSION_KEY: &str = "transit-key-version.kms.openbao.org";
pub const MOUNT_HASH_KEY: &str = "transit-mount-hash.kms.openbao.org";
pub const LINEAGE_HASH_KEY: &str = "transit-key-hash.kms.openbao.org";
pub const NAMESPACE_HASH_KEY: &str = "openbao-namespace-hash.kms.openbao.org";
pub const PLUGIN_VERSION_KEY: &str = "plugin-version.kms.openbao.org";
pub const AAD_VERSION_KEY: &str = "aad-version.kms.openbao.org";

pub const PROVIDER_VALUE: &str = "openbao-transit";
pub const AAD_VERSION_VALUE: &str = "v1";

/// The annotation map as carried by the KMS v2 protobuf messages.
pub type Annotations = BTreeMap<String, Vec<u8>>;

/// The build version written into `plugin-version.kms.openbao.org`.
pub fn plugin_version() -> &'static str {
    concat!("v", env!("CARGO_PKG_VERSION"))
}

/// Why a Decrypt request's annotations were refused. Never carries values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationError {
    /// Structurally invalid: missing, malformed or non-FQDN keys, bad values.
    Invalid,
    /// Well-formed but bound to a different key snapshot.
    Mismatch,
}

impl fmt::Display for AnnotationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Invalid => "annotations invalid",
            Self::Mismatch => "annotations do not match key snapshot",
        })
    }
}

impl std::error::Error for AnnotationError {}

/// Annotation values after structural validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAnnotations {
    pub key_version: u64,
    pub key_id_hash: String,
    pub mount_hash: String,
    pub lineage_hash: String,
    pub namespace_hash: Option<String>,
}

/// Builds the annotations Encrypt returns for `snapshot`.
pub fn build_annotations(snapshot: &KeySnapshot) -> Annotations {
    let scope = &snapshot.scope;
    let mut map = Annotations::new();
    let mut put = |k: &str, v: String| {
        map.insert(k.to_owned(), v.into_bytes());
    };
    put(PROVIDER_KEY, PROVIDER_VALUE.to_owned());
    put(KEY_ID_HASH_KEY, hash_value(snapshot.key_id.as_str()));
    put(KEY_VERSION_KEY, snapshot.transit_version.to_string());
    put(MOUNT_HASH_KEY, hash_value(&scope.transit_mount_id));
    put(LINEAGE_HASH_KEY, hash_value(&scope.transit_key_lineage_id));
    if !scope.openbao_namespace.is_empty() {
        put(NAMESPACE_HASH_KEY, hash_value(&scope.openbao_namespace));
    }
    put(PLUGIN_VERSION_KEY, plugin_version().to_owned());
    put(AAD_VERSION_KEY, AAD_VERSION_VALUE.to_owned());
    map
}

/// Kubernetes' `IsFullyQualifiedDomainName` shape, stricter on case: lower-case
/// RFC 1123 labels, at least two of them, no `/`.
fn is_fqdn(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key.contains('.')
        && key.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Canonical positive decimal only: no sign, no leading zeros.
fn parse_version(value: &str) -> Option<u64> {
    let canonical =
        !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) && !value.starts_with('0');
    if canonical { value.parse().ok() } else { None }
}

/// Structural validation of a Decrypt request's annotations.
pub fn parse_annotations(map: &Annotations) -> Result<ParsedAnnotations, AnnotationError> {
    if map.is_empty() || !map.keys().all(|k| is_fqdn(k)) {
        return Err(AnnotationError::Invalid);
    }
    let get = |key: &str| -> Result<&str, AnnotationError> {
        match map.get(key).map(|v| std::str::from_utf8(v)) {
            Some(Ok(v)) if !v.is_empty() => Ok(v),
            _ => Err(AnnotationError::Invalid),
        }
    };
    let hash = |key: &str| -> Result<String, AnnotationError> {
        let v = get(key)?;
        if is_hash_shaped(v) {
            Ok(v.to_owned())
        } else {
            Err(AnnotationError::Invalid)
        }
    };
    if get(PROVIDER_KEY)? != PROVIDER_VALUE || get(AAD_VERSION_KEY)? != AAD_VERSION_VALUE {
        return Err(AnnotationError::Invalid);
    }
    // Any non-empty plugin version is accepted: objects written by older builds
    // must stay decryptable.
    get(PLUGIN_VERSION_KEY)?;
    let key_version = parse_version(get(KEY_VERSION_KEY)?).ok_or(AnnotationError::Invalid)?;
    let namespace_hash = if map.contains_key(NAMESPACE_HASH_KEY) {
        Some(hash(NAMESPACE_HASH_KEY)?)
    } else {
        None
    };
    Ok(ParsedAnnotations {
        key_version,
        key_id_hash: hash(KEY_ID_HASH_KEY)?,
        mount_hash: hash(MOUNT_HASH_KEY)?,
        lineage_hash: hash(LINEAGE_HASH_KEY)?,
        namespace_hash,
    })
}

/// Cross-checks parsed annotations against the snapshot selected by key_id.
pub fn check_against_snapshot(
    parsed: &ParsedAnnotations,
    snapshot: &KeySnapshot,
) -> Result<(), AnnotationError> {
    let scope = &snapshot.scope;
    let namespace_ok = match (&parsed.namespace_hash, scope.openbao_namespace.as_str()) {
        (None, "") => true,
        (Some(h), ns) if !ns.is_empty() => *h == hash_value(ns),
        _ => false,
    };
    let matches = parsed.key_version == snapshot.transit_version
        && parsed.key_id_hash == hash_value(snapshot.key_id.as_str())
        && parsed.mount_hash == hash_value(&scope.transit_mount_id)
        && parsed.lineage_hash == hash_value(&scope.transit_key_lineage_id)
        && namespace_ok;
    if matches {
        Ok(())
    } else {
        Err(AnnotationError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::key_id::tests::golden_scope;
    use crate::identity::{KeySnapshot, SnapshotState};
    use std::sync::Arc;

    fn snapshot(namespace: &str) -> KeySnapshot {
        KeySnapshot::new(
            Arc::new(golden_scope(namespace)),
            3,
            1715803200,
            SnapshotState::Active,
        )
        .unwrap()
    }

    fn text(map: &Annotations, key: &str) -> String {
        String::from_utf8(map[key].clone()).unwrap()
    }

    #[test]
    fn golden_annotations() {
        let map = build_annotations(&snapshot(""));
        assert_eq!(map.len(), 7);
        assert_eq!(
            text(&map, KEY_ID_HASH_KEY),
            "qCXYChOIPSWs7scJIduEDiNOYvEUJtFS1Rsbz1eAWY4"
        );
        assert_eq!(
            text(&map, MOUNT_HASH_KEY),
            "rXiCr_lOjsbykm0mDHAvUcVxQl_XcVnT61MesgcPnzc"
        );
        assert_eq!(
            text(&map, LINEAGE_HASH_KEY),
            "SwWS38Td_yyFNHaECzzHQP3CHFg60mklwtqYUwkx_IA"
        );
        assert_eq!(text(&map, KEY_VERSION_KEY), "3");
        assert_eq!(text(&map, PROVIDER_KEY), "openbao-transit");
        assert_eq!(text(&map, AAD_VERSION_KEY), "v1");
        assert!(map.keys().all(|k| is_fqdn(k)));
        let parsed = parse_annotations(&map).unwrap();
        assert_eq!(check_against_snapshot(&parsed, &snapshot("")), Ok(()));
    }

    #[test]
    fn namespace_annotation_round_trips_and_is_bound() {
        let with_ns = snapshot("admin/workload-a");
        let map = build_annotations(&with_ns);
        assert_eq!(map.len(), 8);
        let parsed = parse_annotations(&map).unwrap();
        assert_eq!(check_against_snapshot(&parsed, &with_ns), Ok(()));
        // Present where the snapshot has none, or absent where it has one: mismatch.
        assert_eq!(
            check_against_snapshot(&parsed, &snapshot("")),
            Err(AnnotationError::Mismatch)
        );
        let plain = parse_annotations(&build_annotations(&snapshot(""))).unwrap();
        assert_eq!(
            check_against_snapshot(&plain, &with_ns),
            Err(AnnotationError::Mismatch)
        );
    }

    type Mutation = Box<dyn Fn(&mut Annotations)>;

    #[test]
    fn structural_attacks_are_invalid() {
        let good = build_annotations(&snapshot(""));
        let cases: Vec<Mutation> = vec![
            Box::new(|m| m.clear()),
            Box::new(|m| {
                m.remove(PROVIDER_KEY);
            }),
            Box::new(|m| {
                m.insert(PROVIDER_KEY.into(), b"other".to_vec());
            }),
            Box::new(|m| {
                m.insert(AAD_VERSION_KEY.into(), b"v2".to_vec());
            }),
            Box::new(|m| {
                m.insert(PLUGIN_VERSION_KEY.into(), Vec::new());
            }),
            Box::new(|m| {
                m.insert(KEY_VERSION_KEY.into(), b"+3".to_vec());
            }),
            Box::new(|m| {
                m.insert(KEY_VERSION_KEY.into(), b"03".to_vec());
            }),
            Box::new(|m| {
                m.insert(KEY_VERSION_KEY.into(), b"0".to_vec());
            }),
            Box::new(|m| {
                m.insert(KEY_VERSION_KEY.into(), b"99999999999999999999999".to_vec());
            }),
            Box::new(|m| {
                m.insert(MOUNT_HASH_KEY.into(), b"short".to_vec());
            }),
            Box::new(|m| {
                m.insert(KEY_ID_HASH_KEY.into(), vec![0xff, 0xfe]);
            }),
            Box::new(|m| {
                m.insert("kms.openbao.org/provider".into(), b"x".to_vec());
            }),
            Box::new(|m| {
                m.insert("Upper.example.org".into(), b"x".to_vec());
            }),
            Box::new(|m| {
                m.insert("nodot".into(), b"x".to_vec());
            }),
            Box::new(|m| {
                m.insert("-bad.example.org".into(), b"x".to_vec());
            }),
            Box::new(|m| {
                m.insert(NAMESPACE_HASH_KEY.into(), b"x".to_vec());
            }),
        ];
        for (i, mutate) in cases.iter().enumerate() {
            let mut map = good.clone();
            mutate(&mut map);
            assert_eq!(
                parse_annotations(&map),
                Err(AnnotationError::Invalid),
                "case {i}"
            );
        }
        // Unknown extra FQDN keys are tolerated, and any plugin version is accepted.
        let mut extra = good.clone();
        extra.insert("audit.example.org".into(), b"x".to_vec());
        extra.insert(PLUGIN_VERSION_KEY.into(), b"v0.0.1-old".to_vec());
        assert!(parse_annotations(&extra).is_ok());
    }

    #[test]
    fn tampered_values_mismatch_the_snapshot() {
        let snap = snapshot("");
        let good = build_annotations(&snap);
        let other = hash_value("other");
        for key in [KEY_ID_HASH_KEY, MOUNT_HASH_KEY, LINEAGE_HASH_KEY] {
            let mut map = good.clone();
            map.insert(key.into(), other.clone().into_bytes());
            let parsed = parse_annotations(&map).unwrap();
            assert_eq!(
                check_against_snapshot(&parsed, &snap),
                Err(AnnotationError::Mismatch),
                "{key}"
            );
        }
        let mut map = good.clone();
        map.insert(KEY_VERSION_KEY.into(), b"999".to_vec());
        let parsed = parse_annotations(&map).unwrap();
        assert_eq!(
            check_against_snapshot(&parsed, &snap),
            Err(AnnotationError::Mismatch)
        );
    }
}
