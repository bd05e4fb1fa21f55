//! The fail-closed table of `docs/kms-behaviour.md` ("What each fault
//! stops"), row by row against real OpenBao: an unsafe *setting* makes
//! Status unhealthy and refuses Encrypt but keeps every Secret readable; an
//! *identity* contradiction refuses Decrypt before any Transit call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bao_kms_provider::kms::proto::EncryptResponse;
use std::time::{Duration, Instant};
use support::http::{http, value};
use support::kms::{Client, decrypt, encrypt, status, try_encrypt, wait_for_status};
use support::marked_seed;
use support::openbao::{KEY_NAME, Lab, POLICY, TRANSIT_MOUNT};
use support::provider::{Provider, Setup};
use tonic::Code;

/// `statusMaxStaleness` of these tests: every fault must show within it.
const MAX_STALENESS: Duration = Duration::from_secs(3);

fn key_path() -> String {
    format!("{TRANSIT_MOUNT}/keys/{KEY_NAME}")
}

fn decrypt_path() -> String {
    format!("{TRANSIT_MOUNT}/decrypt/{KEY_NAME}")
}

fn setup(lab: &Lab) -> Setup {
    Setup {
        probe_interval: "300ms",
        deep_probe_interval: "1s",
        max_staleness: "3s",
        stable_count: 1,
        activation_delay: "1ms",
        ..Setup::new(lab)
    }
}

/// `/ready`'s status code and reasons.
fn ready(provider: &Provider) -> (u16, Vec<String>) {
    let (code, body) = http("GET", &provider.health_address, "/ready");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reasons = json["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    (code, reasons)
}

fn observations(provider: &Provider, status: &str) -> f64 {
    let (_, scrape) = http("GET", &provider.metrics_address, "/metrics");
    value(
        &scrape,
        &format!("openbao_kms_transit_metadata_observation_total{{status=\"{status}\"}}"),
    )
}

/// Waits (within the staleness bound) until Status is unhealthy.
async fn becomes_unhealthy(client: &mut Client, what: &str) {
    wait_for_status(client, MAX_STALENESS, what, |h, _| h == "unhealthy").await;
}

/// A setting drift: Status unhealthy with `reason` in `/ready` and the
/// metadata metric, Encrypt refused, every earlier ciphertext still decrypts.
async fn drift_holds(
    provider: &Provider,
    client: &mut Client,
    reason: &str,
    earlier: &[(&EncryptResponse, u8)],
) {
    becomes_unhealthy(client, reason).await;
    assert_eq!(status(client).await, ("unhealthy".into(), String::new()));
    let refused = try_encrypt(client, 99).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{reason}");
    for (sealed, tag) in earlier {
        let plaintext = decrypt(client, sealed)
            .await
            .unwrap_or_else(|e| panic!("{reason}: decrypt of seed {tag} refused: {e:?}"));
        assert_eq!(plaintext, marked_seed(*tag), "{reason}");
    }
    let (code, reasons) = ready(provider);
    assert_eq!(code, 503, "{reason}");
    assert!(reasons.iter().any(|r| r == reason), "{reason}: {reasons:?}");
    let (_, scrape) = http("GET", &provider.metrics_address, "/metrics");
    let series = format!("openbao_kms_status_unhealthy_reason{{reason=\"{reason}\"}}");
    assert_eq!(value(&scrape, &series), 1.0, "{reason} gauge");
    if reason != "deep_probe_failed" {
        assert!(observations(provider, reason) >= 1.0, "{reason} metric");
    }
}

/// Healthy again (within `limit`) with the same key_id, and Encrypt works.
async fn recovers_within(client: &mut Client, key_id: &str, what: &str, limit: Duration) {
    let back = wait_for_status(client, limit, what, |h, _| h == "ok").await;
    assert_eq!(back, key_id, "{what}: same key_id after the revert");
    try_encrypt(client, 3).await.unwrap();
}

async fn recovers(client: &mut Client, key_id: &str, what: &str) {
    recovers_within(client, key_id, what, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reverting_settings_make_status_healthy_and_decrypt_never_stops() {
    let lab = Lab::start();
    let mut provider = Provider::start(&lab, &setup(&lab));
    let mut client = provider.client().await;
    let (_, key_id) = status(&mut client).await;
    let sealed = encrypt(&mut client, 1).await;

    // Deletion allowed: the row the issue names.
    lab.bao_ok(&[
        "write",
        &format!("{}/config", key_path()),
        "deletion_allowed=true",
    ]);
    let changed = Instant::now();
    drift_holds(&provider, &mut client, "profile_invalid", &[(&sealed, 1)]).await;
    assert!(changed.elapsed() <= MAX_STALENESS + Duration::from_secs(1));

    // A restart while the setting is wrong still serves Decrypt.
    assert_eq!(provider.stop().code(), Some(0));
    provider.spawn();
    provider.wait_ready(Duration::from_secs(30));
    assert!(provider.logs().contains("serve.bootstrap_degraded"));
    let mut client = provider.client().await;
    drift_holds(&provider, &mut client, "profile_invalid", &[(&sealed, 1)]).await;

    lab.bao_ok(&[
        "write",
        &format!("{}/config", key_path()),
        "deletion_allowed=false",
    ]);
    recovers(&mut client, &key_id, "deletion_allowed reverted").await;

    // Upsert allowed on the mount.
    let config_keys = format!("{TRANSIT_MOUNT}/config/keys");
    lab.bao_ok(&["write", &config_keys, "disable_upsert=false"]);
    drift_holds(&provider, &mut client, "upsert_allowed", &[(&sealed, 1)]).await;
    lab.bao_ok(&["write", &config_keys, "disable_upsert=true"]);
    recovers(&mut client, &key_id, "disable_upsert restored").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_way_export_settings_stop_encrypt_but_not_decrypt() {
    let lab = Lab::start();
    let provider = Provider::start(&lab, &setup(&lab));
    let mut client = provider.client().await;
    let sealed = encrypt(&mut client, 1).await;
    // OpenBao cannot turn these off again, so each stays for the rest.
    for (setting, what) in [
        ("exportable=true", "exportable"),
        ("allow_plaintext_backup=true", "plaintext backup"),
    ] {
        lab.bao_ok(&["write", &format!("{}/config", key_path()), setting]);
        drift_holds(&provider, &mut client, "profile_invalid", &[(&sealed, 1)]).await;
        assert!(provider.logs().contains("profile_invalid"), "{what}");
    }
}

/// Rotates the key and waits until the provider serves the new version.
async fn rotate_and_promote(lab: &Lab, client: &mut Client, old: &str) -> String {
    lab.bao_ok(&["write", "-f", &format!("{}/rotate", key_path())]);
    wait_for_status(client, Duration::from_secs(20), "promotion", |h, k| {
        h == "ok" && k != old
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn minimum_versions_are_settings_and_transit_still_enforces_them() {
    let lab = Lab::start();
    let provider = Provider::start(&lab, &setup(&lab));
    let mut client = provider.client().await;
    let (_, k1) = status(&mut client).await;
    let v1 = encrypt(&mut client, 1).await;
    let k2 = rotate_and_promote(&lab, &mut client, &k1).await;
    let v2 = encrypt(&mut client, 2).await;

    // min_decryption_version above a retained version: v2 data stays
    // readable; Transit itself refuses v1 data.
    let config = format!("{}/config", key_path());
    lab.bao_ok(&["write", &config, "min_decryption_version=2"]);
    drift_holds(&provider, &mut client, "profile_invalid", &[(&v2, 2)]).await;
    let before = lab.audited_count(&decrypt_path());
    let refused = decrypt(&mut client, &v1).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(
        lab.audited_count(&decrypt_path()),
        before + 1,
        "Transit decided, not the provider"
    );
    lab.bao_ok(&["write", &config, "min_decryption_version=1"]);
    recovers(&mut client, &k2, "min_decryption_version lowered").await;
    decrypt(&mut client, &v1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn encryption_blocked_by_a_minimum_version_keeps_decrypt() {
    let lab = Lab::start();
    // A rotation that is observed but never promoted during the test.
    let provider = Provider::start(
        &lab,
        &Setup {
            activation_delay: "1h",
            ..setup(&lab)
        },
    );
    let mut client = provider.client().await;
    let (_, k1) = status(&mut client).await;
    let v1 = encrypt(&mut client, 1).await;
    lab.bao_ok(&["write", "-f", &format!("{}/rotate", key_path())]);
    let config = format!("{}/config", key_path());
    lab.bao_ok(&["write", &config, "min_encryption_version=2"]);
    drift_holds(&provider, &mut client, "encryption_blocked", &[(&v1, 1)]).await;
    lab.bao_ok(&["write", &config, "min_encryption_version=0"]);
    recovers(&mut client, &k1, "min_encryption_version lowered").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deep_probe_failure_stops_encrypt_but_not_decrypt() {
    let lab = Lab::start();
    let provider = Provider::start(&lab, &setup(&lab));
    let mut client = provider.client().await;
    let (_, key_id) = status(&mut client).await;
    let sealed = encrypt(&mut client, 1).await;
    // A policy that keeps metadata and decrypt but no longer allows encrypt.
    let policy = lab.dir().join("no-encrypt.hcl");
    std::fs::write(
        &policy,
        format!(
            "path \"{m}/keys/{k}\" {{ capabilities = [\"read\"] }}\n\
             path \"{m}/decrypt/{k}\" {{ capabilities = [\"update\"] }}\n\
             path \"{m}/config/keys\" {{ capabilities = [\"read\"] }}\n\
             path \"auth/token/renew-self\" {{ capabilities = [\"update\"] }}\n",
            m = TRANSIT_MOUNT,
            k = KEY_NAME
        ),
    )
    .unwrap();
    let full = lab.bao_ok(&["policy", "read", POLICY]);
    lab.bao_ok(&["policy", "write", POLICY, policy.to_str().unwrap()]);
    drift_holds(&provider, &mut client, "deep_probe_failed", &[(&sealed, 1)]).await;
    // Every Decrypt in the next few seconds is served, throttled recoveries or not.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        decrypt(&mut client, &sealed).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restored = lab.dir().join("full.hcl");
    std::fs::write(&restored, full).unwrap();
    lab.bao_ok(&["policy", "write", POLICY, restored.to_str().unwrap()]);
    // Three failed deep probes opened its circuit breaker for 30 s; its
    // half-open trial (one per probe interval) brings health back promptly.
    recovers_within(
        &mut client,
        &key_id,
        "encrypt allowed again",
        Duration::from_secs(5),
    )
    .await;
}

/// An identity contradiction: Status unhealthy with `reason`, Encrypt and
/// Decrypt refused, and no Decrypt ever reached Transit.
async fn identity_refused(
    lab: &Lab,
    provider: &Provider,
    client: &mut Client,
    reason: &str,
    earlier: &[&EncryptResponse],
) {
    let deadline = Instant::now() + MAX_STALENESS;
    while !ready(provider).1.iter().any(|r| r == reason) {
        assert!(
            Instant::now() < deadline,
            "{reason} not shown within the staleness bound: {:?}\n{}",
            ready(provider),
            provider.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(client).await.0, "unhealthy");
    let refused = try_encrypt(client, 99).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let before = lab.audited_count(&decrypt_path());
    for sealed in earlier {
        let refused = decrypt(client, sealed).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{reason}");
    }
    assert_eq!(
        lab.audited_count(&decrypt_path()),
        before,
        "{reason}: old ciphertext never reaches the key"
    );
}

/// Deletes the key (deletion must be allowed first) and creates a new one
/// under the same name, with `rotations` extra versions.
fn recreate_key(lab: &Lab, rotations: usize) {
    lab.bao_ok(&[
        "write",
        &format!("{}/config", key_path()),
        "deletion_allowed=true",
    ]);
    lab.bao_ok(&["delete", &key_path()]);
    // Whole-second creation times: make sure the new ones differ.
    std::thread::sleep(Duration::from_millis(1100));
    lab.bao_ok(&["write", "-f", &key_path(), "type=aes256-gcm96"]);
    for _ in 0..rotations {
        lab.bao_ok(&["write", "-f", &format!("{}/rotate", key_path())]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_key_is_an_identity_contradiction() {
    let lab = Lab::start();
    let provider = Provider::start(&lab, &setup(&lab));
    let mut client = provider.client().await;
    let sealed = encrypt(&mut client, 1).await;
    recreate_key(&lab, 0);
    identity_refused(
        &lab,
        &provider,
        &mut client,
        "key_identity_invalid",
        &[&sealed],
    )
    .await;
    // It stays refused: the recreated key is never adopted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        ready(&provider)
            .1
            .iter()
            .any(|r| r == "key_identity_invalid")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fewer_versions_than_the_active_one_is_a_rollback() {
    let lab = Lab::start();
    let provider = Provider::start(&lab, &setup(&lab));
    let mut client = provider.client().await;
    let (_, k1) = status(&mut client).await;
    let v1 = encrypt(&mut client, 1).await;
    rotate_and_promote(&lab, &mut client, &k1).await;
    let v2 = encrypt(&mut client, 2).await;
    // Transit now has version 1 only, while the provider's active key is v2.
    recreate_key(&lab, 0);
    identity_refused(
        &lab,
        &provider,
        &mut client,
        "version_rollback",
        &[&v1, &v2],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_key_refuses_decrypt_before_transit() {
    let lab = Lab::start();
    let provider = Provider::start(&lab, &setup(&lab));
    let mut client = provider.client().await;
    let sealed = encrypt(&mut client, 1).await;
    lab.bao_ok(&[
        "write",
        &format!("{}/config", key_path()),
        "deletion_allowed=true",
    ]);
    lab.bao_ok(&["delete", &key_path()]);
    identity_refused(
        &lab,
        &provider,
        &mut client,
        "metadata_read_failed",
        &[&sealed],
    )
    .await;
    let (_, body) = http("GET", &provider.health_address, "/ready");
    assert!(
        body.contains("\"metadata_error_class\":\"not_found\""),
        "{body}"
    );
}
