//! Stage `Suspended`: no pods. `state: running` resumes from the savepoint taken on
//! suspend (or the newest checkpoint in last-state mode) with a fresh job id.

use super::{Ctx, deploying};
use crate::crd::{DesiredState, Transition, TransitionKind};

pub(super) fn next(ctx: &mut Ctx<'_>) {
    ctx.apply_deployed(0);
    let spec = ctx.spec().clone();
    if spec.state != DesiredState::Running {
        ctx.status.handled_restart_nonce = spec.restart_nonce;
        return;
    }
    let problems = spec.problems(ctx.status.deployed.as_ref().and_then(|d| serde_json::from_str(&d.spec).ok()).as_ref());
    if !problems.is_empty() {
        if ctx.status.failed_generation != Some(ctx.input.generation) {
            ctx.warn("InvalidSpec", format!("{}; the job stays suspended", problems.join("; ")));
        }
        ctx.status.failed_generation = Some(ctx.input.generation);
        return;
    }
    ctx.status.handled_restart_nonce = spec.restart_nonce;
    let now = ctx.now();
    let restore = if spec.upgrade_mode == crate::crd::UpgradeMode::Stateless { None } else { ctx.status.resume_from.clone() };
    ctx.status.resume_from = None;
    deploying::start(
        ctx,
        Transition {
            kind: TransitionKind::Resume,
            mode: spec.upgrade_mode,
            target_spec: serde_json::to_string(&spec).unwrap_or_default(),
            target_generation: ctx.input.generation,
            savepoint_target: None,
            savepoint_trigger: None,
            restore_from: restore,
            job_id: None,
            started_at: now,
            stage_started_at: now,
            reason: Some("spec.state is running".into()),
            slot: None,
            caught_up_at: None,
            green_running_since: None,
        },
    );
}
