//! The PKCS#11 user PIN, read once from `auth.cert.pkcs11.pinFile`.
//!
//! The PIN is read at construction only (a new PIN needs a restart, as in the
//! reference) and lives in a redacting, zeroizing [`SecretString`].

use super::CertError;
use crate::auth::secret_file::read_strict;
use crate::secret::SecretString;
use std::path::Path;

const MAX_PIN_FILE_BYTES: u64 = 4096;

/// Reads the PIN: trailing CR/LF stripped, non-empty, a single line (an
/// interior line break is refused rather than guessed around).
pub fn read_pin(path: &Path) -> Result<SecretString, CertError> {
    parse_pin(&read_strict(path, MAX_PIN_FILE_BYTES).map_err(CertError::PinFile)?)
}

/// The PIN in a PIN file's contents (the rules of [`read_pin`] after the read).
pub fn parse_pin(raw: &[u8]) -> Result<SecretString, CertError> {
    let text = std::str::from_utf8(raw).map_err(|_| CertError::PinMalformed)?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() || text.contains(['\r', '\n']) {
        return Err(CertError::PinMalformed);
    }
    Ok(SecretString::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::read_pin;
    use crate::auth::cert::{CertError, FileError};
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_pin_file_rules_hold() {
        let dir = std::env::temp_dir().join(format!("bao-kms-pin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pin");
        let write = |text: &str, mode: u32| {
            std::fs::write(&file, text).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("1234\r\n", 0o640);
        assert_eq!(read_pin(&file).unwrap().expose(), "1234");
        write("1234\n", 0o644);
        assert_eq!(
            read_pin(&file).unwrap_err(),
            CertError::PinFile(FileError::UnsafePermissions)
        );
        for bad in ["\n", "12\n34\n", ""] {
            write(bad, 0o600);
            assert_eq!(read_pin(&file).unwrap_err(), CertError::PinMalformed);
        }
        write(&"1".repeat(4097), 0o600);
        assert_eq!(
            read_pin(&file).unwrap_err(),
            CertError::PinFile(FileError::TooLarge)
        );
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(
            read_pin(&link).unwrap_err(),
            CertError::PinFile(FileError::Unreadable)
        );
        assert!(read_pin(std::path::Path::new("pin")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
