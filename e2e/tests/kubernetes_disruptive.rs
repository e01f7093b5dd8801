//! Disruptive Kubernetes e2e tests, run after kubernetes.rs (cargo runs test binaries
//! in name order): the operator's pod is deleted in the middle of an upgrade, and the
//! new operator pod must resume from the StreamJob's status (the write-ahead log) with
//! exactly one savepoint for the upgrade. Last, the operator's whole log (every
//! operator pod of the run, deleted ones included) and every Event must be free of
//! RBAC denials (`forbidden`).
//!
//! Same setup as kubernetes.rs (`./test.sh`, or `eval "$(scripts/k8s/harness.sh up)"`).
//! These scenarios share the operator, so they run one at a time.

use std::time::{Duration, Instant};

use serde_json::Value;
use weir_e2e::kube::{self, Ctx, at, at_str};

weir_e2e::kube_scenarios!(disruptive:
    operator_pod_deleted_while_savepointing,
    operator_pod_deleted_while_deploying,
    operator_pod_deleted_during_a_blue_green_rollout,
    no_forbidden_in_the_operator_log_or_events,
);

fn s(v: &Value, path: &str) -> String {
    at_str(v, path).unwrap_or_default()
}

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static M: std::sync::Mutex<()> = std::sync::Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

/// Deletes the (one) operator pod and waits for another one to be ready.
fn restart_operator(ctx: &Ctx) -> Instant {
    let c = ctx.cluster;
    let before = kube::operator_pods(c);
    assert_eq!(before.len(), 1, "one operator pod: {before:?}");
    *LEASE_RENEWED_BEFORE.lock().unwrap_or_else(|e| e.into_inner()) = lease(ctx).and_then(|l| l.1);
    let t0 = Instant::now();
    kube::kubectl(&["-n", &c.operator_ns, "delete", "pod", &before[0], "--wait=false"]).expect("delete the operator pod");
    ctx.log(&format!("deleted operator pod {}", before[0]));
    t0
}

fn wait_new_operator(ctx: &Ctx, old: &str) {
    let c = ctx.cluster;
    ctx.wait_for("a new operator pod is ready", Duration::from_secs(90), || {
        let pods = kube::get_json(&["-n", &c.operator_ns, "pods", "-l", "app.kubernetes.io/component=operator"])?;
        pods["items"].as_array()?.iter().find(|p| {
            p["metadata"]["name"].as_str() != Some(old)
                && p["metadata"]["deletionTimestamp"].is_null()
                && p["status"]["containerStatuses"][0]["ready"].as_bool() == Some(true)
        })?;
        Some(())
    });
    // The old leader released the Lease when it shut down. Without a release, the
    // Lease expires 15 s after the old leader's last renewal, which is no earlier than
    // the renewal seen before the deletion (less 1 s: expiry is checked in whole seconds).
    let renewed_before = LEASE_RENEWED_BEFORE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(before) = renewed_before.as_deref().and_then(epoch_seconds) {
        let (holder, acquired) = ctx.wait_for("the new operator pod holds the Lease", Duration::from_secs(60), || {
            let (holder, _, acquired) = lease_full(ctx)?;
            (holder.as_deref() != Some(old) && holder.is_some()).then_some((holder, acquired))
        });
        let acquired = acquired.as_deref().and_then(epoch_seconds).expect("acquireTime");
        if ctx.cluster.harness {
            // The new leader holds the Lease: the old pod released it (its log says so
            // once its write returned) or it expired (then the line never comes). The
            // harness keeps a deleted pod's log file, which `k8s-harness logs` reads.
            ctx.wait_for("the old operator pod logs 'leadership released'", Duration::from_secs(20), || {
                ctx.pod_log(&c.operator_ns, old).contains("leadership released").then_some(())
            });
        }
        // On the harness the old pod's log proved the release above; the time is then
        // a measure (a loaded machine may start the new pod late). Elsewhere it is the
        // proof: without a release the Lease cannot change hands this early.
        assert!(
            ctx.cluster.harness || acquired - before < 14.0,
            "{holder:?} took the Lease {:.1} s after the old leader's renewal: the old leader did not release it on shutdown",
            acquired - before
        );
        ctx.log(&format!("lease handed over {:.1} s after the old leader's last seen renewal", acquired - before));
    }
}

static LEASE_RENEWED_BEFORE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// (holder, renewTime) of the operator's Lease.
fn lease(ctx: &Ctx) -> Option<(Option<String>, Option<String>)> {
    lease_full(ctx).map(|(h, r, _)| (h, r))
}

/// (holder, renewTime, acquireTime) of the operator's Lease (`weir-weir-operator` in the release namespace).
fn lease_full(ctx: &Ctx) -> Option<(Option<String>, Option<String>, Option<String>)> {
    let c = ctx.cluster;
    let v = kube::get_json(&["-n", &c.operator_ns, "lease", "weir-weir-operator"])?;
    let field = |k: &str| v["spec"][k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
    Some((field("holderIdentity"), field("renewTime"), field("acquireTime")))
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-11-29T12:25:02.356311Z`).
fn epoch_seconds(t: &str) -> Option<f64> {
    let (date, time) = t.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut hms = time.split(':');
    let (h, mi, sec) = (hms.next()?.parse::<f64>().ok()?, hms.next()?.parse::<f64>().ok()?, hms.next()?.parse::<f64>().ok()?);
    // days from civil (Howard Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + mi * 60.0 + sec)
}

#[test]
fn rfc3339_times_convert_to_epoch_seconds() {
    assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(epoch_seconds("2023-11-14T22:13:20Z"), Some(1_700_000_000.0));
    assert_eq!(epoch_seconds("2023-11-14T22:13:20.500000Z"), Some(1_700_000_000.5));
}

/// Savepoints of origin `upgrade` in the status history.
fn upgrade_savepoints(v: &Value) -> Vec<String> {
    at(v, "status.savepointHistory")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|h| h["origin"] == "upgrade")
        .map(|h| h["url"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A job running (with a checkpoint) and an upgrade of it just applied.
struct Upgrade<'a> {
    old: String,
    storage: std::path::PathBuf,
    before: Vec<std::path::PathBuf>,
    job: kube::Job<'a>,
    t0: Instant,
}

/// `before_apply` runs between the checkpoint and the apply of the upgrade.
fn start_upgrade<'a>(ctx: &'a Ctx, before_apply: impl FnOnce()) -> Upgrade<'a> {
    let v = kube::deploy(ctx, "fraud", &kube::fraud(ctx, "fraud", 2, 300, ""));
    let old = s(&v, "status.jobId");
    kube::wait_checkpoint(ctx, "fraud", None);
    let storage = kube::file_path(&ctx.storage("fraud"));
    let before = kube::savepoints_on_disk(&storage);
    let job = ctx.job("fraud");
    before_apply();
    let t0 = Instant::now();
    ctx.must_apply(&kube::fraud(ctx, "fraud", 2, 400, ""));
    Upgrade { old, storage, before, job, t0 }
}

pub mod disruptive {
    use super::*;

    pub fn operator_pod_deleted_while_savepointing(ctx: &Ctx) {
        if !ctx.needs_harness() {
            return;
        }
        let _one = one_at_a_time();
        // A small job's savepoint completes within milliseconds of its trigger, and the
        // operator moves on at once: stop the worker of pod 1 first, so that the
        // savepoint's barriers cannot complete (its sources are frozen) and Savepointing
        // lasts until the pod goes on (the coordinator's checkpoint timeout is 60 s).
        let Upgrade { old, storage, before, job, t0 } = start_upgrade(ctx, || {
            assert!(ctx.signal_pod("fraud-1", "STOP") > 0, "pod fraud-1 has a process to stop");
        });
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            job.wait("stage Savepointing of the upgrade", Duration::from_secs(30), |v| {
                s(v, "status.stage") == "Savepointing" && s(v, "status.transition.kind") == "Upgrade" && !s(v, "status.transition.savepointTrigger").is_empty()
            })
        }));
        // The savepoint is triggered (its request id is in status): stop the coordinator
        // (pod 0) too, so that the new operator finds it in flight and must follow it.
        ctx.signal_pod("fraud-0", "STOP");
        let op = kube::operator_pods(ctx.cluster);
        if r.is_ok() {
            restart_operator(ctx);
        }
        std::thread::sleep(Duration::from_secs(2));
        ctx.signal_pod("fraud-0", "CONT");
        ctx.signal_pod("fraud-1", "CONT");
        if let Err(e) = r {
            std::panic::resume_unwind(e);
        }
        wait_new_operator(ctx, &op[0]);
        let v = job.wait_running("the upgrade completes under the new operator", Duration::from_secs(180), Some(&old));
        ctx.timing("operator deleted while Savepointing: apply -> Running", t0.elapsed());
        let ups = upgrade_savepoints(&v);
        assert_eq!(ups.len(), 1, "exactly one upgrade savepoint in the history: {ups:?}");
        assert_eq!(s(&v, "status.deployed.restoreFrom"), ups[0], "restored from it");
        let after: Vec<_> = kube::savepoints_on_disk(&storage).into_iter().filter(|p| !before.contains(p)).collect();
        assert_eq!(after.len(), 1, "exactly one new savepoint on disk: {after:?}");
    }

    pub fn operator_pod_deleted_while_deploying(ctx: &Ctx) {
        if !ctx.needs_harness() {
            return;
        }
        let _one = one_at_a_time();
        let Upgrade { old, storage, before, job, t0 } = start_upgrade(ctx, || {});
        let v = job.wait("stage Deploying of the upgrade", Duration::from_secs(60), |v| s(v, "status.stage") == "Deploying" && s(v, "status.transition.kind") == "Upgrade");
        let planned = s(&v, "status.transition.jobId");
        let op = kube::operator_pods(ctx.cluster);
        restart_operator(ctx);
        wait_new_operator(ctx, &op[0]);
        let v = job.wait_running("the upgrade completes under the new operator", Duration::from_secs(180), Some(&old));
        ctx.timing("operator deleted while Deploying: apply -> Running", t0.elapsed());
        if !planned.is_empty() {
            assert_eq!(s(&v, "status.jobId"), planned, "the job id decided before the restart is the one deployed");
        }
        let ups = upgrade_savepoints(&v);
        assert_eq!(ups.len(), 1, "exactly one upgrade savepoint in the history: {ups:?}");
        let after: Vec<_> = kube::savepoints_on_disk(&storage).into_iter().filter(|p| !before.contains(p)).collect();
        assert_eq!(after.len(), 1, "exactly one new savepoint on disk: {after:?}");
    }

    pub fn operator_pod_deleted_during_a_blue_green_rollout(ctx: &Ctx) {
        if !ctx.needs_harness() {
            return;
        }
        let _one = one_at_a_time();
        let bg = "rollout:\n  strategy: blueGreen\n  readinessTimeout: 120s\n  savepointTimeout: 30s\n  shutdownTimeout: 30s\n";
        let v = kube::deploy(ctx, "fraud", &kube::fraud(ctx, "fraud", 2, 300, bg));
        let blue = s(&v, "status.jobId");
        kube::wait_checkpoint(ctx, "fraud", None);
        let job = ctx.job("fraud");
        let t0 = Instant::now();
        ctx.must_apply(&kube::fraud(ctx, "fraud", 2, 400, bg));
        let v = job.wait("stage BlueGreenDeploying", Duration::from_secs(60), |v| s(v, "status.stage") == "BlueGreenDeploying");
        let (green, fork) = (s(&v, "status.transition.jobId"), s(&v, "status.transition.restoreFrom"));
        let op = kube::operator_pods(ctx.cluster);
        restart_operator(ctx);
        wait_new_operator(ctx, &op[0]);
        let v = job.wait_running("the blue/green rollout completes under the new operator", Duration::from_secs(180), Some(&blue));
        ctx.timing("operator deleted during a blue/green rollout: apply -> Running on green", t0.elapsed());
        assert_eq!(s(&v, "status.jobId"), green, "the green job id decided before the restart is the one that runs");
        assert_eq!(s(&v, "status.deployed.restoreFrom"), fork, "green restored from the savepoint taken before the restart");
        assert_eq!((s(&v, "status.activeSlot"), s(&v, "status.lastBlueGreen.outcome")), ("green".to_string(), "Switched".to_string()));
        let hist = at(&v, "status.savepointHistory").and_then(Value::as_array).cloned().unwrap_or_default();
        let origins: Vec<&str> = hist.iter().filter_map(|h| h["origin"].as_str()).filter(|o| o.starts_with("blue-green")).collect();
        assert_eq!(origins, ["blue-green", "blue-green-final"], "one savepoint of blue running, one final: {hist:?}");
        ctx.wait_for("blue's StatefulSet is gone", Duration::from_secs(60), || kube::get_json(&["-n", &ctx.ns, "statefulset", "fraud"]).is_none().then_some(()));
    }

    pub fn no_forbidden_in_the_operator_log_or_events(ctx: &Ctx) {
        // Give the other scenarios of this binary their run first (they restart the
        // operator), then exercise a job's life once more and scan everything.
        let _one = one_at_a_time();
        kube::deploy(ctx, "fraud", &kube::fraud(ctx, "fraud", 1, 300, ""));
        kube::wait_checkpoint(ctx, "fraud", None);
        ctx.k(&["delete", "streamjob", "fraud", "--timeout=90s"]).expect("delete");
        let log = kube::operator_log(ctx.cluster);
        assert!(!log.trim().is_empty(), "the operator log is readable");
        let bad = kube::forbidden_lines(&log);
        assert!(bad.is_empty(), "the operator log has RBAC denials:\n{}", bad.join("\n"));
        let events = kube::kubectl(&["get", "events", "-A", "-o", "custom-columns=NS:.metadata.namespace,OBJ:.involvedObject.name,REASON:.reason,MSG:.message"]).unwrap_or_default();
        let bad: Vec<&str> = events.lines().filter(|l| kube::is_rbac_denial(l)).collect();
        assert!(bad.is_empty(), "Events with RBAC denials:\n{}", bad.join("\n"));
    }
}
