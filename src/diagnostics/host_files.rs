//! Host file ownership and modes against the hardening table of
//! `docs/deploy-systemd.md` (doctor's `host.files` check).
//!
//! Modes that `serve` refuses are already `config.validate` failures; this
//! check adds what only the host layout shows: who owns the files and
//! directories, and whether the socket directory will let the apiserver's
//! group in without letting it replace the socket.

use crate::rules::{DirFault, check_socket_dir_group, check_socket_dir_shape};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One finding; `blocking` ones make the check fail, the rest warn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub blocking: bool,
    pub message: String,
}

/// The paths to inspect, from the config.
pub struct HostPaths<'a> {
    pub config_file: &'a Path,
    pub secrets: Vec<(&'static str, &'a Path)>,
    pub state_dir: &'a Path,
    pub socket_dir: &'a Path,
    pub socket_gid: Option<u32>,
}

fn warn(message: String) -> Finding {
    Finding {
        blocking: false,
        message,
    }
}

fn block(message: String) -> Finding {
    Finding {
        blocking: true,
        message,
    }
}

/// Inspects every path (never following symlinks) and returns the findings.
pub fn inspect_host(paths: &HostPaths<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let meta = |p: &Path| std::fs::symlink_metadata(p).ok();
    if let Some(m) = meta(paths.config_file)
        && m.uid() != 0
    {
        findings.push(warn(format!(
            "config file owned by uid {}, expected root: the service must not be able to rewrite its own config",
            m.uid()
        )));
    }
    for (what, path) in &paths.secrets {
        if let Some(m) = meta(path)
            && m.uid() != 0
        {
            findings.push(warn(format!(
                "{what} owned by uid {}, expected root (the service only reads it)",
                m.uid()
            )));
        }
    }
    match meta(paths.state_dir) {
        None => findings.push(warn(
            "state directory does not exist yet (create it 0750, owned by the service user)".into(),
        )),
        Some(m) if !m.file_type().is_dir() || m.mode() & 0o022 != 0 => {
            findings.push(block(format!(
                "state directory mode {:04o}: must be a directory without group or world write",
                m.mode() & 0o7777
            )));
        }
        Some(m) if m.mode() & 0o007 != 0 => {
            findings.push(warn(format!(
                "state directory mode {:04o}: expected 0750",
                m.mode() & 0o7777
            )));
        }
        Some(_) => {}
    }
    match meta(paths.socket_dir) {
        None => findings.push(block(
            "socket directory does not exist (tmpfiles.d creates it: d /run/openbao-kms 2750 openbao-kms openbao-kms-socket)".into(),
        )),
        Some(m) => {
            let mode = m.mode() & 0o7777;
            // The rules are serve's own (crate::rules); only the wording is doctor's.
            if check_socket_dir_shape(&m).is_err() {
                findings.push(block(format!("socket directory mode {mode:04o}: must be a directory without group or world write")));
            }
            if let Some(gid) = paths.socket_gid
                && let Err(DirFault::GroupMismatch { group, .. }) = check_socket_dir_group(&m, gid)
            {
                if group != gid {
                    findings.push(block(format!("socket directory group {group}, expected the socket group {gid}")));
                } else {
                    findings.push(block(format!("socket directory mode {mode:04o}: the socket group cannot enter it")));
                }
            }
            if mode & 0o2000 == 0 {
                findings.push(warn(format!("socket directory mode {mode:04o}: expected 2750 (setgid keeps the socket group)")));
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finds_unsafe_and_unusual_layouts() {
        let dir = std::env::temp_dir().join(format!("host-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (state, socket) = (dir.join("state"), dir.join("run"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&socket).unwrap();
        let config = dir.join("config.yaml");
        std::fs::write(&config, "x").unwrap();
        let set = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(&state, 0o750);
        set(&socket, 0o2750);
        let paths = HostPaths {
            config_file: &config,
            secrets: vec![],
            state_dir: &state,
            socket_dir: &socket,
            socket_gid: Some(0),
        };
        assert_eq!(
            inspect_host(&paths),
            vec![],
            "the hardened layout (tests run as root)"
        );
        set(&socket, 0o770);
        let findings = inspect_host(&paths);
        assert!(
            findings
                .iter()
                .any(|f| f.blocking && f.message.contains("socket directory mode 0770"))
        );
        assert!(
            findings
                .iter()
                .any(|f| !f.blocking && f.message.contains("setgid"))
        );
        set(&socket, 0o2700);
        assert!(
            inspect_host(&paths)
                .iter()
                .any(|f| f.blocking && f.message.contains("cannot enter"))
        );
        let other = HostPaths {
            socket_gid: Some(4242),
            ..paths
        };
        assert!(
            inspect_host(&other)
                .iter()
                .any(|f| f.blocking && f.message.contains("expected the socket group 4242"))
        );
        set(&state, 0o777);
        assert!(
            inspect_host(&other)
                .iter()
                .any(|f| f.blocking && f.message.contains("state directory mode 0777"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
