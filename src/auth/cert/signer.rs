//! The rustls side: a client-certificate resolver that re-reads the chain on
//! every handshake and a signing key whose signatures are made in the token.
//!
//! Signing runs on the thread that drives the handshake. One ECDSA signature
//! in a token is about a millisecond and the wait for a session is bounded,
//! so it stays inline rather than hopping to a blocking thread that rustls'
//! synchronous `Signer` could not await anyway.

use super::hsm::Token;
use super::{CertError, read_chain};
use rustls::client::ResolvesClientCert;
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

const SCHEME: SignatureScheme = SignatureScheme::ECDSA_NISTP256_SHA256;

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
        if !sigschemes.contains(&SCHEME) {
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
        offered
            .contains(&SCHEME)
            .then(|| Box::new(TokenSigner(Arc::clone(&self.0))) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

#[derive(Debug)]
struct TokenSigner(Arc<Token>);

impl Signer for TokenSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        sign_p256(&self.0, message).map_err(|e| rustls::Error::General(e.to_string()))
    }

    fn scheme(&self) -> SignatureScheme {
        SCHEME
    }
}

/// ECDSA P-256 with SHA-256 over `message`, DER-encoded as TLS wants it.
pub fn sign_p256(token: &Token, message: &[u8]) -> Result<Vec<u8>, CertError> {
    let digest = ring::digest::digest(&ring::digest::SHA256, message);
    let raw = token.acquire()?.sign_digest(digest.as_ref())?;
    der_signature(&raw)
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
