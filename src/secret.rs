//! Redacting containers for secrets (tokens, JWTs, plaintext).
//!
//! Redaction is a property of the type: `Debug` prints a fixed marker, there is
//! no `Display`, and the memory is zeroized on drop. Reading the value needs an
//! explicit `expose()`, which makes every use greppable in review.

use std::fmt;
use zeroize::Zeroize;

/// A secret string such as an OpenBao token or a JWT.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The clear value; callers must not log or format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Secret bytes such as a data-encryption seed handed to Encrypt or returned by Decrypt.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(value: Vec<u8>) -> Self {
        Self(value)
    }

    /// The clear value; callers must not log or format it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Hands the bytes over without a copy (e.g. into a protobuf response).
    pub fn into_exposed(mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<redacted {} bytes>)", self.0.len())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A Transit ciphertext (`vault:vN:…`). Not secret by itself, but it must never
/// appear in full in logs or errors, so `Debug` shows only the version prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct Ciphertext(String);

impl Ciphertext {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0.into_bytes()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the non-secret "vault:vN:" prefix is shown.
        let prefix: String = self.0.splitn(3, ':').take(2).collect::<Vec<_>>().join(":");
        write!(f, "Ciphertext({prefix}:<redacted {} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let marker = "MARKER-7f3a";
        assert!(!format!("{:?}", SecretString::new(marker.into())).contains(marker));
        assert!(!format!("{:?}", SecretBytes::new(marker.as_bytes().to_vec())).contains(marker));
        let ct = Ciphertext::new(format!("vault:v3:{marker}"));
        let shown = format!("{ct:?}");
        assert!(!shown.contains(marker), "{shown}");
        assert!(shown.contains("vault:v3"), "{shown}");
    }
}
