//! The rustls side: a client-certificate resolver that re-reads the chain on
//! every handshake and a signing key whose signatures (ECDSA P-256, RSA-PSS,
//! and RSA PKCS#1 v1.5 where TLS 1.2 asks for it) are made in the token.
//!
//! Signing runs on the thread that drives the handshake. One ECDSA signature
//! in a token is about a millisecond and the wait for a session is bounded,
//! so it stays inline rather than hopping to a blocking thread that rustls'
//! synchronous `Signer` could not await anyway.

use super::hsm::Token;
use super::public_key::PublicKey;
use super::{CertError, read_chain};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::types::Ulong;
use rustls::client::ResolvesClientCert;
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// DER `DigestInfo` prefix for SHA-256 (RFC 8017 §9.2 note 1): CKM_RSA_PKCS
/// signs exactly the bytes it is given, so PKCS#1 v1.5 needs it in front.
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Presents the current certificate file with the token's key.
#[derive(Debug)]
pub struct TokenClientCert {
    pub token: Arc<Token>,
    pub certificate_file: PathBuf,
}

impl ResolvesClientCert for TokenClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let schemes = self.token.public_key().schemes();
        if !schemes.iter().any(|s| sigschemes.contains(s)) {
            return None;
        }
        // Unreadable now means no certificate: OpenBao then refuses the login.
        let chain = read_chain(&self.certificate_file).ok()?;
        let key = Arc::new(TokenKey(Arc::clone(&self.token)));
        Some(Arc::new(CertifiedKey::new(chain, key)))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct TokenKey(Arc<Token>);

impl SigningKey for TokenKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = self
            .0
            .public_key()
            .schemes()
            .iter()
            .find(|s| offered.contains(s))?;
        Some(Box::new(TokenSigner {
            token: Arc::clone(&self.0),
            scheme: *scheme,
        }))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.0.public_key() {
            PublicKey::EcP256(_) => SignatureAlgorithm::ECDSA,
            PublicKey::Rsa { .. } => SignatureAlgorithm::RSA,
        }
    }
}

#[derive(Debug)]
struct TokenSigner {
    token: Arc<Token>,
    scheme: SignatureScheme,
}

impl Signer for TokenSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        sign(&self.token, self.scheme, message).map_err(|e| rustls::Error::General(e.to_string()))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// A `scheme` signature over `message` made in the token, encoded as TLS
/// wants it. The SHA-256 digest is computed here, so the token only needs
/// the raw mechanisms (CKM_ECDSA, CKM_RSA_PKCS_PSS, CKM_RSA_PKCS), which
/// more modules implement than the hash-and-sign ones.
pub fn sign(token: &Token, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, CertError> {
    let digest = ring::digest::digest(&ring::digest::SHA256, message);
    let lease = token.acquire()?;
    match (token.public_key(), scheme) {
        (PublicKey::EcP256(_), SignatureScheme::ECDSA_NISTP256_SHA256) => {
            der_signature(&lease.sign(&Mechanism::Ecdsa, digest.as_ref())?)
        }
        (PublicKey::Rsa { .. }, SignatureScheme::RSA_PSS_SHA256) => {
            let params = PkcsPssParams {
                hash_alg: MechanismType::SHA256,
                mgf: PkcsMgfType::MGF1_SHA256,
                // Salt as long as the hash: what TLS 1.3 requires (RFC 8446 §4.2.3).
                s_len: Ulong::try_from(digest.as_ref().len()).map_err(|_| CertError::SignFailed)?,
            };
            lease.sign(&Mechanism::RsaPkcsPss(params), digest.as_ref())
        }
        (PublicKey::Rsa { .. }, SignatureScheme::RSA_PKCS1_SHA256) => {
            let mut info = SHA256_DIGEST_INFO.to_vec();
            info.extend_from_slice(digest.as_ref());
            lease.sign(&Mechanism::RsaPkcs, &info)
        }
        _ => Err(CertError::SignFailed),
    }
}

/// `r || s` (32 bytes each) as `SEQUENCE { INTEGER r, INTEGER s }`.
fn der_signature(raw: &[u8]) -> Result<Vec<u8>, CertError> {
    if raw.len() != 64 {
        return Err(CertError::SignFailed);
    }
    let (r, s) = raw.split_at(32);
    let r = der_integer(r);
    let s = der_integer(s);
    // At most 2 * 35 bytes, so every length fits the short form.
    let mut out = vec![
        0x30,
        u8::try_from(r.len() + s.len()).map_err(|_| CertError::SignFailed)?,
    ];
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    Ok(out)
}

fn der_integer(unsigned: &[u8]) -> Vec<u8> {
    let start = unsigned
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(unsigned.len().saturating_sub(1));
    let digits = &unsigned[start..];
    let pad = digits.first().is_some_and(|b| b & 0x80 != 0);
    let len = digits.len() + usize::from(pad);
    let mut out = Vec::with_capacity(len + 2);
    out.push(0x02);
    out.push(len as u8);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}

#[cfg(test)]
mod tests {
    use super::der_signature;

    #[test]
    fn raw_signatures_become_minimal_der_integers() {
        let mut raw = vec![0u8; 64];
        raw[31] = 0x01; // r = 1
        raw[32] = 0x80; // s has its high bit set: needs a zero pad
        let der = der_signature(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 3 + 35, 0x02, 0x01, 0x01]);
        assert_eq!(&der[5..8], &[0x02, 33, 0x00]);
        assert_eq!(der.len(), 2 + 3 + 35);
        assert!(der_signature(&raw[..63]).is_err());
    }
}
