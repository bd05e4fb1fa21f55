//! Pure evaluations behind the operator checks (`doctor` and `verify-key`):
//! the capability check of a token's policy (spec config §5.3) and the host
//! file layout. The key profile and socket directory rules they share with
//! `serve` live in `crate::rules`. They return bounded messages that never
//! name a path or key.

mod capabilities;
mod host_files;

pub use capabilities::{CapabilityPaths, check_capabilities};
pub use host_files::{Finding, HostPaths, inspect_host};
