//! The public half of the client key in one comparable form, whether the
//! token reported it (PKCS#11 attributes) or the leaf certificate carries it
//! (SubjectPublicKeyInfo), and the TLS signature schemes each kind can make.
//!
//! Two kinds are supported: ECDSA P-256 and RSA with a 2048–8192-bit
//! modulus (ring's verification range, and below 2048 is no longer safe).

use super::CertError;
use rustls::SignatureScheme;
use x509_parser::public_key::PublicKey as SpkiKey;
use x509_parser::x509::SubjectPublicKeyInfo;

const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const P256_CURVE: &str = "1.2.840.10045.3.1.7";
/// An uncompressed P-256 point: 0x04 || X || Y.
pub(super) const P256_POINT_LEN: usize = 65;
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// A client public key the provider can sign for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// The uncompressed point.
    EcP256(Vec<u8>),
    /// Big-endian modulus and exponent, without leading zero bytes.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
}

impl PublicKey {
    /// An uncompressed P-256 point, or `KeyUnsupported`.
    pub fn ec_p256(point: &[u8]) -> Result<Self, CertError> {
        if point.len() == P256_POINT_LEN && point[0] == 0x04 {
            Ok(Self::EcP256(point.to_vec()))
        } else {
            Err(CertError::KeyUnsupported)
        }
    }

    /// An RSA key from its big-endian integers, or `KeyUnsupported` when the
    /// modulus is outside 2048–8192 bits or the exponent is empty or even.
    pub fn rsa(modulus: &[u8], exponent: &[u8]) -> Result<Self, CertError> {
        let modulus = unsigned(modulus);
        let exponent = unsigned(exponent);
        // The first byte is non-zero, so at most 7 of its bits are leading zeros.
        let bits = modulus
            .first()
            .map_or(0, |b| modulus.len() * 8 - b.leading_zeros() as usize);
        let odd = exponent.last().is_some_and(|b| b & 1 == 1);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) || !odd {
            return Err(CertError::KeyUnsupported);
        }
        Ok(Self::Rsa {
            modulus: modulus.to_vec(),
            exponent: exponent.to_vec(),
        })
    }

    /// The key a certificate's SubjectPublicKeyInfo carries. A key of any
    /// other kind cannot be the token's, so it is a mismatch.
    pub fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, CertError> {
        let algorithm = spki.algorithm.algorithm.to_id_string();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|oid| oid.to_id_string());
        match spki.parsed() {
            Ok(SpkiKey::EC(point))
                if algorithm == EC_PUBLIC_KEY && curve.as_deref() == Some(P256_CURVE) =>
            {
                Self::ec_p256(point.data())
            }
            Ok(SpkiKey::RSA(rsa)) => Self::rsa(rsa.modulus, rsa.exponent),
            _ => Err(CertError::KeyMismatch),
        }
        .map_err(|_| CertError::KeyMismatch)
    }

    /// The TLS 1.2/1.3 schemes this key signs with, preferred first. RSA
    /// prefers PSS: TLS 1.3 forbids PKCS#1 v1.5 in CertificateVerify, so
    /// rustls only offers PKCS#1 when TLS 1.2 was negotiated.
    pub fn schemes(&self) -> &'static [SignatureScheme] {
        match self {
            Self::EcP256(_) => &[SignatureScheme::ECDSA_NISTP256_SHA256],
            Self::Rsa { .. } => &[
                SignatureScheme::RSA_PSS_SHA256,
                SignatureScheme::RSA_PKCS1_SHA256,
            ],
        }
    }

    /// The scheme the signer probe uses: the one TLS 1.3 negotiates.
    pub fn preferred_scheme(&self) -> SignatureScheme {
        match self {
            Self::EcP256(_) => SignatureScheme::ECDSA_NISTP256_SHA256,
            Self::Rsa { .. } => SignatureScheme::RSA_PSS_SHA256,
        }
    }

    /// Whether `signature` over `message` verifies with this key under `scheme`.
    pub fn verifies(&self, scheme: SignatureScheme, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature as sig;
        match (self, scheme) {
            (Self::EcP256(point), SignatureScheme::ECDSA_NISTP256_SHA256) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_ASN1, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (Self::Rsa { modulus, exponent }, scheme) => {
                let algorithm: &sig::RsaParameters = match scheme {
                    SignatureScheme::RSA_PSS_SHA256 => &sig::RSA_PSS_2048_8192_SHA256,
                    SignatureScheme::RSA_PKCS1_SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                    _ => return false,
                };
                sig::RsaPublicKeyComponents {
                    n: modulus,
                    e: exponent,
                }
                .verify(algorithm, message, signature)
                .is_ok()
            }
            _ => false,
        }
    }
}

/// `bytes` without leading zero bytes (DER adds one before a high bit).
fn unsigned(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::{CertError, PublicKey};

    #[test]
    fn rsa_keys_outside_the_supported_sizes_are_refused() {
        let modulus = |bits: usize| {
            let mut m = vec![0xffu8; bits / 8];
            m.insert(0, 0); // a DER-style leading zero is ignored
            m
        };
        assert!(PublicKey::rsa(&modulus(2048), &[1, 0, 1]).is_ok());
        assert!(PublicKey::rsa(&modulus(8192), &[3]).is_ok());
        // A hostile certificate's empty or all-zero modulus is refused,
        // never an underflow of the bit count.
        assert_eq!(
            PublicKey::rsa(&[], &[3]).unwrap_err(),
            CertError::KeyUnsupported
        );
        assert!(PublicKey::rsa(&[0, 0], &[3]).is_err());
        for (bits, exponent) in [
            (1024, &[1u8, 0, 1][..]),
            (8200, &[3]),
            (2048, &[2]),
            (2048, &[]),
        ] {
            assert_eq!(
                PublicKey::rsa(&modulus(bits), exponent).unwrap_err(),
                CertError::KeyUnsupported,
                "{bits} bits, exponent {exponent:?}"
            );
        }
        // Leading zeros never make two equal keys differ.
        assert_eq!(
            PublicKey::rsa(&modulus(2048), &[0, 1, 0, 1]).unwrap(),
            PublicKey::rsa(&modulus(2048)[1..], &[1, 0, 1]).unwrap()
        );
    }

    #[test]
    fn only_uncompressed_p256_points_are_accepted() {
        let mut point = vec![0x04; 65];
        assert!(PublicKey::ec_p256(&point).is_ok());
        point[0] = 0x02;
        assert!(PublicKey::ec_p256(&point).is_err());
        assert!(PublicKey::ec_p256(&[0x04; 33]).is_err());
    }
}
