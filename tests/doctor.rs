//! `doctor` against real OpenBao: it passes on a correctly set-up lab and,
//! on each broken setup, fails the right check with exit 4 (exit 3 for a
//! config problem). Every run's output is scanned for secrets, the raw key
//! name and the private paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::cmd::chmod;
use support::jwt::{Claims, now_unix};
use support::leaks;
use support::openbao::{KEY_NAME, Lab, POLICY, TRANSIT_MOUNT};
use support::provider::{BIN, Provider, Setup, free_port};
use support::tmp::TempDir;

/// Check ids of a JWT-file config, in the order doctor must report them.
const JWT_FILE_IDS: [&str; 17] = [
    "config.load",
    "config.validate",
    "socket.group",
    "jwt.local",
    "kubernetes.encryption_config",
    "openbao.tls",
    "openbao.auth",
    "transit.capabilities",
    "transit.metadata",
    "transit.profile",
    "transit.disable_upsert",
    "transit.probe",
    "key_id.deterministic",
    "kms.status_encrypt",
    "host.files",
    "host.clock",
    "host.debug",
];

/// The host checks of our own, after the reference's checks (which may stop early).
const HOST_IDS: [&str; 3] = ["host.files", "host.clock", "host.debug"];

struct Run {
    code: Option<i32>,
    report: Value,
}

impl Run {
    fn check(&self, id: &str) -> (String, String) {
        let check = self.report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no check {id} in {:#}", self.report));
        (
            check["status"].as_str().unwrap().to_owned(),
            check["message"].as_str().unwrap_or("").to_owned(),
        )
    }

    fn ids(&self) -> Vec<String> {
        self.report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn failed(&self) -> Vec<String> {
        self.report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Runs `doctor --output json` (plus `extra`) and scans everything it wrote.
fn doctor(lab: &Lab, provider: &Provider, extra: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(["doctor", "--output", "json", "--config"])
        .arg(&provider.config)
        .args(extra)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_no_leak(lab, provider, &format!("{stdout}{stderr}"));
    assert!(stderr.lines().count() <= 1, "one-line errors: {stderr}");
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("doctor did not print JSON ({e}): {stdout}\n{stderr}"));
    Run {
        code: out.status.code(),
        report,
    }
}

/// Doctor reads the same JWT file as the provider: its output is scanned for
/// that JWT (which must be readable, or the check would be empty), every JWT
/// the lab minted and every token in the lab's audit log.
fn assert_no_leak(lab: &Lab, provider: &Provider, output: &str) {
    let jwt = fs::read_to_string(&provider.jwt)
        .unwrap_or_else(|e| panic!("read the JWT doctor was given ({e})"));
    assert!(!jwt.trim().is_empty(), "doctor was given an empty JWT file");
    let private = [
        KEY_NAME,
        provider.files_dir().to_str().unwrap(),
        provider.socket_dir.path().to_str().unwrap(),
        lab.dir().to_str().unwrap(),
    ];
    let mut known = provider.known_secrets();
    known.jwts.push(jwt);
    known.tokens.push(lab.root_token().to_owned());
    known.extra = private.iter().map(|s| (*s).to_owned()).collect();
    let found = leaks::scan(output, &known);
    assert!(found.is_empty(), "doctor output leaks {found:?}");
}

/// Points `provider`'s config at another Transit key.
fn use_key(provider: &Provider, key: &str) {
    let text = fs::read_to_string(&provider.config).unwrap();
    let text = text.replace(
        &format!("keyName: {KEY_NAME}\n"),
        &format!("keyName: {key}\n"),
    );
    fs::write(&provider.config, text).unwrap();
}

/// The policy `policy openbao` prints for `provider`'s config.
fn printed_policy(provider: &Provider, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["policy", "openbao", "--config"])
        .arg(&provider.config)
        .args(extra)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8(out.stdout).unwrap()
}

fn write_policy(lab: &Lab, hcl: &str) {
    let file = lab.dir().join("doctor-policy.hcl");
    fs::write(&file, hcl).unwrap();
    lab.bao_ok(&["policy", "write", POLICY, file.to_str().unwrap()]);
}

#[test]
fn doctor_passes_on_a_correct_lab_and_names_each_broken_transit_setup() {
    let lab = Lab::start();
    let provider = Provider::prepare(&lab, &Setup::new(&lab));
    // The lab's policy is the one `policy openbao` prints: install ours.
    write_policy(&lab, &printed_policy(&provider, &[]));

    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(0), "{:#}", run.report);
    assert_eq!(run.report["name"], "doctor");
    assert_eq!(run.ids(), JWT_FILE_IDS);
    // The harness's socket directory is 0750 without setgid: a warning only.
    let (status, message) = run.check("host.files");
    assert_eq!(status, "warn", "{message}");
    assert!(message.contains("expected 2750"), "{message}");
    // The harness logs at debug level (other suites read those lines).
    assert_eq!(
        run.check("host.debug"),
        (
            "warn".into(),
            "logging.level is debug: set it back to info when the investigation ends".into()
        )
    );
    // A socket directory in a group other than the socket group fails, as serve would.
    std::os::unix::fs::chown(provider.socket_dir.path(), None, Some(4242)).unwrap();
    let wrong_group = doctor(&lab, &provider, &[]);
    assert_eq!(wrong_group.code, Some(4));
    let (status, message) = wrong_group.check("host.files");
    assert_eq!(status, "fail");
    assert!(message.contains("expected the socket group 0"), "{message}");
    std::os::unix::fs::chown(provider.socket_dir.path(), None, Some(0)).unwrap();
    assert_eq!(
        run.check("kubernetes.encryption_config"),
        ("skip".into(), "no --encryption-config path supplied".into())
    );
    assert_eq!(
        run.check("jwt.local"),
        ("pass".into(), "readable and locally valid".into())
    );
    let (status, message) = run.check("key_id.deterministic");
    assert_eq!(status, "pass");
    assert!(message.starts_with("active key_id hash "), "{message}");
    for check in run.report["checks"].as_array().unwrap() {
        assert!(check["title"].as_str().is_some_and(|t| !t.is_empty()));
        if check["message"].is_null() {
            assert!(check.as_object().unwrap().get("message").is_none());
        }
    }

    // The EncryptionConfiguration init writes: identity fallback is a warning.
    let enc = provider.files_dir().join("encryption-config.yaml");
    let socket = provider.socket.to_str().unwrap();
    let good = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms:\n          apiVersion: v2\n          name: openbao-kms-workload-a\n          endpoint: unix://{socket}\n          timeout: 3s\n"
    );
    fs::write(&enc, &good).unwrap();
    let enc_arg = ["--encryption-config", enc.to_str().unwrap()];
    let run = doctor(&lab, &provider, &enc_arg);
    assert_eq!(run.code, Some(0));
    assert_eq!(
        run.check("kubernetes.encryption_config"),
        ("pass".into(), "KMS v2 provider matches local config".into())
    );
    fs::write(&enc, format!("{good}      - identity: {{}}\n")).unwrap();
    let run = doctor(&lab, &provider, &enc_arg);
    assert_eq!(run.code, Some(0), "a warning does not fail doctor");
    assert_eq!(
        run.check("kubernetes.encryption_config"),
        ("warn".into(), "identity fallback remains configured".into())
    );
    fs::write(&enc, good.replace("kms.sock", "other.sock")).unwrap();
    let run = doctor(&lab, &provider, &enc_arg);
    assert_eq!(run.code, Some(4));
    assert_eq!(run.failed(), ["kubernetes.encryption_config"]);
    assert!(
        run.check("kubernetes.encryption_config")
            .1
            .contains("must match server.socketPath")
    );

    // Mount allows implicit key creation.
    let upsert = format!("{TRANSIT_MOUNT}/config/keys");
    lab.bao_ok(&["write", &upsert, "disable_upsert=false"]);
    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(4));
    // The in-memory provider refuses to become healthy for the same reason.
    assert_eq!(
        run.failed(),
        ["transit.disable_upsert", "kms.status_encrypt"]
    );
    assert_eq!(
        run.check("transit.disable_upsert").1,
        "mount allows implicit key creation"
    );
    assert!(run.check("kms.status_encrypt").1.contains("upsert_allowed"));
    lab.bao_ok(&["write", &upsert, "disable_upsert=true"]);

    // A policy without decrypt.
    let full_policy = printed_policy(&provider, &[]);
    let without_decrypt: String = full_policy
        .split("\n\n")
        .filter(|stanza| !stanza.contains("/decrypt/"))
        .map(|stanza| format!("{stanza}\n\n"))
        .collect();
    write_policy(&lab, &without_decrypt);
    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(4));
    assert_eq!(
        run.check("transit.capabilities"),
        ("fail".into(), "decrypt update capability is missing".into())
    );
    // A policy that may also rotate the key.
    let rotate = format!(
        "{full_policy}path \"{TRANSIT_MOUNT}/keys/{KEY_NAME}/rotate\" {{\n  capabilities = [\"update\"]\n}}\n"
    );
    write_policy(&lab, &rotate);
    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(4));
    assert_eq!(run.failed(), ["transit.capabilities"]);
    assert_eq!(
        run.check("transit.capabilities").1,
        "token can perform non-hot-path key management"
    );

    // Unsafe key profiles, each on its own key that the policy covers.
    let cases: [(&str, &[&str], &str); 3] = [
        (
            "exportable",
            &["exportable=true"],
            "blocking/cryptographic_safety: key material export is enabled",
        ),
        (
            "backup",
            &["allow_plaintext_backup=true"],
            "blocking/cryptographic_safety: plaintext backup is enabled",
        ),
        (
            "deletable",
            &[],
            "blocking/api_server_availability: key deletion is allowed",
        ),
    ];
    let mut policy = full_policy.clone();
    for (suffix, create_args, finding) in cases {
        let key = format!("{KEY_NAME}-{suffix}");
        let key_path = format!("{TRANSIT_MOUNT}/keys/{key}");
        let mut args = vec!["write", "-f", key_path.as_str(), "type=aes256-gcm96"];
        args.extend_from_slice(create_args);
        lab.bao_ok(&args);
        if suffix == "deletable" {
            lab.bao_ok(&[
                "write",
                &format!("{key_path}/config"),
                "deletion_allowed=true",
            ]);
        }
        use_key(&provider, &key);
        policy.push_str(&printed_policy(
            &provider,
            &["--include-token-renewal=false"],
        ));
        write_policy(&lab, &policy);
        let run = doctor(&lab, &provider, &[]);
        assert_eq!(run.code, Some(4), "{suffix}: {:#}", run.report);
        assert_eq!(run.failed(), ["transit.profile"], "{suffix}");
        assert_eq!(run.check("transit.profile").1, finding);
        for id in [
            "transit.probe",
            "key_id.deterministic",
            "kms.status_encrypt",
        ] {
            assert_eq!(
                run.check(id),
                ("skip".into(), "Transit key profile failed".into()),
                "{suffix} {id}"
            );
        }
        // Restore for the next case (use_key matches the original name only).
        let text = fs::read_to_string(&provider.config).unwrap();
        fs::write(&provider.config, text.replace(&key, KEY_NAME)).unwrap();
    }
}

/// A CA that did not sign the lab's certificate.
fn foreign_ca(dir: &Path) -> std::path::PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
    let path = dir.join("foreign-ca.pem");
    fs::write(&path, cert.pem()).unwrap();
    chmod(&path, 0o644);
    path
}

#[test]
fn doctor_fails_on_bad_tls_bad_jwts_and_an_unsafe_config_file() {
    let lab = Lab::start();
    let scratch = TempDir::new("doctor-ca");

    let mut setup = Setup::new(&lab);
    setup.ca_file = foreign_ca(scratch.path());
    let provider = Provider::prepare(&lab, &setup);
    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(4));
    assert_eq!(run.check("openbao.tls").0, "pass");
    let (status, message) = run.check("openbao.auth");
    assert_eq!(status, "fail");
    assert!(message.contains("tls_failed"), "{message}");
    // The reference's checks stop after auth; the host checks always come last.
    let ids = run.ids();
    assert_eq!(ids[ids.len() - 3..], HOST_IDS);
    assert_eq!(ids[ids.len() - 4], "openbao.auth", "stops after auth");

    let mut setup = Setup::new(&lab);
    setup.tls_server_name = "wrong.example.internal".into();
    let provider = Provider::prepare(&lab, &setup);
    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(4));
    assert_eq!(run.failed(), ["openbao.auth"]);
    assert!(run.check("openbao.auth").1.contains("tls_failed"));

    let now = now_unix();
    let mut setup = Setup::new(&lab);
    setup.jwt_claims = Claims {
        exp: now - 600,
        nbf: Some(now - 7200),
        iat: Some(now - 7200),
        ..Claims::valid_for(Duration::from_secs(60))
    };
    let provider = Provider::prepare(&lab, &setup);
    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(4));
    assert_eq!(
        run.check("jwt.local"),
        ("fail".into(), "jwt expired".into())
    );
    assert_eq!(
        run.check("openbao.auth"),
        ("skip".into(), "local auth validation failed".into())
    );
    let ids = run.ids();
    assert_eq!(
        ids[ids.len() - 4..],
        ["openbao.auth", HOST_IDS[0], HOST_IDS[1], HOST_IDS[2]]
    );

    let mut setup = Setup::new(&lab);
    setup.jwt_claims = Claims {
        aud: vec!["someone-else".into()],
        ..Claims::valid_for(Duration::from_secs(3600))
    };
    let provider = Provider::prepare(&lab, &setup);
    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(4));
    assert_eq!(
        run.check("jwt.local"),
        ("fail".into(), "jwt audience mismatch".into())
    );

    // A group-writable config file is a config problem: exit 3.
    let provider = Provider::prepare(&lab, &Setup::new(&lab));
    chmod(&provider.config, 0o660);
    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(3));
    assert_eq!(
        run.ids(),
        ["config.load", "config.validate", "openbao.auth"]
    );
    let (status, message) = run.check("config.validate");
    assert_eq!(status, "fail");
    assert!(
        message.contains("config: file permissions unsafe"),
        "{message}"
    );
    assert_eq!(
        run.check("openbao.auth"),
        ("skip".into(), "config validation failed".into())
    );

    // The text report: name first, one line per check.
    chmod(&provider.config, 0o640);
    let out = Command::new(BIN)
        .args(["doctor", "--config"])
        .arg(&provider.config)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "doctor");
    assert_eq!(lines[1], "[pass] config.load: Config load");
    assert_eq!(lines.len(), 1 + JWT_FILE_IDS.len());
    assert!(lines[4].starts_with("[pass] jwt.local: JWT file - readable and locally valid"));
    assert_no_leak(&lab, &provider, &text);
}

#[test]
fn doctor_next_to_a_running_provider_reads_but_never_writes_its_state() {
    let lab = Lab::start();
    let provider = Provider::start(&lab, &Setup::new(&lab));
    let state = provider.files_dir().join("state/key-registry.json");
    let checkpoint = provider
        .files_dir()
        .join("state/key-registry.json.checkpoint");
    let snapshot = || {
        [&state, &checkpoint].map(|p| {
            let meta = fs::metadata(p).unwrap();
            (fs::read(p).unwrap(), meta.modified().unwrap())
        })
    };
    let before = snapshot();

    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(0), "{:#}", run.report);
    assert_eq!(before, snapshot(), "doctor changed the registry state");

    // After a rotation the key has two versions: the first-install
    // derivation would refuse it, the node's state still names the active one.
    lab.bao_ok(&[
        "write",
        "-f",
        &format!("{TRANSIT_MOUNT}/keys/{KEY_NAME}/rotate"),
    ]);
    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(0), "{:#}", run.report);
    assert_eq!(run.check("transit.metadata").1, "latest version 2");

    // Without the state, the same rotated key cannot be bootstrapped.
    let mut stopped = provider;
    assert!(stopped.stop().success());
    fs::remove_file(&state).unwrap();
    fs::remove_file(&checkpoint).unwrap();
    let run = doctor(&lab, &stopped, &[]);
    assert_eq!(run.code, Some(4));
    assert_eq!(run.failed(), ["key_id.deterministic"]);
    assert!(
        run.check("key_id.deterministic")
            .1
            .contains("state_unavailable")
    );
    assert_eq!(run.check("kms.status_encrypt").0, "skip");
}

/// The kernel's clock status read independently of doctor (Python's ctypes
/// calling libc `adjtimex` on a zeroed `struct timex`, so `modes` is 0):
/// `None` when the call fails, else whether it is synchronized, decided as
/// timedatectl decides it.
fn kernel_clock_synchronized() -> Option<bool> {
    // `status` is at offset 40 on LP64: int modes + padding, then four longs.
    const { assert!(cfg!(target_pointer_width = "64"), "offsets are for LP64") };
    let script = "import ctypes, struct\n\
        libc = ctypes.CDLL(None, use_errno=True)\n\
        buf = ctypes.create_string_buffer(512)\n\
        ret = libc.adjtimex(buf)\n\
        print(ret, struct.unpack_from('i', buf, 40)[0])\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let [ret, status]: [i32; 2] = text
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    const TIME_ERROR: i32 = 5;
    const STA_UNSYNC: i32 = 0x0040;
    (ret != -1).then_some(ret != TIME_ERROR && status & STA_UNSYNC == 0)
}

/// `12m 30s` → 750 seconds.
fn span_secs(span: &str) -> u64 {
    span.split(' ')
        .map(|part| {
            let (value, unit) = part.split_at(part.len() - 1);
            let value: u64 = value.parse().unwrap_or_else(|_| panic!("span {span}"));
            value
                * match unit {
                    "h" => 3600,
                    "m" => 60,
                    "s" => 1,
                    _ => panic!("span {span}"),
                }
        })
        .sum()
}

#[test]
fn doctor_reports_the_kernel_clock_and_debug_settings_left_on() {
    let lab = Lab::start();
    let quiet = Setup {
        log_level: "info",
        ..Setup::new(&lab)
    };
    let provider = Provider::prepare(&lab, &quiet);
    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(0), "{:#}", run.report);
    assert_eq!(
        run.check("host.debug"),
        (
            "pass".into(),
            "logging is not at debug level; metrics and health listen on loopback or are disabled"
                .into()
        )
    );
    // Whatever this host's clock says, doctor must say the same.
    let (status, message) = run.check("host.clock");
    match kernel_clock_synchronized() {
        Some(true) => {
            assert_eq!(status, "pass", "{message}");
            assert!(message.starts_with("kernel reports the clock synchronized (maxerror "));
        }
        Some(false) => {
            assert_eq!(status, "warn", "{message}");
            assert!(message.contains("clock not synchronized"), "{message}");
            assert!(
                message.contains("JWT, certificate and token expiry"),
                "{message}"
            );
        }
        None => {
            assert_eq!(status, "warn", "{message}");
            assert!(message.starts_with("cannot read the kernel clock status: "));
        }
    }

    // An investigation's settings, left behind: every one is named, none fails.
    let metrics = format!("0.0.0.0:{}", free_port());
    let loud = Setup {
        correlation: Some(("INC-42", "20m")),
        metrics_address: metrics.clone(),
        ..Setup::new(&lab)
    };
    let provider = Provider::prepare(&lab, &loud);
    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(0), "{:#}", run.report);
    assert_eq!(
        run.check("host.debug"),
        (
            "warn".into(),
            format!(
                "debug correlation for incident INC-42 is configured: a provider started now logs correlation for 20m; \
                 logging.level is debug: set it back to info when the investigation ends; \
                 server.metricsAddress listens on {metrics}, not on loopback: anyone who reaches this host reads the metrics endpoint"
            )
        )
    );
}

#[test]
fn doctor_counts_down_the_debug_window_of_the_running_provider() {
    let lab = Lab::start();
    let setup = Setup {
        correlation: Some(("INC-7", "1h")),
        ..Setup::new(&lab)
    };
    let mut provider = Provider::start(&lab, &setup);
    let run = doctor(&lab, &provider, &[]);
    assert_eq!(run.code, Some(0), "{:#}", run.report);
    let (status, message) = run.check("host.debug");
    assert_eq!(status, "warn");
    let rest = message
        .strip_prefix("debug correlation for incident INC-7 is on: ")
        .unwrap_or_else(|| panic!("{message}"));
    let tail = format!(
        " left (provider pid {}); logging.level is debug",
        provider.pid()
    );
    let (left, _) = rest
        .split_once(&tail)
        .unwrap_or_else(|| panic!("{message}"));
    // Started moments ago: most of the hour is left, never more than the TTL.
    let left = span_secs(left);
    assert!(left <= 3600 && left > 3600 - 120, "{message}");

    // Stopped, the same config only says what a start would do.
    assert!(provider.stop().success());
    let (status, message) = doctor(&lab, &provider, &[]).check("host.debug");
    assert_eq!(status, "warn");
    assert!(
        message.starts_with(
            "debug correlation for incident INC-7 is configured: a provider started now logs correlation for 1h;"
        ),
        "{message}"
    );
}
