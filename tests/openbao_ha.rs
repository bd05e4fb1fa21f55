//! OpenBao the way production runs it: a three-node raft cluster (issue 12,
//! lanes 1 and 2), real `bao` 2.7.2 servers on loopback.
//!
//! Each test drives a load of Encrypts and Decrypts through the real socket
//! while a node dies, and asserts the correctness properties: every
//! ciphertext still decrypts, every failure is a bounded class and no call
//! hangs, Status recovers without a restart, and no request goes anywhere but
//! the configured addresses. How long the failover took (the longest gap
//! between successes, the error count) depends on the machine, so it is
//! printed, not asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bao_kms_provider::kms::proto::EncryptResponse;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::cluster::{Cluster, SERVER_NAME, Trap};
use support::http::{http, value};
use support::kms::{Client, decrypt, encrypt, status, try_encrypt, wait_for_status};
use support::marked_seed;
use support::provider::{Provider, Setup};
use tonic::Code;

const LOGIN: &str = "auth/k8s-jwt/login";
const RENEW: &str = "auth/token/renew-self";
const DECRYPT: &str = "transit/decrypt/k8s-etcd";
/// No single call may take longer than this: `openbao.timeout` is 2 s, so
/// anything near it is a hang, however loaded the machine.
const HANG: Duration = Duration::from_secs(30);
const WORKERS: u8 = 4;

/// One call of the load.
struct Outcome {
    at: Duration,
    encrypt: bool,
    result: Result<(), Code>,
}

/// What a load run saw: every call, the Status answers, and the
/// ciphertexts Encrypt returned (tag, response).
#[derive(Default)]
struct Record {
    calls: Vec<Outcome>,
    statuses: Vec<(Duration, String)>,
    sealed: Vec<(u8, EncryptResponse)>,
}

/// Encrypts and Decrypts from [`WORKERS`] clients and a Status poller,
/// until `stop`; times are measured from `t0`.
struct Load {
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(
        provider: &Provider,
        earlier: Arc<Vec<(u8, EncryptResponse)>>,
        t0: Instant,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Mutex::new(Record::default()));
        let mut tasks = Vec::new();
        for w in 0..WORKERS {
            let mut client = provider.client().await;
            let (stop, record, earlier) = (stop.clone(), record.clone(), earlier.clone());
            tasks.push(tokio::spawn(async move {
                let mut n: usize = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let encrypt = n.is_multiple_of(3);
                    let result = if encrypt {
                        let tag = 100 + w;
                        match call(try_encrypt(&mut client, tag)).await {
                            Ok(sealed) => {
                                record.lock().unwrap().sealed.push((tag, sealed));
                                Ok(())
                            }
                            Err(code) => Err(code),
                        }
                    } else {
                        let (tag, sealed) = &earlier[(n * 7 + usize::from(w)) % earlier.len()];
                        match call(decrypt(&mut client, sealed)).await {
                            Ok(plain) => {
                                assert_eq!(plain, marked_seed(*tag), "a wrong plaintext");
                                Ok(())
                            }
                            Err(code) => Err(code),
                        }
                    };
                    record.lock().unwrap().calls.push(Outcome {
                        at: t0.elapsed(),
                        encrypt,
                        result,
                    });
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        let mut client = provider.client().await;
        let (stop2, record2) = (stop.clone(), record.clone());
        tasks.push(tokio::spawn(async move {
            while !stop2.load(Ordering::Relaxed) {
                let (healthz, _) = tokio::time::timeout(HANG, status(&mut client))
                    .await
                    .expect("Status never hangs");
                record2
                    .lock()
                    .unwrap()
                    .statuses
                    .push((t0.elapsed(), healthz));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
        Load {
            stop,
            record,
            tasks,
        }
    }

    async fn finish(self) -> Record {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("a load task failed");
        }
        Arc::try_unwrap(self.record)
            .ok()
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

/// One KMS call, bounded: a call that does not return within [`HANG`] fails the test.
async fn call<T>(
    f: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, Code> {
    tokio::time::timeout(HANG, f)
        .await
        .expect("a KMS call hung")
        .map_err(|s| s.code())
}

/// Errors by code, the longest gap between successes after `from` (either
/// kind), and the longest span Status was not `ok`.
struct Summary {
    errors: BTreeMap<String, usize>,
    calls: usize,
    gap: Duration,
    unhealthy: Duration,
}

fn summarize(record: &Record, from: Duration) -> Summary {
    let mut errors = BTreeMap::new();
    for c in &record.calls {
        if let Err(code) = c.result {
            let kind = if c.encrypt { "encrypt" } else { "decrypt" };
            *errors.entry(format!("{kind} {code:?}")).or_default() += 1;
        }
    }
    let mut ok: Vec<Duration> = record
        .calls
        .iter()
        .filter(|c| c.result.is_ok() && c.at >= from)
        .map(|c| c.at)
        .collect();
    ok.insert(0, from);
    ok.sort();
    let gap = ok.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    let mut unhealthy = Duration::ZERO;
    let mut since = None;
    for (at, healthz) in &record.statuses {
        match (healthz == "ok", since) {
            (false, None) => since = Some(*at),
            (true, Some(s)) => {
                unhealthy = unhealthy.max(*at - s);
                since = None;
            }
            _ => {}
        }
    }
    if let (Some(s), Some((last, _))) = (since, record.statuses.last()) {
        unhealthy = unhealthy.max(*last - s);
    }
    Summary {
        errors,
        calls: record.calls.len(),
        gap,
        unhealthy,
    }
}

/// Every failure is one of the bounded answers a client retries: OpenBao
/// unavailable (a redirect, no active node, a dead node), a deadline, or
/// Encrypt refused while Status is unhealthy. Never Unauthenticated (the
/// token must survive a failover), Internal or Unknown.
fn assert_bounded(record: &Record, provider: &Provider) {
    for c in &record.calls {
        if let Err(code) = c.result {
            let allowed = matches!(code, Code::Unavailable | Code::DeadlineExceeded)
                || (c.encrypt && code == Code::FailedPrecondition);
            assert!(
                allowed,
                "{} at {:?} failed with {code:?}\n{}",
                if c.encrypt { "Encrypt" } else { "Decrypt" },
                c.at,
                provider.logs()
            );
        }
    }
}

/// Every ciphertext made before or during the failover still decrypts.
async fn assert_all_decrypt(
    client: &mut Client,
    earlier: &[(u8, EncryptResponse)],
    record: &Record,
) {
    for (tag, sealed) in earlier.iter().chain(record.sealed.iter()) {
        let plain = call(decrypt(client, sealed))
            .await
            .expect("an earlier ciphertext decrypts");
        assert_eq!(plain, marked_seed(*tag));
    }
}

/// Successful logins and renewals, from the response entries of every node's
/// audit log (a standby forwards them, so the active node logs them).
fn token_grants(cluster: &Cluster) -> usize {
    (0..3)
        .flat_map(|i| audit_lines(cluster, i))
        .filter(|v| v["type"] == "response")
        .filter(|v| v["request"]["path"] == LOGIN || v["request"]["path"] == RENEW)
        .filter(|v| v["error"].as_str().unwrap_or_default().is_empty())
        .count()
}

fn audit_lines(cluster: &Cluster, i: usize) -> Vec<Value> {
    std::fs::read_to_string(cluster.audit_log(i))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn preload(client: &mut Client, count: u8) -> Arc<Vec<(u8, EncryptResponse)>> {
    let mut earlier = Vec::new();
    for tag in 0..count {
        earlier.push((tag, encrypt(client, tag).await));
    }
    Arc::new(earlier)
}

fn print_summary(lane: &str, s: &Summary, extra: &str) {
    eprintln!(
        "[{lane}] calls {} errors {:?} longest gap between successes {:?} longest non-ok Status span {:?} {extra}",
        s.calls, s.errors, s.gap, s.unhealthy
    );
}

/// Lane 1: the provider points at a standby; the leader is killed under load.
#[tokio::test(flavor = "multi_thread")]
async fn leader_loss_under_load_keeps_every_ciphertext_readable_and_recovers() {
    let mut cluster = Cluster::start();
    // Short leases, so renew-self is due while writes answer 307.
    cluster.set_token_ttl("30s", "1h");
    let leader = cluster.leader();
    let standby = cluster.standbys()[0];
    let setup = Setup {
        tls_server_name: SERVER_NAME.into(),
        probe_interval: "1s",
        deep_probe_interval: "5s",
        max_staleness: "10s",
        // Renewal every ~3 s: some land inside the window of redirects.
        login_before_expiry: "27s",
        renewal_increment: "30s",
        ..Setup::for_address(&cluster.addr(standby), cluster.ca_file())
    };
    let provider = Provider::start(&cluster, &setup);
    let pid = provider.pid();
    let mut client = provider.client().await;
    let (_, key_id) = status(&mut client).await;
    let earlier = preload(&mut client, 24).await;

    let t0 = Instant::now();
    let load = Load::start(&provider, earlier.clone(), t0).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let killed_at = t0.elapsed();
    cluster.kill(leader);
    // Anything that followed a Location naming the dead leader lands here.
    let trap = Trap::on(&cluster, leader);
    let new_leader = tokio::task::block_in_place(|| cluster.new_leader(leader));
    let elected_at = t0.elapsed();
    let grants_at_election = token_grants(&cluster);
    // Ride well past the ~13 s of redirects, and until a token was renewed or
    // re-obtained through the new leader.
    let deadline = Instant::now() + Duration::from_secs(90);
    while t0.elapsed() < elected_at + Duration::from_secs(25)
        || token_grants(&cluster) <= grants_at_election
    {
        assert!(
            Instant::now() < deadline,
            "no renewal or login after the election:\n{}",
            provider.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let record = load.finish().await;
    let grants_after = token_grants(&cluster) - grants_at_election;

    assert_bounded(&record, &provider);
    assert_all_decrypt(&mut client, &earlier, &record).await;
    let back = wait_for_status(&mut client, Duration::from_secs(30), "healthy", |h, _| {
        h == "ok"
    })
    .await;
    assert_eq!(back, key_id, "same key");
    try_encrypt(&mut client, 7)
        .await
        .expect("Encrypt works after the failover");
    assert_eq!(provider.pid(), pid, "no restart");
    assert_eq!(
        trap.connections(),
        0,
        "a request followed a redirect to the dead leader"
    );
    let (_, scrape) = http("GET", &provider.metrics_address, "/metrics");
    let refused_writes: f64 = ["token_renew_self", "jwt_login"]
        .iter()
        .map(|op| {
            value(
                &scrape,
                &format!("openbao_kms_openbao_requests_total{{operation=\"{op}\",status=\"unavailable\"}}"),
            )
        })
        .sum();
    let summary = summarize(&record, killed_at);
    print_summary(
        "leader loss",
        &summary,
        &format!(
            "killed at {killed_at:?}, new leader at {elected_at:?} (node {new_leader}, the provider's standby: {}), renewals/logins answered 3xx/5xx {refused_writes}, token grants after the election {grants_after}, logins in total {}",
            new_leader == standby,
            cluster.audited_total(LOGIN)
        ),
    );

    // The killed node comes back as a standby and the cluster is whole again.
    drop(trap);
    tokio::task::block_in_place(|| {
        cluster.restart(leader);
        assert!(
            cluster.standbys().contains(&leader),
            "the restarted node rejoined"
        );
    });
}

enum Fault {
    Kill,
    Pause,
}

/// Lane 2: `openbao.address` is one name for all three nodes; the node the
/// provider talks to is killed or frozen under load.
async fn node_loss_behind_one_name(fault: Fault, lane: &str) {
    // Led by node 2, so the first address the name resolves to (127.0.0.1,
    // glibc's RFC 3484 order) is a standby: this lane is about the address,
    // lane 1 about the leader.
    let mut cluster = Cluster::start_led_by(2);
    let hosts = cluster.dir().join("hosts");
    let entries: String = (0..3)
        .map(|i| format!("{} {SERVER_NAME}\n", cluster.ip(i)))
        .collect();
    std::fs::write(&hosts, format!("127.0.0.1 localhost\n{entries}")).unwrap();
    let setup = Setup {
        tls_server_name: SERVER_NAME.into(),
        probe_interval: "1s",
        deep_probe_interval: "5s",
        max_staleness: "10s",
        hosts_file: Some(hosts),
        ..Setup::for_address(
            &format!("https://{SERVER_NAME}:{}", cluster.port()),
            cluster.ca_file(),
        )
    };
    let provider = Provider::start(&cluster, &setup);
    let pid = provider.pid();
    let mut client = provider.client().await;
    let earlier = preload(&mut client, 24).await;
    for (tag, sealed) in earlier.iter() {
        assert_eq!(
            decrypt(&mut client, sealed).await.unwrap(),
            marked_seed(*tag)
        );
    }
    let served: Vec<usize> = (0..3).map(|i| cluster.audited_count(i, DECRYPT)).collect();
    let talking = (0..3).max_by_key(|&i| served[i]).unwrap();
    let leader = tokio::task::block_in_place(|| cluster.leader());

    let t0 = Instant::now();
    let load = Load::start(&provider, earlier.clone(), t0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fault_at = t0.elapsed();
    let before: Vec<usize> = (0..3).map(|i| cluster.audited_count(i, DECRYPT)).collect();
    match fault {
        Fault::Kill => cluster.kill(talking),
        Fault::Pause => cluster.pause(talking),
    }
    // The provider has moved once the other nodes serve its Decrypts and a
    // whole window of calls succeeds.
    let deadline = Instant::now() + Duration::from_secs(60);
    let moved_at = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = t0.elapsed();
        let others: usize = (0..3)
            .filter(|&i| i != talking)
            .map(|i| cluster.audited_count(i, DECRYPT) - before[i])
            .sum();
        let recent_ok = {
            let record = load.record.lock().unwrap();
            let recent: Vec<&Outcome> = record
                .calls
                .iter()
                .filter(|c| c.at + Duration::from_secs(3) >= now)
                .collect();
            !recent.is_empty() && recent.iter().all(|c| c.result.is_ok())
        };
        if others > 0 && recent_ok && now > fault_at + Duration::from_secs(5) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the provider did not move off node {talking}:\n{}",
            provider.logs()
        );
    };
    // Keep going a while on the new address.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let record = load.finish().await;

    assert_bounded(&record, &provider);
    assert_all_decrypt(&mut client, &earlier, &record).await;
    wait_for_status(&mut client, Duration::from_secs(30), "healthy", |h, _| {
        h == "ok"
    })
    .await;
    assert_eq!(provider.pid(), pid, "no restart");
    let after: Vec<usize> = (0..3)
        .map(|i| cluster.audited_count(i, DECRYPT) - before[i])
        .collect();
    let summary = summarize(&record, fault_at);
    print_summary(
        lane,
        &summary,
        &format!(
            "node {talking} (leader: {}) lost at {fault_at:?}, steady on the others from {moved_at:?}; decrypts per node since {after:?}",
            talking == leader
        ),
    );
    if matches!(fault, Fault::Pause) {
        cluster.resume(talking);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_node_behind_one_name_is_left_for_another_address() {
    node_loss_behind_one_name(Fault::Kill, "killed node behind one name").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_node_behind_one_name_is_left_for_another_address() {
    node_loss_behind_one_name(Fault::Pause, "hung node behind one name").await;
}
