//! `probe` against a running provider (real binary, real socket, real
//! OpenBao): it passes, reports the key_id Status serves, and fails "Peer
//! key agreement" with exit 4 when `--expected-key-id` names another key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bao_kms_provider::identity::hash_value;
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use support::openbao::{KEY_NAME, Lab};
use support::provider::{BIN, Provider, Setup};
use support::report::{assert_checks_pass, check};
use support::secrets_in;

fn probe(provider: &Provider, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("probe")
        .arg("--socket")
        .arg(&provider.socket)
        .args(extra)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn probe_passes_and_detects_a_different_expected_key_id() {
    let lab = Lab::start();
    let provider = Provider::start(&lab, &Setup::new(&lab));
    let jwt = std::fs::read_to_string(&provider.jwt).unwrap();

    let out = probe(&provider, &["--output", "json"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["name"], "probe");
    assert_checks_pass(
        &report,
        &[
            "socket.path",
            "socket.connect",
            "kms.status",
            "kms.encrypt",
            "kms.decrypt",
        ],
    );
    let key_id = check(&report, "kms.key_id")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(key_id.starts_with("obk2."), "{key_id}");
    assert!(secrets_in(&stdout, &[jwt.trim(), KEY_NAME, lab.root_token()]).is_empty());

    // The same key: still a pass.
    let out = probe(&provider, &["--expected-key-id", &key_id]);
    assert_eq!(out.status.code(), Some(0));

    // Another well-formed key_id: the peers disagree.
    let other = format!("obk2.{}", hash_value("another provider"));
    let out = probe(
        &provider,
        &["--expected-key-id", &other, "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(4));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key_check = check(&report, "kms.key_id");
    assert_eq!(key_check["status"], "fail");
    assert!(
        key_check["message"]
            .as_str()
            .unwrap()
            .starts_with("Peer key agreement"),
        "{key_check}"
    );
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: running provider probe failed\n"
    );

    // A malformed expectation is a usage error, before any connection.
    let out = probe(&provider, &["--expected-key-id", "obk2.short"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}
