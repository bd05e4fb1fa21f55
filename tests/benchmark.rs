//! `benchmark` against a real OpenBao (transit mode) and a running provider
//! (socket mode).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use support::openbao::Lab;
use support::provider::{BIN, Provider, Setup};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).env_clear().output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn benchmark_measures_transit_and_the_socket_path_without_leaking() {
    let lab = Lab::start();
    let provider = Provider::start(
        &lab,
        &Setup {
            log_level: "info",
            ..Setup::new(&lab)
        },
    );
    let config = provider.config.to_str().unwrap().to_owned();
    let socket = provider.socket.to_str().unwrap().to_owned();

    let (code, out, err) = run(&["benchmark", "--config", &config, "--iterations", "3"]);
    assert_eq!(code, 0, "{err}");
    let keys: Vec<&str> = out.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "benchmark",
            "iterations",
            "transit_encrypt_ms_min",
            "transit_encrypt_ms_p50",
            "transit_encrypt_ms_max",
            "transit_decrypt_ms_min",
            "transit_decrypt_ms_p50",
            "transit_decrypt_ms_max"
        ]
    );
    assert!(
        !out.contains("vault:") && !out.contains("benchmark-smoke"),
        "{out}"
    );

    let (code, out, err) = run(&[
        "benchmark",
        "--mode",
        "socket",
        "--socket",
        &socket,
        "--concurrency",
        "4",
        "--duration",
        "1s",
        "--storm",
        "48",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    for op in ["status", "encrypt", "decrypt"] {
        assert!(report[format!("{op}_count")].as_u64().unwrap() > 0, "{out}");
        assert_eq!(report[format!("{op}_errors")], 0, "{out}");
        let p50: f64 = report[format!("{op}_ms_p50")]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let p99: f64 = report[format!("{op}_ms_p99")]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(p50 > 0.0 && p50 <= p99, "{out}");
    }
    assert_eq!(report["storm_decrypt_count"], 48, "{out}");
    assert_eq!(report["storm_decrypt_errors"], 0, "{out}");
    assert!(support::secrets_in(&out, &["benchmark-smoke"]).is_empty());

    for bad in [
        vec![
            "benchmark",
            "--config",
            config.as_str(),
            "--iterations",
            "0",
        ],
        vec!["benchmark", "--mode", "bogus"],
        vec![
            "benchmark",
            "--mode",
            "socket",
            "--socket",
            socket.as_str(),
            "--concurrency",
            "0",
        ],
        vec![
            "benchmark",
            "--mode",
            "socket",
            "--socket",
            socket.as_str(),
            "--output",
            "yaml",
        ],
    ] {
        assert_eq!(run(&bad).0, 2, "{bad:?}");
    }
}
