//! KMS v2 contract tests against the real binary, a real OpenBao over HTTPS and
//! real JWT auth, checking what kube-apiserver checks (`kms-v2-contract-and-peers.md` §1).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use bao_kms_provider::identity::KeyId;
use bao_kms_provider::kms::proto::{DecryptRequest, EncryptRequest, StatusRequest};
use support::marked_seed;
use support::openbao::Lab;
use support::provider::{Provider, Setup};
use tonic::Code;

fn is_fqdn(key: &str) -> bool {
    key.len() <= 253
        && key.split('.').count() >= 2
        && key.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn status_encrypt_decrypt_follow_the_apiserver_contract() {
    let lab = Lab::start();
    let mut provider = Provider::start(&lab, &Setup::quiet(&lab));
    let mut client = provider.client().await;
    let socket_meta = std::fs::symlink_metadata(&provider.socket).unwrap();
    assert_eq!(
        socket_meta.permissions().mode() & 0o7777,
        0o660,
        "socketMode applied"
    );
    assert_eq!(socket_meta.gid(), 0, "socketGroup applied");

    let status = client.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.version, "v2");
    assert_eq!(status.healthz, "ok");
    let key_id = KeyId::parse(&status.key_id).expect("Status key_id is a provider key ID");
    assert_eq!(status.key_id.len(), 48);

    // Status is served from the cache: a burst of calls makes no OpenBao request.
    let before = lab.audited_requests();
    for _ in 0..500 {
        let s = client.status(StatusRequest {}).await.unwrap().into_inner();
        assert_eq!(
            (s.healthz.as_str(), s.key_id.as_str()),
            ("ok", key_id.as_str())
        );
    }
    assert_eq!(
        lab.audited_requests(),
        before,
        "Status must never call OpenBao"
    );

    let encrypted = client
        .encrypt(EncryptRequest {
            plaintext: marked_seed(0),
            uid: "uid-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        encrypted.key_id, status.key_id,
        "Encrypt key_id must equal the Status key_id"
    );
    assert!(!encrypted.ciphertext.is_empty() && encrypted.ciphertext.len() < 1024);
    assert!(encrypted.ciphertext.starts_with(b"vault:v1:"));
    assert_eq!(encrypted.annotations.len(), 7);
    assert!(
        encrypted.annotations.keys().all(|k| is_fqdn(k)),
        "{:?}",
        encrypted.annotations.keys()
    );
    let size: usize = encrypted
        .annotations
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    assert!(size < 32 * 1024);

    let again = client
        .encrypt(EncryptRequest {
            plaintext: marked_seed(0),
            uid: "uid-2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(
        again.ciphertext, encrypted.ciphertext,
        "equal plaintexts must give distinct ciphertexts"
    );

    let decrypted = client
        .decrypt(DecryptRequest {
            ciphertext: encrypted.ciphertext.clone(),
            uid: "uid-3".into(),
            key_id: encrypted.key_id.clone(),
            annotations: encrypted.annotations.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decrypted.plaintext, marked_seed(0));

    assert!(
        provider.stop().success(),
        "SIGTERM must exit 0:\n{}",
        provider.logs()
    );
    assert!(
        !provider.socket.exists(),
        "a clean shutdown removes the socket"
    );
    let ciphertext = String::from_utf8(encrypted.ciphertext).unwrap();
    provider.assert_output_free_of(&[&ciphertext, "X-Vault-Token"]);
    let logs = provider.logs();
    assert!(logs.contains("serve.ready"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_decrypt_requests_are_rejected_before_any_transit_call() {
    let lab = Lab::start();
    let provider = Provider::start(&lab, &Setup::quiet(&lab));
    let mut client = provider.client().await;
    let good = client
        .encrypt(EncryptRequest {
            plaintext: marked_seed(0),
            uid: "u".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let request = || support::kms::decrypt_request(&good);
    let unknown = KeyId::parse("obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk").unwrap();
    let mut cases: Vec<(&str, DecryptRequest, Code)> = Vec::new();
    let mut r = request();
    r.annotations.insert(
        "transit-key-version.kms.openbao.org".into(),
        b"999".to_vec(),
    );
    cases.push(("tampered key version", r, Code::InvalidArgument));
    let mut r = request();
    r.annotations.insert(
        "key-id-hash.kms.openbao.org".into(),
        b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_vec(),
    );
    cases.push(("tampered key id hash", r, Code::InvalidArgument));
    let mut r = request();
    r.annotations.remove("provider.kms.openbao.org");
    cases.push(("missing annotation", r, Code::InvalidArgument));
    let mut r = request();
    r.annotations
        .insert("kms.openbao.org/extra".into(), b"x".to_vec());
    cases.push(("non-FQDN annotation key", r, Code::InvalidArgument));
    let mut r = request();
    r.annotations
        .insert("blob.example.org".into(), vec![b'x'; 32 * 1024]);
    cases.push(("annotations over 32 KiB", r, Code::InvalidArgument));
    let mut r = request();
    r.annotations
        .insert("bin.example.org".into(), vec![0xff, 0xfe]);
    cases.push(("non-UTF-8 annotation value", r, Code::InvalidArgument));
    for bad in [
        "",
        "obk2.short",
        "obk3.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk",
    ] {
        let mut r = request();
        r.key_id = bad.into();
        cases.push(("malformed key_id", r, Code::InvalidArgument));
    }
    let mut r = request();
    r.key_id = "x".repeat(1024);
    cases.push(("key_id of 1 KiB", r, Code::InvalidArgument));
    let mut r = request();
    r.key_id = unknown.as_str().into();
    cases.push(("unknown key_id", r, Code::NotFound));
    let mut r = request();
    r.ciphertext = vec![b'v'; 1024];
    cases.push(("ciphertext of 1 KiB", r, Code::InvalidArgument));
    let mut r = request();
    r.ciphertext.clear();
    cases.push(("empty ciphertext", r, Code::InvalidArgument));

    let transit_calls = || {
        lab.audited_count("transit/decrypt/k8s-etcd")
            + lab.audited_count("transit/encrypt/k8s-etcd")
    };
    let (before, metadata_before) = (transit_calls(), lab.audited_count("transit/keys/k8s-etcd"));
    for (name, req, code) in cases {
        let err = client.decrypt(req).await.expect_err(name);
        assert_eq!(err.code(), code, "{name}: {}", err.message());
    }
    let err = client
        .encrypt(EncryptRequest {
            plaintext: Vec::new(),
            uid: "u".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // The unknown key_id costs exactly one shared metadata discovery.
    assert_eq!(
        lab.audited_count("transit/keys/k8s-etcd"),
        metadata_before + 1
    );
    assert_eq!(
        transit_calls(),
        before,
        "rejections must happen before Transit"
    );

    // A gRPC message over 64 KiB is refused by the server itself.
    let mut big = bao_kms_provider::kms::connect(&provider.socket)
        .await
        .unwrap()
        .max_encoding_message_size(1 << 20);
    let err = big
        .encrypt(EncryptRequest {
            plaintext: vec![1; 70 * 1024],
            uid: "u".into(),
        })
        .await
        .unwrap_err();
    // tonic reports an over-size message as OutOfRange (grpc-go: ResourceExhausted).
    assert_eq!(err.code(), Code::OutOfRange, "{}", err.message());
    assert_eq!(transit_calls(), before);

    // The genuine request still works afterwards.
    assert_eq!(
        client
            .decrypt(request())
            .await
            .unwrap()
            .into_inner()
            .plaintext,
        marked_seed(0)
    );
    provider.assert_output_free_of(&[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn ciphertext_from_another_cluster_on_the_same_key_is_refused() {
    let lab = Lab::start();
    let a = Provider::start(&lab, &Setup::new(&lab));
    let b = Provider::start(
        &lab,
        &Setup {
            cluster_id: "workload-b".into(),
            ..Setup::new(&lab)
        },
    );
    let mut client_a = a.client().await;
    let mut client_b = b.client().await;
    let from_a = client_a
        .encrypt(EncryptRequest {
            plaintext: marked_seed(0),
            uid: "a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let own_b = client_b
        .encrypt(EncryptRequest {
            plaintext: marked_seed(0),
            uid: "b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(
        from_a.key_id, own_b.key_id,
        "key_ids are bound to the cluster"
    );

    // A's object as stored: B does not know A's key_id.
    let err = client_b
        .decrypt(DecryptRequest {
            ciphertext: from_a.ciphertext.clone(),
            uid: "x".into(),
            key_id: from_a.key_id.clone(),
            annotations: from_a.annotations.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Relabelled with B's key_id: A's annotations do not match B's snapshot.
    let err = client_b
        .decrypt(DecryptRequest {
            ciphertext: from_a.ciphertext.clone(),
            uid: "x".into(),
            key_id: own_b.key_id.clone(),
            annotations: from_a.annotations.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Fully relabelled with B's identity: Transit's AEAD check refuses the AAD.
    let err = client_b
        .decrypt(DecryptRequest {
            ciphertext: from_a.ciphertext.clone(),
            uid: "x".into(),
            key_id: own_b.key_id.clone(),
            annotations: own_b.annotations.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(b.logs().contains("aad_mismatch"), "{}", b.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_decrypts_succeed_or_are_shed_without_queueing() {
    let lab = Lab::start();
    let provider = Provider::start(
        &lab,
        &Setup {
            max_concurrent_decrypt: 256,
            // The claim is about concurrency, not latency: a loaded machine must not turn it into timeouts.
            timeout: "10s",
            log_level: "info",
            ..Setup::new(&lab)
        },
    );
    let mut client = provider.client().await;
    let mut objects = Vec::new();
    for i in 0..20u8 {
        let plaintext = marked_seed(i);
        let e = client
            .encrypt(EncryptRequest {
                plaintext: plaintext.clone(),
                uid: "e".into(),
            })
            .await
            .unwrap()
            .into_inner();
        objects.push((plaintext, e));
    }
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let mut client = client.clone();
        let (plaintext, e) = objects[i % objects.len()].clone();
        tasks.push(tokio::spawn(async move {
            let out = client
                .decrypt(DecryptRequest {
                    ciphertext: e.ciphertext,
                    uid: format!("d{i}"),
                    key_id: e.key_id,
                    annotations: e.annotations,
                })
                .await;
            (plaintext, out)
        }));
    }
    for task in tasks {
        let (plaintext, out) = task.await.unwrap();
        assert_eq!(
            out.expect("all 200 concurrent decrypts succeed")
                .into_inner()
                .plaintext,
            plaintext
        );
    }
    drop(provider);

    // With the default limit of 64, excess calls fail at once with ResourceExhausted.
    let provider = Provider::start(
        &lab,
        &Setup {
            max_concurrent_decrypt: 4,
            log_level: "info",
            ..Setup::new(&lab)
        },
    );
    let mut client = provider.client().await;
    let e = client
        .encrypt(EncryptRequest {
            plaintext: marked_seed(0),
            uid: "e".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let mut client = client.clone();
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            client
                .decrypt(DecryptRequest {
                    ciphertext: e.ciphertext,
                    uid: format!("d{i}"),
                    key_id: e.key_id,
                    annotations: e.annotations,
                })
                .await
        }));
    }
    let (mut ok, mut shed) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.into_inner().plaintext, marked_seed(0));
                ok += 1;
            }
            Err(s) if s.code() == Code::ResourceExhausted => shed += 1,
            Err(s) => panic!("unexpected error {:?}: {}", s.code(), s.message()),
        }
    }
    assert_eq!(ok + shed, 200);
    assert!(ok >= 4 && shed > 0, "ok={ok} shed={shed}");
}
