//! Start-up and shut-down of the real binary: the bootstrap grace period,
//! exit code 5 when it runs out, and draining in-flight calls on SIGTERM/SIGINT.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bao_kms_provider::kms::proto::{DecryptRequest, EncryptRequest, StatusRequest};
use nix::sys::signal::{Signal, kill};
use std::time::{Duration, Instant};
use support::marked_seed;
use support::openbao::Lab;
use support::provider::{Provider, Setup};
use tonic::Code;

#[test]
fn bootstrap_rides_out_a_late_openbao_within_the_grace_period() {
    let lab = Lab::start();
    lab.pause();
    let setup = Setup {
        grace_timeout: "30s",
        retry_interval: "500ms",
        timeout: "1s",
        ..Setup::new(&lab)
    };
    let mut provider = Provider::prepare(&lab, &setup);
    provider.spawn();
    // Longer than the effective login timeout (5 s), so the first attempt fails.
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        !provider.socket.exists(),
        "no socket before the first successful probes"
    );
    lab.resume();
    provider.wait_ready(Duration::from_secs(30));
    assert!(
        provider.logs().contains("serve.bootstrap_retry"),
        "{}",
        provider.logs()
    );
}

#[test]
fn bootstrap_gives_up_with_exit_5_when_the_grace_period_ends() {
    let lab = Lab::start();
    lab.pause();
    let setup = Setup {
        grace_timeout: "2s",
        retry_interval: "500ms",
        timeout: "500ms",
        ..Setup::new(&lab)
    };
    let mut provider = Provider::prepare(&lab, &setup);
    let started = Instant::now();
    provider.spawn();
    let status = provider.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(5), "{}", provider.logs());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(12),
        "{took:?}"
    );
    assert!(
        provider
            .logs()
            .contains("bootstrap probes did not succeed within 2s"),
        "{}",
        provider.logs()
    );
    assert!(!provider.socket.exists());
    lab.resume();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_calls_then_exits_zero() {
    let lab = Lab::start();
    let mut provider = Provider::start(
        &lab,
        &Setup {
            timeout: "2s",
            ..Setup::new(&lab)
        },
    );
    let mut client = provider.client().await;
    let sealed = client
        .encrypt(EncryptRequest {
            plaintext: marked_seed(3),
            uid: "u".into(),
        })
        .await
        .unwrap()
        .into_inner();
    lab.pause();
    let mut in_flight = client.clone();
    let call = tokio::spawn(async move {
        in_flight
            .decrypt(DecryptRequest {
                ciphertext: sealed.ciphertext,
                uid: "u".into(),
                key_id: sealed.key_id,
                annotations: sealed.annotations,
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(provider.pid(), Signal::SIGTERM).unwrap();
    let answer = call.await.unwrap();
    // The call ran to its own deadline and got a proper gRPC answer, not a reset.
    assert_eq!(answer.unwrap_err().code(), Code::DeadlineExceeded);
    let status = provider.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}:\n{}", provider.logs());
    assert!(
        !provider.socket.exists(),
        "the socket is removed on shutdown"
    );
    lab.resume();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_cleanly_too() {
    let lab = Lab::start();
    let mut provider = Provider::start(&lab, &Setup::new(&lab));
    let mut client = provider.client().await;
    assert_eq!(
        client
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .healthz,
        "ok"
    );
    kill(provider.pid(), Signal::SIGINT).unwrap();
    assert!(
        provider.wait_exit(Duration::from_secs(20)).success(),
        "{}",
        provider.logs()
    );
    assert!(!provider.socket.exists());
    assert!(provider.logs().contains("serve.shutdown"));
}
