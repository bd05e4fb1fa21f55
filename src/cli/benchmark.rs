//! `benchmark`: how fast is this host's path to Transit (`--mode transit`,
//! the reference's report), and how fast is the running provider through
//! its socket under concurrency (`--mode socket`), including a decrypt storm
//! of many distinct ciphertexts at once, as after an apiserver restart.

use super::fields::Fields;
use super::{EXIT_CHECK_FAILED, EXIT_USAGE, Failure, Global, OutputFormat, output_format, runtime};
use crate::assemble::build_transit;
use crate::config::{Config, FsChecks};
use crate::kms::connect;
use crate::kms::proto::key_management_service_client::KeyManagementServiceClient;
use crate::kms::proto::{DecryptRequest, EncryptRequest, EncryptResponse, StatusRequest};
use ring::rand::SecureRandom as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const BENCHMARK_AAD: &[u8] = b"openbao-kubernetes-kms/benchmark-smoke/v1";

#[derive(Debug, clap::Args)]
pub struct Flags {
    /// transit: sequential Transit encrypt/decrypt with the configured credentials; socket: the KMS path under load
    #[arg(long, default_value = "transit")]
    mode: String,
    /// Round trips in transit mode
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    iterations: i64,
    /// Provider socket (socket mode)
    #[arg(long, default_value = "/run/openbao-kms/kms.sock")]
    socket: PathBuf,
    /// Concurrent callers (socket mode, 1-1024)
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How long to drive load (socket mode; Go duration, at most 1h)
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Plaintext bytes per Encrypt (socket mode, 1-512; the apiserver sends 32)
    #[arg(long, default_value_t = 32)]
    plaintext_size: usize,
    /// Distinct ciphertexts decrypted at once after the load phase (socket mode, 0-4096)
    #[arg(long, default_value_t = 256)]
    storm: usize,
    /// Report format: text or json
    #[arg(long, default_value = "text")]
    output: String,
}

/// `benchmark`: each mode's flag rules (exit 2) before any work.
pub fn run(global: &Global, flags: &Flags) -> Result<(), Failure> {
    let format = output_format(&flags.output)?;
    let usage = |m: &str| Failure::new(EXIT_USAGE, m);
    let report = match flags.mode.trim().to_ascii_lowercase().as_str() {
        "transit" => {
            let iterations = usize::try_from(flags.iterations)
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| usage("--iterations must be between 1 and 100000"))?;
            let config = global.load_config(FsChecks::Skip)?;
            runtime()?.block_on(transit(&config, iterations))?
        }
        "socket" => {
            let duration = crate::config::parse_go_duration(&flags.duration)
                .filter(|n| *n > 0 && *n <= 3_600_000_000_000)
                .map(|n| Duration::from_nanos(n.unsigned_abs()))
                .ok_or_else(|| {
                    usage("--duration must be a positive duration of at most 1h, such as 10s")
                })?;
            if !(1..=1024).contains(&flags.concurrency) {
                return Err(usage("--concurrency must be between 1 and 1024"));
            }
            if !(1..=512).contains(&flags.plaintext_size) {
                return Err(usage("--plaintext-size must be between 1 and 512"));
            }
            if flags.storm > 4096 {
                return Err(usage("--storm must be at most 4096"));
            }
            if !flags.socket.is_absolute() {
                return Err(usage("--socket must be an absolute path"));
            }
            let run = SocketRun {
                socket: &flags.socket,
                concurrency: flags.concurrency,
                duration,
                plaintext_size: flags.plaintext_size,
                storm: flags.storm,
            };
            runtime()?.block_on(socket(run))?
        }
        _ => return Err(usage("--mode must be transit or socket")),
    };
    if format == OutputFormat::Text {
        println!("benchmark");
    }
    print!("{}", report.render(format));
    Ok(())
}

fn random(len: usize) -> Result<Vec<u8>, Failure> {
    let mut bytes = vec![0u8; len];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Failure::new(EXIT_CHECK_FAILED, "random source unavailable"))?;
    Ok(bytes)
}

fn ms(d: Duration) -> f64 {
    // Microseconds ÷ 1000, as the reference prints them.
    d.as_micros() as f64 / 1000.0
}

fn three(v: f64) -> serde_json::Value {
    serde_json::Value::String(format!("{v:.3}"))
}

/// `--mode transit`: the reference's sequential encrypt/decrypt smoke against
/// Transit itself (not the provider), with its exact output keys.
async fn transit(config: &Config, iterations: usize) -> Result<Fields, Failure> {
    let prerequisites = |_| Failure::new(EXIT_CHECK_FAILED, "benchmark prerequisites failed");
    let transit = build_transit(config).map_err(|e| prerequisites(e.to_string()))?;
    let meta = transit
        .read_key()
        .await
        .map_err(|e| prerequisites(e.to_string()))?;
    let version = u64::try_from(meta.latest_version).map_err(|_| prerequisites(String::new()))?;
    let (mut enc, mut dec) = (
        Vec::with_capacity(iterations),
        Vec::with_capacity(iterations),
    );
    for _ in 0..iterations {
        let plaintext = zeroize::Zeroizing::new(random(32)?);
        let started = Instant::now();
        let ciphertext = transit
            .encrypt(&plaintext, BENCHMARK_AAD, version)
            .await
            .map_err(|e| Failure::new(EXIT_CHECK_FAILED, format!("benchmark failed: {e}")))?;
        enc.push(started.elapsed());
        let started = Instant::now();
        let back = transit
            .decrypt(ciphertext.expose(), BENCHMARK_AAD)
            .await
            .map_err(|e| Failure::new(EXIT_CHECK_FAILED, format!("benchmark failed: {e}")))?;
        dec.push(started.elapsed());
        if back.expose() != plaintext.as_slice() {
            return Err(Failure::new(
                EXIT_CHECK_FAILED,
                "benchmark failed: round trip mismatch",
            ));
        }
    }
    enc.sort();
    dec.sort();
    let mut f = Fields::default();
    f.put("iterations", iterations);
    for (name, samples) in [("transit_encrypt", &enc), ("transit_decrypt", &dec)] {
        let key = |suffix: &str| -> &'static str {
            match (name, suffix) {
                ("transit_encrypt", "min") => "transit_encrypt_ms_min",
                ("transit_encrypt", "p50") => "transit_encrypt_ms_p50",
                ("transit_encrypt", _) => "transit_encrypt_ms_max",
                ("transit_decrypt", "min") => "transit_decrypt_ms_min",
                ("transit_decrypt", "p50") => "transit_decrypt_ms_p50",
                _ => "transit_decrypt_ms_max",
            }
        };
        let (first, mid, last) = (
            samples[0],
            samples[samples.len() / 2],
            samples[samples.len() - 1],
        );
        f.put(key("min"), three(ms(first)));
        f.put(key("p50"), three(ms(mid)));
        f.put(key("max"), three(ms(last)));
    }
    Ok(f)
}

/// Outcome of one operation kind under load.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
}

impl Tally {
    fn record(&mut self, started: Instant, ok: bool) {
        self.record_elapsed(started.elapsed(), ok);
    }

    fn record_elapsed(&mut self, elapsed: Duration, ok: bool) {
        if ok {
            self.latencies.push(elapsed);
        } else {
            self.errors += 1;
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
    }

    /// Nearest-rank percentile in milliseconds.
    fn report(mut self, f: &mut Fields, keys: [&'static str; 7], elapsed: Duration) {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| -> f64 {
            if n == 0 {
                return 0.0;
            }
            let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
            ms(self.latencies[rank - 1])
        };
        f.put(keys[0], n);
        f.put(keys[1], self.errors);
        f.put(
            keys[2],
            three(n as f64 / elapsed.as_secs_f64().max(f64::EPSILON)),
        );
        f.put(keys[3], three(pct(0.50)));
        f.put(keys[4], three(pct(0.95)));
        f.put(keys[5], three(pct(0.99)));
        f.put(
            keys[6],
            three(self.latencies.last().map_or(0.0, |d| ms(*d))),
        );
    }
}

macro_rules! keys {
    ($p:literal) => {
        [
            concat!($p, "_count"),
            concat!($p, "_errors"),
            concat!($p, "_ops_per_sec"),
            concat!($p, "_ms_p50"),
            concat!($p, "_ms_p95"),
            concat!($p, "_ms_p99"),
            concat!($p, "_ms_max"),
        ]
    };
}

/// Settings of `--mode socket`.
struct SocketRun<'a> {
    pub socket: &'a Path,
    pub concurrency: usize,
    pub duration: Duration,
    pub plaintext_size: usize,
    pub storm: usize,
}

type Client = KeyManagementServiceClient<Channel>;

async fn encrypt(client: &mut Client, plaintext: Vec<u8>, uid: String) -> Option<EncryptResponse> {
    client
        .encrypt(EncryptRequest { plaintext, uid })
        .await
        .ok()
        .map(tonic::Response::into_inner)
}

fn decrypt_request(e: &EncryptResponse, uid: String) -> DecryptRequest {
    DecryptRequest {
        ciphertext: e.ciphertext.clone(),
        uid,
        key_id: e.key_id.clone(),
        annotations: e.annotations.clone(),
    }
}

/// One worker: Status, Encrypt, Decrypt in turn until the deadline.
async fn worker(mut client: Client, deadline: Instant, size: usize) -> Result<[Tally; 3], Failure> {
    let mut tallies: [Tally; 3] = Default::default();
    let mut i = 0u64;
    while Instant::now() < deadline {
        i += 1;
        let started = Instant::now();
        let ok = client
            .status(StatusRequest {})
            .await
            .is_ok_and(|r| r.get_ref().healthz == "ok");
        tallies[0].record(started, ok);
        let started = Instant::now();
        let sealed = encrypt(&mut client, random(size)?, format!("benchmark-{i}")).await;
        tallies[1].record(started, sealed.is_some());
        if let Some(sealed) = sealed {
            let started = Instant::now();
            let ok = client
                .decrypt(decrypt_request(&sealed, format!("benchmark-{i}")))
                .await
                .is_ok();
            tallies[2].record(started, ok);
        }
    }
    Ok(tallies)
}

/// `--mode socket`: the real KMS path through the running provider.
async fn socket(run: SocketRun<'_>) -> Result<Fields, Failure> {
    let unreachable = |_| Failure::new(EXIT_CHECK_FAILED, "cannot connect to the provider socket");
    let client = connect(run.socket).await.map_err(unreachable)?;
    let started = Instant::now();
    let deadline = started + run.duration;
    let mut tasks = Vec::new();
    for _ in 0..run.concurrency {
        tasks.push(tokio::spawn(worker(
            client.clone(),
            deadline,
            run.plaintext_size,
        )));
    }
    let mut totals: [Tally; 3] = Default::default();
    for task in tasks {
        let tallies = task
            .await
            .map_err(|_| Failure::new(EXIT_CHECK_FAILED, "benchmark worker failed"))??;
        for (total, t) in totals.iter_mut().zip(tallies) {
            total.merge(t);
        }
    }
    let elapsed = started.elapsed();

    // Decrypt storm: distinct ciphertexts (as distinct DEK seeds after an
    // apiserver restart), all requested at once.
    let mut sealed = Vec::with_capacity(run.storm);
    let mut seeder = client.clone();
    for i in 0..run.storm {
        match encrypt(
            &mut seeder,
            random(run.plaintext_size)?,
            format!("storm-seed-{i}"),
        )
        .await
        {
            Some(e) => sealed.push(e),
            None => {
                return Err(Failure::new(
                    EXIT_CHECK_FAILED,
                    "benchmark failed: encrypt for the storm",
                ));
            }
        }
    }
    let storm_started = Instant::now();
    let mut storm_tasks = Vec::new();
    for (i, e) in sealed.iter().enumerate() {
        let mut c = client.clone();
        let request = decrypt_request(e, format!("storm-{i}"));
        storm_tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = c.decrypt(request).await.is_ok();
            (t.elapsed(), ok)
        }));
    }
    let mut storm = Tally::default();
    for task in storm_tasks {
        let (elapsed, ok) = task
            .await
            .map_err(|_| Failure::new(EXIT_CHECK_FAILED, "benchmark worker failed"))?;
        storm.record_elapsed(elapsed, ok);
    }
    let storm_elapsed = storm_started.elapsed();

    let mut f = Fields::default();
    f.put("mode", "socket");
    f.put("concurrency", run.concurrency);
    f.put("duration_ms", three(ms(elapsed)));
    f.put("plaintext_bytes", run.plaintext_size);
    let [status, enc, dec] = totals;
    status.report(&mut f, keys!("status"), elapsed);
    enc.report(&mut f, keys!("encrypt"), elapsed);
    dec.report(&mut f, keys!("decrypt"), elapsed);
    f.put("storm_ciphertexts", run.storm);
    f.put("storm_duration_ms", three(ms(storm_elapsed)));
    storm.report(&mut f, keys!("storm_decrypt"), storm_elapsed);
    Ok(f)
}
