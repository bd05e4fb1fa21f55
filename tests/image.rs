//! The OCI image from `scripts/build-image.sh`, checked with real tools:
//! built twice from this commit into two directories (same manifest digest,
//! same bytes), taken apart blob by blob (config, one layer holding exactly
//! the binary, its `ldd` libraries and two account files, every timestamp
//! the commit's), and run: `umoci unpack`ed, with the static pod's mounts
//! bound into a read-only root, as 65532 under `chroot`, serving the test
//! OpenBao and answering `probe` through its socket.
//!
//! The release build is the expensive part (minutes): the two builds happen
//! once per test binary ([`builds`]) and `scripts/test.sh` runs
//! `scripts/build-release.sh` before `cargo test`, so here cargo finds it up
//! to date. Needs root (mount namespaces, chroot) and Debian's `umoci`, which
//! `scripts/install-test-deps.sh` installs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::Value as Json;
use serde_norway::Value;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::cmd::{chmod, run, stdout};
use support::openbao::{AUDIENCE, ISSUER, JWT_MOUNT, KEY_NAME, Lab, ROLE, SUBJECT, TRANSIT_MOUNT};
use support::tmp::TempDir;

/// The image's user, and the socket GID of the static-pod sample config.
const UID: u32 = 65532;
const SOCKET_GID: u32 = 1234;
const IMAGE_BIN: &str = "/usr/bin/bao-kms-provider";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// One run of `scripts/build-image.sh` into its own directory.
struct Build {
    out: PathBuf,
    /// The last line the script printed.
    printed: String,
}

impl Build {
    fn run(name: &str) -> Build {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = fs::remove_dir_all(&out);
        let started = Instant::now();
        let built = run(Command::new(repo("scripts/build-image.sh"))
            .arg("--out")
            .arg(&out)
            .stderr(Stdio::inherit()));
        eprintln!("build-image.sh into {name} took {:?}", started.elapsed());
        let printed = stdout(&built).lines().last().unwrap().to_owned();
        Build { out, printed }
    }

    fn layout(&self) -> PathBuf {
        self.out.join("oci")
    }

    fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.layout().join("blobs/sha256").join(hex)
    }

    fn json_blob(&self, digest: &str) -> Json {
        serde_json::from_slice(&fs::read(self.blob(digest)).unwrap()).unwrap()
    }

    /// The manifest digest index.json names (its only manifest).
    fn digest(&self) -> String {
        let index: Json =
            serde_json::from_slice(&fs::read(self.layout().join("index.json")).unwrap()).unwrap();
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 1, "{index}");
        assert_eq!(
            manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
            env!("CARGO_PKG_VERSION"),
            "tagged with the package version"
        );
        manifests[0]["digest"].as_str().unwrap().to_owned()
    }

    /// Every file below the output directory with its sha256.
    fn tree(&self) -> Vec<String> {
        let out = run(Command::new("sh")
            .arg("-c")
            .arg("find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum")
            .current_dir(&self.out));
        stdout(&out).lines().map(str::to_owned).collect()
    }
}

/// The two builds, made once for all tests of this binary.
fn builds() -> &'static [Build; 2] {
    static BUILDS: OnceLock<[Build; 2]> = OnceLock::new();
    BUILDS.get_or_init(|| [Build::run("image-a"), Build::run("image-b")])
}

/// The time every timestamp in the image must carry: `SOURCE_DATE_EPOCH`
/// if the caller set one (the script honours it), else the commit time.
fn source_date_epoch() -> i64 {
    if let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .filter(|v| !v.is_empty())
    {
        return epoch.parse().unwrap();
    }
    let out = run(Command::new("git")
        .args(["log", "-1", "--format=%ct", "HEAD"])
        .current_dir(repo("")));
    stdout(&out).trim().parse().unwrap()
}

fn rfc3339(epoch: i64) -> String {
    let out =
        run(Command::new("date").args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%dT%H:%M:%SZ"]));
    stdout(&out).trim().to_owned()
}

#[test]
fn two_builds_of_one_commit_give_the_same_manifest_digest() {
    let [a, b] = builds();
    let digest = a.digest();
    assert_eq!(digest, b.digest(), "manifest digests differ");
    eprintln!("manifest digest {digest} in both builds");
    for build in [a, b] {
        assert_eq!(build.printed, digest, "the script prints the digest");
        assert_eq!(
            fs::read_to_string(build.out.join("digest")).unwrap(),
            format!("{digest}\n")
        );
        // The checksums next to the outputs hold.
        run(Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(&build.out));
        let sums = fs::read_to_string(build.out.join("SHA256SUMS")).unwrap();
        let named: BTreeSet<&str> = sums
            .lines()
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(
            named,
            BTreeSet::from(["bao-kms-provider", "bao-kms-provider-oci.tar"])
        );
    }
    // Not only the manifest: every blob, the tar and the binary are the same.
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn the_image_is_the_binary_its_libraries_and_two_account_files_at_the_commit_time() {
    let build = &builds()[0];
    let epoch = source_date_epoch();
    let manifest = build.json_blob(&build.digest());
    assert_eq!(manifest["schemaVersion"], 2);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer, no base image: {manifest}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let config = build.json_blob(manifest["config"]["digest"].as_str().unwrap());
    let c = &config["config"];
    assert_eq!(c["User"], format!("{UID}:{UID}"), "numeric non-root user");
    assert_eq!(c["Entrypoint"], serde_json::json!([IMAGE_BIN]));
    assert!(c.get("Cmd").is_none_or(Json::is_null), "the pod gives args");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    // No build-machine clock: created is the commit time, no history.
    assert_eq!(config["created"], rfc3339(epoch));
    assert!(
        config.get("history").is_none_or(|h| h
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.get("created").is_none())),
        "{config}"
    );
    let labels = &c["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    let head = run(Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo("")));
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        stdout(&head).trim()
    );

    // The layer, extracted by plain tar.
    let layer = build.blob(layers[0]["digest"].as_str().unwrap());
    let tree = TempDir::new("bkp-layer");
    run(Command::new("tar")
        .args(["--numeric-owner", "-xzf"])
        .arg(&layer)
        .arg("-C")
        .arg(tree.path()));
    let listed = stdout(&run(Command::new("tar").arg("-tzf").arg(&layer)));
    let entries: BTreeSet<String> = listed
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_owned())
        .filter(|l| !l.is_empty() && l != ".")
        .collect();

    // Exactly: the binary, the libraries ldd lists for it, two account files.
    let bin = tree.path().join(IMAGE_BIN.trim_start_matches('/'));
    assert_eq!(
        fs::read(&bin).unwrap(),
        fs::read(build.out.join("bao-kms-provider")).unwrap(),
        "the binary next to the image is the one inside it"
    );
    let ldd = stdout(&run(Command::new("ldd").arg(&bin)));
    let mut expected: BTreeSet<String> = ["etc/passwd", "etc/group", "usr/bin/bao-kms-provider"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for line in ldd.lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .unwrap_or_else(|| {
                assert!(line.contains("linux-vdso"), "unresolved library: {line}");
                ""
            });
        if !path.is_empty() {
            expected.insert(path.trim_start_matches('/').to_owned());
        }
    }
    for file in expected.clone() {
        let mut dir = Path::new(&file).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            expected.insert(d.to_str().unwrap().to_owned());
            dir = d.parent();
        }
    }
    assert_eq!(entries, expected, "layer contents (ldd said:\n{ldd})");

    let mut unpacked_bytes = 0;
    for entry in &entries {
        let path = tree.path().join(entry);
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(
            meta.is_file() || meta.is_dir(),
            "{entry}: only files and dirs"
        );
        assert_eq!(meta.mtime(), epoch, "{entry}: mtime is not the commit time");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{entry}");
        assert_eq!(meta.mode() & 0o7022, 0, "{entry}: setuid or writable");
        unpacked_bytes += meta.len();
    }
    let passwd = fs::read_to_string(tree.path().join("etc/passwd")).unwrap();
    let group = fs::read_to_string(tree.path().join("etc/group")).unwrap();
    assert!(
        passwd.contains(&format!(
            "nonroot:x:{UID}:{UID}:nonroot:/nonexistent:/sbin/nologin\n"
        )),
        "{passwd}"
    );
    assert!(group.contains(&format!("nonroot:x:{UID}:\n")), "{group}");
    for line in passwd.lines() {
        assert!(line.ends_with(":/sbin/nologin"), "a login shell: {line}");
    }

    let compressed = fs::metadata(&layer).unwrap().len();
    let tar = fs::metadata(build.out.join("bao-kms-provider-oci.tar"))
        .unwrap()
        .len();
    eprintln!(
        "image: layer {compressed} bytes gzip, {unpacked_bytes} bytes unpacked, oci tar {tar} bytes"
    );
}

// ------------------------------------------------------------ running it

/// A static-pod volume: what the kubelet would bind where.
struct Mount {
    source: PathBuf,
    target: String,
    read_only: bool,
}

/// The unpacked image and the host directories its mounts come from.
struct Node {
    rootfs: PathBuf,
    _bundle: TempDir,
    host: TempDir,
    socket_dir: TempDir,
    mounts: Vec<Mount>,
    jwt: String,
}

impl Node {
    /// `umoci unpack`s the image and lays out the host as
    /// docs/deploy-static-pod.md prescribes, with the static pod's volumes
    /// and mounts read from the shipped manifest, and the shipped static-pod
    /// config pointed at `lab` (its paths unchanged).
    fn prepare(build: &Build, lab: &Lab, health: &str) -> Node {
        let bundle = TempDir::new("bkp-bundle");
        let unpacked = bundle.path().join("b");
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!(
                "{}:{}",
                build.layout().display(),
                env!("CARGO_PKG_VERSION")
            ))
            .arg(&unpacked));
        let host = TempDir::new("bkp-node");
        let socket_dir = TempDir::new_in(Path::new("/run/openbao-kms"), "bkp-image");
        let p = |abs: &str| host.path().join(abs.trim_start_matches('/'));
        let dir = |abs: &str, mode: u32, uid: u32, gid: u32| {
            fs::create_dir_all(p(abs)).unwrap();
            chown(p(abs), Some(uid), Some(gid)).unwrap();
            chmod(&p(abs), mode);
        };
        dir("/etc/openbao-kms", 0o750, 0, UID);
        dir("/etc/openbao-kms/tls", 0o755, 0, 0);
        dir("/var/lib/openbao-kms", 0o755, 0, 0);
        dir("/var/lib/openbao-kms/credentials", 0o750, 0, UID);
        dir("/var/lib/openbao-kms/state", 0o750, UID, UID);
        chown(socket_dir.path(), Some(UID), Some(SOCKET_GID)).unwrap();
        chmod(socket_dir.path(), 0o2750);

        let ca = p("/etc/openbao-kms/tls/ca.crt");
        fs::copy(lab.ca_file(), &ca).unwrap();
        chmod(&ca, 0o644);
        let jwt_path = p("/var/lib/openbao-kms/credentials/identity.jwt");
        lab.write_jwt(
            &jwt_path,
            &support::jwt::Claims::valid_for(Duration::from_secs(3600)),
        );
        chown(&jwt_path, Some(0), Some(UID)).unwrap();
        chmod(&jwt_path, 0o640);

        let mut doc: Value = serde_norway::from_str(
            &fs::read_to_string(repo("deploy/config/provider-static-pod.yaml")).unwrap(),
        )
        .unwrap();
        let set = |doc: &mut Value, path: &[&str], value: &str| {
            let mut at = doc;
            for key in path {
                at = at.get_mut(*key).unwrap_or_else(|| panic!("no {path:?}"));
            }
            *at = match value {
                "[audience]" => Value::Sequence(vec![Value::from(AUDIENCE)]),
                v => Value::from(v),
            };
        };
        set(&mut doc, &["server", "metricsAddress"], "");
        set(&mut doc, &["server", "healthAddress"], health);
        set(&mut doc, &["openbao", "address"], &lab.addr());
        set(&mut doc, &["openbao", "tlsServerName"], "localhost");
        set(&mut doc, &["auth", "jwt", "mountPath"], JWT_MOUNT);
        set(&mut doc, &["auth", "jwt", "role"], ROLE);
        set(&mut doc, &["auth", "jwt", "expectedIssuer"], ISSUER);
        set(&mut doc, &["auth", "jwt", "expectedAudience"], "[audience]");
        set(&mut doc, &["auth", "jwt", "expectedSubject"], SUBJECT);
        set(&mut doc, &["transit", "mountPath"], TRANSIT_MOUNT);
        set(&mut doc, &["transit", "keyName"], KEY_NAME);
        set(&mut doc, &["bootstrap", "graceTimeout"], "10s");
        set(&mut doc, &["bootstrap", "retryInterval"], "500ms");
        let config = p("/etc/openbao-kms/config.yaml");
        fs::write(&config, serde_norway::to_string(&doc).unwrap()).unwrap();
        chown(&config, Some(0), Some(UID)).unwrap();
        chmod(&config, 0o640);

        // The manifest's volumes, each bound at its mountPath.
        let pod: Value = serde_norway::from_str(
            &fs::read_to_string(repo("deploy/static-pod/bao-kms-provider.yaml")).unwrap(),
        )
        .unwrap();
        let volumes = pod["spec"]["volumes"].as_sequence().unwrap();
        let mut mounts = Vec::new();
        for m in pod["spec"]["containers"][0]["volumeMounts"]
            .as_sequence()
            .unwrap()
        {
            let volume = volumes
                .iter()
                .find(|v| v["name"] == m["name"])
                .expect("volume for mount");
            let host_path = volume["hostPath"]["path"].as_str().unwrap();
            let source = if host_path == "/run/openbao-kms" {
                socket_dir.path().to_owned()
            } else {
                p(host_path)
            };
            mounts.push(Mount {
                source,
                target: m["mountPath"].as_str().unwrap().to_owned(),
                read_only: m["readOnly"] == true,
            });
        }
        // Mount points, as a container runtime creates them in the rootfs.
        let rootfs = unpacked.join("rootfs");
        for m in &mounts {
            let at = rootfs.join(m.target.trim_start_matches('/'));
            if m.source.is_dir() {
                fs::create_dir_all(&at).unwrap();
            } else {
                fs::create_dir_all(at.parent().unwrap()).unwrap();
                fs::write(&at, "").unwrap();
            }
        }
        Node {
            rootfs,
            _bundle: bundle,
            host,
            socket_dir,
            mounts,
            jwt: fs::read_to_string(&jwt_path).unwrap(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.socket_dir.path().join("kms.sock")
    }

    /// The image's binary with `args`, as the static pod runs it: in a
    /// private mount namespace (so every mount goes away with the process,
    /// even when a test fails), the rootfs bound read-only with `mounts` on
    /// top, then `chroot` as 65532:65532 with the socket GID as a
    /// supplementary group, no new privileges, no capabilities.
    fn jail(&self, mounts: &[&Mount], args: &[&str]) -> Command {
        let quote = |p: &Path| {
            let s = p.to_str().unwrap();
            assert!(!s.contains('\''), "{s}");
            format!("'{s}'")
        };
        let root = quote(&self.rootfs);
        let mut script =
            format!("set -eu\nmount --bind {root} {root}\nmount -o remount,bind,ro {root}\n");
        for m in mounts {
            let target = quote(&self.rootfs.join(m.target.trim_start_matches('/')));
            script += &format!("mount --bind {} {target}\n", quote(&m.source));
            if m.read_only {
                script += &format!("mount -o remount,bind,ro {target}\n");
            }
        }
        // The root must really be read-only, or the test proves nothing.
        script += &format!(
            "if touch {root}/.writable 2>/dev/null; then echo 'image root is writable' >&2; exit 97; fi\n"
        );
        // The bounding set keeps only what chroot itself needs; switching
        // to 65532 clears those too before the provider starts.
        script += &format!(
            "exec setpriv --no-new-privs --bounding-set=-all,+sys_chroot,+setuid,+setgid \
             chroot --userspec={UID}:{UID} --groups={SOCKET_GID} {root} {IMAGE_BIN} \"$@\"\n"
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(script)
            .arg("sh")
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null());
        cmd
    }

    fn all_mounts(&self) -> Vec<&Mount> {
        self.mounts.iter().collect()
    }

    /// Only the socket directory: what a client of the socket gets.
    fn socket_mount(&self) -> Vec<&Mount> {
        self.mounts
            .iter()
            .filter(|m| m.target == "/run/openbao-kms")
            .collect()
    }
}

/// A running `serve` in the jail; killed (with its namespace) on drop.
struct Served {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Served {
    fn start(node: &Node, logs: &Path) -> Served {
        let out = logs.join("serve.stdout");
        let err = logs.join("serve.stderr");
        let child = node
            .jail(
                &node.all_mounts(),
                &["serve", "--config=/etc/openbao-kms/config.yaml"],
            )
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn unshare (util-linux)");
        Served { child, out, err }
    }

    fn logs(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            fs::read_to_string(&self.out).unwrap_or_default(),
            fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// Polls `ready` until it holds; fails early if the provider exited.
    fn wait_for(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ready() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "provider exited with {status} before {what}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {what} after 30 s:\n{}", self.logs());
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_unpacked_image_serves_and_answers_a_probe_as_65532_on_a_read_only_root() {
    let build = &builds()[0];
    let lab = Lab::start();
    let health = format!("127.0.0.1:{}", support::provider::free_port());
    let node = Node::prepare(build, &lab, &health);

    let version = stdout(&run(&mut node.jail(&[], &["version"])));
    let head = run(Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo("")));
    assert!(
        version.starts_with(&format!(
            "version: v{}\ncommit: {}\n",
            env!("CARGO_PKG_VERSION"),
            stdout(&head).trim()
        )),
        "{version}"
    );

    let logs = TempDir::new("bkp-image-logs");
    let mut served = Served::start(&node, logs.path());
    let socket = node.socket();
    served.wait_for("the socket", || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    let meta = fs::symlink_metadata(&socket).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (UID, SOCKET_GID, 0o660),
        "socket owner, group, mode"
    );
    // The static pod's probes, on the health listener.
    served.wait_for("/ready", || {
        support::http::http("GET", &health, "/ready").0 == 200
    });
    assert_eq!(support::http::http("GET", &health, "/live").0, 200);

    // probe, from the image too, through the socket only.
    let out = node
        .jail(
            &node.socket_mount(),
            &[
                "probe",
                "--socket",
                "/run/openbao-kms/kms.sock",
                "--output",
                "json",
            ],
        )
        .output()
        .unwrap();
    let report: Json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("probe output is not JSON ({e}): {out:?}"));
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", served.logs());
    for id in ["socket.connect", "kms.status", "kms.encrypt", "kms.decrypt"] {
        let check = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no check {id} in {report}"));
        assert_eq!(check["status"], "pass", "{id}: {report:#}");
    }
    // The registry went to the writable state mount, as 65532.
    let state = node
        .host
        .path()
        .join("var/lib/openbao-kms/state/key-registry.json");
    assert_eq!(fs::metadata(&state).unwrap().uid(), UID);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(served.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = served.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", served.logs());
    assert!(!socket.exists(), "the provider removes its socket");
    let text = served.logs();
    assert!(text.contains("serve.ready"), "{text}");
    assert!(
        support::secrets_in(&text, &[&node.jwt]).is_empty(),
        "provider output leaked a secret"
    );
}
