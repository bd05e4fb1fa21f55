//! Authentication to OpenBao: the JWT credential source, the PKCS#11
//! certificate source, the login backend,
//! and the in-memory token manager (refresh-ahead, shared flights, backoff,
//! 401/403 recovery) that implements `openbao::TokenSource`.

mod backoff;
pub mod cert;
mod jwt;
mod login;
mod token;

pub use jwt::{JwtChecks, JwtError, read_jwt_file, validate_claims};
pub use token::{AuthError, TokenManager, TokenSettings};
