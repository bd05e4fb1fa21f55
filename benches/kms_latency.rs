//! Latency, overhead and memory of the provider on this machine, measured on
//! the real path: the release binary, its Unix socket, a real OpenBao over
//! HTTPS with JWT auth. Next to each KMS call it times the raw Transit HTTP
//! call (same HTTPS client, same machine) so the provider's own cost shows.
//!
//! Run: `cargo bench --bench kms_latency` (prints a table and one JSON line).
//! Under `cargo test` it does a short smoke run only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use bao_kms_provider::kms::proto::key_management_service_client::KeyManagementServiceClient;
use bao_kms_provider::kms::proto::{DecryptRequest, EncryptRequest, StatusRequest};
use bao_kms_provider::openbao::{Call, HttpClient, Operation, TlsSettings};
use bao_kms_provider::secret::SecretString;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::time::{Duration, Instant};
use support::openbao::{KEY_NAME, Lab, TRANSIT_MOUNT};
use support::provider::{Provider, Setup};
use tonic::transport::Channel;

struct Stats {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        let mut s = self.samples.clone();
        s.sort();
        let idx = ((s.len() as f64 - 1.0) * p).round() as usize;
        s[idx].as_secs_f64() * 1000.0
    }

    fn json(&self) -> String {
        format!(
            "\"{}\":{{\"n\":{},\"p50_ms\":{:.3},\"p95_ms\":{:.3},\"p99_ms\":{:.3}}}",
            self.name,
            self.samples.len(),
            self.pct(0.50),
            self.pct(0.95),
            self.pct(0.99)
        )
    }
}

async fn time<F, Fut>(name: &'static str, n: usize, mut f: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        f(i).await;
        samples.push(started.elapsed());
    }
    Stats { name, samples }
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn kms_round(
    client: &mut KeyManagementServiceClient<Channel>,
    plaintext: &[u8],
) -> (Vec<u8>, String, std::collections::BTreeMap<String, Vec<u8>>) {
    let e = client
        .encrypt(EncryptRequest {
            plaintext: plaintext.to_vec(),
            uid: "bench".into(),
        })
        .await
        .unwrap()
        .into_inner();
    (e.ciphertext, e.key_id, e.annotations)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (status_n, crypt_n) = if full { (10_000, 2_000) } else { (50, 20) };

    let lab = tokio::task::spawn_blocking(Lab::start).await.unwrap();
    let setup = Setup {
        log_level: "warn",
        probe_interval: "30s",
        deep_probe_interval: "5m",
        max_staleness: "2m",
        ..Setup::new(&lab)
    };
    let mut provider = Provider::prepare(&lab, &setup);
    let spawned = Instant::now();
    provider.spawn();
    provider.wait_ready(Duration::from_secs(30));
    let ready = spawned.elapsed();
    let pid = provider.pid().as_raw();
    let rss_start = rss_kib(pid);
    let mut client = provider.client().await;
    let seed = [7u8; 32];

    // Warm up connections and the token on both paths.
    for _ in 0..50 {
        client.status(StatusRequest {}).await.unwrap();
        kms_round(&mut client, &seed).await;
    }
    let status = time("kms_status", status_n, |_| {
        let mut c = client.clone();
        async move {
            c.status(StatusRequest {}).await.unwrap();
        }
    })
    .await;
    let (ct, key_id, annotations) = kms_round(&mut client, &seed).await;
    let encrypt = time("kms_encrypt", crypt_n, |_| {
        let mut c = client.clone();
        async move {
            kms_round(&mut c, &seed).await;
        }
    })
    .await;
    let decrypt = time("kms_decrypt", crypt_n, |_| {
        let mut c = client.clone();
        let req = DecryptRequest {
            ciphertext: ct.clone(),
            uid: "bench".into(),
            key_id: key_id.clone(),
            annotations: annotations.clone(),
        };
        async move {
            c.decrypt(req).await.unwrap();
        }
    })
    .await;
    let rss_after = rss_kib(pid);
    let calls = status_n + 2 * crypt_n + 100;

    // The raw Transit HTTP calls the provider makes, with the same client and AAD size.
    let http = HttpClient::new(
        &lab.addr(),
        "",
        &TlsSettings {
            ca_cert_file: lab.ca_file(),
            server_name: "localhost",
        },
    )
    .unwrap();
    let token = SecretString::new(lab.root_token().to_owned());
    let aad = STANDARD.encode([b'a'; 420]);
    let enc_body = format!(
        "{{\"plaintext\":\"{}\",\"associated_data\":\"{aad}\",\"key_version\":1}}",
        STANDARD.encode(seed)
    );
    let enc_path = format!("{TRANSIT_MOUNT}/encrypt/{KEY_NAME}");
    let dec_path = format!("{TRANSIT_MOUNT}/decrypt/{KEY_NAME}");
    let send = |op, path: String, body: String| {
        let http = http.clone();
        let token = token.clone();
        async move {
            http.send(
                Call {
                    op,
                    method: http::Method::POST,
                    path: &path,
                    token: Some(&token),
                    body: Some(body.into_bytes()),
                    limit: 1 << 18,
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap()
        }
    };
    let answer = send(
        Operation::TransitEncrypt,
        enc_path.clone(),
        enc_body.clone(),
    )
    .await;
    let raw_ct =
        serde_json::from_slice::<serde_json::Value>(&answer.body).unwrap()["data"]["ciphertext"]
            .as_str()
            .unwrap()
            .to_owned();
    let dec_body = format!("{{\"ciphertext\":\"{raw_ct}\",\"associated_data\":\"{aad}\"}}");
    for _ in 0..50 {
        send(
            Operation::TransitEncrypt,
            enc_path.clone(),
            enc_body.clone(),
        )
        .await;
    }
    let raw_encrypt = time("transit_encrypt_raw", crypt_n, |_| {
        send(
            Operation::TransitEncrypt,
            enc_path.clone(),
            enc_body.clone(),
        )
        .map_unit()
    })
    .await;
    let raw_decrypt = time("transit_decrypt_raw", crypt_n, |_| {
        send(
            Operation::TransitDecrypt,
            dec_path.clone(),
            dec_body.clone(),
        )
        .map_unit()
    })
    .await;

    // Decrypt storm: 64 concurrent callers, as at an apiserver restart.
    let storm_started = Instant::now();
    let storm_n = if full { 64 * 50 } else { 64 };
    let mut tasks = Vec::new();
    for w in 0..64 {
        let mut c = client.clone();
        let req = DecryptRequest {
            ciphertext: ct.clone(),
            uid: "storm".into(),
            key_id: key_id.clone(),
            annotations: annotations.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for _ in 0..storm_n / 64 {
                let t = Instant::now();
                c.decrypt(req.clone()).await.unwrap();
                lat.push(t.elapsed());
            }
            let _ = w;
            lat
        }));
    }
    let mut storm = Stats {
        name: "kms_decrypt_storm64",
        samples: Vec::new(),
    };
    for t in tasks {
        storm.samples.extend(t.await.unwrap());
    }
    let storm_secs = storm_started.elapsed().as_secs_f64();

    println!(
        "bao-kms-provider latency ({} mode)",
        if full { "bench" } else { "smoke" }
    );
    println!(
        "{:<22} {:>7} {:>9} {:>9} {:>9}",
        "operation", "n", "p50 ms", "p95 ms", "p99 ms"
    );
    for s in [
        &status,
        &encrypt,
        &raw_encrypt,
        &decrypt,
        &raw_decrypt,
        &storm,
    ] {
        println!(
            "{:<22} {:>7} {:>9.3} {:>9.3} {:>9.3}",
            s.name,
            s.samples.len(),
            s.pct(0.5),
            s.pct(0.95),
            s.pct(0.99)
        );
    }
    println!(
        "encrypt overhead p50: {:.3} ms; decrypt overhead p50: {:.3} ms",
        encrypt.pct(0.5) - raw_encrypt.pct(0.5),
        decrypt.pct(0.5) - raw_decrypt.pct(0.5)
    );
    println!(
        "decrypt storm: {:.0} ops/s over {} calls",
        storm.samples.len() as f64 / storm_secs,
        storm.samples.len()
    );
    println!(
        "start to ready: {:.1} ms; RSS after start {} KiB, after {} calls {} KiB",
        ready.as_secs_f64() * 1000.0,
        rss_start,
        calls,
        rss_after
    );
    println!(
        "{{{},{},{},{},{},{},\"ready_ms\":{:.1},\"rss_start_kib\":{rss_start},\"rss_after_kib\":{rss_after},\"calls\":{calls}}}",
        status.json(),
        encrypt.json(),
        raw_encrypt.json(),
        decrypt.json(),
        raw_decrypt.json(),
        storm.json(),
        ready.as_secs_f64() * 1000.0
    );
    assert!(provider.stop().success());
}

trait MapUnit {
    fn map_unit(self) -> impl std::future::Future<Output = ()>;
}

impl<F: std::future::Future> MapUnit for F {
    async fn map_unit(self) {
        self.await;
    }
}
