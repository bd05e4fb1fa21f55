//! OpenBao outages the provider must ride out without a restart and recover
//! from promptly (issue 12, lane 3): a sealed server, then unsealed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};
use support::http::{http, value};
use support::kms::{decrypt, encrypt, status, try_encrypt, wait_for_status};
use support::marked_seed;
use support::openbao::Lab;
use support::provider::{Provider, Setup};
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn sealed_fails_closed_and_unsealed_recovers_within_five_seconds() {
    let mut lab = Lab::start_persistent();
    let setup = Setup {
        probe_interval: "1s",
        deep_probe_interval: "5s",
        max_staleness: "10s",
        ..Setup::new(&lab)
    };
    let provider = Provider::start(&lab, &setup);
    let pid = provider.pid();
    let mut client = provider.client().await;
    let (_, key_id) = status(&mut client).await;
    let sealed_data = encrypt(&mut client, 1).await;

    lab.seal();
    wait_for_status(&mut client, Duration::from_secs(5), "sealed", |h, _| {
        h == "unhealthy"
    })
    .await;
    // Long enough for three failed probes: the breaker is open too.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (code, body) = http("GET", &provider.health_address, "/ready");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("\"metadata_error_class\":\"sealed\""),
        "{body}"
    );
    let (_, scrape) = http("GET", &provider.metrics_address, "/metrics");
    assert!(
        value(
            &scrape,
            "openbao_kms_transit_metadata_observation_total{status=\"sealed\"}"
        ) >= 1.0
    );
    assert_eq!(
        value(&scrape, "openbao_kms_circuit_breaker_state"),
        1.0,
        "three sealed probes opened the breaker"
    );
    let refused = try_encrypt(&mut client, 2).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let refused = decrypt(&mut client, &sealed_data).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    lab.unseal();
    let answering = Instant::now();
    let back = wait_for_status(&mut client, Duration::from_secs(5), "unsealed", |h, _| {
        h == "ok"
    })
    .await;
    eprintln!("healthy {:?} after the unseal", answering.elapsed());
    assert_eq!(back, key_id, "the same key, no restart");
    assert_eq!(provider.pid(), pid);
    assert_eq!(
        decrypt(&mut client, &sealed_data).await.unwrap(),
        marked_seed(1)
    );
    try_encrypt(&mut client, 3).await.unwrap();
    let (code, _) = http("GET", &provider.health_address, "/ready");
    assert_eq!(code, 200);
}

/// Lane 4: a raft snapshot restored under a serving provider. Ciphertext of
/// versions the snapshot still holds decrypts; a version the restore removed
/// is an identity contradiction, refused before Transit, never reused.
#[tokio::test(flavor = "multi_thread")]
async fn a_restored_snapshot_keeps_old_data_readable_and_refuses_the_lost_version() {
    let lab = Lab::start_persistent();
    let setup = Setup {
        probe_interval: "300ms",
        deep_probe_interval: "1s",
        max_staleness: "3s",
        stable_count: 1,
        activation_delay: "1ms",
        ..Setup::new(&lab)
    };
    let provider = Provider::start(&lab, &setup);
    let mut client = provider.client().await;
    let (_, k1) = status(&mut client).await;
    let v1 = encrypt(&mut client, 1).await;
    let snapshot = lab.dir().join("before-rotation.snap");
    lab.bao_ok(&[
        "operator",
        "raft",
        "snapshot",
        "save",
        snapshot.to_str().unwrap(),
    ]);
    lab.bao_ok(&["write", "-f", "transit/keys/k8s-etcd/rotate"]);
    wait_for_status(&mut client, Duration::from_secs(20), "promotion", |h, k| {
        h == "ok" && k != k1
    })
    .await;
    let v2 = encrypt(&mut client, 2).await;

    lab.bao_ok(&[
        "operator",
        "raft",
        "snapshot",
        "restore",
        snapshot.to_str().unwrap(),
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http("GET", &provider.health_address, "/ready");
        if body.contains("version_rollback") {
            break;
        }
        assert!(Instant::now() < deadline, "no rollback seen: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&mut client).await.0, "unhealthy");
    assert_eq!(
        try_encrypt(&mut client, 3).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    // Version 1 is the same key material as before: still served.
    assert_eq!(decrypt(&mut client, &v1).await.unwrap(), marked_seed(1));
    // Version 2 no longer exists in Transit: refused before any Transit call.
    let decrypts = lab.audited_count("transit/decrypt/k8s-etcd");
    let refused = decrypt(&mut client, &v2).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(lab.audited_count("transit/decrypt/k8s-etcd"), decrypts);
}
