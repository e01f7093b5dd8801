//! Classifies a spec change before acting: nothing that matters to the running job
//! (ignore), parallelism only (rescale), anything else (upgrade).

use crate::crd::StreamJobSpec;

/// What a spec change asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecChange {
    /// Only fields that do not reach the running job changed (named).
    Ignore(Vec<&'static str>),
    /// Only the (effective) parallelism changed.
    Rescale { from: i32, to: i32 },
    /// Fields that reach the job changed (named): redeploy.
    Upgrade(Vec<&'static str>),
}

/// The parallelism deployed for `spec`: `spec.parallelism`, rounded up to a divisor of
/// `maxParallelism` when `rescale.roundToDivisor` asks (equal key-group shares).
pub fn effective_parallelism(spec: &StreamJobSpec) -> i32 {
    let p = spec.parallelism.max(1);
    let m = spec.max_parallelism.max(1);
    if !spec.rescale.as_ref().is_some_and(|r| r.round_to_divisor) {
        return p;
    }
    (p..=m).find(|d| m % d == 0).unwrap_or(m)
}

/// Compares the deployed spec with the new one.
pub fn classify(old: &StreamJobSpec, new: &StreamJobSpec) -> SpecChange {
    let mut upgrade = Vec::new();
    let mut ignore = Vec::new();
    let mut check = |changed: bool, field: &'static str, matters: bool| {
        if changed {
            if matters { upgrade.push(field) } else { ignore.push(field) }
        }
    };
    check(old.image != new.image, "image", true);
    check(old.job != new.job, "job", true);
    check(old.max_parallelism != new.max_parallelism, "maxParallelism", true);
    check(old.resources != new.resources, "resources", true);
    check(old.pod_template != new.pod_template, "podTemplate", true);
    check(old.state_backend != new.state_backend, "stateBackend", true);
    let strip = |s: &StreamJobSpec| {
        s.checkpointing.clone().map(|mut c| {
            c.savepoint_interval = None;
            c
        })
    };
    check(strip(old) != strip(new), "checkpointing", true);
    check(
        old.checkpointing.as_ref().map(|c| &c.savepoint_interval) != new.checkpointing.as_ref().map(|c| &c.savepoint_interval),
        "checkpointing.savepointInterval",
        false,
    );
    check(old.upgrade_mode != new.upgrade_mode, "upgradeMode", false);
    check(old.restart_nonce != new.restart_nonce, "restartNonce", false);
    check(old.savepoint_nonce != new.savepoint_nonce, "savepointNonce", false);
    check(old.initial_savepoint != new.initial_savepoint, "initialSavepoint", false);
    check(old.savepoint_history != new.savepoint_history, "savepointHistory", false);
    check(old.rollout != new.rollout, "rollout", false);
    check(old.state != new.state, "state", false);
    let (from, to) = (effective_parallelism(old), effective_parallelism(new));
    check(old.rescale != new.rescale && from == to, "rescale", false);
    check(old.parallelism != new.parallelism && from == to, "parallelism (same after rounding)", false);
    if !upgrade.is_empty() {
        if from != to {
            upgrade.push("parallelism");
        }
        SpecChange::Upgrade(upgrade)
    } else if from != to {
        SpecChange::Rescale { from, to }
    } else {
        SpecChange::Ignore(ignore)
    }
}
