//! Stage `Stopping`: the restore point of `status.transition` is decided (written);
//! the old pods are scaled to 0. When none is left: `Suspended` for a suspend, else
//! the next deployment (fresh job id) in `Deploying`.

use super::{Ctx, Stage, deploying};
use crate::crd::TransitionKind;

pub(super) fn next(ctx: &mut Ctx<'_>) {
    let Some(t) = ctx.status.transition.clone() else {
        ctx.enter(Stage::Deploying);
        return;
    };
    let pods_left = ctx.input.observed.pods.as_ref().is_some_and(|p| p.current > 0 || p.desired > 0);
    if pods_left {
        ctx.apply_deployed(0);
        ctx.poll();
        return;
    }
    if t.kind == TransitionKind::Suspend {
        ctx.apply_deployed(0);
        ctx.status.resume_from = t.restore_from.clone();
        ctx.status.transition = None;
        ctx.status.job_state = None;
        ctx.completed = Some(super::Completed { kind: t.kind, secs: (ctx.now() - t.started_at).max(0) as f64 / 1000.0, paused_secs: None });
        ctx.enter(Stage::Suspended);
        let from = t.restore_from.unwrap_or_else(|| "empty state".into());
        ctx.event("Suspended", format!("scaled to 0; resumes from {from}"));
        return;
    }
    let mut t = t;
    t.job_id = None;
    deploying::start(ctx, t);
}
