//! Certificate auth with a PKCS#11 key against real parts: a SoftHSM2 token
//! per test, certificates from an rcgen CA, OpenBao's cert auth method on the
//! lab's TLS listener, and the provider binary over its real socket.
//!
//! The attacks (expired leaf, a SHA-1-signed leaf, a leaf for another key, a
//! CA OpenBao does not trust, a wrong PIN, a world-readable PIN file) run
//! through `doctor` and `serve`, which share the login code; pool exhaustion
//! and the two RSA schemes run the library in a child process, because the
//! module reads `SOFTHSM2_CONF` from the process environment and these tests
//! may not set variables in their own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bao_kms_provider::auth::cert::{CertError, Pkcs11Settings, PublicKey, Token, open_token, sign};
use rustls::SignatureScheme;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::http::{http, value};
use support::kms::{decrypt, encrypt, try_encrypt};
use support::openbao::Lab;
use support::pkcs11::{
    CERT_MOUNT, CERT_ROLE, CLIENT_CN, Ca, KEY_LABEL, KeyKind, MODULE, RENEWED_CN, SoftHsm,
    TOKEN_LABEL, auth_yaml, chmod,
};
use support::provider::{Provider, Setup};

const BIN: &str = env!("CARGO_BIN_EXE_bao-kms-provider");
const LOGIN: &str = "auth/k8s-cert/login";
const RENEW: &str = "auth/token/renew-self";

/// A lab whose cert role trusts `ca` for both client names.
fn lab_trusting(ca: &Ca, ttl: &str) -> Lab {
    let lab = Lab::start();
    lab.enable_cert_auth(
        CERT_MOUNT,
        CERT_ROLE,
        &ca.pem,
        &format!("{CLIENT_CN},{RENEWED_CN}"),
        ttl,
    );
    lab
}

/// A lab trusting a fresh CA (tokens of `ttl`) and a token holding a `kind`
/// key with a CLIENT_CN leaf from that CA installed.
fn enrolled(ttl: &str, kind: KeyKind) -> (Ca, Lab, SoftHsm) {
    let ca = Ca::new("kms-client-ca");
    let lab = lab_trusting(&ca, ttl);
    let hsm = SoftHsm::with_key(kind);
    hsm.install_cert(&ca.leaf(hsm.key(), CLIENT_CN, 2090));
    (ca, lab, hsm)
}

fn setup(lab: &Lab, hsm: &SoftHsm, max_sessions: u32) -> Setup {
    Setup {
        auth_yaml: Some(auth_yaml(hsm, max_sessions, "2s", "4s")),
        env: vec![(
            "SOFTHSM2_CONF".into(),
            hsm.conf.to_str().unwrap().to_owned(),
        )],
        secrets: hsm.secrets(),
        login_before_expiry: "2s",
        renewal_increment: "4s",
        ..Setup::quiet(lab)
    }
}

fn scrape(provider: &Provider) -> String {
    let (code, body) = http("GET", &provider.metrics_address, "/metrics");
    assert_eq!(code, 200);
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn cert_login_renewal_and_a_transit_round_trip_through_the_socket() {
    let (_ca, lab, hsm) = enrolled("4s", KeyKind::EcP256);
    let provider = Provider::start(&lab, &setup(&lab, &hsm, 3));
    let mut client = provider.client().await;
    let sealed = encrypt(&mut client, 1).await;
    assert_eq!(
        decrypt(&mut client, &sealed).await.unwrap(),
        support::marked_seed(1)
    );
    // Token TTL 4 s, refresh 2 s ahead: renewals over the same mTLS client.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(7) {
        try_encrypt(&mut client, 2)
            .await
            .unwrap_or_else(|e| panic!("{}:\n{}", e.message(), provider.logs()));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(lab.audited_count(LOGIN) >= 1);
    assert!(
        lab.audited_count(RENEW) >= 2,
        "renew-self ahead of expiry: {}",
        lab.audited_count(RENEW)
    );
    let metrics = scrape(&provider);
    assert_eq!(
        value(&metrics, r#"openbao_kms_auth_method_info{method="cert"}"#),
        1.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"openbao_kms_certificate_source_info{source="pkcs11"}"#
        ),
        1.0
    );
    let ttl = value(&metrics, "openbao_kms_certificate_ttl_seconds");
    let until_2090 = 3_786_912_000.0 - now_unix();
    assert!((ttl - until_2090).abs() < 120.0, "{ttl} vs {until_2090}");
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_file_is_used_by_the_next_login_without_restart() {
    let (ca, lab, hsm) = enrolled("1h", KeyKind::EcP256);
    let provider = Provider::start(&lab, &setup(&lab, &hsm, 3));
    let mut client = provider.client().await;
    encrypt(&mut client, 1).await;
    assert!(lab_logins_as(&lab, CLIENT_CN) >= 1);
    assert_eq!(lab_logins_as(&lab, RENEWED_CN), 0);

    hsm.install_cert(&ca.leaf(hsm.key(), RENEWED_CN, 2095));
    // Revoking the token forces the next request to log in again.
    lab.bao_ok(&["token", "revoke", "-mode=path", &format!("{CERT_MOUNT}/")]);
    let logins = lab.audited_count(LOGIN);
    encrypt(&mut client, 2).await;
    assert_eq!(lab.audited_count(LOGIN), logins + 1, "one recovery login");
    assert_eq!(
        lab_logins_as(&lab, RENEWED_CN),
        1,
        "the new login presented the renewed certificate"
    );
    let ttl = value(&scrape(&provider), "openbao_kms_certificate_ttl_seconds");
    assert!(
        ttl > 3_900_000_000.0 - now_unix(),
        "TTL of the 2095 leaf: {ttl}"
    );
}

/// Successful cert logins OpenBao attributes to certificate common name `cn`.
fn lab_logins_as(lab: &Lab, cn: &str) -> usize {
    let log = std::fs::read_to_string(lab.audit_log()).unwrap();
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["type"] == "response"
                && e["request"]["path"] == LOGIN
                && e["auth"]["metadata"]["common_name"] == cn
        })
        .count()
}

/// `doctor --output json` with the provider's config and environment:
/// (exit code, id → (status, message)). Its output is scanned for secrets.
fn doctor(provider: &Provider, hsm: &SoftHsm) -> (i32, Vec<(String, String, String)>) {
    let out = Command::new(BIN)
        .args(["doctor", "--output", "json", "--config"])
        .arg(&provider.config)
        .env_clear()
        .env("SOFTHSM2_CONF", &hsm.conf)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut known = hsm.secrets();
    known.extra = vec![CLIENT_CN.into(), hsm.dir().to_str().unwrap().into()];
    let found = support::leaks::scan(&text, &known);
    assert!(found.is_empty(), "doctor output leaks {found:?}");
    let Ok(report) = serde_json::from_slice::<Value>(&out.stdout) else {
        return (
            out.status.code().unwrap_or(-1),
            vec![("stderr".into(), "fail".into(), text)],
        );
    };
    let checks = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
                c["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    (out.status.code().unwrap_or(-1), checks)
}

fn check<'a>(checks: &'a [(String, String, String)], id: &str) -> (&'a str, &'a str) {
    checks
        .iter()
        .find(|c| c.0 == id)
        .map(|c| (c.1.as_str(), c.2.as_str()))
        .unwrap_or_else(|| panic!("no check {id} in {checks:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_every_cert_check_and_logs_in() {
    let (_ca, lab, hsm) = enrolled("1h", KeyKind::EcP256);
    let provider = Provider::prepare(&lab, &setup(&lab, &hsm, 2));
    let (_, checks) = doctor(&provider, &hsm);
    for id in [
        "auth.cert.pkcs11",
        "auth.cert.local",
        "auth.cert.signer",
        "openbao.auth",
    ] {
        assert_eq!(check(&checks, id).0, "pass", "{id}: {checks:?}");
    }
}

/// An RSA key in the token: OpenBao negotiates TLS 1.3, so the handshake's
/// CertificateVerify is RSA-PSS made in the token; doctor's probe agrees.
#[tokio::test(flavor = "multi_thread")]
async fn an_rsa_key_logs_in_with_pss_signatures_made_in_the_token() {
    let (ca, lab, hsm) = enrolled("1h", KeyKind::Rsa2048);
    let provider = Provider::start(&lab, &setup(&lab, &hsm, 2));
    let mut client = provider.client().await;
    let sealed = encrypt(&mut client, 1).await;
    assert_eq!(
        decrypt(&mut client, &sealed).await.unwrap(),
        support::marked_seed(1)
    );
    assert_eq!(lab_logins_as(&lab, CLIENT_CN), 1);
    let (code, checks) = doctor(&provider, &hsm);
    assert_eq!(code, 0, "{checks:?}");
    assert_eq!(check(&checks, "auth.cert.signer").0, "pass");

    // A leaf for a different RSA key is still caught before any login.
    let other = SoftHsm::with_key(KeyKind::Rsa2048);
    hsm.install_cert(&ca.leaf(other.key(), CLIENT_CN, 2090));
    let (_, checks) = doctor(&provider, &hsm);
    assert_eq!(
        check(&checks, "auth.cert.signer"),
        (
            "fail",
            "certificate public key does not match the pkcs11 key"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_attacks_fail_with_bounded_reasons() {
    let ca = Ca::new("kms-client-ca");
    let lab = lab_trusting(&ca, "1h");
    let hsm = SoftHsm::new();
    let provider = Provider::prepare(&lab, &setup(&lab, &hsm, 2));

    // Expired leaf for the right key.
    hsm.install_cert(&ca.leaf_between(hsm.key(), CLIENT_CN, 2000, 2001));
    let (code, checks) = doctor(&provider, &hsm);
    assert_ne!(code, 0);
    assert_eq!(
        check(&checks, "auth.cert.local"),
        ("fail", "certificate expired")
    );

    // Our key, but the CA signed it with ECDSA-SHA1.
    hsm.install_cert(&ca.sha1_leaf(hsm.key(), CLIENT_CN, hsm.dir()));
    let (_, checks) = doctor(&provider, &hsm);
    assert_eq!(
        check(&checks, "auth.cert.local"),
        ("fail", "certificate weak signature")
    );

    // A valid leaf, but for a key the token does not hold.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    hsm.install_cert(&ca.leaf(&other, CLIENT_CN, 2090));
    let (_, checks) = doctor(&provider, &hsm);
    assert_eq!(
        check(&checks, "auth.cert.signer"),
        (
            "fail",
            "certificate public key does not match the pkcs11 key"
        )
    );
    // No login is attempted with a credential that failed locally.
    assert_eq!(check(&checks, "openbao.auth").0, "skip");

    // Our key, signed by a CA OpenBao does not trust: only OpenBao can refuse.
    let rogue = Ca::new("rogue-ca");
    hsm.install_cert(&rogue.leaf(hsm.key(), CLIENT_CN, 2090));
    let (_, checks) = doctor(&provider, &hsm);
    assert_eq!(check(&checks, "auth.cert.signer").0, "pass");
    let (status, message) = check(&checks, "openbao.auth");
    assert_eq!(status, "fail");
    assert!(
        message.starts_with("auth failed: openbao cert login failed"),
        "{message}"
    );

    // The serving provider refuses the same way, before asking OpenBao:
    // no token, so bootstrap ends unhealthy and the process exits.
    hsm.install_cert(&ca.leaf_between(hsm.key(), CLIENT_CN, 2000, 2001));
    let logins = lab.audited_count(LOGIN);
    let mut serving = Provider::prepare(
        &lab,
        &Setup {
            grace_timeout: "2s",
            ..setup(&lab, &hsm, 2)
        },
    );
    serving.spawn();
    assert!(!serving.wait_exit(Duration::from_secs(30)).success());
    assert!(
        serving.logs().contains("certificate expired"),
        "{}",
        serving.logs()
    );
    assert_eq!(lab.audited_count(LOGIN), logins, "refused locally");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_pin_and_an_unsafe_pin_file_are_refused_without_printing_the_pin() {
    let (_ca, lab, hsm) = enrolled("1h", KeyKind::EcP256);
    let mut provider = Provider::prepare(&lab, &setup(&lab, &hsm, 2));

    std::fs::write(&hsm.pin_file, "not-the-pin\n").unwrap();
    let (_, checks) = doctor(&provider, &hsm);
    assert_eq!(
        check(&checks, "auth.cert.pkcs11"),
        ("fail", "pkcs11 login failed")
    );
    provider.spawn();
    let status = provider.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    assert!(
        provider.logs().contains("pkcs11 login failed"),
        "{}",
        provider.logs()
    );
    // The wrong PIN is a secret too.
    assert!(!provider.logs().contains("not-the-pin"));

    std::fs::write(&hsm.pin_file, format!("{}\n", hsm.pin)).unwrap();
    chmod(&hsm.pin_file, 0o644);
    provider.spawn();
    let status = provider.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    let logs = provider.logs();
    assert!(logs.contains("pinFile"), "{logs}");
}

/// Runs the ignored test `child` in a child process with `hsm`'s
/// `SOFTHSM2_CONF` and asserts it ran and passed.
fn run_child(child: &str, hsm: &SoftHsm) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--ignored", "--nocapture"])
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("CHILD_PIN_FILE", &hsm.pin_file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran: {text}");
}

fn child_settings(max_sessions: u32) -> Pkcs11Settings {
    Pkcs11Settings {
        module_path: MODULE.into(),
        token_label: TOKEN_LABEL.into(),
        key_label: KEY_LABEL.into(),
        pin_file: std::env::var_os("CHILD_PIN_FILE").unwrap().into(),
        max_sessions,
        session_wait: Duration::from_millis(300),
    }
}

fn probe_sign(token: &Token, message: &[u8]) -> Result<Vec<u8>, CertError> {
    sign(token, token.public_key().preferred_scheme(), message)
}

/// Pool exhaustion, run in a child process with the token's `SOFTHSM2_CONF`.
#[test]
fn an_exhausted_session_pool_fails_signing_within_the_bound_and_never_hangs() {
    run_child("pool_child", &SoftHsm::new());
}

#[test]
#[ignore = "run by an_exhausted_session_pool_fails_signing_within_the_bound_and_never_hangs"]
fn pool_child() {
    // One session is reserved: one signature at a time.
    let settings = child_settings(2);
    let token = Arc::new(open_token(&settings).unwrap());
    let held = token.acquire().unwrap();
    let started = Instant::now();
    assert_eq!(
        probe_sign(&token, b"x").unwrap_err(),
        CertError::NoUsableSession
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    drop(held);
    // Concurrent signers queue for the one session; all finish within the bound.
    let signers: Vec<_> = (0..8)
        .map(|_| {
            let token = Arc::clone(&token);
            std::thread::spawn(move || probe_sign(&token, b"probe"))
        })
        .collect();
    for signer in signers {
        signer.join().unwrap().unwrap();
    }
    // A pool of one reserved session only cannot sign at all.
    let none = Token::open(
        &child_settings(1),
        &bao_kms_provider::secret::SecretString::new(String::new()),
    );
    assert_eq!(none.unwrap_err(), CertError::NoUsableSession);
}

/// Both RSA schemes, signed in SoftHSM2 and verified with the public key
/// alone: PSS (TLS 1.3 and OpenBao's choice in 1.2) and PKCS#1 v1.5 (what a
/// TLS 1.2 server that offers no PSS gets), never ECDSA from an RSA key.
#[test]
fn rsa_signatures_made_in_the_token_verify_for_pss_and_pkcs1() {
    run_child("rsa_child", &SoftHsm::with_key(KeyKind::Rsa2048));
}

#[test]
#[ignore = "run by rsa_signatures_made_in_the_token_verify_for_pss_and_pkcs1"]
fn rsa_child() {
    let token = open_token(&child_settings(2)).unwrap();
    let key = token.public_key().clone();
    assert!(matches!(key, PublicKey::Rsa { ref modulus, .. } if modulus.len() == 256));
    let message = b"TLS 1.3, client CertificateVerify";
    for scheme in [
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PKCS1_SHA256,
    ] {
        let signature = sign(&token, scheme, message).unwrap();
        assert!(key.verifies(scheme, message, &signature), "{scheme:?}");
        assert!(!key.verifies(scheme, b"another message", &signature));
    }
    // PSS is salted: two signatures of one message differ, both verify.
    let a = sign(&token, SignatureScheme::RSA_PSS_SHA256, message).unwrap();
    let b = sign(&token, SignatureScheme::RSA_PSS_SHA256, message).unwrap();
    assert_ne!(a, b);
    assert_eq!(
        sign(&token, SignatureScheme::ECDSA_NISTP256_SHA256, message).unwrap_err(),
        CertError::SignFailed
    );
}
