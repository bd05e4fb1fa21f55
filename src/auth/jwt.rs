//! The JWT file source: safe re-read before every login and local claim checks.
//!
//! Signatures are OpenBao's job; the checks here catch an expired, premature or
//! mis-targeted token before it is sent, with messages that name the failed
//! claim but never its value.

use super::secret_file::{FileError, read_strict};
use crate::secret::SecretString;
use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use std::fmt;
use std::path::Path;
use std::time::Duration;

const MAX_JWT_BYTES: u64 = 1024 * 1024;

/// Why the JWT could not be used. Messages never contain claim values or paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    ReadFailed,
    UnsafePermissions,
    Changed,
    TooLarge,
    Malformed,
    NotYetValid,
    IssuedInFuture,
    IssuerMismatch,
    AudienceMismatch,
    SubjectMismatch,
    Expired,
    NearExpiry,
}

impl JwtError {
    /// Bounded status label for logs and metrics.
    pub fn status(self) -> &'static str {
        match self {
            Self::Expired => "jwt_expired",
            Self::NearExpiry => "jwt_near_expiry",
            _ => "jwt_invalid",
        }
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReadFailed => "jwt read failed: file must exist and be a readable regular file",
            Self::UnsafePermissions => {
                "jwt read failed: file permissions unsafe: mode must not include 0037"
            }
            Self::Changed => "jwt read failed: identity file changed while opening",
            Self::TooLarge => "jwt read failed: file too large",
            Self::Malformed => "jwt malformed",
            Self::NotYetValid => "jwt not yet valid",
            Self::IssuedInFuture => "jwt issued in future",
            Self::IssuerMismatch => "jwt issuer mismatch",
            Self::AudienceMismatch => "jwt audience mismatch",
            Self::SubjectMismatch => "jwt subject mismatch",
            Self::Expired => "jwt expired",
            Self::NearExpiry => "jwt near expiry",
        })
    }
}

impl std::error::Error for JwtError {}

/// Reads the JWT file, refusing symlinks, non-regular files, unsafe modes and
/// a file swapped between the checks and the open.
pub fn read_jwt_file(path: &Path) -> Result<SecretString, JwtError> {
    let raw = read_strict(path, MAX_JWT_BYTES).map_err(|e| match e {
        FileError::Unreadable => JwtError::ReadFailed,
        FileError::UnsafePermissions => JwtError::UnsafePermissions,
        FileError::Changed => JwtError::Changed,
        FileError::TooLarge => JwtError::TooLarge,
    })?;
    let text = std::str::from_utf8(&raw)
        .map_err(|_| JwtError::Malformed)?
        .trim();
    if text.is_empty() || text.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(JwtError::Malformed);
    }
    Ok(SecretString::new(text.to_owned()))
}

/// Expected claims and time tolerances (`auth.jwt.*`).
#[derive(Debug, Clone, Default)]
pub struct JwtChecks {
    pub expected_issuer: String,
    pub expected_audience: Vec<String>,
    pub expected_subject: String,
    pub min_remaining_ttl: Duration,
    pub clock_skew_leeway: Duration,
}

#[derive(Default)]
pub(crate) struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Vec<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

fn decode_segment(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .or_else(|_| URL_SAFE.decode(segment))
        .ok()
}

pub(crate) fn parse_claims(jwt: &str) -> Result<Claims, JwtError> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, payload, _signature] = parts.as_slice() else {
        return Err(JwtError::Malformed);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(JwtError::Malformed);
    }
    let bytes = decode_segment(payload).ok_or(JwtError::Malformed)?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
    let object = value.as_object().ok_or(JwtError::Malformed)?;
    let string = |name: &str| -> Result<Option<String>, JwtError> {
        match object.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(JwtError::Malformed),
        }
    };
    let number = |name: &str| -> Result<Option<i64>, JwtError> {
        match object.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .filter(|n| *n >= 0)
                .map(Some)
                .ok_or(JwtError::Malformed),
        }
    };
    let aud = match object.get("aud") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(JwtError::Malformed))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(JwtError::Malformed),
    };
    let claims = Claims {
        iss: string("iss")?,
        sub: string("sub")?,
        aud,
        exp: number("exp")?,
        nbf: number("nbf")?,
        iat: number("iat")?,
    };
    if claims.exp.is_none() {
        return Err(JwtError::Malformed);
    }
    Ok(claims)
}

/// Checks the claims of `jwt` at wall-clock `now` (Unix seconds), in the
/// reference's order. Returns the remaining lifetime on success.
pub fn validate_claims(
    jwt: &SecretString,
    checks: &JwtChecks,
    now: i64,
) -> Result<Duration, JwtError> {
    let claims = parse_claims(jwt.expose())?;
    let leeway = i64::try_from(checks.clock_skew_leeway.as_secs()).unwrap_or(i64::MAX);
    let min_ttl = i64::try_from(checks.min_remaining_ttl.as_secs()).unwrap_or(i64::MAX);
    if claims
        .nbf
        .is_some_and(|nbf| now.saturating_add(leeway) < nbf)
    {
        return Err(JwtError::NotYetValid);
    }
    if claims
        .iat
        .is_some_and(|iat| now.saturating_add(leeway) < iat)
    {
        return Err(JwtError::IssuedInFuture);
    }
    if !checks.expected_issuer.is_empty()
        && claims.iss.as_deref() != Some(checks.expected_issuer.as_str())
    {
        return Err(JwtError::IssuerMismatch);
    }
    if !checks.expected_audience.is_empty()
        && !checks
            .expected_audience
            .iter()
            .any(|a| claims.aud.contains(a))
    {
        return Err(JwtError::AudienceMismatch);
    }
    if !checks.expected_subject.is_empty()
        && claims.sub.as_deref() != Some(checks.expected_subject.as_str())
    {
        return Err(JwtError::SubjectMismatch);
    }
    let exp = claims.exp.unwrap_or(0);
    if now.saturating_sub(leeway) >= exp {
        return Err(JwtError::Expired);
    }
    let remaining = exp.saturating_sub(now);
    if remaining <= min_ttl {
        return Err(JwtError::NearExpiry);
    }
    Ok(Duration::from_secs(u64::try_from(remaining).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn token(claims: serde_json::Value) -> SecretString {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        SecretString::new(format!("{header}.{payload}.c2ln"))
    }

    fn checks() -> JwtChecks {
        JwtChecks {
            expected_issuer: "https://issuer".into(),
            expected_audience: vec!["bao-kms-provider".into()],
            expected_subject: "sub-a".into(),
            min_remaining_ttl: Duration::from_secs(120),
            clock_skew_leeway: Duration::from_secs(30),
        }
    }

    const NOW: i64 = 1_800_000_000;

    fn good() -> serde_json::Value {
        serde_json::json!({"iss": "https://issuer", "aud": ["x", "bao-kms-provider"], "sub": "sub-a",
            "exp": NOW + 3600, "nbf": NOW - 10, "iat": NOW - 10})
    }

    #[test]
    fn accepts_a_good_token_and_reports_its_lifetime() {
        assert_eq!(
            validate_claims(&token(good()), &checks(), NOW),
            Ok(Duration::from_secs(3600))
        );
        let mut single = good();
        single["aud"] = "bao-kms-provider".into();
        assert!(validate_claims(&token(single), &checks(), NOW).is_ok());
    }

    #[test]
    fn each_claim_failure_is_named_in_order() {
        let cases = [
            ("nbf", serde_json::json!(NOW + 31), JwtError::NotYetValid),
            ("iat", serde_json::json!(NOW + 31), JwtError::IssuedInFuture),
            (
                "iss",
                serde_json::json!("https://other"),
                JwtError::IssuerMismatch,
            ),
            (
                "aud",
                serde_json::json!(["nope"]),
                JwtError::AudienceMismatch,
            ),
            ("sub", serde_json::json!("sub-b"), JwtError::SubjectMismatch),
            ("exp", serde_json::json!(NOW - 31), JwtError::Expired),
            ("exp", serde_json::json!(NOW - 29), JwtError::NearExpiry),
            ("exp", serde_json::json!(NOW + 120), JwtError::NearExpiry),
            ("exp", serde_json::Value::Null, JwtError::Malformed),
            ("exp", serde_json::json!(-5), JwtError::Malformed),
            ("aud", serde_json::json!(5), JwtError::Malformed),
        ];
        for (claim, value, expected) in cases {
            let mut claims = good();
            claims[claim] = value;
            assert_eq!(
                validate_claims(&token(claims), &checks(), NOW),
                Err(expected),
                "{claim}"
            );
        }
        // Leeway tolerates a slightly future nbf.
        let mut claims = good();
        claims["nbf"] = serde_json::json!(NOW + 29);
        assert!(validate_claims(&token(claims), &checks(), NOW).is_ok());
    }

    #[test]
    fn extreme_claims_and_clocks_do_not_overflow() {
        let mut claims = good();
        claims["exp"] = serde_json::json!(i64::MAX);
        claims["nbf"] = serde_json::json!(0);
        claims["iat"] = serde_json::json!(0);
        let far = Duration::from_secs(u64::try_from(i64::MAX).unwrap());
        assert_eq!(
            validate_claims(&token(claims.clone()), &checks(), 0),
            Ok(far)
        );
        // A wall clock before 1970 must not overflow `exp - now` either.
        assert_eq!(validate_claims(&token(claims), &checks(), -1), Ok(far));
    }

    #[test]
    fn malformed_shapes() {
        for raw in [
            "",
            "a.b",
            "a.b.c.d",
            ".e30.x",
            "a..x",
            "a.!!!.x",
            "a.bm90anNvbg.x",
        ] {
            assert_eq!(
                validate_claims(&SecretString::new(raw.into()), &checks(), NOW),
                Err(JwtError::Malformed),
                "{raw}"
            );
        }
    }

    #[test]
    fn errors_never_show_values() {
        let mut claims = good();
        claims["iss"] = "MARKER-issuer".into();
        let err = validate_claims(&token(claims), &checks(), NOW).unwrap_err();
        assert!(!err.to_string().contains("MARKER"));
    }

    #[test]
    fn file_checks() {
        let dir = std::env::temp_dir().join(format!("jwt-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, format!("  {}\n", token(good()).expose())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(read_jwt_file(&path).unwrap(), token(good()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_jwt_file(&path), Err(JwtError::UnsafePermissions));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read_jwt_file(&link), Err(JwtError::ReadFailed));
        std::fs::write(&path, "a b.c").unwrap();
        assert_eq!(read_jwt_file(&path), Err(JwtError::Malformed));
        assert_eq!(read_jwt_file(&dir), Err(JwtError::ReadFailed));
        assert_eq!(
            read_jwt_file(Path::new("relative")),
            Err(JwtError::ReadFailed)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
