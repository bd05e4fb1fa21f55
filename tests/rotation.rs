//! Durable registry and rotation against a real OpenBao and the real binary:
//! promotion while serving, restarts, crashes mid-write, rollbacks,
//! operator retire/restore, and discovery of a peer's key (a recreated key:
//! tests/fail_closed.rs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bao_kms_provider::identity::{KeyId, Scope, derive_key_id};
use bao_kms_provider::kms::proto::EncryptRequest;
use nix::sys::signal::{Signal, kill};
use std::path::Path;
use std::time::{Duration, Instant};
use support::kms::{Client, decrypt, encrypt, status, wait_for_status};
use support::marked_seed;
use support::openbao::{KEY_NAME, Lab, TRANSIT_MOUNT};
use support::provider::{Provider, Setup};
use tonic::Code;

fn key_path() -> String {
    format!("{TRANSIT_MOUNT}/keys/{KEY_NAME}")
}

fn rotate(lab: &Lab) {
    lab.bao_ok(&["write", "-f", &format!("{}/rotate", key_path())]);
}

/// The key_id the harness's config gives `version` (see tests/support/provider.rs).
fn expected_key_id(lab: &Lab, version: u64) -> String {
    let created = lab.read_json(&key_path())["keys"][version.to_string()]
        .as_i64()
        .unwrap();
    let scope = Scope {
        provider_name: "openbao-kms-workload-a".into(),
        cluster_id: "workload-a".into(),
        openbao_instance_id: "bao-test-a".into(),
        openbao_namespace: String::new(),
        transit_mount_id: "transit-test-primary".into(),
        transit_key_lineage_id: "0123456789abcdef0123456789abcdef".into(),
    };
    derive_key_id(&scope, version, created)
        .unwrap()
        .as_str()
        .to_owned()
}

fn fast(lab: &Lab) -> Setup {
    Setup {
        probe_interval: "300ms",
        deep_probe_interval: "5s",
        max_staleness: "3s",
        stable_count: 2,
        activation_delay: "1ms",
        log_level: "info",
        ..Setup::new(lab)
    }
}

/// Polls Status until it is healthy with a key_id other than `old`.
async fn wait_for_new_key(client: &mut Client, old: &str, limit: Duration) -> String {
    wait_for_status(client, limit, "promotion", |h, k| h == "ok" && k != old).await
}

async fn wait_healthy(client: &mut Client, limit: Duration) -> String {
    wait_for_status(client, limit, "healthy Status", |h, _| h == "ok").await
}

fn state_generation(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["generation"].as_u64()
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_while_serving_keeps_encrypt_and_status_in_step_and_survives_restart() {
    let lab = Lab::start();
    let setup = Setup {
        stable_count: 3,
        activation_delay: "2s",
        ..fast(&lab)
    };
    let mut provider = Provider::start(&lab, &setup);
    let mut client = provider.client().await;
    let (_, k1) = status(&mut client).await;
    assert_eq!(k1, expected_key_id(&lab, 1));
    let old = encrypt(&mut client, 1).await;

    rotate(&lab);
    let rotated_at = Instant::now();
    let k2 = expected_key_id(&lab, 2);
    let mut seen = vec![k1.clone()];
    let mut encrypts = 0;
    let mut promoted_after = Duration::ZERO;
    while rotated_at.elapsed() < Duration::from_secs(20) {
        let (healthz, key_id) = status(&mut client).await;
        if healthz != "ok" {
            continue;
        }
        if seen.last() != Some(&key_id) {
            seen.push(key_id.clone());
            promoted_after = rotated_at.elapsed();
        }
        match client
            .encrypt(EncryptRequest {
                plaintext: marked_seed(2),
                uid: "u".into(),
            })
            .await
        {
            Ok(r) => {
                assert_eq!(
                    r.into_inner().key_id,
                    key_id,
                    "Encrypt key_id must equal the Status key_id seen just before"
                );
                encrypts += 1;
            }
            Err(e) => assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message()),
        }
        if key_id == k2
            && encrypts > 0
            && seen.len() == 2
            && rotated_at.elapsed() > Duration::from_secs(4)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen,
        vec![k1.clone(), k2.clone()],
        "Status key_id changes once, at promotion, to the new version's key_id"
    );
    // 3 stable observations 300 ms apart, then the 2 s activation delay.
    assert!(
        promoted_after >= Duration::from_millis(2600),
        "promoted after only {promoted_after:?}"
    );
    eprintln!("promotion took {promoted_after:?} after the rotation");
    let logs = provider.logs();
    assert_eq!(logs.matches("key.promoted").count(), 1, "{logs}");

    // Both versions decrypt, also after a restart on the same state.
    let new = encrypt(&mut client, 3).await;
    assert_eq!(new.key_id, k2);
    assert_eq!(decrypt(&mut client, &old).await.unwrap(), marked_seed(1));
    assert!(provider.stop().success());
    provider.spawn();
    provider.wait_ready(Duration::from_secs(30));
    let mut client = provider.client().await;
    assert_eq!(
        status(&mut client).await,
        ("ok".to_owned(), k2.clone()),
        "the promoted key survives a restart"
    );
    assert_eq!(decrypt(&mut client, &old).await.unwrap(), marked_seed(1));
    assert_eq!(decrypt(&mut client, &new).await.unwrap(), marked_seed(3));

    // A second provider on the same state directory is refused by the lock.
    let (code, _, stderr) = provider.cli(&["serve"]);
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("locked by another process"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_any_point_never_loses_or_rolls_back_state() {
    let lab = Lab::start();
    let setup = Setup {
        stable_count: 1,
        probe_interval: "100ms",
        ..fast(&lab)
    };
    let mut provider = Provider::start(&lab, &setup);
    let mut client = provider.client().await;
    let mut sealed = vec![encrypt(&mut client, 0).await];
    let mut newest_generation = state_generation(&provider.state_file()).unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for round in 1..=12u8 {
        rotate(&lab);
        // Pseudo-random kill point within the window where the provider
        // observes, persists and promotes the new version.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(seed >> 33 & 0x1ff)).await;
        kill(provider.pid(), Signal::SIGKILL).unwrap();
        provider.wait_exit(Duration::from_secs(10));
        let on_disk =
            state_generation(&provider.state_file()).expect("the state file is always complete");
        assert!(
            on_disk >= newest_generation,
            "round {round}: state went back from {newest_generation} to {on_disk}"
        );
        newest_generation = on_disk;
        provider.spawn();
        provider.wait_ready(Duration::from_secs(30));
        client = provider.client().await;
        wait_healthy(&mut client, Duration::from_secs(10)).await;
        sealed.push(encrypt(&mut client, round).await);
    }
    // Let the last rotation settle, then every ciphertext ever written decrypts.
    let latest = lab.read_json(&key_path())["latest_version"]
        .as_u64()
        .unwrap();
    let expected = expected_key_id(&lab, latest);
    let started = Instant::now();
    while status(&mut client).await.1 != expected {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "latest version never promoted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, s) in sealed.iter().enumerate() {
        assert_eq!(
            decrypt(&mut client, s).await.unwrap(),
            marked_seed(i as u8),
            "ciphertext {i}"
        );
    }
    assert!(!provider.logs().contains("rollback"), "{}", provider.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn rolled_back_or_missing_state_files_are_refused() {
    let lab = Lab::start();
    let mut provider = Provider::start(&lab, &fast(&lab));
    let old_state = std::fs::read(provider.state_file()).unwrap();
    let mut client = provider.client().await;
    let k1 = status(&mut client).await.1;
    rotate(&lab);
    wait_for_new_key(&mut client, &k1, Duration::from_secs(15)).await;
    assert!(provider.stop().success());

    // Put back the older state file: the checkpoint remembers a newer generation.
    let newer_state = std::fs::read(provider.state_file()).unwrap();
    std::fs::write(provider.state_file(), &old_state).unwrap();
    provider.spawn();
    let code = provider.wait_exit(Duration::from_secs(30)).code();
    assert_eq!(code, Some(5), "{}", provider.logs());
    assert!(
        provider
            .stderr_text()
            .contains("rollback detected: state file is older than its checkpoint"),
        "{}",
        provider.logs()
    );

    // State file gone but checkpoint present: refused too.
    std::fs::remove_file(provider.state_file()).unwrap();
    provider.spawn();
    assert_eq!(provider.wait_exit(Duration::from_secs(30)).code(), Some(5));
    assert!(
        provider
            .stderr_text()
            .contains("state file missing with checkpoint present"),
        "{}",
        provider.logs()
    );

    // With the newest pair back (and the mode an operator must keep), it starts again.
    std::fs::write(provider.state_file(), &newer_state).unwrap();
    std::fs::set_permissions(
        provider.state_file(),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    provider.spawn();
    provider.wait_ready(Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread")]
async fn retire_then_restore_a_version_with_reviewed_plans() {
    let lab = Lab::start();
    let mut provider = Provider::start(&lab, &fast(&lab));
    let mut client = provider.client().await;
    let k1 = status(&mut client).await.1;
    let v1_data = encrypt(&mut client, 1).await;
    rotate(&lab);
    wait_for_new_key(&mut client, &k1, Duration::from_secs(15)).await;
    // OpenBao now refuses version 1 while the registry still retains it: unhealthy.
    lab.bao_ok(&[
        "write",
        &format!("{}/config", key_path()),
        "min_decryption_version=2",
    ]);
    let started = Instant::now();
    while status(&mut client).await.0 == "ok" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a blocked retained version must make Status unhealthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(provider.stop().success());

    let (code, plan, err) = provider.cli(&[
        "retire-versions",
        "--before-version",
        "2",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(plan["applied"], false);
    assert_eq!(plan["removedVersions"][0]["transitVersion"], 1);
    let hash = plan["stateHash"].as_str().unwrap().to_owned();
    let (code, _, err) = provider.cli(&[
        "retire-versions",
        "--before-version",
        "2",
        "--apply",
        "--expected-state-hash",
        "krs1.wrongwrongwrongwrongwrongwrongwrongwrongwro",
    ]);
    assert_eq!(code, 4, "a stale or wrong plan hash is refused: {err}");
    let (code, out, err) = provider.cli(&[
        "retire-versions",
        "--before-version",
        "2",
        "--apply",
        "--expected-state-hash",
        &hash,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied: true"), "{out}");
    assert!(out.contains("remove: transitVersion=1 keyIdHash="), "{out}");

    provider.spawn();
    provider.wait_ready(Duration::from_secs(30));
    let mut client = provider.client().await;
    wait_healthy(&mut client, Duration::from_secs(10)).await;
    let err = decrypt(&mut client, &v1_data).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "a removed version is never rediscovered"
    );
    assert!(provider.stop().success());

    // Restoring is refused while OpenBao still blocks version 1 …
    let (code, _, err) = provider.cli(&["restore-versions", "--versions", "1"]);
    assert_eq!(code, 4, "{err}");
    lab.bao_ok(&[
        "write",
        &format!("{}/config", key_path()),
        "min_decryption_version=1",
    ]);
    // … and works once it does not.
    let (code, plan, err) =
        provider.cli(&["restore-versions", "--versions", "1", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let hash = plan["stateHash"].as_str().unwrap().to_owned();
    let (code, _, err) = provider.cli(&[
        "restore-versions",
        "--versions",
        "1",
        "--apply",
        "--expected-state-hash",
        &hash,
    ]);
    assert_eq!(code, 0, "{err}");
    provider.spawn();
    provider.wait_ready(Duration::from_secs(30));
    let mut client = provider.client().await;
    assert_eq!(
        decrypt(&mut client, &v1_data).await.unwrap(),
        marked_seed(1)
    );

    // Usage errors are exit 2 and touch nothing.
    assert_eq!(provider.cli(&["restore-versions"]).0, 2);
    assert_eq!(
        provider
            .cli(&["retire-versions", "--before-version", "2", "--apply"])
            .0,
        2
    );
    let (code, report, _) = provider.cli(&["verify-key"]);
    assert_eq!(code, 0, "{report}");
    assert!(report.starts_with("verify-key\n"), "{report}");
    assert!(
        report.contains("[pass] transit.version_restrictions"),
        "{report}"
    );
    let (code, report, _) = provider.cli(&["verify-rotation"]);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("confidence: limited"), "{report}");
    assert!(report.contains("rotationState: active"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_promoted_first_by_a_peer_is_discovered_on_decrypt() {
    let lab = Lab::start();
    // Node A promotes quickly; node B barely probes, so it learns of the new
    // version only through Decrypt.
    let a = Provider::start(&lab, &fast(&lab));
    let b = Provider::start(
        &lab,
        &Setup {
            probe_interval: "1m",
            max_staleness: "2m",
            ..Setup::new(&lab)
        },
    );
    let mut client_a = a.client().await;
    let mut client_b = b.client().await;
    let k1 = status(&mut client_b).await.1;
    rotate(&lab);
    let k2 = wait_for_new_key(&mut client_a, &k1, Duration::from_secs(15)).await;
    let from_a = encrypt(&mut client_a, 5).await;
    assert_eq!(from_a.key_id, k2);
    KeyId::parse(&k2).unwrap();
    assert_eq!(
        decrypt(&mut client_b, &from_a).await.unwrap(),
        marked_seed(5)
    );
    assert_eq!(
        status(&mut client_b).await.1,
        k1,
        "discovery never promotes"
    );
    assert!(b.logs().contains("status.discovery"), "{}", b.logs());
}
