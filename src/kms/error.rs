//! KMS request errors and their one mapping to gRPC codes, messages and classes
//! (`core.md` §1.6). Messages are fixed strings: no secrets, ciphertext, paths
//! or backend text ever reach Kubernetes.

use crate::openbao::{ErrorClass, OpenBaoError, Operation};
use tonic::{Code, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmsError {
    Timeout,
    PlaintextRequired,
    CiphertextRequired,
    RequestOverLimits,
    KeyIdMalformed,
    AnnotationsInvalid,
    AnnotationMismatch,
    ResponseOverLimits,
    ConcurrencyLimit,
    KeyIdUnknown,
    DiscoveryFailed,
    StatusStale,
    AadMissing,
    /// The handler panicked; only this request failed.
    Panic,
    Transit(OpenBaoError),
}

impl KmsError {
    /// gRPC code, message and bounded error class.
    pub fn parts(self) -> (Code, &'static str, &'static str) {
        match self {
            Self::Timeout => (Code::DeadlineExceeded, "request timed out", "timeout"),
            Self::PlaintextRequired => (Code::InvalidArgument, "plaintext is required", "unknown"),
            Self::CiphertextRequired => {
                (Code::InvalidArgument, "ciphertext is required", "unknown")
            }
            Self::RequestOverLimits => (
                Code::InvalidArgument,
                "kms request exceeds protocol limits",
                "protocol_limit",
            ),
            Self::KeyIdMalformed => (
                Code::InvalidArgument,
                "key_id malformed",
                "key_id_malformed",
            ),
            Self::AnnotationsInvalid => (
                Code::InvalidArgument,
                "annotations invalid",
                "annotation_invalid",
            ),
            Self::AnnotationMismatch => (
                Code::InvalidArgument,
                "annotations do not match key snapshot",
                "aad_mismatch",
            ),
            Self::ResponseOverLimits => (
                Code::Internal,
                "kms response exceeds protocol limits",
                "protocol_limit",
            ),
            Self::ConcurrencyLimit => (
                Code::ResourceExhausted,
                "kms request concurrency limit reached",
                "concurrency_limit",
            ),
            Self::KeyIdUnknown => (Code::NotFound, "key_id unknown", "key_id_unknown"),
            Self::DiscoveryFailed => (
                Code::Unavailable,
                "key metadata refresh failed",
                "key_metadata_refresh_failed",
            ),
            Self::StatusStale => (
                Code::FailedPrecondition,
                "kms status is not healthy",
                "status_stale",
            ),
            Self::AadMissing => (Code::FailedPrecondition, "AAD required", "aad_missing"),
            Self::Panic => (Code::Internal, "kms request failed", "panic"),
            Self::Transit(e) => transit_parts(e),
        }
    }

    pub fn class(self) -> &'static str {
        self.parts().2
    }
}

fn transit_parts(e: OpenBaoError) -> (Code, &'static str, &'static str) {
    let invalid = match e.op {
        Operation::TransitEncrypt => "transit encrypt failed",
        _ => "transit decrypt failed",
    };
    match e.class {
        ErrorClass::Sealed => (Code::Unavailable, "openbao is sealed", "openbao_sealed"),
        ErrorClass::DecryptFailed => (
            Code::InvalidArgument,
            "annotations do not match key snapshot",
            "aad_mismatch",
        ),
        ErrorClass::InvalidRequest => (Code::InvalidArgument, invalid, "unknown"),
        ErrorClass::Unauthenticated | ErrorClass::AuthUnavailable => (
            Code::Unauthenticated,
            "openbao authentication failed",
            "auth_failed",
        ),
        ErrorClass::PermissionDenied => (
            Code::PermissionDenied,
            "openbao policy denied the request",
            "transit_policy_denied",
        ),
        ErrorClass::NotFound => (Code::NotFound, "transit key missing", "transit_key_missing"),
        ErrorClass::RateLimited => (
            Code::ResourceExhausted,
            "openbao rate limited the request",
            "openbao_rate_limited",
        ),
        ErrorClass::Unavailable => (
            Code::Unavailable,
            "openbao unavailable",
            "openbao_unavailable",
        ),
        ErrorClass::TlsFailed => (
            Code::Unavailable,
            "openbao unavailable",
            "openbao_tls_failed",
        ),
        ErrorClass::DnsFailed => (
            Code::Unavailable,
            "openbao unavailable",
            "openbao_dns_failed",
        ),
        ErrorClass::ConnectionFailed => (
            Code::Unavailable,
            "openbao unavailable",
            "openbao_connection_failed",
        ),
        ErrorClass::Timeout => (Code::DeadlineExceeded, "request timed out", "timeout"),
        ErrorClass::InvalidResponse | ErrorClass::Unknown => {
            (Code::Internal, "kms request failed", "unknown")
        }
    }
}

/// gRPC code as the snake_case label used in metrics and logs.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

impl From<KmsError> for Status {
    fn from(e: KmsError) -> Self {
        let (code, message, _) = e.parts();
        Status::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transit_classes_map_per_the_table() {
        let case = |op, class| KmsError::Transit(OpenBaoError::new(op, class)).parts();
        assert_eq!(
            case(Operation::TransitDecrypt, ErrorClass::Sealed).0,
            Code::Unavailable
        );
        assert_eq!(
            case(Operation::TransitDecrypt, ErrorClass::DecryptFailed).2,
            "aad_mismatch"
        );
        assert_eq!(
            case(Operation::TransitEncrypt, ErrorClass::InvalidRequest).1,
            "transit encrypt failed"
        );
        assert_eq!(
            case(Operation::TransitDecrypt, ErrorClass::PermissionDenied).0,
            Code::PermissionDenied
        );
        assert_eq!(
            case(Operation::TransitDecrypt, ErrorClass::NotFound).2,
            "transit_key_missing"
        );
        assert_eq!(
            case(Operation::TransitDecrypt, ErrorClass::RateLimited).0,
            Code::ResourceExhausted
        );
        assert_eq!(
            case(Operation::TransitDecrypt, ErrorClass::TlsFailed).2,
            "openbao_tls_failed"
        );
        assert_eq!(
            case(Operation::TransitDecrypt, ErrorClass::Timeout).0,
            Code::DeadlineExceeded
        );
        assert_eq!(
            KmsError::ConcurrencyLimit.parts().0,
            Code::ResourceExhausted
        );
        assert_eq!(KmsError::StatusStale.parts().0, Code::FailedPrecondition);
    }
}
