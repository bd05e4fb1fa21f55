//! Login latency of each auth method against one real OpenBao, in one run:
//! a JWT file, OAuth2 client credentials from a real OpenID provider, and
//! certificate auth with a P-256 and an RSA-2048 key in SoftHSM2; plus the
//! time one PKCS#11 signature (what each TLS handshake of a cert login
//! needs) takes in the token.
//!
//! Each sample is one forced login through a fresh token manager, exactly
//! what `serve` does when its token is gone: the credential read and checked
//! locally, then OpenBao's login endpoint (cert: a fresh mTLS client, so a
//! full handshake with the token's signature each time). The OpenBao HTTPS
//! client is shared, as in `serve`.
//!
//! Run: `cargo bench --bench auth_login` (a table and one JSON line).
//! SoftHSM2 reads `SOFTHSM2_CONF` from the process environment, so the cert
//! part runs in a child process of this bench with it set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use bao_kms_provider::assemble;
use bao_kms_provider::auth::TokenManager;
use bao_kms_provider::auth::cert::{CertLogin, open_token, sign};
use bao_kms_provider::config::{self, Config, FsChecks, NoEnv, Overrides};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::oauth2::Issuer;
use support::openbao::Lab;
use support::pkcs11::{CERT_MOUNT, CERT_ROLE, CLIENT_CN, Ca, KeyKind, SoftHsm, auth_yaml};
use support::provider::{Provider, Setup};

const LOGINS: usize = 50;
const SIGNATURES: usize = 200;
/// Set in the child process: the config to log in with.
const CHILD_CONFIG: &str = "AUTH_BENCH_CERT_CONFIG";

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

fn load(path: &Path) -> Config {
    config::load_file(path, &Overrides::default(), &NoEnv, FsChecks::Skip).unwrap()
}

/// p50 of `LOGINS` logins, each through a manager from `fresh`.
async fn time_logins(fresh: impl Fn() -> Arc<TokenManager>) -> f64 {
    let mut samples = Vec::with_capacity(LOGINS);
    for _ in 0..LOGINS {
        let tokens = fresh();
        let started = Instant::now();
        tokens.token().await.unwrap();
        samples.push(started.elapsed());
    }
    median_ms(samples)
}

/// In the child: cert logins and raw token signatures, printed as
/// `login_ms signature_ms`.
async fn cert_child(config: &Path) {
    let config = load(config);
    let token = Arc::new(open_token(&assemble::pkcs11_settings(&config)).unwrap());
    let settings = assemble::token_settings(&config);
    let login = time_logins(|| {
        TokenManager::with_cert(
            CertLogin::new(
                Arc::clone(&token),
                assemble::cert_login_settings(&config),
                None,
            ),
            &settings,
        )
    })
    .await;
    let scheme = token.public_key().preferred_scheme();
    let mut samples = Vec::with_capacity(SIGNATURES);
    for _ in 0..SIGNATURES {
        let started = Instant::now();
        sign(&token, scheme, b"TLS 1.3, client CertificateVerify").unwrap();
        samples.push(started.elapsed());
    }
    println!("{login:.3} {:.3}", median_ms(samples));
}

/// Runs [`cert_child`] for a token holding a `kind` key.
fn cert_run(lab: &Lab, ca: &Ca, kind: KeyKind) -> (f64, f64) {
    let hsm = SoftHsm::with_key(kind);
    hsm.install_cert(&ca.leaf(hsm.key(), CLIENT_CN, 2090));
    let provider = Provider::prepare(
        lab,
        &Setup {
            auth_yaml: Some(auth_yaml(&hsm, 2, "2m", "1h")),
            secrets: hsm.secrets(),
            ..Setup::quiet(lab)
        },
    );
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_CONFIG, &provider.config)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let numbers: Vec<f64> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (numbers[0], numbers[1])
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if let Some(config) = std::env::var_os(CHILD_CONFIG) {
        runtime.block_on(cert_child(Path::new(&config)));
        return;
    }
    let lab = Lab::start();
    let issuer = Issuer::start();
    issuer.configure_openbao(&lab);
    let ca = Ca::new("kms-client-ca");
    lab.enable_cert_auth(CERT_MOUNT, CERT_ROLE, &ca.pem, CLIENT_CN, "1h");

    let jwt = Provider::prepare(&lab, &Setup::quiet(&lab));
    let oauth2 = Provider::prepare(
        &lab,
        &Setup {
            oauth2: Some(issuer.client("client_secret_basic")),
            ..Setup::quiet(&lab)
        },
    );
    let (jwt_ms, oauth2_ms) = runtime.block_on(async {
        let mut results = Vec::new();
        for provider in [&jwt, &oauth2] {
            let config = load(&provider.config);
            let http = assemble::http_client(&config).unwrap();
            results.push(time_logins(|| assemble::token_manager(&config, &http)).await);
        }
        (results[0], results[1])
    });
    let (p256_ms, p256_sign_ms) = cert_run(&lab, &ca, KeyKind::EcP256);
    let (rsa_ms, rsa_sign_ms) = cert_run(&lab, &ca, KeyKind::Rsa2048);

    println!("login p50 over {LOGINS} logins (ms), one OpenBao, this machine:");
    println!("  jwt file                   {jwt_ms:8.2}");
    println!("  jwt oauth2 (basic)         {oauth2_ms:8.2}");
    println!("  cert pkcs11 P-256          {p256_ms:8.2}");
    println!("  cert pkcs11 RSA-2048       {rsa_ms:8.2}");
    println!("pkcs11 signature p50 over {SIGNATURES} (ms; one per cert-login handshake):");
    println!("  P-256 (CKM_ECDSA)          {p256_sign_ms:8.3}");
    println!("  RSA-2048 (CKM_RSA_PKCS_PSS){rsa_sign_ms:8.3}");
    println!(
        "{{\"logins\":{LOGINS},\"jwt_file_ms\":{jwt_ms:.3},\"oauth2_ms\":{oauth2_ms:.3},\"cert_p256_ms\":{p256_ms:.3},\"cert_rsa2048_ms\":{rsa_ms:.3},\"sign_p256_ms\":{p256_sign_ms:.3},\"sign_rsa2048_ms\":{rsa_sign_ms:.3}}}"
    );
}
