//! Metrics, health endpoints and redaction, scraped from the real binary
//! while it serves real calls against a real OpenBao.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bao_kms_provider::kms::proto::{DecryptRequest, EncryptRequest, StatusRequest};
use std::time::{Duration, Instant};
use support::http::{http, value};
use support::marked_seed;
use support::openbao::Lab;
use support::provider::{BIN, Provider, Setup};
use tonic::Code;

/// Marker values nothing may ever print: key name, mount path, a request uid.
const UID_MARKER: &str = "uid-marker-77f1";

fn assert_clean(what: &str, text: &str, provider: &Provider) {
    let jwt = std::fs::read_to_string(&provider.jwt).unwrap();
    let mut known = provider.known_secrets();
    known.jwts.push(jwt);
    known.extra = ["k8s-etcd", "transit/", UID_MARKER, "eyJ"]
        .map(str::to_owned)
        .to_vec();
    let found = support::leaks::scan(text, &known);
    assert!(found.is_empty(), "{what} contains {found:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_each_call_and_outcome_exactly_with_clean_labels() {
    let lab = Lab::start();
    let provider = Provider::start(&lab, &Setup::quiet(&lab));
    let mut client = provider.client().await;
    let before = http("GET", &provider.metrics_address, "/metrics").1;
    let transit_encrypts = |s: &str| {
        value(
            s,
            "openbao_kms_openbao_requests_total{operation=\"transit_encrypt\",status=\"ok\"}",
        )
    };

    for _ in 0..3 {
        client.status(StatusRequest {}).await.unwrap();
    }
    let mut sealed = Vec::new();
    for tag in 0..2 {
        let e = client
            .encrypt(EncryptRequest {
                plaintext: marked_seed(tag),
                uid: UID_MARKER.into(),
            })
            .await
            .unwrap();
        sealed.push(e.into_inner());
    }
    for s in &sealed {
        let req = DecryptRequest {
            ciphertext: s.ciphertext.clone(),
            uid: UID_MARKER.into(),
            key_id: s.key_id.clone(),
            annotations: s.annotations.clone(),
        };
        client.decrypt(req).await.unwrap();
    }
    let bad = |key_id: &str, version: &[u8]| {
        let mut annotations = sealed[0].annotations.clone();
        annotations.insert(
            "transit-key-version.kms.openbao.org".into(),
            version.to_vec(),
        );
        DecryptRequest {
            ciphertext: sealed[0].ciphertext.clone(),
            uid: UID_MARKER.into(),
            key_id: key_id.into(),
            annotations,
        }
    };
    let codes = [
        client
            .decrypt(bad("obk2.malformed", b"1"))
            .await
            .unwrap_err()
            .code(),
        client
            .decrypt(bad(
                "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk",
                b"1",
            ))
            .await
            .unwrap_err()
            .code(),
        client
            .decrypt(bad(&sealed[0].key_id, b"999"))
            .await
            .unwrap_err()
            .code(),
        client
            .encrypt(EncryptRequest {
                plaintext: Vec::new(),
                uid: UID_MARKER.into(),
            })
            .await
            .unwrap_err()
            .code(),
    ];
    assert_eq!(
        codes,
        [
            Code::InvalidArgument,
            Code::NotFound,
            Code::InvalidArgument,
            Code::InvalidArgument
        ]
    );

    let after = http("GET", &provider.metrics_address, "/metrics").1;
    let delta = |series: &str| value(&after, series) - value(&before, series);
    for (series, expected) in [
        (
            "openbao_kms_grpc_requests_total{method=\"status\",status=\"ok\"}",
            3.0,
        ),
        (
            "openbao_kms_grpc_requests_total{method=\"encrypt\",status=\"ok\"}",
            2.0,
        ),
        (
            "openbao_kms_grpc_requests_total{method=\"encrypt\",status=\"invalid_argument\"}",
            1.0,
        ),
        (
            "openbao_kms_grpc_requests_total{method=\"decrypt\",status=\"ok\"}",
            2.0,
        ),
        (
            "openbao_kms_grpc_requests_total{method=\"decrypt\",status=\"invalid_argument\"}",
            2.0,
        ),
        (
            "openbao_kms_grpc_requests_total{method=\"decrypt\",status=\"not_found\"}",
            1.0,
        ),
        (
            "openbao_kms_decrypt_key_id_errors_total{reason=\"key_id_malformed\"}",
            1.0,
        ),
        (
            "openbao_kms_decrypt_key_id_errors_total{reason=\"key_id_unknown\"}",
            1.0,
        ),
        (
            "openbao_kms_aad_validation_errors_total{reason=\"aad_mismatch\"}",
            1.0,
        ),
        (
            "openbao_kms_openbao_requests_total{operation=\"transit_decrypt\",status=\"ok\"}",
            2.0,
        ),
        (
            "openbao_kms_grpc_duration_seconds_count{method=\"decrypt\"}",
            5.0,
        ),
    ] {
        assert_eq!(delta(series), expected, "{series}\n{after}");
    }
    assert_eq!(transit_encrypts(&after) - transit_encrypts(&before), 2.0);
    for bound in [
        "0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064", "0.128", "0.256", "0.512",
        "1.024", "2.048", "+Inf",
    ] {
        assert!(
            after.contains(&format!(
                "openbao_kms_grpc_duration_seconds_bucket{{method=\"status\",le=\"{bound}\"}}"
            )),
            "bucket {bound}"
        );
        assert!(after.contains(&format!("openbao_kms_openbao_duration_seconds_bucket{{operation=\"transit_encrypt\",le=\"{bound}\"}}")), "bucket {bound}");
    }
    assert_eq!(after.matches("openbao_kms_build_info{").count(), 1);
    assert_eq!(
        value(&after, "openbao_kms_rotation_state{state=\"active\"}"),
        1.0
    );
    assert_eq!(value(&after, "openbao_kms_key_version"), 1.0);
    assert!(value(&after, "openbao_kms_token_ttl_seconds") > 0.0);
    assert!(value(&after, "process_resident_memory_bytes") > 1_000_000.0);
    let hash = bao_kms_provider::identity::hash_value(&sealed[0].key_id);
    assert_eq!(
        value(
            &after,
            &format!("openbao_kms_status_key_id_hash{{hash=\"{hash}\"}}")
        ),
        1.0
    );
    assert!(
        !after.contains(&sealed[0].key_id),
        "a raw key_id in a label"
    );
    assert_clean("metrics", &after, &provider);
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_turns_503_with_its_reason_while_openbao_is_away_and_recovers() {
    let lab = Lab::start();
    let provider = Provider::start(
        &lab,
        &Setup {
            timeout: "1s",
            ..Setup::new(&lab)
        },
    );
    let health = provider.health_address.clone();
    let mut bodies = Vec::new();
    let (code, body) = http("GET", &health, "/live");
    assert_eq!((code, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (code, body) = http("GET", &health, "/ready");
    assert_eq!(code, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            ready["status"].as_str(),
            ready["healthz"].as_str(),
            ready["stale"].as_bool()
        ),
        (Some("ok"), Some("ok"), Some(false))
    );
    assert_eq!(ready["reasons"], serde_json::json!([]));
    bodies.push(body);
    assert_eq!(http("POST", &health, "/ready").0, 405);
    assert_eq!(http("GET", &health, "/metrics").0, 404);
    assert_eq!(http("HEAD", &health, "/ready").0, 200);

    lab.pause();
    let started = Instant::now();
    let body = loop {
        let (code, body) = http("GET", &health, "/ready");
        if code == 503 {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "/ready never turned 503"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "unavailable");
    assert_eq!(
        ready["reasons"],
        serde_json::json!(["upsert_check_failed"]),
        "{body}"
    );
    assert_eq!(ready["metadata_error_class"], "timeout", "{body}");
    assert_eq!(
        http("GET", &health, "/live").0,
        200,
        "/live never depends on OpenBao"
    );
    bodies.push(body);

    lab.resume();
    let started = Instant::now();
    while http("GET", &health, "/ready").0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "/ready never recovered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // CLI output is scanned too: the probe report names only the public key_id.
    let probe = std::process::Command::new(BIN)
        .args(["probe", "--socket"])
        .arg(&provider.socket)
        .output()
        .unwrap();
    assert!(probe.status.success());
    bodies.push(String::from_utf8_lossy(&probe.stdout).into_owned());
    for body in &bodies {
        assert_clean("health body or CLI output", body, &provider);
    }
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
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_correlation_hashes_request_uids_only_within_its_ttl() {
    let lab = Lab::start();
    let setup = Setup {
        correlation: Some(("INC-2042", "3s")),
        ..Setup::new(&lab)
    };
    let provider = Provider::start(&lab, &setup);
    let mut client = provider.client().await;
    client
        .encrypt(EncryptRequest {
            plaintext: marked_seed(1),
            uid: UID_MARKER.into(),
        })
        .await
        .unwrap();
    let hash = bao_kms_provider::identity::hash_value(UID_MARKER);
    let logs = provider.stderr_text();
    let line = logs
        .lines()
        .find(|l| l.contains("kms.encrypt"))
        .expect("a kms.request line");
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["message"], "kms.request");
    assert_eq!(event["request_uid_hash"], hash.as_str());
    assert_eq!(event["debug_correlation_incident"], "INC-2042");
    assert!(
        event["debug_correlation_expires_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(event["ts"].as_str().unwrap().ends_with('Z') && event["level"] == "DEBUG");
    assert!(
        logs.contains("openbao_request_id"),
        "request ids are logged while enabled"
    );

    // Past the TTL the extra fields disappear without a restart.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let seen = provider.stderr_text().len();
    client
        .encrypt(EncryptRequest {
            plaintext: marked_seed(2),
            uid: UID_MARKER.into(),
        })
        .await
        .unwrap();
    let later = &provider.stderr_text()[seen..];
    let line = later
        .lines()
        .find(|l| l.contains("kms.encrypt"))
        .expect("a later kms.request line");
    assert!(
        !line.contains("request_uid_hash") && !line.contains("INC-2042"),
        "{line}"
    );
    assert_clean("logs", &provider.logs(), &provider);
}

/// Every metric name a query mentions, in text order.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, _) in text
        .match_indices("openbao_kms_")
        .chain(text.match_indices("process_"))
    {
        if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.push(name);
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn alert_rules_and_dashboard_query_only_exported_metrics() {
    let lab = Lab::start();
    // Renew on every use after a second, and shed all but one decrypt, so the
    // renewal and rejection series exist in the scrape.
    let setup = Setup {
        login_before_expiry: "59m59s",
        max_concurrent_decrypt: 1,
        ..Setup::quiet(&lab)
    };
    let provider = Provider::start(&lab, &setup);
    let mut client = provider.client().await;
    let sealed = client
        .encrypt(EncryptRequest {
            plaintext: marked_seed(1),
            uid: "u".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut calls = Vec::new();
    for _ in 0..30 {
        let mut c = client.clone();
        let req = support::kms::decrypt_request(&sealed);
        calls.push(tokio::spawn(async move { c.decrypt(req).await }));
    }
    for call in calls {
        let _ = call.await.unwrap();
    }
    // One refusal of each kind the rules watch.
    let mut tampered = support::kms::decrypt_request(&sealed);
    tampered
        .annotations
        .insert("transit-key-version.kms.openbao.org".into(), b"7".to_vec());
    client.decrypt(tampered.clone()).await.unwrap_err();
    tampered.key_id = "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk".into();
    client.decrypt(tampered).await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client
        .encrypt(EncryptRequest {
            plaintext: marked_seed(2),
            uid: "u".into(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let scrape = http("GET", &provider.metrics_address, "/metrics").1;
    let mut exported = std::collections::HashSet::new();
    for line in scrape.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut parts = line.split_whitespace();
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        exported.insert(name.to_owned());
        match kind {
            "counter" => {
                exported.insert(format!("{}_total", name.trim_end_matches("_total")));
            }
            "histogram" => {
                for suffix in ["_bucket", "_count", "_sum"] {
                    exported.insert(format!("{name}{suffix}"));
                }
            }
            _ => {}
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let rules: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(root.join("prometheus/rules/openbao-kms.rules.yaml")).unwrap(),
    )
    .unwrap();
    let mut queries = Vec::new();
    for rule in rules["groups"][0]["rules"].as_sequence().unwrap() {
        queries.push(rule["expr"].as_str().unwrap().to_owned());
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("grafana/dashboards/openbao-kms-overview.json"))
            .unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    queries.push(
        dashboard["templating"]["list"][0]["query"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    assert!(queries.len() > 30);
    for query in &queries {
        let names = metric_names(query);
        assert!(
            !names.is_empty(),
            "a query without a provider metric: {query}"
        );
        for name in names {
            assert!(
                exported.contains(&name),
                "{name} is not exported (query: {query})"
            );
        }
    }
}
