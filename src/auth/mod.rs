//! Authentication to OpenBao: the JWT credential source and the in-memory
//! token manager (refresh-ahead, shared flights, backoff, 401/403 recovery).

mod backoff;
mod jwt;
mod token;

pub use jwt::{JwtChecks, JwtError, read_jwt_file, validate_claims};
pub use token::{AuthError, TokenManager, TokenSettings};
