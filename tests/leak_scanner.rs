//! The leak scan every provider test relies on (`Provider`'s `Drop`) must
//! itself find leaks: planted secrets of each class are reported by class,
//! clean output passes, and a leak really fails the dropping test without
//! the failure message repeating the secret.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use support::PLAINTEXT_MARKER;
use support::leaks::{Known, scan};
use support::openbao::{KEY_NAME, Lab, TRANSIT_MOUNT};
use support::provider::{Provider, Setup};

/// Lines shaped like the provider's real output, with nothing secret in them.
const CLEAN: &str = r#"{"timestamp":"2026-01-01T00:00:00Z","level":"INFO","fields":{"message":"serve.ready","socket":"[redacted]"},"target":"bao_kms_provider::runtime"}
{"level":"DEBUG","fields":{"message":"status.probe ok","ciphertext":"vault:v1:<redacted 89 bytes>","key_id":"obk2.0123456789abcdefghijABCDEFGHIJ-_0123456789a"}}
{"level":"WARN","fields":{"message":"auth.login failed","class":"permission_denied","tokens.renewed":3}}
"#;

#[test]
fn each_shape_is_reported_by_class_and_clean_text_passes() {
    let none = Known::default();
    assert_eq!(scan(CLEAN, &none), Vec::<&str>::new());

    let marker = PLAINTEXT_MARKER.as_bytes();
    assert_eq!(
        scan(&format!("seed={PLAINTEXT_MARKER}"), &none),
        ["plaintext marker"]
    );
    for prefix in ["", "a", "ab"] {
        let mut bytes = prefix.as_bytes().to_vec();
        bytes.extend_from_slice(marker);
        bytes.extend_from_slice(b"xyz");
        for encoded in [STANDARD.encode(&bytes), URL_SAFE_NO_PAD.encode(&bytes)] {
            assert_eq!(
                scan(&format!("data={encoded}"), &none),
                ["plaintext marker in base64"],
                "alignment {}",
                prefix.len()
            );
        }
    }
    let hex: String = marker.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(scan(&hex, &none), ["plaintext marker in hex"]);
    assert_eq!(
        scan(&format!("{:?}", marker.to_vec()), &none),
        ["plaintext marker as a byte list"]
    );

    // Token shapes as OpenBao 2.7.2 issues them (service and batch), and
    // Vault's prefix, which OpenBao also accepts.
    for token in [
        "s.etQnVLy6cbA93YVWlJzT065y",
        "b.AAAAAQIO4v2PvKvfzychH3QaNH55du15nCvvyzVvNvNCfx_bxK9BKoiAsnsfgFvOsRVUUCOBZm37lBVXYRa5",
        "hvs.CAESIJ3k0yLx9qW2bVvH4n9d8sKf",
    ] {
        assert_eq!(
            scan(&format!("\"token\":\"{token}\""), &none),
            ["OpenBao-token-shaped string"],
            "{token}"
        );
    }
    assert_eq!(
        scan("ct=vault:v12:abcdEFGH1234+/==", &none),
        ["Transit ciphertext"]
    );
    assert_eq!(
        scan(&STANDARD.encode("vault:v1:abcdEFGH1234abcdEFGH1234"), &none),
        ["Transit ciphertext in base64"]
    );
    let extra = Known {
        extra: vec!["k8s-etcd".into()],
        ..Known::default()
    };
    assert_eq!(scan("key k8s-etcd", &extra), ["test-specific secret"]);
}

/// The lab's real JWT, a real token from its raw audit log and a real
/// Transit ciphertext, planted in a provider's output files, are each found
/// by the same [`Provider::leaks`] that `Drop` asserts on.
#[test]
fn planted_lab_secrets_are_found_in_provider_output() {
    let lab = Lab::start();
    let provider = Provider::prepare(&lab, &Setup::new(&lab));
    let jwt = fs::read_to_string(&provider.jwt).unwrap();
    let token = lab.login(&jwt).expect("the lab accepts the provider's JWT");
    assert!(
        token.starts_with("s."),
        "OpenBao 2.7.2 service token: s.<24>"
    );
    let ciphertext = lab
        .bao_ok(&[
            "write",
            "-field=ciphertext",
            &format!("{TRANSIT_MOUNT}/encrypt/{KEY_NAME}"),
            &format!("plaintext={}", STANDARD.encode(PLAINTEXT_MARKER)),
        ])
        .trim()
        .to_owned();
    let segments: Vec<&str> = jwt.split('.').collect();
    assert_eq!(segments.len(), 3);
    let body = token.strip_prefix("s.").unwrap();

    let (stdout, stderr) = provider.output_files();
    fs::write(stdout, CLEAN).unwrap();
    fs::write(stderr, "").unwrap();
    assert_eq!(provider.leaks(&[]), Vec::<&str>::new());

    let cases: Vec<(String, Vec<&str>)> = vec![
        (jwt.clone(), vec!["JWT", "JWT segment"]),
        (format!("hdr {}", segments[0]), vec!["JWT segment"]),
        (format!("claims {}", segments[1]), vec!["JWT segment"]),
        (format!("sig {}", segments[2]), vec!["JWT segment"]),
        (
            format!("X-Vault-Token: {token}"),
            vec![
                "OpenBao token from the audit log",
                "OpenBao-token-shaped string",
            ],
        ),
        // Without its prefix, only the audit log can tell it is a token.
        (
            format!("token body {body}"),
            vec!["OpenBao token from the audit log"],
        ),
        // The root token is hex without any prefix: found through the audit log.
        (
            format!("root {}", lab.root_token()),
            vec!["OpenBao token from the audit log"],
        ),
        (ciphertext, vec!["Transit ciphertext"]),
    ];
    for (i, (planted, expected)) in cases.iter().enumerate() {
        // Alternate the stream: both are scanned.
        let (dirty, clean) = if i % 2 == 0 {
            (stdout, stderr)
        } else {
            (stderr, stdout)
        };
        fs::write(dirty, format!("{CLEAN}{planted}\n")).unwrap();
        fs::write(clean, CLEAN).unwrap();
        assert_eq!(&provider.leaks(&[]), expected, "case {i}");
    }
}

/// A real provider whose output carries its JWT fails the test that drops
/// it, and the failure names the class without the JWT.
#[test]
fn dropping_a_provider_with_a_leak_fails_without_repeating_the_secret() {
    let lab = Lab::start();
    let mut provider = Provider::start(&lab, &Setup::quiet(&lab));
    assert!(provider.stop().success());
    let jwt = fs::read_to_string(&provider.jwt).unwrap();
    assert_eq!(provider.leaks(&[]), Vec::<&str>::new(), "a clean run");
    let (_, stderr) = provider.output_files();
    let mut text = fs::read_to_string(stderr).unwrap();
    text.push_str(&format!("login with {jwt}\n"));
    fs::write(stderr, text).unwrap();

    let payload = catch_unwind(AssertUnwindSafe(|| drop(provider)))
        .expect_err("Drop must fail on a leaked JWT");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert_eq!(message, "provider output leaks: JWT, JWT segment");
    assert!(!message.contains(jwt.trim()));
}

#[test]
fn a_pin_and_a_private_key_in_any_encoding_are_reported() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let der = key.serialize_der();
    let known = Known {
        pins: vec!["pin-0123456789abcdef".into()],
        private_keys: vec![der.clone()],
        ..Known::default()
    };
    assert_eq!(scan(CLEAN, &known), Vec::<&str>::new());
    assert_eq!(scan("pin=pin-0123456789abcdef", &known), ["PKCS#11 PIN"]);
    let pem = key.serialize_pem();
    let found = scan(&pem, &known);
    assert!(found.contains(&"private key PEM line"), "{found:?}");
    let encoded = STANDARD.encode(&der);
    assert!(scan(&format!("k={encoded}"), &known).contains(&"private key in base64"));
    let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(scan(&hex, &known), ["private key in hex"]);
    assert_eq!(
        scan(&format!("{der:?}"), &known),
        ["private key as a byte list"]
    );
}
