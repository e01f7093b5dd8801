//! The operator on a real control plane: the chart installed as `helm install` would
//! (scripts/k8s/install-chart.sh: the operator runs as a pod under the chart's
//! ServiceAccount and RBAC), then StreamJobs through their whole life, each scenario in
//! its own namespace, all at once (see `weir_e2e::kube`). Assertions are on what the
//! cluster shows: status (phase, conditions, savepoints, checkpoints), Events, owned
//! objects, pods, and savepoints and output on disk.
//!
//! `./test.sh` starts the k8s-harness (scripts/test.d/50-k8s-harness.sh) and runs this;
//! by hand: `eval "$(scripts/k8s/harness.sh up)"; cargo test -p weir-e2e --test kubernetes`.
//! Without a cluster every test says SKIPPED loudly and passes. Operator disruptions
//! (its pod deleted mid-upgrade) are in kubernetes_disruptive.rs, run after these.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_e2e::kube::{self, Ctx, at, at_str, deploy, fraud, savepoint_exists, wait_checkpoint};

weir_e2e::kube_scenarios!(scenarios:
    deploy_runs_with_owned_objects,
    upgrade_in_savepoint_mode,
    upgrade_in_last_state_mode,
    upgrade_in_stateless_mode,
    rescale_up_and_down_with_kubectl_scale,
    suspend_and_resume,
    manual_and_periodic_savepoints,
    failing_upgrade_is_rolled_back_quickly,
    unmapped_image_is_reported,
    kill_9_of_a_job_pod_recovers,
    delete_takes_a_final_savepoint,
    delete_of_an_unreachable_job_finishes_after_shutdown_timeout,
    invalid_manifests_are_refused,
    bounded_nexmark_rescaled_mid_run_writes_exactly_once,
    s3_outage_during_an_upgrade_keeps_the_old_job,
    sql_job_rescaled_mid_run_gives_the_uninterrupted_result,
    sql_planning_error_is_reported,
    large_state_rescaled_4_2_4_through_the_last_state_path,
    blue_green_upgrade_runs_green_beside_blue_then_switches,
    blue_green_with_a_green_that_cannot_start_leaves_blue_running,
);

const MIN: Duration = Duration::from_secs(60);

fn s(v: &Value, path: &str) -> String {
    at_str(v, path).unwrap_or_default()
}

pub mod scenarios {
    use super::*;

    pub fn deploy_runs_with_owned_objects(ctx: &Ctx) {
        let v = deploy(ctx, "fraud", &fraud(ctx, "fraud", 2, 300, ""));
        let job = ctx.job("fraud");
        assert_eq!(s(&v, "status.replicas"), "2");
        let (ready, reason, msg) = job.condition(&v, "Ready").expect("a Ready condition");
        assert_eq!(ready, "True", "Ready condition: {reason}: {msg}");
        wait_checkpoint(ctx, "fraud", None);
        let uid = s(&v, "metadata.uid");
        for (kind, name) in [("statefulset", "fraud"), ("service", "fraud-peers"), ("service", "fraud-rest"), ("configmap", "fraud-job")] {
            let o = kube::get_json(&["-n", &ctx.ns, kind, name]).unwrap_or_else(|| panic!("{kind}/{name} exists"));
            let owner = at(&o, "metadata.ownerReferences.0").unwrap_or_else(|| panic!("{kind}/{name} has an owner"));
            assert_eq!(owner["kind"], "StreamJob", "{kind}/{name} is owned by the StreamJob");
            assert_eq!(owner["uid"].as_str(), Some(uid.as_str()), "{kind}/{name} is owned by this StreamJob");
        }
        let pods = ctx.pods("fraud");
        assert_eq!(pods.len(), 2, "two pods: {pods:?}");
        assert!(pods.iter().all(|p| p.ready && p.job_id == s(&v, "status.jobId")), "pods ready and of the current job id: {pods:?}");
        let events = job.events();
        ctx.log(&format!("events: {}", events.iter().map(|e| format!("{}:{}", e.reason, e.message)).collect::<Vec<_>>().join(" | ")));
        assert!(!events.is_empty(), "the operator reports the deployment in Events");
    }

    pub fn upgrade_in_savepoint_mode(ctx: &Ctx) {
        let v = deploy(ctx, "fraud", &fraud(ctx, "fraud", 2, 300, "upgradeMode: savepoint\n"));
        let old = s(&v, "status.jobId");
        wait_checkpoint(ctx, "fraud", None);
        let t0 = Instant::now();
        ctx.must_apply(&fraud(ctx, "fraud", 2, 400, "upgradeMode: savepoint\n"));
        let v = ctx.job("fraud").wait_running("upgrade (savepoint mode) -> Running with a new job id", 3 * MIN, Some(&old));
        ctx.timing("upgrade (savepoint mode) apply -> Running", t0.elapsed());
        let sp = s(&v, "status.lastSavepoint.url");
        assert_eq!(s(&v, "status.lastSavepoint.origin"), "upgrade", "the upgrade's savepoint is the last one");
        assert_eq!(s(&v, "status.lastSavepoint.jobId"), old, "taken of the old deployment");
        assert_eq!(s(&v, "status.deployed.restoreFrom"), sp, "the new deployment restores from the upgrade's savepoint");
        assert!(savepoint_exists(&sp), "savepoint {sp} is on disk");
        assert!(s(&v, "status.deployed.spec").contains("400"), "the new spec is deployed: {}", s(&v, "status.deployed.spec"));
        wait_checkpoint(ctx, "fraud", None);
    }

    pub fn upgrade_in_last_state_mode(ctx: &Ctx) {
        let v = deploy(ctx, "fraud", &fraud(ctx, "fraud", 1, 300, "upgradeMode: last-state\n"));
        let old = s(&v, "status.jobId");
        let c = wait_checkpoint(ctx, "fraud", None);
        let t0 = Instant::now();
        ctx.must_apply(&fraud(ctx, "fraud", 1, 400, "upgradeMode: last-state\n"));
        let v = ctx.job("fraud").wait_running("upgrade (last-state mode) -> Running with a new job id", 3 * MIN, Some(&old));
        ctx.timing("upgrade (last-state mode) apply -> Running", t0.elapsed());
        let restore = s(&v, "status.deployed.restoreFrom");
        assert!(!restore.is_empty(), "last-state restores from the old deployment's latest checkpoint");
        assert!(restore.contains(&old), "restores from a checkpoint of the old job {old}: {restore} (last checkpoint before: {})", s(&c, "status.lastCheckpoint.url"));
        assert!(!restore.contains("/savepoints/"), "no savepoint in last-state mode: {restore}");
        let hist = at(&v, "status.savepointHistory").and_then(Value::as_array).cloned().unwrap_or_default();
        assert!(hist.iter().all(|h| h["origin"] != "upgrade"), "no upgrade savepoint in last-state mode: {hist:?}");
    }

    pub fn upgrade_in_stateless_mode(ctx: &Ctx) {
        let v = deploy(ctx, "fraud", &fraud(ctx, "fraud", 1, 300, "upgradeMode: stateless\n"));
        let old = s(&v, "status.jobId");
        let t0 = Instant::now();
        ctx.must_apply(&fraud(ctx, "fraud", 1, 400, "upgradeMode: stateless\n"));
        let v = ctx.job("fraud").wait_running("upgrade (stateless) -> Running with a new job id", 3 * MIN, Some(&old));
        ctx.timing("upgrade (stateless mode) apply -> Running", t0.elapsed());
        assert_eq!(at_str(&v, "status.deployed.restoreFrom"), None, "stateless: starts empty");
    }

    pub fn rescale_up_and_down_with_kubectl_scale(ctx: &Ctx) {
        let v = deploy(ctx, "fraud", &fraud(ctx, "fraud", 2, 300, ""));
        let job = ctx.job("fraud");
        let old = s(&v, "status.jobId");
        wait_checkpoint(ctx, "fraud", None);
        let t0 = Instant::now();
        ctx.k(&["scale", "streamjob", "fraud", "--replicas=4"]).expect("kubectl scale");
        let v = job.wait_running("rescale 2 -> 4 Running", 3 * MIN, Some(&old));
        ctx.timing("rescale 2 -> 4 (kubectl scale -> Running)", t0.elapsed());
        assert_eq!(s(&v, "status.replicas"), "4");
        assert_eq!(s(&v, "spec.parallelism"), "4");
        let sp = s(&v, "status.lastSavepoint.url");
        assert_eq!(s(&v, "status.lastSavepoint.origin"), "rescale");
        assert_eq!(s(&v, "status.deployed.restoreFrom"), sp, "the rescaled job restores from the rescale savepoint");
        ctx.wait_for("4 ready pods of the new deployment", MIN, || {
            let pods = ctx.pods("fraud");
            (pods.len() == 4 && pods.iter().all(|p| p.ready && p.job_id == s(&v, "status.jobId"))).then_some(())
        });
        // Regression: after 2 -> 4 the job completes new checkpoints...
        let t1 = Instant::now();
        let c = wait_checkpoint(ctx, "fraud", None);
        let first = at(&c, "status.lastCheckpoint.id").and_then(Value::as_i64);
        wait_checkpoint(ctx, "fraud", first);
        ctx.timing("after rescale: Running -> two checkpoints", t1.elapsed());
        // ... and the next savepoint works.
        let t2 = Instant::now();
        job.patch(r#"{"spec":{"savepointNonce":1}}"#);
        let v = job.wait("the manual savepoint after the rescale", MIN, |v| {
            s(v, "status.handledSavepointNonce") == "1" && s(v, "status.lastSavepoint.origin") == "manual"
        });
        ctx.timing("manual savepoint after rescale", t2.elapsed());
        assert_eq!(s(&v, "status.lastSavepoint.jobId"), s(&v, "status.jobId"));
        assert!(savepoint_exists(&s(&v, "status.lastSavepoint.url")));
        // Down to 1.
        let mid = s(&v, "status.jobId");
        let t3 = Instant::now();
        ctx.k(&["scale", "streamjob", "fraud", "--replicas=1"]).expect("kubectl scale");
        let v = job.wait_running("rescale 4 -> 1 Running", 3 * MIN, Some(&mid));
        ctx.timing("rescale 4 -> 1 (kubectl scale -> Running)", t3.elapsed());
        assert_eq!(s(&v, "status.replicas"), "1");
        ctx.wait_for("one pod left", MIN, || (ctx.pods("fraud").len() == 1).then_some(()));
        wait_checkpoint(ctx, "fraud", None);
    }

    pub fn suspend_and_resume(ctx: &Ctx) {
        let v = deploy(ctx, "fraud", &fraud(ctx, "fraud", 2, 300, ""));
        let job = ctx.job("fraud");
        let old = s(&v, "status.jobId");
        wait_checkpoint(ctx, "fraud", None);
        let t0 = Instant::now();
        job.patch(r#"{"spec":{"state":"suspended"}}"#);
        let v = job.wait("Suspended with a savepoint", 2 * MIN, |v| s(v, "status.phase") == "Suspended" && at(v, "status.resumeFrom").is_some());
        ctx.timing("suspend -> Suspended", t0.elapsed());
        let resume_from = s(&v, "status.resumeFrom");
        assert!(savepoint_exists(&resume_from), "{resume_from} on disk");
        ctx.wait_for("no pods while suspended", MIN, || ctx.pods("fraud").is_empty().then_some(()));
        let t1 = Instant::now();
        job.patch(r#"{"spec":{"state":"running"}}"#);
        let v = job.wait_running("resumed", 2 * MIN, Some(&old));
        ctx.timing("resume -> Running", t1.elapsed());
        assert_eq!(s(&v, "status.deployed.restoreFrom"), resume_from, "resumes from the suspend savepoint");
    }

    pub fn manual_and_periodic_savepoints(ctx: &Ctx) {
        let v = deploy(ctx, "fraud", &fraud(ctx, "fraud", 1, 300, "savepointHistory:\n  maxCount: 20\n"));
        let job = ctx.job("fraud");
        let id = s(&v, "status.jobId");
        ctx.must_apply(&fraud(ctx, "fraud", 1, 300, "savepointHistory:\n  maxCount: 20\n").replace("    interval: 1s\n", "    interval: 1s\n    savepointInterval: 5s\n"));
        let has = |v: &Value, origin: &str| at(v, "status.savepointHistory").and_then(Value::as_array).is_some_and(|h| h.iter().any(|x| x["origin"] == origin));
        let v = job.wait("a periodic savepoint", MIN, |v| has(v, "periodic"));
        job.wait("a second periodic savepoint", MIN, |v| {
            at(v, "status.savepointHistory").and_then(Value::as_array).is_some_and(|h| h.iter().filter(|x| x["origin"] == "periodic").count() >= 2)
        });
        let t0 = Instant::now();
        job.patch(r#"{"spec":{"savepointNonce":7}}"#);
        let v2 = job.wait("the manual savepoint (savepointNonce 7)", MIN, |v| s(v, "status.handledSavepointNonce") == "7" && has(v, "manual"));
        ctx.timing("manual savepoint (nonce -> recorded)", t0.elapsed());
        for v in [&v, &v2] {
            for h in at(v, "status.savepointHistory").and_then(Value::as_array).into_iter().flatten() {
                let url = h["url"].as_str().unwrap_or_default();
                assert!(savepoint_exists(url), "savepoint {url} ({}) on disk", h["origin"]);
            }
        }
        assert_eq!(s(&v2, "status.jobId"), id, "savepoints do not redeploy the job");
        assert_eq!(s(&v2, "status.phase"), "Running");
    }

    pub fn failing_upgrade_is_rolled_back_quickly(ctx: &Ctx) {
        let rollout = "rollout:\n  readinessTimeout: 120s\n  savepointTimeout: 30s\n  shutdownTimeout: 30s\n  rollback: true\n";
        let v = deploy(ctx, "fraud", &fraud(ctx, "fraud", 1, 300, rollout));
        let job = ctx.job("fraud");
        let old = s(&v, "status.jobId");
        wait_checkpoint(ctx, "fraud", None);
        let t0 = Instant::now();
        ctx.must_apply(&fraud(ctx, "fraud", 1, 300, rollout).replace("builtin: fraud-detection", "builtin: no-such-job"));
        let want = "unknown job 'no-such-job'";
        ctx.wait_for(&format!("status.message or an Event naming {want:?}"), Duration::from_secs(40), || {
            let msg = job.field("status.message").unwrap_or_default();
            (msg.contains(want) || job.events().iter().any(|e| e.message.contains(want))).then_some(())
        });
        ctx.timing("failing upgrade: apply -> error reported", t0.elapsed());
        let v = job.wait("rolled back to the last stable spec, Running", Duration::from_secs(60), |v| {
            s(v, "status.phase") == "Running" && s(v, "status.jobState") == "RUNNING" && s(v, "status.deployed.spec").contains("fraud-detection") && at(v, "status.transition").is_none()
        });
        ctx.timing("failing upgrade: apply -> rolled back and Running", t0.elapsed());
        assert!(t0.elapsed() < Duration::from_secs(100), "rolled back on the job's failure, not after readinessTimeout (120s)");
        assert_ne!(s(&v, "status.jobId"), old, "the rollback is a new deployment");
        assert!(at(&v, "status.failedGeneration").is_some(), "the failed generation is recorded (not retried)");
        let ev = job.events();
        assert!(ev.iter().any(|e| e.reason.to_lowercase().contains("rollback") || e.reason.to_lowercase().contains("rolledback")), "a rollback Event: {ev:?}");
    }

    pub fn unmapped_image_is_reported(ctx: &Ctx) {
        let image = "registry.invalid/nobody/no-such-image:1";
        let t0 = Instant::now();
        ctx.must_apply(&fraud(ctx, "fraud", 1, 300, "").replace(&format!("image: {}", ctx.cluster.image), &format!("image: {image}")));
        let job = ctx.job("fraud");
        let names_it = |t: &str| t.contains("ImageNotMapped") || t.contains("ErrImagePull") || t.contains("ImagePullBackOff") || t.contains(image);
        ctx.wait_for("the pods fail on the image", MIN, || ctx.pods("fraud").iter().any(|p| names_it(&p.reason)).then_some(()));
        ctx.wait_for("status.message names the image problem", Duration::from_secs(45), || job.field("status.message").filter(|m| names_it(m)));
        ctx.wait_for("a Warning Event names the image problem", Duration::from_secs(45), || {
            job.events().into_iter().find(|e| e.kind == "Warning" && names_it(&e.message))
        });
        ctx.timing("unmapped image: apply -> reported", t0.elapsed());
    }

    pub fn kill_9_of_a_job_pod_recovers(ctx: &Ctx) {
        if !ctx.needs_harness() {
            return;
        }
        let v = deploy(ctx, "fraud", &fraud(ctx, "fraud", 2, 300, ""));
        let id = s(&v, "status.jobId");
        let c = wait_checkpoint(ctx, "fraud", None);
        let before = at(&c, "status.lastCheckpoint.id").and_then(Value::as_i64);
        let pod1_restarts = ctx.pods("fraud").iter().find(|p| p.name == "fraud-1").map(|p| p.restarts).expect("pod fraud-1");
        let coordinator = ctx.pods("fraud").iter().find(|p| p.name == "fraud-0").map(|p| p.ip.clone()).expect("pod fraud-0");
        let restarts = || {
            weir_e2e::http(&format!("{coordinator}:8081"), "GET", "/v1/job", None)
                .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
                .and_then(|j| j["restarts"].as_i64())
        };
        let job_restarts = restarts().unwrap_or(0);
        let t0 = Instant::now();
        let n = ctx.signal_pod("fraud-1", "KILL");
        assert!(n > 0, "found the processes of pod fraud-1");
        ctx.log(&format!("kill -9 of pod fraud-1 ({n} process(es))"));
        ctx.wait_for("pod fraud-1 restarted by the node agent", MIN, || {
            ctx.pods("fraud").iter().find(|p| p.name == "fraud-1" && p.restarts > pod1_restarts && p.ready).map(|_| ())
        });
        ctx.wait_for("the job's restart count increased", MIN, || restarts().filter(|r| *r > job_restarts));
        let v = wait_checkpoint(ctx, "fraud", before);
        ctx.timing("kill -9 -> recovered (new checkpoint)", t0.elapsed());
        assert_eq!(s(&v, "status.phase"), "Running");
        assert_eq!(s(&v, "status.jobState"), "RUNNING");
        assert_eq!(s(&v, "status.jobId"), id, "recovered in place, not redeployed");
    }

    pub fn delete_takes_a_final_savepoint(ctx: &Ctx) {
        deploy(ctx, "fraud", &fraud(ctx, "fraud", 2, 300, ""));
        wait_checkpoint(ctx, "fraud", None);
        let job = ctx.job("fraud");
        let t0 = Instant::now();
        ctx.k(&["delete", "streamjob", "fraud", "--wait=false"]).expect("delete");
        ctx.wait_for("the StreamJob is gone (finalizer removed)", 2 * MIN, || job.get().is_none().then_some(()));
        ctx.timing("delete -> gone (with final savepoint)", t0.elapsed());
        let events = ctx.events("fraud");
        let ev = events.iter().find(|e| e.message.contains("savepoint") && e.message.contains(&ctx.storage("fraud")));
        let ev = ev.unwrap_or_else(|| panic!("an Event names the final savepoint's URL: {events:#?}"));
        let url = ev.message.split_whitespace().find(|w| w.starts_with(&ctx.storage("fraud"))).unwrap_or_default().trim_end_matches(['.', ',', ')', ';']);
        ctx.log(&format!("final savepoint event: {ev}"));
        assert!(savepoint_exists(url), "the final savepoint {url} is on disk");
        ctx.wait_for("owned objects garbage-collected", MIN, || {
            let gone = ["statefulset/fraud", "service/fraud-peers", "service/fraud-rest", "configmap/fraud-job"]
                .iter()
                .all(|o| ctx.k(&["get", o]).is_err_and(|e| e.contains("NotFound")));
            (gone && ctx.pods("fraud").is_empty()).then_some(())
        });
    }

    pub fn delete_of_an_unreachable_job_finishes_after_shutdown_timeout(ctx: &Ctx) {
        if !ctx.needs_harness() {
            return;
        }
        let rollout = "rollout:\n  readinessTimeout: 60s\n  savepointTimeout: 20s\n  shutdownTimeout: 20s\n";
        deploy(ctx, "fraud", &fraud(ctx, "fraud", 1, 300, rollout));
        let job = ctx.job("fraud");
        let pids = ctx.pod_pids("fraud-0");
        assert!(!pids.is_empty(), "found the processes of pod fraud-0");
        // The job stops answering (its process is stopped): no final savepoint possible.
        ctx.signal_pod("fraud-0", "STOP");
        let t0 = Instant::now();
        ctx.k(&["delete", "streamjob", "fraud", "--wait=false"]).expect("delete");
        let gone = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ctx.wait_for("the StreamJob is gone after shutdownTimeout (20s)", Duration::from_secs(75), || job.get().is_none().then_some(()))
        }));
        for p in &pids {
            let _ = std::process::Command::new("kill").args(["-KILL", &p.to_string()]).status();
        }
        if let Err(e) = gone {
            std::panic::resume_unwind(e);
        }
        ctx.timing("delete of an unreachable job -> gone", t0.elapsed());
        let events = ctx.events("fraud");
        assert!(
            events.iter().any(|e| e.kind == "Warning" && e.reason == "FinalSavepointFailed"),
            "a FinalSavepointFailed Warning Event: {events:#?}"
        );
    }

    pub fn invalid_manifests_are_refused(ctx: &Ctx) {
        let dir = kube::repo_root().join("examples/invalid");
        let mut files: Vec<_> = std::fs::read_dir(&dir).expect("examples/invalid").flatten().map(|e| e.path()).collect();
        files.sort();
        let mut problems = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).expect("read");
            let expect = text.lines().find_map(|l| l.strip_prefix("# expect: ")).unwrap_or_default().trim().to_string();
            let old = text.lines().find_map(|l| l.strip_prefix("# old: ")).map(str::to_string);
            let name = text.lines().find_map(|l| l.trim().strip_prefix("metadata: {name: ")).map(|n| n.trim_end_matches('}').trim().to_string());
            if let Some(old) = &old {
                // An update of an existing object: create it with the old value first.
                let (field, value) = old.split_once(' ').expect("# old: <field> <value>");
                let new_value = text.lines().find_map(|l| l.trim().strip_prefix(&format!("{field}: "))).expect("the field in the manifest").to_string();
                let original = text.replace(&format!("{field}: {new_value}"), &format!("{field}: {value}"));
                if let Err(e) = ctx.apply(&original) {
                    problems.push(format!("{}: the old version is refused too: {e}", f.display()));
                    continue;
                }
            }
            match ctx.apply(&text) {
                Ok(out) => problems.push(format!("{}: accepted ({}), must be refused with {expect:?}", f.display(), out.trim())),
                Err(e) if !e.contains(&expect) => problems.push(format!("{}: refused, but without {expect:?}: {e}", f.display())),
                Err(e) => ctx.log(&format!("refused as expected: {}: {}", f.file_name().unwrap().to_string_lossy(), e.lines().last().unwrap_or_default())),
            }
            if let (None, Some(n)) = (&old, &name) {
                if ctx.k(&["get", "streamjob", n]).is_ok() {
                    problems.push(format!("{}: streamjob {n} exists after the refusal", f.display()));
                }
            }
            if let (Some(_), Some(n)) = (&old, &name) {
                let _ = ctx.k(&["delete", "streamjob", n, "--wait=false"]);
            }
        }
        assert!(files.len() >= 5, "examples/invalid has manifests");
        assert!(problems.is_empty(), "invalid manifests:\n{}", problems.join("\n"));
    }

    pub fn bounded_nexmark_rescaled_mid_run_writes_exactly_once(ctx: &Ctx) {
        if !ctx.needs_harness() {
            return;
        }
        const EVENTS: u32 = 40_000;
        let out = ctx.dir().join("q5-out");
        let spec = format!(
            "job:\n  builtin: nexmark-q5\n  params:\n    events: {EVENTS}\n    rate: 1000\n    output: {}/\nparallelism: 2\ncheckpointing:\n  interval: 1s\n  storage: {}\nrollout:\n  readinessTimeout: 60s\n  savepointTimeout: 30s\n  shutdownTimeout: 30s\n",
            out.display(),
            ctx.storage("q5")
        );
        let yaml = kube::streamjob_yaml("q5", &ctx.cluster.image, &spec);
        // The reference: the same job, uninterrupted, embedded.
        let reference = ctx.dir().join("q5-reference.jsonl");
        weir_e2e::run_weir(&["run", "nexmark-q5", "--events", &EVENTS.to_string(), "--output", reference.to_str().unwrap(), "-q"]);
        let expected = weir_e2e::sorted_lines(&reference);
        assert!(expected.len() > 5, "the reference run has results: {expected:?}");
        let v = deploy(ctx, "q5", &yaml);
        let old = s(&v, "status.jobId");
        wait_checkpoint(ctx, "q5", None);
        let t0 = Instant::now();
        ctx.k(&["scale", "streamjob", "q5", "--replicas=3"]).expect("scale");
        let job = ctx.job("q5");
        job.wait("rescaled 2 -> 3 mid-run", 2 * MIN, |v| s(v, "status.jobId") != old && s(v, "status.replicas") == "3" && ["RUNNING", "FINISHED"].contains(&s(v, "status.jobState").as_str()));
        ctx.timing("bounded q5: rescale 2 -> 3 -> running", t0.elapsed());
        job.wait("the bounded job finishes", 3 * MIN, |v| s(v, "status.phase") == "Finished" || s(v, "status.jobState") == "FINISHED");
        let got = weir_e2e::committed(Path::new(&out));
        assert_eq!(got.len(), expected.len(), "as many committed rows as the uninterrupted run (nothing lost or doubled)");
        assert_eq!(got, expected, "the same rows as the uninterrupted run");
        // A finished job's pods do not keep running.
        let t1 = Instant::now();
        job.wait("phase Finished", MIN, |v| s(v, "status.phase") == "Finished");
        ctx.wait_for("the finished job's pods are gone", MIN, || ctx.pods("q5").is_empty().then_some(()));
        ctx.timing("bounded q5: FINISHED -> pods gone", t1.elapsed());
    }

    /// Issue 13: keyed state on RocksDB in S3 (the test server, through a proxy on the
    /// bridge), rescaled 4 -> 2 -> 4 in last-state mode: stop, redeploy, restore from
    /// the latest incremental checkpoint (clipping and ingesting key groups). The
    /// operator measures each pause of processing (`status.lastTransition.pausedMs`);
    /// the `keyed-state` job checks every write against its key's history, so its
    /// committed output, empty, says no state was lost or doubled. `WEIR_E2E_STATE_KEYS`
    /// (default 200000, ~25 MB) and `WEIR_E2E_STATE_RATE` size it (the README's figure:
    /// 8000000 keys, ~1 GB).
    pub fn large_state_rescaled_4_2_4_through_the_last_state_path(ctx: &Ctx) {
        if !ctx.needs_harness() {
            return;
        }
        let (Ok(endpoint), Ok(bucket), Some(host_ip)) = (std::env::var("AWS_ENDPOINT_URL"), std::env::var("WEIR_TEST_S3_BUCKET"), ctx.cluster.host_ip.clone()) else {
            panic!("needs the S3 test server of ./test.sh (AWS_ENDPOINT_URL, WEIR_TEST_S3_BUCKET) and WEIR_E2E_HOST_IP");
        };
        let env_u64 = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
        let (keys, rate) = (env_u64("WEIR_E2E_STATE_KEYS", 200_000), env_u64("WEIR_E2E_STATE_RATE", 50_000));
        let upstream = endpoint.trim_start_matches("http://").trim_end_matches('/').to_string();
        let proxy = proxy::Proxy::start(&format!("{host_ip}:0"), &upstream);
        ctx.must_apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: s3}}\nstringData:\n  AWS_ACCESS_KEY_ID: test\n  AWS_SECRET_ACCESS_KEY: test\n  AWS_REGION: us-east-1\n  AWS_ENDPOINT_URL: http://{}\n  AWS_ALLOW_HTTP: \"true\"\n",
            proxy.addr
        ));
        let out = ctx.dir().join("state-out");
        let spec = format!(
            "job:\n  builtin: keyed-state\n  params:\n    rate: {rate}\n    output: {}/\n    extra: {{keys: {keys}, valueBytes: 100}}\nparallelism: 4\nupgradeMode: last-state\nstateBackend:\n  type: rocksdb\ncheckpointing:\n  interval: 2s\n  storage: s3://{bucket}/{}/state\n  secretRef:\n    name: s3\nrollout:\n  readinessTimeout: 120s\n  savepointTimeout: 60s\n  shutdownTimeout: 30s\n",
            out.display(),
            ctx.ns
        );
        let v = deploy(ctx, "state", &kube::streamjob_yaml("state", &ctx.cluster.image, &spec));
        let job = ctx.job("state");
        // every key written once, then a checkpoint that holds them all
        std::thread::sleep(Duration::from_millis(keys * 1000 / rate.max(1)));
        let c = wait_checkpoint(ctx, "state", None);
        wait_checkpoint(ctx, "state", at(&c, "status.lastCheckpoint.id").and_then(Value::as_i64));
        let mut id = s(&v, "status.jobId");
        for to in [2, 4] {
            let t0 = Instant::now();
            ctx.k(&["scale", "streamjob", "state", &format!("--replicas={to}")]).expect("kubectl scale");
            let v = job.wait_running(&format!("rescale to {to} Running"), 3 * MIN, Some(&id));
            ctx.timing(&format!("large state: rescale to {to} (kubectl scale -> Running)"), t0.elapsed());
            assert_eq!(s(&v, "status.lastTransition.kind"), "Rescale");
            let from = s(&v, "status.deployed.restoreFrom");
            assert!(from.contains(&format!("{id}/checkpoints/")), "last-state restores from the old job {id}'s checkpoints: {from}");
            let paused = at(&v, "status.lastTransition.pausedMs").and_then(Value::as_i64).expect("the operator measured the pause");
            ctx.timing(&format!("large state ({keys} keys): processing paused, rescale to {to}"), Duration::from_millis(paused as u64));
            id = s(&v, "status.jobId");
        }
        // checkpoints of the last deployment commit what its writes found
        let c = wait_checkpoint(ctx, "state", None);
        wait_checkpoint(ctx, "state", at(&c, "status.lastCheckpoint.id").and_then(Value::as_i64));
        let wrong = weir_e2e::committed(&out);
        assert!(wrong.is_empty(), "writes found their keys' history intact across 4 -> 2 -> 4: {:?}", &wrong[..wrong.len().min(5)]);
    }

    /// `spec.job.sql` end to end: the operator's ConfigMap carries the script, the pods
    /// compile it, the windowed aggregation's state survives a rescale 2 -> 3 mid-run
    /// (savepoint, restore at another parallelism) and the committed rows equal an
    /// uninterrupted embedded run of the same script.
    pub fn sql_job_rescaled_mid_run_gives_the_uninterrupted_result(ctx: &Ctx) {
        if !ctx.needs_harness() {
            return;
        }
        let script = |sink: &str| {
            format!(
                "SET 'pipeline.name' = 'clicks-per-user';\n\
                 CREATE TABLE clicks (n BIGINT, user_id AS n % 7, ts AS to_timestamp_millis(n * 10),\n\
                 \x20 WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)\n\
                 \x20 WITH ('connector' = 'datagen', 'number-of-rows' = '30000', 'rows-per-second' = '1000');\n\
                 CREATE TABLE per_user (window_end TIMESTAMP(3), user_id BIGINT, clicks BIGINT, total BIGINT)\n\
                 \x20 WITH ('connector' = 'filesystem', 'path' = '{sink}', 'format' = 'json');\n\
                 INSERT INTO per_user\n\
                 SELECT window_end, user_id, COUNT(*), SUM(n)\n\
                 FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))\n\
                 GROUP BY window_start, window_end, user_id;\n"
            )
        };
        // The reference: the same script, uninterrupted, embedded (one JSON-lines file).
        let reference = ctx.dir().join("sql-reference.jsonl");
        let reference_sql = ctx.dir().join("reference.sql");
        std::fs::write(&reference_sql, script(reference.to_str().unwrap())).expect("write the reference script");
        weir_e2e::run_weir(&["sql", "-f", reference_sql.to_str().unwrap(), "-q"]);
        let expected = weir_e2e::sorted_lines(&reference);
        assert_eq!(expected.len(), 30 * 7, "the reference run has a row per 10 s window and user: {expected:?}");
        // The StreamJob: the exactly-once file sink (a directory), two pods, then three.
        let out = ctx.dir().join("sql-out");
        let mut spec = String::from("job:\n  sql: |\n");
        for line in script(&format!("{}/", out.display())).lines() {
            spec.push_str(&format!("    {line}\n"));
        }
        spec.push_str(&format!(
            "parallelism: 2\ncheckpointing:\n  interval: 1s\n  storage: {}\nrollout:\n  readinessTimeout: 60s\n  savepointTimeout: 30s\n  shutdownTimeout: 30s\n",
            ctx.storage("clicks")
        ));
        let v = deploy(ctx, "clicks", &kube::streamjob_yaml("clicks", &ctx.cluster.image, &spec));
        let cm = kube::get_json(&["-n", &ctx.ns, "configmap", "clicks-job"]).expect("the job's ConfigMap");
        let sql_in_cm = at(&cm, "data").and_then(|d| d["job.sql"].as_str()).unwrap_or_default().to_string();
        assert!(sql_in_cm.contains("TUMBLE"), "the ConfigMap carries job.sql: {cm}");
        let old = s(&v, "status.jobId");
        wait_checkpoint(ctx, "clicks", None);
        let t0 = Instant::now();
        ctx.k(&["scale", "streamjob", "clicks", "--replicas=3"]).expect("scale");
        let job = ctx.job("clicks");
        job.wait("rescaled 2 -> 3 mid-run", 2 * MIN, |v| s(v, "status.jobId") != old && s(v, "status.replicas") == "3" && ["RUNNING", "FINISHED"].contains(&s(v, "status.jobState").as_str()));
        ctx.timing("SQL job: rescale 2 -> 3 -> running", t0.elapsed());
        job.wait("the bounded SQL job finishes", 3 * MIN, |v| s(v, "status.phase") == "Finished" || s(v, "status.jobState") == "FINISHED");
        let got = weir_e2e::committed(Path::new(&out));
        assert_eq!(got.len(), expected.len(), "as many committed rows as the uninterrupted run (nothing lost or doubled)");
        assert_eq!(got, expected, "the same rows as the uninterrupted run");
    }

    /// A SQL script that does not plan: the planner's message (line, column, what) in
    /// status.message and a Warning Event, quickly, not a readiness timeout.
    pub fn sql_planning_error_is_reported(ctx: &Ctx) {
        let spec = format!(
            "job:\n  sql: |\n    CREATE TABLE t (n BIGINT) WITH ('connector' = 'datagen');\n    CREATE TABLE o (n BIGINT) WITH ('connector' = 'blackhole');\n    INSERT INTO o SELECT nope FROM t;\nparallelism: 1\ncheckpointing:\n  interval: 1s\n  storage: {}\nrollout:\n  readinessTimeout: 60s\n",
            ctx.storage("badsql")
        );
        let t0 = Instant::now();
        ctx.must_apply(&kube::streamjob_yaml("badsql", &ctx.cluster.image, &spec));
        let job = ctx.job("badsql");
        let names_it = |t: &str| t.contains("job.sql:3:") && t.contains("nope");
        ctx.wait_for("status.message has the planner's error (job.sql:3:..., the unknown column)", MIN, || job.field("status.message").filter(|m| names_it(m)));
        ctx.wait_for("a Warning Event with the planner's error", Duration::from_secs(45), || {
            job.events().into_iter().find(|e| e.kind == "Warning" && names_it(&e.message))
        });
        ctx.timing("SQL planning error: apply -> reported", t0.elapsed());
    }

    pub fn s3_outage_during_an_upgrade_keeps_the_old_job(ctx: &Ctx) {
        if !ctx.needs_harness() {
            return;
        }
        let (Ok(endpoint), Ok(bucket), Some(host_ip)) = (std::env::var("AWS_ENDPOINT_URL"), std::env::var("WEIR_TEST_S3_BUCKET"), ctx.cluster.host_ip.clone()) else {
            panic!("needs the S3 test server of ./test.sh (AWS_ENDPOINT_URL, WEIR_TEST_S3_BUCKET) and WEIR_E2E_HOST_IP");
        };
        let upstream = endpoint.trim_start_matches("http://").trim_end_matches('/').to_string();
        let proxy = proxy::Proxy::start(&format!("{host_ip}:0"), &upstream);
        ctx.log(&format!("S3 proxy {} -> {upstream}", proxy.addr));
        ctx.must_apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: s3}}\nstringData:\n  AWS_ACCESS_KEY_ID: test\n  AWS_SECRET_ACCESS_KEY: test\n  AWS_REGION: us-east-1\n  AWS_ENDPOINT_URL: http://{}\n  AWS_ALLOW_HTTP: \"true\"\n",
            proxy.addr
        ));
        let storage = format!("s3://{bucket}/{}/fraud", ctx.ns);
        let rollout = "rollout:\n  readinessTimeout: 60s\n  savepointTimeout: 15s\n  shutdownTimeout: 20s\n";
        let yaml = |rate: u32| fraud(ctx, "fraud", 1, rate, rollout).replace(&format!("storage: {}\n", ctx.storage("fraud")), &format!("storage: {storage}\n    secretRef:\n      name: s3\n"));
        let v = deploy(ctx, "fraud", &yaml(300));
        let id = s(&v, "status.jobId");
        wait_checkpoint(ctx, "fraud", None);
        proxy.cut(true);
        ctx.log("S3 cut");
        let t0 = Instant::now();
        ctx.must_apply(&yaml(400));
        let job = ctx.job("fraud");
        let storage_error = |t: &str| {
            let t = t.to_lowercase();
            ["s3", "storage", "object store", "connect", "connection", "refused", "reset", "broken pipe", "timed out", "timeout"].iter().any(|w| t.contains(w))
        };
        let msg = ctx.wait_for("status.message or a Warning Event names the storage error", Duration::from_secs(60), || {
            let m = job.field("status.message").unwrap_or_default();
            if m.to_lowercase().contains("savepoint") && storage_error(&m) {
                return Some(format!("status.message: {m}"));
            }
            job.events().into_iter().find(|e| e.kind == "Warning" && storage_error(&e.message)).map(|e| format!("event: {e}"))
        });
        ctx.log(&format!("reported: {msg}"));
        ctx.timing("S3 cut: upgrade -> storage error reported", t0.elapsed());
        let v = job.get().expect("job");
        assert_eq!(s(&v, "status.jobId"), id, "the old deployment keeps running while the savepoint cannot be written");
        assert_eq!(s(&v, "status.jobState"), "RUNNING");
        assert!(ctx.pods("fraud").iter().all(|p| p.job_id == id && p.ready), "the old pods keep running: {:?}", ctx.pods("fraud"));
        proxy.cut(false);
        ctx.log("S3 restored");
        let restored = Instant::now();
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let v = job.wait("healthy after S3 is back: Running, a new checkpoint", 2 * MIN, |v| {
            s(v, "status.phase") == "Running"
                && s(v, "status.jobState") == "RUNNING"
                && s(v, "status.lastCheckpoint.jobId") == s(v, "status.jobId")
                && at(v, "status.lastCheckpoint.timestamp").and_then(Value::as_i64).unwrap_or(0) > since
        });
        ctx.timing("S3 restored -> healthy", restored.elapsed());
        ctx.log(&format!("after the outage: job {} (was {id}), deployed spec {}", s(&v, "status.jobId"), s(&v, "status.deployed.spec")));
    }

    /// Rollout settings of the blue/green scenarios.
    const BLUE_GREEN: &str =
        "rollout:\n  strategy: blueGreen\n  readinessTimeout: 90s\n  savepointTimeout: 30s\n  shutdownTimeout: 30s\n  blueGreen:\n    maxLag: 30s\n";

    fn selector_of(ctx: &Ctx, service: &str) -> Value {
        kube::get_json(&["-n", &ctx.ns, "service", service]).map(|v| v["spec"]["selector"].clone()).unwrap_or(Value::Null)
    }

    fn env_of(sts: &Value, name: &str) -> String {
        sts["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["name"] == name))
            .and_then(|e| e["value"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    pub fn blue_green_upgrade_runs_green_beside_blue_then_switches(ctx: &Ctx) {
        let v = deploy(ctx, "fraud", &fraud(ctx, "fraud", 2, 300, BLUE_GREEN));
        let blue = s(&v, "status.jobId");
        assert_eq!(s(&v, "status.activeSlot"), "blue");
        wait_checkpoint(ctx, "fraud", None);
        let job = ctx.job("fraud");
        let t0 = Instant::now();
        ctx.must_apply(&fraud(ctx, "fraud", 2, 400, BLUE_GREEN));
        // The overlap: green's StatefulSet beside blue's, blue still the RUNNING job behind fraud-rest.
        let (green_sts, fork) = ctx.wait_for("green deployed beside blue", 2 * MIN, || {
            let v = job.get()?;
            let green = kube::get_json(&["-n", &ctx.ns, "statefulset", "fraud-green"])?;
            let fork = at_str(&v, "status.transition.restoreFrom")?;
            Some((green, fork)).filter(|_| s(&v, "status.stage") == "BlueGreenDeploying")
        });
        ctx.timing("blue/green: apply -> green deployed beside blue", t0.elapsed());
        let both = kube::get_json(&["-n", &ctx.ns, "statefulset", "fraud"]).expect("blue's StatefulSet exists during the overlap");
        assert_eq!(env_of(&both, "WEIR_JOB_ID"), blue, "blue's StatefulSet still runs blue");
        let v = job.get().expect("the StreamJob");
        assert_eq!((s(&v, "status.jobId"), s(&v, "status.jobState")), (blue.clone(), "RUNNING".to_string()), "blue runs during the overlap");
        let green = s(&v, "status.transition.jobId");
        assert_ne!(green, blue, "green has its own job id");
        assert_eq!(env_of(&green_sts, "WEIR_JOB_ID"), green);
        assert_eq!(env_of(&green_sts, "WEIR_RESTORE_FROM"), fork, "green restores from the savepoint of blue");
        assert_eq!(green_sts["spec"]["selector"]["matchLabels"]["weir.dev/slot"], "green");
        let hist = at(&v, "status.savepointHistory").and_then(Value::as_array).cloned().unwrap_or_default();
        let taken = hist.iter().find(|h| h["url"] == fork.as_str()).unwrap_or_else(|| panic!("{fork} in the history: {hist:?}"));
        assert_eq!((taken["origin"].as_str(), taken["jobId"].as_str()), (Some("blue-green"), Some(blue.as_str())));
        assert!(savepoint_exists(&fork), "savepoint {fork} is on disk");
        assert_eq!(selector_of(ctx, "fraud-rest")["statefulset.kubernetes.io/pod-name"], "fraud-0", "fraud-rest selects blue during the overlap");
        assert_eq!(selector_of(ctx, "fraud-green-rest")["statefulset.kubernetes.io/pod-name"], "fraud-green-0");
        let overlap_seen = Instant::now();

        let v = job.wait_running("blue/green: green is the job, blue retired", 3 * MIN, Some(&blue));
        ctx.timing("blue/green: apply -> Running on green", t0.elapsed());
        ctx.timing("blue/green: green seen beside blue -> blue retired", overlap_seen.elapsed());
        assert_eq!(s(&v, "status.jobId"), green);
        assert_eq!(s(&v, "status.activeSlot"), "green");
        assert_eq!(s(&v, "status.deployed.restoreFrom"), fork, "status.deployed.restoreFrom is blue's savepoint");
        assert!(s(&v, "status.deployed.spec").contains("400"), "the new spec is deployed");
        assert_eq!(s(&v, "status.lastBlueGreen.outcome"), "Switched");
        assert_eq!(s(&v, "status.lastSavepoint.origin"), "blue-green-final", "blue was stopped with a savepoint");
        assert_eq!(s(&v, "status.lastSavepoint.jobId"), blue);
        assert!(savepoint_exists(&s(&v, "status.lastSavepoint.url")));
        for (what, key) in [("overlap (green running -> blue stopped)", "status.lastBlueGreen.overlapMs"), ("switch (stop of blue -> fraud-rest on green)", "status.lastBlueGreen.switchMs")] {
            let ms = at(&v, key).and_then(Value::as_i64).unwrap_or_else(|| panic!("{key} in status"));
            ctx.timing(&format!("blue/green: {what}, as the operator measured it"), Duration::from_millis(ms as u64));
        }
        // Blue is gone; fraud-rest selects green.
        ctx.wait_for("blue's objects are deleted", MIN, || {
            let gone = ["statefulset/fraud", "service/fraud-peers", "configmap/fraud-job"]
                .iter()
                .all(|o| kube::get_json(&["-n", &ctx.ns, o]).is_none());
            gone.then_some(())
        });
        let pods = ctx.pods("fraud");
        assert!(pods.len() == 2 && pods.iter().all(|p| p.name.starts_with("fraud-green-") && p.job_id == green), "only green's pods: {pods:?}");
        let sel = selector_of(ctx, "fraud-rest");
        assert_eq!((sel["statefulset.kubernetes.io/pod-name"].as_str(), sel["weir.dev/slot"].as_str()), (Some("fraud-green-0"), Some("green")), "{sel}");
        wait_checkpoint(ctx, "fraud", None);
        let events = job.events();
        let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
        ctx.log(&format!("events: {}", events.iter().map(|e| format!("{}:{}", e.reason, e.message)).collect::<Vec<_>>().join(" | ")));
        for r in ["BlueGreenStarted", "SavepointCompleted", "GreenDeploying", "GreenReady", "Switched", "BlueRetired"] {
            assert!(reasons.contains(&r), "an Event {r}: {reasons:?}");
        }
        // Both coordinators report watermarks (GET /v1/job), so maxLag was checked.
        let ready = events.iter().find(|e| e.reason == "GreenReady").map(|e| e.message.clone()).unwrap_or_default();
        assert!(ready.contains("s behind blue's") || ready.contains("s ahead of blue's"), "green's watermark was compared with blue's: {ready}");
        let printed = ctx.k(&["get", "streamjob", "fraud"]).unwrap_or_default();
        ctx.log(&format!("kubectl get streamjob:\n{printed}"));
        assert!(printed.contains("ACTIVE") && printed.contains("green"), "the Active column shows green: {printed}");
        // The deletions of a retired slot are allowed by the chart's RBAC (operator/rbac.yaml).
        let bad = kube::forbidden_lines(&kube::operator_log(ctx.cluster));
        assert!(bad.is_empty(), "the operator log has RBAC denials:\n{}", bad.join("\n"));
    }

    pub fn blue_green_with_a_green_that_cannot_start_leaves_blue_running(ctx: &Ctx) {
        let v = deploy(ctx, "fraud", &fraud(ctx, "fraud", 2, 300, BLUE_GREEN));
        let blue = s(&v, "status.jobId");
        let c = wait_checkpoint(ctx, "fraud", None);
        let job = ctx.job("fraud");
        let restarts: Vec<i64> = ctx.pods("fraud").iter().map(|p| p.restarts).collect();
        let image = "registry.invalid/nobody/no-such-image:1";
        let t0 = Instant::now();
        ctx.must_apply(&fraud(ctx, "fraud", 2, 400, BLUE_GREEN).replace(&format!("image: {}", ctx.cluster.image), &format!("image: {image}")));
        let v = job.wait("the blue/green rollout is aborted and blue runs on", 3 * MIN, |v| {
            s(v, "status.lastBlueGreen.outcome") == "Aborted" && s(v, "status.stage") == "Running"
        });
        ctx.timing("blue/green: unmapped green image: apply -> green removed", t0.elapsed());
        let names_it = |t: &str| t.contains("ImageNotMapped") || t.contains("ErrImageNotMapped") || t.contains(image);
        let msg = s(&v, "status.message");
        assert!(names_it(&msg) && msg.contains("keeps running"), "status.message names green's problem: {msg}");
        assert!(names_it(&s(&v, "status.lastBlueGreen.reason")), "{}", s(&v, "status.lastBlueGreen.reason"));
        assert_eq!((s(&v, "status.jobId"), s(&v, "status.jobState"), s(&v, "status.activeSlot")), (blue.clone(), "RUNNING".into(), "blue".into()));
        let event = job.events().into_iter().find(|e| e.reason == "GreenAborted").expect("a GreenAborted Event");
        assert_eq!(event.kind, "Warning");
        assert!(names_it(&event.message), "the Event names the pods' problem: {}", event.message);
        ctx.wait_for("green's objects are deleted", MIN, || {
            ["statefulset/fraud-green", "service/fraud-green-peers", "service/fraud-green-rest", "configmap/fraud-green-job"]
                .iter()
                .all(|o| kube::get_json(&["-n", &ctx.ns, o]).is_none())
                .then_some(())
        });
        let pods = ctx.pods("fraud");
        assert!(pods.iter().all(|p| p.name.starts_with("fraud-") && !p.name.contains("green") && p.ready && p.job_id == blue), "blue's pods only: {pods:?}");
        assert_eq!(pods.iter().map(|p| p.restarts).collect::<Vec<_>>(), restarts, "blue was not restarted");
        assert_eq!(selector_of(ctx, "fraud-rest")["statefulset.kubernetes.io/pod-name"], "fraud-0");
        // Blue keeps processing: a newer checkpoint of the same job.
        let before = at(&c, "status.lastCheckpoint.id").and_then(Value::as_i64);
        let after = wait_checkpoint(ctx, "fraud", before);
        assert_eq!(s(&after, "status.lastCheckpoint.jobId"), blue);
    }
}

/// A TCP proxy whose traffic can be cut (existing connections closed, new ones
/// refused by closing them on accept).
mod proxy {
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    pub struct Proxy {
        pub addr: String,
        cut: Arc<AtomicBool>,
        conns: Arc<Mutex<Vec<TcpStream>>>,
    }

    impl Proxy {
        pub fn start(listen: &str, upstream: &str) -> Proxy {
            let l = TcpListener::bind(listen).unwrap_or_else(|e| panic!("proxy listen on {listen}: {e}"));
            let addr = l.local_addr().expect("addr").to_string();
            let cut = Arc::new(AtomicBool::new(false));
            let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
            let (c2, k2, up) = (cut.clone(), conns.clone(), upstream.to_string());
            std::thread::spawn(move || {
                for s in l.incoming().flatten() {
                    if c2.load(Ordering::SeqCst) {
                        let _ = s.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(u) = TcpStream::connect(&up) else { continue };
                    let mut list = k2.lock().unwrap();
                    list.retain(|x| x.peer_addr().is_ok());
                    for x in [&s, &u] {
                        if let Ok(c) = x.try_clone() {
                            list.push(c);
                        }
                    }
                    drop(list);
                    for (mut a, mut b) in [(s.try_clone(), u.try_clone()), (u.try_clone(), s.try_clone())].into_iter().filter_map(|(a, b)| Some((a.ok()?, b.ok()?))) {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut a, &mut b);
                            let _ = b.shutdown(Shutdown::Write);
                        });
                    }
                }
            });
            Proxy { addr, cut, conns }
        }

        pub fn cut(&self, on: bool) {
            self.cut.store(on, Ordering::SeqCst);
            if on {
                for c in self.conns.lock().unwrap().drain(..) {
                    let _ = c.shutdown(Shutdown::Both);
                }
            }
        }
    }
}
