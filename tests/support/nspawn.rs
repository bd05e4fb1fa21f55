//! A real systemd, booted with `systemd-nspawn` from the cached Debian root
//! that `scripts/build-nspawn-root.sh` builds under `.tools/nspawn-root`.
//!
//! The flags are the ones measured to work on hosts whose PID 1 is not
//! systemd (docs/testing.md, "systemd under nspawn"): `--register=no
//! --keep-unit` (no host D-Bus or machined), the unified cgroup hierarchy,
//! `CAP_BPF` and the `bpf` syscall so the container's PID 1 can enforce
//! `DevicePolicy=` (implied by `PrivateDevices=`/`ProtectClock=`), and
//! `--volatile=overlay` so a run never changes the cached root. There is no
//! `--private-network`: the container shares the host's loopback and reaches
//! a test OpenBao there. Commands run inside with `nsenter --all` on the
//! container's PID 1 (`machinectl` needs machined).
//!
//! Each container lives in a private cgroup subtree named
//! `bkp-nspawn-<test pid>-<n>`; [`Container`]'s `Drop` halts it and removes
//! that subtree, and [`Container::boot`] first removes subtrees whose test
//! process is gone (a run killed before its `Drop`).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The cgroup hierarchies a container's subtree is made in (hybrid hosts:
/// cgroup v2 for the container's systemd, the named v1 one for nspawn).
const CGROUP_BASES: [&str; 2] = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"];
const PREFIX: &str = "bkp-nspawn-";
/// Measured: boot to `running` takes ~0.3 s; generous for loaded CI hosts.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// A clean halt takes ~1 s.
const HALT_TIMEOUT: Duration = Duration::from_secs(20);
/// PATH inside the container; everything else of the test's environment
/// stays outside (`env -i`).
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The cached root, or a panic saying how to build it.
pub fn root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/nspawn-root");
    assert!(
        root.join(".bkp-recipe").is_file() && root.join("lib/systemd/systemd").exists(),
        "no Debian root for systemd-nspawn at {}: run scripts/install-test-deps.sh \
         (or scripts/build-nspawn-root.sh)",
        root.display()
    );
    root
}

/// A booted container; halted and cleaned up on drop.
pub struct Container {
    machine: String,
    nspawn: Child,
    /// Host PID of the container's PID 1 (systemd).
    leader: i32,
    log: PathBuf,
    /// How long from spawning nspawn until `systemctl is-system-running`
    /// said `running`.
    pub boot_time: Duration,
}

impl Container {
    /// Boots `root` with `payload` bind-mounted read-only at `/payload`;
    /// returns once the container's systemd reports `running`.
    pub fn boot(root: &Path, payload: &Path, log_dir: &Path) -> Container {
        remove_dead_leftovers();
        let machine = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        for base in CGROUP_BASES {
            fs::create_dir_all(Path::new(base).join(&machine))
                .unwrap_or_else(|e| panic!("create cgroup {base}/{machine}: {e}"));
        }
        let log = log_dir.join(format!("{machine}.console"));
        let started = Instant::now();
        // The shell moves itself into the private subtree, then becomes
        // nspawn: --keep-unit makes nspawn use the cgroup it runs in.
        let nspawn = Command::new("sh")
            .args([
                "-c",
                "echo $$ > \"$1/cgroup.procs\" && echo $$ > \"$2/cgroup.procs\" && shift 2 && exec \"$@\"",
                "sh",
            ])
            .args(CGROUP_BASES.map(|b| format!("{b}/{machine}")))
            .args([
                "systemd-nspawn",
                "--quiet",
                &format!("--machine={machine}"),
                &format!("--directory={}", root.display()),
                "--volatile=overlay",
                "--register=no",
                "--keep-unit",
                "--capability=CAP_BPF",
                "--system-call-filter=bpf",
                &format!("--bind-ro={}:/payload", payload.display()),
                "--boot",
                "systemd.firstboot=off",
            ])
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(File::create(&log).unwrap())
            .stderr(File::create(log.with_extension("stderr")).unwrap())
            .spawn()
            .expect("spawn systemd-nspawn (install systemd-container)");
        let mut container = Container {
            machine,
            nspawn,
            leader: 0,
            log,
            boot_time: Duration::ZERO,
        };
        container.leader = container.wait_for_leader(started);
        container.wait_running(started);
        container.boot_time = started.elapsed();
        container
    }

    /// The child of nspawn that is the container's systemd.
    fn wait_for_leader(&mut self, started: Instant) -> i32 {
        let nspawn = self.nspawn.id();
        let children = format!("/proc/{nspawn}/task/{nspawn}/children");
        while started.elapsed() < BOOT_TIMEOUT {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!("systemd-nspawn exited with {status}:\n{}", self.console());
            }
            let pids = fs::read_to_string(&children).unwrap_or_default();
            for pid in pids.split_whitespace() {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    return pid.parse().unwrap();
                }
            }
            sleep(Duration::from_millis(20));
        }
        panic!("no systemd inside the container:\n{}", self.console());
    }

    fn wait_running(&mut self, started: Instant) {
        let mut state = String::new();
        while started.elapsed() < BOOT_TIMEOUT {
            state = self.stdout(&["systemctl", "is-system-running"]);
            match state.trim() {
                "running" => return,
                // A failed unit: name it, a degraded boot is a broken root.
                "degraded" => panic!(
                    "container booted degraded:\n{}",
                    self.stdout(&["systemctl", "--failed", "--no-legend"])
                ),
                _ => sleep(Duration::from_millis(50)),
            }
        }
        panic!(
            "container not running after {BOOT_TIMEOUT:?} (state {state:?}):\n{}",
            self.console()
        );
    }

    /// A command inside the container, as its root, with a clean
    /// environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.leader))
            .args(["--all", "--", "env", "-i", PATH, "LANG=C.UTF-8"])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run nsenter")
    }

    /// stdout of a command, whatever its exit status.
    pub fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.output(args).stdout).into_owned()
    }

    /// stdout of a command that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "in the container: {args:?} failed with {}:\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A `sh -c` script inside the container that must succeed; `args` are
    /// its `$1`, `$2`, ...
    pub fn sh(&self, script: &str, args: &[&str]) -> String {
        let mut all = vec!["sh", "-c", script, "sh"];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    /// What the container printed on its console so far.
    pub fn console(&self) -> String {
        let tail = |p: &Path| {
            let text = fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- console ---\n{}\n--- nspawn stderr ---\n{}",
            tail(&self.log),
            tail(&self.log.with_extension("stderr"))
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM to nspawn halts the container cleanly (~1 s).
        let pid = Pid::from_raw(self.nspawn.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + HALT_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                break;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        remove_subtree(&self.machine);
    }
}

/// Removes the cgroup subtrees (and nspawn's per-machine directory) of
/// containers whose test process no longer exists. Their processes belong
/// to a run that was killed before it could clean up: killed here by PID,
/// read from those subtrees only.
fn remove_dead_leftovers() {
    for base in CGROUP_BASES {
        let Ok(entries) = fs::read_dir(base) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(owner) = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{owner}")).exists() {
                remove_subtree(&name);
            }
        }
    }
}

/// Kills what is left in `<base>/<machine>` (by PID), then removes the
/// directories depth-first; also nspawn's empty per-machine directory.
fn remove_subtree(machine: &str) {
    for base in CGROUP_BASES {
        let top = Path::new(base).join(machine);
        for _ in 0..50 {
            if !top.exists() {
                break;
            }
            let mut dirs = Vec::new();
            collect_dirs(&top, &mut dirs);
            let mut busy = false;
            for dir in dirs.iter().rev() {
                let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
                    busy = true;
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = fs::remove_dir(dir);
            }
            if busy {
                sleep(Duration::from_millis(100));
            }
        }
    }
    let _ = fs::remove_dir(Path::new("/run/systemd/nspawn/propagate").join(machine));
}

/// `dir` and every directory below it, parents before children.
fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_owned());
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}
