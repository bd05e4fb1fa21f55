//! The provider's safety rules as pure functions, shared by `serve` (status
//! probes, socket creation) and the operator checks (`doctor`, `verify-key`),
//! so a rule is written once and both sides always agree.
//!
//! * `key_profile` — which Transit key settings are unsafe, and whether a
//!   finding contradicts the key's identity or is a setting drift;
//! * `socket_dir` — the socket directory's shape and group.
//!
//! This module depends only on `openbao`'s metadata type.

mod key_profile;
mod socket_dir;

pub use key_profile::{
    Fault, Impact, ProfileFinding, identity_findings, profile_findings, render_findings,
    setting_findings,
};
pub use socket_dir::{DirFault, check_socket_dir_group, check_socket_dir_shape};
