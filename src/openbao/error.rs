//! OpenBao error classification into the bounded classes of `core.md` §1.6.
//!
//! Errors carry the operation, the class and the HTTP status only: never paths,
//! key names, tokens or the server's message text.

use std::fmt;

/// The OpenBao call that failed; `label` is the metric label, `name` the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    JwtLogin,
    CertLogin,
    TokenRenewSelf,
    TransitMetadataRead,
    TransitDisableUpsertRead,
    TransitEncrypt,
    TransitDecrypt,
    CapabilitiesSelf,
}

impl Operation {
    pub fn label(self) -> &'static str {
        match self {
            Self::JwtLogin => "jwt_login",
            Self::CertLogin => "cert_login",
            Self::TokenRenewSelf => "token_renew_self",
            Self::TransitMetadataRead => "transit_metadata_read",
            Self::TransitDisableUpsertRead => "transit_disable_upsert_read",
            Self::TransitEncrypt => "transit_encrypt",
            Self::TransitDecrypt => "transit_decrypt",
            Self::CapabilitiesSelf => "capabilities_self",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::JwtLogin => "jwt login",
            Self::CertLogin => "cert login",
            Self::TokenRenewSelf => "token renew self",
            Self::TransitMetadataRead => "transit metadata read",
            Self::TransitDisableUpsertRead => "transit disable_upsert read",
            Self::TransitEncrypt => "transit encrypt",
            Self::TransitDecrypt => "transit decrypt",
            Self::CapabilitiesSelf => "capabilities self",
        }
    }
}

/// Bounded error classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Sealed,
    DecryptFailed,
    InvalidRequest,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    RateLimited,
    Unavailable,
    TlsFailed,
    DnsFailed,
    ConnectionFailed,
    /// The call did not finish within its deadline.
    Timeout,
    /// A 2xx answer whose body is not what the API promises.
    InvalidResponse,
    /// No usable token could be obtained (local credential failure).
    AuthUnavailable,
    Unknown,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sealed => "sealed",
            Self::DecryptFailed => "decrypt_failed",
            Self::InvalidRequest => "invalid_request",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::TlsFailed => "tls_failed",
            Self::DnsFailed => "dns_failed",
            Self::ConnectionFailed => "connection_failed",
            Self::Timeout => "timeout",
            Self::InvalidResponse => "invalid_response",
            Self::AuthUnavailable => "auth_unavailable",
            Self::Unknown => "unknown",
        }
    }

    /// Classifies a non-2xx answer from its status and (unprinted) error text.
    pub fn from_response(status: u16, error_text: &str) -> Self {
        if error_text.contains("sealed") {
            Self::Sealed
        } else if error_text.contains("message authentication failed") {
            Self::DecryptFailed
        } else {
            match status {
                300..=399 => Self::Unavailable,
                400 => Self::InvalidRequest,
                401 => Self::Unauthenticated,
                403 => Self::PermissionDenied,
                404 => Self::NotFound,
                429 => Self::RateLimited,
                500.. => Self::Unavailable,
                _ => Self::Unknown,
            }
        }
    }

    /// Whether a fresh token may cure this failure (`core.md` §7.7).
    pub fn is_auth_rejection(self) -> bool {
        matches!(self, Self::Unauthenticated | Self::PermissionDenied)
    }
}

/// One failed OpenBao call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenBaoError {
    pub op: Operation,
    pub class: ErrorClass,
    pub status: Option<u16>,
}

impl OpenBaoError {
    pub fn new(op: Operation, class: ErrorClass) -> Self {
        Self {
            op,
            class,
            status: None,
        }
    }
}

impl fmt::Display for OpenBaoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "openbao {} failed: {}",
            self.op.name(),
            self.class.as_str()
        )?;
        if let Some(status) = self.status {
            write!(f, " (status {status})")?;
        }
        Ok(())
    }
}

impl std::error::Error for OpenBaoError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        assert_eq!(
            ErrorClass::from_response(503, "Vault is sealed"),
            ErrorClass::Sealed
        );
        assert_eq!(
            ErrorClass::from_response(400, "cipher: message authentication failed"),
            ErrorClass::DecryptFailed
        );
        assert_eq!(
            ErrorClass::from_response(400, "bad"),
            ErrorClass::InvalidRequest
        );
        assert_eq!(
            ErrorClass::from_response(401, ""),
            ErrorClass::Unauthenticated
        );
        assert_eq!(
            ErrorClass::from_response(403, ""),
            ErrorClass::PermissionDenied
        );
        assert_eq!(ErrorClass::from_response(404, ""), ErrorClass::NotFound);
        assert_eq!(ErrorClass::from_response(429, ""), ErrorClass::RateLimited);
        assert_eq!(ErrorClass::from_response(502, ""), ErrorClass::Unavailable);
        assert_eq!(ErrorClass::from_response(307, ""), ErrorClass::Unavailable);
        assert_eq!(ErrorClass::from_response(418, ""), ErrorClass::Unknown);
    }

    #[test]
    fn display_is_bounded() {
        let mut e = OpenBaoError::new(Operation::TransitEncrypt, ErrorClass::NotFound);
        e.status = Some(404);
        assert_eq!(
            e.to_string(),
            "openbao transit encrypt failed: not_found (status 404)"
        );
    }
}
