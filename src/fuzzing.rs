//! Entry points of the cargo-fuzz targets in `fuzz/` (feature `fuzzing`).
//!
//! Each takes arbitrary bytes, runs one decoder or parser the provider
//! exposes to untrusted input, and asserts the property that must hold for
//! whatever it accepts; a violated property panics, which is a finding. Each
//! returns whether the input was accepted, so the stable seed test
//! (`tests/fuzz_seeds.rs`) can prove its seeds reach the accepting paths.

use crate::auth::cert::parse_pin;
use crate::auth::{parse_claims, parse_response};
use crate::config::rules::check_identifier;
use crate::config::{NoEnv, Overrides, load_str};
use crate::encryption_config::{self, Expected, IdentityFallback, Phase};
use crate::identity::{
    Annotations, KeyId, KeySnapshot, Scope, SnapshotState, build_annotations, canonical_aad,
    check_against_snapshot, parse_annotations,
};
use crate::registry::{Checkpoint, StateFile};
use std::sync::Arc;

/// Separates the fields of an encoded Decrypt request.
const SEPARATOR: u8 = 0;
/// The one transit version the fuzzed snapshot holds.
const VERSION: u64 = 3;
const CREATED_AT: i64 = 1_715_803_200;
const SOCKET: &str = "/run/openbao-kms/kms.sock";

/// The snapshot a fuzzed Decrypt request is checked against; `namespaced`
/// picks the scope with an OpenBao namespace (its AAD has one more member).
pub fn snapshot(namespaced: bool) -> Option<KeySnapshot> {
    let scope = Scope {
        provider_name: "openbao-kms-workload-a".into(),
        cluster_id: "workload-a".into(),
        openbao_instance_id: "bao-prod-a".into(),
        openbao_namespace: if namespaced { "team-a" } else { "" }.into(),
        transit_mount_id: "transit-prod-primary".into(),
        transit_key_lineage_id: "01HXEXAMPLEKEYLINEAGEID".into(),
    };
    KeySnapshot::new(Arc::new(scope), VERSION, CREATED_AT, SnapshotState::Active).ok()
}

/// A Decrypt request's key_id and annotations as fuzzer bytes: a namespace
/// flag byte, then key_id, key, value, key, value… separated by NUL.
pub fn encode_request(namespaced: bool, key_id: &str, annotations: &Annotations) -> Vec<u8> {
    let mut out = vec![u8::from(namespaced)];
    out.extend_from_slice(key_id.as_bytes());
    for (key, value) in annotations {
        out.push(SEPARATOR);
        out.extend_from_slice(key.as_bytes());
        out.push(SEPARATOR);
        out.extend_from_slice(value);
    }
    out
}

/// key_id parsing: an accepted key_id prints back as exactly its input.
pub fn key_id(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(parsed) = KeyId::parse(text) else {
        return false;
    };
    assert_eq!(parsed.as_str(), text, "key_id does not round-trip");
    true
}

/// The checks a Decrypt request passes before Transit (key_id, annotation
/// parse, cross-check against the snapshot): whatever is accepted rebuilds
/// the same AAD and key_id the snapshot's own Encrypt would have used.
pub fn decrypt_request(data: &[u8]) -> bool {
    let Some((flag, rest)) = data.split_first() else {
        return false;
    };
    let Some(snapshot) = snapshot(flag & 1 == 1) else {
        return false;
    };
    let mut fields = rest.split(|b| *b == SEPARATOR);
    let Some(Ok(key_id)) = fields.next().map(std::str::from_utf8) else {
        return false;
    };
    let mut annotations = Annotations::new();
    while let (Some(key), Some(value)) = (fields.next(), fields.next()) {
        let Ok(key) = std::str::from_utf8(key) else {
            return false;
        };
        annotations.insert(key.to_owned(), value.to_vec());
    }
    let Ok(key_id) = KeyId::parse(key_id) else {
        return false;
    };
    if key_id != snapshot.key_id {
        return false;
    }
    let Ok(parsed) = parse_annotations(&annotations) else {
        return false;
    };
    if check_against_snapshot(&parsed, &snapshot).is_err() {
        return false;
    }
    assert_eq!(
        canonical_aad(&snapshot, Some(&parsed)),
        canonical_aad(&snapshot, None),
        "accepted annotations give another AAD than Encrypt binds"
    );
    let rebuilt = build_annotations(&snapshot);
    assert!(
        parse_annotations(&rebuilt).is_ok_and(|p| p == parsed),
        "accepted annotations differ from the snapshot's own"
    );
    true
}

/// The state file decoder: what decodes re-encodes to an equal document
/// with the same content hash, and its successor is one generation on and
/// chained to it, or a refusal at the last generation (never a wrap).
pub fn state_file(data: &[u8]) -> bool {
    let Ok(state) = StateFile::decode(data) else {
        return false;
    };
    let again = StateFile::decode(&state.encode());
    assert!(
        again.as_ref().is_ok_and(|s| *s == state),
        "state does not survive encode/decode"
    );
    assert!(again.is_ok_and(|s| s.compute_hash() == state.compute_hash()));
    match state.successor(state.active_key_id.clone(), state.snapshots.clone()) {
        Ok(next) => {
            assert_eq!(Some(next.generation), state.generation.checked_add(1));
            assert_eq!(next.previous_hash, state.current_hash);
        }
        Err(_) => assert_eq!(state.generation, u64::MAX),
    }
    true
}

/// The checkpoint decoder never panics; an accepted one has a generation.
pub fn checkpoint(data: &[u8]) -> bool {
    Checkpoint::decode(data).is_ok_and(|c| c.generation > 0)
}

/// The config loader (YAML, strict fields, validation) never panics, and
/// an accepted config loads again to the same identity fingerprint.
pub fn config_yaml(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(config) = load_str(text, &Overrides::default(), &NoEnv) else {
        return false;
    };
    let again = load_str(text, &Overrides::default(), &NoEnv);
    assert!(again.is_ok_and(|c| c.identity_fingerprint() == config.identity_fingerprint()));
    true
}

/// The EncryptionConfiguration parser never panics; and for input that is
/// a provider name the identifier rule accepts, the file `init` renders for
/// it parses back and passes every check (a name the rule lets through must
/// never produce a file the provider's own parser rejects).
pub fn encryption_config(data: &[u8]) -> bool {
    let parsed = encryption_config::parse(data).is_ok();
    let Ok(name) = std::str::from_utf8(data) else {
        return parsed;
    };
    if check_identifier(name).is_err() {
        return parsed;
    }
    for phase in [Phase::Readers, Phase::Writers] {
        let rendered = encryption_config::render(name, SOCKET, phase);
        let file = encryption_config::parse(rendered.as_bytes());
        let expected = Expected {
            provider_name: name,
            socket_path: SOCKET,
        };
        assert!(
            file.is_ok_and(
                |f| encryption_config::check(&f, expected, IdentityFallback::Allow).is_ok()
            ),
            "an accepted providerName renders an EncryptionConfiguration that fails its own checks"
        );
    }
    true
}

/// The JWT claims parser never panics and requires `exp`.
pub fn jwt_claims(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|jwt| parse_claims(jwt).is_ok())
}

/// The OAuth2 token response parser: an accepted answer has a token and a
/// positive lifetime when it states one.
pub fn oauth2_response(data: &[u8]) -> bool {
    let Ok(grant) = parse_response(data) else {
        return false;
    };
    assert!(!grant.access_token.is_empty());
    assert!(grant.expires_in.is_none_or(|s| s > 0));
    true
}

/// The PIN file's contents: an accepted PIN is one non-empty line.
pub fn pin_file(data: &[u8]) -> bool {
    let Ok(pin) = parse_pin(data) else {
        return false;
    };
    let text = pin.expose();
    assert!(!text.is_empty() && !text.contains(['\r', '\n']));
    true
}
