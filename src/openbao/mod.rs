//! The narrow OpenBao client: pinned-CA HTTPS, Transit, and the auth endpoints.
//!
//! Only the handful of endpoints the provider needs exist here; nothing can
//! create, rotate, configure or delete keys.

mod auth_api;
mod error;
mod failover;
mod http;
mod sys;
mod token_source;
mod transit;

pub use auth_api::{AuthApi, AuthGrant};
pub use error::{ErrorClass, OpenBaoError, Operation};
pub use http::{BuildError, Call, HttpClient, TlsSettings};
pub use sys::{Capabilities, capabilities_self};
pub use token_source::TokenSource;
pub use transit::{KeyMetadata, Transit};
