//! `config schema` against the loader: every sample config in the repository
//! must load *and* validate against the printed schema, and for a set of
//! broken configs (unknown keys, wrong types, bad enums, bad socket modes,
//! missing required keys) the loader and the schema must both refuse.
//!
//! The schema is checked with Python's `jsonschema` (draft 2020-12), which
//! `scripts/install-test-deps.sh` installs into `.tools/python`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bao_kms_provider::config::{NoEnv, Overrides, load_str};
use std::fs;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use support::tmp::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_bao-kms-provider");

/// Validates each document of a JSON list; prints one line per document:
/// `ok` or `invalid <first error path>`.
const VALIDATOR: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)
for doc in json.load(open(sys.argv[2])):
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        print("invalid " + "/".join(str(p) for p in errors[0].absolute_path) + " " + errors[0].validator)
    else:
        print("ok")
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema_text() -> String {
    let out = Command::new(BIN)
        .args(["config", "schema"])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8(out.stdout).unwrap()
}

/// Results of validating `docs` (YAML texts) against the schema.
fn schema_verdicts(docs: &[String]) -> Vec<String> {
    let dir = TempDir::new("schema");
    let schema = dir.path().join("schema.json");
    fs::write(&schema, schema_text()).unwrap();
    let json: Vec<serde_json::Value> = docs
        .iter()
        .map(|yaml| {
            let value: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
            serde_json::to_value(value).unwrap()
        })
        .collect();
    let docs_file = dir.path().join("docs.json");
    fs::File::create(&docs_file)
        .unwrap()
        .write_all(serde_json::to_string(&json).unwrap().as_bytes())
        .unwrap();
    let tools = repo().join(".tools/python");
    let out = Command::new("python3")
        .arg("-c")
        .arg(VALIDATOR)
        .arg(&schema)
        .arg(&docs_file)
        .env("PYTHONPATH", &tools)
        .stdin(Stdio::null())
        .output()
        .expect("python3 must be installed (scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "jsonschema validation did not run; run scripts/install-test-deps.sh\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), docs.len());
    lines
}

fn loader_accepts(yaml: &str) -> Result<(), String> {
    load_str(yaml, &Overrides::default(), &NoEnv)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Every provider config sample in the repository: `docs/examples/config/`
/// and `deploy/config/` (`init` values files are partial by design and
/// checked by the init tests). Each directory must exist and hold samples.
fn sample_configs() -> Vec<PathBuf> {
    let mut samples = Vec::new();
    for dir in ["docs/examples/config", "deploy/config"] {
        let entries = fs::read_dir(repo().join(dir)).unwrap_or_else(|e| panic!("read {dir}: {e}"));
        let before = samples.len();
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            if yaml && !name.starts_with("init-values") {
                samples.push(path);
            }
        }
        assert!(samples.len() > before, "no config sample in {dir}");
    }
    samples.sort();
    samples
}

#[test]
fn every_sample_config_loads_and_matches_the_schema() {
    let samples = sample_configs();
    assert!(
        samples.len() >= 4,
        "expected the docs/examples/config samples, found {samples:?}"
    );
    let texts: Vec<String> = samples
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    for (path, text) in samples.iter().zip(&texts) {
        if let Err(e) = loader_accepts(text) {
            panic!("{}: loader refuses the sample: {e}", path.display());
        }
    }
    for (path, verdict) in samples.iter().zip(schema_verdicts(&texts)) {
        assert_eq!(
            verdict,
            "ok",
            "{}: schema refuses the sample",
            path.display()
        );
    }
}

fn base() -> String {
    fs::read_to_string(repo().join("docs/examples/config/jwt-file-minimal.yaml")).unwrap()
}

/// `base()` with `from` replaced by `to` (which must change the text).
fn edit(from: &str, to: &str) -> String {
    let text = base();
    assert!(text.contains(from), "sample lacks {from:?}");
    text.replacen(from, to, 1)
}

#[test]
fn loader_and_schema_refuse_the_same_broken_configs() {
    let cases: Vec<(&str, String)> = vec![
        ("unknown top-level key", format!("{}extra: 1\n", base())),
        (
            "DEL in an identifier (fuzz finding)",
            edit(
                "providerName: openbao-kms-workload-a",
                "providerName: \"openbao-kms\\x7fworkload-a\"",
            ),
        ),
        (
            "C1 control in an identifier",
            edit(
                "providerName: openbao-kms-workload-a",
                "providerName: \"openbao-kms\\x9bworkload-a\"",
            ),
        ),
        (
            "unknown nested key (removed knob)",
            edit(
                "  socketGroup:",
                "  adminAddress: 127.0.0.1:9000\n  socketGroup:",
            ),
        ),
        (
            "flat legacy auth key",
            edit("  method: jwt\n", "  method: jwt\n  role: x\n"),
        ),
        (
            "integer where a string is expected",
            edit("socketGroup: openbao-kms-socket", "socketGroup: 1234"),
        ),
        (
            "quoted integer",
            edit(
                "  socketGroup:",
                "  maxConcurrentDecrypt: \"64\"\n  socketGroup:",
            ),
        ),
        (
            "bare number duration",
            edit("  instanceId:", "  timeout: 120\n  instanceId:"),
        ),
        (
            "duration without unit",
            edit("  instanceId:", "  timeout: 5x\n  instanceId:"),
        ),
        ("bad auth method", edit("method: jwt", "method: oidc")),
        ("bad jwt source", edit("source: file", "source: vault")),
        (
            "bad log level",
            format!("{}logging:\n  level: verbose\n", base()),
        ),
        (
            "bad rotation mode",
            format!("{}rotation:\n  mode: automatic\n", base()),
        ),
        ("socketMode not octal", edit("\"0660\"", "\"rw-rw----\"")),
        ("socketMode world access", edit("\"0660\"", "\"0666\"")),
        ("socketMode execute bit", edit("\"0660\"", "\"0770\"")),
        ("socketMode above 0777", edit("\"0660\"", "\"1660\"")),
        ("socketMode unquoted integer", edit("\"0660\"", "660")),
        (
            "missing configVersion",
            edit("configVersion: v1alpha1\n", ""),
        ),
        ("wrong configVersion", edit("v1alpha1", "v1beta1")),
        (
            "missing socketGroup",
            edit("  socketGroup: openbao-kms-socket\n", ""),
        ),
        (
            "missing openbao.address",
            edit("  address: https://bao.example.internal:8200\n", ""),
        ),
        (
            "missing transit.keyName",
            edit("  keyName: k8s-workload-a-etcd\n", ""),
        ),
        (
            "missing jwt role",
            edit("    role: openbao-kms-control-plane\n", ""),
        ),
        (
            "missing keyLineageId",
            edit(
                "    keyLineageId: \"0123456789abcdef0123456789abcdef\"\n",
                "",
            ),
        ),
        (
            "bad key name",
            edit("keyName: k8s-workload-a-etcd", "keyName: -bad-"),
        ),
        ("http address", edit("https://bao", "http://bao")),
        (
            "absolute mount path",
            edit("mountPath: transit", "mountPath: /transit"),
        ),
        (
            "dot-dot mount segment",
            edit("mountPath: transit", "mountPath: transit/../sys"),
        ),
        (
            "namespace with percent",
            edit("  instanceId:", "  namespace: admin%2f\n  instanceId:"),
        ),
        (
            "concurrency out of range",
            edit(
                "  socketGroup:",
                "  maxConcurrentDecrypt: 2000\n  socketGroup:",
            ),
        ),
        (
            "oauth2 source without oauth2 block",
            edit("    source: file\n", "    source: oauth2\n")
                .replace("    jwtFile: /var/lib/openbao-kms/identity.jwt\n", ""),
        ),
        (
            "oauth2 block with source file",
            edit(
                "    expectedIssuer:",
                "    oauth2:\n      clientId: x\n    expectedIssuer:",
            ),
        ),
        (
            "no source, jwtFile and an oauth2 key (no legacy inference)",
            edit("    source: file\n", "    oauth2: {}\n"),
        ),
        (
            "socket outside the runtime directory",
            edit(
                "socketPath: /run/openbao-kms/kms.sock",
                "socketPath: /tmp/kms.sock",
            ),
        ),
        (
            "debug correlation without debug level",
            format!(
                "{}logging:\n  level: info\n  debugCorrelation:\n    enabled: true\n    incidentId: inc-1\n",
                base()
            ),
        ),
        (
            "spiffe certificate source",
            edit(
                "  method: jwt\n",
                "  method: cert\n  cert:\n    mountPath: auth/cert\n    source: spiffe\n",
            ),
        ),
    ];
    let texts: Vec<String> = cases.iter().map(|(_, text)| text.clone()).collect();
    let verdicts = schema_verdicts(&texts);
    let mut disagreements = Vec::new();
    for ((name, text), verdict) in cases.iter().zip(verdicts) {
        let loader = loader_accepts(text);
        if loader.is_ok() {
            disagreements.push(format!("{name}: loader accepts"));
        }
        // spiffe is in the reference schema's enum but gated by validation.
        let schema_must_refuse = *name != "spiffe certificate source";
        if schema_must_refuse && verdict == "ok" {
            disagreements.push(format!("{name}: schema accepts"));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

#[test]
fn loader_and_schema_accept_the_same_variants() {
    let cases: Vec<(&str, String)> = vec![
        ("sample as is", base()),
        (
            "legacy source inference from jwtFile",
            edit("    source: file\n", ""),
        ),
        (
            "socketMode without leading zero",
            edit("\"0660\"", "\"660\""),
        ),
        ("owner-only socketMode", edit("\"0660\"", "\"0600\"")),
        (
            "disabled metrics listener",
            edit("  socketGroup:", "  metricsAddress: \"\"\n  socketGroup:"),
        ),
        (
            "null keeps the default",
            edit("  instanceId:", "  timeout: null\n  instanceId:"),
        ),
        (
            "namespace path",
            edit(
                "  instanceId:",
                "  namespace: admin/workload-a\n  instanceId:",
            ),
        ),
        (
            "compound duration",
            format!(
                "{}bootstrap:\n  graceTimeout: 1m30s\n  retryInterval: 500ms\n",
                base()
            ),
        ),
        (
            "numeric socket group",
            edit("socketGroup: openbao-kms-socket", "socketGroup: \"1234\""),
        ),
        (
            "debug correlation done right",
            format!(
                "{}logging:\n  level: debug\n  debugCorrelation:\n    enabled: true\n    ttl: 30m\n    incidentId: inc-1\n",
                base()
            ),
        ),
    ];
    let texts: Vec<String> = cases.iter().map(|(_, text)| text.clone()).collect();
    let verdicts = schema_verdicts(&texts);
    for ((name, text), verdict) in cases.iter().zip(verdicts) {
        if let Err(e) = loader_accepts(text) {
            panic!("{name}: loader refuses: {e}");
        }
        assert_eq!(verdict, "ok", "{name}: schema refuses");
    }
}

#[test]
fn config_prints_the_summary_and_fingerprint() {
    let dir = TempDir::new("config-cmd");
    let path = dir.path().join("config.yaml");
    fs::write(&path, base()).unwrap();
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .arg("config")
            .arg("--config")
            .arg(&path)
            .args(extra)
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "configVersion: v1alpha1",
            "socketPath: /run/openbao-kms/kms.sock",
            "metricsAddress: 127.0.0.1:8081",
            "healthAddress: 127.0.0.1:8082",
            "authMethod: jwt",
        ]
    );
    let fingerprint = lines[5].strip_prefix("identityFingerprint: cfg1.").unwrap();
    assert_eq!(fingerprint.len(), 43);
    assert_eq!(lines.len(), 6);

    // Flags override the file; the identity (and so the fingerprint) does not move.
    let out = run(&["--metrics-address", "", "--health-address", "127.0.0.1:9"]);
    let overridden = String::from_utf8(out.stdout).unwrap();
    assert!(overridden.contains("metricsAddress: \n"));
    assert!(overridden.contains("healthAddress: 127.0.0.1:9\n"));
    assert!(overridden.ends_with(&format!("{}\n", lines[5])));

    // `config` validates: a broken file is exit 3 with one line on stderr.
    fs::write(&path, edit("\"0660\"", "\"0666\"")).unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1);
    assert!(err.contains("server.socketMode"));
}

#[test]
fn schema_output_is_stable_json() {
    let text = schema_text();
    assert!(text.ends_with("}\n"));
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        schema["required"],
        serde_json::json!(["configVersion", "server", "openbao", "auth", "transit"])
    );
    assert_eq!(
        schema["properties"]["auth"]["properties"]["method"]["enum"],
        serde_json::json!(["jwt", "cert", null])
    );
}

#[test]
fn encryption_config_samples_pass_the_doctor_checks() {
    use bao_kms_provider::encryption_config::{self, Expected, IdentityFallback};
    let config = load_str(&base(), &Overrides::default(), &NoEnv).unwrap();
    let expected = Expected::from_config(&config).unwrap();
    let entries = fs::read_dir(repo().join("deploy/encryption-config")).unwrap();
    let mut checked = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let file = encryption_config::read(&path).unwrap();
        let findings = encryption_config::check(&file, expected, IdentityFallback::Allow)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Both migration phases keep identity, which doctor reports as a warning.
        assert!(findings.identity_fallback, "{}", path.display());
        checked += 1;
    }
    assert_eq!(
        checked, 2,
        "one EncryptionConfiguration per migration phase"
    );
}
