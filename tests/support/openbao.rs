//! A real OpenBao server per test, configured like production.
//!
//! [`Lab::start`] runs `bao server -dev -dev-tls` (in-memory, fast);
//! [`Lab::start_persistent`] runs a normal server with raft storage and our own
//! TLS certificates so a test can [`Lab::stop`] it and [`Lab::start_again`] with
//! its data intact. Both listen on a free loopback port and are configured with
//! the `bao` CLI the way an operator sets up production: a Transit mount with
//! `disable_upsert`, the `k8s-etcd` key profile (spec §5.2), JWT auth trusting
//! a local [`Issuer`], and the least-privilege `kms-transit` policy (§5.1).

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ring::rand::{SecureRandom as _, SystemRandom};
use serde_json::Value;

use super::bao_binary;
use super::jwt::{Claims, Issuer};
use super::tmp::TempDir;

pub const TRANSIT_MOUNT: &str = "transit";
pub const KEY_NAME: &str = "k8s-etcd";
pub const JWT_MOUNT: &str = "auth/k8s-jwt";
pub const ROLE: &str = "kms";
pub const ISSUER: &str = "https://issuer.test.local";
pub const AUDIENCE: &str = "bao-kms-provider";
pub const SUBJECT: &str = "system:openbao-kms:test";
pub const POLICY: &str = "kms-transit";

/// How long a server may take to answer (and, for raft, to elect itself).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at finding a port nobody grabs between our probe and bao's bind.
const PORT_ATTEMPTS: usize = 5;
/// Lines of server log quoted in panic messages.
const LOG_TAIL_LINES: usize = 40;

/// OpenBao 2.7 only accepts audit devices from server config. Every lab logs
/// to a file so tests can count the requests OpenBao really served, and
/// unhashed (`log_raw`) so the leak scan knows every real token it issued.
fn audit_hcl(dir: &Path) -> String {
    format!(
        "audit \"file\" \"lab\" {{\n  options {{\n    file_path = \"{}\"\n    log_raw = \"true\"\n  }}\n}}\n",
        dir.join(AUDIT_LOG).display()
    )
}

pub const AUDIT_LOG: &str = "audit.log";

/// Spec §5.1, exactly: six paths, nothing else (no `create`, no key config,
/// no export/backup), so tests catch any call the provider should not make.
fn policy_hcl() -> String {
    let m = TRANSIT_MOUNT;
    let k = KEY_NAME;
    format!(
        r#"path "{m}/keys/{k}" {{
  capabilities = ["read"]
}}
path "{m}/encrypt/{k}" {{
  capabilities = ["update"]
}}
path "{m}/decrypt/{k}" {{
  capabilities = ["update"]
}}
path "{m}/config/keys" {{
  capabilities = ["read"]
}}
path "sys/capabilities-self" {{
  capabilities = ["update"]
}}
path "auth/token/renew-self" {{
  capabilities = ["update"]
}}
"#
    )
}

enum Kind {
    /// In-memory dev server; its data dies with the process.
    Dev,
    /// Raft-backed server; `unseal_key` reopens the barrier after a restart.
    Persistent { unseal_key: String },
}

/// Why a server did not become ready.
enum NotReady {
    Exited(ExitStatus),
    TimedOut,
}

/// One OpenBao server, its TLS material, root token and trusted JWT issuer.
pub struct Lab {
    kind: Kind,
    child: Option<Child>,
    port: u16,
    root_token: String,
    ca_file: PathBuf,
    server_args: Vec<String>,
    issuer: Issuer,
    /// Every JWT [`Lab::write_jwt`] minted, shared with the providers that
    /// scan their output for them.
    minted: Arc<Mutex<Vec<String>>>,
    // Declared last so it is removed only after `Drop` has killed the server
    // that writes into it.
    dir: TempDir,
}

impl Lab {
    /// Starts a dev TLS server on a free loopback port and configures it.
    pub fn start() -> Lab {
        let dir = TempDir::new("bao-lab");
        let tls = dir.path().join("tls");
        let mut lab = Lab {
            kind: Kind::Dev,
            child: None,
            port: 0,
            root_token: random_token(),
            ca_file: tls.join("vault-ca.pem"),
            server_args: Vec::new(),
            issuer: Issuer::generate(),
            minted: Arc::default(),
            dir,
        };
        let audit_config = lab.dir.path().join("audit.hcl");
        fs::write(&audit_config, audit_hcl(lab.dir.path())).expect("write audit.hcl");
        for attempt in 1..=PORT_ATTEMPTS {
            // bao does not create the cert dir; an empty one per attempt
            // keeps no file of a failed attempt around.
            let _ = fs::remove_dir_all(&tls);
            fs::create_dir(&tls).expect("create tls dir");
            // Dev mode puts its cluster listener on port+1 with no flag to move
            // it, so reserve both.
            lab.port = free_port_pair();
            lab.server_args = vec![
                "server".into(),
                "-dev".into(),
                "-dev-tls".into(),
                format!("-dev-tls-cert-dir={}", tls.display()),
                format!("-dev-listen-address=127.0.0.1:{}", lab.port),
                format!("-dev-root-token-id={}", lab.root_token),
                // Otherwise every lab writes its root token to ~/.vault-token.
                "-dev-no-store-token".into(),
                format!("-config={}", audit_config.display()),
            ];
            lab.spawn();
            match lab.wait_for(is_active) {
                Ok(()) => {
                    lab.configure();
                    return lab;
                }
                Err(e) => lab.retry_or_fail(e, attempt),
            }
        }
        unreachable!("retry_or_fail panics on the last attempt")
    }

    /// Starts a non-dev server (raft storage, our own CA) that keeps its data
    /// across [`Lab::stop`] / [`Lab::start_again`]; initialised with one key
    /// share, unsealed and configured like [`Lab::start`].
    pub fn start_persistent() -> Lab {
        let dir = TempDir::new("bao-lab");
        let tls = dir.path().join("tls");
        fs::create_dir(&tls).expect("create tls dir");
        let (ca_file, cert_file, key_file) = write_tls_material(&tls);
        let data = dir.path().join("data");
        let config = dir.path().join("bao.hcl");
        let mut lab = Lab {
            kind: Kind::Persistent {
                unseal_key: String::new(),
            },
            child: None,
            port: 0,
            root_token: String::new(),
            ca_file,
            server_args: vec!["server".into(), format!("-config={}", config.display())],
            issuer: Issuer::generate(),
            minted: Arc::default(),
            dir,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            // A failed attempt may have created raft files for another address.
            let _ = fs::remove_dir_all(&data);
            fs::create_dir(&data).expect("create raft dir");
            fs::set_permissions(&data, Permissions::from_mode(0o700)).expect("chmod raft dir");
            lab.port = free_port_pair();
            let cluster_port = lab.port + 1;
            // performance_multiplier = 1 cuts raft's 5 s default election
            // timeout to 1 s; a single node must elect itself on every start.
            let hcl = format!(
                r#"storage "raft" {{
  path = "{data}"
  node_id = "lab"
  performance_multiplier = 1
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_cert_file = "{cert}"
  tls_key_file = "{key}"
}}
api_addr = "https://127.0.0.1:{port}"
cluster_addr = "https://127.0.0.1:{cluster_port}"
ui = false
{audit}"#,
                audit = audit_hcl(lab.dir.path()),
                data = data.display(),
                port = lab.port,
                cert = cert_file.display(),
                key = key_file.display(),
            );
            fs::write(&config, hcl).expect("write bao.hcl");
            lab.spawn();
            match lab.wait_for(|_| true) {
                Ok(()) => {
                    lab.initialise();
                    lab.unseal();
                    lab.configure();
                    return lab;
                }
                Err(e) => lab.retry_or_fail(e, attempt),
            }
        }
        unreachable!("retry_or_fail panics on the last attempt")
    }

    /// `https://127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// PEM CA bundle that verifies the server certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The lab's private (0700) directory, removed with the lab; a convenient
    /// home for a test's JWT files, configs and state.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The issuer whose key `auth/k8s-jwt` trusts.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// A `bao` CLI command aimed at this server, authenticated as `token`
    /// (`None`: unauthenticated, e.g. for logins); see [`bao_command`].
    pub fn command_as(&self, token: Option<&str>) -> Command {
        bao_command(self.dir.path(), &self.addr(), &self.ca_file, token)
    }

    /// Runs the CLI as root, e.g. to rotate the key or change its config.
    pub fn bao(&self, args: &[&str]) -> Output {
        self.bao_as(&self.root_token, args)
    }

    /// Runs the CLI with `token`, e.g. to check what a login token may do.
    pub fn bao_as(&self, token: &str, args: &[&str]) -> Output {
        self.command_as(Some(token))
            .args(args)
            .output()
            .expect("run bao CLI")
    }

    /// Like [`Lab::bao`], returning stdout; panics with stderr on failure.
    pub fn bao_ok(&self, args: &[&str]) -> String {
        let out = self.bao(args);
        if !out.status.success() {
            self.fail(&format!(
                "`bao {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        String::from_utf8(out.stdout).expect("bao prints UTF-8")
    }

    /// `bao read -format=json PATH` as root, returning the `data` object.
    pub fn read_json(&self, path: &str) -> Value {
        let out = self.bao_ok(&["read", "-format=json", path]);
        let mut v: Value = serde_json::from_str(&out).expect("bao read prints JSON");
        v["data"].take()
    }

    /// Logs in at `auth/k8s-jwt` with role `kms`; the client token, or the
    /// CLI's error text if OpenBao refused.
    pub fn login(&self, jwt: &str) -> Result<String, String> {
        let out = self
            .command_as(None)
            .args([
                "write",
                "-field=token",
                &format!("{JWT_MOUNT}/login"),
                &format!("role={ROLE}"),
                &format!("jwt={jwt}"),
            ])
            .output()
            .expect("run bao CLI");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Mints `claims` with the lab's issuer and writes the JWT to `path` with
    /// mode 0600, as the provider's file checks require.
    ///
    /// Written to a sibling and renamed into place, so a provider re-reading
    /// the file concurrently sees the old or the new token, never a torn one.
    pub fn write_jwt(&self, path: &Path, claims: &Claims) {
        write_jwt_file(&self.issuer, &self.minted, path, claims);
    }

    /// Freezes the server (SIGSTOP): connections hang instead of failing,
    /// which is how a wedged OpenBao looks to the provider.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Thaws a [`Lab::pause`]d server (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    /// The audit log every request is written to, with raw tokens.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join(AUDIT_LOG)
    }

    /// A missing audit log is a broken lab, never "zero requests".
    fn audit_text(&self) -> String {
        fs::read_to_string(self.audit_log())
            .unwrap_or_else(|e| self.fail(&format!("cannot read the audit log: {e}")))
    }

    /// The JWTs [`Lab::write_jwt`] has minted so far and will mint.
    pub fn minted_jwts(&self) -> Arc<Mutex<Vec<String>>> {
        Arc::clone(&self.minted)
    }

    /// Paths of the requests OpenBao has served so far, in order (audit log).
    pub fn audited_paths(&self) -> Vec<String> {
        self.audit_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["type"] == "request")
            .filter_map(|v| v["request"]["path"].as_str().map(str::to_owned))
            .collect()
    }

    /// How many audited requests went to exactly `path`.
    pub fn audited_count(&self, path: &str) -> usize {
        self.audited_paths().iter().filter(|p| *p == path).count()
    }

    /// Requests OpenBao has served so far, counted from its audit log.
    pub fn audited_requests(&self) -> usize {
        self.audit_text()
            .lines()
            .filter(|l| l.contains("\"type\":\"request\""))
            .count()
    }

    /// Server stdout and stderr since the lab started (all restarts).
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// Shuts the server down gracefully (SIGTERM) and waits for it; the port
    /// then refuses connections until [`Lab::start_again`].
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("stop: server is not running");
        let pid = child_pid(&child);
        let _ = kill(pid, Signal::SIGTERM);
        // A paused server would never act on SIGTERM.
        let _ = kill(pid, Signal::SIGCONT);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if child.try_wait().expect("wait for bao").is_some() {
                return;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Restarts a [`Lab::stop`]ped persistent server on the same port with the
    /// same storage and unseals it; keys, mounts, auth and policy survive.
    pub fn start_again(&mut self) {
        assert!(
            matches!(self.kind, Kind::Persistent { .. }),
            "start_again needs Lab::start_persistent: a dev server keeps its data in memory"
        );
        assert!(self.child.is_none(), "start_again: server is still running");
        self.spawn();
        match self.wait_for(|_| true) {
            Ok(()) => self.unseal(),
            // No retry here: the port is part of what the test restarts.
            Err(e) => self.fail(&not_ready_message(&e, self.port)),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("bao.log")
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open bao.log");
        let stderr = log.try_clone().expect("clone log handle");
        let child = Command::new(bao_binary())
            .args(&self.server_args)
            .env_clear()
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .expect("spawn bao server");
        self.child = Some(child);
    }

    /// Polls until `bao status` answers with a status `accept`s, the process
    /// exits, or [`READY_TIMEOUT`] passes.
    fn wait_for(&mut self, accept: impl Fn(&Value) -> bool) -> Result<(), NotReady> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let sock = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            let child = self.child.as_mut().expect("server spawned");
            if let Some(status) = child.try_wait().expect("poll bao server") {
                self.child = None;
                return Err(NotReady::Exited(status));
            }
            if Instant::now() >= deadline {
                return Err(NotReady::TimedOut);
            }
            // A TCP probe is ~free; each CLI call costs ~150 ms of CPU on a
            // machine shared with cargo, so only ask once the port is open.
            if TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_err() {
                sleep(Duration::from_millis(20));
                continue;
            }
            // Exit 0 = unsealed, 2 = sealed; both print the status JSON.
            let out = self
                .command_as(None)
                .args(["status", "-format=json"])
                .output()
                .expect("run bao status");
            if let Ok(status) = serde_json::from_slice::<Value>(&out.stdout)
                && accept(&status)
            {
                return Ok(());
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// On a port collision (the process died with EADDRINUSE) try another
    /// port; anything else is a real failure.
    fn retry_or_fail(&mut self, e: NotReady, attempt: usize) {
        let collided =
            matches!(e, NotReady::Exited(_)) && self.log_text().contains("address already in use");
        if collided && attempt < PORT_ATTEMPTS {
            return;
        }
        self.fail(&not_ready_message(&e, self.port));
    }

    fn initialise(&mut self) {
        match operator_init(self.command_as(None)) {
            Ok((unseal_key, root_token)) => {
                self.kind = Kind::Persistent { unseal_key };
                self.root_token = root_token;
            }
            Err(message) => self.fail(&message),
        }
    }

    /// Seals a persistent server (`bao operator seal`); [`Lab::unseal`] opens it.
    pub fn seal(&self) {
        assert!(
            matches!(self.kind, Kind::Persistent { .. }),
            "seal needs Lab::start_persistent: a dev server's unseal key is not kept"
        );
        self.bao_ok(&["operator", "seal"]);
    }

    /// Unseals a persistent server with its one key share.
    pub fn unseal(&mut self) {
        let Kind::Persistent { unseal_key } = &self.kind else {
            unreachable!("only persistent labs are sealed");
        };
        let out = self
            .command_as(None)
            .args(["operator", "unseal", unseal_key])
            .output()
            .expect("run bao operator unseal");
        if !out.status.success() {
            self.fail(&format!(
                "`bao operator unseal` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        if let Err(e) = self.wait_for(is_active) {
            self.fail(&not_ready_message(&e, self.port));
        }
    }

    /// Enables cert auth at `auth/<mount>` with role `role` trusting `ca_pem`
    /// for the given common names, issuing `kms-transit` tokens
    /// (`token_no_default_policy`, binding to the certificate left on).
    pub fn enable_cert_auth(&self, mount: &str, role: &str, ca_pem: &str, names: &str, ttl: &str) {
        let path = mount.strip_prefix("auth/").expect("mount under auth/");
        self.bao_ok(&["auth", "enable", &format!("-path={path}"), "cert"]);
        let ca = self.dir.path().join(format!("{path}-{role}-ca.pem"));
        fs::write(&ca, ca_pem).expect("write cert auth CA");
        self.bao_ok(&[
            "write",
            &format!("{mount}/certs/{role}"),
            &format!("certificate=@{}", ca.display()),
            &format!("token_policies={POLICY}"),
            "token_no_default_policy=true",
            &format!("allowed_common_names={names}"),
            &format!("token_ttl={ttl}"),
            "token_max_ttl=1h",
        ]);
    }

    fn configure(&self) {
        configure(&|args| self.bao_ok(args), self.dir.path(), &self.issuer);
    }

    fn signal(&self, sig: Signal) {
        let child = self.child.as_ref().expect("server is not running");
        kill(child_pid(child), sig).unwrap_or_else(|e| panic!("{sig} bao server: {e}"));
    }

    /// Panics with `msg` and the end of the server log, the first thing
    /// anyone debugging a lab failure needs.
    fn fail(&self, msg: &str) -> ! {
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        panic!(
            "OpenBao lab at {}: {msg}\n--- last {LOG_TAIL_LINES} lines of the server log ---\n{tail}",
            self.addr()
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL also ends a SIGSTOPped process; reap it so no zombie
            // outlives the test.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Mints `claims` with `issuer`, records the JWT in `minted` and writes it to
/// `path` with mode 0600, as the provider's file checks require.
///
/// Written to a sibling and renamed into place, so a provider re-reading
/// the file concurrently sees the old or the new token, never a torn one.
pub fn write_jwt_file(issuer: &Issuer, minted: &Mutex<Vec<String>>, path: &Path, claims: &Claims) {
    let jwt = issuer.mint(claims);
    minted.lock().unwrap().push(jwt.clone());
    let name = path.file_name().expect("jwt path has a file name");
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .unwrap_or_else(|e| panic!("create {}: {e}", tmp.display()));
    // `mode` only applies on creation; a leftover file keeps its old mode.
    f.set_permissions(Permissions::from_mode(0o600))
        .expect("chmod jwt");
    f.write_all(jwt.as_bytes()).expect("write jwt");
    drop(f);
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// The production setup every lab gets (Transit with `disable_upsert`, the
/// key profile, JWT auth trusting `issuer`, the policy and role), applied
/// through `bao_ok` (a root CLI call that panics on failure); `dir` holds the
/// policy file.
pub fn configure(bao_ok: &dyn Fn(&[&str]) -> String, dir: &Path, issuer: &Issuer) {
    let key_path = format!("{TRANSIT_MOUNT}/keys/{KEY_NAME}");
    bao_ok(&[
        "secrets",
        "enable",
        &format!("-path={TRANSIT_MOUNT}"),
        "transit",
    ]);
    bao_ok(&[
        "write",
        &format!("{TRANSIT_MOUNT}/config/keys"),
        "disable_upsert=true",
    ]);
    bao_ok(&[
        "write",
        "-f",
        &key_path,
        "type=aes256-gcm96",
        "exportable=false",
        "allow_plaintext_backup=false",
    ]);
    // Already the default; set explicitly so the profile never depends on it.
    bao_ok(&[
        "write",
        &format!("{key_path}/config"),
        "deletion_allowed=false",
    ]);

    let jwt_path = JWT_MOUNT
        .strip_prefix("auth/")
        .expect("JWT_MOUNT under auth/");
    bao_ok(&["auth", "enable", &format!("-path={jwt_path}"), "jwt"]);
    bao_ok(&[
        "write",
        &format!("{JWT_MOUNT}/config"),
        &format!("jwt_validation_pubkeys={}", issuer.public_key_pem()),
        &format!("bound_issuer={ISSUER}"),
    ]);

    let policy_file = dir.join(format!("{POLICY}.hcl"));
    fs::write(&policy_file, policy_hcl()).expect("write policy file");
    bao_ok(&[
        "policy",
        "write",
        POLICY,
        policy_file.to_str().expect("UTF-8 temp dir"),
    ]);
    bao_ok(&[
        "write",
        &format!("{JWT_MOUNT}/role/{ROLE}"),
        "role_type=jwt",
        &format!("bound_audiences={AUDIENCE}"),
        "user_claim=sub",
        &format!("bound_subject={SUBJECT}"),
        &format!("token_policies={POLICY}"),
        "token_no_default_policy=true",
        "token_ttl=1h",
        "token_max_ttl=24h",
    ]);
}

/// Unsealed and serving requests: dev servers have no HA, raft nodes must
/// have won leadership.
fn is_active(status: &Value) -> bool {
    status["sealed"] == Value::Bool(false)
        && (status["ha_enabled"] != Value::Bool(true) || status["is_self"] == Value::Bool(true))
}

fn not_ready_message(e: &NotReady, port: u16) -> String {
    match e {
        NotReady::Exited(status) => format!("server exited ({status}) before becoming ready"),
        NotReady::TimedOut => format!(
            "not ready on 127.0.0.1:{port} within {}s",
            READY_TIMEOUT.as_secs()
        ),
    }
}

fn child_pid(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"))
}

/// A `bao` CLI command aimed at `addr` over TLS verified with `ca_file`,
/// authenticated as `token` (`None`: unauthenticated, e.g. for logins). The
/// environment is cleared so a developer's BAO_*/VAULT_* variables or proxies
/// cannot leak in; `home` holds the CLI's token helper file
/// ($HOME/.vault-token).
pub fn bao_command(home: &Path, addr: &str, ca_file: &Path, token: Option<&str>) -> Command {
    let mut cmd = Command::new(bao_binary());
    cmd.env_clear()
        .env("HOME", home)
        .env("BAO_ADDR", addr)
        .env("BAO_CACERT", ca_file)
        .stdin(Stdio::null());
    if let Some(token) = token {
        cmd.env("BAO_TOKEN", token);
    }
    cmd
}

/// `bao operator init` with one key share through `cmd` (a `bao` command
/// aimed at the server): the unseal key and the root token, or why not.
pub fn operator_init(mut cmd: Command) -> Result<(String, String), String> {
    let out = cmd
        .args([
            "operator",
            "init",
            "-key-shares=1",
            "-key-threshold=1",
            "-format=json",
        ])
        .output()
        .expect("run bao operator init");
    if !out.status.success() {
        return Err(format!(
            "`bao operator init` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let init: Value = serde_json::from_slice(&out.stdout).expect("init prints JSON");
    Ok((
        init["unseal_keys_b64"][0]
            .as_str()
            .expect("unseal key")
            .to_owned(),
        init["root_token"].as_str().expect("root token").to_owned(),
    ))
}

/// A port `p` with `p + 1` also free: bao puts its cluster listener there.
/// The probes are released before bao binds, so a collision is still
/// possible; callers retry.
fn free_port_pair() -> u16 {
    loop {
        let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = probe.local_addr().expect("probe address").port();
        if port < u16::MAX && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok() {
            return port;
        }
    }
}

/// 128 random bits, hex: unguessable, and distinctive enough for tests that
/// scan output for leaked secrets.
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).expect("system RNG");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A throwaway CA and a server certificate for `localhost` / `127.0.0.1`;
/// returns (CA, certificate, key) paths.
pub fn write_tls_material(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    write_tls_material_for(dir, &["localhost", "127.0.0.1"])
}

/// Like [`write_tls_material`], for the given DNS names and IP addresses.
pub fn write_tls_material_for(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bao-kms-provider test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("self-sign CA");

    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &ca).expect("sign server cert");

    let ca_file = dir.join("ca.pem");
    let cert_file = dir.join("server.pem");
    let key_file = dir.join("server-key.pem");
    fs::write(&ca_file, ca.pem()).expect("write ca.pem");
    fs::write(&cert_file, cert.pem()).expect("write server.pem");
    write_private(&key_file, key.serialize_pem().as_bytes());
    (ca_file, cert_file, key_file)
}

fn write_private(path: &Path, contents: &[u8]) {
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(contents)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
