//! Evaluations behind the operator checks (`doctor` and `verify-key`): the
//! capability check of a token's policy (spec config §5.3), the host file
//! layout, the kernel clock status and the debug settings left on. The key
//! profile and socket directory rules they share with `serve` live in
//! `crate::rules`. They return bounded messages that never name a path of
//! the config or a key.

mod capabilities;
mod clock_sync;
mod debug_exposure;
mod host_files;
mod running_provider;

pub use capabilities::{CapabilityPaths, check_capabilities};
pub use clock_sync::{ClockState, read_clock_state};
pub use debug_exposure::{DebugSettings, inspect_debug};
pub use host_files::{Finding, HostPaths, inspect_host};
pub use running_provider::{Holder, find_provider};
