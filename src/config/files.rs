//! Host filesystem checks for `serve` and `doctor` (spec config §1.4).
//!
//! The provider reads credentials and trust anchors from files and exposes a
//! socket the apiserver trusts. A file an unprivileged user can swap (symlink,
//! writable) or read (JWT, PIN, client secret) would undo that, so each input
//! is checked with `lstat` (never following links) against a permission mask.
//! These checks look at the host as it is now and so are only run on request.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::error::Problem;
use super::raw::RawConfig;
use super::rules::parent_dir;

/// The config file: no group write, nothing for others.
pub const CONFIG_FILE_MASK: u32 = 0o037;
/// CA bundles may be world-readable but not writable by anyone but the owner.
pub const CA_FILE_MASK: u32 = 0o022;
/// JWTs, client certificate chains and PINs: no group write, nothing for others.
pub const SECRET_FILE_MASK: u32 = 0o037;
/// The OAuth client secret additionally must not be owner-executable.
pub const CLIENT_SECRET_FILE_MASK: u32 = 0o137;
/// The socket directory must not let others plant or replace the socket.
pub const SOCKET_DIR_MASK: u32 = 0o022;

/// Checks that `path` is an absolute, non-symlink regular file whose
/// permission bits share nothing with `mask`. Empty paths are skipped: a
/// required path that is empty is reported by validation.
pub fn check_regular_file(field: &str, path: &Path, mask: u32, problems: &mut Vec<Problem>) {
    if path.as_os_str().is_empty() {
        return;
    }
    if !path.is_absolute() {
        problems.push(Problem::new(field, "must be an absolute path"));
        return;
    }
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(_) => {
            problems.push(Problem::new(field, "must exist and be readable"));
            return;
        }
    };
    let file_type = meta.file_type();
    let message = if file_type.is_symlink() {
        "must not be a symlink".to_owned()
    } else if !file_type.is_file() {
        "must be a regular file".to_owned()
    } else if meta.mode() & 0o777 & mask != 0 {
        format!("file permissions unsafe: mode must not include {mask:04o}")
    } else {
        return;
    };
    problems.push(Problem::new(field, message));
}

/// Checks the socket's parent directory and any existing socket file, both
/// reported on `server.socketPath`.
pub fn check_socket_path(socket_path: &Path, problems: &mut Vec<Problem>) {
    const FIELD: &str = "server.socketPath";
    let Some(text) = socket_path.to_str() else {
        problems.push(Problem::new(FIELD, "must be valid UTF-8"));
        return;
    };
    let parent = parent_dir(text);
    let parent_problem = match fs::symlink_metadata(&parent) {
        Err(_) => Some("parent directory must exist"),
        Ok(meta) if meta.file_type().is_symlink() => Some("parent directory must not be a symlink"),
        Ok(meta) if !meta.is_dir() => Some("parent path must be a directory"),
        Ok(meta) if meta.mode() & 0o777 & SOCKET_DIR_MASK != 0 => {
            Some("parent directory must not be group-writable or world-writable")
        }
        Ok(_) => None,
    };
    if let Some(message) = parent_problem {
        problems.push(Problem::new(FIELD, message));
    }
    // A missing socket is normal (serve creates it); a stale socket is
    // replaced by serve; anything else at that path is refused.
    let target_problem = match fs::symlink_metadata(socket_path) {
        Err(err) if err.kind() == ErrorKind::NotFound => None,
        Err(_) => Some("cannot inspect socket path"),
        Ok(meta) if meta.file_type().is_symlink() => Some("socket path must not be a symlink"),
        Ok(meta) if !meta.file_type().is_socket() => Some("existing path must be a Unix socket"),
        Ok(_) => None,
    };
    if let Some(message) = target_problem {
        problems.push(Problem::new(FIELD, message));
    }
}

/// Runs every filesystem check that applies to this configuration.
///
/// Relative paths inside the config are skipped here because validation has
/// already reported them; the config file path itself is checked as given.
pub(crate) fn check_all(raw: &RawConfig, config_file: &Path) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_regular_file("config", config_file, CONFIG_FILE_MASK, &mut problems);
    let mut file = |field: &str, value: &str, mask: u32| {
        if value.starts_with('/') {
            check_regular_file(field, Path::new(value), mask, &mut problems);
        }
    };
    file(
        "openbao.caCertFile",
        &raw.openbao.ca_cert_file,
        CA_FILE_MASK,
    );
    match raw.auth.method.as_str() {
        "jwt" => match raw.auth.jwt.source.as_str() {
            "file" => file("auth.jwt.jwtFile", &raw.auth.jwt.jwt_file, SECRET_FILE_MASK),
            "oauth2" => {
                let o = &raw.auth.jwt.oauth2;
                file(
                    "auth.jwt.oauth2.clientSecretFile",
                    &o.client_secret_file,
                    CLIENT_SECRET_FILE_MASK,
                );
                file("auth.jwt.oauth2.caCertFile", &o.ca_cert_file, CA_FILE_MASK);
            }
            _ => {}
        },
        "cert" if raw.auth.cert.source == "pkcs11" => {
            let p = &raw.auth.cert.pkcs11;
            file(
                "auth.cert.pkcs11.certificateFile",
                &p.certificate_file,
                SECRET_FILE_MASK,
            );
            file("auth.cert.pkcs11.pinFile", &p.pin_file, SECRET_FILE_MASK);
        }
        _ => {}
    }
    let socket = &raw.server.socket_path;
    if socket.starts_with('/') {
        check_socket_path(Path::new(socket), &mut problems);
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::os::unix::net::UnixListener;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(mode: u32) -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("bao-kms-config-files-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
            Self(dir)
        }

        fn file(&self, name: &str, mode: u32) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, b"content").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn check(path: &Path, mask: u32) -> Vec<Problem> {
        let mut problems = Vec::new();
        check_regular_file("f", path, mask, &mut problems);
        problems
    }

    fn messages(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.message.as_str()).collect()
    }

    #[test]
    fn regular_file_masks() {
        let dir = TempDir::new(0o700);
        for (mode, mask, want) in [
            (0o640, CONFIG_FILE_MASK, None),
            (0o600, CONFIG_FILE_MASK, None),
            (0o644, CONFIG_FILE_MASK, Some("0037")),
            (0o660, CONFIG_FILE_MASK, Some("0037")),
            (0o644, CA_FILE_MASK, None),
            (0o664, CA_FILE_MASK, Some("0022")),
            (0o646, CA_FILE_MASK, Some("0022")),
            (0o640, CLIENT_SECRET_FILE_MASK, None),
            (0o440, CLIENT_SECRET_FILE_MASK, None),
            (0o740, CLIENT_SECRET_FILE_MASK, Some("0137")),
            (0o700, SECRET_FILE_MASK, None),
            (0o641, SECRET_FILE_MASK, Some("0037")),
        ] {
            let path = dir.file(&format!("f{mode:o}-{mask:o}"), mode);
            let got = check(&path, mask);
            match want {
                None => assert!(got.is_empty(), "{mode:o} {mask:o}: {got:?}"),
                Some(octal) => assert_eq!(
                    messages(&got),
                    vec![format!(
                        "file permissions unsafe: mode must not include {octal}"
                    )],
                    "{mode:o} {mask:o}"
                ),
            }
        }
    }

    #[test]
    fn setuid_bits_are_not_permission_bits() {
        let dir = TempDir::new(0o700);
        let path = dir.file("suid", 0o4640);
        assert!(check(&path, CONFIG_FILE_MASK).is_empty());
    }

    #[test]
    fn missing_symlink_directory_relative() {
        let dir = TempDir::new(0o700);
        let target = dir.file("target", 0o600);
        let link = dir.0.join("link");
        symlink(&target, &link).unwrap();
        assert_eq!(
            messages(&check(&dir.0.join("absent"), SECRET_FILE_MASK)),
            vec!["must exist and be readable"]
        );
        assert_eq!(
            messages(&check(&link, SECRET_FILE_MASK)),
            vec!["must not be a symlink"]
        );
        assert_eq!(
            messages(&check(&dir.0, SECRET_FILE_MASK)),
            vec!["must be a regular file"]
        );
        assert_eq!(
            messages(&check(Path::new("relative/file"), SECRET_FILE_MASK)),
            vec!["must be an absolute path"]
        );
        assert!(check(Path::new(""), SECRET_FILE_MASK).is_empty());
    }

    fn socket_check(path: &Path) -> Vec<String> {
        let mut problems = Vec::new();
        check_socket_path(path, &mut problems);
        problems.into_iter().map(|p| p.message).collect()
    }

    #[test]
    fn socket_parent_directory() {
        let good = TempDir::new(0o750);
        assert!(socket_check(&good.0.join("kms.sock")).is_empty());

        let group_writable = TempDir::new(0o770);
        assert_eq!(
            socket_check(&group_writable.0.join("kms.sock")),
            vec!["parent directory must not be group-writable or world-writable"]
        );
        let world_writable = TempDir::new(0o757);
        assert_eq!(
            socket_check(&world_writable.0.join("kms.sock")),
            vec!["parent directory must not be group-writable or world-writable"]
        );

        assert_eq!(
            socket_check(&good.0.join("absent").join("kms.sock")),
            vec!["parent directory must exist"]
        );
        let link = good.0.join("dirlink");
        symlink(&good.0, &link).unwrap();
        assert_eq!(
            socket_check(&link.join("kms.sock")),
            vec!["parent directory must not be a symlink"]
        );
        let file = good.file("plain", 0o600);
        assert_eq!(
            socket_check(&file.join("kms.sock")),
            vec![
                "parent path must be a directory",
                "cannot inspect socket path"
            ]
        );
    }

    #[test]
    fn socket_target() {
        let dir = TempDir::new(0o750);
        let socket = dir.0.join("kms.sock");
        let _listener = UnixListener::bind(&socket).unwrap();
        assert!(socket_check(&socket).is_empty());

        let regular = dir.file("regular.sock", 0o600);
        assert_eq!(
            socket_check(&regular),
            vec!["existing path must be a Unix socket"]
        );
        let link = dir.0.join("link.sock");
        symlink(&socket, &link).unwrap();
        assert_eq!(
            socket_check(&link),
            vec!["socket path must not be a symlink"]
        );
        let subdir = dir.0.join("sub.sock");
        fs::create_dir(&subdir).unwrap();
        assert_eq!(
            socket_check(&subdir),
            vec!["existing path must be a Unix socket"]
        );
    }
}
