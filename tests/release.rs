//! `scripts/release.sh`, checked the way an operator checks a release:
//! built twice from this commit, in two directories with two `CARGO_HOME`s
//! and two target directories, it gives byte-identical artifacts;
//! `SHA256SUMS` and its minisign signature verify, and refuse a changed byte
//! or another key; the binary carries the dependency list cargo-auditable
//! embeds, the same crates the SBOM lists, with Cargo.lock's checksums;
//! `version --output json` names the commit, its date, rustc and a clean
//! tree. And the dependency policy (`deny.toml`) passes, and fails when one
//! of its rules is broken.
//!
//! The second build is a cold release build (minutes): both happen once per
//! test binary ([`releases`]). The first reuses `scripts/test.sh`'s release
//! build when this checkout is clean (as in CI); a checkout with edits is
//! not a release, so then both builds are fresh clones of HEAD.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;
use support::cmd::{run, stdout};

const NAME: &str = "bao-kms-provider";
/// The package version, which every artifact name carries.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// This test binary's scratch space (removed and made anew once per run).
fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("release");
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        base
    })
}

fn git(dir: &Path, args: &[&str]) -> String {
    stdout(&run(Command::new("git").arg("-C").arg(dir).args(args)))
        .trim()
        .to_owned()
}

fn head() -> String {
    git(&repo(""), &["rev-parse", "HEAD"])
}

fn checkout_is_clean() -> bool {
    git(
        &repo(""),
        &["status", "--porcelain", "--untracked-files=normal"],
    )
    .is_empty()
}

/// A fresh clone of this checkout's HEAD at `dir`, sharing its `.tools/`
/// (ignored by git, so the clone stays clean) for the pinned cargo tools.
fn clone_head(dir: &Path) -> PathBuf {
    run(Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(repo(""))
        .arg(dir));
    git(dir, &["checkout", "--quiet", "--detach", &head()]);
    std::os::unix::fs::symlink(repo(".tools"), dir.join(".tools")).unwrap();
    dir.to_owned()
}

/// A minisign key pair without a password.
struct KeyPair {
    public: PathBuf,
    secret: PathBuf,
}

impl KeyPair {
    fn new(name: &str) -> KeyPair {
        let dir = base().join(name);
        fs::create_dir_all(&dir).unwrap();
        let pair = KeyPair {
            public: dir.join("minisign.pub"),
            secret: dir.join("minisign.key"),
        };
        run(Command::new("minisign")
            .args(["-G", "-W", "-p"])
            .arg(&pair.public)
            .arg("-s")
            .arg(&pair.secret)
            .stdin(Stdio::null()));
        pair
    }
}

/// One run of `scripts/release.sh`: its output directory and what it wrote.
struct Release {
    out: PathBuf,
    /// File name to SHA-256, from our own hashing (not the script's).
    files: BTreeMap<String, String>,
}

impl Release {
    /// Runs the checkout's script with `env` on top of the test's own.
    fn build(checkout: &Path, out: &Path, key: &KeyPair, env: &[(&str, &Path)]) -> Release {
        let started = Instant::now();
        let mut cmd = Command::new(checkout.join("scripts/release.sh"));
        cmd.current_dir(checkout)
            .arg("--out")
            .arg(out)
            .arg("--sign-key")
            .arg(&key.secret)
            .stderr(Stdio::inherit());
        for (var, value) in env {
            cmd.env(var, value);
        }
        let printed = stdout(&run(&mut cmd));
        assert_eq!(printed.lines().last(), Some(out.to_str().unwrap()));
        eprintln!(
            "release.sh in {} took {:?}",
            checkout.display(),
            started.elapsed()
        );
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(out).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            files.insert(name, sha256(&path));
        }
        Release {
            out: out.to_owned(),
            files,
        }
    }

    fn file(&self, suffix: &str) -> PathBuf {
        let name = self
            .files
            .keys()
            .find(|n| n.ends_with(suffix))
            .unwrap_or_else(|| panic!("no *{suffix} in {:?}", self.files.keys()));
        self.out.join(name)
    }

    fn binary(&self) -> PathBuf {
        self.file(&format!("{NAME}-{VERSION}-linux-amd64"))
    }
}

fn sha256(path: &Path) -> String {
    let out = stdout(&run(Command::new("sha256sum").arg(path)));
    out.split_whitespace().next().unwrap().to_owned()
}

struct Releases {
    a: Release,
    b: Release,
    key: KeyPair,
}

/// Both builds, once per test binary.
fn releases() -> &'static Releases {
    static RELEASES: OnceLock<Releases> = OnceLock::new();
    RELEASES.get_or_init(|| {
        let key = KeyPair::new("key");
        // A: this checkout with its own target/ and CARGO_HOME, when clean.
        let a = if checkout_is_clean() {
            Release::build(&repo(""), &base().join("a-out"), &key, &[])
        } else {
            eprintln!("the checkout has edits: build A is a clone of HEAD too");
            let src = clone_head(&base().join("a-src"));
            let target = base().join("a-target");
            Release::build(
                &src,
                &base().join("a-out"),
                &key,
                &[("CARGO_TARGET_DIR", &target)],
            )
        };
        // B: another directory, another CARGO_HOME (seeded with the crates
        // already downloaded, and offline), another target directory.
        let b_dir = base().join("b").join("second-build");
        fs::create_dir_all(&b_dir).unwrap();
        let src = clone_head(&b_dir.join("source"));
        let cargo_home = b_dir.join("cargo-home");
        let registry = cargo_home.join("registry");
        fs::create_dir_all(&registry).unwrap();
        let home_cargo = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
        for part in ["index", "cache"] {
            run(Command::new("cp")
                .arg("-a")
                .arg(home_cargo.join("registry").join(part))
                .arg(&registry));
        }
        let target = b_dir.join("target");
        let b = Release::build(
            &src,
            &b_dir.join("out"),
            &key,
            &[
                ("CARGO_HOME", &cargo_home),
                ("CARGO_TARGET_DIR", &target),
                ("CARGO_NET_OFFLINE", Path::new("true")),
            ],
        );
        // Gigabytes of build output nobody reads again.
        let _ = fs::remove_dir_all(&target);
        let _ = fs::remove_dir_all(&cargo_home);
        Releases { a, b, key }
    })
}

#[test]
fn two_builds_in_two_directories_give_the_same_bytes() {
    let r = releases();
    let names: BTreeSet<_> = r.a.files.keys().collect();
    let expected: BTreeSet<String> = [
        format!("{NAME}-{VERSION}-linux-amd64"),
        format!("{NAME}_{VERSION}_amd64.deb"),
        format!("{NAME}-{VERSION}-oci.tar"),
        format!("{NAME}-{VERSION}-oci.digest"),
        format!("{NAME}-{VERSION}.cdx.json"),
        "SHA256SUMS".to_owned(),
        "SHA256SUMS.minisig".to_owned(),
    ]
    .into();
    assert_eq!(names, expected.iter().collect(), "release files");
    let mut differ = Vec::new();
    for (name, hash) in &r.a.files {
        eprintln!("{hash}  {name}");
        if r.b.files.get(name) != Some(hash) {
            differ.push(name.as_str());
        }
    }
    assert!(
        differ.is_empty(),
        "these differ between the two builds: {differ:?}"
    );
}

fn verify_sums(dir: &Path) -> Output {
    Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .unwrap()
}

fn verify_signature(dir: &Path, public: &Path) -> Output {
    Command::new("minisign")
        .args(["-V", "-m", "SHA256SUMS", "-x", "SHA256SUMS.minisig", "-p"])
        .arg(public)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn the_signed_checksums_verify_and_refuse_a_changed_byte_or_another_key() {
    let r = releases();
    let copy = base().join("verify");
    let _ = fs::remove_dir_all(&copy);
    run(Command::new("cp").arg("-a").arg(&r.a.out).arg(&copy));

    // Every artifact is listed, and each checks out.
    let sums = fs::read_to_string(copy.join("SHA256SUMS")).unwrap();
    let listed: BTreeSet<&str> = sums
        .lines()
        .map(|l| l.split("  ").nth(1).unwrap())
        .collect();
    let artifacts: BTreeSet<&str> =
        r.a.files
            .keys()
            .map(String::as_str)
            .filter(|n| !n.starts_with("SHA256SUMS"))
            .collect();
    assert_eq!(listed, artifacts);
    assert!(verify_sums(&copy).status.success());
    let good = verify_signature(&copy, &r.key.public);
    assert!(good.status.success(), "{good:?}");
    let trusted = stdout(&good);
    assert!(
        trusted.contains(&format!("{NAME} {VERSION} commit {}", head())),
        "trusted comment: {trusted}"
    );

    // Another key's signature check fails.
    let other = KeyPair::new("other-key");
    assert!(!verify_signature(&copy, &other.public).status.success());

    // One changed byte in the .deb: sha256sum names it.
    let deb = copy.join(r.a.file(".deb").file_name().unwrap());
    let mut bytes = fs::read(&deb).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&deb, &bytes).unwrap();
    let tampered = verify_sums(&copy);
    assert!(!tampered.status.success());
    let deb_name = deb.file_name().unwrap().to_str().unwrap();
    assert!(stdout(&tampered).contains(&format!("{deb_name}: FAILED")));

    // ...and a SHA256SUMS rewritten to match it no longer carries the signature.
    let forged = sums.replace(&r.a.files[deb_name], &sha256(&deb));
    assert_ne!(forged, sums);
    fs::write(copy.join("SHA256SUMS"), forged).unwrap();
    assert!(verify_sums(&copy).status.success(), "the forged sums match");
    assert!(!verify_signature(&copy, &r.key.public).status.success());
}

/// The `.dep-v0` section cargo-auditable writes: zlib-compressed JSON.
fn embedded_packages(binary: &Path) -> Vec<Value> {
    let section = base().join(format!("dep-v0-{}", std::process::id()));
    run(Command::new("objcopy")
        .arg(format!("--dump-section=.dep-v0={}", section.display()))
        .arg(binary)
        .arg(base().join("objcopy-scratch")));
    let json = stdout(&run(Command::new("python3")
        .args([
            "-c",
            "import sys, zlib; sys.stdout.write(zlib.decompress(open(sys.argv[1], 'rb').read()).decode())",
        ])
        .arg(&section)));
    let audit: Value = serde_json::from_str(&json).unwrap();
    audit["packages"].as_array().unwrap().clone()
}

/// `name@version` of every `[[package]]` in Cargo.lock, to its checksum
/// (none for this crate itself).
fn lock_checksums() -> BTreeMap<String, Option<String>> {
    let lock = fs::read_to_string(repo("Cargo.lock")).unwrap();
    let mut packages = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
                .map(|v| v.trim_end_matches('"').to_owned())
        };
        packages.insert(
            format!("{}@{}", field("name").unwrap(), field("version").unwrap()),
            field("checksum"),
        );
    }
    packages
}

#[test]
fn the_binary_carries_its_dependency_list_and_the_sbom_names_the_same_crates() {
    let r = releases();
    let embedded = embedded_packages(&r.a.binary());
    let id = |p: &Value| {
        format!(
            "{}@{}",
            p["name"].as_str().unwrap(),
            p["version"].as_str().unwrap()
        )
    };
    let from_binary: BTreeSet<String> = embedded.iter().map(id).collect();
    // cargo-auditable's `build`: only run while compiling (build scripts
    // and their dependencies, proc macros), never linked in.
    let compile_time: BTreeSet<String> = embedded
        .iter()
        .filter(|p| p["kind"] == "build")
        .map(id)
        .collect();
    let root = embedded.iter().find(|p| p["root"] == true).unwrap();
    assert_eq!(root["name"], NAME);

    // The SBOM: its components plus the package it describes.
    let sbom_text = fs::read_to_string(r.a.file(".cdx.json")).unwrap();
    let sbom: Value = serde_json::from_str(&sbom_text).unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["specVersion"], "1.5");
    let components = sbom["components"].as_array().unwrap();
    let mut from_sbom: BTreeSet<String> = components.iter().map(id).collect();
    from_sbom.insert(id(&sbom["metadata"]["component"]));
    assert_eq!(
        from_binary, from_sbom,
        "the binary and the SBOM list other crates"
    );
    // The SBOM's build-dependency scope ("excluded") is a subset: it counts
    // proc macros with the crates that use them.
    let excluded: BTreeSet<String> = components
        .iter()
        .filter(|c| c["scope"] == "excluded")
        .map(id)
        .collect();
    assert!(
        excluded.is_subset(&compile_time),
        "build-time in the SBOM, linked per the binary: {:?}",
        excluded.difference(&compile_time).collect::<Vec<_>>()
    );
    eprintln!(
        "{} crates in the binary's dependency list and in the SBOM ({} components); {} compile-time only, {} of them with SBOM scope excluded",
        from_binary.len(),
        components.len(),
        compile_time.len(),
        excluded.len()
    );

    // Every registry crate the SBOM names is Cargo.lock's, by checksum, and
    // no test-only crate or build path slipped in.
    let lock = lock_checksums();
    for c in components {
        let hash = c["hashes"][0]["content"].as_str();
        assert_eq!(
            lock.get(&id(c)),
            Some(&hash.map(str::to_owned)),
            "{}: the SBOM's hash is not Cargo.lock's checksum",
            id(c)
        );
    }
    assert!(!from_sbom.iter().any(|id| id.starts_with("rcgen@")));
    assert!(!sbom_text.contains(repo("").to_str().unwrap()));

    // The .deb installs exactly the binary shipped beside it.
    let unpacked = base().join("deb-contents");
    let _ = fs::remove_dir_all(&unpacked);
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(r.a.file(".deb"))
        .arg(&unpacked));
    assert_eq!(
        sha256(&unpacked.join("usr/bin").join(NAME)),
        sha256(&r.a.binary())
    );
}

#[test]
fn version_json_names_the_commit_its_date_rustc_and_a_clean_tree() {
    let r = releases();
    let out = run(Command::new(r.a.binary()).args(["version", "--output", "json"]));
    let version: Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = repo("");
    let epoch = git(&root, &["log", "-1", "--format=%ct", "HEAD"]);
    let date = stdout(&run(Command::new("date")
        .args(["-u", "-d"])
        .arg(format!("@{epoch}"))
        .arg("+%Y-%m-%dT%H:%M:%SZ")));
    let rustc = stdout(&run(Command::new("rustc").arg("-V")));
    assert_eq!(version["commit"], head().as_str(), "{version}");
    assert_eq!(version["dirty"], false, "{version}");
    assert_eq!(version["buildDate"], date.trim(), "{version}");
    assert_eq!(version["rustc"], rustc.trim(), "{version}");
    assert_eq!(version["version"], format!("v{VERSION}"));
}

#[test]
fn release_refuses_a_checkout_with_edits_and_a_used_output_directory() {
    let src = clone_head(&base().join("refusals"));
    let release = |args: &[&str]| {
        Command::new(src.join("scripts/release.sh"))
            .args(args)
            .current_dir(&src)
            .output()
            .unwrap()
    };
    let refused = |out: &Output, says: &str| {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
    };

    fs::write(src.join("stray.txt"), "not committed").unwrap();
    refused(&release(&[]), "the checkout is not clean");
    fs::remove_file(src.join("stray.txt")).unwrap();
    let readme = src.join("README.md");
    fs::write(
        &readme,
        fs::read_to_string(&readme).unwrap() + "\nan edit\n",
    )
    .unwrap();
    refused(&release(&[]), "the checkout is not clean");
    git(&src, &["checkout", "--quiet", "README.md"]);

    let used = base().join("used-out");
    fs::create_dir_all(&used).unwrap();
    fs::write(used.join("SHA256SUMS"), "an older release").unwrap();
    refused(
        &release(&["--out", used.to_str().unwrap()]),
        "is not empty; refusing to mix releases",
    );
    assert_eq!(
        fs::read_to_string(used.join("SHA256SUMS")).unwrap(),
        "an older release"
    );
    refused(
        &release(&["--sign-key", "/nonexistent/key"]),
        "not a readable file",
    );
}

/// `cargo deny check licenses bans sources` with `config`, offline and
/// `--locked`, as scripts/test.sh runs it.
fn cargo_deny(config: &Path) -> Output {
    let bin = stdout(&run(
        Command::new(repo("scripts/install-cargo-tool.sh")).arg("cargo-deny")
    ));
    let path = format!(
        "{}:{}",
        bin.lines().last().unwrap(),
        std::env::var("PATH").unwrap()
    );
    Command::new("cargo")
        .args(["deny", "--frozen", "--config"])
        .arg(config)
        .args([
            "check",
            "--hide-inclusion-graph",
            "licenses",
            "bans",
            "sources",
        ])
        .current_dir(repo(""))
        .env("PATH", path)
        .output()
        .unwrap()
}

#[test]
fn the_dependency_policy_passes_and_each_planted_violation_fails_it() {
    let policy = fs::read_to_string(repo("deny.toml")).unwrap();
    let passed = cargo_deny(&repo("deny.toml"));
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );

    let planted = |name: &str, from: &str, to: &str| {
        assert!(policy.contains(from), "deny.toml no longer has {from:?}");
        let path = base().join(format!("deny-{name}.toml"));
        fs::write(&path, policy.replace(from, to)).unwrap();
        let out = cargo_deny(&path);
        assert!(!out.status.success(), "{name}: cargo deny passed");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // ring and untrusted are ISC: without it, the license check fails on them.
    let isc = planted("no-isc", "    \"ISC\",\n", "");
    assert!(isc.contains("untrusted"), "{isc}");
    // A second getrandom (build-time, skipped on purpose) breaks the
    // one-version rule for crypto crates once the skip is gone.
    let duplicate = planted(
        "no-skip",
        "{ crate = \"getrandom@0.4.3\"",
        "# { crate = \"getrandom@0.4.3\"",
    );
    assert!(duplicate.contains("getrandom"), "{duplicate}");
    // A git or foreign-registry source is refused: crates.io only.
    let sources = planted(
        "no-registry",
        "allow-registry = [\"https://github.com/rust-lang/crates.io-index\"]",
        "allow-registry = [\"https://example.invalid/index\"]",
    );
    assert!(sources.contains("source-not-allowed"), "{sources}");
}
