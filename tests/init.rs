//! `init`: every file with its mode, never an overwrite, a generated config
//! that loads, EncryptionConfigurations and policy that agree with it, and
//! an `openbao-setup.sh` that, run against a real OpenBao, leaves a setup on
//! which `doctor` passes: for a JWT file, for PKCS#11 certificate auth (a
//! SoftHSM2 token and a real mTLS login) and for OAuth2 tokens from a real
//! OpenID provider that OpenBao reaches through OIDC discovery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bao_kms_provider::config::{FsChecks, NoEnv, Overrides, load_file};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::bao_binary;
use support::jwt::Claims;
use support::oauth2::{self, CLIENT_ID};
use support::openbao::{AUDIENCE, ISSUER, Lab, SUBJECT};
use support::pkcs11::{CLIENT_CN, Ca, KEY_LABEL, MODULE, SoftHsm, TOKEN_LABEL};
use support::provider::BIN;
use support::secrets_in;
use support::tmp::TempDir;

fn values_sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/init/values-file.yaml")
}

fn init(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("init")
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Name → mode of every file in `dir`.
fn listing(dir: &Path) -> BTreeMap<String, u32> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                mode(&e.path()),
            )
        })
        .collect()
}

#[test]
fn init_writes_every_file_with_its_mode_and_never_overwrites() {
    let scratch = TempDir::new("init");
    let out = scratch.path().join("out");
    let values = values_sample();
    let args = [
        "--values",
        values.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--new-key",
    ];
    let run = init(&args);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert_eq!(mode(&out), 0o750);
    let expected: BTreeMap<String, u32> = [
        ("config.yaml", 0o640),
        ("encryption-config.yaml", 0o644),
        ("encryption-config-readers.yaml", 0o644),
        ("openbao-policy.hcl", 0o644),
        ("openbao-setup.sh", 0o750),
        ("node-setup.sh", 0o750),
        ("installation.json", 0o640),
    ]
    .into_iter()
    .map(|(n, m)| (n.to_owned(), m))
    .collect();
    assert_eq!(listing(&out), expected);

    // The generated config loads; the summary's fingerprint is its identity.
    let config = load_file(
        &out.join("config.yaml"),
        &Overrides::default(),
        &NoEnv,
        FsChecks::Skip,
    )
    .unwrap();
    let summary = text(&run.stdout);
    assert!(summary.starts_with("Wrote 7 files to "), "{summary}");
    let fingerprint = config.identity_fingerprint();
    assert!(summary.contains(&format!("identityFingerprint: {fingerprint}\n")));
    let lineage = &config.transit.key_id_scope.key_lineage_id;
    assert_eq!(lineage.len(), 32);
    assert!(
        lineage
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert!(summary.contains(&format!("keyLineageId: {lineage} (generated")));
    // Host-layout fill-ins.
    assert_eq!(config.server.socket_group, "openbao-kms-socket");
    assert_eq!(
        config.openbao.ca_cert_file,
        Path::new("/etc/openbao-kms/tls/ca.crt")
    );
    assert_eq!(
        config.auth.jwt.jwt_file,
        Path::new("/var/lib/openbao-kms/identity.jwt")
    );

    let record: Value =
        serde_json::from_str(&fs::read_to_string(out.join("installation.json")).unwrap()).unwrap();
    assert_eq!(record["model"], "systemd");
    assert_eq!(record["identityFingerprint"], fingerprint.as_str());
    assert_eq!(record["keyLineageId"], lineage.as_str());
    assert_eq!(record["runtimeUser"], "openbao-kms");
    let recorded: BTreeMap<String, u32> = record["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let mode = u32::from_str_radix(f["mode"].as_str().unwrap(), 8).unwrap();
            (f["name"].as_str().unwrap().to_owned(), mode)
        })
        .collect();
    assert_eq!(recorded, expected);

    // Phase 1 reads through KMS but still writes in clear; phase 2 writes through KMS.
    let readers = fs::read_to_string(out.join("encryption-config-readers.yaml")).unwrap();
    let writers = fs::read_to_string(out.join("encryption-config.yaml")).unwrap();
    assert!(readers.find("identity").unwrap() < readers.find("kms").unwrap());
    assert!(writers.find("kms").unwrap() < writers.find("identity").unwrap());
    assert!(writers.contains("name: \"openbao-kms-workload-a\""));
    assert!(writers.contains("endpoint: \"unix:///run/openbao-kms/kms.sock\""));
    let policy = fs::read_to_string(out.join("openbao-policy.hcl")).unwrap();
    assert!(policy.contains("path \"auth/token/renew-self\""));
    let setup = fs::read_to_string(out.join("openbao-setup.sh")).unwrap();
    assert!(setup.starts_with("#!/bin/sh\n"));
    assert!(setup.contains("bao policy write 'openbao-kms-workload-a' \"$policy_file\""));
    for script in ["openbao-setup.sh", "node-setup.sh"] {
        let check = Command::new("sh")
            .arg("-n")
            .arg(out.join(script))
            .status()
            .unwrap();
        assert!(check.success(), "{script} is not valid sh");
    }
    let bad_phase = Command::new("sh")
        .arg(out.join("openbao-setup.sh"))
        .arg("everything")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(bad_phase.status.code(), Some(2));

    // A second run is refused and changes nothing.
    let before: Vec<(String, Vec<u8>)> = listing(&out)
        .keys()
        .map(|n| (n.clone(), fs::read(out.join(n)).unwrap()))
        .collect();
    let again = init(&args);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("not empty"));
    let after: Vec<(String, Vec<u8>)> = listing(&out)
        .keys()
        .map(|n| (n.clone(), fs::read(out.join(n)).unwrap()))
        .collect();
    assert_eq!(before, after);
    // A file in the way, too.
    let occupied = scratch.path().join("occupied");
    fs::create_dir(&occupied).unwrap();
    fs::write(occupied.join("config.yaml"), "mine").unwrap();
    let run = init(&[
        "--values",
        values.to_str().unwrap(),
        "--out",
        occupied.to_str().unwrap(),
        "--new-key",
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        fs::read_to_string(occupied.join("config.yaml")).unwrap(),
        "mine"
    );
}

#[test]
fn init_refuses_bad_values_and_flags() {
    let scratch = TempDir::new("init-bad");
    let values = values_sample();
    let v = values.to_str().unwrap();
    let out = scratch.path().join("out");
    let o = out.to_str().unwrap();

    // Without --new-key a lineage id is required: exit 3, nothing written.
    let run = init(&["--values", v, "--out", o]);
    assert_eq!(run.status.code(), Some(3));
    assert!(text(&run.stderr).contains("transit.keyIdScope.keyLineageId: is required"));
    assert!(!out.exists());
    // With --new-key the values must not already have one.
    let with_lineage = scratch.path().join("with-lineage.yaml");
    let sample = fs::read_to_string(&values).unwrap();
    fs::write(
        &with_lineage,
        format!("{sample}    keyLineageId: \"0123456789abcdef0123456789abcdef\"\n"),
    )
    .unwrap();
    let run = init(&[
        "--values",
        with_lineage.to_str().unwrap(),
        "--out",
        o,
        "--new-key",
    ]);
    assert_eq!(run.status.code(), Some(3));
    let run = init(&["--values", with_lineage.to_str().unwrap(), "--out", o]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    fs::remove_dir_all(&out).unwrap();
    // The setup script needs an expected subject.
    let no_subject = scratch.path().join("no-subject.yaml");
    fs::write(
        &no_subject,
        sample.replace("    expectedSubject: system:openbao-kms:workload-a\n", ""),
    )
    .unwrap();
    let run = init(&[
        "--values",
        no_subject.to_str().unwrap(),
        "--out",
        o,
        "--new-key",
    ]);
    assert_eq!(run.status.code(), Some(3));
    assert!(text(&run.stderr).contains("auth.jwt.expectedSubject"));
    // Values are not a place for unknown keys either.
    let unknown = scratch.path().join("unknown.yaml");
    fs::write(&unknown, format!("{sample}extra: 1\n")).unwrap();
    let run = init(&[
        "--values",
        unknown.to_str().unwrap(),
        "--out",
        o,
        "--new-key",
    ]);
    assert_eq!(run.status.code(), Some(3));
    assert!(!out.exists());

    let digest = format!("registry.example/kms@sha256:{}", "0".repeat(64));
    let usage: [Vec<&str>; 8] = [
        vec![
            "--values",
            v,
            "--out",
            o,
            "--new-key",
            "--config",
            "/x.yaml",
        ],
        vec![
            "--values",
            v,
            "--out",
            o,
            "--new-key",
            "--log-level",
            "debug",
        ],
        vec!["--values", v, "--out", o, "--new-key", "--image", &digest],
        vec![
            "--values",
            v,
            "--out",
            o,
            "--new-key",
            "--socket-gid",
            "1234",
        ],
        vec![
            "--values",
            v,
            "--out",
            o,
            "--model",
            "static-pod",
            "--socket-gid",
            "1234",
        ],
        vec![
            "--values",
            v,
            "--out",
            o,
            "--model",
            "static-pod",
            "--socket-gid",
            "1234",
            "--image",
            "registry.example/kms:latest",
        ],
        vec!["--values", v, "--out", o, "--policy-name", "root"],
        vec!["--out", o],
    ];
    for args in usage {
        let run = init(&args);
        assert_eq!(
            run.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&run.stderr)
        );
        assert!(!out.exists());
    }
}

#[test]
fn init_static_pod_writes_the_manifest() {
    let scratch = TempDir::new("init-pod");
    let out = scratch.path().join("out");
    let image = format!(
        "registry.example/bao-kms-provider@sha256:{}",
        "ab".repeat(32)
    );
    let run = init(&[
        "--values",
        values_sample().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--new-key",
        "--model",
        "static-pod",
        "--image",
        &image,
        "--socket-gid",
        "1234",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert_eq!(mode(&out.join("bao-kms-provider.yaml")), 0o644);
    assert_eq!(listing(&out).len(), 8);
    let manifest: serde_norway::Value =
        serde_norway::from_str(&fs::read_to_string(out.join("bao-kms-provider.yaml")).unwrap())
            .unwrap();
    let manifest = serde_json::to_value(manifest).unwrap();
    assert_eq!(manifest["spec"]["securityContext"]["runAsUser"], 65532);
    // The static-pod rules of deploy/static-pod: nothing from the apiserver.
    assert_eq!(manifest["spec"]["hostNetwork"], true);
    assert_eq!(manifest["spec"]["dnsPolicy"], "Default");
    assert_eq!(manifest["spec"]["automountServiceAccountToken"], false);
    assert_eq!(manifest["spec"]["enableServiceLinks"], false);
    assert_eq!(
        manifest["spec"]["securityContext"]["supplementalGroups"],
        serde_json::json!([1234])
    );
    let container = &manifest["spec"]["containers"][0];
    assert_eq!(container["image"], image.as_str());
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let volumes = manifest["spec"]["volumes"].as_array().unwrap();
    let credentials = volumes.iter().find(|v| v["name"] == "credentials").unwrap();
    assert_eq!(
        credentials["hostPath"]["path"],
        "/var/lib/openbao-kms/credentials"
    );
    let config = load_file(
        &out.join("config.yaml"),
        &Overrides::default(),
        &NoEnv,
        FsChecks::Skip,
    )
    .unwrap();
    assert_eq!(config.server.socket_group, "1234");
    assert_eq!(
        config.auth.jwt.jwt_file,
        Path::new("/var/lib/openbao-kms/credentials/identity.jwt")
    );
    let record: Value =
        serde_json::from_str(&fs::read_to_string(out.join("installation.json")).unwrap()).unwrap();
    assert_eq!(record["runtimeUser"], "65532:65532");
    assert_eq!(record["image"], image.as_str());
}

/// Runs the generated `openbao-setup.sh` (one phase) as the lab's root,
/// with `env` as the operator's extra variables.
fn run_setup(lab: &Lab, script: &Path, phase: &str, env: &[(&str, &str)]) -> Output {
    let bao_dir = bao_binary().parent().unwrap().to_owned();
    Command::new("sh")
        .arg(script)
        .arg(phase)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bao_dir.display()))
        .env("HOME", lab.dir())
        .env("BAO_ADDR", lab.addr())
        .env("BAO_CACERT", lab.ca_file())
        .env("BAO_TOKEN", lab.root_token())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// [`run_setup`] that must succeed; returns what the script printed.
fn setup_phase_with(lab: &Lab, script: &Path, phase: &str, env: &[(&str, &str)]) -> String {
    let out = run_setup(lab, script, phase, env);
    assert!(
        out.status.success(),
        "openbao-setup.sh {phase} failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

fn setup_phase(lab: &Lab, script: &Path, phase: &str) {
    setup_phase_with(lab, script, phase, &[]);
}

#[test]
fn generated_openbao_setup_leaves_a_setup_doctor_passes() {
    let lab = Lab::start();
    let files = TempDir::new("init-lab");
    let socket_dir = TempDir::new_in(Path::new("/run/openbao-kms"), "init");
    fs::set_permissions(socket_dir.path(), fs::Permissions::from_mode(0o750)).unwrap();
    let ca = files.path().join("ca.pem");
    fs::copy(lab.ca_file(), &ca).unwrap();
    fs::set_permissions(&ca, fs::Permissions::from_mode(0o644)).unwrap();
    let jwt = files.path().join("identity.jwt");
    lab.write_jwt(&jwt, &Claims::valid_for(Duration::from_secs(3600)));

    // Names distinct from the lab's own setup, so the script creates
    // everything it names from scratch on this server.
    let values = files.path().join("values.yaml");
    fs::write(
        &values,
        format!(
            r#"configVersion: v1alpha1
server:
  socketPath: {socket}
  socketGroup: "0"
openbao:
  address: {address}
  caCertFile: {ca}
  tlsServerName: localhost
  instanceId: bao-init-lab
auth:
  jwt:
    mountPath: auth/init-jwt
    role: init-role
    jwtFile: {jwt}
    expectedIssuer: {ISSUER}
    expectedAudience: [{AUDIENCE}]
    expectedSubject: "{SUBJECT}"
transit:
  mountPath: init-transit
  keyName: init-key
  keyIdScope:
    providerName: openbao-kms-init
    clusterId: init-lab
    transitMountId: init-transit-mount
state:
  path: {state}
"#,
            socket = socket_dir.path().join("kms.sock").display(),
            address = lab.addr(),
            ca = ca.display(),
            jwt = jwt.display(),
            state = files.path().join("state/key-registry.json").display(),
        ),
    )
    .unwrap();
    let out = files.path().join("out");
    let run = init(&[
        "--values",
        values.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--new-key",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let script = out.join("openbao-setup.sh");
    setup_phase(&lab, &script, "transit");
    setup_phase(&lab, &script, "policy");
    setup_phase(&lab, &script, "auth-mount");
    // auth-config points OpenBao at the issuer's OIDC discovery document,
    // which a test issuer does not serve; configure the same mount with the
    // pinned-key alternative the script documents, then run the rest.
    lab.bao_ok(&[
        "write",
        "auth/init-jwt/config",
        &format!("jwt_validation_pubkeys={}", lab.issuer().public_key_pem()),
        &format!("bound_issuer={ISSUER}"),
    ]);
    setup_phase(&lab, &script, "auth-role");
    let policy = lab.bao_ok(&["policy", "read", "openbao-kms-init-lab"]);
    assert!(policy.contains("init-transit/decrypt/init-key"));

    let doctor = Command::new(BIN)
        .args(["doctor", "--output", "json", "--config"])
        .arg(out.join("config.yaml"))
        .arg("--encryption-config")
        .arg(out.join("encryption-config.yaml"))
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = text(&doctor.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert_eq!(doctor.status.code(), Some(0), "{failed:#?}");
    let warned: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "warn" && c["id"] != "host.clock")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    // The generated writers file keeps identity as the read fallback, and the
    // test's socket directory is not the packaged 2750 one (no setgid).
    // host.clock follows this host's clock (tests/doctor.rs checks it).
    assert_eq!(warned, ["kubernetes.encryption_config", "host.files"]);
    let host = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "host.files")
        .unwrap();
    assert!(
        host["message"].as_str().unwrap().contains("expected 2750"),
        "{host}"
    );
    let token = fs::read_to_string(&jwt).unwrap();
    let all = format!("{stdout}{}", text(&doctor.stderr));
    assert!(secrets_in(&all, &[token.trim(), "init-key", lab.root_token()]).is_empty());
}

fn cert_values_sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/init/values-cert.yaml")
}

/// `doctor --output json` on a generated installation, with the writers'
/// EncryptionConfiguration and `env`: (exit code, report, everything printed).
fn doctor_on(out: &Path, env: &[(&str, &str)]) -> (Option<i32>, Value, String) {
    let doctor = Command::new(BIN)
        .args(["doctor", "--output", "json", "--config"])
        .arg(out.join("config.yaml"))
        .arg("--encryption-config")
        .arg(out.join("encryption-config.yaml"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = text(&doctor.stdout);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|_| panic!("doctor printed no report: {}", text(&doctor.stderr)));
    let all = format!("{stdout}{}", text(&doctor.stderr));
    (doctor.status.code(), report, all)
}

/// The status of check `id`, and its message.
fn check_of<'a>(report: &'a Value, id: &str) -> (&'a str, &'a str) {
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"));
    (
        check["status"].as_str().unwrap(),
        check["message"].as_str().unwrap_or(""),
    )
}

fn ids_with_status<'a>(report: &'a Value, status: &str) -> Vec<&'a str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == status)
        .map(|c| c["id"].as_str().unwrap())
        .collect()
}

/// Values shared by the lab tests: names distinct from the lab's own setup,
/// so the script creates everything it names from scratch.
fn lab_values(lab: &Lab, files: &Path, socket_dir: &Path, auth: &str) -> PathBuf {
    let ca = files.join("ca.pem");
    fs::copy(lab.ca_file(), &ca).unwrap();
    fs::set_permissions(&ca, fs::Permissions::from_mode(0o644)).unwrap();
    let values = files.join("values.yaml");
    fs::write(
        &values,
        format!(
            r#"configVersion: v1alpha1
server:
  socketPath: {socket}
  socketGroup: "0"
openbao:
  address: {address}
  caCertFile: {ca}
  tlsServerName: localhost
  instanceId: bao-init-lab
{auth}transit:
  mountPath: init-transit
  keyName: init-key
  keyIdScope:
    providerName: openbao-kms-init
    clusterId: init-lab
    transitMountId: init-transit-mount
state:
  path: {state}
"#,
            socket = socket_dir.join("kms.sock").display(),
            address = lab.addr(),
            ca = ca.display(),
            state = files.join("state/key-registry.json").display(),
        ),
    )
    .unwrap();
    values
}

fn init_into(values: &Path, out: &Path) {
    let run = init(&[
        "--values",
        values.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--new-key",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
}

#[test]
fn init_cert_fills_the_pkcs11_host_layout() {
    let scratch = TempDir::new("init-cert");
    let out = scratch.path().join("out");
    init_into(&cert_values_sample(), &out);
    let config = load_file(
        &out.join("config.yaml"),
        &Overrides::default(),
        &NoEnv,
        FsChecks::Skip,
    )
    .unwrap();
    let pkcs11 = &config.auth.cert.pkcs11;
    assert_eq!(
        pkcs11.certificate_file,
        Path::new("/etc/openbao-kms/client/client-chain.pem")
    );
    assert_eq!(pkcs11.pin_file, Path::new("/etc/openbao-kms/pkcs11/pin"));
    // The generated unit choice and credential paths are the PKCS#11 unit's.
    let unit = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/systemd/bao-kms-provider-pkcs11.service"),
    )
    .unwrap();
    for path in [&pkcs11.certificate_file, &pkcs11.pin_file] {
        assert!(unit.contains(&format!("ConditionPathExists={}\n", path.display())));
    }
    let node = fs::read_to_string(out.join("node-setup.sh")).unwrap();
    assert!(node.contains("systemctl enable --now bao-kms-provider-pkcs11.service\n"));
    assert!(
        node.contains("install -d -m 0750 -o 'root' -g 'openbao-kms' '/etc/openbao-kms/pkcs11'\n")
    );
    let record: Value =
        serde_json::from_str(&fs::read_to_string(out.join("installation.json")).unwrap()).unwrap();
    let actions = record["remainingActions"].to_string();
    assert!(actions.contains("CLIENT_CA_FILE"), "{actions}");
    assert!(
        actions.contains("bao-kms-provider-pkcs11.service"),
        "{actions}"
    );
    for script in ["openbao-setup.sh", "node-setup.sh"] {
        let check = Command::new("sh")
            .arg("-n")
            .arg(out.join(script))
            .status()
            .unwrap();
        assert!(check.success(), "{script} is not valid sh");
    }

    // The role the script writes needs a name and a mount under auth/.
    let sample = fs::read_to_string(cert_values_sample()).unwrap();
    for (broken, field) in [
        (
            sample.replace("    name: openbao-kms-control-plane\n", ""),
            "auth.cert.name",
        ),
        (
            sample.replace(
                "mountPath: auth/k8s-workload-a-cert",
                "mountPath: k8s-workload-a-cert",
            ),
            "auth.cert.mountPath",
        ),
    ] {
        let values = scratch.path().join("broken.yaml");
        fs::write(&values, broken).unwrap();
        let other = scratch.path().join("other");
        let run = init(&[
            "--values",
            values.to_str().unwrap(),
            "--out",
            other.to_str().unwrap(),
            "--new-key",
        ]);
        assert_eq!(run.status.code(), Some(3), "{field}");
        assert!(text(&run.stderr).contains(field), "{}", text(&run.stderr));
        assert!(!other.exists());
    }
}

#[test]
fn generated_cert_setup_lets_a_pkcs11_login_pass_doctor() {
    let lab = Lab::start();
    let client_ca = Ca::new("init-client-ca");
    let hsm = SoftHsm::new();
    hsm.install_cert(&client_ca.leaf(hsm.key(), CLIENT_CN, 2090));
    let files = TempDir::new("init-cert-lab");
    let socket_dir = TempDir::new_in(Path::new("/run/openbao-kms"), "init-cert");
    fs::set_permissions(socket_dir.path(), fs::Permissions::from_mode(0o750)).unwrap();
    let auth = format!(
        r#"auth:
  method: cert
  cert:
    mountPath: auth/init-cert
    name: init-nodes
    source: pkcs11
    pkcs11:
      certificateFile: {cert}
      modulePath: {MODULE}
      tokenLabel: {TOKEN_LABEL}
      keyLabel: {KEY_LABEL}
      pinFile: {pin}
      maxSessions: 2
"#,
        cert = hsm.cert_file.display(),
        pin = hsm.pin_file.display(),
    );
    let values = lab_values(&lab, files.path(), socket_dir.path(), &auth);
    let out = files.path().join("out");
    init_into(&values, &out);
    let script = out.join("openbao-setup.sh");
    let ca_file = files.path().join("client-ca.pem");
    fs::write(&ca_file, &client_ca.pem).unwrap();
    let ca_path = ca_file.to_str().unwrap();

    // Missing or unusable inputs stop the script before it changes anything.
    let not_pem = values.to_str().unwrap();
    for (env, wanted) in [
        (vec![("CLIENT_COMMON_NAMES", CLIENT_CN)], "CLIENT_CA_FILE"),
        (
            vec![
                ("CLIENT_CA_FILE", not_pem),
                ("CLIENT_COMMON_NAMES", CLIENT_CN),
            ],
            "CLIENT_CA_FILE",
        ),
        (vec![("CLIENT_CA_FILE", ca_path)], "CLIENT_COMMON_NAMES"),
        (
            vec![
                ("CLIENT_CA_FILE", ca_path),
                ("CLIENT_COMMON_NAMES", "@/etc/passwd"),
            ],
            "CLIENT_COMMON_NAMES",
        ),
    ] {
        let refused = run_setup(&lab, &script, "all", &env);
        assert_eq!(refused.status.code(), Some(2), "{env:?}");
        assert!(
            text(&refused.stderr).contains(wanted),
            "{}",
            text(&refused.stderr)
        );
    }
    let mounts = lab.bao_ok(&["secrets", "list", "-format=json"]);
    assert!(
        !mounts.contains("init-transit/"),
        "a refused run changed OpenBao"
    );

    let env = [
        ("CLIENT_CA_FILE", ca_path),
        ("CLIENT_COMMON_NAMES", CLIENT_CN),
    ];
    let printed = setup_phase_with(&lab, &script, "all", &env);
    let role = lab.read_json("auth/init-cert/certs/init-nodes");
    assert_eq!(role["allowed_common_names"], serde_json::json!([CLIENT_CN]));
    assert_eq!(
        role["token_policies"],
        serde_json::json!(["openbao-kms-init-lab"])
    );
    assert_eq!(role["token_no_default_policy"], true);
    assert_eq!(role["token_ttl"], 1800);
    assert_eq!(role["token_max_ttl"], 3600);
    assert_eq!(
        role["certificate"].as_str().unwrap().trim(),
        client_ca.pem.trim()
    );
    assert_eq!(
        lab.read_json("auth/init-cert/config")["disable_binding"],
        false
    );

    // A real mTLS login with the token's key, on the setup the script made.
    let softhsm = [("SOFTHSM2_CONF", hsm.conf.to_str().unwrap())];
    let (code, report, all) = doctor_on(&out, &softhsm);
    assert_eq!(code, Some(0), "{:?}", ids_with_status(&report, "fail"));
    for id in [
        "auth.cert.pkcs11",
        "auth.cert.local",
        "auth.cert.signer",
        "openbao.auth",
        "transit.capabilities",
        "transit.probe",
    ] {
        assert_eq!(check_of(&report, id).0, "pass", "{id}: {report:#}");
    }
    // host.clock follows this host's clock (tests/doctor.rs checks it).
    let mut warned = ids_with_status(&report, "warn");
    warned.retain(|id| *id != "host.clock");
    assert_eq!(warned, ["kubernetes.encryption_config", "host.files"]);

    // The role binds the names: the same CA's certificate for another name
    // is refused by OpenBao.
    hsm.install_cert(&client_ca.leaf(hsm.key(), "someone-else", 2090));
    let (code, report, other) = doctor_on(&out, &softhsm);
    assert_eq!(code, Some(4));
    assert_eq!(check_of(&report, "auth.cert.local").0, "pass");
    assert_eq!(check_of(&report, "openbao.auth").0, "fail", "{report:#}");

    let mut known = hsm.secrets();
    known.extra = vec![lab.root_token().to_owned()];
    let found = support::leaks::scan(&format!("{printed}{all}{other}"), &known);
    assert!(found.is_empty(), "output leaks {found:?}");
}

#[test]
fn generated_oauth2_setup_uses_real_oidc_discovery() {
    let lab = Lab::start();
    let issuer = oauth2::Issuer::start();
    let client = issuer.client("client_secret_basic");
    let files = TempDir::new("init-oauth2-lab");
    let socket_dir = TempDir::new_in(Path::new("/run/openbao-kms"), "init-oauth2");
    fs::set_permissions(socket_dir.path(), fs::Permissions::from_mode(0o750)).unwrap();
    let secret_file = files.path().join("client-secret");
    fs::write(&secret_file, &client.secret).unwrap();
    fs::set_permissions(&secret_file, fs::Permissions::from_mode(0o600)).unwrap();
    // The issuer's tokens carry sub = the client ID and aud = the requested
    // audience: that is what the generated role must bind.
    let auth = format!(
        r#"auth:
  jwt:
    source: oauth2
    mountPath: auth/init-oauth2
    role: init-oauth2-role
    expectedIssuer: {url}
    expectedAudience: [{AUDIENCE}]
    expectedSubject: {CLIENT_ID}
    oauth2:
      tokenUrl: {token_url}
      clientId: {CLIENT_ID}
      clientSecretFile: {secret}
      authMethod: client_secret_basic
      audience: {AUDIENCE}
      caCertFile: {ca}
"#,
        url = client.issuer,
        token_url = client.token_url,
        secret = secret_file.display(),
        ca = client.ca_file.display(),
    );
    let values = lab_values(&lab, files.path(), socket_dir.path(), &auth);
    let out = files.path().join("out");
    init_into(&values, &out);
    let script = out.join("openbao-setup.sh");
    let mut printed = String::new();
    for phase in ["transit", "policy", "auth-mount"] {
        printed += &setup_phase_with(&lab, &script, phase, &[]);
    }
    // The issuer's certificate is from a private CA: without it OpenBao
    // cannot read the discovery document, and a file that is no CA is
    // refused before OpenBao is asked.
    let untrusted = run_setup(&lab, &script, "auth-config", &[]);
    assert!(!untrusted.status.success());
    assert!(
        text(&untrusted.stderr).contains("certificate signed by unknown authority"),
        "{}",
        text(&untrusted.stderr)
    );
    let not_pem = values.to_str().unwrap();
    let refused = run_setup(
        &lab,
        &script,
        "auth-config",
        &[("OIDC_DISCOVERY_CA_FILE", not_pem)],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("OIDC_DISCOVERY_CA_FILE"));

    let discovery = "/.well-known/openid-configuration";
    let fetched = issuer.hits(discovery);
    let ca = client.ca_file.to_str().unwrap();
    printed += &setup_phase_with(
        &lab,
        &script,
        "auth-config",
        &[("OIDC_DISCOVERY_CA_FILE", ca)],
    );
    assert!(
        issuer.hits(discovery) > fetched,
        "OpenBao read the discovery document"
    );
    let config = lab.read_json("auth/init-oauth2/config");
    assert_eq!(config["oidc_discovery_url"], client.issuer.as_str());
    assert_eq!(config["bound_issuer"], client.issuer.as_str());
    assert_eq!(config["jwt_validation_pubkeys"], serde_json::json!([]));
    printed += &setup_phase_with(&lab, &script, "auth-role", &[]);

    let (code, report, all) = doctor_on(&out, &[]);
    assert_eq!(code, Some(0), "{:?}", ids_with_status(&report, "fail"));
    for id in [
        "oauth2.local",
        "oauth2.acquire",
        "openbao.auth",
        "transit.probe",
    ] {
        assert_eq!(check_of(&report, id).0, "pass", "{id}: {report:#}");
    }
    assert!(!issuer.tokens().is_empty());

    let (tokens, secrets) = client.known();
    let mut extra: Vec<&str> = tokens.iter().chain(&secrets).map(String::as_str).collect();
    extra.push(lab.root_token());
    let found = secrets_in(&format!("{printed}{all}"), &extra);
    assert!(found.is_empty(), "output leaks {found:?}");
}
