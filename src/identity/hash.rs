//! `HashValue`: the one-way, URL-safe digest used wherever topology must stay out
//! of logs, metrics, annotations and etcd.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `base64url_nopad(SHA-256(s))`, always 43 characters.
pub fn hash_value(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()))
}

/// True when `s` has the shape `hash_value` produces: 43 chars of raw base64url
/// decoding to exactly 32 bytes.
pub(crate) fn is_hash_shaped(s: &str) -> bool {
    s.len() == 43
        && URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .is_ok_and(|bytes| bytes.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_hashes() {
        assert_eq!(
            hash_value("workload-a"),
            "aJ87hdnMZbDZpJ86CnErao3FRzUhv5o8bqc5tCvFGyY"
        );
        assert_eq!(
            hash_value("bao-prod-a"),
            "D1mX5YANszQPDTOv6P3ATTTa_2Nc2_DQtRJO0ArNx1g"
        );
        assert!(is_hash_shaped(&hash_value("x")));
        assert!(!is_hash_shaped("short"));
        assert!(!is_hash_shaped(&"A".repeat(44)));
    }
}
