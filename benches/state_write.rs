//! Latency of the durable state write path (`registry::save`: temp file,
//! fsync, rename, directory fsync, then the same for the checkpoint), the
//! cost paid once per registry change (new version seen, promotion, …).
//!
//! Run: `cargo bench --bench state_write [-- DIR]` (default: a temp dir;
//! pass a directory on the disk that will hold `/var/lib/openbao-kms/state`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bao_kms_provider::identity::Scope;
use bao_kms_provider::openbao::KeyMetadata;
use bao_kms_provider::registry::{StatePaths, bootstrap_state, save};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let base = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map_or_else(std::env::temp_dir, Into::into);
    let dir = base.join(format!("state-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    let paths = StatePaths::new(&dir.join("key-registry.json"));
    let scope = Arc::new(Scope {
        provider_name: "openbao-kms-workload-a".into(),
        cluster_id: "workload-a".into(),
        openbao_instance_id: "bao-prod-a".into(),
        openbao_namespace: String::new(),
        transit_mount_id: "transit-prod-primary".into(),
        transit_key_lineage_id: "0123456789abcdef0123456789abcdef".into(),
    });
    let meta = KeyMetadata {
        latest_version: 1,
        keys: [("1".to_owned(), 1_700_000_060)].into(),
        ..KeyMetadata::default()
    };
    let mut state = bootstrap_state(
        &scope,
        &format!("cfg1.{}", "A".repeat(43)),
        &meta,
        1_700_000_100,
    )
    .unwrap();
    let n = if full { 500 } else { 20 };
    let mut samples: Vec<Duration> = Vec::with_capacity(n);
    for _ in 0..n {
        state = state
            .successor(state.active_key_id.clone(), state.snapshots.clone())
            .unwrap();
        let started = Instant::now();
        save(&paths, &state).unwrap();
        samples.push(started.elapsed());
    }
    samples.sort();
    let pct =
        |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "state save (state + checkpoint, 2x fsync + 2x dir fsync) on {}",
        base.display()
    );
    println!(
        "n={n} p50={:.3} ms p95={:.3} ms p99={:.3} ms max={:.3} ms",
        pct(0.5),
        pct(0.95),
        pct(0.99),
        pct(1.0)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
