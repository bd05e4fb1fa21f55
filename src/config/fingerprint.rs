//! The `cfg1.` configuration identity fingerprint (spec config §1.6, core §5.3).
//!
//! The state file records this fingerprint so that pointing existing state at a
//! different identity (provider, cluster, OpenBao instance or namespace, mount
//! id, lineage, or the raw Transit mount path and key name) fails closed. The
//! bytes hashed must equal what Go's `encoding/json` produces for the same
//! struct, so the JSON is written by hand with Go's escaping rules.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest::{SHA256, digest};

use super::error::{ConfigError, Problem};
use crate::identity::go_json_string;

/// Domain separator hashed as the first member.
pub const FINGERPRINT_DOMAIN: &str = "openbao-kubernetes-kms/config-identity/v1";

/// Prefix of every fingerprint; it versions the algorithm.
pub const FINGERPRINT_PREFIX: &str = "cfg1.";

/// The identity-bearing configuration fields, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct IdentityFields<'a> {
    pub provider_name: &'a str,
    pub cluster_id: &'a str,
    pub openbao_instance_id: &'a str,
    /// Empty for the root namespace; then omitted from the hashed JSON.
    pub openbao_namespace: &'a str,
    pub transit_mount_id: &'a str,
    pub key_lineage_id: &'a str,
    pub transit_mount_path: &'a str,
    pub transit_key_name: &'a str,
}

impl IdentityFields<'_> {
    /// The canonical JSON: compact, members in the reference's struct order,
    /// `openbao_namespace` omitted when empty (Go `omitempty`).
    pub fn canonical_json(&self) -> String {
        let mut members: Vec<(&str, &str)> = vec![
            ("domain", FINGERPRINT_DOMAIN),
            ("provider_name", self.provider_name),
            ("cluster_id", self.cluster_id),
            ("openbao_instance_id", self.openbao_instance_id),
        ];
        if !self.openbao_namespace.is_empty() {
            members.push(("openbao_namespace", self.openbao_namespace));
        }
        members.extend([
            ("transit_mount_id", self.transit_mount_id),
            ("key_lineage_id", self.key_lineage_id),
            ("transit_mount_path", self.transit_mount_path),
            ("transit_key_name", self.transit_key_name),
        ]);
        let body: Vec<String> = members
            .iter()
            .map(|(name, value)| format!("{}:{}", go_json_string(name), go_json_string(value)))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// Fields that must be non-blank before a fingerprint means anything, in
    /// the reference's reporting order.
    fn required(&self) -> [(&'static str, &str); 7] {
        [
            ("transit.keyIdScope.providerName", self.provider_name),
            ("transit.keyIdScope.clusterId", self.cluster_id),
            ("openbao.instanceId", self.openbao_instance_id),
            ("transit.keyIdScope.transitMountId", self.transit_mount_id),
            ("transit.keyIdScope.keyLineageId", self.key_lineage_id),
            ("transit.mountPath", self.transit_mount_path),
            ("transit.keyName", self.transit_key_name),
        ]
    }
}

/// Computes the fingerprint without checking that the fields are set; for
/// configurations that already passed validation.
pub fn identity_fingerprint(fields: &IdentityFields<'_>) -> String {
    let sum = digest(&SHA256, fields.canonical_json().as_bytes());
    format!(
        "{FINGERPRINT_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(sum.as_ref())
    )
}

/// Computes the fingerprint for possibly partial input (such as `init` values),
/// refusing when any identity field is blank, as the reference does.
pub fn checked_identity_fingerprint(fields: &IdentityFields<'_>) -> Result<String, ConfigError> {
    let problems: Vec<Problem> = fields
        .required()
        .iter()
        .filter(|(_, value)| value.trim().is_empty())
        .map(|(field, _)| Problem::new(*field, "is required"))
        .collect();
    if problems.is_empty() {
        Ok(identity_fingerprint(fields))
    } else {
        Err(ConfigError { problems })
    }
}

#[cfg(test)]
mod tests {
    use super::{IdentityFields, checked_identity_fingerprint, identity_fingerprint};

    fn golden() -> IdentityFields<'static> {
        IdentityFields {
            provider_name: "openbao-kms-workload-a",
            cluster_id: "workload-a",
            openbao_instance_id: "bao-prod-a",
            openbao_namespace: "",
            transit_mount_id: "transit-prod-primary",
            key_lineage_id: "01HXEXAMPLEKEYLINEAGEID",
            transit_mount_path: "transit",
            transit_key_name: "k8s-workload-a-etcd",
        }
    }

    #[test]
    fn golden_fingerprint() {
        assert_eq!(
            identity_fingerprint(&golden()),
            "cfg1.iWfCItBef04qDNcnEXME76HSYDWTVfhtoTlg2YQpdPg"
        );
    }

    #[test]
    fn canonical_json_order_and_omitempty() {
        assert_eq!(
            golden().canonical_json(),
            concat!(
                r#"{"domain":"openbao-kubernetes-kms/config-identity/v1","#,
                r#""provider_name":"openbao-kms-workload-a","cluster_id":"workload-a","#,
                r#""openbao_instance_id":"bao-prod-a","transit_mount_id":"transit-prod-primary","#,
                r#""key_lineage_id":"01HXEXAMPLEKEYLINEAGEID","transit_mount_path":"transit","#,
                r#""transit_key_name":"k8s-workload-a-etcd"}"#
            )
        );
        let with_ns = IdentityFields {
            openbao_namespace: "admin/workload-a",
            ..golden()
        };
        let json = with_ns.canonical_json();
        assert!(json.contains(
            r#""openbao_instance_id":"bao-prod-a","openbao_namespace":"admin/workload-a","transit_mount_id""#
        ));
        assert_ne!(
            identity_fingerprint(&with_ns),
            identity_fingerprint(&golden())
        );
    }

    #[test]
    fn fingerprint_shape() {
        let fp = identity_fingerprint(&golden());
        let body = fp.strip_prefix("cfg1.").unwrap();
        assert_eq!(body.len(), 43);
        assert!(
            body.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn checked_fingerprint_requires_identity() {
        let partial = IdentityFields {
            key_lineage_id: " ",
            transit_key_name: "",
            ..golden()
        };
        let err = checked_identity_fingerprint(&partial).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config invalid; transit.keyIdScope.keyLineageId: is required; transit.keyName: is required"
        );
        assert_eq!(
            checked_identity_fingerprint(&golden()).unwrap(),
            identity_fingerprint(&golden())
        );
    }
}
