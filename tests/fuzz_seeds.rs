//! The fuzz targets' seed corpora (`fuzz/seeds/<target>/`) run on stable as
//! ordinary tests, so CI checks every target's properties without nightly.
//!
//! Every target must have seeds, and its seeds must reach both the
//! accepting and the refusing path (a corpus that only ever hits the first
//! parse error would prove nothing). Files named `regress-*` are inputs a
//! fuzz run once found, `refuse-*` near misses of a valid input (a tampered
//! annotation); each must stay a refusal.
//!
//! `cargo test --test fuzz_seeds -- --ignored write_derived_seeds` rewrites
//! the seeds that are built from the library (a valid key_id, Decrypt
//! request, state file and checkpoint) after a format change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bao_kms_provider::fuzzing;
use bao_kms_provider::identity::{Annotations, build_annotations};
use bao_kms_provider::registry::{Record, RecordState, StateFile};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

type Target = fn(&[u8]) -> bool;

const TARGETS: &[(&str, Target)] = &[
    ("key_id", fuzzing::key_id),
    ("decrypt_request", fuzzing::decrypt_request),
    ("state_file", fuzzing::state_file),
    ("checkpoint", fuzzing::checkpoint),
    ("config_yaml", fuzzing::config_yaml),
    ("encryption_config", fuzzing::encryption_config),
    ("jwt_claims", fuzzing::jwt_claims),
    ("oauth2_response", fuzzing::oauth2_response),
    ("pin_file", fuzzing::pin_file),
];

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
}

#[test]
fn every_seed_upholds_its_targets_properties_and_both_paths_are_reached() {
    for (name, target) in TARGETS {
        let dir = seeds_dir(name);
        let mut seeds: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "{name} has no seeds");
        let mut accepted = 0;
        for seed in &seeds {
            let data = fs::read(seed).unwrap();
            let ok = target(&data);
            let file = seed.file_name().unwrap().to_str().unwrap();
            if file.starts_with("regress-") || file.starts_with("refuse-") {
                assert!(
                    !ok,
                    "{name}/{file}: an input that must be refused was accepted"
                );
            }
            accepted += usize::from(ok);
        }
        assert!(accepted > 0, "{name}: no seed reaches the accepting path");
        assert!(accepted < seeds.len(), "{name}: no seed reaches a refusal");
    }
}

/// The target list here and the fuzz crate's binaries stay the same set.
#[test]
fn every_fuzz_target_has_a_seed_directory_and_a_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut binaries: Vec<String> = fs::read_dir(root.join("fuzz_targets"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    binaries.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.sort();
    assert_eq!(binaries, names);
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for name in &names {
        assert!(manifest.contains(&format!("path = \"fuzz_targets/{name}.rs\"")));
        assert!(seeds_dir(name).is_dir(), "{name}");
    }
}

fn write(target: &str, file: &str, data: &[u8]) {
    let dir = seeds_dir(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(file), data).unwrap();
}

#[test]
#[ignore = "a tool: rewrites the library-built seeds in fuzz/seeds/"]
fn write_derived_seeds() {
    for namespaced in [false, true] {
        let snapshot = fuzzing::snapshot(namespaced).unwrap();
        let key_id = snapshot.key_id.as_str().to_owned();
        let annotations = build_annotations(&snapshot);
        let suffix = if namespaced { "namespaced" } else { "plain" };
        write("key_id", &format!("valid-{suffix}"), key_id.as_bytes());
        write(
            "decrypt_request",
            &format!("valid-{suffix}"),
            &fuzzing::encode_request(namespaced, &key_id, &annotations),
        );
        let mut tampered: Annotations = annotations.clone();
        *tampered
            .get_mut("transit-key-version.kms.openbao.org")
            .expect("Encrypt writes the key version annotation") = b"4".to_vec();
        write(
            "decrypt_request",
            &format!("refuse-tampered-{suffix}"),
            &fuzzing::encode_request(namespaced, &key_id, &tampered),
        );
    }
    let snapshot = fuzzing::snapshot(false).unwrap();
    let scope = Arc::clone(&snapshot.scope);
    let record = Record::new(&scope, 3, 1_715_803_200, RecordState::Active).unwrap();
    let state = |generation: u64| {
        StateFile {
            schema_version: "keyregistry.openbao-kms/v1alpha2".into(),
            identity_fingerprint: "sha256:fuzz-seed".into(),
            generation,
            previous_hash: String::new(),
            current_hash: String::new(),
            active_key_id: record.kubernetes_key_id.clone(),
            snapshots: vec![record.clone()],
        }
        .seal()
    };
    write("state_file", "valid", &state(1).encode());
    // The last generation: decodes, but has no successor.
    write("state_file", "last-generation", &state(u64::MAX).encode());
    let sealed = state(7);
    write(
        "checkpoint",
        "valid",
        format!(
            "{{\"schemaVersion\":\"keyregistry.openbao-kms/checkpoint/v1alpha1\",\"generation\":7,\"currentHash\":\"{}\"}}",
            sealed.current_hash
        )
        .as_bytes(),
    );
}
