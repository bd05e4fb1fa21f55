//! Fail-closed behaviour against a real OpenBao: bad TLS, bad credentials,
//! unsafe key settings, socket collisions, and OpenBao going away mid-run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bao_kms_provider::kms::proto::key_management_service_client::KeyManagementServiceClient;
use bao_kms_provider::kms::proto::{DecryptRequest, EncryptRequest, StatusRequest};
use std::time::{Duration, Instant};
use support::jwt::{Claims, now_unix};
use support::marked_seed;
use support::openbao::{KEY_NAME, Lab, TRANSIT_MOUNT};
use support::provider::{Provider, Setup};
use tonic::Code;
use tonic::transport::Channel;

const EXIT_CONFIG: i32 = 3;
const EXIT_RUNTIME: i32 = 5;

/// Starts a provider that must refuse to come up; returns its exit code and logs.
fn refused(lab: &Lab, setup: &Setup) -> (i32, String, Provider) {
    let mut provider = Provider::prepare(lab, setup);
    provider.spawn();
    let status = provider.wait_exit(Duration::from_secs(30));
    assert!(
        !provider.socket.exists(),
        "a refused start must not leave a socket"
    );
    (status.code().unwrap_or(-1), provider.logs(), provider)
}

fn one_attempt(lab: &Lab) -> Setup {
    Setup {
        grace_timeout: "0s",
        ..Setup::new(lab)
    }
}

fn other_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let path = dir.join("other-ca.pem");
    std::fs::write(&path, cert.pem()).unwrap();
    path
}

#[test]
fn wrong_ca_and_wrong_server_name_fail_tls_closed() {
    let lab = Lab::start();
    let (code, logs, _p) = refused(
        &lab,
        &Setup {
            ca_file: other_ca(lab.dir()),
            ..one_attempt(&lab)
        },
    );
    assert_eq!(code, EXIT_RUNTIME, "{logs}");
    assert!(logs.contains("bootstrap probes did not succeed"), "{logs}");
    assert!(logs.contains("tls_failed"), "{logs}");

    let (code, logs, _p) = refused(
        &lab,
        &Setup {
            tls_server_name: "wrong.example.test".into(),
            ..one_attempt(&lab)
        },
    );
    assert_eq!(code, EXIT_RUNTIME, "{logs}");
    assert!(logs.contains("tls_failed"), "{logs}");
}

#[test]
fn bad_jwts_are_refused_locally_without_leaking_them() {
    let lab = Lab::start();
    let now = now_unix();
    let expired = Claims {
        exp: now - 120,
        iat: Some(now - 3600),
        nbf: Some(now - 3600),
        ..Claims::valid_for(Duration::from_secs(60))
    };
    let (code, logs, provider) = refused(
        &lab,
        &Setup {
            jwt_claims: expired,
            ..one_attempt(&lab)
        },
    );
    assert_eq!(code, EXIT_RUNTIME, "{logs}");
    assert!(logs.contains("jwt expired"), "{logs}");
    provider.assert_output_free_of(&[]);

    let wrong_audience = Claims {
        aud: vec!["someone-else".into()],
        ..Claims::valid_for(Duration::from_secs(3600))
    };
    let (code, logs, provider) = refused(
        &lab,
        &Setup {
            jwt_claims: wrong_audience,
            ..one_attempt(&lab)
        },
    );
    assert_eq!(code, EXIT_RUNTIME, "{logs}");
    assert!(logs.contains("jwt audience mismatch"), "{logs}");
    assert!(
        !logs.contains("someone-else"),
        "claim values are never shown"
    );
    provider.assert_output_free_of(&[]);
}

#[test]
fn unsafe_transit_settings_keep_the_socket_closed() {
    let lab = Lab::start();
    lab.bao_ok(&[
        "write",
        &format!("{TRANSIT_MOUNT}/config/keys"),
        "disable_upsert=false",
    ]);
    let (code, logs, _p) = refused(&lab, &one_attempt(&lab));
    assert_eq!(code, EXIT_RUNTIME, "{logs}");
    assert!(logs.contains("upsert_allowed"), "{logs}");
    lab.bao_ok(&[
        "write",
        &format!("{TRANSIT_MOUNT}/config/keys"),
        "disable_upsert=true",
    ]);

    lab.bao_ok(&[
        "write",
        &format!("{TRANSIT_MOUNT}/keys/{KEY_NAME}/config"),
        "exportable=true",
    ]);
    let (code, logs, _p) = refused(&lab, &one_attempt(&lab));
    assert_eq!(code, EXIT_RUNTIME, "{logs}");
    assert!(logs.contains("profile_invalid"), "{logs}");
}

#[test]
fn a_rotated_key_without_durable_state_is_refused() {
    let lab = Lab::start();
    lab.bao_ok(&[
        "write",
        "-f",
        &format!("{TRANSIT_MOUNT}/keys/{KEY_NAME}/rotate"),
    ]);
    let (code, logs, provider) = refused(&lab, &one_attempt(&lab));
    assert_eq!(code, EXIT_RUNTIME, "{logs}");
    assert!(logs.contains("state_unavailable"), "{logs}");
    // verify-key explains the same: no state, and no first-install bootstrap.
    let out = std::process::Command::new(support::provider::BIN)
        .args(["verify-key", "--config"])
        .arg(&provider.config)
        .env_clear()
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{report}");
    assert!(
        report.contains("[warn] registry.state: Local key registry state - state file is absent; auto-bootstrap eligible=false: state_unavailable"),
        "{report}"
    );
    assert!(report.contains("[fail] key_id.deterministic"), "{report}");
}

#[test]
fn socket_collisions_and_unsafe_directories_are_refused() {
    let lab = Lab::start();
    // A live peer on the socket is never taken over.
    let prepared = Provider::prepare(&lab, &one_attempt(&lab));
    let _peer = std::os::unix::net::UnixListener::bind(&prepared.socket).unwrap();
    let mut provider = prepared;
    provider.spawn();
    let code = provider.wait_exit(Duration::from_secs(30)).code();
    assert_eq!(code, Some(EXIT_RUNTIME), "{}", provider.logs());
    assert!(
        provider.logs().contains("another process is serving"),
        "{}",
        provider.logs()
    );
    assert!(
        provider.socket.exists(),
        "the live peer's socket is left alone"
    );

    // A group-writable socket directory is refused before anything else.
    let mut provider = Provider::prepare(&lab, &one_attempt(&lab));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        provider.socket_dir.path(),
        std::fs::Permissions::from_mode(0o770),
    )
    .unwrap();
    provider.spawn();
    let code = provider.wait_exit(Duration::from_secs(30)).code();
    assert_eq!(code, Some(EXIT_CONFIG), "{}", provider.logs());
    assert!(
        provider.logs().contains("group-writable"),
        "{}",
        provider.logs()
    );
}

#[test]
fn a_stale_socket_is_reclaimed() {
    let lab = Lab::start();
    let mut provider = Provider::prepare(&lab, &Setup::new(&lab));
    drop(std::os::unix::net::UnixListener::bind(&provider.socket).unwrap());
    assert!(provider.socket.exists());
    provider.spawn();
    provider.wait_ready(Duration::from_secs(30));
    // Ready means the socket now belongs to the provider and answers.
    let status = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut client = provider.client().await;
        client.status(StatusRequest {}).await.unwrap().into_inner()
    });
    assert_eq!(status.healthz, "ok");
    assert!(
        provider.logs().contains("socket.stale_removed"),
        "{}",
        provider.logs()
    );
}

async fn status_within(
    client: &mut KeyManagementServiceClient<Channel>,
    limit: Duration,
) -> (String, String) {
    let started = Instant::now();
    let status = tokio::time::timeout(limit, client.status(StatusRequest {}))
        .await
        .expect("Status must never hang")
        .unwrap()
        .into_inner();
    assert!(started.elapsed() < limit);
    (status.healthz, status.key_id)
}

/// Polls Status (each call bounded) until `healthz` equals `want`.
async fn wait_for_health(
    client: &mut KeyManagementServiceClient<Channel>,
    want: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let (healthz, key_id) = status_within(client, Duration::from_secs(1)).await;
        if healthz == want {
            assert_eq!(
                key_id.is_empty(),
                want != "ok",
                "unhealthy Status reports no key_id"
            );
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "Status did not become {want} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_openbao_turns_status_unhealthy_and_recovers() {
    let lab = Lab::start();
    let provider = Provider::start(
        &lab,
        &Setup {
            timeout: "1s",
            ..Setup::new(&lab)
        },
    );
    let mut client = provider.client().await;
    let (healthz, key_id) = status_within(&mut client, Duration::from_secs(1)).await;
    assert_eq!(healthz, "ok");
    let sealed = client
        .encrypt(EncryptRequest {
            plaintext: marked_seed(1),
            uid: "u".into(),
        })
        .await
        .unwrap()
        .into_inner();

    lab.pause();
    // Probe every 1s with a 1s timeout, staleness 3s: unhealthy well within the staleness bound.
    let took = wait_for_health(&mut client, "unhealthy", Duration::from_secs(6)).await;
    let err = client
        .encrypt(EncryptRequest {
            plaintext: b"x".to_vec(),
            uid: "u".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let started = Instant::now();
    let err = client
        .decrypt(support::kms::decrypt_request(&sealed))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "Decrypt is bounded by openbao.timeout"
    );

    lab.resume();
    wait_for_health(&mut client, "ok", Duration::from_secs(40)).await;
    let (_, key_after) = status_within(&mut client, Duration::from_secs(1)).await;
    assert_eq!(key_after, key_id, "recovery keeps the same key_id");
    let plain = client
        .decrypt(DecryptRequest {
            ciphertext: sealed.ciphertext,
            uid: "u".into(),
            key_id: sealed.key_id,
            annotations: sealed.annotations,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plain.plaintext, marked_seed(1));
    eprintln!("unhealthy after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn openbao_stopped_and_restarted_with_its_data() {
    let mut lab = tokio::task::spawn_blocking(Lab::start_persistent)
        .await
        .unwrap();
    let provider = Provider::start(&lab, &Setup::new(&lab));
    let mut client = provider.client().await;
    let sealed = client
        .encrypt(EncryptRequest {
            plaintext: marked_seed(2),
            uid: "u".into(),
        })
        .await
        .unwrap()
        .into_inner();

    let lab = tokio::task::spawn_blocking(move || {
        lab.stop();
        lab
    })
    .await
    .unwrap();
    wait_for_health(&mut client, "unhealthy", Duration::from_secs(6)).await;
    let err = client
        .decrypt(support::kms::decrypt_request(&sealed))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());

    let mut lab = lab;
    let lab = tokio::task::spawn_blocking(move || {
        lab.start_again();
        lab
    })
    .await
    .unwrap();
    wait_for_health(&mut client, "ok", Duration::from_secs(40)).await;
    let plain = client
        .decrypt(DecryptRequest {
            ciphertext: sealed.ciphertext,
            uid: "u".into(),
            key_id: sealed.key_id,
            annotations: sealed.annotations,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plain.plaintext, marked_seed(2));
    // The provider's leak scan reads the lab's audit log: drop it first
    // (the rebound `lab` would otherwise go before it).
    drop(provider);
    drop(lab);
}
