//! The least-privilege capability check (spec config §5.3): the token must
//! be able to read metadata, encrypt and decrypt, and must not be able to
//! manage, export, back up, restore, rewrap or reconfigure the key.

use crate::openbao::Capabilities;

/// The twelve paths asked about, for mount `M` and key `K`.
#[derive(Debug, Clone)]
pub struct CapabilityPaths {
    pub metadata: String,
    pub encrypt: String,
    pub decrypt: String,
    pub rotate: String,
    pub export: String,
    pub backup: String,
    pub key_config: String,
    pub mount_config: String,
    pub trim: String,
    pub restore: String,
    pub restore_key: String,
    pub rewrap: String,
}

impl CapabilityPaths {
    pub fn new(mount: &str, key: &str) -> Self {
        Self {
            metadata: format!("{mount}/keys/{key}"),
            encrypt: format!("{mount}/encrypt/{key}"),
            decrypt: format!("{mount}/decrypt/{key}"),
            rotate: format!("{mount}/keys/{key}/rotate"),
            export: format!("{mount}/export/encryption-key/{key}"),
            backup: format!("{mount}/backup/{key}"),
            key_config: format!("{mount}/keys/{key}/config"),
            mount_config: format!("{mount}/config/keys"),
            trim: format!("{mount}/keys/{key}/trim"),
            restore: format!("{mount}/restore"),
            restore_key: format!("{mount}/restore/{key}"),
            rewrap: format!("{mount}/rewrap/{key}"),
        }
    }

    /// All twelve, in the reference's order, for the request body.
    pub fn all(&self) -> Vec<String> {
        [
            &self.metadata,
            &self.encrypt,
            &self.decrypt,
            &self.rotate,
            &self.export,
            &self.backup,
            &self.key_config,
            &self.mount_config,
            &self.trim,
            &self.restore,
            &self.restore_key,
            &self.rewrap,
        ]
        .into_iter()
        .cloned()
        .collect()
    }
}

const WRITE_LIKE: [&str; 5] = ["create", "update", "delete", "sudo", "root"];
const READ_OR_WRITE: [&str; 6] = ["create", "read", "update", "delete", "sudo", "root"];

/// Runs the §5.3 algorithm; `Err` carries the reference's failure message.
pub fn check_capabilities(
    paths: &CapabilityPaths,
    caps: &Capabilities,
) -> Result<(), &'static str> {
    let of = |path: &String| caps.get(path).map(Vec::as_slice).unwrap_or_default();
    let has_any =
        |path: &String, wanted: &[&str]| of(path).iter().any(|c| wanted.contains(&c.as_str()));
    if paths.all().iter().any(|p| of(p).is_empty()) {
        return Err("capability response is incomplete");
    }
    let management = [
        &paths.metadata,
        &paths.key_config,
        &paths.mount_config,
        &paths.rotate,
        &paths.trim,
        &paths.restore,
        &paths.restore_key,
        &paths.rewrap,
    ];
    let unsafe_grant = management.iter().any(|p| has_any(p, &WRITE_LIKE))
        || [&paths.export, &paths.backup]
            .iter()
            .any(|p| has_any(p, &READ_OR_WRITE))
        || has_any(&paths.encrypt, &["create", "sudo", "root"])
        || has_any(&paths.decrypt, &["sudo", "root"]);
    if unsafe_grant {
        return Err("token can perform non-hot-path key management");
    }
    if !has_any(&paths.metadata, &["read"]) {
        return Err("metadata read capability is missing");
    }
    if !has_any(&paths.encrypt, &["update"]) {
        return Err("encrypt update capability is missing");
    }
    if !has_any(&paths.decrypt, &["update"]) {
        return Err("decrypt update capability is missing");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn least_privilege(paths: &CapabilityPaths) -> Capabilities {
        let mut caps: Capabilities = paths
            .all()
            .into_iter()
            .map(|p| (p, vec!["deny".to_owned()]))
            .collect();
        caps.insert(paths.metadata.clone(), vec!["read".into()]);
        caps.insert(paths.encrypt.clone(), vec!["update".into()]);
        caps.insert(paths.decrypt.clone(), vec!["update".into()]);
        caps.insert(paths.mount_config.clone(), vec!["read".into()]);
        caps
    }

    #[test]
    fn the_six_path_policy_passes() {
        let paths = CapabilityPaths::new("transit", "k");
        assert_eq!(paths.all().len(), 12);
        assert_eq!(check_capabilities(&paths, &least_privilege(&paths)), Ok(()));
    }

    #[test]
    fn each_rule_fails_with_its_message() {
        let paths = CapabilityPaths::new("transit", "k");
        let mutated = |path: &String, caps: &[&str]| {
            let mut c = least_privilege(&paths);
            c.insert(path.clone(), caps.iter().map(|s| (*s).to_owned()).collect());
            check_capabilities(&paths, &c)
        };
        let unsafe_message = Err("token can perform non-hot-path key management");
        assert_eq!(
            mutated(&paths.rewrap, &[]),
            Err("capability response is incomplete")
        );
        assert_eq!(mutated(&paths.rotate, &["update"]), unsafe_message);
        assert_eq!(
            mutated(&paths.metadata, &["read", "update"]),
            unsafe_message
        );
        assert_eq!(mutated(&paths.mount_config, &["update"]), unsafe_message);
        assert_eq!(mutated(&paths.export, &["read"]), unsafe_message);
        assert_eq!(mutated(&paths.backup, &["read"]), unsafe_message);
        assert_eq!(
            mutated(&paths.encrypt, &["create", "update"]),
            unsafe_message
        );
        assert_eq!(mutated(&paths.decrypt, &["update", "sudo"]), unsafe_message);
        assert_eq!(mutated(&paths.restore_key, &["root"]), unsafe_message);
        assert_eq!(
            mutated(&paths.metadata, &["deny"]),
            Err("metadata read capability is missing")
        );
        assert_eq!(
            mutated(&paths.encrypt, &["deny"]),
            Err("encrypt update capability is missing")
        );
        assert_eq!(
            mutated(&paths.decrypt, &["read"]),
            Err("decrypt update capability is missing")
        );
        // Reading rotate or the key config is harmless.
        assert_eq!(mutated(&paths.rotate, &["read"]), Ok(()));
    }
}
