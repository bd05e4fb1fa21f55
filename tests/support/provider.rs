//! Runs the real `bao-kms-provider` binary against a [`Lab`]: writes its
//! config and JWT with production-like modes, starts `serve`, waits for the
//! socket, and captures every byte the process writes; when dropped, scans it
//! all for secrets ([`leaks::scan`]).

use super::cmd::chmod;
use super::jwt::Claims;
use super::leaks::{self, Known};
use super::oauth2::{OAUTH2_MOUNT, OAUTH2_ROLE, OAuth2Setup};
use super::openbao::{AUDIENCE, ISSUER, JWT_MOUNT, KEY_NAME, Lab, ROLE, SUBJECT, TRANSIT_MOUNT};
use super::tmp::TempDir;
use bao_kms_provider::kms::connect;
use bao_kms_provider::kms::proto::key_management_service_client::KeyManagementServiceClient;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_bao-kms-provider");

/// Knobs a test may turn; `Setup::new(lab)` gives a working configuration.
#[derive(Clone)]
pub struct Setup {
    pub address: String,
    pub ca_file: PathBuf,
    pub tls_server_name: String,
    pub cluster_id: String,
    pub timeout: &'static str,
    pub grace_timeout: &'static str,
    pub retry_interval: &'static str,
    pub probe_interval: &'static str,
    pub deep_probe_interval: &'static str,
    pub max_staleness: &'static str,
    pub max_concurrent_decrypt: u32,
    pub log_level: &'static str,
    pub login_before_expiry: &'static str,
    pub renewal_increment: &'static str,
    pub activation_delay: &'static str,
    pub stable_count: u32,
    /// `host:port` of /metrics and /live, /ready (free loopback ports by default).
    pub metrics_address: String,
    pub health_address: String,
    /// `(incidentId, ttl)` to enable debug correlation.
    pub correlation: Option<(&'static str, &'static str)>,
    pub jwt_claims: Claims,
    /// A test-only fault point (`src/fault.rs`) planted through `BAO_KMS_FAULT`.
    pub fault: Option<&'static str>,
    /// `auth.jwt.source: oauth2` against a test issuer instead of the JWT file.
    pub oauth2: Option<OAuth2Setup>,
    /// Replaces the JWT `auth:` block (e.g. [`super::pkcs11::auth_yaml`]).
    pub auth_yaml: Option<String>,
    /// Environment the provider inherits besides nothing (it runs with
    /// `env_clear`), e.g. `SOFTHSM2_CONF`.
    pub env: Vec<(String, String)>,
    /// Secrets its output must never contain besides the lab's (a PIN, a
    /// private key).
    pub secrets: Known,
    /// A hosts file the provider (and only it) sees as `/etc/hosts`: `serve`
    /// runs in a private mount namespace with the file bound over it, so a
    /// test can give a name several addresses without touching the machine.
    pub hosts_file: Option<PathBuf>,
}

/// What a provider needs from the OpenBao it runs against: a JWT its auth
/// trusts, the JWTs minted so far, and every audit log (a cluster has one per
/// node), so the leak scan knows each token OpenBao issued.
pub trait Backend {
    fn write_jwt(&self, path: &Path, claims: &Claims);
    fn minted_jwts(&self) -> Arc<Mutex<Vec<String>>>;
    fn audit_logs(&self) -> Vec<PathBuf>;
}

impl Backend for Lab {
    fn write_jwt(&self, path: &Path, claims: &Claims) {
        Lab::write_jwt(self, path, claims);
    }

    fn minted_jwts(&self) -> Arc<Mutex<Vec<String>>> {
        Lab::minted_jwts(self)
    }

    fn audit_logs(&self) -> Vec<PathBuf> {
        vec![self.audit_log()]
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Setup {
    /// Probes that stay quiet for a test's duration, so every OpenBao request
    /// in the audit log comes from the calls under test.
    pub fn quiet(lab: &Lab) -> Setup {
        Setup {
            probe_interval: "1m",
            deep_probe_interval: "5m",
            max_staleness: "2m",
            ..Setup::new(lab)
        }
    }

    pub fn new(lab: &Lab) -> Setup {
        Setup::for_address(&lab.addr(), lab.ca_file())
    }

    /// A working configuration for the OpenBao at `address` whose certificate
    /// `ca_file` verifies for `localhost`.
    pub fn for_address(address: &str, ca_file: &Path) -> Setup {
        Setup {
            address: address.to_owned(),
            ca_file: ca_file.to_owned(),
            tls_server_name: "localhost".into(),
            cluster_id: "workload-a".into(),
            timeout: "2s",
            grace_timeout: "10s",
            retry_interval: "500ms",
            probe_interval: "1s",
            deep_probe_interval: "5s",
            max_staleness: "3s",
            max_concurrent_decrypt: 64,
            log_level: "debug",
            login_before_expiry: "5m",
            renewal_increment: "1h",
            activation_delay: "2m",
            stable_count: 3,
            metrics_address: format!("127.0.0.1:{}", free_port()),
            health_address: format!("127.0.0.1:{}", free_port()),
            correlation: None,
            jwt_claims: Claims::valid_for(Duration::from_secs(3600)),
            fault: None,
            oauth2: None,
            auth_yaml: None,
            env: Vec::new(),
            secrets: Known::default(),
            hosts_file: None,
        }
    }
}

/// A running (or finished) provider process and its files.
pub struct Provider {
    child: Option<Child>,
    pub metrics_address: String,
    pub health_address: String,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub jwt: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    pub exit: Option<ExitStatus>,
    fault: Option<&'static str>,
    env: Vec<(String, String)>,
    secrets: Known,
    hosts_file: Option<PathBuf>,
    /// What the leak scan must know: every audit log of the lab (every token
    /// it issued) and every JWT the lab minted.
    audit_logs: Vec<PathBuf>,
    lab_jwts: Arc<Mutex<Vec<String>>>,
    /// The OAuth2 client's secret file and issuer records, when used.
    oauth2: Option<(PathBuf, OAuth2Setup)>,
    // Removed last, after the process is gone.
    pub socket_dir: TempDir,
    pub files: TempDir,
}

/// The `auth.jwt` block: the lab's JWT file, or the OAuth2 client.
fn jwt_block(setup: &Setup, jwt: &Path, secret: &Path) -> String {
    match &setup.oauth2 {
        None => format!(
            r#"    source: file
    mountPath: {JWT_MOUNT}
    role: {ROLE}
    jwtFile: {jwt}
    expectedIssuer: {ISSUER}
    expectedAudience: [{AUDIENCE}]
    expectedSubject: "{SUBJECT}"
"#,
            jwt = jwt.display()
        ),
        Some(o) => format!(
            r#"    source: oauth2
    mountPath: {OAUTH2_MOUNT}
    role: {OAUTH2_ROLE}
    expectedIssuer: {issuer}
    expectedAudience: [{AUDIENCE}]
    expectedSubject: "{subject}"
    oauth2:
      tokenUrl: {token_url}
      clientId: {subject}
      authMethod: {method}
      clientSecretFile: {secret}
      caCertFile: {ca}
      audience: {AUDIENCE}
      scopes: [kms, openid]
      resources: ["https://bao.test.local/", "urn:test:kms"]
"#,
            issuer = o.issuer,
            subject = super::oauth2::CLIENT_ID,
            token_url = o.token_url,
            method = o.auth_method,
            secret = secret.display(),
            ca = o.ca_file.display(),
        ),
    }
}

fn render(setup: &Setup, socket: &Path, ca: &Path, jwt_block: &str, state: &Path) -> String {
    format!(
        r#"configVersion: v1alpha1
server:
  socketPath: {socket}
  socketMode: "0660"
  socketGroup: "0"
  maxConcurrentDecrypt: {decrypt}
  metricsAddress: "{metrics}"
  healthAddress: "{health}"
openbao:
  address: {address}
  caCertFile: {ca}
  tlsServerName: {server_name}
  instanceId: bao-test-a
  timeout: {timeout}
{auth}transit:
  mountPath: {mount}
  keyName: {key}
  keyIdScope:
    providerName: openbao-kms-workload-a
    clusterId: {cluster}
    transitMountId: transit-test-primary
    keyLineageId: "0123456789abcdef0123456789abcdef"
bootstrap:
  graceTimeout: {grace}
  retryInterval: {retry}
status:
  probeInterval: {probe}
  deepProbeInterval: {deep}
  statusMaxStaleness: {stale}
state:
  path: {state}
rotation:
  activationDelay: {activation}
  requireStableObservationCount: {stable}
logging:
  level: {level}
  format: json
{correlation}"#,
        socket = socket.display(),
        decrypt = setup.max_concurrent_decrypt,
        address = setup.address,
        ca = ca.display(),
        server_name = setup.tls_server_name,
        timeout = setup.timeout,
        auth = setup
            .auth_yaml
            .clone()
            .unwrap_or_else(|| jwt_auth(setup, jwt_block)),
        mount = TRANSIT_MOUNT,
        key = KEY_NAME,
        cluster = setup.cluster_id,
        grace = setup.grace_timeout,
        retry = setup.retry_interval,
        probe = setup.probe_interval,
        deep = setup.deep_probe_interval,
        stale = setup.max_staleness,
        state = state.display(),
        level = setup.log_level,
        activation = setup.activation_delay,
        metrics = setup.metrics_address,
        correlation = setup.correlation.map_or(String::new(), |(incident, ttl)| format!(
            "  debugCorrelation:\n    enabled: true\n    incidentId: {incident}\n    ttl: {ttl}\n"
        )),
        health = setup.health_address,
        stable = setup.stable_count,
    )
}

/// The JWT `auth:` block around `jwt_block` (the file or the OAuth2 source).
fn jwt_auth(setup: &Setup, jwt_block: &str) -> String {
    format!(
        r#"auth:
  method: jwt
  loginBeforeTokenExpiry: {login_before}
  tokenRenewalIncrement: {renewal}
  jwt:
{jwt_block}"#,
        login_before = setup.login_before_expiry,
        renewal = setup.renewal_increment,
    )
}

impl Provider {
    /// Writes config, CA copy and JWT for `setup`, without starting anything.
    pub fn prepare(lab: &dyn Backend, setup: &Setup) -> Provider {
        let files = TempDir::new("kms-files");
        let socket_dir = TempDir::new_in(Path::new("/run/openbao-kms"), "t");
        chmod(socket_dir.path(), 0o750);
        let ca = files.path().join("ca.pem");
        fs::copy(&setup.ca_file, &ca).expect("copy CA");
        chmod(&ca, 0o644);
        let jwt = files.path().join("identity.jwt");
        lab.write_jwt(&jwt, &setup.jwt_claims);
        let config = files.path().join("config.yaml");
        let socket = socket_dir.path().join("kms.sock");
        let state_dir = files.path().join("state");
        fs::create_dir(&state_dir).expect("create state dir");
        chmod(&state_dir, 0o750);
        let state = state_dir.join("key-registry.json");
        let secret = files.path().join("client-secret");
        let oauth2 = setup.oauth2.clone().map(|o| {
            fs::write(&secret, format!("{}\n", o.secret)).expect("write client secret");
            chmod(&secret, 0o640);
            (secret.clone(), o)
        });
        let block = jwt_block(setup, &jwt, &secret);
        fs::write(&config, render(setup, &socket, &ca, &block, &state)).expect("write config");
        chmod(&config, 0o640);
        Provider {
            child: None,
            metrics_address: setup.metrics_address.clone(),
            health_address: setup.health_address.clone(),
            socket,
            config,
            jwt,
            stdout: files.path().join("stdout.log"),
            stderr: files.path().join("stderr.log"),
            exit: None,
            fault: setup.fault,
            env: setup.env.clone(),
            secrets: setup.secrets.clone(),
            hosts_file: setup.hosts_file.clone(),
            audit_logs: lab.audit_logs(),
            lab_jwts: lab.minted_jwts(),
            oauth2,
            socket_dir,
            files,
        }
    }

    /// Prepares and starts `serve`; waits until the socket exists.
    pub fn start(lab: &dyn Backend, setup: &Setup) -> Provider {
        let mut provider = Provider::prepare(lab, setup);
        provider.spawn();
        provider.wait_ready(Duration::from_secs(30));
        provider
    }

    /// Starts `serve` on the prepared files without waiting.
    pub fn spawn(&mut self) {
        let stdout = fs::File::create(&self.stdout).expect("stdout file");
        let stderr = fs::File::create(&self.stderr).expect("stderr file");
        let mut command = match &self.hosts_file {
            None => Command::new(BIN),
            Some(hosts) => {
                // unshare and sh exec in place: the child's pid is the provider's.
                let mut c = Command::new("/usr/bin/unshare");
                c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
                    .arg(r#"/usr/bin/mount --bind "$0" /etc/hosts && exec "$@""#)
                    .arg(hosts)
                    .arg(BIN);
                c
            }
        };
        command
            .args(["serve", "--config"])
            .arg(&self.config)
            .env_clear();
        if let Some(fault) = self.fault {
            command.env("BAO_KMS_FAULT", fault);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn provider");
        self.child = Some(child);
        self.exit = None;
    }

    /// Waits until the socket accepts connections; panics with the logs if the
    /// process exits first. (A file at the path is not enough: it may be stale.)
    pub fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            // The health listener binds right after the socket: wait for both.
            let health_up = self.health_address.is_empty()
                || std::net::TcpStream::connect(&self.health_address).is_ok();
            if health_up && std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
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
        panic!("provider not ready within {limit:?}:\n{}", self.logs());
    }

    /// Waits for the process to exit on its own (e.g. a refused start).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exit() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("provider still running after {limit:?}:\n{}", self.logs());
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Some(child) = self.child.as_mut()
        {
            self.exit = child.try_wait().expect("try_wait");
        }
        self.exit
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("started").id() as i32)
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        if self.try_exit().is_none() {
            kill(self.pid(), Signal::SIGTERM).expect("SIGTERM");
        }
        self.wait_exit(Duration::from_secs(30))
    }

    pub async fn client(&self) -> KeyManagementServiceClient<Channel> {
        connect(&self.socket)
            .await
            .expect("connect to provider socket")
    }

    pub fn stdout_text(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout_text(),
            self.stderr_text()
        )
    }

    /// Paths of the files that capture the process's stdout and stderr.
    pub fn output_files(&self) -> (&Path, &Path) {
        (&self.stdout, &self.stderr)
    }

    /// Every secret this provider could leak: the JWTs its lab minted (and
    /// whatever its JWT file holds now), and every token and login JWT in
    /// the lab's audit log.
    pub fn known_secrets(&self) -> Known {
        let mut jwts = self.lab_jwts.lock().unwrap().clone();
        assert!(!jwts.is_empty(), "the lab minted this provider's JWT");
        // A test may have written the file itself, or removed it.
        if let Ok(current) = fs::read_to_string(&self.jwt) {
            jwts.push(current);
        }
        let mut extra = Vec::new();
        if let Some((secret_file, o)) = &self.oauth2 {
            let (tokens, secrets) = o.known();
            jwts.extend(tokens);
            extra.extend(secrets);
            if let Ok(current) = fs::read_to_string(secret_file) {
                extra.push(current.trim().to_owned());
            }
        }
        Known {
            jwts,
            extra,
            ..Known::default()
        }
        .merge(
            self.audit_logs
                .iter()
                .fold(Known::default(), |k, log| k.merge(leaks::audited(log))),
        )
        .merge(self.secrets.clone())
    }

    /// The classes of secret in everything the process wrote; what `Drop`
    /// asserts is empty.
    pub fn leaks(&self, extra: &[&str]) -> Vec<&'static str> {
        let known = self.known_secrets().merge(Known {
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            ..Known::default()
        });
        // Strict reads: an output file that cannot be read must not scan clean.
        let output: String = [&self.stdout, &self.stderr]
            .iter()
            .map(|path| {
                let bytes = fs::read(path)
                    .unwrap_or_else(|e| panic!("read {} for the leak scan: {e}", path.display()));
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .collect();
        leaks::scan(&output, &known)
    }

    /// Every byte the process wrote is free of every secret [`Provider::leaks`]
    /// knows, and of `extra`. The message names the classes, never a value.
    pub fn assert_output_free_of(&self, extra: &[&str]) {
        let found = self.leaks(extra);
        assert!(
            found.is_empty(),
            "provider output leaks: {}",
            found.join(", ")
        );
    }

    /// Runs a CLI command with this provider's config: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run the CLI");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The OAuth2 client secret file (only with `Setup::oauth2`).
    pub fn client_secret_file(&self) -> PathBuf {
        self.files.path().join("client-secret")
    }

    pub fn files_dir(&self) -> &Path {
        self.files.path()
    }

    /// The registry state file and its checkpoint.
    pub fn state_file(&self) -> PathBuf {
        self.files.path().join("state/key-registry.json")
    }

    pub fn checkpoint_file(&self) -> PathBuf {
        self.files.path().join("state/key-registry.json.checkpoint")
    }
}

impl Drop for Provider {
    /// Kills the process, then checks that nothing it wrote leaked a secret,
    /// so every test that runs a provider also tests redaction.
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.child.is_some() && !std::thread::panicking() {
            self.assert_output_free_of(&[]);
        }
    }
}
