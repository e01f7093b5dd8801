//! Blue/green upgrades (`spec.rollout.strategy: blueGreen`): the running ("blue")
//! deployment keeps running while the new spec ("green") starts beside it, in the other
//! slot (its own StatefulSet, Services, ConfigMap and job id), from a savepoint of blue.
//!
//! - `BlueGreenSavepoint`: a savepoint of blue without stopping it (`stop: false`), its
//!   target and request id written to status first. Failed or timed out: nothing was
//!   deployed, blue keeps running, the generation is not retried until the spec changes.
//! - `BlueGreenDeploying`: green is applied (fresh job id, `WEIR_RESTORE_FROM` = that
//!   savepoint) and observed through `<job>-<slot>-rest`. Healthy and caught up = RUNNING,
//!   every pod ready, a checkpoint completed and, with `blueGreen.maxLag`, its watermark
//!   at most that far behind blue's. A hopeless pod problem, a FAILED green or the
//!   `readinessTimeout` deadline abort (`BlueGreenAborting`).
//! - `BlueGreenSwitching`: blue is stopped with a savepoint (kept in the history). Then
//!   green is the deployment: `<job>-rest` selects it, blue's objects are deleted
//!   (`BlueGreenRetiring`). A failed final savepoint does not stop the switch: green
//!   has its own state and checkpoints since it started; a Warning says so.
//! - `BlueGreenRetiring` / `BlueGreenAborting`: the other slot's objects are deleted
//!   (again at every step until its StatefulSet is gone), then `Running`.
//!
//! A spec change during a rollout is queued: the rollout in flight ends (switched or
//! aborted), then `Running` rolls out the newest generation.

use weir_api::{JobState, JobStatus, OperationStatus};

use super::diff::effective_parallelism;
use super::savepointing::{Outcome, outcome};
use super::{Action, Ctx, DeployPlan, Stage};
use crate::crd::{BlueGreenOutcome, BlueGreenRecord, Slot, StreamJobSpec, Transition, parse_duration_ms};

/// Starts a blue/green upgrade for `t` (called by `Ctx::begin` with blue RUNNING).
pub(super) fn begin(ctx: &mut Ctx<'_>, mut t: Transition) {
    let blue = ctx.active_slot();
    let green = blue.other();
    t.slot = Some(green);
    let spec = ctx.deployed_spec();
    let Some(target) = ctx.savepoint_target(&spec) else {
        // Unreachable: `begin` checks the storage. Nothing was done; say so.
        ctx.warn("BlueGreenNotStarted", "blue/green needs spec.checkpointing.storage for the savepoint");
        return;
    };
    t.savepoint_target = Some(target.url.clone());
    t.savepoint_trigger = Some(target.request_id.clone());
    let generation = t.target_generation;
    ctx.status.transition = Some(t);
    ctx.actions.push(Action::TriggerSavepoint { stop: false, target: target.url.clone(), request_id: target.request_id });
    ctx.enter(Stage::BlueGreenSavepoint);
    let blue_id = ctx.deployed_job_id().unwrap_or_default();
    ctx.event(
        "BlueGreenStarted",
        format!(
            "Upgrade to generation {generation} started (blue/green): savepoint of blue (slot {blue}, job id {blue_id}) to {} while it keeps running, then green in slot {green} from it",
            target.url
        ),
    );
    ctx.poll();
}

/// The green deployment of `t` (its objects, not selected by `<job>-rest`).
fn green_plan(ctx: &Ctx<'_>, t: &Transition) -> Option<DeployPlan> {
    let spec: StreamJobSpec = serde_json::from_str(&t.target_spec).unwrap_or_else(|_| ctx.spec().clone());
    Some(DeployPlan {
        replicas: effective_parallelism(&spec),
        spec,
        job_id: t.job_id.clone()?,
        restore_from: t.restore_from.clone(),
        slot: t.slot?,
        active: false,
    })
}

fn apply_green(ctx: &mut Ctx<'_>, t: &Transition) {
    if let Some(plan) = green_plan(ctx, t) {
        ctx.actions.push(Action::Apply(Box::new(plan)));
    }
}

fn apply_blue(ctx: &mut Ctx<'_>) {
    let replicas = effective_parallelism(&ctx.deployed_spec());
    ctx.apply_deployed(replicas);
}

/// A newer generation waits for the rollout in flight.
fn queued_change(ctx: &mut Ctx<'_>, t: &Transition) {
    let generation = ctx.input.generation;
    if generation != t.target_generation && ctx.status.failed_generation != Some(generation) {
        let note = format!("generation {generation} waits for the blue/green rollout of generation {} to end", t.target_generation);
        ctx.event("SpecChangeQueued", note);
    }
}

fn green_job<'a>(ctx: &Ctx<'a>, t: &Transition) -> Option<&'a JobStatus> {
    let other = ctx.input.observed.other.as_ref()?;
    other.job_status().filter(|j| Some(&j.id) == t.job_id.as_ref())
}

/// The record of a rollout that ended.
fn record(ctx: &Ctx<'_>, t: &Transition, outcome: BlueGreenOutcome, final_savepoint: Option<String>, reason: Option<String>) -> BlueGreenRecord {
    let blue = ctx.status.deployed.as_ref();
    let blue_slot = blue.map(|d| d.slot).unwrap_or_default();
    let now = ctx.now();
    let switched = outcome == BlueGreenOutcome::Switched;
    BlueGreenRecord {
        outcome,
        generation: t.target_generation,
        blue_slot,
        blue_job_id: blue.map(|d| d.job_id.clone()).unwrap_or_default(),
        green_slot: t.slot.unwrap_or(blue_slot.other()),
        green_job_id: t.job_id.clone(),
        restore_from: t.restore_from.clone(),
        final_savepoint,
        reason,
        started_at: t.started_at,
        finished_at: now,
        overlap_ms: t.green_running_since.or(t.caught_up_at).filter(|_| switched).map(|since| (now - since).max(0)),
        switch_ms: switched.then(|| (now - t.stage_started_at).max(0)),
    }
}

/// Stage `BlueGreenSavepoint`.
pub(super) fn savepoint(ctx: &mut Ctx<'_>) {
    let Some(mut t) = ctx.status.transition.clone() else {
        ctx.enter(Stage::Running);
        return;
    };
    apply_blue(ctx);
    queued_change(ctx, &t);
    let timeout_s = ctx.spec().rollout().savepoint_timeout;
    let timeout = parse_duration_ms(&timeout_s).unwrap_or(600_000);
    let polled = ctx.input.observed.savepoint.as_ref().filter(|s| t.savepoint_trigger.as_ref() == Some(&s.id));
    let blue = ctx.job_is(ctx.deployed_job_id().as_deref());
    match polled {
        Some(s) if s.status == OperationStatus::Completed => {
            let url = s.url.clone().or(t.savepoint_target.clone()).unwrap_or_default();
            ctx.record_savepoint(&url, "blue-green");
            t.restore_from = Some(url.clone());
            t.job_id = Some(t.job_id.clone().unwrap_or_else(|| ctx.input.fresh_job_id.to_string()));
            ctx.status.transition = Some(t.clone());
            ctx.enter(Stage::BlueGreenDeploying);
            apply_green(ctx, &t);
            let (slot, id) = (t.slot.unwrap_or_default(), t.job_id.clone().unwrap_or_default());
            let blue_id = ctx.deployed_job_id().unwrap_or_default();
            ctx.event("SavepointCompleted", format!("blue/green: savepoint {url} of blue (job id {blue_id}), which keeps running"));
            ctx.event("GreenDeploying", format!("deploying green (slot {slot}, job id {id}) from {url} beside blue (job id {blue_id})"));
            ctx.poll();
            return;
        }
        Some(s) if s.status == OperationStatus::Failed => {
            let why = format!("the savepoint of blue failed: {}", s.error.as_deref().unwrap_or("no error reported"));
            return savepoint_failed(ctx, &t, why);
        }
        _ => {}
    }
    match blue.map(|j| j.state) {
        Some(st @ (JobState::Failed | JobState::Canceled | JobState::Finished)) => {
            let err = blue.and_then(|j| j.error.as_deref()).unwrap_or("no error reported");
            savepoint_failed(ctx, &t, format!("blue ended {} during the savepoint: {err}", st.as_str()));
        }
        _ if ctx.now() - t.stage_started_at > timeout => {
            savepoint_failed(ctx, &t, format!("the savepoint of blue did not complete within savepointTimeout {timeout_s}"));
        }
        Some(JobState::Running) if ctx.input.observed.savepoint_missing => {
            // The trigger did not reach the coordinator (or it restarted): the same request.
            let target = t.savepoint_target.clone().unwrap_or_default();
            let request_id = t.savepoint_trigger.clone().unwrap_or_else(|| super::request_id_of(&target));
            ctx.actions.push(Action::TriggerSavepoint { stop: false, target, request_id });
            ctx.poll();
        }
        _ => ctx.poll(),
    }
}

/// No green was deployed: blue keeps running; the generation waits for a new spec.
fn savepoint_failed(ctx: &mut Ctx<'_>, t: &Transition, why: String) {
    let deployed_generation = ctx.status.deployed.as_ref().map(|d| d.generation).unwrap_or_default();
    let msg = format!(
        "generation {} was not rolled out (blue/green): {why}; blue keeps running generation {deployed_generation}; change the spec or restartNonce to try again",
        t.target_generation
    );
    ctx.status.last_blue_green = Some(record(ctx, t, BlueGreenOutcome::Aborted, None, Some(why)));
    ctx.status.transition = None;
    ctx.status.failed_generation = Some(t.target_generation);
    ctx.status.message = Some(msg.clone());
    ctx.warn("SavepointFailed", msg);
    ctx.enter(Stage::Running);
}

/// What green still lacks to take over (`Err`: give up now).
fn green_progress(ctx: &Ctx<'_>, t: &Transition) -> Result<Option<String>, String> {
    let id = t.job_id.clone().unwrap_or_default();
    let spec: StreamJobSpec = serde_json::from_str(&t.target_spec).unwrap_or_else(|_| ctx.spec().clone());
    let replicas = effective_parallelism(&spec);
    let other = ctx.input.observed.other.as_ref();
    let pods = other.and_then(|o| o.pods.as_ref());
    let ready = pods.map(|p| p.ready).unwrap_or(0);
    let problem = pods.and_then(|p| p.problem.clone());
    let job = green_job(ctx, t);
    if let Some(j) = job.filter(|j| matches!(j.state, JobState::Failed | JobState::Canceled | JobState::Finished)) {
        let err = j.error.as_deref().unwrap_or("no error reported");
        return Err(format!("green (job id {id}) ended {}: {err}", j.state.as_str()));
    }
    if let Some(p) = problem.as_ref().filter(|p| p.hopeless) {
        return Err(format!("green (job id {id}) cannot start: {p}"));
    }
    let lacks = match job {
        Some(j) if j.state == JobState::Running && ready >= replicas => match &j.last_checkpoint {
            None => Some("waiting for green's first completed checkpoint".to_string()),
            Some(_) => lag(ctx, j),
        },
        _ => {
            let state = job.map(|j| j.state.as_str()).unwrap_or("unreachable");
            let cause = match (&problem, job.and_then(|j| j.error.as_deref())) {
                (Some(p), _) => format!("; {p}"),
                (None, Some(e)) => format!("; last error: {e}"),
                (None, None) => String::new(),
            };
            Some(format!("green (job id {id}): job state {state}, {ready}/{replicas} pods ready{cause}"))
        }
    };
    let timeout_s = ctx.spec().rollout().readiness_timeout;
    let timeout = parse_duration_ms(&timeout_s).unwrap_or(300_000);
    match lacks {
        Some(what) if ctx.now() - t.stage_started_at > timeout => Err(format!("green not healthy and caught up within readinessTimeout {timeout_s}: {what}")),
        lacks => Ok(lacks),
    }
}

/// Green's watermark lag behind blue's, when `maxLag` asks and it is too large.
fn lag(ctx: &Ctx<'_>, green: &JobStatus) -> Option<String> {
    let max = ctx.spec().rollout().blue_green.and_then(|b| b.max_lag).and_then(|d| parse_duration_ms(&d))?;
    let blue = ctx.job_is(ctx.deployed_job_id().as_deref()).and_then(|j| j.watermark);
    match (blue, green.watermark) {
        // Blue reports none (no event time): nothing to compare.
        (None, _) => None,
        (Some(_), None) => Some("waiting for green's first watermark".to_string()),
        (Some(b), Some(g)) if b - g > max => Some(format!("green's watermark is {:.1} s behind blue's (maxLag {} ms)", (b - g) as f64 / 1000.0, max)),
        _ => None,
    }
}

/// Stage `BlueGreenDeploying`.
pub(super) fn deploying(ctx: &mut Ctx<'_>) {
    let Some(mut t) = ctx.status.transition.clone() else {
        ctx.enter(Stage::Running);
        return;
    };
    if t.job_id.is_none() {
        t.job_id = Some(ctx.input.fresh_job_id.to_string());
        ctx.status.transition = Some(t.clone());
    }
    apply_blue(ctx);
    queued_change(ctx, &t);
    let progress = green_progress(ctx, &t);
    if progress.is_ok() {
        apply_green(ctx, &t);
    }
    match progress {
        Err(why) => abort(ctx, &t, why),
        Ok(Some(what)) => {
            report_green(ctx, &what);
            ctx.poll();
        }
        Ok(None) => {
            let green = green_job(ctx, &t);
            let (checkpoint, running_since, green_wm) =
                (green.and_then(|j| j.last_checkpoint.as_ref()).map(|c| c.id), green.and_then(|j| j.running_since), green.and_then(|j| j.watermark));
            let blue_wm = ctx.job_is(ctx.deployed_job_id().as_deref()).and_then(|j| j.watermark);
            let spec = ctx.deployed_spec();
            let Some(target) = ctx.savepoint_target(&spec) else { return };
            t.caught_up_at = Some(ctx.now());
            t.green_running_since = running_since;
            t.savepoint_target = Some(target.url.clone());
            t.savepoint_trigger = Some(target.request_id.clone());
            ctx.status.transition = Some(t.clone());
            ctx.actions.push(Action::TriggerSavepoint { stop: true, target: target.url.clone(), request_id: target.request_id });
            ctx.enter(Stage::BlueGreenSwitching);
            let lag = match (blue_wm, green_wm) {
                (Some(b), Some(g)) if b >= g => format!(", watermark {:.1} s behind blue's", (b - g) as f64 / 1000.0),
                (Some(b), Some(g)) => format!(", watermark {:.1} s ahead of blue's", (g - b) as f64 / 1000.0),
                _ => ", no watermarks to compare".to_string(),
            };
            let blue_id = ctx.deployed_job_id().unwrap_or_default();
            ctx.event(
                "GreenReady",
                format!(
                    "green (job id {}) is RUNNING with every pod ready, checkpoint {} completed{lag}; stopping blue (job id {blue_id}) with a savepoint to {}",
                    t.job_id.clone().unwrap_or_default(),
                    checkpoint.unwrap_or_default(),
                    target.url
                ),
            );
            ctx.poll();
        }
    }
}

/// Green's problem, in status and a Warning (folded into a series while it lasts).
fn report_green(ctx: &mut Ctx<'_>, what: &str) {
    let problem = ctx.input.observed.other.as_ref().and_then(|o| o.pods.as_ref()).and_then(|p| p.problem.clone());
    if let Some(p) = problem {
        ctx.warn("PodProblem", format!("green: {p}"));
    }
    if ctx.status.failed_generation.is_none() {
        ctx.status.message = Some(format!("blue/green: blue serves; {what}"));
    }
}

/// Green is given up: its objects go, blue keeps running untouched.
fn abort(ctx: &mut Ctx<'_>, t: &Transition, why: String) {
    let green = t.slot.unwrap_or(ctx.active_slot().other());
    let blue_id = ctx.deployed_job_id().unwrap_or_default();
    let msg = format!("generation {} was not rolled out: {why}; blue (job id {blue_id}) keeps running; green's objects are deleted", t.target_generation);
    ctx.status.last_blue_green = Some(record(ctx, t, BlueGreenOutcome::Aborted, None, Some(why)));
    ctx.status.transition = None;
    ctx.status.failed_generation = Some(t.target_generation);
    ctx.status.message = Some(msg.clone());
    ctx.actions.push(Action::RemoveSlot(green));
    ctx.enter(Stage::BlueGreenAborting);
    ctx.warn("GreenAborted", msg);
    ctx.poll();
}

/// Stage `BlueGreenSwitching`: blue's stop-with-savepoint is in flight.
pub(super) fn switching(ctx: &mut Ctx<'_>) {
    let Some(t) = ctx.status.transition.clone() else {
        ctx.enter(Stage::Running);
        return;
    };
    queued_change(ctx, &t);
    let outcome = outcome(ctx, &t);
    if matches!(outcome, Outcome::Retrigger(..) | Outcome::Waiting) {
        apply_green(ctx, &t);
    }
    match outcome {
        Outcome::Completed(url) => {
            ctx.record_savepoint(&url, "blue-green-final");
            switch(ctx, &t, Some(url), None);
        }
        Outcome::Failed(why) => {
            let note = format!(
                "blue's final savepoint: {why}; switching anyway: green (job id {}) restored from {} and keeps its own checkpoints",
                t.job_id.clone().unwrap_or_default(),
                t.restore_from.clone().unwrap_or_default()
            );
            ctx.warn("FinalSavepointFailed", note);
            switch(ctx, &t, None, Some(why));
        }
        Outcome::Retrigger(target, request_id) => {
            ctx.actions.push(Action::TriggerSavepoint { stop: true, target, request_id });
            ctx.poll();
        }
        Outcome::Waiting => ctx.poll(),
    }
}

/// Green becomes the deployment: `<job>-rest` selects it, blue's objects go.
fn switch(ctx: &mut Ctx<'_>, t: &Transition, final_savepoint: Option<String>, problem: Option<String>) {
    let green_id = t.job_id.clone().unwrap_or_default();
    let blue: Slot = ctx.active_slot();
    let blue_id = ctx.deployed_job_id().unwrap_or_default();
    let rec = record(ctx, t, BlueGreenOutcome::Switched, final_savepoint.clone(), problem);
    let overlap = rec.overlap_ms;
    ctx.status.last_blue_green = Some(rec);
    ctx.complete(t, &green_id);
    ctx.status.job_state = green_job(ctx, t).map(|j| j.state.as_str().to_string());
    apply_blue(ctx); // now green's objects, with <job>-rest selecting it
    ctx.actions.push(Action::RemoveSlot(blue));
    ctx.enter(Stage::BlueGreenRetiring);
    let stopped = match &final_savepoint {
        Some(url) => format!("blue (job id {blue_id}) stopped with savepoint {url}"),
        None => format!("blue (job id {blue_id}) stopped without a final savepoint"),
    };
    let overlap = overlap.map(|ms| format!("; both ran for {:.1} s", ms as f64 / 1000.0)).unwrap_or_default();
    let note = format!("{}-rest selects green (slot {}, job id {green_id}) now; {stopped}{overlap}", ctx.input.name, blue.other());
    ctx.event("Switched", note);
    ctx.poll();
}

/// Stages `BlueGreenRetiring` and `BlueGreenAborting`: the other slot's objects are
/// deleted until its StatefulSet is gone.
pub(super) fn removing(ctx: &mut Ctx<'_>) {
    apply_blue(ctx);
    let gone_slot = ctx.active_slot().other();
    let gone = ctx.input.observed.other.as_ref().is_some_and(|o| o.pods.is_none());
    if !gone {
        ctx.actions.push(Action::RemoveSlot(gone_slot));
        ctx.poll();
        return;
    }
    let id = ctx.deployed_job_id().unwrap_or_default();
    let generation = ctx.status.deployed.as_ref().map(|d| d.generation).unwrap_or_default();
    if ctx.stage() == Stage::BlueGreenRetiring {
        ctx.event("BlueRetired", format!("blue's objects (slot {gone_slot}) are deleted; job id {id} runs generation {generation}"));
    } else {
        ctx.event("GreenRemoved", format!("green's objects (slot {gone_slot}) are deleted; blue (job id {id}) runs generation {generation} as before"));
    }
    ctx.enter(Stage::Running);
    ctx.poll();
}
