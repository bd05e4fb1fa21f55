//! Authentication to OpenBao: the JWT credential sources (a file, or an
//! OAuth 2.0 client-credentials grant), the PKCS#11 certificate source, the
//! login backends,
//! and the in-memory token manager (refresh-ahead, shared flights, backoff,
//! 401/403 recovery) that implements `openbao::TokenSource`.

mod backoff;
pub mod cert;
mod jwt;
mod login;
mod oauth2;
mod secret_file;
mod token;

pub use jwt::{JwtChecks, JwtError, read_jwt_file, validate_claims};
pub use oauth2::{CredentialReason, OAuth2Error, read_client_secret};
pub use token::{AuthError, TokenManager, TokenSettings};
#[cfg(feature = "fuzzing")]
pub(crate) use {jwt::parse_claims, oauth2::parse_response};
