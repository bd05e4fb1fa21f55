//! The offline commands, run as the real binary: `policy openbao`, `config`,
//! `config schema`, `completion`, `help`, and the usage rules every command
//! shares (positional arguments and bad `--output` values are exit 2), and
//! config paths that must never block (a FIFO or device is exit 3 at once).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::tmp::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_bao-kms-provider");

/// Spec §1.8 JWT file sample, the smallest complete config.
const MINIMAL: &str = r#"configVersion: v1alpha1
server:
  socketPath: /run/openbao-kms/kms.sock
  socketMode: "0660"
  socketGroup: openbao-kms-socket
openbao:
  address: https://bao.example.internal:8200
  caCertFile: /etc/openbao-kms/tls/ca.crt
  tlsServerName: bao.example.internal
  instanceId: bao-prod-a
auth:
  method: jwt
  jwt:
    source: file
    mountPath: auth/k8s-workload-a-jwt
    role: openbao-kms-control-plane
    jwtFile: /var/lib/openbao-kms/identity.jwt
transit:
  mountPath: transit
  keyName: k8s-workload-a-etcd
  keyIdScope:
    providerName: openbao-kms-workload-a
    clusterId: workload-a
    transitMountId: transit-prod-primary
    keyLineageId: "01HXEXAMPLEKEYLINEAGEID"
"#;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run bao-kms-provider")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, body).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    path
}

#[test]
fn policy_openbao_prints_six_paths_and_can_drop_renewal() {
    let dir = TempDir::new("cli-policy");
    let config = write_config(dir.path(), "config.yaml", MINIMAL);
    let config = config.to_str().unwrap();

    let out = run(&["policy", "openbao", "--config", config]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let policy = text(&out.stdout);
    let paths: Vec<&str> = policy
        .lines()
        .filter_map(|l| l.strip_prefix("path \""))
        .map(|l| l.split('"').next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "transit/keys/k8s-workload-a-etcd",
            "transit/encrypt/k8s-workload-a-etcd",
            "transit/decrypt/k8s-workload-a-etcd",
            "transit/config/keys",
            "sys/capabilities-self",
            "auth/token/renew-self",
        ]
    );
    assert!(policy.starts_with("# Read Transit key metadata.\npath "));

    for explicit in ["--include-token-renewal", "--include-token-renewal=true"] {
        let out = run(&["policy", "openbao", explicit, "--config", config]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(text(&out.stdout), policy);
    }
    let out = run(&[
        "policy",
        "openbao",
        "--include-token-renewal=false",
        "--config",
        config,
    ]);
    assert_eq!(out.status.code(), Some(0));
    let without = text(&out.stdout);
    assert!(!without.contains("renew-self"));
    assert!(policy.starts_with(&without));

    // A space-separated value is a positional argument, as with Go's flags.
    let out = run(&[
        "policy",
        "openbao",
        "--include-token-renewal",
        "false",
        "--config",
        config,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["policy", "openbao", "--include-token-renewal=maybe"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn policy_needs_a_valid_config() {
    let dir = TempDir::new("cli-policy-bad");
    let missing = dir.path().join("absent.yaml");
    let out = run(&["policy", "openbao", "--config", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains(dir.path().to_str().unwrap()), "{err}");

    let bad = write_config(
        dir.path(),
        "bad.yaml",
        &MINIMAL.replace("keyName: k8s-workload-a-etcd", "keyName: -bad-"),
    );
    let out = run(&["policy", "openbao", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("transit.keyName"));
    assert!(!text(&out.stderr).contains("-bad-"));

    // `policy` alone prints help and succeeds, like the reference.
    let out = run(&["policy"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("openbao"));
}

#[test]
fn completion_scripts_for_the_four_shells() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef bao-kms-provider"),
        ("fish", "complete -c bao-kms-provider"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = run(&["completion", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("probe"), "{shell} completes subcommands");
    }
    for bad in [
        &["completion"][..],
        &["completion", "elvish"],
        &["completion", "bash", "zsh"],
    ] {
        assert_eq!(run(bad).status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn help_topics() {
    let out = run(&["help", "probe"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("--expected-key-id"));
    let out = run(&["help", "no-such-topic"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    // No command at all prints help and succeeds.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("Usage:"));
}

#[test]
fn every_command_rejects_positional_arguments() {
    let commands: [&[&str]; 9] = [
        &["serve"],
        &["doctor"],
        &["probe"],
        &["policy", "openbao"],
        &["config"],
        &["config", "schema"],
        &["version"],
        &[
            "init",
            "--values",
            "/nonexistent/v.yaml",
            "--out",
            "/nonexistent/out",
        ],
        &["completion", "bash"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("stray");
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(run(&["stray"]).status.code(), Some(2));
    assert_eq!(run(&["--no-such-flag"]).status.code(), Some(2));
}

#[test]
fn output_is_validated_before_any_work() {
    // The config does not exist: a usage error must win over a config error,
    // and no check may run.
    for command in [&["doctor"][..], &["probe"]] {
        let mut args = command.to_vec();
        args.extend(["--config", "/nonexistent/config.yaml", "--output", "yaml"]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        assert_eq!(text(&out.stderr), "error: --output must be text or json\n");
    }
    // Trimmed and case-insensitive.
    let out = run(&[
        "doctor",
        "--config",
        "/nonexistent/c.yaml",
        "--output",
        " JSON ",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["name"], "doctor");
    assert_eq!(report["checks"][0]["id"], "config.load");
    assert_eq!(report["checks"][0]["status"], "fail");
}

#[test]
fn version_prints_text_or_one_json_object() {
    // This test binary is a plain `cargo build`: git metadata is unknown.
    let out = run(&["version"]);
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert_eq!(keys, ["version", "commit", "buildDate", "dirty", "rustc"]);
    assert!(
        lines[1..4].iter().all(|l| l.ends_with(": unknown")),
        "{lines:?}"
    );
    assert!(lines[4].starts_with("rustc: rustc 1."), "{lines:?}");

    let out = run(&["version", "--output", " Json "]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["version"], lines[0].trim_start_matches("version: "));
    for unknown in ["commit", "buildDate", "dirty"] {
        assert!(json[unknown].is_null(), "{json}");
    }
    assert_eq!(json["rustc"], lines[4].trim_start_matches("rustc: "));

    let out = run(&["version", "--output", "yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(text(&out.stderr), "error: --output must be text or json\n");
}

/// Runs the binary but kills it after `limit`: a command that blocks fails
/// the test instead of hanging it.
fn run_bounded(args: &[&str], limit: std::time::Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bao-kms-provider");
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("{args:?} still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_fifo_device_or_directory_as_config_fails_at_once_with_exit_3() {
    let dir = TempDir::new("cli-fifo");
    let fifo = dir.path().join("config.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let fifo = fifo.to_str().unwrap();
    let directory = dir.path().to_str().unwrap();
    for path in [fifo, "/dev/zero", "/dev/null", directory] {
        for command in ["serve", "config", "doctor"] {
            let out = run_bounded(
                &[command, "--config", path],
                std::time::Duration::from_secs(10),
            );
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            assert_eq!(out.status.code(), Some(3), "{command} {path}: {stderr}");
            let problem = "config invalid; config: must be a regular file";
            if command == "doctor" {
                assert!(
                    stdout.contains(&format!("[fail] config.load: Config load - {problem}")),
                    "{path}: {stdout}"
                );
                assert_eq!(stderr, "error: doctor: configuration is invalid\n");
            } else {
                assert_eq!(stderr, format!("error: {problem}\n"), "{command} {path}");
            }
        }
    }
}
