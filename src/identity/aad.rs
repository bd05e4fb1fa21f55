//! The canonical associated data bound into every Transit encrypt/decrypt.
//!
//! Compact JSON with a fixed member order, built by hand (not from a map) so the
//! bytes equal the Go reference's. Only `provider_name` is raw; everything else
//! topology-like is hashed.

use super::annotations::ParsedAnnotations;
use super::canonical::go_json_string;
use super::hash::hash_value;
use super::snapshot::KeySnapshot;

/// Fixed, non-KMS AAD for the deep health probe, so probe ciphertext can never
/// be replayed as a KMS ciphertext (and vice versa).
pub const DEEP_PROBE_AAD: &[u8] = b"openbao-kubernetes-kms/status-probe/v1";

/// Canonical AAD bytes for `snapshot`. On Decrypt, `parsed` must already have
/// passed `check_against_snapshot`, so the bytes equal those built on Encrypt.
pub fn canonical_aad(snapshot: &KeySnapshot, parsed: Option<&ParsedAnnotations>) -> Vec<u8> {
    let scope = &snapshot.scope;
    let key_id_hash = parsed.map_or_else(
        || hash_value(snapshot.key_id.as_str()),
        |p| p.key_id_hash.clone(),
    );
    let mount_hash = parsed.map_or_else(
        || hash_value(&scope.transit_mount_id),
        |p| p.mount_hash.clone(),
    );
    let lineage_hash = parsed.map_or_else(
        || hash_value(&scope.transit_key_lineage_id),
        |p| p.lineage_hash.clone(),
    );
    let namespace_hash = match parsed {
        Some(p) => p.namespace_hash.clone(),
        None if scope.openbao_namespace.is_empty() => None,
        None => Some(hash_value(&scope.openbao_namespace)),
    };
    let mut members: Vec<(&str, String)> = vec![
        ("aad_version", "v1".to_owned()),
        ("purpose", "kubernetes-etcd-kms-v2".to_owned()),
        ("provider", "openbao-transit".to_owned()),
        ("provider_name", scope.provider_name.clone()),
        ("cluster_id_hash", hash_value(&scope.cluster_id)),
        (
            "openbao_instance_hash",
            hash_value(&scope.openbao_instance_id),
        ),
    ];
    if let Some(ns) = namespace_hash {
        members.push(("openbao_namespace_hash", ns));
    }
    members.extend([
        ("transit_mount_hash", mount_hash),
        ("transit_key_hash", lineage_hash),
        ("key_id_hash", key_id_hash),
        ("key_version", snapshot.transit_version.to_string()),
    ]);
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{}", go_json_string(k), go_json_string(v)))
        .collect();
    format!("{{{}}}", body.join(",")).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::key_id::tests::golden_scope;
    use crate::identity::{SnapshotState, build_annotations, parse_annotations};
    use base64::Engine as _;
    use std::sync::Arc;

    const GOLDEN_AAD: &str = r#"{"aad_version":"v1","purpose":"kubernetes-etcd-kms-v2","provider":"openbao-transit","provider_name":"openbao-kms-workload-a","cluster_id_hash":"aJ87hdnMZbDZpJ86CnErao3FRzUhv5o8bqc5tCvFGyY","openbao_instance_hash":"D1mX5YANszQPDTOv6P3ATTTa_2Nc2_DQtRJO0ArNx1g","transit_mount_hash":"rXiCr_lOjsbykm0mDHAvUcVxQl_XcVnT61MesgcPnzc","transit_key_hash":"SwWS38Td_yyFNHaECzzHQP3CHFg60mklwtqYUwkx_IA","key_id_hash":"qCXYChOIPSWs7scJIduEDiNOYvEUJtFS1Rsbz1eAWY4","key_version":"3"}"#;
    const GOLDEN_TRANSIT_AAD: &str = "eyJhYWRfdmVyc2lvbiI6InYxIiwicHVycG9zZSI6Imt1YmVybmV0ZXMtZXRjZC1rbXMtdjIiLCJwcm92aWRlciI6Im9wZW5iYW8tdHJhbnNpdCIsInByb3ZpZGVyX25hbWUiOiJvcGVuYmFvLWttcy13b3JrbG9hZC1hIiwiY2x1c3Rlcl9pZF9oYXNoIjoiYUo4N2hkbk1aYkRacEo4NkNuRXJhbzNGUnpVaHY1bzhicWM1dEN2Rkd5WSIsIm9wZW5iYW9faW5zdGFuY2VfaGFzaCI6IkQxbVg1WUFOc3pRUERUT3Y2UDNBVFRUYV8yTmMyX0RRdFJKTzBBck54MWciLCJ0cmFuc2l0X21vdW50X2hhc2giOiJyWGlDcl9sT2pzYnlrbTBtREhBdlVjVnhRbF9YY1ZuVDYxTWVzZ2NQbnpjIiwidHJhbnNpdF9rZXlfaGFzaCI6IlN3V1MzOFRkX3l5Rk5IYUVDenpIUVAzQ0hGZzYwbWtsd3RxWVV3a3hfSUEiLCJrZXlfaWRfaGFzaCI6InFDWFlDaE9JUFNXczdzY0pJZHVFRGlOT1l2RVVKdEZTMVJzYnoxZUFXWTQiLCJrZXlfdmVyc2lvbiI6IjMifQ==";

    #[test]
    fn golden_aad_bytes_and_transit_encoding() {
        let snap = crate::identity::KeySnapshot::new(
            Arc::new(golden_scope("")),
            3,
            1715803200,
            SnapshotState::Active,
        )
        .unwrap();
        let aad = canonical_aad(&snap, None);
        assert_eq!(std::str::from_utf8(&aad).unwrap(), GOLDEN_AAD);
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(&aad),
            GOLDEN_TRANSIT_AAD
        );
        // Decrypt rebuilds the identical bytes from the verified annotations.
        let parsed = parse_annotations(&build_annotations(&snap)).unwrap();
        assert_eq!(canonical_aad(&snap, Some(&parsed)), aad);
    }

    #[test]
    fn namespace_hash_follows_the_instance_hash() {
        let snap = crate::identity::KeySnapshot::new(
            Arc::new(golden_scope("admin/workload-a")),
            3,
            1715803200,
            SnapshotState::Active,
        )
        .unwrap();
        let aad = String::from_utf8(canonical_aad(&snap, None)).unwrap();
        let instance = aad.find("openbao_instance_hash").unwrap();
        let namespace = aad.find("openbao_namespace_hash").unwrap();
        let mount = aad.find("transit_mount_hash").unwrap();
        assert!(instance < namespace && namespace < mount);
    }
}
