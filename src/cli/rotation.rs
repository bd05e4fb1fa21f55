//! `rotation-plan`, `verify-rotation`, `retire-versions`, `restore-versions`:
//! read the local registry and live Transit metadata, explain or apply an
//! operator transition. OpenBao is only ever read, never modified.

use super::fields::Fields;
use super::{EXIT_CHECK_FAILED, EXIT_USAGE, Failure, Global, OutputFormat, output_format, runtime};
use crate::assemble::{build_transit, keeper_settings};
use crate::clock::{rfc3339, unix_now};
use crate::config::{Config, FsChecks};
use crate::identity::{Scope, hash_value};
use crate::openbao::KeyMetadata;
use crate::registry::{
    CheckpointStatus, Mode, Record, RecordState, RotationRules, StateFile, StatePaths, acquire,
    bootstrap_state, check_retained, inspect, observe, restore, retire_before, save,
};
use serde_json::Value;
use std::sync::Arc;

const VERIFY_LIMITATIONS: &str = "local registry and Transit metadata cannot prove every Kubernetes object or retained backup has been rewritten";
const RETIRE_LIMITATIONS: &str = "removal is local to this node's registry: run it on every node; Transit key versions are not modified, and lowering OpenBao minimums does not restore a removed version (use restore-versions)";

#[derive(Debug, clap::Args)]
pub struct PlanFlags {
    /// Report format: text or json
    #[arg(long, default_value = "text")]
    output: String,
}

#[derive(Debug, clap::Args)]
pub struct RetireFlags {
    /// Remove retired versions below this version (> 1, at most the active version)
    #[arg(long, value_name = "N")]
    before_version: Option<u64>,
    #[command(flatten)]
    change: ChangeFlags,
}

#[derive(Debug, clap::Args)]
pub struct RestoreFlags {
    /// Versions to restore, comma-separated (e.g. 1,2)
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    versions: Vec<u64>,
    #[command(flatten)]
    change: ChangeFlags,
}

/// What `retire-versions` and `restore-versions` share: plan or apply, and
/// the report format.
#[derive(Debug, clap::Args)]
struct ChangeFlags {
    /// Write the change (the provider must be stopped); needs --expected-state-hash
    #[arg(long)]
    apply: bool,
    /// stateHash of the reviewed plan
    #[arg(long, value_name = "HASH")]
    expected_state_hash: Option<String>,
    /// Report format: text or json
    #[arg(long, default_value = "text")]
    output: String,
}

/// `rotation-plan`.
pub fn run_plan(global: &Global, flags: &PlanFlags) -> Result<(), Failure> {
    run_plan_report(global, flags, false)
}

/// `verify-rotation`.
pub fn run_verify(global: &Global, flags: &PlanFlags) -> Result<(), Failure> {
    run_plan_report(global, flags, true)
}

fn run_plan_report(global: &Global, flags: &PlanFlags, verify: bool) -> Result<(), Failure> {
    let format = output_format(&flags.output)?;
    let config = global.load_config(FsChecks::Skip)?;
    let (fields, outcome) = runtime()?.block_on(plan(&config, verify));
    print!("{}", fields.render(format));
    outcome
}

/// `retire-versions`.
pub fn run_retire(global: &Global, flags: &RetireFlags) -> Result<(), Failure> {
    let format = output_format(&flags.change.output)?;
    let before = flags
        .before_version
        .ok_or_else(|| Failure::new(EXIT_USAGE, "--before-version is required"))?;
    run_change(global, &flags.change, format, Change::RetireBefore(before))
}

/// `restore-versions`.
pub fn run_restore(global: &Global, flags: &RestoreFlags) -> Result<(), Failure> {
    let format = output_format(&flags.change.output)?;
    if flags.versions.is_empty() {
        return Err(Failure::new(
            EXIT_USAGE,
            "--versions is required; --apply also requires --expected-state-hash from a reviewed plan",
        ));
    }
    run_change(
        global,
        &flags.change,
        format,
        Change::Restore(flags.versions.clone()),
    )
}

fn run_change(
    global: &Global,
    flags: &ChangeFlags,
    format: OutputFormat,
    what: Change,
) -> Result<(), Failure> {
    let expected = apply_hash(flags.apply, flags.expected_state_hash.as_deref())?;
    let config = global.load_config(FsChecks::Skip)?;
    let (fields, outcome) = runtime()?.block_on(change(&config, what, expected));
    print!("{}", fields.render(format));
    outcome
}

/// `--apply` needs the reviewed `--expected-state-hash`; a hash alone is a usage error.
fn apply_hash(apply: bool, hash: Option<&str>) -> Result<Option<&str>, Failure> {
    match (apply, hash) {
        (true, Some(h)) => Ok(Some(h)),
        (false, None) => Ok(None),
        (true, None) => Err(Failure::new(
            EXIT_USAGE,
            "--apply requires --expected-state-hash from a reviewed plan",
        )),
        (false, Some(_)) => Err(Failure::new(
            EXIT_USAGE,
            "--expected-state-hash is only used with --apply",
        )),
    }
}

struct Context {
    paths: StatePaths,
    fingerprint: String,
    scope: Arc<Scope>,
    rules: RotationRules,
    activation_delay_secs: i64,
}

impl Context {
    /// The keeper's own rules, so plans match what `serve` would enforce.
    fn new(config: &Config) -> Self {
        let settings = keeper_settings(config);
        Self {
            paths: StatePaths::new(&config.state.path),
            fingerprint: settings.fingerprint,
            scope: settings.scope,
            rules: settings.rules,
            activation_delay_secs: i64::try_from(settings.activation_delay.as_secs())
                .unwrap_or(i64::MAX),
        }
    }
}

/// Authenticates with the configured credentials and reads key metadata.
/// The error text is the bounded OpenBao/auth message, never a path or value.
async fn read_metadata(config: &Config) -> Result<KeyMetadata, String> {
    let transit = build_transit(config).map_err(|e| e.to_string())?;
    transit.read_key().await.map_err(|e| e.to_string())
}

fn pending(state: &StateFile) -> Option<&Record> {
    state
        .snapshots
        .iter()
        .find(|r| r.state == RecordState::Pending)
}

/// `rotation-plan` (and, with `verify`, `verify-rotation`).
async fn plan(config: &Config, verify: bool) -> (Fields, Result<(), Failure>) {
    let ctx = Context::new(config);
    let mut f = Fields::default();
    let local = inspect(&ctx.paths, &ctx.fingerprint, &ctx.scope);
    let meta = read_metadata(config).await;
    match &meta {
        Ok(_) => f.put("transitMetadataStatus", "pass"),
        Err(e) => {
            f.put("transitMetadataStatus", "fail");
            f.put("transitMetadataError", e.as_str());
        }
    }
    let mut outcome: Result<(), Failure> = meta
        .as_ref()
        .map(|_| ())
        .map_err(|_| Failure::new(EXIT_CHECK_FAILED, "transit metadata read failed"));
    match local {
        Err(e) => {
            f.put("stateLoaded", false);
            outcome = Err(Failure::new(EXIT_CHECK_FAILED, e.to_string()));
        }
        Ok(None) => {
            f.put("stateLoaded", false);
            f.put("checkpointStatus", "absent");
            // No state: only a first install (key still at version 1) is fine.
            if let Ok(meta) = &meta {
                match bootstrap_state(&ctx.scope, &ctx.fingerprint, meta, unix_now()) {
                    Ok(initial) => {
                        f.put("rotationState", "active");
                        f.put("activeKeyIdHash", hash_value(&initial.active_key_id));
                        f.put("activeTransitVersion", 1);
                        f.put("latestTransitVersion", meta.latest_version);
                    }
                    Err(reason) => {
                        f.put("rotationState", "unknown");
                        outcome = Err(Failure::new(
                            EXIT_CHECK_FAILED,
                            format!(
                                "no registry state and no first-install bootstrap possible: {reason}"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(Some((state, checkpoint))) => {
            describe_state(&mut f, &ctx, &state, checkpoint);
            if let Ok(meta) = &meta {
                f.put("latestTransitVersion", meta.latest_version);
                // Validate the way the provider would, without persisting anything.
                if let Err(reason) = observe(
                    &state,
                    meta,
                    &ctx.scope,
                    unix_now(),
                    ctx.rules,
                    Mode::Discover,
                ) {
                    f.put("validation", reason.as_str());
                    outcome = Err(Failure::new(
                        EXIT_CHECK_FAILED,
                        format!("registry does not validate against Transit: {reason}"),
                    ));
                }
            }
        }
    }
    if verify {
        f.put("confidence", "limited");
        f.put("limitations", VERIFY_LIMITATIONS);
    }
    (f, outcome)
}

fn describe_state(f: &mut Fields, ctx: &Context, state: &StateFile, checkpoint: CheckpointStatus) {
    f.put("stateLoaded", true);
    f.put("stateGeneration", state.generation);
    f.put("stateHash", state.current_hash.as_str());
    f.put("checkpointStatus", checkpoint.as_str());
    let pending = pending(state);
    f.put(
        "rotationState",
        if pending.is_some() {
            "pending"
        } else {
            "active"
        },
    );
    f.put("activeKeyIdHash", hash_value(&state.active_key_id));
    if let Some(active) = state.active_record() {
        f.put("activeTransitVersion", active.transit_version);
    }
    if let Some(p) = pending {
        f.put("pendingKeyIdHash", hash_value(&p.kubernetes_key_id));
        f.put("pendingTransitVersion", p.transit_version);
        f.put("pendingStableObservationCount", p.stable_observation_count);
        if p.stable_at_unix != 0 {
            // Indicative: the provider restarts the delay after every restart.
            f.put(
                "pendingPromotesAfter",
                rfc3339(p.stable_at_unix.saturating_add(ctx.activation_delay_secs)),
            );
        }
    }
}

fn version_items(records: &[Record]) -> Vec<Vec<(&'static str, Value)>> {
    records
        .iter()
        .map(|r| {
            vec![
                ("transitVersion", r.transit_version.into()),
                ("keyIdHash", hash_value(&r.kubernetes_key_id).into()),
            ]
        })
        .collect()
}

/// Which operator transition to plan or apply.
enum Change {
    RetireBefore(u64),
    Restore(Vec<u64>),
}

/// `retire-versions` / `restore-versions`: plan by default; with `apply`
/// (and the reviewed hash) persist under the writer lock.
async fn change(
    config: &Config,
    change: Change,
    apply: Option<&str>,
) -> (Fields, Result<(), Failure>) {
    let ctx = Context::new(config);
    let mut f = Fields::default();
    let fail = |m: String| Err(Failure::new(EXIT_CHECK_FAILED, m));
    // The lock comes first so nothing can change the state between our read and write.
    let _lock = match apply.map(|_| acquire(&ctx.paths)).transpose() {
        Ok(lock) => lock,
        Err(e) => return (f, fail(format!("{e} (stop the provider first)"))),
    };
    let state = match inspect(&ctx.paths, &ctx.fingerprint, &ctx.scope) {
        Ok(Some((state, _))) => state,
        Ok(None) => return (f, fail("no registry state to change".into())),
        Err(e) => return (f, fail(e.to_string())),
    };
    let (operation, result) = match &change {
        Change::RetireBefore(n) => ("retire", retire_before(&state, *n)),
        Change::Restore(versions) => (
            "restore",
            restore(&state, versions).map(|(next, recs)| (Some(next), recs)),
        ),
    };
    let (next, records) = match result {
        Ok(r) => r,
        Err(e) => return (f, fail(e.to_string())),
    };
    f.put("operation", operation);
    f.put("applied", false);
    if let Change::RetireBefore(n) = change {
        f.put("beforeVersion", n);
    }
    let resulting = next.as_ref().unwrap_or(&state);
    f.put("stateHash", state.current_hash.as_str());
    f.put("nextStateHash", resulting.current_hash.as_str());
    f.put("nextGeneration", resulting.generation);
    f.put("activeKeyIdHash", hash_value(&state.active_key_id));
    match operation {
        "retire" => f.put_list("removedVersions", "remove", version_items(&records)),
        _ => f.put_list("restoredVersions", "restore", version_items(&records)),
    }
    f.put("limitations", RETIRE_LIMITATIONS);
    let meta = match read_metadata(config).await {
        Ok(meta) => meta,
        Err(e) => return (f, fail(format!("transit metadata read failed: {e}"))),
    };
    let active_version = state.active_record().map_or(0, |r| r.transit_version);
    if matches!(change, Change::RetireBefore(_))
        && i64::try_from(active_version).ok() != Some(meta.latest_version)
    {
        return (f, fail("the local active version must equal Transit's latest version (finish the pending rotation first)".into()));
    }
    if let Err(reason) = check_retained(resulting, &meta) {
        return (
            f,
            fail(format!(
                "the resulting registry does not validate against Transit: {reason}"
            )),
        );
    }
    let Some(expected) = apply else {
        return (f, Ok(()));
    };
    if expected != state.current_hash {
        return (
            f,
            fail(
                "--expected-state-hash does not match the current state; review a new plan".into(),
            ),
        );
    }
    if let Some(next) = &next
        && let Err(e) = save(&ctx.paths, next)
    {
        return (f, fail(e.to_string()));
    }
    f.set("applied", true);
    (f, Ok(()))
}
