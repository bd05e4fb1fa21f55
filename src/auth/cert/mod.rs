//! Certificate auth with a PKCS#11 key (`auth.method: cert`, source `pkcs11`).
//!
//! The private key (ECDSA P-256 or RSA) never leaves the token: TLS client
//! signatures and the local probe are made by the token through `cryptoki`, which loads
//! `modulePath` at run time, so the default build serves this method.

mod chain;
mod hsm;
mod login;
mod pin;
mod public_key;
mod signer;

pub use super::secret_file::FileError;
pub use chain::{CertChecks, CheckedLeaf, check_chain, read_chain};
pub use hsm::{Lease, Pkcs11Settings, Token};
pub use login::{CertLogin, CertLoginSettings, check_credential, check_signer, open_token};
pub use pin::{parse_pin, read_pin};
pub use public_key::PublicKey;
pub use signer::{TokenClientCert, sign};

use std::fmt;

/// Why certificate auth cannot proceed. Messages name no subject, PIN or path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertError {
    PinFile(FileError),
    PinMalformed,
    ModuleUnavailable,
    TokenNotFound,
    PinRejected,
    KeyNotFound,
    KeyAmbiguous,
    KeyUnsupported,
    NoUsableSession,
    SignFailed,
    CertificateFile(FileError),
    CertificateMalformed,
    WeakSignature,
    NotYetValid,
    Expired,
    NearExpiry,
    UsageInvalid,
    KeyMismatch,
    ProbeFailed,
}

impl CertError {
    /// Bounded status label for logs and metrics (`config-cli-auth.md` §3.1).
    pub fn status(self) -> &'static str {
        match self {
            Self::Expired => "cert_expired",
            Self::NearExpiry => "cert_near_expiry",
            Self::NoUsableSession => "no_usable_session",
            _ => "cert_invalid",
        }
    }
}

fn file_reason(e: FileError) -> &'static str {
    match e {
        FileError::Unreadable => "file must exist and be a readable regular file",
        FileError::UnsafePermissions => "file permissions unsafe: mode must not include 0037",
        FileError::Changed => "file changed while opening",
        FileError::TooLarge => "file too large",
    }
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PinFile(e) => write!(f, "pkcs11 pin read failed: {}", file_reason(*e)),
            Self::CertificateFile(e) => {
                write!(f, "certificate read failed: {}", file_reason(*e))
            }
            other => f.write_str(match other {
                Self::PinMalformed => "pkcs11 pin read failed: must be one non-empty line",
                Self::ModuleUnavailable => "pkcs11 module unavailable",
                Self::TokenNotFound => "pkcs11 token not found",
                Self::PinRejected => "pkcs11 login failed",
                Self::KeyNotFound => "pkcs11 key pair not found",
                Self::KeyAmbiguous => "pkcs11 key label is not unique",
                Self::KeyUnsupported => {
                    "pkcs11 key type unsupported: need ECDSA P-256 or RSA 2048-8192 bits"
                }
                Self::NoUsableSession => "pkcs11 no usable session",
                Self::SignFailed => "pkcs11 signature failed",
                Self::CertificateMalformed => "certificate malformed",
                Self::WeakSignature => "certificate weak signature",
                Self::NotYetValid => "certificate not yet valid",
                Self::Expired => "certificate expired",
                Self::NearExpiry => "certificate near expiry",
                Self::UsageInvalid => "certificate usage invalid",
                Self::KeyMismatch => "certificate public key does not match the pkcs11 key",
                Self::ProbeFailed => "pkcs11 probe signature does not verify",
                Self::PinFile(_) | Self::CertificateFile(_) => "certificate auth failed",
            }),
        }
    }
}

impl std::error::Error for CertError {}
