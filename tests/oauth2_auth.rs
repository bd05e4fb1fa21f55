//! The OAuth 2.0 client-credentials source against a real OpenID provider
//! (npm `oauth2-mock-server` over loopback HTTPS) and real OpenBao, whose JWT
//! auth reads the provider's discovery document and JWKS: both client auth
//! methods, secret rotation by rename, an issuer outage under a renewable
//! token, the token endpoint's faults as bounded error classes, and the
//! `HTTPS_PROXY` / `NO_PROXY` route to it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::kms::{decrypt, encrypt, status};
use support::leaks;
use support::marked_seed;
use support::oauth2::{Issuer, OAUTH2_MOUNT, rotate_file};
use support::openbao::{JWT_MOUNT, Lab};
use support::provider::{BIN, Provider, Setup};

const OAUTH2_LOGIN: &str = "auth/oauth2-jwt/login";
const RENEW: &str = "auth/token/renew-self";

fn lab_and_issuer() -> (Lab, Issuer) {
    let lab = Lab::start();
    let issuer = Issuer::start();
    issuer.configure_openbao(&lab);
    (lab, issuer)
}

fn oauth2_setup(lab: &Lab, issuer: &Issuer, method: &'static str) -> Setup {
    Setup {
        oauth2: Some(issuer.client(method)),
        ..Setup::quiet(lab)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_client_auth_methods_log_in_and_serve_a_transit_round_trip() {
    for method in ["client_secret_basic", "client_secret_post"] {
        let (lab, issuer) = lab_and_issuer();
        let provider = Provider::start(&lab, &oauth2_setup(&lab, &issuer, method));
        let mut client = provider.client().await;
        let sealed = encrypt(&mut client, 3).await;
        assert_eq!(
            decrypt(&mut client, &sealed).await.unwrap(),
            marked_seed(3),
            "{method}:\n{}",
            provider.logs()
        );
        let requests = issuer.requests();
        assert!(!requests.is_empty(), "{method}: no token request");
        for request in &requests {
            assert_eq!(
                request,
                &format!(
                    "{method} scope=kms openid resources=https://bao.test.local/,urn:test:kms"
                ),
                "one method, scopes joined by a space, one resource per entry"
            );
        }
        assert!(lab.audited_count(OAUTH2_LOGIN) >= 1);
        assert_eq!(
            lab.audited_count(&format!("{JWT_MOUNT}/login")),
            0,
            "never the JWT-file mount"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_secret_rotated_by_rename_is_used_by_the_next_login() {
    let (lab, issuer) = lab_and_issuer();
    let provider = Provider::start(&lab, &oauth2_setup(&lab, &issuer, "client_secret_basic"));
    let mut client = provider.client().await;
    encrypt(&mut client, 4).await;
    let grants = issuer.requests().len();
    let logins = lab.audited_count(OAUTH2_LOGIN);

    // The issuer now refuses the old secret; the operator renames a new
    // file over the configured one.
    let rotated = "rotated-secret-5f0c9a1e7b";
    issuer.accept_secret(rotated);
    rotate_file(&provider.client_secret_file(), &format!("{rotated}\n"));
    // Revoking the token forces the next login (401/403 recovery).
    lab.bao_ok(&["token", "revoke", "-mode=path", &format!("{OAUTH2_MOUNT}/")]);
    encrypt(&mut client, 4).await;
    assert_eq!(issuer.requests().len(), grants + 1, "one fresh grant");
    assert_eq!(lab.audited_count(OAUTH2_LOGIN), logins + 1, "one re-login");
}

/// The `kid` in a JWT's header.
fn kid(jwt: &str) -> String {
    use base64::Engine as _;
    let header = jwt.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_key_rollover_is_picked_up_by_openbao_from_the_jwks() {
    let (lab, issuer) = lab_and_issuer();
    let provider = Provider::start(&lab, &oauth2_setup(&lab, &issuer, "client_secret_basic"));
    let mut client = provider.client().await;
    encrypt(&mut client, 7).await;
    let old_kid = kid(issuer.tokens().last().unwrap());

    issuer.roll_keys();
    lab.bao_ok(&["token", "revoke", "-mode=path", &format!("{OAUTH2_MOUNT}/")]);
    let sealed = encrypt(&mut client, 7).await;
    assert_eq!(decrypt(&mut client, &sealed).await.unwrap(), marked_seed(7));
    let new_kid = kid(issuer.tokens().last().unwrap());
    assert_ne!(
        old_kid, new_kid,
        "the re-login's token is signed by the new key"
    );
    assert_eq!(lab.audited_count(OAUTH2_LOGIN), 2, "{}", provider.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_outage_leaves_the_renewable_openbao_token_in_use() {
    let (lab, mut issuer) = lab_and_issuer();
    issuer.write_role(&lab, "6s");
    let setup = Setup {
        login_before_expiry: "3s",
        renewal_increment: "6s",
        ..oauth2_setup(&lab, &issuer, "client_secret_post")
    };
    let provider = Provider::start(&lab, &setup);
    let mut client = provider.client().await;
    let sealed = encrypt(&mut client, 5).await;
    issuer.stop();

    // Well past the first token's 6 s lease: only renew-self keeps it alive.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(14) {
        assert_eq!(status(&mut client).await.0, "ok", "{}", provider.logs());
        assert_eq!(
            decrypt(&mut client, &sealed).await.unwrap(),
            marked_seed(5),
            "{}",
            provider.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(lab.audited_count(OAUTH2_LOGIN), 1, "no new login needed");
    assert!(lab.audited_count(RENEW) >= 2, "renewed without the issuer");
}

/// Runs `doctor --output json` and scans what it printed for secrets.
fn doctor(provider: &Provider) -> Value {
    let out = doctor_output(provider.config.clone(), &[]);
    scanned_report(provider, &out)
}

fn doctor_output(config: PathBuf, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .args(["doctor", "--output", "json", "--config"])
        .arg(config)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn scanned_report(provider: &Provider, out: &std::process::Output) -> Value {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let found = leaks::scan(&text, &provider.known_secrets());
    assert!(found.is_empty(), "doctor output leaks {found:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn check(report: &Value, id: &str) -> (String, String) {
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"));
    (
        check["status"].as_str().unwrap().to_owned(),
        check["message"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn token_endpoint_faults_are_bounded_classes_and_never_reach_openbao() {
    let (lab, issuer) = lab_and_issuer();
    let provider = Provider::prepare(&lab, &oauth2_setup(&lab, &issuer, "client_secret_basic"));
    let ok = doctor(&provider);
    assert_eq!(check(&ok, "oauth2.local").0, "pass", "{ok:#}");
    assert_eq!(
        check(&ok, "oauth2.acquire"),
        (
            "pass".into(),
            "access token acquired and accepted by OpenBao".into()
        )
    );
    assert_eq!(check(&ok, "openbao.auth").0, "pass");
    let logins = lab.audited_count(OAUTH2_LOGIN);

    for (mode, id, message) in [
        (
            "429",
            "oauth2.acquire",
            "auth failed: oauth2 token endpoint unavailable",
        ),
        (
            "503",
            "oauth2.acquire",
            "auth failed: oauth2 token endpoint unavailable",
        ),
        (
            "redirect",
            "oauth2.acquire",
            "auth failed: oauth2 token request rejected",
        ),
        ("opaque", "openbao.auth", "auth failed: jwt malformed"),
        (
            "wrong-aud",
            "openbao.auth",
            "auth failed: jwt audience mismatch",
        ),
    ] {
        issuer.set_mode(mode);
        let report = doctor(&provider);
        assert_eq!(
            check(&report, id),
            ("fail".into(), message.into()),
            "{mode}: {report:#}"
        );
    }
    assert_eq!(issuer.hits("/elsewhere/token"), 0, "redirect not followed");
    assert_eq!(
        lab.audited_count(OAUTH2_LOGIN),
        logins,
        "a refused access token is never sent to OpenBao"
    );

    // A wrong secret is the issuer's 401: rejected, not unavailable.
    issuer.set_mode("ok");
    issuer.accept_secret("not-the-provider-secret-1d2e");
    assert_eq!(
        check(&doctor(&provider), "oauth2.acquire").1,
        "auth failed: oauth2 token request rejected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unavailable_token_endpoint_is_backed_off_until_it_recovers() {
    let (lab, issuer) = lab_and_issuer();
    issuer.set_mode("503");
    let setup = Setup {
        grace_timeout: "60s",
        retry_interval: "200ms",
        ..oauth2_setup(&lab, &issuer, "client_secret_post")
    };
    let mut provider = Provider::prepare(&lab, &setup);
    provider.spawn();
    std::thread::sleep(Duration::from_secs(6));
    // Backoff 1, 2, 4 s (±25 %): at most 4 grants in 6 s, where the 200 ms
    // bootstrap retry alone would have made 30.
    let attempts = issuer.hits("/token");
    assert!((2..=4).contains(&attempts), "{attempts} token requests");
    let logs = provider.logs();
    assert!(
        logs.contains(r#""status":"oauth2_unavailable""#)
            && logs.contains("auth failed: oauth2 token endpoint unavailable"),
        "the bounded class is logged:\n{logs}"
    );
    assert_eq!(lab.audited_count(OAUTH2_LOGIN), 0);

    issuer.set_mode("ok");
    provider.wait_ready(Duration::from_secs(30));
    let mut client = provider.client().await;
    let sealed = encrypt(&mut client, 6).await;
    assert_eq!(decrypt(&mut client, &sealed).await.unwrap(), marked_seed(6));
}

/// A minimal HTTP CONNECT proxy on loopback: records each request line and
/// splices bytes both ways (TLS stays end to end). Returns its URL.
async fn connect_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if inbound.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let line = text.lines().next().unwrap_or("").to_owned();
                let target = line.split(' ').nth(1).unwrap_or("").to_owned();
                record.lock().unwrap().push(line);
                let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
                if inbound.write_all(ok).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_endpoint_is_reached_through_https_proxy_unless_no_proxy_names_it() {
    let (lab, issuer) = lab_and_issuer();
    let provider = Provider::prepare(&lab, &oauth2_setup(&lab, &issuer, "client_secret_post"));
    let (proxy, seen) = connect_proxy().await;
    let run = |env: Vec<(&'static str, String)>| {
        let config = provider.config.clone();
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            doctor_output(config, &env)
        })
    };

    let out = run(vec![("HTTPS_PROXY", proxy.clone())]).await.unwrap();
    let report = scanned_report(&provider, &out);
    assert_eq!(check(&report, "oauth2.acquire").0, "pass", "{report:#}");
    assert_eq!(check(&report, "transit.probe").0, "pass", "{report:#}");
    let tunnel = format!("CONNECT localhost:{} HTTP/1.1", issuer.port());
    // One tunnel, to the issuer: the OpenBao calls never use the proxy.
    assert_eq!(*seen.lock().unwrap(), vec![tunnel.clone()]);

    let env = vec![
        ("HTTPS_PROXY", proxy.clone()),
        ("NO_PROXY", "localhost".to_owned()),
    ];
    let out = run(env).await.unwrap();
    assert_eq!(
        check(&scanned_report(&provider, &out), "oauth2.acquire").0,
        "pass"
    );
    assert_eq!(*seen.lock().unwrap(), vec![tunnel], "NO_PROXY goes direct");
}
