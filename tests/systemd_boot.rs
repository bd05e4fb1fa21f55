//! The shipped unit `deploy/systemd/bao-kms-provider.service`, from the
//! project's real `.deb`, under a real systemd: a Debian bookworm root booted
//! with `systemd-nspawn` (tests/support/nspawn.rs), the package installed
//! with `dpkg -i`, the provider started with `systemctl` against a real
//! OpenBao on the host's loopback, and the package's whole life: first
//! start, every sandboxing directive in force, the socket's owner and mode,
//! a crash and `Restart=always`, an upgrade in place, a clean stop, the
//! journal, and a purge.
//!
//! "In force" is shown from the kernel's side: for the service's main
//! process, its credentials, capabilities, seccomp filters, mount table and
//! namespaces ([`Fingerprint`]) must equal those of a reference process that
//! systemd started with exactly the unit's sandboxing lines, and dropping any
//! one of those lines must change the reference's fingerprint. The few
//! directives no fingerprint can show are listed in [`NOT_IN_FINGERPRINT`]
//! with why, and checked another way.
//!
//! Needs root, the Debian packages `systemd-container` and `debootstrap`,
//! and the cached root; `scripts/install-test-deps.sh` provides all three.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use rcgen::KeyPair;
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};
use support::leaks::{self, Known};
use support::nspawn::{self, Container};
use support::openbao::{AUDIENCE, ISSUER, JWT_MOUNT, KEY_NAME, Lab, ROLE, SUBJECT, TRANSIT_MOUNT};
use support::pkcs11::{CERT_MOUNT, CERT_ROLE, CLIENT_CN, Ca};
use support::provider::BIN;
use support::report::{assert_checks_pass, assert_refused_at_the_socket_directory, check};
use support::tmp::TempDir;

const UNIT: &str = "bao-kms-provider.service";
const PKCS11_UNIT: &str = "bao-kms-provider-pkcs11.service";
const SOCKET: &str = "/run/openbao-kms/kms.sock";
const STATE: &str = "/var/lib/openbao-kms/state/key-registry.json";
/// A package version above Cargo.toml's, for the upgrade.
const UPGRADE_SUFFIX: &str = "+upgrade1";

/// `[Service]` settings that are the service's life cycle, not its sandbox:
/// the test checks them by behaviour (start, `kill -9`, stop).
const LIFECYCLE: [&str; 5] = [
    "Type",
    "ExecStart",
    "Restart",
    "RestartSec",
    "TimeoutStopSec",
];

/// Sandboxing directives whose effect a running process's [`Fingerprint`]
/// cannot show, why, and what the test checks instead. Every other line of
/// the unit's `[Service]` section must change the fingerprint when dropped.
const NOT_IN_FINGERPRINT: [(&str, &str); 8] = [
    (
        "SupplementaryGroups",
        "bao-kms-provider.service: openbao-kms is already a member by sysusers.d's `m` line and systemd sets the user's groups from /etc/group; the line keeps the socket group if that membership is lost; checked: the process's groups include openbao-kms-socket",
    ),
    (
        "Group",
        "names the user's primary group, which systemd uses anyway; checked: the process's GIDs are openbao-kms",
    ),
    (
        "NoNewPrivileges",
        "implied for a non-root service by SystemCallFilter= and the other seccomp directives (systemd.exec(5)); checked: NoNewPrivs is 1",
    ),
    (
        "AmbientCapabilities",
        "empty is the default; checked: CapAmb is 0",
    ),
    (
        "PrivateMounts",
        "implied by ProtectSystem= and every other mount directive, which all need a private mount namespace; checked: the process has its own",
    ),
    (
        "ReadOnlyPaths",
        "ProtectSystem=strict already makes /etc read-only, so it adds no mount; checked: writing in /etc/openbao-kms fails in the service's view and works in the container's",
    ),
    (
        "SystemCallErrorNumber",
        "changes what a filtered syscall returns, not which filters exist; checked: a syscall outside @system-service fails with EPERM under the unit's lines and kills the process without this one",
    ),
    (
        "RemoveIPC",
        "acts when the service stops; checked: a message queue of openbao-kms disappears on `systemctl stop`",
    ),
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The `[Service]` lines of a shipped unit, in order, as (key, value).
fn service_lines(unit: &str) -> Vec<(String, String)> {
    let text = fs::read_to_string(repo("deploy/systemd").join(unit)).unwrap();
    let mut section = String::new();
    let mut lines = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
        } else if section == "[Service]" && !line.is_empty() && !line.starts_with('#') {
            let (key, value) = line.split_once('=').unwrap();
            lines.push((key.to_owned(), value.to_owned()));
        }
    }
    lines
}

/// The unit's sandboxing lines (everything but [`LIFECYCLE`]), as
/// `systemd-run --property=` arguments.
fn sandbox_lines(unit: &str) -> Vec<(String, String)> {
    service_lines(unit)
        .into_iter()
        .filter(|(k, _)| !LIFECYCLE.contains(&k.as_str()))
        .collect()
}

// ------------------------------------------------------------- staging

/// Builds the package with `scripts/build-deb.sh` from the binary under
/// test; returns its file name (it lands in `out`).
fn build_deb(out: &Path, version: &str) -> String {
    let started = Instant::now();
    let built = Command::new(repo("scripts/build-deb.sh"))
        .args([
            "--binary",
            BIN,
            "--compression",
            "gzip",
            "--version",
            version,
        ])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(built.status.success(), "build-deb.sh: {built:?}");
    eprintln!("build-deb.sh {version} took {:?}", started.elapsed());
    let path = PathBuf::from(
        String::from_utf8(built.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    );
    path.file_name().unwrap().to_str().unwrap().to_owned()
}

/// A shipped sample config (`deploy/config/<sample>`), pointed at `lab`,
/// with the sample's own paths (the package's layout). Its TCP listeners
/// are off: the container shares the host's loopback with parallel tests.
fn config_for(lab: &Lab, sample: &str) -> String {
    let mut doc: Value =
        serde_norway::from_str(&fs::read_to_string(repo("deploy/config").join(sample)).unwrap())
            .unwrap();
    let method = doc["auth"]["method"].as_str().unwrap().to_owned();
    let mut set = |path: &[&str], value: Value| {
        let mut at = &mut doc;
        for key in path {
            at = at.get_mut(*key).unwrap_or_else(|| panic!("no {path:?}"));
        }
        *at = value;
    };
    let s = |v: &str| Value::from(v.to_owned());
    set(&["server", "metricsAddress"], s(""));
    set(&["server", "healthAddress"], s(""));
    set(&["openbao", "address"], s(&lab.addr()));
    set(&["openbao", "tlsServerName"], s("localhost"));
    match method.as_str() {
        "jwt" => {
            set(&["auth", "jwt", "mountPath"], s(JWT_MOUNT));
            set(&["auth", "jwt", "role"], s(ROLE));
            set(&["auth", "jwt", "expectedIssuer"], s(ISSUER));
            set(
                &["auth", "jwt", "expectedAudience"],
                Value::Sequence(vec![s(AUDIENCE)]),
            );
            set(&["auth", "jwt", "expectedSubject"], s(SUBJECT));
        }
        "cert" => {
            set(&["auth", "cert", "mountPath"], s(CERT_MOUNT));
            set(&["auth", "cert", "name"], s(CERT_ROLE));
        }
        other => panic!("{sample}: auth.method {other}"),
    }
    set(&["transit", "mountPath"], s(TRANSIT_MOUNT));
    set(&["transit", "keyName"], s(KEY_NAME));
    // A wrong setting should fail the test in seconds, not after 60 s.
    set(&["bootstrap", "graceTimeout"], s("20s"));
    set(&["bootstrap", "retryInterval"], s("500ms"));
    serde_norway::to_string(&doc).unwrap()
}

/// Installs `from` (under /payload) at `to` in the container with `mode`
/// and `owner` (`user:group`).
fn install(c: &Container, mode: &str, owner: &str, from: &str, to: &str) {
    let (user, group) = owner.split_once(':').unwrap();
    c.ok(&["install", "-m", mode, "-o", user, "-g", group, from, to]);
}

// ---------------------------------------------------- container helpers

/// `systemctl show` properties of a unit.
fn props(c: &Container, unit: &str, names: &[&str]) -> BTreeMap<String, String> {
    let mut args = vec!["systemctl", "show", unit];
    for name in names {
        args.extend(["--property", name]);
    }
    c.ok(&args)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn prop(c: &Container, unit: &str, name: &str) -> String {
    props(c, unit, &[name]).remove(name).unwrap_or_default()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return started.elapsed();
        }
        sleep(Duration::from_millis(25));
    }
    panic!("{what}: not within {limit:?}");
}

/// The provider's own journal lines (its stdout and stderr) under `unit`.
fn own_lines(c: &Container, unit: &str) -> String {
    let _ = c.output(&["journalctl", "--sync"]);
    let matcher = format!("_SYSTEMD_UNIT={unit}");
    c.ok(&["journalctl", "--no-pager", "-o", "cat", &matcher])
}

/// How many times the provider has logged `serve.ready` (its socket is up
/// and serving); a socket file alone may be a dead process's.
fn readies(c: &Container, unit: &str) -> usize {
    own_lines(c, unit)
        .lines()
        .filter(|l| l.contains(r#""message":"serve.ready""#))
        .count()
}

/// Waits for a `serve.ready` beyond the `before`th.
fn wait_ready(c: &Container, unit: &str, before: usize) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if readies(c, unit) > before {
            return started.elapsed();
        }
        sleep(Duration::from_millis(25));
    }
    panic!(
        "{unit}: no serve.ready within 30 s ({}):\n{}",
        prop(c, unit, "ActiveState"),
        journal(c, unit)
    );
}

/// Everything the journal has for `unit`: systemd's lines and the
/// provider's output.
fn journal(c: &Container, unit: &str) -> String {
    let _ = c.output(&["journalctl", "--sync"]);
    c.stdout(&["journalctl", "--no-pager", "-o", "cat", "-u", unit])
}

/// `probe --output json` through the socket as `user` (with its groups
/// from the container's /etc/group): exit code and report.
fn probe_as(c: &Container, user: &str) -> (Option<i32>, serde_json::Value) {
    let out = c.output(&[
        "setpriv",
        &format!("--reuid={user}"),
        &format!("--regid={user}"),
        "--init-groups",
        "bao-kms-provider",
        "probe",
        "--socket",
        SOCKET,
        "--output",
        "json",
    ]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("probe output is not JSON ({e}): {out:?}"));
    (out.status.code(), report)
}

/// A member of the socket group passes every check; returns the key_id.
fn probe_passes(c: &Container, unit: &str) -> String {
    let (code, report) = probe_as(c, "apiserver");
    assert_eq!(code, Some(0), "{report:#}\n{}", journal(c, unit));
    assert_checks_pass(
        &report,
        &[
            "socket.path",
            "socket.access_scope",
            "socket.connect",
            "kms.status",
            "kms.encrypt",
            "kms.decrypt",
            "kms.key_id",
        ],
    );
    let key_id = check(&report, "kms.key_id")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        key_id.starts_with("obk2.") && key_id.len() == 48,
        "{key_id}"
    );
    key_id
}

/// The ids of the System V message queues in the container (`ipcs -i`
/// exits 0 even for an id that does not exist, so the list is read).
fn queues(c: &Container) -> Vec<String> {
    c.ok(&["ipcs", "--queue"])
        .lines()
        .filter(|l| l.starts_with("0x"))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

fn main_pid(c: &Container, unit: &str) -> String {
    let pid = prop(c, unit, "MainPID");
    assert_ne!(
        pid,
        "0",
        "{unit} has no main process:\n{}",
        journal(c, unit)
    );
    pid
}

// ---------------------------------------------------------- fingerprint

/// What the kernel shows of a process's sandbox.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    /// Credentials, umask, no_new_privs, seccomp and capability fields of
    /// /proc/PID/status.
    status: BTreeMap<String, String>,
    /// The namespaces it does not share with the container's PID 1.
    own_namespaces: BTreeSet<String>,
    /// Mount point → "ro|rw fstype source" of the mount visible there
    /// (the last one mounted on it), from /proc/PID/mountinfo.
    mounts: BTreeMap<String, String>,
}

const STATUS_FIELDS: [&str; 12] = [
    "Uid",
    "Gid",
    "Groups",
    "Umask",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
];
const NAMESPACES: [&str; 7] = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"];

/// Reads the fingerprint of container PID `pid`, which runs as `unit`
/// (its name appears in one mount source and is normalised away).
fn fingerprint(c: &Container, pid: &str, unit: &str) -> Fingerprint {
    let mut args = vec![pid];
    args.extend(NAMESPACES);
    let text = c.sh(
        r#"pid=$1; shift
cat /proc/$pid/status; echo @@; cat /proc/$pid/mountinfo; echo @@
for n in "$@"; do
  echo "$n $(readlink /proc/$pid/ns/$n) $(readlink /proc/1/ns/$n)"
done"#,
        &args,
    );
    let parts: Vec<&str> = text.split("@@\n").collect();
    let status = parts[0]
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| STATUS_FIELDS.contains(k))
        .map(|(k, v)| {
            (
                k.to_owned(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    let mut mounts = BTreeMap::new();
    for line in parts[1].lines() {
        // id parent dev root mountpoint options [optional...] - fstype source superoptions
        let (left, right) = line.split_once(" - ").unwrap();
        let f: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        let root = f[3].replace(unit, "<unit>");
        let source = if root.contains("/inaccessible/") {
            "inaccessible".to_owned()
        } else if root.contains("systemd-private-") {
            "private".to_owned()
        } else {
            root
        };
        let access = if f[5].split(',').any(|o| o == "ro") {
            "ro"
        } else {
            "rw"
        };
        let hidepid = r[2]
            .split(',')
            .find(|o| o.starts_with("hidepid="))
            .unwrap_or("");
        mounts.insert(
            f[4].to_owned(),
            format!("{access} {} {source} {hidepid}", r[0])
                .trim()
                .to_owned(),
        );
    }
    let own_namespaces = parts[2]
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            (w[1] != w[2]).then(|| w[0].to_owned())
        })
        .collect();
    Fingerprint {
        status,
        own_namespaces,
        mounts,
    }
}

/// What the differences between two fingerprints are, for messages.
fn diff(a: &Fingerprint, b: &Fingerprint) -> Vec<String> {
    let mut out = Vec::new();
    for field in STATUS_FIELDS {
        if a.status.get(field) != b.status.get(field) {
            out.push(format!(
                "{field}: {:?} vs {:?}",
                a.status.get(field),
                b.status.get(field)
            ));
        }
    }
    if a.own_namespaces != b.own_namespaces {
        out.push(format!(
            "own namespaces: {:?} vs {:?}",
            a.own_namespaces, b.own_namespaces
        ));
    }
    let points: BTreeSet<&String> = a.mounts.keys().chain(b.mounts.keys()).collect();
    for point in points {
        if a.mounts.get(point) != b.mounts.get(point) {
            out.push(format!(
                "mount {point}: {:?} vs {:?}",
                a.mounts.get(point),
                b.mounts.get(point)
            ));
        }
    }
    out
}

/// Reference processes: transient services that systemd starts with the
/// unit's sandboxing lines (or some of them) as their properties.
struct Reference<'a> {
    c: &'a Container,
    n: usize,
}

impl Reference<'_> {
    /// Starts `cmd` as a transient unit with `lines`. `wait`: systemd-run
    /// waits for the start job; a command expected to die at once is started
    /// without waiting, because a job that sees the death first reports a
    /// failed start (seen on a loaded machine), which is what is measured.
    fn start(&mut self, lines: &[(String, String)], cmd: &[&str], wait: bool) -> String {
        self.n += 1;
        let unit = format!("bkp-reference-{}.service", self.n);
        let mut args = vec![
            "systemd-run".to_owned(),
            "--quiet".to_owned(),
            format!("--unit={unit}"),
            "--property=Type=exec".to_owned(),
            // Keep a unit that exited, so its result can be read.
            "--remain-after-exit".to_owned(),
        ];
        if !wait {
            args.push("--no-block".to_owned());
        }
        args.extend(lines.iter().map(|(k, v)| format!("--property={k}={v}")));
        args.push("--".to_owned());
        args.extend(cmd.iter().map(|s| (*s).to_owned()));
        self.c
            .ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        unit
    }

    fn fingerprint(&mut self, lines: &[(String, String)]) -> Fingerprint {
        let unit = self.start(lines, &["/bin/sleep", "600"], true);
        let pid = prop(self.c, &unit, "MainPID");
        let print = fingerprint(self.c, &pid, &unit);
        self.c.ok(&["systemctl", "stop", &unit]);
        print
    }

    /// `Result` and `ExecMainStatus` of a command run to its end.
    fn exit(&mut self, lines: &[(String, String)], cmd: &[&str]) -> (String, String) {
        let unit = self.start(lines, cmd, false);
        wait_until(&format!("{unit} exits"), Duration::from_secs(10), || {
            prop(self.c, &unit, "ExecMainExitTimestampMonotonic") != "0"
        });
        let p = props(self.c, &unit, &["Result", "ExecMainCode", "ExecMainStatus"]);
        self.c.ok(&["systemctl", "stop", &unit]);
        let _ = self.c.output(&["systemctl", "reset-failed", &unit]);
        (
            p["Result"].clone(),
            format!("{}/{}", p["ExecMainCode"], p["ExecMainStatus"]),
        )
    }
}

/// `lines` without the `skip`th.
fn without(lines: &[(String, String)], skip: usize) -> Vec<(String, String)> {
    lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != skip)
        .map(|(_, line)| line.clone())
        .collect()
}

/// The numeric id of a group in the container.
fn gid_of(c: &Container, group: &str) -> String {
    let entry = c.ok(&["getent", "group", group]);
    entry.split(':').nth(2).unwrap().to_owned()
}

/// Every sandboxing directive of the shipped `unit` is in force on the
/// running service (see the module comment).
fn assert_sandbox_in_force(c: &Container, unit: &str) {
    let lines = sandbox_lines(unit);
    let exempt: BTreeMap<&str, &str> = NOT_IN_FINGERPRINT.into_iter().collect();
    for key in exempt.keys() {
        assert!(
            lines.iter().any(|(k, _)| k == key),
            "NOT_IN_FINGERPRINT names {key}, which {unit} does not have"
        );
    }
    let pid = main_pid(c, unit);
    let service = fingerprint(c, &pid, unit);
    let mut reference = Reference { c, n: 0 };
    let all = reference.fingerprint(&lines);
    assert!(
        service == all,
        "{unit}: the service's sandbox is not the unit's: {:#?}",
        diff(&service, &all)
    );
    for (i, (key, value)) in lines.iter().enumerate() {
        let dropped = reference.fingerprint(&without(&lines, i));
        let changes = diff(&all, &dropped);
        match exempt.get(key.as_str()) {
            _ if !changes.is_empty() => {
                eprintln!("{key}={value}: in force ({})", changes.join("; "));
            }
            Some(why) => eprintln!("{key}={value}: not visible in a process ({why})"),
            None => panic!(
                "{unit}: {key}={value}: dropping it changes nothing the kernel shows; \
                 add it to NOT_IN_FINGERPRINT, with why and another check"
            ),
        }
    }

    // The directives no fingerprint shows, each its own way.
    let s = &service.status;
    let uid = c.ok(&["id", "-u", "openbao-kms"]).trim().to_owned();
    let gid = gid_of(c, "openbao-kms");
    let mut groups = vec![gid.clone()];
    for (key, value) in &lines {
        if key == "SupplementaryGroups" {
            groups.extend(value.split_whitespace().map(|g| gid_of(c, g)));
        }
    }
    groups.sort();
    assert_eq!(s["Uid"], [uid.as_str(); 4].join(" "));
    assert_eq!(s["Gid"], [gid.as_str(); 4].join(" "), "Group=openbao-kms");
    let mut seen: Vec<String> = s["Groups"].split(' ').map(str::to_owned).collect();
    seen.sort();
    assert_eq!(seen, groups, "SupplementaryGroups=");
    assert_eq!(s["NoNewPrivs"], "1", "NoNewPrivileges=yes");
    assert_eq!(s["CapAmb"], "0000000000000000", "AmbientCapabilities=");
    assert!(
        service.own_namespaces.contains("mnt"),
        "PrivateMounts=yes: {service:?}"
    );
    // ReadOnlyPaths=/etc/openbao-kms: read-only for the service (seen
    // through its own root), writable for root in the container.
    let probe_file = format!("/proc/{pid}/root/etc/openbao-kms/.bkp-write-test");
    let refused = c.output(&["touch", &probe_file]);
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("Read-only file system"),
        "ReadOnlyPaths=/etc/openbao-kms: {refused:?}"
    );
    c.ok(&["touch", "/etc/openbao-kms/.bkp-write-test"]);
    c.ok(&["rm", "/etc/openbao-kms/.bkp-write-test"]);
    // SystemCallErrorNumber=EPERM: chroot(2) is outside @system-service.
    // Under the unit's lines it fails with EPERM and chroot(8) exits 125;
    // without this line the filter kills the process with SIGSYS.
    assert_eq!(prop(c, unit, "SystemCallErrorNumber"), "1", "EPERM is 1");
    let chroot = ["/usr/sbin/chroot", "/", "/bin/true"];
    assert_eq!(
        reference.exit(&lines, &chroot),
        ("exit-code".to_owned(), "1/125".to_owned())
    );
    let errno = lines
        .iter()
        .position(|(k, _)| k == "SystemCallErrorNumber")
        .unwrap();
    assert_eq!(
        reference.exit(&without(&lines, errno), &chroot),
        ("signal".to_owned(), "2/31".to_owned()),
        "without SystemCallErrorNumber= the filter kills (SIGSYS)"
    );
    // RemoveIPC=yes is checked when the service stops.

    // systemd applied the unit as written: no line ignored or refused.
    let pid1_log = c.stdout(&["journalctl", "--no-pager", "-b", "-o", "cat", "_PID=1"]);
    let complaints: Vec<&str> = pid1_log
        .lines()
        .filter(|l| l.contains(unit) && (l.contains("ignoring") || l.contains("Unknown")))
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
}

/// `systemctl stop`: drains, removes its socket, exits 0; `RemoveIPC=yes`
/// takes the service user's IPC objects with it.
fn stop_cleanly(c: &Container, unit: &str) {
    let queue = c.ok(&[
        "setpriv",
        "--reuid=openbao-kms",
        "--regid=openbao-kms",
        "--clear-groups",
        "ipcmk",
        "--queue",
    ]);
    let queue = queue.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(queues(c).contains(&queue), "ipcmk made no queue {queue}");
    let stop = Instant::now();
    c.ok(&["systemctl", "stop", unit]);
    eprintln!("{unit}: systemctl stop took {:?}", stop.elapsed());
    let p = props(c, unit, &["ActiveState", "Result", "ExecMainStatus"]);
    assert_eq!(
        (
            p["ActiveState"].as_str(),
            p["Result"].as_str(),
            p["ExecMainStatus"].as_str()
        ),
        ("inactive", "success", "0")
    );
    assert!(!c.output(&["test", "-e", SOCKET]).status.success());
    assert!(
        !queues(c).contains(&queue),
        "RemoveIPC=yes: queue {queue} of openbao-kms survived the stop"
    );
}

/// Every line the provider wrote to the journal is a JSON log record, and
/// its life cycle (start, ready, drain, done) is there.
fn assert_json_lines(c: &Container, unit: &str) {
    let mut messages = Vec::new();
    for line in own_lines(c, unit).lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("journal line is not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["ts"].is_string(), "{line}");
        messages.push(format!("{} {}", v["message"], v["phase"]));
    }
    for expected in [
        "\"serve.start\" null",
        "\"serve.ready\" null",
        "\"serve.shutdown\" \"drain\"",
        "\"serve.shutdown\" \"done\"",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "{unit}: {expected}: {messages:#?}"
        );
    }
}

// ------------------------------------------------------------------ test

#[test]
fn the_shipped_unit_runs_the_deb_under_a_real_systemd() {
    let started = Instant::now();
    let root = nspawn::root();
    let lab = Lab::start();
    let work = TempDir::new("bkp-systemd-boot");
    let payload = work.path().join("payload");
    fs::create_dir(&payload).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let newer = format!("{version}{UPGRADE_SUFFIX}");
    let deb = build_deb(&payload, version);
    let deb_newer = build_deb(&payload, &newer);
    let config = config_for(&lab, "provider-systemd.yaml");
    fs::write(payload.join("config.yaml"), &config).unwrap();
    fs::copy(lab.ca_file(), payload.join("ca.crt")).unwrap();
    lab.write_jwt(
        &payload.join("identity.jwt"),
        &support::jwt::Claims::valid_for(Duration::from_secs(3600)),
    );
    let jwt = fs::read_to_string(payload.join("identity.jwt")).unwrap();

    let c = Container::boot(&root, &payload, work.path());
    eprintln!("container boot to `running`: {:?}", c.boot_time);

    // The package: its sysusers.d and tmpfiles.d create the users, groups
    // and directories; it neither enables nor starts the service.
    c.ok(&["dpkg", "-i", &format!("/payload/{deb}")]);
    for group in ["openbao-kms", "openbao-kms-socket"] {
        c.ok(&["getent", "group", group]);
    }
    let user = c.ok(&["getent", "passwd", "openbao-kms"]);
    assert!(
        user.trim_end()
            .ends_with(":/var/lib/openbao-kms:/usr/sbin/nologin"),
        "{user}"
    );
    assert_eq!(
        c.ok(&["id", "-nG", "openbao-kms"]).trim(),
        "openbao-kms openbao-kms-socket"
    );
    let layout = c.ok(&[
        "stat",
        "-c",
        "%n %U:%G %a",
        "/run/openbao-kms",
        "/etc/openbao-kms",
        "/etc/openbao-kms/tls",
        "/var/lib/openbao-kms",
        "/var/lib/openbao-kms/state",
        "/etc/openbao-kms/config.yaml",
    ]);
    assert_eq!(
        layout,
        "/run/openbao-kms openbao-kms:openbao-kms-socket 2750\n\
         /etc/openbao-kms root:openbao-kms 750\n\
         /etc/openbao-kms/tls root:root 755\n\
         /var/lib/openbao-kms openbao-kms:openbao-kms 750\n\
         /var/lib/openbao-kms/state openbao-kms:openbao-kms 750\n\
         /etc/openbao-kms/config.yaml root:openbao-kms 640\n"
    );
    assert_eq!(
        c.stdout(&["systemctl", "is-enabled", UNIT]).trim(),
        "disabled"
    );
    assert_eq!(
        c.stdout(&["systemctl", "is-active", UNIT]).trim(),
        "inactive"
    );

    // Configure as docs/deploy-systemd.md says, with its modes.
    install(
        &c,
        "0640",
        "root:openbao-kms",
        "/payload/config.yaml",
        "/etc/openbao-kms/config.yaml",
    );
    install(
        &c,
        "0644",
        "root:root",
        "/payload/ca.crt",
        "/etc/openbao-kms/tls/ca.crt",
    );
    install(
        &c,
        "0640",
        "root:openbao-kms",
        "/payload/identity.jwt",
        "/var/lib/openbao-kms/identity.jwt",
    );
    // The apiserver's stand-in, a member of the socket group, and anyone else.
    c.ok(&[
        "useradd",
        "--system",
        "--groups",
        "openbao-kms-socket",
        "apiserver",
    ]);
    c.ok(&["useradd", "--system", "outsider"]);

    // Start: active, and the socket once the bootstrap probes passed.
    let start = Instant::now();
    c.ok(&["systemctl", "start", UNIT]);
    let to_active = start.elapsed();
    assert_eq!(prop(&c, UNIT, "ActiveState"), "active");
    let to_ready = to_active + wait_ready(&c, UNIT, 0);
    eprintln!("systemctl start → active: {to_active:?}; → serve.ready: {to_ready:?}");

    assert_sandbox_in_force(&c, UNIT);

    // The socket: openbao-kms:openbao-kms-socket 0660; the group passes,
    // anyone else is refused by the kernel at the directory (exit 4).
    assert_eq!(
        c.ok(&["stat", "-c", "%U:%G %a %F", SOCKET]).trim(),
        "openbao-kms:openbao-kms-socket 660 socket"
    );
    let key_id = probe_passes(&c, UNIT);
    let (code, report) = probe_as(&c, "outsider");
    assert_refused_at_the_socket_directory(code, &report);

    // kill -9 of the main process: Restart=always brings it back after
    // RestartSec=5s, with the same key.
    let crashed = main_pid(&c, UNIT);
    let before = readies(&c, UNIT);
    c.ok(&["sh", "-c", &format!("kill -9 {crashed}")]);
    let back = wait_until("restart after kill -9", Duration::from_secs(20), || {
        let p = props(&c, UNIT, &["NRestarts", "SubState", "MainPID"]);
        p["NRestarts"] == "1" && p["SubState"] == "running" && p["MainPID"] != crashed
    });
    assert!(
        back >= Duration::from_millis(4500),
        "restarted after {back:?}"
    );
    wait_ready(&c, UNIT, before);
    eprintln!("kill -9 → running again: {back:?}");
    assert_eq!(probe_passes(&c, UNIT), key_id);

    // Upgrade in place to a newer package: the operator's config stays (a
    // conffile), the running provider keeps the old binary until the
    // restart docs/deploy-systemd.md asks for; then the new binary serves
    // the same key from the same state.
    let state_before = c.ok(&["cat", STATE]);
    let running = main_pid(&c, UNIT);
    let upgraded = c.output(&["dpkg", "-i", &format!("/payload/{deb_newer}")]);
    assert!(upgraded.status.success(), "{upgraded:?}");
    assert!(
        String::from_utf8_lossy(&upgraded.stderr)
            .contains("upgraded; the running provider keeps the old binary"),
        "{upgraded:?}"
    );
    assert_eq!(
        c.ok(&["dpkg-query", "-W", "-f", "${Version}", "bao-kms-provider"]),
        newer
    );
    assert_eq!(
        main_pid(&c, UNIT),
        running,
        "the upgrade restarted the provider"
    );
    assert!(
        c.ok(&["readlink", &format!("/proc/{running}/exe")])
            .trim_end()
            .ends_with(" (deleted)")
    );
    assert_eq!(c.ok(&["cat", "/etc/openbao-kms/config.yaml"]), config);
    assert_eq!(
        c.ok(&["stat", "-c", "%U:%G %a", "/etc/openbao-kms/config.yaml"])
            .trim(),
        "root:openbao-kms 640"
    );
    let before = readies(&c, UNIT);
    c.ok(&["systemctl", "restart", UNIT]);
    wait_ready(&c, UNIT, before);
    let restarted = main_pid(&c, UNIT);
    assert_ne!(restarted, running);
    assert_eq!(
        c.ok(&["readlink", &format!("/proc/{restarted}/exe")])
            .trim(),
        "/usr/bin/bao-kms-provider"
    );
    assert_eq!(probe_passes(&c, UNIT), key_id);
    assert_eq!(c.ok(&["cat", STATE]), state_before, "state file changed");

    // systemd-analyze security, as recorded in docs/deploy-systemd.md.
    let security = c.stdout(&["systemd-analyze", "security", "--no-pager", UNIT]);
    let overall = security
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{security}"))
        .trim_start_matches('→')
        .trim()
        .to_owned();
    eprintln!("systemd-analyze security: {overall}");
    for line in security.lines().filter(|l| l.starts_with('✗')) {
        eprintln!(
            "  {}",
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    let score: f64 = overall
        .split(": ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(score <= 2.0, "{security}");
    let docs = fs::read_to_string(repo("docs/deploy-systemd.md")).unwrap();
    assert!(
        docs.contains(&overall),
        "docs/deploy-systemd.md must quote `{overall}` (systemd-analyze security in the test's container)"
    );

    // Stop: drains (serve.shutdown drain, then done), socket removed.
    stop_cleanly(&c, UNIT);

    // The journal: the provider's own lines are all JSON, the life cycle is
    // in them, and no secret is anywhere in the unit's journal.
    let all = journal(&c, UNIT);
    assert_json_lines(&c, UNIT);
    let known = leaks::audited(&lab.audit_log()).merge(Known {
        jwts: vec![jwt],
        ..Known::default()
    });
    assert!(!known.tokens.is_empty(), "the lab issued no token?");
    assert_eq!(
        leaks::scan(&all, &known),
        Vec::<&str>::new(),
        "secrets in the journal"
    );

    // Purge: no unit, binary or config behind; the state (the key registry
    // that guards against rollback) and the JWT stay, as documented.
    c.ok(&["dpkg", "--purge", "bao-kms-provider"]);
    assert!(!c.output(&["systemctl", "cat", UNIT]).status.success());
    assert_eq!(
        c.stdout(&[
            "systemctl",
            "list-unit-files",
            "--no-legend",
            "bao-kms-provider*"
        ])
        .trim(),
        ""
    );
    assert_eq!(
        c.stdout(&[
            "systemctl",
            "list-units",
            "--all",
            "--no-legend",
            "bao-kms-provider*"
        ])
        .trim(),
        ""
    );
    let left = c.ok(&["find", "/", "-xdev", "-name", "*bao-kms-provider*"]);
    assert_eq!(left, "", "left behind by the purge");
    assert!(
        !c.output(&["test", "-e", "/etc/openbao-kms/config.yaml"])
            .status
            .success()
    );
    c.ok(&["test", "-f", STATE]);
    c.ok(&["test", "-f", "/var/lib/openbao-kms/identity.jwt"]);

    drop(c);
    eprintln!("whole test: {:?}", started.elapsed());
}

/// The PKCS#11 unit, unmodified, with a SoftHSM2 token in the container:
/// cert auth through the token, every sandboxing directive in force (the
/// module is `dlopen`ed under `MemoryDenyWriteExecute=` and
/// `SystemCallFilter=`), the socket serving its group, a clean stop, and no
/// PIN or private key in the journal.
#[test]
fn the_pkcs11_unit_logs_in_with_a_softhsm_token_under_a_real_systemd() {
    let root = nspawn::root();
    let lab = Lab::start();
    let ca = Ca::new("bkp-nspawn-client-ca");
    lab.enable_cert_auth(CERT_MOUNT, CERT_ROLE, &ca.pem, CLIENT_CN, "10m");
    let work = TempDir::new("bkp-systemd-pkcs11");
    let payload = work.path().join("payload");
    fs::create_dir(&payload).unwrap();
    let deb = build_deb(&payload, env!("CARGO_PKG_VERSION"));
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    fs::write(payload.join("client-key.pem"), key.serialize_pem()).unwrap();
    fs::write(
        payload.join("client-chain.pem"),
        ca.leaf(&key, CLIENT_CN, 2090),
    )
    .unwrap();
    let pin = format!("pin-{}", std::process::id());
    fs::write(payload.join("pin"), format!("{pin}\n")).unwrap();
    fs::write(
        payload.join("config.yaml"),
        config_for(&lab, "provider-systemd-pkcs11.yaml"),
    )
    .unwrap();
    fs::copy(lab.ca_file(), payload.join("ca.crt")).unwrap();

    let c = Container::boot(&root, &payload, work.path());
    c.ok(&["dpkg", "-i", &format!("/payload/{deb}")]);

    // The token belongs to the service user (SoftHSM writes its files
    // 0600 for their creator); the unit's group softhsm opens its store.
    // The key is imported from a copy only the service user can read, then
    // that copy is deleted: only the token holds it.
    install(
        &c,
        "0600",
        "openbao-kms:openbao-kms",
        "/payload/client-key.pem",
        "/run/bkp-import.pem",
    );
    c.ok(&[
        "setpriv",
        "--reuid=openbao-kms",
        "--regid=openbao-kms",
        "--groups=softhsm",
        "sh",
        "-c",
        "umask 0077 && softhsm2-util --init-token --free --label openbao-kms --so-pin \"so-$1\" --pin \"$1\" \
         && softhsm2-util --import /run/bkp-import.pem --token openbao-kms --label openbao-kms-client --id 01 --pin \"$1\"",
        "sh",
        &pin,
    ]);
    c.ok(&["rm", "/run/bkp-import.pem"]);

    // The files of the hardening table for cert auth.
    for dir in ["/etc/openbao-kms/client", "/etc/openbao-kms/pkcs11"] {
        c.ok(&[
            "install",
            "-d",
            "-m",
            "0750",
            "-o",
            "root",
            "-g",
            "openbao-kms",
            dir,
        ]);
    }
    for (mode, owner, from, to) in [
        (
            "0640",
            "root:openbao-kms",
            "config.yaml",
            "/etc/openbao-kms/config.yaml",
        ),
        ("0644", "root:root", "ca.crt", "/etc/openbao-kms/tls/ca.crt"),
        (
            "0640",
            "root:openbao-kms",
            "client-chain.pem",
            "/etc/openbao-kms/client/client-chain.pem",
        ),
        (
            "0640",
            "root:openbao-kms",
            "pin",
            "/etc/openbao-kms/pkcs11/pin",
        ),
    ] {
        install(&c, mode, owner, &format!("/payload/{from}"), to);
    }
    c.ok(&[
        "useradd",
        "--system",
        "--groups",
        "openbao-kms-socket",
        "apiserver",
    ]);

    let start = Instant::now();
    c.ok(&["systemctl", "start", PKCS11_UNIT]);
    wait_ready(&c, PKCS11_UNIT, 0);
    eprintln!(
        "{PKCS11_UNIT}: systemctl start → serve.ready: {:?}",
        start.elapsed()
    );
    assert_sandbox_in_force(&c, PKCS11_UNIT);
    assert_eq!(
        c.ok(&["stat", "-c", "%U:%G %a %F", SOCKET]).trim(),
        "openbao-kms:openbao-kms-socket 660 socket"
    );
    probe_passes(&c, PKCS11_UNIT);
    let security = c.stdout(&["systemd-analyze", "security", "--no-pager", PKCS11_UNIT]);
    let overall = security
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{security}"));
    eprintln!("{}", overall.trim_start_matches('→').trim());

    stop_cleanly(&c, PKCS11_UNIT);
    assert_json_lines(&c, PKCS11_UNIT);
    // It logged in through the token: OpenBao saw cert logins, no JWT one.
    assert!(lab.audited_count(&format!("{CERT_MOUNT}/login")) >= 1);
    assert_eq!(lab.audited_count(&format!("{JWT_MOUNT}/login")), 0);
    let known = leaks::audited(&lab.audit_log()).merge(Known {
        pins: vec![pin],
        private_keys: vec![key.serialize_der()],
        ..Known::default()
    });
    assert_eq!(
        leaks::scan(&journal(&c, PKCS11_UNIT), &known),
        Vec::<&str>::new(),
        "secrets in the journal"
    );
}
