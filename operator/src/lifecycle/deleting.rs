//! Stage `Deleting`: the StreamJob has a deletionTimestamp. When the upgrade mode keeps
//! state and the job may still run (it runs, or its pods exist and it has not ended —
//! it may just not answer right now), stop it with a final savepoint, bounded by
//! `rollout.shutdownTimeout`: a job that does not answer in time is deleted with a
//! `FinalSavepointFailed` Warning naming the newest checkpoint. Then the finalizer
//! goes; owner references let the garbage collector delete the owned objects.

use weir_api::JobState;

use super::savepointing::{Outcome, outcome};
use super::{Action, Ctx, Stage};
use crate::crd::{Transition, TransitionKind, UpgradeMode};

pub(super) fn next(ctx: &mut Ctx<'_>) {
    ctx.enter(Stage::Deleting);
    let t = ctx.status.transition.clone().filter(|t| t.kind == TransitionKind::Delete);
    let Some(t) = t else {
        let deployed_id = ctx.deployed_job_id();
        let job = ctx.job_is(deployed_id.as_deref());
        let running = job.is_some_and(|j| j.state == JobState::Running);
        let pods_exist = ctx.input.observed.pods.as_ref().is_some_and(|p| p.current > 0);
        let may_run = running || (pods_exist && !job.is_some_and(|j| j.state.is_terminal()));
        let deployed_spec = ctx.deployed_spec();
        let keeps_state = ctx.spec().upgrade_mode != UpgradeMode::Stateless;
        let target = if keeps_state && may_run && ctx.status.deployed.is_some() { ctx.savepoint_target(&deployed_spec) } else { None };
        let Some(super::SavepointTarget { url: target, request_id }) = target else {
            ctx.status.transition = None;
            let why = if !keeps_state {
                "upgradeMode is stateless".to_string()
            } else {
                let state = ctx.job_is(deployed_id.as_deref()).map(|j| j.state.as_str()).unwrap_or("not reachable");
                let last = ctx.status.last_checkpoint.as_ref().map(|c| c.url.clone()).unwrap_or_else(|| "none".into());
                format!("the job is not running (state {state}); newest checkpoint: {last}")
            };
            ctx.event("Deleted", format!("no final savepoint: {why}"));
            ctx.actions.push(Action::RemoveFinalizer);
            return;
        };
        let now = ctx.now();
        ctx.status.transition = Some(Transition {
            kind: TransitionKind::Delete,
            mode: ctx.spec().upgrade_mode,
            target_spec: ctx.status.deployed.as_ref().map(|d| d.spec.clone()).unwrap_or_default(),
            target_generation: ctx.input.generation,
            savepoint_target: Some(target.clone()),
            savepoint_trigger: Some(request_id.clone()),
            restore_from: None,
            job_id: None,
            started_at: now,
            stage_started_at: now,
            reason: Some("StreamJob deleted".into()),
            slot: None,
            caught_up_at: None,
            green_running_since: None,
        });
        if running {
            ctx.actions.push(Action::TriggerSavepoint { stop: true, target: target.clone(), request_id });
            ctx.event("FinalSavepoint", format!("deleting: stop with a final savepoint to {target}"));
        } else {
            // Asked as soon as the job answers again (the request id is recorded).
            let timeout = ctx.spec().rollout().shutdown_timeout;
            ctx.warn("FinalSavepointWaiting", format!("deleting: the job does not answer; waiting up to {timeout} (rollout.shutdownTimeout) to take a final savepoint to {target}"));
        }
        ctx.poll();
        return;
    };
    match outcome(ctx, &t) {
        // The Delete transition stays in status until the object is gone: should the
        // finalizer removal fail, the next reconcile decides the same again, and never
        // starts a second final savepoint.
        Outcome::Completed(url) => {
            ctx.record_savepoint(&url, "delete");
            ctx.event("Deleted", format!("final savepoint {url} (use it as spec.initialSavepoint to start again)"));
            ctx.actions.push(Action::RemoveFinalizer);
        }
        Outcome::Failed(why) => {
            let last = ctx.status.last_checkpoint.as_ref().map(|c| c.url.clone()).unwrap_or_else(|| "none".into());
            ctx.status.message = Some(format!("final savepoint failed: {why}; deleting anyway"));
            ctx.warn("FinalSavepointFailed", format!("{why}; deleting anyway (newest checkpoint: {last})"));
            ctx.actions.push(Action::RemoveFinalizer);
        }
        Outcome::Retrigger(target, request_id) => {
            ctx.actions.push(Action::TriggerSavepoint { stop: true, target, request_id });
            ctx.poll();
        }
        Outcome::Waiting => ctx.poll(),
    }
}
