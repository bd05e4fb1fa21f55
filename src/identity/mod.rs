//! Key identity: key_id derivation, annotations and the canonical AAD.
//!
//! Everything here is a pure function of non-secret configuration identity and
//! Transit version metadata, so every control-plane node derives identical
//! values with no coordination. The golden vectors of the reference
//! implementation are unit tests in each submodule.

mod aad;
mod annotations;
mod canonical;
mod hash;
mod key_id;
mod snapshot;

pub use aad::{DEEP_PROBE_AAD, canonical_aad};
pub use annotations::{
    AnnotationError, Annotations, ParsedAnnotations, build_annotations, check_against_snapshot,
    parse_annotations, plugin_version,
};
pub use canonical::go_json_string;
pub use hash::hash_value;
pub use key_id::{KEY_ID_LEN, KeyId, KeyIdError, derive_key_id};
pub use snapshot::{AadMode, KeySnapshot, Scope, ScopeError, SnapshotState};
