//! `probe`: checks a running provider through its socket with a real
//! Status → Encrypt → Decrypt round trip. Loads no config, credentials or state.

use super::report::{CheckStatus, Report};
use super::{EXIT_CHECK_FAILED, EXIT_USAGE, output_format, runtime};
use crate::identity::KeyId;
use crate::kms::connect;
use crate::kms::proto::key_management_service_client::KeyManagementServiceClient;
use crate::kms::proto::{DecryptRequest, EncryptRequest, StatusRequest};
use nix::unistd::{getegid, geteuid, getgroups};
use ring::rand::SecureRandom as _;
use std::fmt::Write as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::Channel;

#[derive(Debug, clap::Args)]
pub struct Flags {
    /// Provider socket
    #[arg(long, default_value = "/run/openbao-kms/kms.sock")]
    socket: PathBuf,
    /// Deadline for the whole probe (Go duration, e.g. 10s)
    #[arg(long, default_value = "10s")]
    timeout: String,
    /// Fail unless Status reports this key ID
    #[arg(long, value_name = "KEY_ID")]
    expected_key_id: Option<String>,
    /// Report format: text or json
    #[arg(long, default_value = "text")]
    output: String,
}

/// `probe`: flag rules first (exit 2), then the checks (exit 4 on a failure).
pub fn run(flags: &Flags) -> Result<(), super::Failure> {
    let usage = |m: &str| super::Failure::new(EXIT_USAGE, m);
    let format = output_format(&flags.output)?;
    let timeout = crate::config::parse_go_duration(&flags.timeout)
        .filter(|nanos| *nanos > 0)
        .map(|nanos| Duration::from_nanos(nanos.unsigned_abs()))
        .ok_or_else(|| usage("--timeout must be a positive duration such as 10s"))?;
    if !flags.socket.is_absolute() {
        return Err(usage("--socket must be an absolute path"));
    }
    let expected = match &flags.expected_key_id {
        Some(raw) => Some(
            KeyId::parse(raw).map_err(|_| usage("--expected-key-id is not a provider key ID"))?,
        ),
        None => None,
    };
    let report = runtime()?.block_on(run_probe(&flags.socket, timeout, expected.as_ref()));
    print!("{}", report.render(format));
    if report.failed() {
        Err(super::Failure::new(
            EXIT_CHECK_FAILED,
            "running provider probe failed",
        ))
    } else {
        Ok(())
    }
}

/// Runs every probe check; the whole probe is bounded by `timeout`.
async fn run_probe(socket: &Path, timeout: Duration, expected: Option<&KeyId>) -> Report {
    let mut report = Report::new("probe");
    identity_check(&mut report);
    if !socket_checks(&mut report, socket) {
        skip_rest(&mut report, "socket.connect");
        return report;
    }
    match tokio::time::timeout(timeout, kms_checks(&mut report, socket, expected)).await {
        Ok(()) => {}
        Err(_) => {
            report.push(
                "socket.connect",
                "Provider answers in time",
                CheckStatus::Fail,
                "probe timed out",
            );
        }
    }
    report
}

const LATER_CHECKS: [(&str, &str); 5] = [
    ("socket.connect", "Connect to the KMS socket"),
    ("kms.status", "KMS Status is healthy"),
    ("kms.encrypt", "KMS Encrypt"),
    ("kms.decrypt", "KMS Decrypt round trip"),
    ("kms.key_id", "Key ID"),
];

fn skip_rest(report: &mut Report, from: &str) {
    let start = LATER_CHECKS
        .iter()
        .position(|(id, _)| *id == from)
        .unwrap_or(0);
    for (id, title) in &LATER_CHECKS[start..] {
        report.push(
            id,
            title,
            CheckStatus::Skip,
            "not run: an earlier check failed",
        );
    }
}

fn identity_check(report: &mut Report) {
    let (uid, gid) = (geteuid(), getegid());
    match getgroups() {
        Ok(groups) => {
            let list: Vec<String> = groups.iter().map(|g| g.as_raw().to_string()).collect();
            let message = format!("uid={uid} gid={gid} groups=[{}]", list.join(","));
            if uid.is_root() {
                let message = format!("{message}; root does not prove non-root socket access");
                report.push(
                    "client.identity",
                    "Client identity",
                    CheckStatus::Warn,
                    message,
                );
            } else {
                report.push(
                    "client.identity",
                    "Client identity",
                    CheckStatus::Pass,
                    message,
                );
            }
        }
        Err(_) => report.push(
            "client.identity",
            "Client identity",
            CheckStatus::Fail,
            "cannot read groups",
        ),
    }
}

/// Returns false when the socket cannot be used at all.
fn socket_checks(report: &mut Report, socket: &Path) -> bool {
    let title = "Socket path is a Unix socket";
    let meta = match std::fs::symlink_metadata(socket) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            report.push("socket.path", title, CheckStatus::Fail,
                "permission denied: check group membership and search permission on the parent directory");
            return false;
        }
        Err(_) => {
            report.push(
                "socket.path",
                title,
                CheckStatus::Fail,
                "socket does not exist",
            );
            return false;
        }
    };
    if !meta.file_type().is_socket() {
        report.push(
            "socket.path",
            title,
            CheckStatus::Fail,
            "path is not a Unix socket",
        );
        return false;
    }
    report.push("socket.path", title, CheckStatus::Pass, "");
    let scope_title = "Access is proven for the socket group";
    if meta.uid() == geteuid().as_raw() {
        report.push(
            "socket.access_scope",
            scope_title,
            CheckStatus::Warn,
            "caller owns the socket; the round trip does not prove group access",
        );
    } else {
        report.push("socket.access_scope", scope_title, CheckStatus::Pass, "");
    }
    true
}

async fn kms_checks(report: &mut Report, socket: &Path, expected: Option<&KeyId>) {
    let mut client = match connect(socket).await {
        Ok(client) => client,
        Err(_) => {
            report.push(
                "socket.connect",
                "Connect to the KMS socket",
                CheckStatus::Fail,
                "cannot connect",
            );
            skip_rest(report, "kms.status");
            return;
        }
    };
    report.push(
        "socket.connect",
        "Connect to the KMS socket",
        CheckStatus::Pass,
        "",
    );
    match round_trip(&mut client, expected).await {
        Ok(steps) => {
            for (id, title, status, message) in steps {
                report.push(id, title, status, message);
            }
        }
        Err((done, failed_id, message)) => {
            for (id, title, status, msg) in done {
                report.push(id, title, status, msg);
            }
            let title = LATER_CHECKS
                .iter()
                .find(|(id, _)| *id == failed_id)
                .map_or("", |(_, t)| t);
            report.push(failed_id, title, CheckStatus::Fail, message);
            let next = LATER_CHECKS
                .iter()
                .position(|(id, _)| *id == failed_id)
                .map_or(LATER_CHECKS.len(), |i| i + 1);
            for (id, title) in &LATER_CHECKS[next..] {
                if report.checks.iter().all(|c| c.id != *id) {
                    report.push(
                        id,
                        title,
                        CheckStatus::Skip,
                        "not run: an earlier check failed",
                    );
                }
            }
        }
    }
}

type Step = (&'static str, &'static str, CheckStatus, String);
type Failure = (Vec<Step>, &'static str, String);

fn grpc_message(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

async fn round_trip(
    client: &mut KeyManagementServiceClient<Channel>,
    expected: Option<&KeyId>,
) -> Result<Vec<Step>, Failure> {
    let mut done: Vec<Step> = Vec::new();
    let status = match client.status(StatusRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(e) => return Err((done, "kms.status", grpc_message(&e))),
    };
    if status.version != "v2" || status.healthz != "ok" {
        return Err((
            done,
            "kms.status",
            format!("version={} healthz={}", status.version, status.healthz),
        ));
    }
    done.push((
        "kms.status",
        "KMS Status is healthy",
        CheckStatus::Pass,
        "version=v2 healthz=ok".into(),
    ));
    let Ok(key_id) = KeyId::parse(&status.key_id) else {
        return Err((
            done,
            "kms.key_id",
            "Status returned a malformed key ID".into(),
        ));
    };
    if expected.is_some_and(|want| *want != key_id) {
        return Err((
            done,
            "kms.key_id",
            "Peer key agreement: Status key ID differs from --expected-key-id".into(),
        ));
    }
    let mut random = zeroize::Zeroizing::new([0u8; 48]);
    if ring::rand::SystemRandom::new()
        .fill(random.as_mut())
        .is_err()
    {
        return Err((done, "kms.encrypt", "random source unavailable".into()));
    }
    let plaintext = random[..32].to_vec();
    let uid = random[32..].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    let encrypted = match client
        .encrypt(EncryptRequest {
            plaintext: plaintext.clone(),
            uid: format!("{uid}-encrypt"),
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(e) => return Err((done, "kms.encrypt", grpc_message(&e))),
    };
    if encrypted.ciphertext.is_empty() {
        return Err((done, "kms.encrypt", "empty ciphertext".into()));
    }
    if encrypted.key_id != key_id.as_str() {
        return Err((done, "kms.key_id", "key changed during probe".into()));
    }
    done.push((
        "kms.encrypt",
        "KMS Encrypt",
        CheckStatus::Pass,
        format!("{} ciphertext bytes", encrypted.ciphertext.len()),
    ));
    let decrypted = match client
        .decrypt(DecryptRequest {
            ciphertext: encrypted.ciphertext,
            uid: format!("{uid}-decrypt"),
            key_id: encrypted.key_id,
            annotations: encrypted.annotations,
        })
        .await
    {
        Ok(r) => zeroize::Zeroizing::new(r.into_inner().plaintext),
        Err(e) => return Err((done, "kms.decrypt", grpc_message(&e))),
    };
    if *decrypted != plaintext {
        return Err((done, "kms.decrypt", "decrypted bytes differ".into()));
    }
    done.push((
        "kms.decrypt",
        "KMS Decrypt round trip",
        CheckStatus::Pass,
        String::new(),
    ));
    done.push((
        "kms.key_id",
        "Key ID",
        CheckStatus::Pass,
        key_id.as_str().to_owned(),
    ));
    Ok(done)
}
