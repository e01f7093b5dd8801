//! Stage `Running`: the deployed job runs. Keeps its objects applied, follows
//! savepoints in flight, and decides what a change asks for: suspend, restart
//! (`restartNonce`), a spec change (classified: ignore / rescale / upgrade), a manual
//! (`savepointNonce`) or periodic savepoint, the restart of an unhealthy job, and the
//! disposal of savepoints that fell out of the history.

use weir_api::{JobState, OperationStatus};

use super::diff::{SpecChange, classify, effective_parallelism};
use super::{Action, Ctx, Stage};
use crate::crd::{DesiredState, PendingSavepoint, TransitionKind, UpgradeMode, parse_duration_ms};

pub(super) fn next(ctx: &mut Ctx<'_>) {
    let deployed_spec = ctx.deployed_spec();
    ctx.apply_deployed(effective_parallelism(&deployed_spec));
    let deployed_id = ctx.deployed_job_id();
    let job = ctx.job_is(deployed_id.as_deref());
    match job.map(|j| j.state) {
        Some(JobState::Failed) => {
            let err = job.and_then(|j| j.error.clone()).unwrap_or_else(|| "no error reported".into());
            ctx.status.error = Some(err.clone());
            ctx.status.message = Some(format!("the job failed: {err}"));
            ctx.warn("JobFailed", format!("job {} failed: {err}", deployed_id.unwrap_or_default()));
            ctx.enter(Stage::Failed);
            return;
        }
        Some(JobState::Finished) => {
            ctx.event("JobFinished", format!("job {} finished", deployed_id.unwrap_or_default()));
            ctx.enter(Stage::Finished);
            return;
        }
        _ => {}
    }
    let running = job.is_some_and(|j| j.state == JobState::Running);

    if ctx.status.pending_savepoint.is_some() {
        follow_pending(ctx, running);
    }

    let spec = ctx.spec().clone();
    let generation = ctx.input.generation;
    let blocked = ctx.status.failed_generation == Some(generation);
    let problems = spec.problems(Some(&deployed_spec));
    if !problems.is_empty() {
        if !blocked {
            ctx.warn("InvalidSpec", format!("{}; the deployed spec keeps running", problems.join("; ")));
            ctx.status.failed_generation = Some(generation);
            ctx.status.message = Some(format!("spec generation {generation} is invalid: {}", problems.join("; ")));
        }
        return;
    }

    // Transitions wait for a savepoint in flight, and (in savepoint mode) for a running job.
    let can_transition = ctx.status.pending_savepoint.is_none() && !blocked;
    let needs_running = spec.upgrade_mode == crate::crd::UpgradeMode::Savepoint;
    let waiting = |ctx: &mut Ctx<'_>, what: &str| {
        ctx.status.message = Some(format!("{what} waits for the job to be RUNNING to take a savepoint"));
        ctx.poll();
    };

    if spec.state == DesiredState::Suspended && can_transition {
        if needs_running && !running {
            return waiting(ctx, "suspend");
        }
        ctx.begin(TransitionKind::Suspend, &spec, generation, Some("spec.state is suspended".into()));
        return;
    }
    if spec.restart_nonce != ctx.status.handled_restart_nonce && can_transition {
        if needs_running && !running {
            return waiting(ctx, "restart");
        }
        ctx.status.handled_restart_nonce = spec.restart_nonce;
        ctx.begin(TransitionKind::Restart, &spec, generation, Some("spec.restartNonce changed".into()));
        return;
    }
    let deployed_generation = ctx.status.deployed.as_ref().map(|d| d.generation);
    if deployed_generation != Some(generation) && can_transition {
        match classify(&deployed_spec, &spec) {
            SpecChange::Ignore(fields) => ctx.ignore_change(&spec, generation, &fields),
            SpecChange::Rescale { from, to } => {
                let min = spec.rescale.as_ref().and_then(|r| r.min_interval.as_deref()).and_then(parse_duration_ms).unwrap_or(0);
                let since = ctx.status.last_rescale_at.map(|t| ctx.now() - t);
                if let Some(since) = since.filter(|s| *s < min) {
                    let at = super::format_rfc3339(ctx.now() - since + min);
                    let interval = spec.rescale.as_ref().and_then(|r| r.min_interval.clone()).unwrap_or_default();
                    let note = format!("rescale {from} -> {to} (generation {generation}) held back until {at} by rescale.minInterval {interval}");
                    ctx.status.message = Some(note.clone());
                    // The same words every poll: one Event, counted as a series.
                    ctx.event("RescaleDeferred", note);
                    ctx.requeue_in(min - since);
                    return;
                }
                if needs_running && !running {
                    return waiting(ctx, "rescale");
                }
                let how = match spec.upgrade_mode {
                    UpgradeMode::Savepoint => "stop with a savepoint, then redeploy",
                    UpgradeMode::LastState => "stop, then redeploy from the latest checkpoint",
                    UpgradeMode::Stateless => "stop, then redeploy with empty state",
                };
                ctx.event("SpecChangeRescale", format!("generation {generation}: parallelism {from} -> {to}: {how}"));
                ctx.begin(TransitionKind::Rescale, &spec, generation, None);
                return;
            }
            SpecChange::Upgrade(fields) => {
                let blue_green = spec.rollout().strategy == crate::crd::RolloutStrategy::BlueGreen;
                if (needs_running || blue_green) && !running {
                    return waiting(ctx, "upgrade");
                }
                let how = if blue_green { "blue/green upgrade" } else { "upgrade" };
                ctx.event("SpecChangeUpgrade", format!("generation {generation}: {} changed: {how}", fields.join(", ")));
                ctx.begin(TransitionKind::Upgrade, &spec, generation, None);
                return;
            }
        }
    }

    if running && ctx.status.pending_savepoint.is_none() {
        let manual = spec.savepoint_nonce != ctx.status.handled_savepoint_nonce;
        let periodic = spec
            .checkpointing
            .as_ref()
            .and_then(|c| c.savepoint_interval.as_deref())
            .and_then(parse_duration_ms)
            .map(|every| {
                let last = ctx.status.last_savepoint.as_ref().map(|s| s.timestamp);
                let since = last.or(ctx.status.deployed.as_ref().map(|d| d.deployed_at)).unwrap_or(ctx.now());
                let due = ctx.now() - since >= every;
                if !due {
                    ctx.requeue_in(every - (ctx.now() - since));
                }
                due
            })
            .unwrap_or(false);
        if manual || periodic {
            ctx.status.handled_savepoint_nonce = spec.savepoint_nonce;
            if let Some(super::SavepointTarget { url: target, request_id }) = ctx.savepoint_target(&deployed_spec) {
                let origin = if manual { "manual" } else { "periodic" };
                ctx.status.pending_savepoint = Some(PendingSavepoint {
                    target: target.clone(),
                    trigger: Some(request_id.clone()),
                    origin: origin.into(),
                    requested_at: ctx.now(),
                });
                ctx.actions.push(Action::TriggerSavepoint { stop: false, target: target.clone(), request_id });
                ctx.event("SavepointTriggered", format!("{origin} savepoint to {target}"));
                ctx.poll();
            }
        }
    }

    if let Some(why) = unhealthy(ctx)
        && ctx.status.pending_savepoint.is_none()
    {
        ctx.warn("JobUnhealthy", format!("{why}: restarting from the latest checkpoint"));
        ctx.begin(TransitionKind::Recover, &deployed_spec, deployed_generation.unwrap_or(generation), Some(why));
        return;
    }

    if running && !ctx.status.pending_disposal.is_empty() {
        ctx.actions.push(Action::Dispose(ctx.status.pending_disposal.clone()));
    }
    if ctx.status.failed_generation.is_none() && ctx.status.error.is_none() {
        ctx.status.message = None;
    }
    ctx.status.error = None;
    let deployed_id = ctx.deployed_job_id();
    super::report_health(ctx, deployed_id.as_deref());
}

/// Follows a savepoint of the running job (manual or periodic).
fn follow_pending(ctx: &mut Ctx<'_>, running: bool) {
    let Some(p) = ctx.status.pending_savepoint.clone() else { return };
    let timeout = parse_duration_ms(&ctx.spec().rollout().savepoint_timeout).unwrap_or(600_000);
    match ctx.input.observed.savepoint.as_ref().filter(|s| Some(&s.id) == p.trigger.as_ref()) {
        Some(s) if s.status == OperationStatus::Completed => {
            let url = s.url.clone().unwrap_or(p.target.clone());
            ctx.status.pending_savepoint = None;
            ctx.record_savepoint(&url, &p.origin);
            ctx.event("SavepointCompleted", format!("{} savepoint {url}", p.origin));
        }
        Some(s) if s.status == OperationStatus::Failed => {
            ctx.status.pending_savepoint = None;
            let err = s.error.clone().unwrap_or_else(|| "no error reported".into());
            ctx.warn("SavepointFailed", format!("{} savepoint failed: {err}", p.origin));
        }
        _ if ctx.now() - p.requested_at > timeout => {
            ctx.status.pending_savepoint = None;
            ctx.warn("SavepointFailed", format!("{} savepoint did not complete within {timeout} ms", p.origin));
        }
        _ => {
            if (p.trigger.is_none() || ctx.input.observed.savepoint_missing) && running {
                // The trigger did not reach the coordinator (or it restarted): same request again.
                let request_id = p.trigger.clone().unwrap_or_else(|| super::request_id_of(&p.target));
                ctx.actions.push(Action::TriggerSavepoint { stop: false, target: p.target.clone(), request_id });
            }
            ctx.poll();
        }
    }
}

/// Why the running job counts as unhealthy (spec.rollout.restartOnUnhealthy), if it does.
fn unhealthy(ctx: &Ctx<'_>) -> Option<String> {
    let policy = ctx.spec().rollout().restart_on_unhealthy?;
    let deployed = ctx.status.deployed.as_ref()?;
    let job = ctx.job_is(Some(&deployed.job_id))?;
    if let Some(max) = policy.max_restarts
        && job.restarts as i64 >= max as i64
    {
        return Some(format!("job {} restarted {} times (restartOnUnhealthy.maxRestarts {max})", job.id, job.restarts));
    }
    if let Some(limit) = policy.checkpoint_progress_timeout.as_deref().and_then(parse_duration_ms) {
        let last = job.last_checkpoint.as_ref().map(|c| c.timestamp).unwrap_or(deployed.deployed_at);
        let age = ctx.now() - last;
        if age > limit {
            return Some(format!("no completed checkpoint for {} s (restartOnUnhealthy.checkpointProgressTimeout)", age / 1000));
        }
    }
    None
}
