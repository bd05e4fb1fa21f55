//! Status: the cached health view that Status, Encrypt and `/ready` read, and
//! the background probes that keep it fresh. Status never calls OpenBao.

mod breaker;
mod cache;
mod discovery;
mod probe;
mod profile;
mod reason;
mod scheduler;

pub use cache::{StatusCache, Unhealthy};
pub use discovery::Discovery;
pub use probe::Prober;
pub use reason::Reason;
pub use scheduler::{BootstrapError, bootstrap, run_scheduler};
