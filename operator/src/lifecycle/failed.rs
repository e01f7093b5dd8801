//! Stages `Failed` and `Finished`: the job ended. A finished job's pods are scaled to 0
//! (its final state is recorded; a failed job's pods stay for inspection). A changed
//! spec or `restartNonce` redeploys from the newest checkpoint of the ended job (or what
//! it restored from): state is never dropped. A change of fields that do not reach the
//! job (rollout, history, ...) is recorded, not deployed. A job that runs again by
//! itself is `Running` again.

use weir_api::JobState;

use super::diff::{SpecChange, classify};
use super::{Ctx, Stage};
use crate::crd::TransitionKind;

pub(super) fn next(ctx: &mut Ctx<'_>) {
    let spec = ctx.spec().clone();
    let generation = ctx.input.generation;
    let deployed_id = ctx.deployed_job_id();
    if ctx.stage() == Stage::Failed && ctx.job_is(deployed_id.as_deref()).is_some_and(|j| j.state == JobState::Running) {
        ctx.status.error = None;
        ctx.status.message = None;
        ctx.event("JobRecovered", "the job runs again");
        ctx.enter(Stage::Running);
        return;
    }
    if ctx.stage() == Stage::Finished {
        ctx.apply_deployed(0);
    }
    let nonce = spec.restart_nonce != ctx.status.handled_restart_nonce;
    let deployed_gen = ctx.status.deployed.as_ref().map(|d| d.generation);
    let changed = deployed_gen != Some(generation) && ctx.status.failed_generation != Some(generation);
    if !(nonce || changed) {
        return;
    }
    if !nonce && let SpecChange::Ignore(fields) = classify(&ctx.deployed_spec(), &spec) {
        ctx.ignore_change(&spec, generation, &fields);
        return;
    }
    if !spec.problems(None).is_empty() {
        return;
    }
    ctx.status.handled_restart_nonce = spec.restart_nonce;
    ctx.status.error = None;
    let kind = if nonce { TransitionKind::Restart } else { TransitionKind::Upgrade };
    let reason = if nonce { "spec.restartNonce changed" } else { "the spec changed" };
    // The ended job takes no savepoint: `begin` restores from its newest checkpoint.
    ctx.begin(kind, &spec, generation, Some(format!("{reason} after the job ended")));
}
