//! Lifecycle transitions as data: (spec, status, observed) → (stage, actions, events),
//! plus a simulated world in which the operator crashes at every step of an upgrade.

use weir_api::{CheckpointRef, JobState, JobStatus, OperationStatus, SavepointStatus};

use super::*;
use crate::crd::*;

const T0: i64 = 1_700_000_000_000;

fn spec() -> StreamJobSpec {
    serde_yaml_ng::from_str(
        r#"
image: weir:1
job: {builtin: fraud-detection}
parallelism: 2
checkpointing: {storage: "s3://b/jobs/fraud"}
"#,
    )
    .expect("base spec")
}

fn with(f: impl FnOnce(&mut StreamJobSpec)) -> StreamJobSpec {
    let mut s = spec();
    f(&mut s);
    s
}

fn deployment(s: &StreamJobSpec, job_id: &str, generation: i64) -> Deployment {
    Deployment { job_id: job_id.into(), generation, spec: serde_json::to_string(s).unwrap(), restore_from: None, deployed_at: T0, slot: Slot::Blue }
}

/// Running generation 1 (spec()) as job j1.
fn running() -> StreamJobStatus {
    StreamJobStatus {
        stage: Some(Stage::Running),
        deployed: Some(deployment(&spec(), "j1", 1)),
        last_stable: Some(deployment(&spec(), "j1", 1)),
        job_id: Some("j1".into()),
        ..Default::default()
    }
}

fn transition(kind: TransitionKind, target: &StreamJobSpec, generation: i64) -> Transition {
    Transition {
        kind,
        mode: UpgradeMode::Savepoint,
        target_spec: serde_json::to_string(target).unwrap(),
        target_generation: generation,
        savepoint_target: Some("s3://b/jobs/fraud/savepoints/j1-sp-1".into()),
        savepoint_trigger: Some("sp-1".into()),
        restore_from: None,
        job_id: None,
        started_at: T0,
        stage_started_at: T0,
        reason: None,
        slot: None,
        caught_up_at: None,
        green_running_since: None,
    }
}

fn in_stage(stage: Stage, t: Option<Transition>) -> StreamJobStatus {
    StreamJobStatus { stage: Some(stage), transition: t, ..running() }
}

fn job(id: &str, state: JobState) -> JobObserved {
    JobObserved::Status(JobStatus {
        id: id.into(),
        name: "fraud".into(),
        state,
        parallelism: 2,
        max_parallelism: 720,
        started: T0,
        running_since: None,
        last_checkpoint: Some(CheckpointRef { id: 9, url: format!("s3://b/jobs/fraud/{id}/checkpoints/chk-9"), timestamp: T0 + 50_000, bytes: 1 }),
        restarts: 0,
        watermark: None,
        error: if state == JobState::Failed { Some("sink: connection refused".into()) } else { None },
    })
}

fn obs(pods: Option<(i32, i32, i32)>, job: JobObserved, sp: Option<OperationStatus>) -> Observed {
    Observed {
        pods: pods.map(|(desired, current, ready)| PodsObserved { desired, current, ready, problem: None }),
        job,
        savepoint: sp.map(|status| SavepointStatus {
            id: "sp-1".into(),
            status,
            url: (status == OperationStatus::Completed).then(|| "s3://b/jobs/fraud/savepoints/j1-sp-1".into()),
            error: (status == OperationStatus::Failed).then(|| "sink refused to flush".into()),
        }),
        savepoint_missing: false,
        other: None,
    }
}

fn up(pods: i32, id: &str, state: JobState) -> Observed {
    obs(Some((pods, pods, pods)), job(id, state), None)
}

// ------------------------------------------------------------ blue/green helpers

const SP: &str = "s3://b/jobs/fraud/savepoints/j1-sp-1";

fn blue_green(f: impl FnOnce(&mut StreamJobSpec)) -> StreamJobSpec {
    with(|s| {
        s.rollout = Some(Rollout { strategy: RolloutStrategy::BlueGreen, ..Rollout::default() });
        f(s)
    })
}

/// The blue/green upgrade to `weir:2` (generation 2) in flight, green in slot green.
fn bg_transition() -> Transition {
    Transition { slot: Some(Slot::Green), ..transition(TransitionKind::Upgrade, &blue_green(|s| s.image = "weir:2".into()), 2) }
}

/// Green (j2) deployed from SP, in `stage`.
fn bg_green(stage: Stage) -> StreamJobStatus {
    in_stage(stage, Some(Transition { job_id: Some("j2".into()), restore_from: Some(SP.into()), ..bg_transition() }))
}

/// Blue (j1) running behind `<job>-rest`, and the other slot as given.
fn bg_obs(blue: JobObserved, savepoint: Option<OperationStatus>, green: Option<(i32, JobObserved)>) -> Observed {
    let other = SideObserved {
        pods: green.as_ref().map(|(ready, _)| PodsObserved { desired: 2, current: 2, ready: *ready, problem: None }),
        job: green.map(|(_, j)| j).unwrap_or(JobObserved::NotQueried),
    };
    Observed { other: Some(other), ..obs(Some((2, 2, 2)), blue, savepoint) }
}

fn with_job(j: JobObserved, f: impl FnOnce(&mut JobStatus)) -> JobObserved {
    match j {
        JobObserved::Status(mut s) => {
            f(&mut s);
            JobObserved::Status(s)
        }
        o => o,
    }
}

/// A short form of an action for the tables.
fn short(a: &Action) -> String {
    match a {
        Action::Apply(p) => {
            let slot = match (p.slot, p.active) {
                (Slot::Blue, true) => String::new(),
                (slot, true) => format!("{slot} active "),
                (slot, false) => format!("{slot} "),
            };
            format!("apply({slot}{}{})", p.replicas, p.restore_from.as_ref().map(|r| format!(" <- {r}")).unwrap_or_default())
        }
        Action::RemoveSlot(slot) => format!("remove({slot})"),
        Action::TriggerSavepoint { stop: true, .. } => "stop-with-savepoint".into(),
        Action::TriggerSavepoint { stop: false, .. } => "savepoint".into(),
        Action::Dispose(urls) => format!("dispose({})", urls.len()),
        Action::RemoveFinalizer => "remove-finalizer".into(),
    }
}

struct Case {
    name: &'static str,
    spec: StreamJobSpec,
    generation: i64,
    status: StreamJobStatus,
    observed: Observed,
    deleting: bool,
    now: i64,
    stage: Stage,
    actions: &'static [&'static str],
    events: &'static [&'static str],
    check: fn(&Step),
}

impl Default for Case {
    fn default() -> Self {
        Case {
            name: "",
            spec: spec(),
            generation: 1,
            status: running(),
            observed: up(2, "j1", JobState::Running),
            deleting: false,
            now: T0 + 60_000,
            stage: Stage::Running,
            actions: &[],
            events: &[],
            check: |_| {},
        }
    }
}

fn run(c: &Case) -> Step {
    let input = Input {
        name: "fraud",
        namespace: "prod",
        generation: c.generation,
        spec: &c.spec,
        status: &c.status,
        observed: &c.observed,
        now: c.now,
        deleting: c.deleting,
        fresh_job_id: "j2",
    };
    step(&input)
}

fn cases() -> Vec<Case> {
    let rescaled = with(|s| s.parallelism = 4);
    let upgraded = with(|s| s.image = "weir:2".into());
    vec![
        Case {
            name: "new job deploys from empty state with a fresh job id",
            status: StreamJobStatus::default(),
            observed: Observed::nothing(),
            stage: Stage::Deploying,
            actions: &["apply(2)"],
            events: &["Deploying", "StageChanged"],
            check: |s| {
                assert_eq!(s.status.job_id.as_deref(), Some("j2"));
                assert_eq!(s.status.phase.as_deref(), Some("Deploying"));
                assert_eq!(s.status.selector.as_deref(), Some("weir.dev/job=fraud"));
            },
            ..Default::default()
        },
        Case {
            name: "new job starts from spec.initialSavepoint",
            spec: with(|s| s.initial_savepoint = Some("s3://b/old/sp-7".into())),
            status: StreamJobStatus::default(),
            observed: Observed::nothing(),
            stage: Stage::Deploying,
            actions: &["apply(2 <- s3://b/old/sp-7)"],
            events: &["Deploying", "StageChanged"],
            ..Default::default()
        },
        Case {
            name: "new job created suspended deploys nothing",
            spec: with(|s| s.state = DesiredState::Suspended),
            status: StreamJobStatus::default(),
            observed: Observed::nothing(),
            stage: Stage::Suspended,
            events: &["Suspended", "StageChanged"],
            check: |s| assert_eq!(s.status.replicas, 0),
            ..Default::default()
        },
        Case {
            name: "invalid new spec is reported, nothing deployed",
            spec: with(|s| s.parallelism = 1000),
            status: StreamJobStatus::default(),
            observed: Observed::nothing(),
            stage: Stage::New,
            events: &["InvalidSpec"],
            check: |s| {
                assert!(s.status.message.as_deref().unwrap().contains("maxParallelism"));
            },
            ..Default::default()
        },
        Case {
            name: "deploying waits for the job to run",
            status: in_stage(Stage::Deploying, Some(Transition { job_id: Some("j2".into()), ..transition(TransitionKind::Upgrade, &upgraded, 2) })),
            spec: upgraded.clone(),
            generation: 2,
            observed: obs(Some((2, 2, 0)), JobObserved::Unreachable("connection refused".into()), None),
            stage: Stage::Deploying,
            actions: &["apply(2)"],
            check: |s| assert_eq!(s.requeue_ms, POLL_MS),
            ..Default::default()
        },
        Case {
            name: "deploying completes when the new job id runs on every pod",
            status: in_stage(Stage::Deploying, Some(Transition { job_id: Some("j2".into()), ..transition(TransitionKind::Upgrade, &upgraded, 2) })),
            spec: upgraded.clone(),
            generation: 2,
            observed: up(2, "j2", JobState::Running),
            stage: Stage::Running,
            actions: &["apply(2)"],
            events: &["Deployed", "StageChanged"],
            check: |s| {
                let d = s.status.deployed.as_ref().unwrap();
                assert_eq!((d.job_id.as_str(), d.generation), ("j2", 2));
                assert_eq!(s.status.last_stable, s.status.deployed);
                assert!(s.status.transition.is_none());
                assert_eq!(s.status.observed_generation, Some(2));
                assert_eq!(s.completed.map(|c| c.kind), Some(TransitionKind::Upgrade));
                // the runtime did not say when it ran: no pause is claimed
                let r = s.status.last_transition.as_ref().unwrap();
                assert_eq!((r.kind, r.job_id.as_str(), r.paused_ms), (TransitionKind::Upgrade, "j2", None));
            },
            ..Default::default()
        },
        Case {
            name: "a completed rescale records how long processing paused",
            status: in_stage(Stage::Deploying, Some(Transition { job_id: Some("j2".into()), ..transition(TransitionKind::Rescale, &rescaled, 2) })),
            spec: rescaled.clone(),
            generation: 2,
            now: T0 + 9_000,
            observed: obs(
                Some((4, 4, 4)),
                match job("j2", JobState::Running) {
                    JobObserved::Status(j) => JobObserved::Status(JobStatus { running_since: Some(T0 + 3_300), ..j }),
                    o => o,
                },
                None,
            ),
            stage: Stage::Running,
            actions: &["apply(4)"],
            events: &["Deployed", "StageChanged"],
            check: |s| {
                let r = s.status.last_transition.as_ref().unwrap();
                assert_eq!((r.kind, r.started_at, r.finished_at, r.paused_ms), (TransitionKind::Rescale, T0, T0 + 9_000, Some(3_300)));
                assert_eq!(s.completed.and_then(|c| c.paused_secs), Some(3.3));
                let note = &s.events.iter().find(|e| e.reason == "Deployed").unwrap().note;
                assert!(note.contains("processing paused 3.3 s"), "{note}");
            },
            ..Default::default()
        },
        Case {
            name: "deploying: an old job id still answering does not count",
            status: in_stage(Stage::Deploying, Some(Transition { job_id: Some("j2".into()), ..transition(TransitionKind::Upgrade, &upgraded, 2) })),
            spec: upgraded.clone(),
            generation: 2,
            observed: up(2, "j1", JobState::Running),
            stage: Stage::Deploying,
            actions: &["apply(2)"],
            ..Default::default()
        },
        Case {
            name: "upgrade not healthy within readinessTimeout rolls back from the upgrade's savepoint",
            status: in_stage(
                Stage::Deploying,
                Some(Transition {
                    job_id: Some("j2".into()),
                    restore_from: Some("s3://b/jobs/fraud/savepoints/j1-sp-1".into()),
                    ..transition(TransitionKind::Upgrade, &upgraded, 2)
                }),
            ),
            spec: upgraded.clone(),
            generation: 2,
            observed: obs(Some((2, 2, 1)), job("j2", JobState::Restarting), None),
            now: T0 + 301_000,
            stage: Stage::Stopping,
            actions: &["apply(2 <- s3://b/jobs/fraud/savepoints/j1-sp-1)"],
            events: &["RollingBack", "StageChanged"],
            check: |s| {
                let t = s.status.transition.as_ref().unwrap();
                assert_eq!(t.kind, TransitionKind::Rollback);
                assert_eq!(t.target_generation, 1);
                assert_eq!(t.restore_from.as_deref(), Some("s3://b/jobs/fraud/savepoints/j1-sp-1"));
                assert_eq!(s.status.failed_generation, Some(2));
                assert_eq!(s.status.phase.as_deref(), Some("RollingBack"));
                assert!(s.status.message.as_deref().unwrap().contains("readinessTimeout"));
            },
            ..Default::default()
        },
        Case {
            name: "a rollback that fails too leaves the upgrade's generation failed (not retried in a loop)",
            status: StreamJobStatus {
                failed_generation: Some(2),
                ..in_stage(
                    Stage::Deploying,
                    Some(Transition { job_id: Some("j3".into()), ..transition(TransitionKind::Rollback, &spec(), 1) }),
                )
            },
            spec: upgraded.clone(),
            generation: 2,
            observed: up(2, "j3", JobState::Failed),
            stage: Stage::Failed,
            actions: &["apply(2)"],
            events: &["DeploymentFailed", "StageChanged"],
            check: |s| {
                assert_eq!(s.status.failed_generation, Some(2));
                // The next reconcile in Failed does not start the failed generation again.
                let observed = up(2, "j3", JobState::Failed);
                let input = Input {
                    name: "fraud",
                    namespace: "prod",
                    generation: 2,
                    spec: &with(|s| s.image = "weir:2".into()),
                    status: &s.status,
                    observed: &observed,
                    now: T0 + 5_000,
                    deleting: false,
                    fresh_job_id: "j4",
                };
                let next = step(&input);
                assert_eq!(next.status.stage, Some(Stage::Failed));
                assert!(next.status.transition.is_none(), "{:?}", next.status.transition);
            },
            ..Default::default()
        },
        Case {
            name: "a finished job's pods are scaled to 0",
            status: in_stage(Stage::Finished, None),
            observed: up(2, "j1", JobState::Finished),
            stage: Stage::Finished,
            actions: &["apply(0)"],
            ..Default::default()
        },
        Case {
            name: "a rollout-only change after the job finished is recorded, not deployed",
            status: in_stage(Stage::Finished, None),
            spec: with(|s| s.rollout = Some(Rollout { readiness_timeout: "2m".into(), ..Rollout::default() })),
            generation: 2,
            stage: Stage::Finished,
            actions: &["apply(0)"],
            events: &["SpecChangeIgnored"],
            check: |s| {
                assert!(s.status.transition.is_none());
                assert_eq!(s.status.deployed.as_ref().unwrap().generation, 2);
                assert_eq!(s.status.observed_generation, Some(2));
            },
            ..Default::default()
        },
        Case {
            name: "a FAILED first deployment reports the runtime's error",
            status: StreamJobStatus {
                stage: Some(Stage::Deploying),
                transition: Some(Transition { job_id: Some("j2".into()), ..transition(TransitionKind::Deploy, &spec(), 1) }),
                ..Default::default()
            },
            observed: up(2, "j2", JobState::Failed),
            stage: Stage::Failed,
            actions: &["apply(2)"],
            events: &["DeploymentFailed", "StageChanged"],
            check: |s| {
                assert!(s.status.error.as_deref().unwrap().contains("sink: connection refused"));
                let degraded = s.status.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
                assert_eq!(degraded.status, "True");
            },
            ..Default::default()
        },
        Case {
            name: "steady state re-applies the deployed objects and is Ready",
            stage: Stage::Running,
            actions: &["apply(2)"],
            check: |s| {
                let ready = s.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
                assert_eq!(ready.status, "True");
                assert_eq!(s.status.job_state.as_deref(), Some("RUNNING"));
                assert_eq!(s.status.last_checkpoint.as_ref().map(|c| c.id), Some(9));
                assert_eq!(s.status.replicas, 2);
            },
            ..Default::default()
        },
        Case {
            name: "image change in savepoint mode: stop-with-savepoint to a target chosen first",
            spec: upgraded.clone(),
            generation: 2,
            stage: Stage::Savepointing,
            actions: &["apply(2)", "stop-with-savepoint"],
            events: &["SpecChangeUpgrade", "TransitionStarted", "StageChanged"],
            check: |s| {
                let t = s.status.transition.as_ref().unwrap();
                assert_eq!(t.kind, TransitionKind::Upgrade);
                // Request id and directory are chosen (and written) before the trigger.
                assert_eq!(t.savepoint_target.as_deref(), Some("s3://b/jobs/fraud/savepoints/sp-j1-1"));
                assert_eq!(t.savepoint_trigger.as_deref(), Some("sp-j1-1"));
                let trigger = s.actions.iter().find_map(|a| match a {
                    Action::TriggerSavepoint { request_id, target, .. } => Some((request_id.as_str(), target.as_str())),
                    _ => None,
                });
                assert_eq!(trigger, Some(("sp-j1-1", "s3://b/jobs/fraud/savepoints/sp-j1-1")));
                assert_eq!(s.status.phase.as_deref(), Some("Upgrading"));
                assert_eq!(s.status.observed_generation, Some(2));
            },
            ..Default::default()
        },
        Case {
            name: "parallelism-only change is a rescale",
            spec: rescaled.clone(),
            generation: 2,
            stage: Stage::Savepointing,
            actions: &["apply(2)", "stop-with-savepoint"],
            events: &["SpecChangeRescale", "TransitionStarted", "StageChanged"],
            check: |s| assert_eq!(s.status.transition.as_ref().unwrap().kind, TransitionKind::Rescale),
            ..Default::default()
        },
        Case {
            name: "rescale waits for rescale.minInterval",
            spec: with(|s| {
                s.parallelism = 4;
                s.rescale = Some(RescalePolicy { min_interval: Some("10m".into()), round_to_divisor: false });
            }),
            status: StreamJobStatus { last_rescale_at: Some(T0), ..running() },
            generation: 2,
            stage: Stage::Running,
            actions: &["apply(2)"],
            events: &["RescaleDeferred"],
            check: |s| {
                let note = "rescale 2 -> 4 (generation 2) held back until 2023-11-14T22:23:20Z by rescale.minInterval 10m";
                assert_eq!(s.status.message.as_deref(), Some(note));
                assert_eq!(s.events[0].note, note, "the same words every poll: one Event series");
                assert!(s.requeue_ms <= STEADY_MS);
            },
            ..Default::default()
        },
        Case {
            name: "rounding to a divisor of maxParallelism that lands on the same parallelism is ignored",
            status: StreamJobStatus {
                deployed: Some(deployment(&with(|s| {
                    s.parallelism = 8;
                    s.rescale = Some(RescalePolicy { min_interval: None, round_to_divisor: true });
                }), "j1", 1)),
                ..running()
            },
            spec: with(|s| {
                s.parallelism = 7;
                s.rescale = Some(RescalePolicy { min_interval: None, round_to_divisor: true });
            }),
            generation: 2,
            observed: up(8, "j1", JobState::Running),
            stage: Stage::Running,
            actions: &["apply(8)"],
            events: &["SpecChangeIgnored"],
            ..Default::default()
        },
        Case {
            name: "a rollout-only change is ignored (announced)",
            spec: with(|s| s.rollout = Some(Rollout { readiness_timeout: "9m".into(), ..Rollout::default() })),
            generation: 2,
            stage: Stage::Running,
            actions: &["apply(2)"],
            events: &["SpecChangeIgnored"],
            check: |s| assert_eq!(s.status.deployed.as_ref().unwrap().generation, 2),
            ..Default::default()
        },
        Case {
            name: "last-state upgrade redeploys from the _latest checkpoint, no savepoint",
            spec: with(|s| {
                s.image = "weir:2".into();
                s.upgrade_mode = UpgradeMode::LastState;
            }),
            generation: 2,
            stage: Stage::Stopping,
            actions: &["apply(2)"],
            events: &["SpecChangeUpgrade", "TransitionStarted", "StageChanged"],
            check: |s| {
                let t = s.status.transition.as_ref().unwrap();
                assert_eq!(t.restore_from.as_deref(), Some("s3://b/jobs/fraud/j1/checkpoints/_latest"));
            },
            ..Default::default()
        },
        Case {
            name: "stateless upgrade redeploys empty",
            spec: with(|s| {
                s.image = "weir:2".into();
                s.upgrade_mode = UpgradeMode::Stateless;
            }),
            generation: 2,
            stage: Stage::Stopping,
            actions: &["apply(2)"],
            events: &["SpecChangeUpgrade", "TransitionStarted", "StageChanged"],
            check: |s| assert_eq!(s.status.transition.as_ref().unwrap().restore_from, None),
            ..Default::default()
        },
        Case {
            name: "upgrade in savepoint mode waits while the job is RESTARTING",
            spec: upgraded.clone(),
            generation: 2,
            observed: up(2, "j1", JobState::Restarting),
            stage: Stage::Running,
            actions: &["apply(2)"],
            check: |s| assert!(s.status.message.as_deref().unwrap().contains("waits for the job to be RUNNING")),
            ..Default::default()
        },
        Case {
            name: "savepoint completed: recorded, then stop the old pods",
            status: in_stage(Stage::Savepointing, Some(transition(TransitionKind::Rescale, &rescaled, 2))),
            spec: rescaled.clone(),
            generation: 2,
            observed: obs(Some((2, 2, 2)), job("j1", JobState::Finished), Some(OperationStatus::Completed)),
            stage: Stage::Stopping,
            events: &["SavepointCompleted", "StageChanged"],
            check: |s| {
                let url = "s3://b/jobs/fraud/savepoints/j1-sp-1";
                assert_eq!(s.status.transition.as_ref().unwrap().restore_from.as_deref(), Some(url));
                assert_eq!(s.status.last_savepoint.as_ref().unwrap().url, url);
                assert_eq!(s.status.savepoint_history.len(), 1);
            },
            ..Default::default()
        },
        Case {
            name: "savepoint failed: the old job keeps running and status says why",
            status: in_stage(Stage::Savepointing, Some(transition(TransitionKind::Upgrade, &upgraded, 2))),
            spec: upgraded.clone(),
            generation: 2,
            observed: obs(Some((2, 2, 2)), job("j1", JobState::Running), Some(OperationStatus::Failed)),
            stage: Stage::Running,
            events: &["SavepointFailed", "StageChanged"],
            check: |s| {
                assert!(s.status.transition.is_none());
                assert_eq!(s.status.failed_generation, Some(2));
                let m = s.status.message.as_deref().unwrap();
                assert!(m.contains("sink refused to flush") && m.contains("keeps running generation 1"), "{m}");
                let d = s.status.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
                assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "UpdateNotApplied"));
            },
            ..Default::default()
        },
        Case {
            name: "after a failed savepoint the same generation is not retried",
            status: StreamJobStatus { failed_generation: Some(2), message: Some("x".into()), ..running() },
            spec: upgraded.clone(),
            generation: 2,
            stage: Stage::Running,
            actions: &["apply(2)"],
            ..Default::default()
        },
        Case {
            name: "savepoint failed, fresh checkpoint and fallback allowed: upgrade from _latest",
            status: StreamJobStatus {
                last_checkpoint: Some(CheckpointRecord { id: 9, url: "u".into(), timestamp: T0 + 50_000, job_id: "j1".into() }),
                ..in_stage(Stage::Savepointing, Some(transition(TransitionKind::Upgrade, &upgraded, 2)))
            },
            spec: with(|s| {
                s.image = "weir:2".into();
                s.rollout = Some(Rollout { checkpoint_fallback_max_age: Some("1m".into()), ..Rollout::default() });
            }),
            generation: 2,
            observed: obs(Some((2, 2, 2)), job("j1", JobState::Running), Some(OperationStatus::Failed)),
            stage: Stage::Stopping,
            events: &["SavepointFailed", "StageChanged"],
            check: |s| {
                assert_eq!(s.status.transition.as_ref().unwrap().restore_from.as_deref(), Some("s3://b/jobs/fraud/j1/checkpoints/_latest"));
            },
            ..Default::default()
        },
        Case {
            name: "savepoint failed, checkpoint too old for the fallback: keep running",
            status: StreamJobStatus {
                last_checkpoint: Some(CheckpointRecord { id: 9, url: "u".into(), timestamp: T0 - 3_600_000, job_id: "j1".into() }),
                ..in_stage(Stage::Savepointing, Some(transition(TransitionKind::Upgrade, &upgraded, 2)))
            },
            spec: with(|s| {
                s.image = "weir:2".into();
                s.rollout = Some(Rollout { checkpoint_fallback_max_age: Some("1m".into()), ..Rollout::default() });
            }),
            generation: 2,
            observed: obs(Some((2, 2, 2)), JobObserved::Status(JobStatus { last_checkpoint: None, ..match job("j1", JobState::Running) { JobObserved::Status(j) => j, _ => unreachable!() } }), Some(OperationStatus::Failed)),
            stage: Stage::Running,
            events: &["SavepointFailed", "StageChanged"],
            ..Default::default()
        },
        Case {
            name: "savepoint timed out",
            status: in_stage(Stage::Savepointing, Some(transition(TransitionKind::Upgrade, &upgraded, 2))),
            spec: upgraded.clone(),
            generation: 2,
            observed: obs(Some((2, 2, 2)), job("j1", JobState::Running), Some(OperationStatus::InProgress)),
            now: T0 + 601_000,
            stage: Stage::Running,
            events: &["SavepointFailed", "StageChanged"],
            ..Default::default()
        },
        Case {
            name: "trigger id lost (crash before it was recorded) but the job FINISHED: the savepoint is at its target",
            status: in_stage(Stage::Savepointing, Some(Transition { savepoint_trigger: None, ..transition(TransitionKind::Upgrade, &upgraded, 2) })),
            spec: upgraded.clone(),
            generation: 2,
            observed: up(2, "j1", JobState::Finished),
            stage: Stage::Stopping,
            events: &["SavepointCompleted", "StageChanged"],
            check: |s| assert_eq!(s.status.transition.as_ref().unwrap().restore_from.as_deref(), Some("s3://b/jobs/fraud/savepoints/j1-sp-1")),
            ..Default::default()
        },
        Case {
            name: "trigger never reached a RUNNING job: trigger again, same target",
            status: in_stage(Stage::Savepointing, Some(Transition { savepoint_trigger: None, ..transition(TransitionKind::Upgrade, &upgraded, 2) })),
            spec: upgraded.clone(),
            generation: 2,
            stage: Stage::Savepointing,
            actions: &["stop-with-savepoint"],
            ..Default::default()
        },
        Case {
            name: "stopping scales the old pods to 0 and waits",
            status: in_stage(Stage::Stopping, Some(Transition { restore_from: Some("sp".into()), ..transition(TransitionKind::Rescale, &rescaled, 2) })),
            spec: rescaled.clone(),
            generation: 2,
            observed: obs(Some((2, 1, 0)), JobObserved::Unreachable("gone".into()), None),
            stage: Stage::Stopping,
            actions: &["apply(0)"],
            ..Default::default()
        },
        Case {
            name: "rescale P=2 -> P'=4: redeploy with 4 pods from the savepoint, fresh job id",
            status: in_stage(Stage::Stopping, Some(Transition { restore_from: Some("sp".into()), ..transition(TransitionKind::Rescale, &rescaled, 2) })),
            spec: rescaled.clone(),
            generation: 2,
            observed: obs(Some((0, 0, 0)), JobObserved::NotQueried, None),
            stage: Stage::Deploying,
            actions: &["apply(4 <- sp)"],
            events: &["Deploying", "StageChanged"],
            check: |s| {
                assert_eq!(s.status.transition.as_ref().unwrap().job_id.as_deref(), Some("j2"));
                assert_eq!(s.status.phase.as_deref(), Some("Rescaling"));
            },
            ..Default::default()
        },
        Case {
            name: "suspend: stop-with-savepoint",
            spec: with(|s| s.state = DesiredState::Suspended),
            generation: 2,
            stage: Stage::Savepointing,
            actions: &["apply(2)", "stop-with-savepoint"],
            events: &["TransitionStarted", "StageChanged"],
            check: |s| assert_eq!(s.status.phase.as_deref(), Some("Suspending")),
            ..Default::default()
        },
        Case {
            name: "suspend: pods gone -> Suspended, resumes from the savepoint",
            spec: with(|s| s.state = DesiredState::Suspended),
            generation: 2,
            status: in_stage(Stage::Stopping, Some(Transition { restore_from: Some("sp".into()), ..transition(TransitionKind::Suspend, &spec(), 2) })),
            observed: obs(Some((0, 0, 0)), JobObserved::NotQueried, None),
            stage: Stage::Suspended,
            actions: &["apply(0)"],
            events: &["Suspended", "StageChanged"],
            check: |s| {
                assert_eq!(s.status.resume_from.as_deref(), Some("sp"));
                assert_eq!(s.status.phase.as_deref(), Some("Suspended"));
            },
            ..Default::default()
        },
        Case {
            name: "resume: deploy from the suspend savepoint with a fresh job id",
            generation: 3,
            status: StreamJobStatus { stage: Some(Stage::Suspended), resume_from: Some("sp".into()), ..running() },
            observed: obs(Some((0, 0, 0)), JobObserved::NotQueried, None),
            stage: Stage::Deploying,
            actions: &["apply(0)", "apply(2 <- sp)"],
            events: &["Deploying", "StageChanged"],
            ..Default::default()
        },
        Case {
            name: "restartNonce restarts with the upgrade mode",
            spec: with(|s| s.restart_nonce = Some(1)),
            generation: 2,
            stage: Stage::Savepointing,
            actions: &["apply(2)", "stop-with-savepoint"],
            events: &["TransitionStarted", "StageChanged"],
            check: |s| {
                assert_eq!(s.status.transition.as_ref().unwrap().kind, TransitionKind::Restart);
                assert_eq!(s.status.handled_restart_nonce, Some(1));
            },
            ..Default::default()
        },
        Case {
            name: "savepointNonce takes a savepoint, the job keeps running",
            spec: with(|s| s.savepoint_nonce = Some(5)),
            generation: 2,
            stage: Stage::Running,
            actions: &["apply(2)", "savepoint"],
            events: &["SpecChangeIgnored", "SavepointTriggered"],
            check: |s| {
                let p = s.status.pending_savepoint.as_ref().unwrap();
                assert_eq!(p.origin, "manual");
                assert_eq!(s.status.handled_savepoint_nonce, Some(5));
            },
            ..Default::default()
        },
        Case {
            name: "a completed manual savepoint enters the bounded history; the oldest is disposed of",
            spec: with(|s| s.savepoint_history = Some(SavepointHistory { max_count: 2, max_age: None })),
            status: StreamJobStatus {
                pending_savepoint: Some(PendingSavepoint { target: "t".into(), trigger: Some("sp-1".into()), origin: "manual".into(), requested_at: T0 }),
                savepoint_history: vec![
                    SavepointRecord { url: "old-1".into(), timestamp: T0 - 2, job_id: "j1".into(), origin: "manual".into() },
                    SavepointRecord { url: "old-2".into(), timestamp: T0 - 1, job_id: "j1".into(), origin: "manual".into() },
                ],
                ..running()
            },
            observed: obs(Some((2, 2, 2)), job("j1", JobState::Running), Some(OperationStatus::Completed)),
            stage: Stage::Running,
            actions: &["apply(2)", "dispose(1)"],
            events: &["SavepointCompleted"],
            check: |s| {
                let urls: Vec<&str> = s.status.savepoint_history.iter().map(|s| s.url.as_str()).collect();
                assert_eq!(urls, ["old-2", "s3://b/jobs/fraud/savepoints/j1-sp-1"]);
                assert_eq!(s.status.pending_disposal, ["old-1"]);
            },
            ..Default::default()
        },
        Case {
            name: "periodic savepoint when due",
            spec: with(|s| s.checkpointing.as_mut().unwrap().savepoint_interval = Some("1m".into())),
            generation: 1,
            now: T0 + 61_000,
            stage: Stage::Running,
            actions: &["apply(2)", "savepoint"],
            events: &["SavepointTriggered"],
            check: |s| assert_eq!(s.status.pending_savepoint.as_ref().unwrap().origin, "periodic"),
            ..Default::default()
        },
        Case {
            name: "the job FAILED: reported with the runtime's error",
            observed: up(2, "j1", JobState::Failed),
            stage: Stage::Failed,
            actions: &["apply(2)"],
            events: &["JobFailed", "StageChanged"],
            check: |s| {
                assert_eq!(s.status.error.as_deref(), Some("sink: connection refused"));
                assert_eq!(s.status.phase.as_deref(), Some("Failed"));
            },
            ..Default::default()
        },
        Case {
            name: "a failed job with a fixed spec redeploys from its newest checkpoint (never empty)",
            status: StreamJobStatus {
                error: Some("boom".into()),
                last_checkpoint: Some(CheckpointRecord { id: 9, url: "u".into(), timestamp: T0, job_id: "j1".into() }),
                ..in_stage(Stage::Failed, None)
            },
            spec: upgraded.clone(),
            generation: 2,
            observed: up(2, "j1", JobState::Failed),
            stage: Stage::Stopping,
            events: &["TransitionStarted", "StageChanged"],
            check: |s| assert_eq!(s.status.transition.as_ref().unwrap().restore_from.as_deref(), Some("s3://b/jobs/fraud/j1/checkpoints/_latest")),
            ..Default::default()
        },
        Case {
            name: "unhealthy (restarting in a loop) job is restarted from its latest checkpoint",
            spec: with(|s| {
                s.rollout = Some(Rollout { restart_on_unhealthy: Some(UnhealthyPolicy { max_restarts: Some(3), checkpoint_progress_timeout: None }), ..Rollout::default() })
            }),
            observed: obs(
                Some((2, 2, 2)),
                JobObserved::Status(JobStatus { restarts: 5, ..match job("j1", JobState::Running) { JobObserved::Status(j) => j, _ => unreachable!() } }),
                None,
            ),
            stage: Stage::Stopping,
            actions: &["apply(2)"],
            events: &["JobUnhealthy", "TransitionStarted", "StageChanged"],
            check: |s| {
                let t = s.status.transition.as_ref().unwrap();
                assert_eq!((t.kind, t.mode), (TransitionKind::Recover, UpgradeMode::LastState));
                assert_eq!(t.restore_from.as_deref(), Some("s3://b/jobs/fraud/j1/checkpoints/_latest"));
            },
            ..Default::default()
        },
        Case {
            name: "no checkpoint progress for too long is unhealthy too",
            spec: with(|s| {
                s.rollout = Some(Rollout {
                    restart_on_unhealthy: Some(UnhealthyPolicy { max_restarts: None, checkpoint_progress_timeout: Some("5m".into()) }),
                    ..Rollout::default()
                })
            }),
            now: T0 + 3_600_000,
            stage: Stage::Stopping,
            actions: &["apply(2)"],
            events: &["JobUnhealthy", "TransitionStarted", "StageChanged"],
            ..Default::default()
        },
        Case {
            name: "delete with a running job: final stop-with-savepoint",
            deleting: true,
            stage: Stage::Deleting,
            actions: &["stop-with-savepoint"],
            events: &["FinalSavepoint", "StageChanged"],
            check: |s| assert_eq!(s.status.transition.as_ref().unwrap().kind, TransitionKind::Delete),
            ..Default::default()
        },
        Case {
            name: "delete: final savepoint completed -> remove the finalizer",
            deleting: true,
            status: in_stage(Stage::Deleting, Some(transition(TransitionKind::Delete, &spec(), 1))),
            observed: obs(Some((2, 2, 2)), job("j1", JobState::Finished), Some(OperationStatus::Completed)),
            stage: Stage::Deleting,
            actions: &["remove-finalizer"],
            events: &["Deleted"],
            check: |s| assert_eq!(s.status.last_savepoint.as_ref().unwrap().origin, "delete"),
            ..Default::default()
        },
        Case {
            name: "delete: final savepoint bounded by shutdownTimeout",
            deleting: true,
            status: in_stage(Stage::Deleting, Some(transition(TransitionKind::Delete, &spec(), 1))),
            observed: obs(Some((2, 2, 2)), job("j1", JobState::Running), Some(OperationStatus::InProgress)),
            now: T0 + 301_000,
            stage: Stage::Deleting,
            actions: &["remove-finalizer"],
            events: &["FinalSavepointFailed"],
            ..Default::default()
        },
        Case {
            name: "delete of a job that does not answer: wait for it (request id recorded), no trigger yet",
            deleting: true,
            observed: obs(Some((2, 2, 0)), JobObserved::Unreachable("connection refused".into()), None),
            stage: Stage::Deleting,
            events: &["FinalSavepointWaiting", "StageChanged"],
            check: |s| {
                let t = s.status.transition.as_ref().unwrap();
                assert_eq!(t.kind, TransitionKind::Delete);
                assert_eq!(t.savepoint_trigger.as_deref(), Some("sp-j1-1"));
            },
            ..Default::default()
        },
        Case {
            name: "delete of a job that answers again: the recorded request is sent",
            deleting: true,
            status: in_stage(Stage::Deleting, Some(transition(TransitionKind::Delete, &spec(), 1))),
            observed: Observed { savepoint_missing: true, ..up(2, "j1", JobState::Running) },
            stage: Stage::Deleting,
            actions: &["stop-with-savepoint"],
            ..Default::default()
        },
        Case {
            name: "delete of a job that never answers: FinalSavepointFailed after shutdownTimeout, then deleted",
            deleting: true,
            status: in_stage(Stage::Deleting, Some(transition(TransitionKind::Delete, &spec(), 1))),
            observed: obs(Some((2, 2, 0)), JobObserved::Unreachable("connection refused".into()), None),
            now: T0 + 301_000,
            stage: Stage::Deleting,
            actions: &["remove-finalizer"],
            events: &["FinalSavepointFailed"],
            ..Default::default()
        },
        Case {
            name: "delete of a job that ended: nothing to save",
            deleting: true,
            observed: up(2, "j1", JobState::Finished),
            stage: Stage::Deleting,
            actions: &["remove-finalizer"],
            events: &["Deleted", "StageChanged"],
            ..Default::default()
        },
        Case {
            name: "delete stateless: no savepoint",
            spec: with(|s| s.upgrade_mode = UpgradeMode::Stateless),
            deleting: true,
            stage: Stage::Deleting,
            actions: &["remove-finalizer"],
            events: &["Deleted", "StageChanged"],
            ..Default::default()
        },
        // ------------------------------------------------------------ blue/green
        Case {
            name: "blue/green upgrade: a savepoint of blue that keeps running, target recorded first",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            stage: Stage::BlueGreenSavepoint,
            actions: &["apply(2)", "savepoint"],
            events: &["SpecChangeUpgrade", "BlueGreenStarted", "StageChanged"],
            check: |s| {
                let t = s.status.transition.as_ref().unwrap();
                assert_eq!(t.slot, Some(Slot::Green));
                assert_eq!(t.savepoint_target.as_deref(), Some("s3://b/jobs/fraud/savepoints/sp-j1-1"));
                assert_eq!(t.savepoint_trigger.as_deref(), Some("sp-j1-1"));
                assert!(matches!(&s.actions[1], Action::TriggerSavepoint { stop: false, request_id, .. } if request_id == "sp-j1-1"));
                assert_eq!(s.status.phase.as_deref(), Some("Upgrading"));
                assert_eq!(s.status.active_slot, Some(Slot::Blue));
                let ready = s.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
                assert_eq!(ready.status, "True", "blue serves during the rollout");
            },
            ..Default::default()
        },
        Case {
            name: "blue/green upgrade waits for blue to be RUNNING (it needs a savepoint of it)",
            spec: blue_green(|s| {
                s.image = "weir:2".into();
                s.upgrade_mode = UpgradeMode::LastState;
            }),
            generation: 2,
            observed: up(2, "j1", JobState::Restarting),
            stage: Stage::Running,
            actions: &["apply(2)"],
            check: |s| assert!(s.status.message.as_deref().unwrap().contains("waits for the job to be RUNNING")),
            ..Default::default()
        },
        Case {
            name: "blue/green rescale stays in place (savepoint, stop, redeploy)",
            spec: blue_green(|s| s.parallelism = 4),
            generation: 2,
            stage: Stage::Savepointing,
            actions: &["apply(2)", "stop-with-savepoint"],
            events: &["SpecChangeRescale", "TransitionStarted", "StageChanged"],
            ..Default::default()
        },
        Case {
            name: "blue/green: the savepoint completed, green deploys from it beside blue with a fresh job id",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: in_stage(Stage::BlueGreenSavepoint, Some(bg_transition())),
            observed: bg_obs(job("j1", JobState::Running), Some(OperationStatus::Completed), None),
            stage: Stage::BlueGreenDeploying,
            actions: &["apply(2)", "apply(green 2 <- s3://b/jobs/fraud/savepoints/j1-sp-1)"],
            events: &["SavepointCompleted", "GreenDeploying", "StageChanged"],
            check: |s| {
                let t = s.status.transition.as_ref().unwrap();
                assert_eq!((t.job_id.as_deref(), t.restore_from.as_deref()), (Some("j2"), Some(SP)));
                assert_eq!(s.status.job_id.as_deref(), Some("j1"), "blue is still the job");
                assert_eq!(s.status.savepoint_history.last().map(|h| (h.url.as_str(), h.origin.as_str())), Some((SP, "blue-green")));
            },
            ..Default::default()
        },
        Case {
            name: "blue/green: the savepoint fails, nothing was deployed, blue keeps running",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: in_stage(Stage::BlueGreenSavepoint, Some(bg_transition())),
            observed: bg_obs(job("j1", JobState::Running), Some(OperationStatus::Failed), None),
            stage: Stage::Running,
            actions: &["apply(2)"],
            events: &["SavepointFailed", "StageChanged"],
            check: |s| {
                assert_eq!(s.status.failed_generation, Some(2));
                assert!(s.status.transition.is_none());
                assert!(s.status.message.as_deref().unwrap().contains("sink refused to flush; blue keeps running generation 1"), "{:?}", s.status.message);
                assert_eq!(s.status.last_blue_green.as_ref().map(|r| r.outcome), Some(BlueGreenOutcome::Aborted));
                assert_eq!(s.status.deployed.as_ref().unwrap().job_id, "j1");
            },
            ..Default::default()
        },
        Case {
            name: "blue/green: the failed generation is not retried until the spec changes",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: StreamJobStatus { failed_generation: Some(2), message: Some("x".into()), ..running() },
            stage: Stage::Running,
            actions: &["apply(2)"],
            ..Default::default()
        },
        Case {
            name: "blue/green: a savepoint request the coordinator lost is asked again (operator restart)",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: in_stage(Stage::BlueGreenSavepoint, Some(bg_transition())),
            observed: Observed { savepoint_missing: true, ..bg_obs(job("j1", JobState::Running), None, None) },
            stage: Stage::BlueGreenSavepoint,
            actions: &["apply(2)", "savepoint"],
            ..Default::default()
        },
        Case {
            name: "blue/green: green healthy with a checkpoint: blue is stopped with a savepoint",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: bg_green(Stage::BlueGreenDeploying),
            observed: bg_obs(job("j1", JobState::Running), None, Some((2, with_job(job("j2", JobState::Running), |j| j.running_since = Some(T0 + 20_000))))),
            stage: Stage::BlueGreenSwitching,
            actions: &["apply(2)", "apply(green 2 <- s3://b/jobs/fraud/savepoints/j1-sp-1)", "stop-with-savepoint"],
            events: &["GreenReady", "StageChanged"],
            check: |s| {
                let t = s.status.transition.as_ref().unwrap();
                assert_eq!(t.savepoint_trigger.as_deref(), Some("sp-j1-1"));
                assert_eq!((t.caught_up_at, t.green_running_since), (Some(T0 + 60_000), Some(T0 + 20_000)));
                assert!(s.events[0].note.contains("checkpoint 9 completed, no watermarks to compare"), "{}", s.events[0].note);
            },
            ..Default::default()
        },
        Case {
            name: "blue/green: green RUNNING but without a checkpoint yet waits",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: bg_green(Stage::BlueGreenDeploying),
            observed: bg_obs(job("j1", JobState::Running), None, Some((2, with_job(job("j2", JobState::Running), |j| j.last_checkpoint = None)))),
            stage: Stage::BlueGreenDeploying,
            actions: &["apply(2)", "apply(green 2 <- s3://b/jobs/fraud/savepoints/j1-sp-1)"],
            check: |s| assert!(s.status.message.as_deref().unwrap().contains("first completed checkpoint"), "{:?}", s.status.message),
            ..Default::default()
        },
        Case {
            name: "blue/green: green's watermark further behind blue's than maxLag waits",
            spec: blue_green(|s| {
                s.image = "weir:2".into();
                s.rollout.as_mut().unwrap().blue_green = Some(BlueGreenPolicy { max_lag: Some("10s".into()) });
            }),
            generation: 2,
            status: bg_green(Stage::BlueGreenDeploying),
            observed: bg_obs(
                with_job(job("j1", JobState::Running), |j| j.watermark = Some(T0 + 60_000)),
                None,
                Some((2, with_job(job("j2", JobState::Running), |j| j.watermark = Some(T0 + 30_000)))),
            ),
            stage: Stage::BlueGreenDeploying,
            actions: &["apply(2)", "apply(green 2 <- s3://b/jobs/fraud/savepoints/j1-sp-1)"],
            check: |s| assert!(s.status.message.as_deref().unwrap().contains("30.0 s behind blue's (maxLag 10000 ms)"), "{:?}", s.status.message),
            ..Default::default()
        },
        Case {
            name: "blue/green: green's watermark within maxLag of blue's switches",
            spec: blue_green(|s| {
                s.image = "weir:2".into();
                s.rollout.as_mut().unwrap().blue_green = Some(BlueGreenPolicy { max_lag: Some("10s".into()) });
            }),
            generation: 2,
            status: bg_green(Stage::BlueGreenDeploying),
            observed: bg_obs(
                with_job(job("j1", JobState::Running), |j| j.watermark = Some(T0 + 60_000)),
                None,
                Some((2, with_job(job("j2", JobState::Running), |j| j.watermark = Some(T0 + 55_000)))),
            ),
            stage: Stage::BlueGreenSwitching,
            actions: &["apply(2)", "apply(green 2 <- s3://b/jobs/fraud/savepoints/j1-sp-1)", "stop-with-savepoint"],
            events: &["GreenReady", "StageChanged"],
            check: |s| assert!(s.events[0].note.contains("watermark 5.0 s behind blue's"), "{}", s.events[0].note),
            ..Default::default()
        },
        Case {
            name: "blue/green: green not healthy within readinessTimeout is removed, blue keeps running",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: bg_green(Stage::BlueGreenDeploying),
            observed: bg_obs(job("j1", JobState::Running), None, Some((1, job("j2", JobState::Created)))),
            now: T0 + 301_000,
            stage: Stage::BlueGreenAborting,
            actions: &["apply(2)", "remove(green)"],
            events: &["GreenAborted", "StageChanged"],
            check: |s| {
                let msg = s.status.message.as_deref().unwrap();
                assert!(msg.contains("readinessTimeout 5m: green (job id j2): job state CREATED, 1/2 pods ready"), "{msg}");
                assert!(msg.contains("blue (job id j1) keeps running"), "{msg}");
                assert_eq!(s.status.failed_generation, Some(2));
                assert!(s.status.transition.is_none());
                assert_eq!(s.status.deployed.as_ref().unwrap().job_id, "j1");
                assert_eq!(s.status.phase.as_deref(), Some("RollingBack"));
                assert!(s.events[0].warning);
            },
            ..Default::default()
        },
        Case {
            name: "blue/green: green that cannot start (unmapped image) is removed at once with the pod's words",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: bg_green(Stage::BlueGreenDeploying),
            observed: {
                let mut o = bg_obs(job("j1", JobState::Running), None, Some((0, JobObserved::Unreachable("connection refused".into()))));
                let problem = crate::pods::PodProblem {
                    pod: "fraud-green-0".into(),
                    reason: "ImageNotMapped".into(),
                    message: "image weir:2 is not mapped".into(),
                    hopeless: true,
                };
                o.other.as_mut().unwrap().pods.as_mut().unwrap().problem = Some(problem);
                o
            },
            stage: Stage::BlueGreenAborting,
            actions: &["apply(2)", "remove(green)"],
            events: &["GreenAborted", "StageChanged"],
            check: |s| {
                let note = &s.events[0].note;
                assert!(note.contains("green (job id j2) cannot start: pod fraud-green-0: ImageNotMapped: image weir:2 is not mapped"), "{note}");
                // The update was not applied (Degraded says so), but blue serves (Ready).
                let cond = |t: &str| s.status.conditions.iter().find(|c| c.type_ == t).map(|c| (c.status.clone(), c.reason.clone())).unwrap();
                assert_eq!(cond("Degraded"), ("True".to_string(), "UpdateNotApplied".to_string()));
                assert_eq!(cond("Ready"), ("True".to_string(), "JobRunning".to_string()));
            },
            ..Default::default()
        },
        Case {
            name: "blue/green: green still starting reports its pods' problem and waits",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: bg_green(Stage::BlueGreenDeploying),
            observed: {
                let mut o = bg_obs(job("j1", JobState::Running), None, Some((0, JobObserved::Unreachable("connection refused".into()))));
                let problem =
                    crate::pods::PodProblem { pod: "fraud-green-1".into(), reason: "Unschedulable".into(), message: "0/1 nodes".into(), hopeless: false };
                o.other.as_mut().unwrap().pods.as_mut().unwrap().problem = Some(problem);
                o
            },
            stage: Stage::BlueGreenDeploying,
            actions: &["apply(2)", "apply(green 2 <- s3://b/jobs/fraud/savepoints/j1-sp-1)"],
            events: &["PodProblem"],
            check: |s| assert!(s.events[0].note.starts_with("green: pod fraud-green-1: Unschedulable"), "{}", s.events[0].note),
            ..Default::default()
        },
        Case {
            name: "blue/green: green FAILED is removed",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: bg_green(Stage::BlueGreenDeploying),
            observed: bg_obs(job("j1", JobState::Running), None, Some((2, job("j2", JobState::Failed)))),
            stage: Stage::BlueGreenAborting,
            actions: &["apply(2)", "remove(green)"],
            events: &["GreenAborted", "StageChanged"],
            check: |s| assert!(s.status.message.as_deref().unwrap().contains("green (job id j2) ended FAILED: sink: connection refused")),
            ..Default::default()
        },
        Case {
            name: "blue/green: a spec change mid-rollout is queued (the rollout in flight goes on)",
            spec: blue_green(|s| s.image = "weir:3".into()),
            generation: 3,
            status: bg_green(Stage::BlueGreenDeploying),
            observed: bg_obs(job("j1", JobState::Running), None, Some((1, job("j2", JobState::Created)))),
            stage: Stage::BlueGreenDeploying,
            actions: &["apply(2)", "apply(green 2 <- s3://b/jobs/fraud/savepoints/j1-sp-1)"],
            events: &["SpecChangeQueued"],
            check: |s| {
                assert_eq!(s.events[0].note, "generation 3 waits for the blue/green rollout of generation 2 to end");
                assert_eq!(s.status.transition.as_ref().unwrap().target_generation, 2);
                assert_ne!(s.status.observed_generation, Some(3));
            },
            ..Default::default()
        },
        Case {
            name: "blue/green: aborting waits until green's StatefulSet is gone",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: StreamJobStatus { stage: Some(Stage::BlueGreenAborting), failed_generation: Some(2), ..running() },
            observed: bg_obs(job("j1", JobState::Running), None, Some((0, JobObserved::NotQueried))),
            stage: Stage::BlueGreenAborting,
            actions: &["apply(2)", "remove(green)"],
            ..Default::default()
        },
        Case {
            name: "blue/green: green gone after an abort: blue runs on",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: StreamJobStatus { stage: Some(Stage::BlueGreenAborting), failed_generation: Some(2), ..running() },
            observed: bg_obs(job("j1", JobState::Running), None, None),
            stage: Stage::Running,
            actions: &["apply(2)"],
            events: &["GreenRemoved", "StageChanged"],
            ..Default::default()
        },
        Case {
            name: "blue/green: blue's final savepoint done: green is deployed, <job>-rest selects it, blue's objects go",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: StreamJobStatus {
                savepoint_history: vec![SavepointRecord { url: SP.into(), timestamp: T0, job_id: "j1".into(), origin: "blue-green".into() }],
                ..in_stage(
                    Stage::BlueGreenSwitching,
                    Some(Transition {
                        job_id: Some("j2".into()),
                        restore_from: Some(SP.into()),
                        savepoint_target: Some("s3://b/jobs/fraud/savepoints/sp-j1-2".into()),
                        savepoint_trigger: Some("sp-1".into()),
                        green_running_since: Some(T0 + 20_000),
                        stage_started_at: T0 + 50_000,
                        ..bg_transition()
                    }),
                )
            },
            observed: {
                let mut o = bg_obs(job("j1", JobState::Finished), Some(OperationStatus::Completed), Some((2, job("j2", JobState::Running))));
                o.savepoint.as_mut().unwrap().url = Some("s3://b/jobs/fraud/savepoints/sp-j1-2".into());
                o
            },
            stage: Stage::BlueGreenRetiring,
            actions: &["apply(green active 2 <- s3://b/jobs/fraud/savepoints/j1-sp-1)", "remove(blue)"],
            events: &["Switched", "StageChanged"],
            check: |s| {
                let d = s.status.deployed.as_ref().unwrap();
                assert_eq!((d.job_id.as_str(), d.slot, d.generation, d.restore_from.as_deref()), ("j2", Slot::Green, 2, Some(SP)));
                assert_eq!(s.status.active_slot, Some(Slot::Green));
                assert_eq!(s.status.job_id.as_deref(), Some("j2"));
                let urls: Vec<&str> = s.status.savepoint_history.iter().map(|h| h.url.as_str()).collect();
                assert_eq!(urls, [SP, "s3://b/jobs/fraud/savepoints/sp-j1-2"], "both savepoints kept");
                assert_eq!(s.status.savepoint_history[1].job_id, "j1");
                let r = s.status.last_blue_green.as_ref().unwrap();
                assert_eq!((r.outcome, r.blue_job_id.as_str(), r.green_job_id.as_deref()), (BlueGreenOutcome::Switched, "j1", Some("j2")));
                assert_eq!((r.overlap_ms, r.switch_ms), (Some(40_000), Some(10_000)));
                assert!(s.events[0].note.starts_with("fraud-rest selects green (slot green, job id j2) now"), "{}", s.events[0].note);
            },
            ..Default::default()
        },
        Case {
            name: "blue/green: blue's final savepoint fails: the switch goes on (green has the state) with a Warning",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: bg_green(Stage::BlueGreenSwitching),
            observed: bg_obs(job("j1", JobState::Running), Some(OperationStatus::Failed), Some((2, job("j2", JobState::Running)))),
            stage: Stage::BlueGreenRetiring,
            actions: &["apply(green active 2 <- s3://b/jobs/fraud/savepoints/j1-sp-1)", "remove(blue)"],
            events: &["FinalSavepointFailed", "Switched", "StageChanged"],
            check: |s| assert!(s.events[0].warning),
            ..Default::default()
        },
        Case {
            name: "blue/green: retiring deletes blue's objects until its StatefulSet is gone",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: StreamJobStatus {
                stage: Some(Stage::BlueGreenRetiring),
                deployed: Some(Deployment { slot: Slot::Green, ..deployment(&blue_green(|s| s.image = "weir:2".into()), "j2", 2) }),
                job_id: Some("j2".into()),
                ..running()
            },
            observed: bg_obs(job("j2", JobState::Running), None, Some((0, JobObserved::NotQueried))),
            stage: Stage::BlueGreenRetiring,
            actions: &["apply(green active 2)", "remove(blue)"],
            ..Default::default()
        },
        Case {
            name: "blue/green: blue's objects gone: green runs as the job",
            spec: blue_green(|s| s.image = "weir:2".into()),
            generation: 2,
            status: StreamJobStatus {
                stage: Some(Stage::BlueGreenRetiring),
                deployed: Some(Deployment { slot: Slot::Green, ..deployment(&blue_green(|s| s.image = "weir:2".into()), "j2", 2) }),
                job_id: Some("j2".into()),
                ..running()
            },
            observed: bg_obs(job("j2", JobState::Running), None, None),
            stage: Stage::Running,
            actions: &["apply(green active 2)"],
            events: &["BlueRetired", "StageChanged"],
            ..Default::default()
        },
        Case {
            name: "blue/green: the next upgrade of a job running in slot green goes to slot blue",
            spec: blue_green(|s| s.image = "weir:3".into()),
            generation: 3,
            status: StreamJobStatus {
                deployed: Some(Deployment { slot: Slot::Green, ..deployment(&blue_green(|s| s.image = "weir:2".into()), "j2", 2) }),
                job_id: Some("j2".into()),
                ..running()
            },
            observed: up(2, "j2", JobState::Running),
            stage: Stage::BlueGreenSavepoint,
            actions: &["apply(green active 2)", "savepoint"],
            events: &["SpecChangeUpgrade", "BlueGreenStarted", "StageChanged"],
            check: |s| assert_eq!(s.status.transition.as_ref().unwrap().slot, Some(Slot::Blue)),
            ..Default::default()
        },
        Case {
            name: "in place: an upgrade of a job running in slot green redeploys in slot green",
            spec: with(|s| s.image = "weir:3".into()),
            generation: 3,
            status: StreamJobStatus {
                deployed: Some(Deployment { slot: Slot::Green, ..deployment(&spec(), "j2", 2) }),
                ..in_stage(Stage::Stopping, Some(Transition { restore_from: Some("sp".into()), ..transition(TransitionKind::Upgrade, &with(|s| s.image = "weir:3".into()), 3) }))
            },
            observed: obs(None, JobObserved::NotQueried, None),
            stage: Stage::Deploying,
            actions: &["apply(green active 2 <- sp)"],
            events: &["Deploying", "StageChanged"],
            check: |s| assert_eq!(s.status.active_slot, Some(Slot::Green)),
            ..Default::default()
        },
    ]
}

#[test]
fn transitions_table() {
    let mut failures = Vec::new();
    for c in cases() {
        let from = c.status.stage.unwrap_or(Stage::New);
        let s = run(&c);
        let stage = s.status.stage.unwrap_or(Stage::New);
        let actions: Vec<String> = s.actions.iter().map(short).collect();
        let events: Vec<&str> = s.events.iter().map(|e| e.reason).collect();
        if stage != c.stage || actions != c.actions || events != c.events {
            failures.push(format!(
                "{}:\n  stage   {stage:?} (want {:?})\n  actions {actions:?} (want {:?})\n  events  {events:?} (want {:?})",
                c.name, c.stage, c.actions, c.events
            ));
            continue;
        }
        assert!(is_legal(from, stage), "{}: illegal edge {from:?} -> {stage:?}", c.name);
        (c.check)(&s);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_edge_is_exercised_or_declared() {
    for (a, b) in EDGES {
        assert_ne!(a, b);
        assert!(is_legal(*a, *b));
    }
    assert!(!is_legal(Stage::Suspended, Stage::Running));
    assert!(!is_legal(Stage::Running, Stage::Deploying));
    assert!(is_legal(Stage::Running, Stage::Deleting));
}

#[test]
fn effective_parallelism_rounds_to_divisors() {
    use super::diff::effective_parallelism;
    let round = |p, m| {
        effective_parallelism(&with(|s| {
            s.parallelism = p;
            s.max_parallelism = m;
            s.rescale = Some(RescalePolicy { min_interval: None, round_to_divisor: true });
        }))
    };
    assert_eq!(round(7, 720), 8);
    assert_eq!(round(11, 720), 12);
    assert_eq!(round(7, 7), 7);
    assert_eq!(round(5, 6), 6);
    assert_eq!(effective_parallelism(&with(|s| s.parallelism = 7)), 7);
}

#[test]
fn diff_classification() {
    use super::diff::{SpecChange, classify};
    let base = spec();
    assert_eq!(classify(&base, &base), SpecChange::Ignore(vec![]));
    assert_eq!(classify(&base, &with(|s| s.parallelism = 3)), SpecChange::Rescale { from: 2, to: 3 });
    assert_eq!(classify(&base, &with(|s| s.image = "x".into())), SpecChange::Upgrade(vec!["image"]));
    assert_eq!(
        classify(&base, &with(|s| {
            s.image = "x".into();
            s.parallelism = 3;
        })),
        SpecChange::Upgrade(vec!["image", "parallelism"])
    );
    assert_eq!(classify(&base, &with(|s| s.savepoint_nonce = Some(1))), SpecChange::Ignore(vec!["savepointNonce"]));
    assert_eq!(
        classify(&base, &with(|s| s.checkpointing.as_mut().unwrap().savepoint_interval = Some("1h".into()))),
        SpecChange::Ignore(vec!["checkpointing.savepointInterval"])
    );
    assert_eq!(
        classify(&base, &with(|s| s.checkpointing.as_mut().unwrap().interval = "1m".into())),
        SpecChange::Upgrade(vec!["checkpointing"])
    );
}

// ------------------------------------------------------------ simulated world

/// A tiny Kubernetes + runtime: applies actions, advances pods and the job.
#[derive(Default, Clone)]
struct World {
    replicas: i32,
    job_id: Option<String>,
    restored_from: Option<String>,
    state: Option<JobState>,
    savepoints: Vec<(String, String, OperationStatus)>, // (request id, target, status)
    stop_savepoints_taken: usize,
}

impl World {
    fn observed(&self, status: &StreamJobStatus) -> Observed {
        let pods = Some(PodsObserved { desired: self.replicas, current: self.replicas, ready: self.replicas, problem: None });
        let job = match (&self.job_id, self.state) {
            (Some(id), Some(st)) if self.replicas > 0 => job_named(id, st),
            _ => JobObserved::NotQueried,
        };
        let trigger = status.transition.as_ref().and_then(|t| t.savepoint_trigger.clone());
        let answered = matches!(job, JobObserved::Status(_));
        let savepoint = trigger.as_ref().and_then(|id| {
            self.savepoints.iter().find(|s| &s.0 == id).map(|s| SavepointStatus { id: s.0.clone(), status: s.2, url: Some(s.1.clone()), error: None })
        });
        let savepoint_missing = answered && trigger.is_some() && savepoint.is_none();
        Observed { pods, job, other: None, savepoint, savepoint_missing }
    }

    /// Executes the actions (savepoint triggers are idempotent by request id, as the
    /// runtime's are).
    fn act(&mut self, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Apply(p) => {
                    if p.replicas == 0 {
                        self.replicas = 0;
                        self.state = None;
                    } else if self.job_id.as_deref() != Some(&p.job_id) || self.replicas == 0 {
                        self.replicas = p.replicas;
                        self.job_id = Some(p.job_id.clone());
                        self.restored_from = p.restore_from.clone();
                        self.state = Some(JobState::Running);
                    }
                }
                Action::TriggerSavepoint { stop: true, target, request_id } => {
                    let known = self.savepoints.iter().any(|s| &s.0 == request_id);
                    if !known && self.state == Some(JobState::Running) {
                        self.savepoints.push((request_id.clone(), target.clone(), OperationStatus::Completed));
                        self.state = Some(JobState::Finished);
                        self.stop_savepoints_taken += 1;
                    }
                }
                _ => {}
            }
        }
    }
}

fn job_named(id: &str, st: JobState) -> JobObserved {
    match job(id, st) {
        JobObserved::Status(mut j) => {
            j.id = id.into();
            JobObserved::Status(j)
        }
        o => o,
    }
}

/// How the operator misbehaves at one step of [`simulate`].
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// It writes status (the WAL), then dies before acting: the next one must act.
    DiesBeforeActing,
    /// It acts, loses the answers, and the next one (reading the same status) acts
    /// again: a repeated trigger must not take a second savepoint.
    ActsTwice,
}

/// Runs the upgrade with `fault` at step `crash_at`.
fn simulate(target: &StreamJobSpec, crash_at: Option<usize>, fault: Fault) -> (StreamJobStatus, World) {
    let mut world = World { replicas: 2, job_id: Some("j1".into()), state: Some(JobState::Running), ..World::default() };
    let mut status = running();
    let mut ids = 1;
    for i in 0..30 {
        ids += 1;
        let fresh = format!("j{ids}");
        let observed = world.observed(&status);
        let input = Input {
            name: "fraud",
            namespace: "prod",
            generation: 2,
            spec: target,
            status: &status,
            observed: &observed,
            now: T0 + 1_000 * i as i64,
            deleting: false,
            fresh_job_id: &fresh,
        };
        let s = step(&input);
        status = s.status.clone();
        match (crash_at == Some(i), fault) {
            (true, Fault::DiesBeforeActing) => {}
            (true, Fault::ActsTwice) => {
                world.act(&s.actions);
                world.act(&s.actions);
            }
            (false, _) => world.act(&s.actions),
        }
        if status.stage == Some(Stage::Running) && status.transition.is_none() && status.deployed.as_ref().is_some_and(|d| d.generation == 2) {
            return (status, world);
        }
    }
    panic!("did not converge (crash at {crash_at:?}): {status:#?}");
}

#[test]
fn operator_restart_at_any_upgrade_step_resumes_without_losing_the_savepoint() {
    for target in [with(|s| s.image = "weir:2".into()), with(|s| s.parallelism = 5)] {
        let (clean, clean_world) = simulate(&target, None, Fault::ActsTwice);
        let sp = clean.deployed.as_ref().unwrap().restore_from.clone().unwrap();
        assert_eq!(clean_world.restored_from.as_deref(), Some(sp.as_str()));
        assert_eq!(clean_world.replicas, target.parallelism);
        for (crash, fault) in (0..8).flat_map(|i| [(i, Fault::DiesBeforeActing), (i, Fault::ActsTwice)]) {
            let (st, world) = simulate(&target, Some(crash), fault);
            let crash = format!("{fault:?} at step {crash}");
            // One stop-with-savepoint, its URL carried to the new deployment.
            assert_eq!(world.stop_savepoints_taken, 1, "crash at {crash}");
            assert_eq!(world.restored_from.as_deref(), Some(sp.as_str()), "crash at {crash}");
            assert_eq!(st.last_savepoint.as_ref().map(|s| s.url.as_str()), Some(sp.as_str()));
            assert_ne!(world.job_id.as_deref(), Some("j1"), "a fresh job id");
        }
    }
}

#[test]
fn phases_and_rfc3339() {
    assert_eq!(phase(Stage::Savepointing, Some(TransitionKind::Upgrade)), "Upgrading");
    assert_eq!(phase(Stage::Stopping, Some(TransitionKind::Suspend)), "Suspending");
    assert_eq!(phase(Stage::Deploying, Some(TransitionKind::Resume)), "Deploying");
    assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(format_rfc3339(T0), "2023-11-14T22:13:20Z");
}

// ------------------------------------------------------------ simulated blue/green world

/// Two slots, `<job>-rest` pointing at one of them, savepoints idempotent by request id.
#[derive(Clone, Debug)]
struct Side {
    job_id: String,
    restored_from: Option<String>,
    state: JobState,
}

#[derive(Clone, Debug)]
struct BgWorld {
    sides: std::collections::BTreeMap<&'static str, Side>,
    rest: Slot,
    savepoints: Vec<(String, String)>, // (request id, target)
    forks: usize,
    stops: usize,
}

fn slot_key(s: Slot) -> &'static str {
    s.as_str()
}

impl BgWorld {
    fn observed(&self, status: &StreamJobStatus) -> Observed {
        let active = status.deployed.as_ref().map(|d| d.slot).unwrap_or_default();
        let pods = |slot: Slot| self.sides.get(slot_key(slot)).map(|_| PodsObserved { desired: 2, current: 2, ready: 2, problem: None });
        let job = |side: Option<&Side>| side.map(|s| job_named(&s.job_id, s.state)).unwrap_or(JobObserved::NotQueried);
        let behind_rest = self.sides.get(slot_key(self.rest));
        let trigger = status.transition.as_ref().and_then(|t| t.savepoint_trigger.clone());
        let answered = behind_rest.is_some();
        let savepoint = trigger.as_ref().and_then(|id| {
            self.savepoints.iter().find(|s| &s.0 == id).map(|s| SavepointStatus {
                id: s.0.clone(),
                status: OperationStatus::Completed,
                url: Some(s.1.clone()),
                error: None,
            })
        });
        let savepoint_missing = answered && trigger.is_some() && savepoint.is_none();
        let bg = status.stage.is_some_and(|s| format!("{s:?}").starts_with("BlueGreen"));
        let other = bg.then(|| SideObserved { pods: pods(active.other()), job: job(self.sides.get(slot_key(active.other()))) });
        Observed { pods: pods(active), job: job(behind_rest), other, savepoint, savepoint_missing }
    }

    fn act(&mut self, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Apply(p) => {
                    let side = self.sides.entry(slot_key(p.slot)).or_insert(Side { job_id: String::new(), restored_from: None, state: JobState::Created });
                    if side.job_id != p.job_id {
                        *side = Side { job_id: p.job_id.clone(), restored_from: p.restore_from.clone(), state: JobState::Running };
                    }
                    if p.active {
                        self.rest = p.slot;
                    }
                }
                Action::RemoveSlot(slot) => {
                    self.sides.remove(slot_key(*slot));
                }
                Action::TriggerSavepoint { stop, target, request_id } => {
                    let known = self.savepoints.iter().any(|s| &s.0 == request_id);
                    let Some(side) = self.sides.get_mut(slot_key(self.rest)) else { continue };
                    if !known && side.state == JobState::Running {
                        self.savepoints.push((request_id.clone(), target.clone()));
                        if *stop {
                            side.state = JobState::Finished;
                            self.stops += 1;
                        } else {
                            self.forks += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

fn simulate_blue_green(target: &StreamJobSpec, crash_at: Option<usize>, fault: Fault) -> (StreamJobStatus, BgWorld) {
    let blue = Side { job_id: "j1".into(), restored_from: None, state: JobState::Running };
    let mut world = BgWorld { sides: [("blue", blue)].into(), rest: Slot::Blue, savepoints: vec![], forks: 0, stops: 0 };
    let mut status = running();
    for i in 0..30 {
        let fresh = format!("j{}", i + 2);
        let observed = world.observed(&status);
        let input = Input {
            name: "fraud",
            namespace: "prod",
            generation: 2,
            spec: target,
            status: &status,
            observed: &observed,
            now: T0 + 1_000 * i as i64,
            deleting: false,
            fresh_job_id: &fresh,
        };
        let s = step(&input);
        let (from, to) = (status.stage.unwrap_or(Stage::New), s.status.stage.unwrap_or(Stage::New));
        assert!(is_legal(from, to), "illegal edge {from:?} -> {to:?}");
        status = s.status.clone();
        match (crash_at == Some(i), fault) {
            (true, Fault::DiesBeforeActing) => {}
            (true, Fault::ActsTwice) => {
                world.act(&s.actions);
                world.act(&s.actions);
            }
            (false, _) => world.act(&s.actions),
        }
        // Blue runs until green has caught up: never a moment without a running job.
        assert!(world.sides.values().any(|s| s.state == JobState::Running), "step {i}: nothing runs: {world:?}");
        if status.stage == Some(Stage::Running) && status.deployed.as_ref().is_some_and(|d| d.generation == 2) {
            return (status, world);
        }
    }
    panic!("did not converge (crash at {crash_at:?}): {status:#?} {world:#?}");
}

#[test]
fn operator_restart_at_any_blue_green_step_resumes() {
    let target = blue_green(|s| s.image = "weir:2".into());
    let (clean, clean_world) = simulate_blue_green(&target, None, Fault::ActsTwice);
    let fork = clean.deployed.as_ref().unwrap().restore_from.clone().unwrap();
    assert_eq!(clean.deployed.as_ref().unwrap().slot, Slot::Green);
    assert_eq!(clean.last_blue_green.as_ref().map(|r| r.outcome), Some(BlueGreenOutcome::Switched));
    for (crash, fault) in (0..10).flat_map(|i| [(None, Fault::ActsTwice), (Some(i), Fault::DiesBeforeActing), (Some(i), Fault::ActsTwice)]) {
        let (st, world) = simulate_blue_green(&target, crash, fault);
        let at = format!("{fault:?} at step {crash:?}");
        assert_eq!((world.forks, world.stops), (1, 1), "one savepoint of blue running, one final stop: {at}");
        assert_eq!(world.sides.keys().copied().collect::<Vec<_>>(), ["green"], "blue is gone: {at}");
        let green = &world.sides["green"];
        assert_eq!(green.restored_from.as_deref(), Some(fork.as_str()), "{at}");
        assert_eq!(green.state, JobState::Running, "{at}");
        assert_eq!(world.rest, Slot::Green, "<job>-rest selects green: {at}");
        assert_eq!(st.deployed.as_ref().map(|d| (d.job_id.as_str(), d.slot)), Some((green.job_id.as_str(), Slot::Green)), "{at}");
        assert_eq!(st.savepoint_history.len(), 2, "both savepoints in the history: {at}");
        assert_ne!(green.job_id, "j1");
    }
    let _ = clean_world;
}
