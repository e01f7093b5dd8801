//! Stage `New`: nothing deployed yet. Deploys the spec (from `initialSavepoint` when
//! set), or goes straight to `Suspended` when created with `state: suspended`.

use super::{Ctx, Stage, deploying};
use crate::crd::{DesiredState, Transition, TransitionKind};

pub(super) fn next(ctx: &mut Ctx<'_>) {
    let spec = ctx.spec().clone();
    let generation = ctx.input.generation;
    ctx.status.handled_restart_nonce = spec.restart_nonce;
    ctx.status.handled_savepoint_nonce = spec.savepoint_nonce;
    let problems = spec.problems(None);
    if !problems.is_empty() {
        if ctx.status.failed_generation != Some(generation) {
            ctx.warn("InvalidSpec", problems.join("; "));
        }
        ctx.status.failed_generation = Some(generation);
        ctx.status.message = Some(format!("spec is invalid, nothing deployed: {}", problems.join("; ")));
        return;
    }
    if spec.state == DesiredState::Suspended {
        ctx.status.resume_from = spec.initial_savepoint.clone();
        ctx.enter(Stage::Suspended);
        ctx.event("Suspended", "created with state: suspended; nothing deployed");
        return;
    }
    let now = ctx.now();
    deploying::start(
        ctx,
        Transition {
            kind: TransitionKind::Deploy,
            mode: spec.upgrade_mode,
            target_spec: serde_json::to_string(&spec).unwrap_or_default(),
            target_generation: generation,
            savepoint_target: None,
            savepoint_trigger: None,
            restore_from: spec.initial_savepoint.clone(),
            job_id: None,
            started_at: now,
            stage_started_at: now,
            reason: None,
            slot: None,
            caught_up_at: None,
            green_running_since: None,
        },
    );
}
