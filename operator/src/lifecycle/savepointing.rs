//! Stage `Savepointing`: a stop-with-savepoint for `status.transition` is in flight.
//! Its target URL was written to status before the trigger, so even a lost trigger id
//! never loses the savepoint: a job that reports FINISHED has completed it.
//!
//! Completed: record it, restore from it, go to `Stopping`. Failed or timed out: fall back
//! to the newest checkpoint only when `rollout.checkpointFallbackMaxAge` allows and it is
//! fresh enough; otherwise the old job keeps running (status and an Event say why).

use weir_api::{JobState, OperationStatus};

use super::{Action, Ctx, Stage};
use crate::crd::{Transition, TransitionKind, parse_duration_ms};

pub(super) fn next(ctx: &mut Ctx<'_>) {
    let Some(t) = ctx.status.transition.clone() else {
        ctx.enter(Stage::Running);
        return;
    };
    match outcome(ctx, &t) {
        Outcome::Completed(url) => {
            let origin = format!("{:?}", t.kind).to_lowercase();
            ctx.record_savepoint(&url, &origin);
            if let Some(tr) = ctx.status.transition.as_mut() {
                tr.restore_from = Some(url.clone());
            }
            ctx.event("SavepointCompleted", format!("{:?}: savepoint {url}", t.kind));
            ctx.enter(Stage::Stopping);
            ctx.poll();
        }
        Outcome::Failed(why) => abort(ctx, &t, why),
        Outcome::Retrigger(target, request_id) => {
            ctx.actions.push(Action::TriggerSavepoint { stop: true, target, request_id });
            ctx.poll();
        }
        Outcome::Waiting => ctx.poll(),
    }
}

pub(super) enum Outcome {
    Completed(String),
    Failed(String),
    /// The coordinator does not know the request (never reached it, or it restarted):
    /// the same target under the same request id again.
    Retrigger(String, String),
    Waiting,
}

/// What became of the stop-with-savepoint of `t` (shared with `Deleting`).
pub(super) fn outcome(ctx: &Ctx<'_>, t: &Transition) -> Outcome {
    let target = t.savepoint_target.clone().unwrap_or_default();
    let timeout_s = match t.kind {
        TransitionKind::Delete => ctx.spec().rollout().shutdown_timeout,
        _ => ctx.spec().rollout().savepoint_timeout,
    };
    let timeout = parse_duration_ms(&timeout_s).unwrap_or(600_000);
    let polled = ctx.input.observed.savepoint.as_ref().filter(|s| t.savepoint_trigger.as_ref() == Some(&s.id));
    let job = ctx.job_is(ctx.deployed_job_id().as_deref());
    match polled {
        Some(s) if s.status == OperationStatus::Completed => return Outcome::Completed(s.url.clone().unwrap_or(target)),
        Some(s) if s.status == OperationStatus::Failed => {
            return Outcome::Failed(format!("savepoint failed: {}", s.error.as_deref().unwrap_or("no error reported")));
        }
        _ => {}
    }
    match job.map(|j| j.state) {
        // Stop-with-savepoint ends the job FINISHED only after the savepoint completed.
        Some(JobState::Finished) => Outcome::Completed(target),
        Some(JobState::Failed | JobState::Canceled) => Outcome::Failed(format!(
            "the job ended {} during the savepoint: {}",
            job.map(|j| j.state.as_str()).unwrap_or_default(),
            job.and_then(|j| j.error.as_deref()).unwrap_or("no error reported")
        )),
        _ if ctx.now() - t.stage_started_at > timeout => Outcome::Failed(format!("savepoint did not complete within {timeout_s}")),
        Some(JobState::Running) if t.savepoint_trigger.is_none() || ctx.input.observed.savepoint_missing => {
            let request_id = t.savepoint_trigger.clone().unwrap_or_else(|| super::request_id_of(&target));
            Outcome::Retrigger(target, request_id)
        }
        _ => Outcome::Waiting,
    }
}

fn abort(ctx: &mut Ctx<'_>, t: &Transition, why: String) {
    let fallback = ctx.spec().rollout().checkpoint_fallback_max_age.as_deref().and_then(parse_duration_ms);
    let deployed_id = ctx.deployed_job_id().unwrap_or_default();
    let fresh = ctx
        .status
        .last_checkpoint
        .as_ref()
        .filter(|c| c.job_id == deployed_id)
        .map(|c| (c.id, ctx.now() - c.timestamp))
        .filter(|(_, age)| fallback.is_some_and(|max| *age <= max));
    if let Some((id, age)) = fresh {
        let latest = ctx.latest_pointer(&deployed_id);
        if let Some(tr) = ctx.status.transition.as_mut() {
            tr.restore_from = latest;
        }
        ctx.warn("SavepointFailed", format!("{why}; falling back to checkpoint {id} ({} s old, within checkpointFallbackMaxAge)", age / 1000));
        ctx.enter(Stage::Stopping);
        ctx.poll();
        return;
    }
    let job_alive = ctx.job_is(Some(&deployed_id)).is_some_and(|j| !j.state.is_terminal());
    ctx.status.transition = None;
    ctx.status.failed_generation = Some(ctx.input.generation);
    let deployed_gen = ctx.status.deployed.as_ref().map(|d| d.generation).unwrap_or_default();
    if job_alive {
        let msg = format!(
            "{:?} not done: {why}. The job keeps running generation {deployed_gen}; fix the cause, then change spec.restartNonce (or the spec) to retry",
            t.kind
        );
        ctx.status.message = Some(msg.clone());
        ctx.warn("SavepointFailed", msg);
        ctx.enter(Stage::Running);
    } else {
        let msg = format!("{:?} not done: {why}, and the job is no longer running; no state was dropped", t.kind);
        ctx.status.error = Some(why);
        ctx.status.message = Some(msg.clone());
        ctx.warn("SavepointFailed", msg);
        ctx.enter(Stage::Failed);
    }
}
