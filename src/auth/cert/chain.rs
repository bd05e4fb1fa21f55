//! The client certificate chain: read from `certificateFile` (re-read on
//! every handshake and login, so a renewed certificate is used without a
//! restart) and checked locally before a login (`config-cli-auth.md` §3.4).
//!
//! The checks catch what would make OpenBao refuse the login anyway, but with
//! a precise local reason; they never print subjects, serials or paths.

use super::CertError;
use super::public_key::PublicKey;
use crate::auth::secret_file::read_strict;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{PemObject as _, SectionKind};
use std::path::Path;
use std::time::Duration;
use x509_parser::prelude::{FromDer as _, X509Certificate};

const MAX_CHAIN_BYTES: u64 = 1024 * 1024;

/// Signature algorithms no chain may use: MD2/MD5/SHA-1 with RSA, DSA-SHA1, ECDSA-SHA1.
const WEAK_SIGNATURES: &[&str] = &[
    "1.2.840.113549.1.1.2",
    "1.2.840.113549.1.1.4",
    "1.2.840.113549.1.1.5",
    "1.2.840.10040.4.3",
    "1.2.840.10045.4.1",
];

/// Time tolerances of the local checks (`auth.cert.*`).
#[derive(Debug, Clone, Copy)]
pub struct CertChecks {
    pub min_remaining_ttl: Duration,
    pub clock_skew_leeway: Duration,
}

/// What a login needs to know about a chain that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedLeaf {
    /// Unix seconds.
    pub not_after: i64,
    /// The leaf's public key.
    pub public_key: PublicKey,
}

/// The chain in `path`, leaf first: only PEM `CERTIFICATE` blocks, at least one.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let raw = read_strict(path, MAX_CHAIN_BYTES).map_err(CertError::CertificateFile)?;
    let mut chain = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&raw) {
        match section.map_err(|_| CertError::CertificateMalformed)? {
            (SectionKind::Certificate, der) => chain.push(CertificateDer::from(der)),
            _ => return Err(CertError::CertificateMalformed),
        }
    }
    if chain.is_empty() {
        return Err(CertError::CertificateMalformed);
    }
    Ok(chain)
}

/// Validity, remaining lifetime, clientAuth usage and signature strength of
/// `chain` at `now` (unix seconds).
pub fn check_chain(
    chain: &[CertificateDer<'_>],
    checks: CertChecks,
    now: i64,
) -> Result<CheckedLeaf, CertError> {
    let mut parsed = Vec::with_capacity(chain.len());
    for der in chain {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|_| CertError::CertificateMalformed)?;
        parsed.push(cert);
    }
    if parsed
        .iter()
        .any(|c| WEAK_SIGNATURES.contains(&c.signature_algorithm.algorithm.to_id_string().as_str()))
    {
        return Err(CertError::WeakSignature);
    }
    let leaf = parsed.first().ok_or(CertError::CertificateMalformed)?;
    let leeway = seconds(checks.clock_skew_leeway);
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    if now.saturating_add(leeway) < not_before {
        return Err(CertError::NotYetValid);
    }
    if now.saturating_sub(leeway) >= not_after {
        return Err(CertError::Expired);
    }
    if not_after.saturating_sub(now) <= seconds(checks.min_remaining_ttl) {
        return Err(CertError::NearExpiry);
    }
    let usage = leaf
        .extended_key_usage()
        .map_err(|_| CertError::CertificateMalformed)?
        .is_some_and(|eku| eku.value.client_auth || eku.value.any);
    if !usage {
        return Err(CertError::UsageInvalid);
    }
    Ok(CheckedLeaf {
        not_after,
        public_key: PublicKey::from_spki(leaf.public_key())?,
    })
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::{CertChecks, CertificateDer, check_chain};
    use crate::auth::cert::CertError;
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair, date_time_ymd};
    use std::time::Duration;

    const CHECKS: CertChecks = CertChecks {
        min_remaining_ttl: Duration::from_secs(24 * 3600),
        clock_skew_leeway: Duration::from_secs(30),
    };
    /// 2030-01-01T00:00:00Z.
    const NOW: i64 = 1_893_456_000;

    fn leaf(eku: bool, from: (i32, u8, u8), until: (i32, u8, u8)) -> CertificateDer<'static> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        if eku {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        params.not_before = date_time_ymd(from.0, from.1, from.2);
        params.not_after = date_time_ymd(until.0, until.1, until.2);
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn validity_lifetime_and_usage_are_checked_in_order() {
        let ok = check_chain(&[leaf(true, (2029, 1, 1), (2031, 1, 1))], CHECKS, NOW).unwrap();
        assert_eq!(ok.not_after, 1_924_992_000);
        assert!(matches!(ok.public_key, super::PublicKey::EcP256(ref p) if p.len() == 65));
        let cases = [
            (
                leaf(true, (2030, 6, 1), (2031, 1, 1)),
                CertError::NotYetValid,
            ),
            (leaf(true, (2020, 1, 1), (2029, 12, 31)), CertError::Expired),
            // Expiring right now is inside the leeway: near expiry, not expired.
            (
                leaf(true, (2020, 1, 1), (2030, 1, 1)),
                CertError::NearExpiry,
            ),
            (
                leaf(true, (2020, 1, 1), (2030, 1, 2)),
                CertError::NearExpiry,
            ),
            (
                leaf(false, (2029, 1, 1), (2031, 1, 1)),
                CertError::UsageInvalid,
            ),
        ];
        for (cert, expected) in cases {
            assert_eq!(check_chain(&[cert], CHECKS, NOW).unwrap_err(), expected);
        }
        assert_eq!(
            check_chain(&[CertificateDer::from(vec![0x30, 0x00])], CHECKS, NOW).unwrap_err(),
            CertError::CertificateMalformed
        );
    }
}
