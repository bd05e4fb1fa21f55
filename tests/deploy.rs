//! The deployment artifacts under `deploy/` and the `.deb` from
//! `scripts/build-deb.sh`, checked with the real tools: `systemd-analyze` on
//! the units, `systemd-sysusers`/`systemd-tmpfiles` applied to a scratch root,
//! the provider's own config loader on the samples, every static-pod rule on
//! the manifest, `dpkg-deb` on the package, and the real binary running as a
//! non-root user whose socket only its socket group can use.
//!
//! Needs root (accounts, chown) and the Debian packages `systemd`,
//! `dpkg-dev`, `binutils`, `passwd` and `util-linux`, which
//! `scripts/install-test-deps.sh` installs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bao_kms_provider::config::{self, AuthMethod, Config, FsChecks, NoEnv, Overrides};
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use support::cmd::{chmod, run, stdout};
use support::openbao::{AUDIENCE, ISSUER, JWT_MOUNT, KEY_NAME, Lab, ROLE, SUBJECT, TRANSIT_MOUNT};
use support::provider::BIN;
use support::report::{assert_checks_pass, assert_refused_at_the_socket_directory, check};
use support::tmp::TempDir;
use support::users::{Account, Accounts};

const UNIT: &str = "bao-kms-provider.service";
const PKCS11_UNIT: &str = "bao-kms-provider-pkcs11.service";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

fn load(path: &str) -> Config {
    config::load_file(&repo(path), &Overrides::default(), &NoEnv, FsChecks::Skip)
        .unwrap_or_else(|e| panic!("{path} does not load: {e}"))
}

// ---------------------------------------------------------------- systemd

/// `[Section] Key=Value` lines of a unit file; a key may repeat.
fn directives(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').expect("Key=Value");
        map.entry(format!("{section}.{key}"))
            .or_default()
            .push(value.to_owned());
    }
    map
}

/// The single value of `key`, or a panic naming the unit.
fn one<'a>(map: &'a BTreeMap<String, Vec<String>>, key: &str, unit: &str) -> &'a str {
    match map.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("{unit}: expected one {key}=, found {other:?}"),
    }
}

/// Every space-separated word of every `key=` line.
fn words(map: &BTreeMap<String, Vec<String>>, key: &str) -> BTreeSet<String> {
    map.get(key)
        .into_iter()
        .flatten()
        .flat_map(|v| v.split_whitespace().map(str::to_owned))
        .collect()
}

/// A root for `systemd-analyze --root`: the host's own system units (verify
/// follows dependencies such as sysinit.target into it), ours beside them,
/// and the binary the unit names, at `/usr/bin/bao-kms-provider` as packaged.
/// verify refuses a unit whose ExecStart is not an executable *under the
/// root*, so this checks the units unmodified, ExecStart included.
fn systemd_root() -> TempDir {
    let root = TempDir::new("bkp-systemd");
    let units = root.path().join("lib/systemd/system");
    fs::create_dir_all(&units).unwrap();
    fs::create_dir_all(root.path().join("etc/systemd/system")).unwrap();
    run(Command::new("cp")
        .args(["-a", "/lib/systemd/system/."])
        .arg(&units));
    for unit in [UNIT, PKCS11_UNIT] {
        fs::copy(repo(&format!("deploy/systemd/{unit}")), units.join(unit)).unwrap();
    }
    let bin = root.path().join("usr/bin/bao-kms-provider");
    fs::create_dir_all(bin.parent().unwrap()).unwrap();
    fs::copy(BIN, &bin).unwrap();
    chmod(&bin, 0o755);
    root
}

fn analyze(root: &Path, args: &[&str]) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(format!("--root={}", root.display()))
        .output()
        .expect("systemd-analyze (install the systemd package)")
}

#[test]
fn systemd_units_verify_cleanly_and_score_ok_on_exposure() {
    let root = systemd_root();
    let verify = analyze(root.path(), &["verify", "--man=no", UNIT, PKCS11_UNIT]);
    // verify exits 0 on unknown keys and unparsable values, printing a
    // warning; a clean unit prints nothing at all.
    assert!(
        verify.status.success() && verify.stderr.is_empty() && verify.stdout.is_empty(),
        "systemd-analyze verify:\n{}{}",
        stdout(&verify),
        String::from_utf8_lossy(&verify.stderr)
    );

    // Negative control: the same check does see a bad directive.
    let units = root.path().join("lib/systemd/system");
    let broken = read(&format!("deploy/systemd/{UNIT}")).replace("UMask=0027", "UMask=0o27");
    fs::write(units.join("broken.service"), broken).unwrap();
    let verify = analyze(root.path(), &["verify", "--man=no", "broken.service"]);
    assert!(
        String::from_utf8_lossy(&verify.stderr).contains("Failed to parse mode value"),
        "{verify:?}"
    );
    fs::remove_file(units.join("broken.service")).unwrap();

    // systemd's own hardening score: 0 (best) .. 10; "OK" is below 2.
    for unit in [UNIT, PKCS11_UNIT] {
        let out = analyze(root.path(), &["security", "--offline=true", unit]);
        let text = stdout(&out);
        let score: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("→ Overall exposure level for {unit}: ")))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {unit}:\n{text}{out:?}"));
        assert!(score <= 2.0, "{unit}: exposure {score}\n{text}");
    }
}

fn assert_hardened(unit: &str, d: &BTreeMap<String, Vec<String>>) {
    let expect = [
        ("Unit.Before", "kubelet.service"),
        ("Unit.ConditionPathIsDirectory", "/run/openbao-kms"),
        ("Unit.StartLimitIntervalSec", "60"),
        ("Unit.StartLimitBurst", "10"),
        ("Service.Type", "exec"),
        ("Service.User", "openbao-kms"),
        ("Service.Group", "openbao-kms"),
        (
            "Service.ExecStart",
            "/usr/bin/bao-kms-provider serve --config /etc/openbao-kms/config.yaml",
        ),
        ("Service.Restart", "always"),
        ("Service.RestartSec", "5s"),
        ("Service.UMask", "0027"),
        ("Service.NoNewPrivileges", "yes"),
        ("Service.ProtectSystem", "strict"),
        ("Service.ProtectHome", "yes"),
        ("Service.PrivateTmp", "yes"),
        ("Service.PrivateDevices", "yes"),
        ("Service.ProtectKernelTunables", "yes"),
        ("Service.ProtectKernelModules", "yes"),
        ("Service.ProtectKernelLogs", "yes"),
        ("Service.ProtectControlGroups", "yes"),
        ("Service.RestrictSUIDSGID", "yes"),
        ("Service.RestrictRealtime", "yes"),
        (
            "Service.RestrictAddressFamilies",
            "AF_UNIX AF_INET AF_INET6",
        ),
        ("Service.SystemCallArchitectures", "native"),
        ("Service.LockPersonality", "yes"),
        ("Service.MemoryDenyWriteExecute", "yes"),
        ("Service.CapabilityBoundingSet", ""),
        ("Service.AmbientCapabilities", ""),
        ("Service.ReadOnlyPaths", "/etc/openbao-kms"),
        ("Install.WantedBy", "multi-user.target"),
    ];
    for (key, value) in expect {
        assert_eq!(one(d, key, unit), value, "{unit}: {key}");
    }
    assert!(words(d, "Service.SupplementaryGroups").contains("openbao-kms-socket"));
    let writable = words(d, "Service.ReadWritePaths");
    for path in ["/run/openbao-kms", "/var/lib/openbao-kms/state"] {
        assert!(
            writable.contains(path),
            "{unit}: ReadWritePaths {writable:?}"
        );
    }
    assert!(
        words(d, "Unit.ConditionPathExists").contains("/etc/openbao-kms/config.yaml"),
        "{unit}"
    );
    // tmpfiles.d owns /run/openbao-kms: RuntimeDirectory= would re-create it
    // with the service's primary group and remove it on every stop.
    assert!(!d.contains_key("Service.RuntimeDirectory"), "{unit}");
}

#[test]
fn systemd_units_carry_every_required_directive() {
    let main = directives(&read(&format!("deploy/systemd/{UNIT}")));
    assert_hardened(UNIT, &main);
    assert!(words(&main, "Unit.ConditionPathExists").contains("/var/lib/openbao-kms/identity.jwt"));

    let pkcs11 = directives(&read(&format!("deploy/systemd/{PKCS11_UNIT}")));
    assert_hardened(PKCS11_UNIT, &pkcs11);
    let conditions = words(&pkcs11, "Unit.ConditionPathExists");
    for path in [
        "/etc/openbao-kms/client/client-chain.pem",
        "/etc/openbao-kms/pkcs11/pin",
    ] {
        assert!(conditions.contains(path), "{conditions:?}");
    }
    assert!(!conditions.contains("/var/lib/openbao-kms/identity.jwt"));
    assert!(words(&pkcs11, "Service.ReadWritePaths").contains("-/var/lib/softhsm/tokens"));
    assert!(words(&pkcs11, "Service.SupplementaryGroups").contains("softhsm"));
    assert_eq!(one(&pkcs11, "Unit.Conflicts", PKCS11_UNIT), UNIT);

    // Apart from what cert auth needs, the two units are the same.
    let strip = |mut d: BTreeMap<String, Vec<String>>| {
        for key in [
            "Unit.ConditionPathExists",
            "Unit.Conflicts",
            "Service.ReadWritePaths",
            "Service.SupplementaryGroups",
        ] {
            d.remove(key);
        }
        d
    };
    assert_eq!(strip(main), strip(pkcs11));
}

// ------------------------------------------------------------ host layout

/// `name:x:id:...` lines of a passwd/group file, name → (id, 4th field).
fn id_file(path: &Path) -> BTreeMap<String, (u32, String)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0].to_owned(), (f[2].parse().unwrap(), f[3].to_owned()))
        })
        .collect()
}

#[test]
fn sysusers_and_tmpfiles_create_the_hardening_layout_in_a_scratch_root() {
    let root = TempDir::new("bkp-layout");
    chmod(root.path(), 0o755);
    fs::create_dir(root.path().join("etc")).unwrap();
    let sysusers = repo("deploy/package/linux/sysusers.d/openbao-kms.conf");
    let tmpfiles = repo("deploy/package/linux/tmpfiles.d/openbao-kms.conf");
    let root_arg = format!("--root={}", root.path().display());
    run(Command::new("systemd-sysusers")
        .arg(&root_arg)
        .arg(&sysusers));

    let passwd = fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("openbao-kms:"))
        .expect("user openbao-kms");
    let fields: Vec<&str> = user.split(':').collect();
    assert_eq!(fields[5..], ["/var/lib/openbao-kms", "/usr/sbin/nologin"]);
    let (uid, gid) = (
        fields[2].parse::<u32>().unwrap(),
        fields[3].parse::<u32>().unwrap(),
    );
    assert!(uid > 0 && uid < 1000, "a system uid, got {uid}");
    let groups = id_file(&root.path().join("etc/group"));
    assert_eq!(groups["openbao-kms"].0, gid, "primary group openbao-kms");
    let (socket_gid, members) = &groups["openbao-kms-socket"];
    assert_eq!(members, "openbao-kms", "the service may chgrp its socket");

    // tmpfiles resolves the names through the scratch root's passwd/group.
    let mut create = Command::new("systemd-tmpfiles");
    create.arg(&root_arg).arg("--create").arg(&tmpfiles);
    run(&mut create);
    let table = [
        ("etc/openbao-kms", 0o750, 0, gid),
        ("etc/openbao-kms/tls", 0o755, 0, 0),
        ("var/lib/openbao-kms", 0o750, uid, gid),
        ("var/lib/openbao-kms/state", 0o750, uid, gid),
        ("run/openbao-kms", 0o2750, uid, *socket_gid),
    ];
    let check = |when: &str| {
        for (path, mode, owner, group) in table {
            let meta = fs::symlink_metadata(root.path().join(path)).unwrap();
            assert!(meta.is_dir(), "{when}: {path}");
            assert_eq!(
                (meta.mode() & 0o7777, meta.uid(), meta.gid()),
                (mode, owner, group),
                "{when}: {path} (mode, uid, gid)"
            );
        }
    };
    check("created");
    // At boot (and on every package configure) drift is repaired.
    let run_dir = root.path().join("run/openbao-kms");
    chmod(&run_dir, 0o777);
    chown(&run_dir, Some(0), Some(0)).unwrap();
    run(&mut create);
    check("repaired");
}

// ---------------------------------------------------------- sample configs

#[test]
fn sample_configs_load_with_the_real_loader() {
    let systemd = load("deploy/config/provider-systemd.yaml");
    assert_eq!(systemd.server.socket_group, "openbao-kms-socket");
    assert_eq!(
        systemd.server.socket_path,
        Path::new("/run/openbao-kms/kms.sock")
    );
    assert_eq!(systemd.server.socket_mode, 0o660);
    assert_eq!(systemd.server.health_address, "127.0.0.1:8082");
    assert_eq!(systemd.server.metrics_address, "127.0.0.1:8081");
    assert_eq!(systemd.auth.method, AuthMethod::Jwt);
    assert_eq!(
        systemd.auth.jwt.jwt_file,
        Path::new("/var/lib/openbao-kms/identity.jwt")
    );
    assert_eq!(
        systemd.state.path,
        Path::new("/var/lib/openbao-kms/state/key-registry.json")
    );

    let pod = load("deploy/config/provider-static-pod.yaml");
    assert_eq!(pod.server.socket_group, "1234");
    assert_eq!(
        pod.auth.jwt.jwt_file,
        Path::new("/var/lib/openbao-kms/credentials/identity.jwt")
    );
    assert_eq!(
        pod.identity_fingerprint(),
        systemd.identity_fingerprint(),
        "same cluster identity in both samples"
    );

    let pkcs11 = load("deploy/config/provider-systemd-pkcs11.yaml");
    assert_eq!(pkcs11.auth.method, AuthMethod::Cert);
    assert_eq!(pkcs11.auth.cert.source, "pkcs11");
    assert_eq!(
        pkcs11.auth.cert.pkcs11.pin_file,
        Path::new("/etc/openbao-kms/pkcs11/pin")
    );

    // The static-pod sample differs from the systemd one in exactly the
    // socket group and the JWT's (mounted) directory.
    let mut a = yaml("deploy/config/provider-systemd.yaml");
    let mut b = yaml("deploy/config/provider-static-pod.yaml");
    for doc in [&mut a, &mut b] {
        doc["server"]["socketGroup"] = Value::Null;
        doc["auth"]["jwt"]["jwtFile"] = Value::Null;
    }
    assert_eq!(a, b);
}

#[test]
fn unit_config_and_package_files_agree_on_paths_users_and_groups() {
    let config = load("deploy/config/provider-systemd.yaml");
    let unit = directives(&read(&format!("deploy/systemd/{UNIT}")));
    let exec = one(&unit, "Service.ExecStart", UNIT);
    let config_path = exec.rsplit(' ').next().unwrap();
    let conditions = words(&unit, "Unit.ConditionPathExists");
    assert!(conditions.contains(config_path));
    assert!(conditions.contains(config.auth.jwt.jwt_file.to_str().unwrap()));
    let socket_dir = config.server.socket_path.parent().unwrap();
    let state_dir = config.state.path.parent().unwrap();
    assert_eq!(
        Path::new(one(&unit, "Unit.ConditionPathIsDirectory", UNIT)),
        socket_dir
    );
    let writable = words(&unit, "Service.ReadWritePaths");
    for dir in [socket_dir, state_dir] {
        assert!(writable.contains(dir.to_str().unwrap()), "{dir:?}");
    }
    // Everything the service reads is below ReadOnlyPaths or the JWT's home.
    for file in [
        Path::new(config_path),
        config.openbao.ca_cert_file.as_path(),
    ] {
        assert!(
            file.starts_with(one(&unit, "Service.ReadOnlyPaths", UNIT)),
            "{file:?}"
        );
    }
    assert!(words(&unit, "Service.SupplementaryGroups").contains(&config.server.socket_group));

    // tmpfiles creates the socket and state directories the config names,
    // with the unit's user and the config's socket group.
    let tmpfiles: Vec<Vec<String>> = read("deploy/package/linux/tmpfiles.d/openbao-kms.conf")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    let entry = |dir: &Path| {
        tmpfiles
            .iter()
            .find(|f| Path::new(&f[1]) == dir)
            .unwrap_or_else(|| panic!("no tmpfiles entry for {dir:?}"))
            .clone()
    };
    let user = one(&unit, "Service.User", UNIT);
    assert_eq!(
        entry(socket_dir),
        [
            "d",
            socket_dir.to_str().unwrap(),
            "2750",
            user,
            &config.server.socket_group,
            "-"
        ]
    );
    assert_eq!(
        entry(state_dir),
        ["d", state_dir.to_str().unwrap(), "0750", user, user, "-"]
    );
    // The socket group sysusers creates, with the service as a member.
    let sysusers = read("deploy/package/linux/sysusers.d/openbao-kms.conf");
    let group = &config.server.socket_group;
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["g", group, "-"])
    );
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["m", user, group])
    );
}

#[test]
fn encryption_configs_name_the_provider_and_its_socket_in_two_phases() {
    let config = load("deploy/config/provider-systemd.yaml");
    let endpoint = format!("unix://{}", config.server.socket_path.display());
    for (file, order) in [
        ("encryption-config-readers.yaml", ["identity", "kms"]),
        ("encryption-config.yaml", ["kms", "identity"]),
    ] {
        let doc = yaml(&format!("deploy/encryption-config/{file}"));
        assert_eq!(doc["apiVersion"], "apiserver.config.k8s.io/v1", "{file}");
        assert_eq!(doc["kind"], "EncryptionConfiguration", "{file}");
        let sets = doc["resources"].as_sequence().unwrap();
        assert_eq!(sets.len(), 1, "{file}");
        assert_eq!(
            sets[0]["resources"],
            serde_norway::from_str::<Value>("[secrets]").unwrap()
        );
        let providers = sets[0]["providers"].as_sequence().unwrap();
        let kinds: Vec<&str> = providers
            .iter()
            .map(|p| {
                let map = p.as_mapping().unwrap();
                assert_eq!(map.len(), 1, "{file}: one provider type per entry");
                map.keys().next().unwrap().as_str().unwrap()
            })
            .collect();
        assert_eq!(kinds, order, "{file}");
        let kms = providers.iter().find_map(|p| p.get("kms")).unwrap();
        assert_eq!(kms["apiVersion"], "v2", "{file}");
        assert_eq!(
            kms["name"].as_str(),
            Some(config.transit.key_id_scope.provider_name.as_str()),
            "{file}: kms.name must equal transit.keyIdScope.providerName"
        );
        assert_eq!(kms["endpoint"].as_str(), Some(endpoint.as_str()), "{file}");
        assert_eq!(kms["timeout"], "3s", "{file}");
        assert!(
            kms.get("cachesize").is_none(),
            "{file}: cachesize is KMS v1 only"
        );
        assert_eq!(
            providers.iter().find_map(|p| p.get("identity")),
            Some(&Value::Mapping(Default::default()))
        );
    }
}

// -------------------------------------------------------------- static pod

/// Every mapping key anywhere in the document.
fn all_keys(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                if let Some(k) = k.as_str() {
                    out.insert(k.to_owned());
                }
                all_keys(v, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| all_keys(v, out)),
        Value::Tagged(tagged) => all_keys(&tagged.value, out),
        _ => {}
    }
}

#[test]
fn static_pod_manifest_follows_every_static_pod_rule() {
    let pod = yaml("deploy/static-pod/bao-kms-provider.yaml");
    let config = load("deploy/config/provider-static-pod.yaml");
    assert_eq!(pod["apiVersion"], "v1");
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["namespace"], "kube-system");
    let spec = &pod["spec"];

    // Nothing the apiserver serves: it runs before any apiserver exists.
    let mut keys = BTreeSet::new();
    all_keys(&pod, &mut keys);
    for banned in [
        "configMap",
        "configMapKeyRef",
        "configMapRef",
        "secret",
        "secretKeyRef",
        "secretRef",
        "projected",
        "downwardAPI",
        "serviceAccountName",
        "serviceAccount",
        "serviceAccountToken",
        "envFrom",
        "imagePullSecrets",
        "persistentVolumeClaim",
        "fsGroup",
        "hostPID",
        "hostIPC",
    ] {
        assert!(!keys.contains(banned), "static pods must not use {banned}");
    }
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["priorityClassName"], "system-node-critical");

    // A numeric non-root user, the socket GID as a supplemental group.
    let security = &spec["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"].as_u64(), Some(65532));
    assert_eq!(security["runAsGroup"].as_u64(), Some(65532));
    let socket_gid: u64 = config
        .server
        .socket_group
        .parse()
        .expect("numeric socketGroup");
    assert_eq!(
        security["supplementalGroups"].as_sequence().unwrap(),
        &[Value::from(socket_gid)]
    );
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");

    let containers = spec["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    assert!(spec.get("initContainers").is_none());
    let c = &containers[0];
    let image = c["image"].as_str().unwrap();
    let digest = image
        .split_once("@sha256:")
        .expect("image pinned by digest")
        .1;
    assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()));
    // The digest is written by `scripts/build-image.sh --pin-static-pod`,
    // never by hand: its note names this package version and a commit.
    let raw = read("deploy/static-pod/bao-kms-provider.yaml");
    let lines: Vec<&str> = raw.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == format!("image: {image}"))
        .unwrap();
    let note = lines[at - 1]
        .trim()
        .strip_prefix("# image: scripts/build-image.sh --pin-static-pod, bao-kms-provider ")
        .unwrap_or_else(|| panic!("no pin note above the image: {}", lines[at - 1]));
    let (pinned_version, commit) = note.split_once(", commit ").unwrap();
    assert_eq!(
        pinned_version,
        env!("CARGO_PKG_VERSION"),
        "re-pin the image for this version"
    );
    assert!(commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(digest, "0".repeat(64), "placeholder digest");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, ["serve", "--config=/etc/openbao-kms/config.yaml"]);
    let csc = &c["securityContext"];
    assert_eq!(csc["allowPrivilegeEscalation"], false);
    assert_eq!(csc["readOnlyRootFilesystem"], true);
    assert_eq!(csc["runAsNonRoot"], true);
    assert_ne!(csc["privileged"], true);
    assert_eq!(
        csc["capabilities"],
        serde_norway::from_str::<Value>("{drop: [ALL]}").unwrap(),
        "drop ALL, add nothing"
    );

    // Probes on the loopback health listener the config opens.
    assert_eq!(config.server.health_address, "127.0.0.1:8082");
    for (probe, path) in [
        ("startupProbe", "/live"),
        ("livenessProbe", "/live"),
        ("readinessProbe", "/ready"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["host"], "127.0.0.1", "{probe}");
        assert_eq!(get["port"].as_u64(), Some(8082), "{probe}");
        assert_eq!(get["path"], path, "{probe}");
        assert!(get.get("scheme").is_none_or(|s| s == "HTTP"), "{probe}");
    }
    // The startup probe outlasts the bootstrap grace period.
    let startup = &c["startupProbe"];
    let budget =
        startup["periodSeconds"].as_u64().unwrap() * startup["failureThreshold"].as_u64().unwrap();
    assert!(
        Duration::from_secs(budget) > config.bootstrap.grace_timeout + Duration::from_secs(30),
        "startup budget {budget}s"
    );

    // hostPath only; read-only except the socket and state directories.
    let volumes: BTreeMap<&str, &Value> = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| {
            let map = v.as_mapping().unwrap();
            assert_eq!(map.len(), 2, "name and hostPath only: {v:?}");
            (v["name"].as_str().unwrap(), &v["hostPath"])
        })
        .collect();
    let mut read_only = Vec::new();
    let mut writable = Vec::new();
    for m in c["volumeMounts"].as_sequence().unwrap() {
        let host = volumes[m["name"].as_str().unwrap()];
        let mount = PathBuf::from(m["mountPath"].as_str().unwrap());
        // Same path inside and out, so host docs and config paths agree.
        assert_eq!(Path::new(host["path"].as_str().unwrap()), mount);
        let kind = host["type"].as_str().unwrap();
        assert!(
            kind == "File" || kind == "Directory",
            "{mount:?}: {kind} (host prep creates it)"
        );
        if m["readOnly"] == true {
            read_only.push(mount);
        } else {
            writable.push(mount);
        }
    }
    writable.sort();
    let socket_dir = config.server.socket_path.parent().unwrap();
    let state_dir = config.state.path.parent().unwrap();
    assert_eq!(writable, [socket_dir, state_dir]);
    // Config, CA and JWT each come in read-only.
    let args_config = Path::new(args[1].trim_start_matches("--config="));
    for file in [
        args_config,
        config.openbao.ca_cert_file.as_path(),
        config.auth.jwt.jwt_file.as_path(),
    ] {
        assert!(
            read_only.iter().any(|m| file.starts_with(m)),
            "{file:?} is not under a read-only mount"
        );
    }
    // The JWT's directory is mounted, not the file: atomic replacement works.
    assert!(
        read_only
            .iter()
            .any(|m| m == config.auth.jwt.jwt_file.parent().unwrap())
    );
}

// ------------------------------------------------------------------ .deb

/// `dpkg-deb -c` lines: path → (permissions, owner/group).
fn deb_listing(deb: &Path) -> BTreeMap<String, (String, String)> {
    stdout(&run(Command::new("dpkg-deb").arg("-c").arg(deb)))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f[5].trim_start_matches('.').trim_end_matches('/');
            (path.to_owned(), (f[0].to_owned(), f[1].to_owned()))
        })
        .filter(|(path, _)| !path.is_empty())
        .collect()
}

#[test]
fn deb_package_has_the_layout_modes_conffile_and_scripts() {
    let out = TempDir::new("bkp-deb");
    let started = Instant::now();
    let built = run(Command::new(repo("scripts/build-deb.sh"))
        .args(["--binary", BIN, "--compression", "gzip", "--out"])
        .arg(out.path()));
    eprintln!("build-deb.sh took {:?}", started.elapsed());
    let deb = PathBuf::from(stdout(&built).lines().last().unwrap());
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        deb.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&format!("bao-kms-provider_{version}_")),
        "{deb:?}"
    );

    let listing = deb_listing(&deb);
    let expected = [
        ("/usr/bin/bao-kms-provider", "-rwxr-xr-x"),
        ("/lib/systemd/system/bao-kms-provider.service", "-rw-r--r--"),
        (
            "/lib/systemd/system/bao-kms-provider-pkcs11.service",
            "-rw-r--r--",
        ),
        ("/usr/lib/tmpfiles.d/openbao-kms.conf", "-rw-r--r--"),
        ("/usr/lib/sysusers.d/openbao-kms.conf", "-rw-r--r--"),
        ("/etc/openbao-kms", "drwxr-x---"),
        ("/etc/openbao-kms/config.yaml", "-rw-r-----"),
        ("/usr/share/doc/bao-kms-provider/copyright", "-rw-r--r--"),
        ("/usr/share/doc/bao-kms-provider/README.md", "-rw-r--r--"),
        (
            "/usr/share/doc/bao-kms-provider/deploy-systemd.md",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/bao-kms-provider/deploy-static-pod.md",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/bao-kms-provider/examples/provider-systemd-pkcs11.yaml",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/bao-kms-provider/examples/provider-static-pod.yaml",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/bao-kms-provider/examples/bao-kms-provider.yaml",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/bao-kms-provider/examples/encryption-config.yaml",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/bao-kms-provider/examples/encryption-config-readers.yaml",
            "-rw-r--r--",
        ),
        ("/usr/share/man/man1/bao-kms-provider.1.gz", "-rw-r--r--"),
        (
            "/usr/share/man/man1/bao-kms-provider-serve.1.gz",
            "-rw-r--r--",
        ),
        (
            "/usr/share/bash-completion/completions/bao-kms-provider",
            "-rw-r--r--",
        ),
        (
            "/usr/share/zsh/vendor-completions/_bao-kms-provider",
            "-rw-r--r--",
        ),
        (
            "/usr/share/fish/vendor_completions.d/bao-kms-provider.fish",
            "-rw-r--r--",
        ),
    ];
    for (path, perms) in expected {
        let (got, owner) = listing
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from the package: {listing:#?}"));
        assert_eq!(got, perms, "{path}");
        assert_eq!(owner, "root/root", "{path}");
    }
    for (path, (perms, owner)) in &listing {
        assert_eq!(owner, "root/root", "{path}");
        // Nothing setuid/setgid, nothing writable beyond its owner.
        assert!(
            !perms.contains('s') && !perms.contains('S'),
            "{path}: {perms}"
        );
        assert!(
            perms.as_bytes()[5] != b'w' && perms.as_bytes()[8] != b'w',
            "{path}: {perms}"
        );
        // /run and /var/lib come from tmpfiles.d, with their owners.
        assert!(
            !path.starts_with("/run") && !path.starts_with("/var"),
            "{path}"
        );
        let etc_ok = ["/etc", "/etc/openbao-kms", "/etc/openbao-kms/config.yaml"];
        assert!(
            !path.starts_with("/etc") || etc_ok.contains(&path.as_str()),
            "{path}"
        );
    }

    // Control fields.
    let field = |name: &str| {
        stdout(&run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name)))
            .trim()
            .to_owned()
    };
    assert_eq!(field("Package"), "bao-kms-provider");
    assert_eq!(field("Version"), version);
    assert_eq!(field("Section"), "admin");
    assert!(
        field("Depends").contains("libc6 (>="),
        "{}",
        field("Depends")
    );
    let info = stdout(&run(Command::new("dpkg-deb").arg("-I").arg(&deb)));
    for script in ["postinst", "prerm", "postrm", "conffiles", "md5sums"] {
        assert!(info.contains(script), "dpkg-deb -I lacks {script}:\n{info}");
    }

    // Maintainer scripts and the conffile list, as packaged.
    let control = out.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    assert_eq!(
        fs::read_to_string(control.join("conffiles")).unwrap(),
        "/etc/openbao-kms/config.yaml\n",
        "dpkg must keep an operator's edits to the config"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let packaged = control.join(script);
        assert_eq!(mode_of(&packaged), 0o755, "{script}");
        let text = fs::read_to_string(&packaged).unwrap();
        assert_eq!(
            text,
            read(&format!("deploy/package/debian/{script}")),
            "{script}"
        );
        assert!(
            text.starts_with("#!/bin/sh\n") && text.contains("set -e"),
            "{script}"
        );
        run(Command::new("sh").arg("-n").arg(&packaged));
        // The operator configures first: no script enables, starts or
        // restarts the service; prerm may only stop it (on remove).
        assert!(!text.contains("deb-systemd"), "{script}");
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            for (i, _) in line.match_indices("systemctl ") {
                if line[..i].ends_with("-v ") {
                    continue; // command -v systemctl
                }
                let verb = line[i + "systemctl ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap();
                let allowed: &[&str] = match script {
                    "prerm" => &["stop"],
                    _ => &["daemon-reload", "is-active"],
                };
                assert!(allowed.contains(&verb), "{script} runs systemctl {verb}");
            }
        }
    }
    let postinst = fs::read_to_string(control.join("postinst")).unwrap();
    for step in [
        "systemd-sysusers \"$SYSUSERS\"",
        "systemd-tmpfiles --create \"$TMPFILES\"",
        "groupadd --system openbao-kms-socket",
        "useradd --system --gid openbao-kms",
        "install -d -m 2750 -o openbao-kms -g openbao-kms-socket /run/openbao-kms",
        "chgrp openbao-kms \"$CONFIG\"",
        "chmod g+r,g-wx,o-rwx \"$CONFIG\"",
    ] {
        assert!(postinst.contains(step), "postinst lacks {step}");
    }
    // postinst never writes a file (no redirections into /etc or /var).
    assert!(!postinst.contains("> /etc") && !postinst.contains(">/etc"));

    // Unpacked: checksums hold, the config is the sample, the binary runs.
    let tree = out.path().join("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree));
    run(Command::new("md5sum")
        .args(["--check", "--quiet"])
        .arg(control.join("md5sums"))
        .current_dir(&tree));
    assert_eq!(
        fs::read_to_string(tree.join("etc/openbao-kms/config.yaml")).unwrap(),
        read("deploy/config/provider-systemd.yaml")
    );
    let packaged = tree.join("usr/bin/bao-kms-provider");
    let version_out = stdout(&run(Command::new(&packaged).arg("version")));
    assert!(
        version_out.contains(&format!("version: v{version}\n")),
        "{version_out}"
    );
    assert_eq!(
        stdout(&run(Command::new(&packaged).arg("--version"))),
        format!("bao-kms-provider v{version}\n"),
        "--version matches the package"
    );

    // A man page per command the help lists (and per subcommand of a
    // group), each a roff page for its own command.
    let help = stdout(&run(Command::new(&packaged).arg("--help")));
    let commands: Vec<&str> = help
        .split_once("Commands:\n")
        .unwrap()
        .1
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 10, "{help}");
    let man = tree.join("usr/share/man/man1");
    let pages: BTreeSet<String> = fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for command in std::iter::once("").chain(commands) {
        let name = if command.is_empty() {
            "bao-kms-provider".to_owned()
        } else {
            format!("bao-kms-provider-{command}")
        };
        assert!(pages.contains(&format!("{name}.1.gz")), "{name}: {pages:?}");
        let text = stdout(&run(Command::new("gzip")
            .arg("-dc")
            .arg(man.join(format!("{name}.1.gz")))));
        let title = text.lines().find(|l| l.starts_with(".TH ")).unwrap();
        assert!(
            title.starts_with(&format!(".TH {name} 1 "))
                && title.contains(&format!("\"bao-kms-provider {version}\"")),
            "{name}: {text}"
        );
    }
    assert!(
        pages.contains("bao-kms-provider-policy-openbao.1.gz"),
        "{pages:?}"
    );
    assert!(!pages.iter().any(|p| p.contains("-man.")), "man is hidden");
    // Completions are the binary's own, for its real flags.
    for (shell, path) in [
        (
            "bash",
            "usr/share/bash-completion/completions/bao-kms-provider",
        ),
        ("zsh", "usr/share/zsh/vendor-completions/_bao-kms-provider"),
        (
            "fish",
            "usr/share/fish/vendor_completions.d/bao-kms-provider.fish",
        ),
    ] {
        let script = fs::read_to_string(tree.join(path)).unwrap();
        assert_eq!(
            script,
            stdout(&run(Command::new(&packaged).args(["completion", shell]))),
            "{shell}"
        );
        assert!(script.contains("verify-key"), "{shell}");
    }

    // Checksums of the .deb and the packaged binary, next to them.
    let sums = fs::read_to_string(out.path().join("SHA256SUMS")).unwrap();
    let named: Vec<&str> = sums
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        named,
        [
            deb.file_name().unwrap().to_str().unwrap(),
            "bao-kms-provider"
        ]
    );
    run(Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(out.path()));
    assert_eq!(
        fs::read(out.path().join("bao-kms-provider")).unwrap(),
        fs::read(&packaged).unwrap()
    );
}

// ------------------------------------------------- non-root provider, e2e

/// A host laid out like a package install, below a scratch directory, for
/// a provider running as `user`; the socket directory is a fresh directory
/// under /run/openbao-kms (the only place the provider accepts sockets).
struct Host {
    root: TempDir,
    socket_dir: TempDir,
    bin: PathBuf,
    config: PathBuf,
    /// What the provider must never print (the JWT, the PIN).
    secrets: Vec<String>,
    /// Environment the provider runs with (the unit sets none).
    env: Vec<(String, String)>,
}

/// Sets the value at `path` in a sample config, which must already have it.
fn set(doc: &mut Value, path: &[&str], value: Value) {
    let mut at = doc;
    for key in path {
        at = at.get_mut(*key).unwrap_or_else(|| panic!("no {path:?}"));
    }
    *at = value;
}

fn s(v: &str) -> Value {
    Value::from(v.to_owned())
}

impl Host {
    fn socket(&self) -> PathBuf {
        self.socket_dir.path().join("kms.sock")
    }

    /// The shipped JWT sample (`provider-systemd.yaml`) with a JWT file
    /// `root:openbao-kms 0640`, as the hardening table has it.
    fn prepare(lab: &Lab, user: &Account, socket_group: &str) -> Host {
        Host::prepare_sample(
            lab,
            user,
            socket_group,
            "deploy/config/provider-systemd.yaml",
            |root, doc| {
                let jwt = root.join("var/lib/openbao-kms/identity.jwt");
                lab.write_jwt(
                    &jwt,
                    &support::jwt::Claims::valid_for(Duration::from_secs(3600)),
                );
                chown(&jwt, Some(0), Some(user.gid)).unwrap();
                chmod(&jwt, 0o640);
                set(doc, &["auth", "jwt", "mountPath"], s(JWT_MOUNT));
                set(doc, &["auth", "jwt", "role"], s(ROLE));
                set(doc, &["auth", "jwt", "jwtFile"], s(jwt.to_str().unwrap()));
                set(doc, &["auth", "jwt", "expectedIssuer"], s(ISSUER));
                set(
                    doc,
                    &["auth", "jwt", "expectedAudience"],
                    Value::Sequence(vec![s(AUDIENCE)]),
                );
                set(doc, &["auth", "jwt", "expectedSubject"], s(SUBJECT));
                (vec![fs::read_to_string(&jwt).unwrap()], Vec::new())
            },
        )
    }

    /// A host laid out from the shipped `sample`; `auth` stages the
    /// credentials below the root, edits the `auth` block and returns the
    /// secrets and the environment.
    fn prepare_sample(
        lab: &Lab,
        user: &Account,
        socket_group: &str,
        sample: &str,
        auth: impl FnOnce(&Path, &mut Value) -> (Vec<String>, Vec<(String, String)>),
    ) -> Host {
        let run_base = Path::new("/run/openbao-kms");
        fs::create_dir_all(run_base).unwrap();
        assert!(
            mode_of(run_base) & 0o001 != 0,
            "/run/openbao-kms must be searchable by other users for this test (it is 0755 as scripts/test.sh creates it)"
        );
        let root = TempDir::new("bkp-host");
        chmod(root.path(), 0o755);
        let p = |rel: &str| root.path().join(rel);
        let dir = |rel: &str, mode: u32, uid: u32, gid: u32| {
            fs::create_dir_all(p(rel)).unwrap();
            chmod(&p(rel), mode);
            chown(p(rel), Some(uid), Some(gid)).unwrap();
        };
        // The hardening table, with this user as openbao-kms.
        dir("usr/bin", 0o755, 0, 0);
        dir("etc/openbao-kms", 0o750, 0, user.gid);
        dir("etc/openbao-kms/tls", 0o755, 0, 0);
        dir("var/lib/openbao-kms", 0o750, user.uid, user.gid);
        dir("var/lib/openbao-kms/state", 0o750, user.uid, user.gid);

        // A copy: the build directory need not be reachable for other users.
        let bin = p("usr/bin/bao-kms-provider");
        fs::copy(BIN, &bin).unwrap();
        chmod(&bin, 0o755);
        let ca = p("etc/openbao-kms/tls/ca.crt");
        fs::copy(lab.ca_file(), &ca).unwrap();
        chmod(&ca, 0o644);

        let socket_dir = TempDir::new_in(run_base, "bkp-test");
        let state = p("var/lib/openbao-kms/state/key-registry.json");
        let socket = socket_dir.path().join("kms.sock");

        // The shipped sample, pointed at this lab and this host.
        let mut doc = yaml(sample);
        set(
            &mut doc,
            &["server", "socketPath"],
            s(socket.to_str().unwrap()),
        );
        set(&mut doc, &["server", "socketGroup"], s(socket_group));
        // No TCP listeners: parallel tests would fight over the ports.
        set(&mut doc, &["server", "metricsAddress"], s(""));
        set(&mut doc, &["server", "healthAddress"], s(""));
        set(&mut doc, &["openbao", "address"], s(&lab.addr()));
        set(
            &mut doc,
            &["openbao", "caCertFile"],
            s(ca.to_str().unwrap()),
        );
        set(&mut doc, &["openbao", "tlsServerName"], s("localhost"));
        let (secrets, env) = auth(root.path(), &mut doc);
        set(&mut doc, &["transit", "mountPath"], s(TRANSIT_MOUNT));
        set(&mut doc, &["transit", "keyName"], s(KEY_NAME));
        set(&mut doc, &["state", "path"], s(state.to_str().unwrap()));
        set(&mut doc, &["bootstrap", "graceTimeout"], s("10s"));
        set(&mut doc, &["bootstrap", "retryInterval"], s("500ms"));
        let config = p("etc/openbao-kms/config.yaml");
        fs::write(&config, serde_norway::to_string(&doc).unwrap()).unwrap();
        chown(&config, Some(0), Some(user.gid)).unwrap();
        chmod(&config, 0o640);
        Host {
            root,
            socket_dir,
            bin,
            config,
            secrets,
            env,
        }
    }

    /// Sets the socket directory's owner, group and mode.
    fn socket_dir_as(&self, uid: u32, gid: u32, mode: u32) {
        chown(self.socket_dir.path(), Some(uid), Some(gid)).unwrap();
        chmod(self.socket_dir.path(), mode);
    }

    /// Runs the packaged binary as `user` with its groups from /etc/group,
    /// no capabilities, no new privileges and umask 0027, like the unit.
    fn command_as(&self, user: &Account, args: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "umask 0027 && exec \"$@\"", "sh", "setpriv"])
            .arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .args([
                "--init-groups",
                "--no-new-privs",
                "--bounding-set=-all",
                "--",
            ])
            .arg(&self.bin)
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    fn serve_as(&self, user: &Account, tag: &str) -> Served {
        let out = self.root.path().join(format!("{tag}.stdout"));
        let err = self.root.path().join(format!("{tag}.stderr"));
        let child = self
            .command_as(user, &["serve", "--config", self.config.to_str().unwrap()])
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn setpriv (util-linux)");
        Served {
            child,
            out,
            err,
            exit: None,
        }
    }

    /// `probe --output json` as `user`: exit code and the parsed report.
    fn probe_as(&self, user: &Account) -> (Option<i32>, serde_json::Value) {
        let socket = self.socket();
        let out = self
            .command_as(
                user,
                &[
                    "probe",
                    "--socket",
                    socket.to_str().unwrap(),
                    "--output",
                    "json",
                ],
            )
            .output()
            .unwrap();
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("probe output is not JSON ({e}): {out:?}"));
        (out.status.code(), report)
    }
}

struct Served {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    exit: Option<ExitStatus>,
}

impl Served {
    fn logs(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            fs::read_to_string(&self.out).unwrap_or_default(),
            fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().unwrap();
        }
        self.exit
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exit() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("provider still running after {limit:?}:\n{}", self.logs());
    }

    fn wait_ready(&mut self, socket: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return;
            }
            if let Some(status) = self.try_exit() {
                panic!(
                    "provider exited with {status} before ready:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("provider not ready:\n{}", self.logs());
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_non_root_provider_serves_its_socket_group_and_nobody_else() {
    let lab = Lab::start();
    let mut accounts = Accounts::new();
    let (socket_group, socket_gid) = accounts.group("sock");
    let provider = accounts.user("prov", &[&socket_group]);
    let member = accounts.user("peer", &[&socket_group]);
    let outsider = accounts.user("other", &[]);
    let host = Host::prepare(&lab, &provider, &socket_group);

    // Refused at start, with what is wrong and the fix, exit 5 (runtime):
    // a socket directory owned by someone else...
    host.socket_dir_as(0, socket_gid, 0o2750);
    let mut served = host.serve_as(&provider, "not-owned");
    assert_eq!(
        served.wait_exit(Duration::from_secs(30)).code(),
        Some(5),
        "{}",
        served.logs()
    );
    let logs = served.logs();
    assert!(
        logs.contains(&format!(
            "server.socketPath: parent directory must be owned by the provider's user (owner uid 0, provider uid {})",
            provider.uid
        )) && logs.contains("run: install -d -m 2750 -o openbao-kms -g openbao-kms-socket /run/openbao-kms"),
        "{logs}"
    );
    // ...and one whose group is not the socket group (members could not reach the socket).
    host.socket_dir_as(provider.uid, provider.gid, 0o2750);
    let mut served = host.serve_as(&provider, "wrong-group");
    assert_eq!(
        served.wait_exit(Duration::from_secs(30)).code(),
        Some(5),
        "{}",
        served.logs()
    );
    assert!(
        served.logs().contains(&format!(
            "parent directory must belong to server.socketGroup (gid {socket_gid})"
        )),
        "{}",
        served.logs()
    );
    assert!(!host.socket().exists());

    // The packaged layout: <provider>:<socket group> 2750.
    host.socket_dir_as(provider.uid, socket_gid, 0o2750);
    let mut served = host.serve_as(&provider, "serve");
    served.wait_ready(&host.socket());
    let meta = fs::symlink_metadata(host.socket()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (provider.uid, socket_gid, 0o660),
        "socket owner, group, mode"
    );

    // A member of the socket group: Status, Encrypt and Decrypt all pass.
    let (code, report) = host.probe_as(&member);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        check(&report, "client.identity")["status"],
        "pass",
        "{report:#}"
    );
    assert_checks_pass(
        &report,
        &[
            "socket.path",
            "socket.access_scope",
            "socket.connect",
            "kms.status",
            "kms.encrypt",
            "kms.decrypt",
        ],
    );

    // Anyone else: refused by the kernel at the directory, exit 4.
    let (code, report) = host.probe_as(&outsider);
    assert_refused_at_the_socket_directory(code, &report);
    assert_eq!(check(&report, "kms.status")["status"], "skip", "{report:#}");

    // SIGTERM: clean exit, and the non-root provider removes its own socket.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(served.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = served.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", served.logs());
    assert!(!host.socket().exists());
    let logs = served.logs();
    assert!(logs.contains("serve.ready"), "{logs}");
    assert!(
        support::secrets_in(
            &logs,
            &host.secrets.iter().map(String::as_str).collect::<Vec<_>>()
        )
        .is_empty(),
        "provider output leaked a secret"
    );
}

/// The shipped PKCS#11 sample (`provider-systemd-pkcs11.yaml`) as it is,
/// but for the lab's address, cert role and token labels: a SoftHSM2 token
/// owned by the provider's user (as the `softhsm` group grants on a host),
/// PIN and certificate files `root:openbao-kms 0640`, the module path the
/// sample ships. Logs in with OpenBao cert auth and serves its socket group.
#[test]
fn a_non_root_provider_logs_in_with_the_shipped_pkcs11_config() {
    use support::pkcs11::{
        CERT_MOUNT, CERT_ROLE, CLIENT_CN, Ca, KEY_LABEL, MODULE, SoftHsm, TOKEN_LABEL,
    };
    let ca = Ca::new("kms-client-ca");
    let lab = Lab::start();
    lab.enable_cert_auth(CERT_MOUNT, CERT_ROLE, &ca.pem, CLIENT_CN, "1h");
    let hsm = SoftHsm::new();
    let mut accounts = Accounts::new();
    let (socket_group, socket_gid) = accounts.group("sock");
    let provider = accounts.user("prov", &[&socket_group]);
    let member = accounts.user("peer", &[&socket_group]);
    let shipped = yaml("deploy/config/provider-systemd-pkcs11.yaml");
    assert_eq!(
        shipped["auth"]["cert"]["pkcs11"]["modulePath"].as_str(),
        Some(MODULE),
        "the sample names Debian's SoftHSM2 module"
    );
    let host = Host::prepare_sample(
        &lab,
        &provider,
        &socket_group,
        "deploy/config/provider-systemd-pkcs11.yaml",
        |root, doc| {
            let staged = |rel: &str, text: &str| {
                let path = root.join(rel);
                let dir = path.parent().unwrap();
                fs::create_dir_all(dir).unwrap();
                chown(dir, Some(0), Some(provider.gid)).unwrap();
                chmod(dir, 0o750);
                fs::write(&path, text).unwrap();
                chown(&path, Some(0), Some(provider.gid)).unwrap();
                chmod(&path, 0o640);
                path
            };
            let pin = staged("etc/openbao-kms/pkcs11/pin", &format!("{}\n", hsm.pin));
            let chain = staged(
                "etc/openbao-kms/client/client-chain.pem",
                &ca.leaf(hsm.key(), CLIENT_CN, 2090),
            );
            run(Command::new("chown")
                .arg("-R")
                .arg(format!("{}:{}", provider.uid, provider.gid))
                .arg(hsm.dir()));
            let cert = ["auth", "cert"];
            let p11 = ["auth", "cert", "pkcs11"];
            set(doc, &[cert[0], cert[1], "mountPath"], s(CERT_MOUNT));
            set(doc, &[cert[0], cert[1], "name"], s(CERT_ROLE));
            set(
                doc,
                &[p11[0], p11[1], p11[2], "certificateFile"],
                s(chain.to_str().unwrap()),
            );
            set(
                doc,
                &[p11[0], p11[1], p11[2], "pinFile"],
                s(pin.to_str().unwrap()),
            );
            set(doc, &[p11[0], p11[1], p11[2], "tokenLabel"], s(TOKEN_LABEL));
            set(doc, &[p11[0], p11[1], p11[2], "keyLabel"], s(KEY_LABEL));
            (
                vec![hsm.pin.clone()],
                vec![("SOFTHSM2_CONF".into(), hsm.conf.to_str().unwrap().into())],
            )
        },
    );
    host.socket_dir_as(provider.uid, socket_gid, 0o2750);
    let mut served = host.serve_as(&provider, "serve");
    served.wait_ready(&host.socket());
    let (code, report) = host.probe_as(&member);
    assert_eq!(code, Some(0), "{report:#}\n{}", served.logs());
    for id in ["kms.status", "kms.encrypt", "kms.decrypt"] {
        assert_eq!(check(&report, id)["status"], "pass", "{id}: {report:#}");
    }
    assert_eq!(
        lab.audited_count(&format!("{CERT_MOUNT}/login")),
        1,
        "one cert login"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(served.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        served.wait_exit(Duration::from_secs(30)).code(),
        Some(0),
        "{}",
        served.logs()
    );
    let logs = served.logs();
    assert!(logs.contains("serve.ready"), "{logs}");
    assert!(
        support::secrets_in(&logs, &[&hsm.pin]).is_empty(),
        "provider output leaked the PIN"
    );
}
