//! A real OAuth 2.0 / OpenID provider for the OAuth2 tests: npm's
//! `oauth2-mock-server` (installed under `.tools/node` by
//! `scripts/install-test-deps.sh`) run by `tests/support/oauth2_server.mjs`
//! with Node.js on a free loopback port, over HTTPS with a certificate made
//! here. OpenBao's JWT auth is pointed at its discovery URL, so OpenBao
//! fetches the JWKS itself; nothing is pinned.

use super::openbao::{AUDIENCE, Lab, POLICY, write_tls_material};
use super::provider::free_port;
use super::tmp::TempDir;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CLIENT_ID: &str = "kms-control-plane";
/// The OpenBao JWT mount the OAuth2 tests log in at (the lab's own JWT mount
/// uses pinned keys; this one uses discovery).
pub const OAUTH2_MOUNT: &str = "auth/oauth2-jwt";
pub const OAUTH2_ROLE: &str = "kms-oauth2";

/// A running issuer and the files that steer it.
pub struct Issuer {
    child: Option<Child>,
    port: u16,
    pub ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    /// The secret the issuer accepts, re-read on every token request.
    expected_secret: PathBuf,
    mode_file: PathBuf,
    /// A counter; each change rolls the signing key over.
    keys_file: PathBuf,
    tokens_file: PathBuf,
    requests_file: PathBuf,
    /// Every client secret this issuer was given, one a line (leak scan).
    secrets_file: PathBuf,
    log: PathBuf,
    dir: TempDir,
}

fn mock_module() -> PathBuf {
    let module = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/node/node_modules/oauth2-mock-server/dist/index.mjs");
    assert!(
        module.is_file(),
        "oauth2-mock-server missing: run scripts/install-test-deps.sh"
    );
    module
}

fn random_secret() -> String {
    let bytes: [u8; 18] = std::array::from_fn(|_| rand_byte());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("read /dev/urandom");
    b[0]
}

impl Issuer {
    pub fn start() -> Issuer {
        let dir = TempDir::new("oauth2-issuer");
        let (ca_file, cert_file, key_file) = write_tls_material(dir.path());
        let secret = random_secret();
        let issuer_init = Issuer {
            child: None,
            port: free_port(),
            ca_file,
            cert_file,
            key_file,
            expected_secret: dir.path().join("expected-secret"),
            mode_file: dir.path().join("mode"),
            keys_file: dir.path().join("keys"),
            tokens_file: dir.path().join("tokens"),
            requests_file: dir.path().join("requests"),
            secrets_file: dir.path().join("secrets-history"),
            log: dir.path().join("issuer.log"),
            dir,
        };
        let mut issuer = issuer_init;
        issuer.accept_secret(&secret);
        issuer.set_mode("ok");
        fs::write(&issuer.keys_file, "0").unwrap();
        fs::write(&issuer.tokens_file, "").unwrap();
        fs::write(&issuer.requests_file, "").unwrap();
        issuer.spawn();
        issuer
    }

    fn spawn(&mut self) {
        let log = fs::File::create(&self.log).expect("issuer log");
        let child = Command::new("node")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oauth2_server.mjs"))
            .env("MOCK_MODULE", mock_module())
            .env("PORT", self.port.to_string())
            .env("CLIENT_ID", CLIENT_ID)
            .env("KEY_FILE", &self.key_file)
            .env("CERT_FILE", &self.cert_file)
            .env("SECRET_FILE", &self.expected_secret)
            .env("MODE_FILE", &self.mode_file)
            .env("KEYS_FILE", &self.keys_file)
            .env("TOKENS_FILE", &self.tokens_file)
            .env("REQUESTS_FILE", &self.requests_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn node (install Node.js: scripts/install-test-deps.sh)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains("ready")
        {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("issuer exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "issuer not ready:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many requests reached `path` (any method).
    pub fn hits(&self, path: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.split(' ').nth(2) == Some(path))
            .count()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `https://localhost:<port>`, the `iss` of every token.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.url())
    }

    /// The secret the issuer accepts from now on (the old one is refused).
    pub fn accept_secret(&self, secret: &str) {
        fs::write(&self.expected_secret, secret).unwrap();
        let mut history = fs::read_to_string(&self.secrets_file).unwrap_or_default();
        history.push_str(secret);
        history.push('\n');
        fs::write(&self.secrets_file, history).unwrap();
    }

    pub fn current_secret(&self) -> String {
        fs::read_to_string(&self.expected_secret).unwrap()
    }

    /// `ok`, `429`, `503`, `redirect`, `opaque` or `wrong-aud`.
    pub fn set_mode(&self, mode: &str) {
        fs::write(&self.mode_file, mode).unwrap();
    }

    /// Replaces the signing key: the old one leaves the JWKS.
    pub fn roll_keys(&self) {
        let n: u32 = fs::read_to_string(&self.keys_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        fs::write(&self.keys_file, (n + 1).to_string()).unwrap();
    }

    /// Every access token it issued.
    pub fn tokens(&self) -> Vec<String> {
        lines(&self.tokens_file)
    }

    /// One line per accepted token request: the client auth method used.
    pub fn requests(&self) -> Vec<String> {
        lines(&self.requests_file)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A JWT auth mount reading this issuer's discovery document, and a role
    /// bound to its issuer, the audience and the client's subject.
    pub fn configure_openbao(&self, lab: &Lab) {
        let path = OAUTH2_MOUNT.strip_prefix("auth/").unwrap();
        lab.bao_ok(&["auth", "enable", &format!("-path={path}"), "jwt"]);
        let ca = fs::read_to_string(&self.ca_file).unwrap();
        lab.bao_ok(&[
            "write",
            &format!("{OAUTH2_MOUNT}/config"),
            &format!("oidc_discovery_url={}", self.url()),
            &format!("oidc_discovery_ca_pem={ca}"),
            &format!("bound_issuer={}", self.url()),
        ]);
        self.write_role(lab, "1h");
    }

    /// (Re)writes the role with OpenBao token TTL `ttl`.
    pub fn write_role(&self, lab: &Lab, ttl: &str) {
        lab.bao_ok(&[
            "write",
            &format!("{OAUTH2_MOUNT}/role/{OAUTH2_ROLE}"),
            "role_type=jwt",
            &format!("bound_audiences={AUDIENCE}"),
            "user_claim=sub",
            &format!("bound_subject={CLIENT_ID}"),
            &format!("token_policies={POLICY}"),
            "token_no_default_policy=true",
            &format!("token_ttl={ttl}"),
            "token_max_ttl=24h",
        ]);
    }

    /// The provider side: its `auth.jwt.oauth2` settings with a secret file
    /// holding the secret the issuer accepts now.
    pub fn client(&self, auth_method: &'static str) -> OAuth2Setup {
        OAuth2Setup {
            issuer: self.url(),
            token_url: self.token_url(),
            ca_file: self.ca_file.clone(),
            auth_method,
            secret: self.current_secret(),
            tokens_file: self.tokens_file.clone(),
            secrets_file: self.secrets_file.clone(),
        }
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

impl OAuth2Setup {
    /// What the provider's output must never contain: every access token
    /// issued and every client secret.
    pub fn known(&self) -> (Vec<String>, Vec<String>) {
        (lines(&self.tokens_file), lines(&self.secrets_file))
    }
}

/// What the provider's config needs to use an [`Issuer`].
#[derive(Clone)]
pub struct OAuth2Setup {
    pub issuer: String,
    pub token_url: String,
    pub ca_file: PathBuf,
    pub auth_method: &'static str,
    /// Written to the provider's `clientSecretFile` (mode 0640).
    pub secret: String,
    /// Where the issuer records every access token (for the leak scan).
    pub tokens_file: PathBuf,
    /// Every client secret the issuer was given, one a line.
    pub secrets_file: PathBuf,
}

/// Replaces `path` by renaming a new file over it, as an operator rotates it.
pub fn rotate_file(path: &Path, contents: &str) {
    let next = path.with_extension("next");
    fs::write(&next, contents).unwrap();
    fs::set_permissions(&next, fs::Permissions::from_mode(0o640)).unwrap();
    fs::rename(&next, path).unwrap();
}
