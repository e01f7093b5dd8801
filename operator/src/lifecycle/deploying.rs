//! Stage `Deploying`: the objects of `status.transition` are applied (again at every
//! step: server-side apply is idempotent); waits until the coordinator reports the new
//! job id RUNNING with every pod ready. Not healthy within `rollout.readinessTimeout`
//! (or FAILED): roll back to the last stable spec from the same restore point, or fail.

use weir_api::JobState;

use super::{Action, Ctx, DeployPlan, Stage, diff::effective_parallelism};
use crate::crd::{StreamJobSpec, Transition, TransitionKind, parse_duration_ms};

/// Enters `Deploying` for `t`: the job id is fixed (written to status) before the apply.
pub(super) fn start(ctx: &mut Ctx<'_>, mut t: Transition) {
    let job_id = t.job_id.clone().unwrap_or_else(|| ctx.input.fresh_job_id.to_string());
    t.job_id = Some(job_id.clone());
    let from = t.restore_from.clone().unwrap_or_else(|| "empty state".into());
    ctx.status.transition = Some(t);
    ctx.status.job_id = Some(job_id.clone());
    ctx.status.job_state = None;
    ctx.enter(Stage::Deploying);
    apply_target(ctx);
    ctx.event("Deploying", format!("deploying job id {job_id} from {from}"));
    ctx.poll();
}

fn target_spec(ctx: &Ctx<'_>, t: &Transition) -> StreamJobSpec {
    serde_json::from_str(&t.target_spec).unwrap_or_else(|_| ctx.spec().clone())
}

fn apply_target(ctx: &mut Ctx<'_>) {
    let Some(t) = ctx.status.transition.clone() else { return };
    let spec = target_spec(ctx, &t);
    let replicas = effective_parallelism(&spec);
    ctx.actions.push(Action::Apply(Box::new(DeployPlan {
        spec,
        job_id: t.job_id.clone().unwrap_or_default(),
        restore_from: t.restore_from.clone(),
        replicas,
        // In place: the new deployment replaces the old one in its slot.
        slot: ctx.active_slot(),
        active: true,
    })));
}

pub(super) fn next(ctx: &mut Ctx<'_>) {
    let Some(t) = ctx.status.transition.clone() else {
        // Nothing to deploy (a status edited by hand): what is deployed runs.
        ctx.enter(Stage::Running);
        return;
    };
    if t.job_id.is_none() {
        start(ctx, t);
        return;
    }
    apply_target(ctx);
    let job_id = t.job_id.clone().unwrap_or_default();
    let spec = target_spec(ctx, &t);
    let replicas = effective_parallelism(&spec);
    let ready = ctx.input.observed.pods.as_ref().map(|p| p.ready).unwrap_or(0);
    match ctx.job_is(Some(&job_id)) {
        Some(j) if j.state == JobState::Running && ready >= replicas => {
            ctx.complete(&t, &job_id);
            ctx.enter(Stage::Running);
            let note = match t.kind {
                TransitionKind::Rollback => format!(
                    "rolled back to generation {} (job id {job_id}); generation {} stays undeployed",
                    t.target_generation,
                    ctx.status.failed_generation.unwrap_or_default()
                ),
                k => format!("{k:?} done: job id {job_id} runs generation {} with parallelism {replicas}", t.target_generation),
            };
            let note = match ctx.status.last_transition.as_ref().and_then(|r| r.paused_ms) {
                Some(ms) => format!(
                    "{note}; processing paused {:.1} s (from the stop of the old job to the new job's subtasks restored and started)",
                    ms as f64 / 1000.0
                ),
                None => note,
            };
            ctx.event(if t.kind == TransitionKind::Rollback { "RolledBack" } else { "Deployed" }, note);
        }
        Some(j) if j.state == JobState::Failed => {
            let err = j.error.clone().unwrap_or_else(|| "no error reported".into());
            fail(ctx, &t, &job_id, format!("job {job_id} failed: {err}"));
        }
        Some(j) if j.state == JobState::Finished => {
            ctx.complete(&t, &job_id);
            ctx.enter(Stage::Finished);
            ctx.event("JobFinished", format!("job {job_id} finished"));
        }
        observed => {
            let problem = ctx.input.observed.pods.as_ref().and_then(|p| p.problem.clone());
            if let Some(p) = problem.as_ref().filter(|p| p.hopeless) {
                // Waiting cannot help (a bad image, a crash loop): say so now.
                fail(ctx, &t, &job_id, format!("job {job_id} cannot start: {p}"));
                return;
            }
            let timeout = parse_duration_ms(&ctx.spec().rollout().readiness_timeout).unwrap_or(300_000);
            if ctx.now() - t.stage_started_at > timeout {
                let state = observed.map(|j| j.state.as_str()).unwrap_or("unreachable");
                let cause = match (&problem, observed.and_then(|j| j.error.as_deref())) {
                    (Some(p), _) => format!("; {p}"),
                    (None, Some(e)) => format!("; last error: {e}"),
                    (None, None) => String::new(),
                };
                let why = format!(
                    "job {job_id} not healthy within readinessTimeout {} (job state {state}, {ready}/{replicas} pods ready){cause}",
                    ctx.spec().rollout().readiness_timeout
                );
                fail(ctx, &t, &job_id, why);
            } else {
                super::report_health(ctx, Some(&job_id));
                ctx.poll();
            }
        }
    }
}

/// The new deployment is not healthy: roll back when possible, else report Failed.
fn fail(ctx: &mut Ctx<'_>, t: &Transition, job_id: &str, why: String) {
    let rollout = ctx.spec().rollout();
    let active_slot = ctx.active_slot();
    let stable = ctx.status.last_stable.clone();
    let can_roll_back = rollout.rollback
        && !matches!(t.kind, TransitionKind::Rollback | TransitionKind::Deploy | TransitionKind::Resume)
        && stable.as_ref().is_some_and(|s| s.spec != t.target_spec || s.generation != t.target_generation);
    // A failed rollback deploys the stable generation: the generation that failed (and
    // must not be retried until the spec or restartNonce changes) stays the upgrade's.
    if t.kind != TransitionKind::Rollback || ctx.status.failed_generation.is_none() {
        ctx.status.failed_generation = Some(if t.kind == TransitionKind::Rollback { ctx.input.generation } else { t.target_generation });
    }
    match stable {
        Some(stable) if can_roll_back => {
            let now = ctx.now();
            ctx.status.message = Some(format!("generation {} was rolled back: {why}", t.target_generation));
            // The failed attempt is what runs now: it is what Stopping scales down.
            ctx.status.deployed = Some(crate::crd::Deployment {
                job_id: job_id.to_string(),
                generation: t.target_generation,
                spec: t.target_spec.clone(),
                restore_from: t.restore_from.clone(),
                deployed_at: t.stage_started_at,
                slot: t.slot.unwrap_or(active_slot),
            });
            ctx.status.transition = Some(Transition {
                kind: TransitionKind::Rollback,
                mode: t.mode,
                target_spec: stable.spec.clone(),
                target_generation: stable.generation,
                savepoint_target: None,
                savepoint_trigger: None,
                // The same restore point as the failed attempt (the upgrade's savepoint).
                restore_from: t.restore_from.clone(),
                job_id: None,
                started_at: now,
                stage_started_at: now,
                reason: Some(why.clone()),
                slot: None,
                caught_up_at: None,
                green_running_since: None,
            });
            ctx.enter(Stage::Stopping);
            ctx.warn("RollingBack", format!("{why}; rolling back to generation {}", stable.generation));
            ctx.poll();
        }
        _ => {
            ctx.status.deployed = Some(crate::crd::Deployment {
                job_id: job_id.to_string(),
                generation: t.target_generation,
                spec: t.target_spec.clone(),
                restore_from: t.restore_from.clone(),
                deployed_at: t.stage_started_at,
                slot: t.slot.unwrap_or(active_slot),
            });
            ctx.status.transition = None;
            ctx.status.error = Some(why.clone());
            ctx.status.message = Some(format!("{why}; fix the spec (or change spec.restartNonce) to redeploy"));
            ctx.enter(Stage::Failed);
            ctx.warn("DeploymentFailed", why);
        }
    }
}
