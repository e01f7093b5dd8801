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

pub mod disruptive {
    use super::*;

    pub fn operator_pod_deleted_while_savepointing(ctx: &Ctx) {
        if !ctx.needs_harness() {
            return;
        }
        let _one = one_at_a_time();
        let v = kube::deploy(ctx, "fraud", &kube::fraud(ctx, "fraud", 2, 300, ""));
        let old = s(&v, "status.jobId");
        kube::wait_checkpoint(ctx, "fraud", None);
        let storage = kube::file_path(&ctx.storage("fraud"));
        let before = kube::savepoints_on_disk(&storage);
        let job = ctx.job("fraud");
        let t0 = Instant::now();
        ctx.must_apply(&kube::fraud(ctx, "fraud", 2, 400, ""));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            job.wait("stage Savepointing of the upgrade", Duration::from_secs(30), |v| s(v, "status.stage") == "Savepointing" && s(v, "status.transition.kind") == "Upgrade")
        }));
        // The savepoint is triggered (its request id is in status): stop the coordinator
        // (pod 0) so it stays in flight while the operator is replaced (when the savepoint
        // won the race, the restart lands in a later stage: the checks hold all the same).
        ctx.signal_pod("fraud-0", "STOP");
        let op = kube::operator_pods(ctx.cluster);
        if r.is_ok() {
            restart_operator(ctx);
        }
        std::thread::sleep(Duration::from_secs(2));
        ctx.signal_pod("fraud-0", "CONT");
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
        let v = kube::deploy(ctx, "fraud", &kube::fraud(ctx, "fraud", 2, 300, ""));
        let old = s(&v, "status.jobId");
        kube::wait_checkpoint(ctx, "fraud", None);
        let storage = kube::file_path(&ctx.storage("fraud"));
        let before = kube::savepoints_on_disk(&storage);
        let job = ctx.job("fraud");
        let t0 = Instant::now();
        ctx.must_apply(&kube::fraud(ctx, "fraud", 2, 400, ""));
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
