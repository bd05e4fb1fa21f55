//! Durable state on disk: the state file and its checkpoint, read with
//! symlink/FIFO/permission defences and written atomically (temp file, fsync,
//! rename, fsync of the directory), plus the fail-closed load decision table
//! of `core.md` §5.7.

use super::state::{StateError, StateFile};
use crate::identity::Scope;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const CHECKPOINT_SCHEMA: &str = "keyregistry.openbao-kms/checkpoint/v1alpha1";
/// Group write/execute and any world access make a state file unsafe.
const UNSAFE_FILE_BITS: u32 = 0o137;
const FILE_MODE: u32 = 0o640;
/// Far above any real registry; bounds what a planted file can make us read.
const MAX_STATE_BYTES: u64 = 16 * 1024 * 1024;

/// The files of one registry: state, checkpoint, writer lock.
#[derive(Debug, Clone)]
pub struct StatePaths {
    pub state: PathBuf,
    pub checkpoint: PathBuf,
    pub lock: PathBuf,
    pub dir: PathBuf,
}

impl StatePaths {
    pub fn new(state: &Path) -> Self {
        let with_suffix = |suffix: &str| {
            let mut name = state.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        Self {
            state: state.to_owned(),
            checkpoint: with_suffix(".checkpoint"),
            lock: with_suffix(".lock"),
            dir: state
                .parent()
                .map_or_else(|| PathBuf::from("/"), Path::to_owned),
        }
    }
}

/// `{"schemaVersion", "generation", "currentHash"}` beside the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    pub schema_version: String,
    pub generation: u64,
    pub current_hash: String,
}

impl Checkpoint {
    pub fn of(state: &StateFile) -> Self {
        Self {
            schema_version: CHECKPOINT_SCHEMA.to_owned(),
            generation: state.generation,
            current_hash: state.current_hash.clone(),
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let checkpoint: Self = serde_json::from_slice(bytes)
            .map_err(|_| StateError::Corrupt("checkpoint is not a valid document"))?;
        let hash_ok = checkpoint
            .current_hash
            .strip_prefix("krs1.")
            .is_some_and(|t| t.len() == 43);
        if checkpoint.schema_version != CHECKPOINT_SCHEMA || checkpoint.generation == 0 || !hash_ok
        {
            return Err(StateError::Corrupt("checkpoint fields invalid"));
        }
        Ok(checkpoint)
    }
}

/// What the load found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// A validated state (its checkpoint is current now).
    Present(StateFile),
    /// Neither file exists: a first install, if Transit agrees.
    Absent,
}

/// How the checkpoint relates to the state, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointStatus {
    Current,
    Behind,
    Missing,
}

impl CheckpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Behind => "behind",
            Self::Missing => "missing",
        }
    }
}

fn check_dir(dir: &Path) -> Result<(), StateError> {
    let meta =
        std::fs::symlink_metadata(dir).map_err(|_| StateError::Io("state directory must exist"))?;
    if !meta.file_type().is_dir() {
        return Err(StateError::UnsafeFile(
            "state directory must be a real directory",
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(StateError::UnsafeFile(
            "state directory must not be group-writable or world-writable",
        ));
    }
    Ok(())
}

fn check_file(meta: &std::fs::Metadata) -> Result<(), StateError> {
    if !meta.file_type().is_file() {
        return Err(StateError::UnsafeFile(
            "state files must be regular files (not symlinks, FIFOs or directories)",
        ));
    }
    if meta.mode() & UNSAFE_FILE_BITS != 0 {
        return Err(StateError::UnsafeFile(
            "state file mode must not include 0137",
        ));
    }
    Ok(())
}

/// Reads a state or checkpoint file; `None` when it does not exist.
fn read_safe(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    let before = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(StateError::Io("cannot inspect state file")),
    };
    check_file(&before)?;
    // O_NONBLOCK: a FIFO planted between the check and the open cannot hang us.
    let file = File::options()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|_| StateError::Io("cannot open state file"))?;
    let opened = file
        .metadata()
        .map_err(|_| StateError::Io("cannot inspect state file"))?;
    check_file(&opened)?;
    if opened.dev() != before.dev() || opened.ino() != before.ino() {
        return Err(StateError::UnsafeFile("state file changed while opening"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| StateError::Io("cannot read state file"))?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(StateError::Corrupt("state file too large"));
    }
    Ok(Some(bytes))
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|_| StateError::Io("cannot sync state directory"))
}

/// Writes `bytes` to `target` atomically and durably.
fn write_atomic(target: &Path, dir: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let name = target
        .file_name()
        .ok_or(StateError::Io("state path has no file name"))?
        .to_string_lossy();
    let temp = dir.join(format!(".{name}.tmp"));
    match std::fs::symlink_metadata(&temp) {
        Ok(meta) if meta.file_type().is_file() => {
            std::fs::remove_file(&temp)
                .map_err(|_| StateError::Io("cannot remove stale temp file"))?;
        }
        Ok(_) => return Err(StateError::UnsafeFile("temp path is not a regular file")),
        Err(_) => {}
    }
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&temp)
        .map_err(|_| StateError::Io("cannot create temp file"))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE)))
        .and_then(|()| file.sync_all());
    drop(file);
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
        return Err(StateError::Io("cannot write state file"));
    }
    std::fs::rename(&temp, target).map_err(|_| StateError::Io("cannot replace state file"))?;
    sync_dir(dir)
}

/// Persists `state`, then its checkpoint.
pub fn save(paths: &StatePaths, state: &StateFile) -> Result<(), StateError> {
    check_dir(&paths.dir)?;
    write_atomic(&paths.state, &paths.dir, &state.encode())?;
    write_checkpoint(paths, state)
}

fn write_checkpoint(paths: &StatePaths, state: &StateFile) -> Result<(), StateError> {
    let mut bytes = serde_json::to_vec(&Checkpoint::of(state)).unwrap_or_default();
    bytes.push(b'\n');
    write_atomic(&paths.checkpoint, &paths.dir, &bytes)
}

/// Reads both files without changing anything: the state (validated against
/// `fingerprint` and `scope`) and how its checkpoint relates to it.
pub fn inspect(
    paths: &StatePaths,
    fingerprint: &str,
    scope: &Scope,
) -> Result<Option<(StateFile, CheckpointStatus)>, StateError> {
    check_dir(&paths.dir)?;
    let state = read_safe(&paths.state)?;
    let checkpoint = read_safe(&paths.checkpoint)?
        .map(|b| Checkpoint::decode(&b))
        .transpose()?;
    let Some(bytes) = state else {
        return match checkpoint {
            Some(_) => Err(StateError::MissingWithCheckpoint),
            None => Ok(None),
        };
    };
    let state = StateFile::decode(&bytes)?;
    state.validate(fingerprint, scope)?;
    let status = match checkpoint {
        None => CheckpointStatus::Missing,
        Some(c) if c.generation > state.generation => {
            return Err(StateError::Rollback(
                "state file is older than its checkpoint",
            ));
        }
        Some(c) if c.generation == state.generation && c.current_hash != state.current_hash => {
            return Err(StateError::Rollback(
                "state file and checkpoint have the same generation but different hashes",
            ));
        }
        Some(c) if c.generation == state.generation => CheckpointStatus::Current,
        Some(_) => CheckpointStatus::Behind,
    };
    Ok(Some((state, status)))
}

/// The start-up load: `inspect`, then bring a missing or older checkpoint
/// up to date (the only write a load ever makes).
pub fn load(paths: &StatePaths, fingerprint: &str, scope: &Scope) -> Result<Loaded, StateError> {
    match inspect(paths, fingerprint, scope)? {
        None => Ok(Loaded::Absent),
        Some((state, status)) => {
            if status != CheckpointStatus::Current {
                write_checkpoint(paths, &state)?;
            }
            Ok(Loaded::Present(state))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::state::tests::golden_scope;
    use crate::registry::state::{Record, RecordState, SCHEMA_V1ALPHA2};

    fn scratch(name: &str) -> StatePaths {
        let dir = std::env::temp_dir().join(format!("state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        StatePaths::new(&dir.join("key-registry.json"))
    }

    fn fingerprint() -> String {
        format!("cfg1.{}", "A".repeat(43))
    }

    fn first() -> StateFile {
        let mut r = Record::new(&golden_scope(), 1, 1_700_000_060, RecordState::Active).unwrap();
        r.observed_at_unix = 1_700_000_000;
        r.promoted_at_unix = 1_700_000_000;
        StateFile {
            schema_version: SCHEMA_V1ALPHA2.into(),
            identity_fingerprint: fingerprint(),
            generation: 1,
            previous_hash: String::new(),
            current_hash: String::new(),
            active_key_id: r.kubernetes_key_id.clone(),
            snapshots: vec![r],
        }
        .seal()
    }

    fn second(prev: &StateFile) -> StateFile {
        let mut records = prev.snapshots.clone();
        let mut pending =
            Record::new(&golden_scope(), 2, 1_700_000_120, RecordState::Pending).unwrap();
        pending.observed_at_unix = 1_700_000_100;
        records.push(pending);
        prev.successor(prev.active_key_id.clone(), records).unwrap()
    }

    #[test]
    fn save_then_load_round_trips_with_safe_modes() {
        let paths = scratch("roundtrip");
        assert_eq!(
            load(&paths, &fingerprint(), &golden_scope()),
            Ok(Loaded::Absent)
        );
        let s1 = first();
        save(&paths, &s1).unwrap();
        for path in [&paths.state, &paths.checkpoint] {
            assert_eq!(std::fs::metadata(path).unwrap().mode() & 0o777, 0o640);
        }
        assert_eq!(
            load(&paths, &fingerprint(), &golden_scope()),
            Ok(Loaded::Present(s1.clone()))
        );
        let s2 = second(&s1);
        save(&paths, &s2).unwrap();
        assert_eq!(
            load(&paths, &fingerprint(), &golden_scope()),
            Ok(Loaded::Present(s2))
        );
        std::fs::remove_dir_all(&paths.dir).unwrap();
    }

    #[test]
    fn every_fail_closed_case_of_the_load_table() {
        let fp = fingerprint();
        let scope = golden_scope();
        let s1 = first();
        let s2 = second(&s1);

        // Checkpoint without state.
        let paths = scratch("missing");
        save(&paths, &s1).unwrap();
        std::fs::remove_file(&paths.state).unwrap();
        assert_eq!(
            load(&paths, &fp, &scope),
            Err(StateError::MissingWithCheckpoint)
        );

        // An older state put back after a newer one was saved.
        let paths = scratch("older");
        save(&paths, &s2).unwrap();
        std::fs::write(&paths.state, s1.encode()).unwrap();
        assert!(matches!(
            load(&paths, &fp, &scope),
            Err(StateError::Rollback(_))
        ));

        // Same generation, another hash (a fork).
        let paths = scratch("fork");
        save(&paths, &s2).unwrap();
        let mut fork_records = s1.snapshots.clone();
        let mut other = Record::new(&scope, 2, 1_700_000_999, RecordState::Pending).unwrap();
        other.observed_at_unix = 1_700_000_100;
        fork_records.push(other);
        let fork = s1
            .successor(s1.active_key_id.clone(), fork_records)
            .unwrap();
        std::fs::write(&paths.state, fork.encode()).unwrap();
        assert!(matches!(
            load(&paths, &fp, &scope),
            Err(StateError::Rollback(_))
        ));

        // Checkpoint missing or behind: accepted and rewritten.
        let paths = scratch("behind");
        save(&paths, &s1).unwrap();
        let stale_checkpoint = std::fs::read(&paths.checkpoint).unwrap();
        save(&paths, &s2).unwrap();
        std::fs::write(&paths.checkpoint, &stale_checkpoint).unwrap();
        assert_eq!(load(&paths, &fp, &scope), Ok(Loaded::Present(s2.clone())));
        assert_eq!(
            Checkpoint::decode(&std::fs::read(&paths.checkpoint).unwrap())
                .unwrap()
                .generation,
            2
        );
        std::fs::remove_file(&paths.checkpoint).unwrap();
        assert_eq!(load(&paths, &fp, &scope), Ok(Loaded::Present(s2.clone())));
        assert!(paths.checkpoint.exists());

        // Corrupt, unsafe mode, symlink, FIFO.
        let paths = scratch("corrupt");
        save(&paths, &s1).unwrap();
        std::fs::write(&paths.state, b"{\"schemaVersion\":").unwrap();
        assert!(matches!(
            load(&paths, &fp, &scope),
            Err(StateError::Corrupt(_))
        ));
        save(&paths, &s1).unwrap();
        std::fs::set_permissions(&paths.state, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load(&paths, &fp, &scope),
            Err(StateError::UnsafeFile(_))
        ));
        std::fs::remove_file(&paths.state).unwrap();
        std::os::unix::fs::symlink(&paths.checkpoint, &paths.state).unwrap();
        assert!(matches!(
            load(&paths, &fp, &scope),
            Err(StateError::UnsafeFile(_))
        ));
        std::fs::remove_file(&paths.state).unwrap();
        nix::unistd::mkfifo(
            &paths.state,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        assert!(matches!(
            load(&paths, &fp, &scope),
            Err(StateError::UnsafeFile(_))
        ));
        std::fs::remove_file(&paths.state).unwrap();

        // A group-writable state directory.
        save(&paths, &s1).unwrap();
        std::fs::set_permissions(&paths.dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(matches!(
            load(&paths, &fp, &scope),
            Err(StateError::UnsafeFile(_))
        ));
        for p in ["missing", "older", "fork", "behind", "corrupt"] {
            let _ = std::fs::remove_dir_all(scratch(p).dir);
        }
    }
}
