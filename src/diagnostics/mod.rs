//! Pure evaluations behind the operator checks (`doctor` and `verify-key`):
//! the Transit key profile findings (spec config §5.2), the capability check
//! of a token's policy (§5.3), and the host file layout. They return bounded
//! messages that never name a path or key.

mod capabilities;
mod host_files;
mod key_profile;

pub use capabilities::{CapabilityPaths, check_capabilities};
pub use host_files::{Finding, HostPaths, inspect_host};
pub use key_profile::{Impact, ProfileFinding, profile_findings, render_findings};
