//! Attacks on threat-model controls that no other suite covers (see the
//! table in docs/testing.md): a stolen ciphertext without Transit rights, a
//! tampered state file, a JWT file other users can read, and an OpenBao
//! address that redirects elsewhere. All against real OpenBao.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::kms::encrypt;
use support::leaks::{Known, scan};
use support::openbao::{KEY_NAME, Lab, TRANSIT_MOUNT, write_tls_material};
use support::provider::{Provider, Setup};

const EXIT_CONFIG: i32 = 3;
const EXIT_RUNTIME: i32 = 5;
const LOGIN: &str = "auth/k8s-jwt/login";

/// An etcd snapshot holds what Encrypt returned: ciphertext, key_id and
/// annotations. Without Transit's decrypt right they reveal nothing, and the
/// key itself cannot leave OpenBao, not even for root.
#[tokio::test(flavor = "multi_thread")]
async fn a_stolen_ciphertext_reveals_nothing_without_transit_decrypt() {
    let lab = Lab::start();
    let provider = Provider::start(&lab, &Setup::quiet(&lab));
    let mut client = provider.client().await;
    let sealed = encrypt(&mut client, 1).await;

    let mut snapshot = String::from_utf8_lossy(&sealed.ciphertext).into_owned();
    snapshot.push_str(&sealed.key_id);
    for (key, value) in &sealed.annotations {
        snapshot.push_str(key);
        snapshot.push_str(&String::from_utf8_lossy(value));
    }
    let found = scan(&snapshot, &Known::default());
    assert!(
        found.iter().all(|class| !class.starts_with("plaintext")),
        "the stored object carries the plaintext: {found:?}"
    );

    // Another OpenBao identity without decrypt on this key.
    let thief = lab
        .bao_ok(&["token", "create", "-policy=default", "-field=token"])
        .trim()
        .to_owned();
    let ciphertext = String::from_utf8(sealed.ciphertext.clone()).unwrap();
    let out = lab.bao_as(
        &thief,
        &[
            "write",
            &format!("{TRANSIT_MOUNT}/decrypt/{KEY_NAME}"),
            &format!("ciphertext={ciphertext}"),
        ],
    );
    assert!(!out.status.success(), "decrypt without the right succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Code: 403"), "{stderr}");

    // The key profile keeps the key material inside OpenBao.
    for path in [
        format!("{TRANSIT_MOUNT}/export/encryption-key/{KEY_NAME}"),
        format!("{TRANSIT_MOUNT}/backup/{KEY_NAME}"),
    ] {
        let out = lab.bao(&["read", &path]);
        assert!(!out.status.success(), "root could read {path}");
    }
}

/// An attacker who edits the state file (here: the creation time that ties
/// a version to its key, the field a recreated key would need changed) is
/// refused at load; the provider never serves on that state.
#[test]
fn a_tampered_state_file_is_refused() {
    let lab = Lab::start();
    let mut provider = Provider::start(&lab, &Setup::quiet(&lab));
    assert!(provider.stop().success());
    let path = provider.state_file();
    let mut state: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let created = &mut state["snapshots"][0]["transitVersionCreatedAtUnix"];
    let forged = created.as_i64().expect("a recorded creation time") + 3600;
    *created = forged.into();
    // Written in place: the file keeps its owner and mode.
    fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();

    provider.spawn();
    let code = provider.wait_exit(Duration::from_secs(30)).code();
    let logs = provider.logs();
    assert_eq!(code, Some(EXIT_RUNTIME), "{logs}");
    assert!(logs.contains("does not match its hash"), "{logs}");
    assert!(!provider.socket.exists(), "no socket on a tampered state");
}

/// A JWT file other users could read may already be stolen: the provider
/// refuses it and never sends it to OpenBao.
#[test]
fn a_jwt_file_readable_by_others_is_never_used() {
    let lab = Lab::start();
    let mut provider = Provider::prepare(
        &lab,
        &Setup {
            grace_timeout: "1s",
            ..Setup::new(&lab)
        },
    );
    fs::set_permissions(&provider.jwt, fs::Permissions::from_mode(0o644)).unwrap();
    provider.spawn();
    let code = provider.wait_exit(Duration::from_secs(30)).code();
    let logs = provider.logs();
    // Refused as a configuration error, before any login is tried.
    assert_eq!(code, Some(EXIT_CONFIG), "{logs}");
    assert!(logs.contains("file permissions unsafe"), "{logs}");
    assert_eq!(lab.audited_count(LOGIN), 0, "the JWT reached OpenBao");
}

/// Two HTTPS listeners trusted by the provider's CA: the first answers every
/// request with a 307 to the second, which records what reaches it.
const REDIRECTOR: &str = r#"
import http.server, ssl, sys, threading
cert, key, record = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]
class Catch(http.server.BaseHTTPRequestHandler):
    def handle_one_request(self):
        self.raw_requestline = self.rfile.readline(65537)
        with open(record, "a") as f:
            f.write("caught " + self.raw_requestline.decode(errors="replace"))
        self.close_connection = True
catcher = serve(Catch)
class Hop(http.server.BaseHTTPRequestHandler):
    def hop(self):
        with open(record, "a") as f:
            f.write("redirected " + self.command + " " + self.path + "\n")
        self.send_response(307)
        self.send_header("Location", "https://localhost:%d%s" % (catcher, self.path))
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_POST = do_PUT = hop
    def log_message(self, *args):
        pass
print(serve(Hop), flush=True)
threading.Event().wait()
"#;

/// OpenBao's address answers with a redirect to another host (which would
/// receive the login JWT and later the token): the provider rejects every
/// redirect, so nothing reaches the other host and it never starts serving.
#[test]
fn a_redirect_to_another_host_is_never_followed() {
    let lab = Lab::start();
    let tls = lab.dir().join("redirector-tls");
    fs::create_dir(&tls).unwrap();
    let (ca, cert, key) = write_tls_material(&tls);
    let record = lab.dir().join("redirector.log");
    fs::write(&record, "").unwrap();
    let script = lab.dir().join("redirector.py");
    fs::write(&script, REDIRECTOR).unwrap();
    let mut redirector = Command::new("python3")
        .arg(&script)
        .args([&cert, &key, &record])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the redirector");
    let mut port = String::new();
    BufReader::new(redirector.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port: u16 = port
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("redirector port {port:?}: {e}"));

    let mut provider = Provider::prepare(
        &lab,
        &Setup {
            address: format!("https://127.0.0.1:{port}"),
            ca_file: ca,
            grace_timeout: "2s",
            ..Setup::new(&lab)
        },
    );
    provider.spawn();
    let code = provider.wait_exit(Duration::from_secs(30)).code();
    let _ = redirector.kill();
    let _ = redirector.wait();
    let logs = provider.logs();
    let seen = fs::read_to_string(&record).unwrap();
    assert_eq!(code, Some(EXIT_RUNTIME), "{logs}");
    assert!(
        seen.lines().any(|l| l.starts_with("redirected ")),
        "the provider never asked the redirecting address: {seen}\n{logs}"
    );
    assert!(
        !seen.lines().any(|l| l.starts_with("caught ")),
        "a redirect was followed: {seen}"
    );
}
