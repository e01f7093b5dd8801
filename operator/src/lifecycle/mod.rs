//! The job lifecycle as a typed state machine.
//!
//! [`step`] is a pure function: spec + status + what was observed (StatefulSet, the
//! coordinator's REST answers) + the time → the next status and the actions to take.
//! The controller writes the returned status **before** it acts (status is a
//! write-ahead log), and every action is idempotent (server-side apply, savepoints to a
//! target URL chosen before triggering), so an operator restart at any point resumes.
//!
//! One file per stage; the legal edges are declared once, in [`EDGES`]:
//!
//! ```text
//! New          -> Deploying | Suspended
//! Deploying    -> Running | Stopping (rollback) | Failed | Finished
//! Running      -> Savepointing (savepoint upgrade/rescale/suspend) | Stopping (last-state,
//!                 stateless) | Failed | Finished
//! Savepointing -> Stopping (savepoint done) | Running (savepoint failed: old job keeps running)
//!                 | Failed
//! Stopping     -> Deploying | Suspended
//! Suspended    -> Deploying (resume)
//! Failed       -> Stopping (spec changed or restartNonce) | Running (recovered by itself)
//! Finished     -> Stopping
//! any          -> Deleting (deletionTimestamp)
//!
//! Blue/green upgrades (spec.rollout.strategy blueGreen, bluegreen.rs):
//! Running              -> BlueGreenSavepoint (savepoint of blue, which keeps running)
//! BlueGreenSavepoint   -> BlueGreenDeploying (green applied, restoring from it)
//!                         | Running (savepoint failed: blue keeps running, nothing to undo)
//! BlueGreenDeploying   -> BlueGreenSwitching (green healthy and caught up: stop blue with
//!                         a savepoint) | BlueGreenAborting (green not healthy in time)
//! BlueGreenSwitching   -> BlueGreenRetiring (blue stopped: green is deployed, <job>-rest
//!                         selects it)
//! BlueGreenRetiring    -> Running (blue's objects are gone)
//! BlueGreenAborting    -> Running (green's objects are gone; blue ran throughout)
//! ```

mod bluegreen;
mod deleting;
mod deploying;
pub mod diff;
mod failed;
mod new;
mod running;
mod savepointing;
mod stopping;
mod suspended;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weir_api::{JobState, JobStatus, SavepointStatus};

use crate::crd::{
    CheckpointRecord, Condition, Deployment, RolloutStrategy, SavepointRecord, Slot, StreamJobSpec, StreamJobStatus, Transition, TransitionKind,
    TransitionRecord, UpgradeMode, parse_duration_ms,
};

/// Where a job is in its lifecycle (persisted in `status.stage`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Nothing deployed yet (no status).
    New,
    /// Resources applied for `status.transition`; waiting for the job to run healthy.
    Deploying,
    /// The deployed job runs.
    Running,
    /// A stop-with-savepoint is in flight for `status.transition`.
    Savepointing,
    /// The old pods are scaled to 0 before the next deployment.
    Stopping,
    /// Scaled to 0; resumes from `status.resumeFrom`.
    Suspended,
    /// The job failed (the runtime's error is in `status.error`).
    Failed,
    /// A bounded job finished.
    Finished,
    /// The StreamJob is being deleted (final savepoint, then the finalizer goes).
    Deleting,
    /// Blue/green: a savepoint of the running (blue) deployment, which keeps running.
    BlueGreenSavepoint,
    /// Blue/green: green runs beside blue from that savepoint; waiting until it is healthy
    /// and caught up (or its deadline passes).
    BlueGreenDeploying,
    /// Blue/green: blue is stopped with a savepoint; then `<job>-rest` selects green.
    BlueGreenSwitching,
    /// Blue/green: green is deployed and serves; blue's objects are deleted.
    BlueGreenRetiring,
    /// Blue/green: green was not healthy in time; its objects are deleted, blue runs on.
    BlueGreenAborting,
}

/// Every legal stage change. `step` never takes another edge (checked in tests).
pub const EDGES: &[(Stage, Stage)] = &[
    (Stage::New, Stage::Deploying),
    (Stage::New, Stage::Suspended),
    (Stage::Deploying, Stage::Running),
    (Stage::Deploying, Stage::Stopping),
    (Stage::Deploying, Stage::Failed),
    (Stage::Deploying, Stage::Finished),
    (Stage::Running, Stage::Savepointing),
    (Stage::Running, Stage::Stopping),
    (Stage::Running, Stage::Failed),
    (Stage::Running, Stage::Finished),
    (Stage::Savepointing, Stage::Stopping),
    (Stage::Savepointing, Stage::Running),
    (Stage::Savepointing, Stage::Failed),
    (Stage::Stopping, Stage::Deploying),
    (Stage::Stopping, Stage::Suspended),
    (Stage::Suspended, Stage::Deploying),
    (Stage::Failed, Stage::Stopping),
    (Stage::Failed, Stage::Running),
    (Stage::Finished, Stage::Stopping),
    (Stage::Running, Stage::BlueGreenSavepoint),
    (Stage::BlueGreenSavepoint, Stage::BlueGreenDeploying),
    (Stage::BlueGreenSavepoint, Stage::Running),
    (Stage::BlueGreenDeploying, Stage::BlueGreenSwitching),
    (Stage::BlueGreenDeploying, Stage::BlueGreenAborting),
    (Stage::BlueGreenSwitching, Stage::BlueGreenRetiring),
    (Stage::BlueGreenRetiring, Stage::Running),
    (Stage::BlueGreenAborting, Stage::Running),
];

/// Whether `from -> to` is legal (staying is always legal; any stage may go to Deleting).
pub fn is_legal(from: Stage, to: Stage) -> bool {
    from == to || to == Stage::Deleting || EDGES.contains(&(from, to))
}

/// What the controller saw of the job's pods.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PodsObserved {
    /// `spec.replicas` of the StatefulSet.
    pub desired: i32,
    /// `status.replicas`: pods that exist.
    pub current: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// The most telling problem of the pods, if any (image, crash loop, config, scheduling).
    pub problem: Option<crate::pods::PodProblem>,
}

/// What the coordinator's `GET /v1/job` said.
#[derive(Clone, Debug, PartialEq)]
pub enum JobObserved {
    /// Not asked (no pods).
    NotQueried,
    /// Asked, no answer (the message says why).
    Unreachable(String),
    Status(JobStatus),
}

/// What was observed of the deployment in the slot that is not active (blue/green).
#[derive(Clone, Debug, PartialEq)]
pub struct SideObserved {
    /// None: no StatefulSet in that slot.
    pub pods: Option<PodsObserved>,
    /// Its coordinator, through `<job>-<slot>-rest`.
    pub job: JobObserved,
}

impl SideObserved {
    pub fn job_status(&self) -> Option<&JobStatus> {
        match &self.job {
            JobObserved::Status(s) => Some(s),
            _ => None,
        }
    }
}

/// Everything observed for one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The active slot's StatefulSet; None: none.
    pub pods: Option<PodsObserved>,
    /// The active deployment's coordinator, through `<job>-rest`.
    pub job: JobObserved,
    /// The other slot, observed in the blue/green stages only (None otherwise).
    pub other: Option<SideObserved>,
    /// Answer of `GET /v1/savepoints/{id}` for the trigger in status, if any.
    pub savepoint: Option<SavepointStatus>,
    /// The coordinator answered that it does not know the savepoint request in status
    /// (`404`): the trigger never reached it, or it restarted. Same request again.
    pub savepoint_missing: bool,
}

impl Observed {
    pub fn nothing() -> Self {
        Observed { pods: None, job: JobObserved::NotQueried, other: None, savepoint: None, savepoint_missing: false }
    }

    /// The job status, when the coordinator answered.
    pub fn job_status(&self) -> Option<&JobStatus> {
        match &self.job {
            JobObserved::Status(s) => Some(s),
            _ => None,
        }
    }
}

/// The input of [`step`].
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub generation: i64,
    pub spec: &'a StreamJobSpec,
    pub status: &'a StreamJobStatus,
    pub observed: &'a Observed,
    /// Epoch ms.
    pub now: i64,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The job id a deployment started by this step gets (generated by the caller so
    /// `step` stays pure).
    pub fresh_job_id: &'a str,
}

/// Something the controller must do, in order, after writing the status.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Server-side apply the job's objects (ConfigMap, Services, StatefulSet).
    Apply(Box<DeployPlan>),
    /// `POST /v1/savepoints` with the request id recorded in status before (the runtime
    /// answers a repeated request id with the same savepoint: triggers are idempotent).
    TriggerSavepoint { stop: bool, target: String, request_id: String },
    /// Dispose of savepoints removed from the history (through the coordinator).
    Dispose(Vec<String>),
    /// Delete the objects of a slot (StatefulSet, `<job>[-green]-peers`, its ConfigMap and
    /// `<job>-<slot>-rest`); absent ones count as deleted.
    RemoveSlot(Slot),
    /// Deletion is done: remove the finalizer.
    RemoveFinalizer,
}

/// Where a savepoint goes and the id it is requested under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavepointTarget {
    pub url: String,
    pub request_id: String,
}

/// The request id of a savepoint recorded before request ids existed: its directory name.
pub fn request_id_of(target: &str) -> String {
    target.rsplit('/').next().unwrap_or(target).to_string()
}

/// What to deploy.
#[derive(Clone, Debug, PartialEq)]
pub struct DeployPlan {
    pub spec: StreamJobSpec,
    pub job_id: String,
    pub restore_from: Option<String>,
    pub replicas: i32,
    /// The slot whose objects this deployment uses.
    pub slot: Slot,
    /// `<job>-rest` selects this deployment (false for green before the switch, which
    /// the operator reaches through `<job>-<slot>-rest`).
    pub active: bool,
}

/// An Event to publish on the StreamJob.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// The result of [`step`].
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub status: StreamJobStatus,
    pub actions: Vec<Action>,
    pub events: Vec<Event>,
    /// Reconcile again after this many ms.
    pub requeue_ms: i64,
    /// A transition completed: what it measured, for the metrics.
    pub completed: Option<Completed>,
}

/// What a completed transition measured (see [`TransitionRecord`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Completed {
    pub kind: TransitionKind,
    /// From its start to the new job running with all pods ready.
    pub secs: f64,
    /// The pause of processing, when the transition replaced a running job.
    pub paused_secs: Option<f64>,
}

/// Polling interval while something is in progress.
pub const POLL_MS: i64 = 5_000;
/// Interval of the steady-state check.
pub const STEADY_MS: i64 = 30_000;

/// The working state of one step (what stage files read and write).
pub(crate) struct Ctx<'a> {
    pub input: &'a Input<'a>,
    pub status: StreamJobStatus,
    pub actions: Vec<Action>,
    pub events: Vec<Event>,
    pub requeue_ms: i64,
    pub completed: Option<Completed>,
}

impl<'a> Ctx<'a> {
    pub fn spec(&self) -> &StreamJobSpec {
        self.input.spec
    }
    pub fn now(&self) -> i64 {
        self.input.now
    }
    pub fn stage(&self) -> Stage {
        self.status.stage.unwrap_or(Stage::New)
    }
    pub fn job(&self) -> Option<&'a JobStatus> {
        self.input.observed.job_status()
    }
    /// The observed job is the current deployment (not an old one still answering).
    pub fn job_is(&self, job_id: Option<&str>) -> Option<&'a JobStatus> {
        self.job().filter(|j| Some(j.id.as_str()) == job_id)
    }
    pub fn enter(&mut self, stage: Stage) {
        let from = self.stage();
        if from != stage {
            debug_assert!(is_legal(from, stage), "illegal edge {from:?} -> {stage:?}");
            if let Some(t) = self.status.transition.as_mut() {
                t.stage_started_at = self.input.now;
            }
            self.status.stage = Some(stage);
        }
    }
    pub fn event(&mut self, reason: &'static str, note: impl Into<String>) {
        self.events.push(Event { warning: false, reason, note: note.into() });
    }
    pub fn warn(&mut self, reason: &'static str, note: impl Into<String>) {
        self.events.push(Event { warning: true, reason, note: note.into() });
    }
    pub fn poll(&mut self) {
        self.requeue_ms = self.requeue_ms.min(POLL_MS);
    }
    pub fn requeue_in(&mut self, ms: i64) {
        self.requeue_ms = self.requeue_ms.min(ms.max(1_000));
    }

    /// The spec currently deployed (falls back to the current spec).
    pub fn deployed_spec(&self) -> StreamJobSpec {
        self.status
            .deployed
            .as_ref()
            .and_then(|d| serde_json::from_str(&d.spec).ok())
            .unwrap_or_else(|| self.input.spec.clone())
    }
    pub fn deployed_job_id(&self) -> Option<String> {
        self.status.deployed.as_ref().map(|d| d.job_id.clone())
    }
    /// The slot of the deployed (active) deployment.
    pub fn active_slot(&self) -> Slot {
        self.status.deployed.as_ref().map(|d| d.slot).unwrap_or_default()
    }

    /// A spec change that does not reach the running job (`fields` changed): the new
    /// spec counts as deployed (and stable) at `generation`, and an Event says so.
    pub fn ignore_change(&mut self, spec: &StreamJobSpec, generation: i64, fields: &[&str]) {
        let json = serde_json::to_string(spec).unwrap_or_default();
        for d in [self.status.deployed.as_mut(), self.status.last_stable.as_mut()].into_iter().flatten() {
            d.generation = generation;
            d.spec = json.clone();
        }
        let what = if fields.is_empty() { "no field".to_string() } else { fields.join(", ") };
        self.event("SpecChangeIgnored", format!("generation {generation}: {what} changed; nothing to redeploy"));
    }

    /// Re-applies what is deployed, `replicas` pods (drift repair; scale down with 0).
    pub fn apply_deployed(&mut self, replicas: i32) {
        if let Some(d) = self.status.deployed.clone() {
            let spec = self.deployed_spec();
            let plan = DeployPlan { spec, job_id: d.job_id, restore_from: d.restore_from, replicas, slot: d.slot, active: true };
            self.actions.push(Action::Apply(Box::new(plan)));
        }
    }

    /// A new savepoint: its request id (`sp-<jobId>-<n>`, chosen here, before the
    /// trigger) and its directory `<storage>/savepoints/<request id>` (the DESIGN layout).
    pub fn savepoint_target(&mut self, spec: &StreamJobSpec) -> Option<SavepointTarget> {
        let storage = spec.storage()?;
        self.status.savepoint_counter += 1;
        let job = self.deployed_job_id().unwrap_or_else(|| "job".into());
        let request_id = format!("sp-{job}-{}", self.status.savepoint_counter);
        Some(SavepointTarget { url: format!("{storage}/savepoints/{request_id}"), request_id })
    }

    /// Records a completed savepoint (last + history) and prunes the history.
    pub fn record_savepoint(&mut self, url: &str, origin: &str) {
        let rec = SavepointRecord {
            url: url.to_string(),
            timestamp: self.input.now,
            job_id: self.deployed_job_id().unwrap_or_default(),
            origin: origin.to_string(),
        };
        if !self.status.savepoint_history.iter().any(|s| s.url == url) {
            self.status.savepoint_history.push(rec.clone());
        }
        self.status.last_savepoint = Some(rec);
        self.prune_history();
    }

    /// Applies spec.savepointHistory: too many or too old savepoints move to
    /// `pendingDisposal` (never the newest one, never one a deployment restores from).
    pub fn prune_history(&mut self) {
        let (max_count, max_age) = match &self.input.spec.savepoint_history {
            Some(h) => (h.max_count.max(1) as usize, h.max_age.as_deref().and_then(parse_duration_ms)),
            None => (5, None),
        };
        let keep: Vec<String> = [
            self.status.last_savepoint.as_ref().map(|s| s.url.clone()),
            self.status.deployed.as_ref().and_then(|d| d.restore_from.clone()),
            self.status.last_stable.as_ref().and_then(|d| d.restore_from.clone()),
            self.status.transition.as_ref().and_then(|t| t.restore_from.clone()),
            self.status.resume_from.clone(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let now = self.input.now;
        let n = self.status.savepoint_history.len();
        let mut kept = Vec::new();
        for (i, sp) in std::mem::take(&mut self.status.savepoint_history).into_iter().enumerate() {
            let too_many = n - i > max_count;
            let too_old = max_age.is_some_and(|age| now - sp.timestamp > age);
            if (too_many || too_old) && !keep.contains(&sp.url) {
                if !self.status.pending_disposal.contains(&sp.url) {
                    self.status.pending_disposal.push(sp.url);
                }
            } else {
                kept.push(sp);
            }
        }
        self.status.savepoint_history = kept;
    }

    /// The `_latest` pointer of the deployment `job_id`.
    pub fn latest_pointer(&self, job_id: &str) -> Option<String> {
        Some(format!("{}/{job_id}/checkpoints/_latest", self.input.spec.storage()?))
    }

    /// Starts a transition: writes it to status, then takes the first step for `mode`.
    pub fn begin(&mut self, kind: TransitionKind, target: &StreamJobSpec, generation: i64, reason: Option<String>) {
        let mode = if kind == TransitionKind::Recover { UpgradeMode::LastState } else { self.input.spec.upgrade_mode };
        let mut t = Transition {
            kind,
            mode,
            target_spec: serde_json::to_string(target).unwrap_or_default(),
            target_generation: generation,
            savepoint_target: None,
            savepoint_trigger: None,
            restore_from: None,
            job_id: None,
            started_at: self.input.now,
            stage_started_at: self.input.now,
            reason,
            slot: None,
            caught_up_at: None,
            green_running_since: None,
        };
        let job_running = self.job_is(self.deployed_job_id().as_deref()).is_some_and(|j| j.state == JobState::Running);
        let blue_green = kind == TransitionKind::Upgrade && self.input.spec.rollout().strategy == RolloutStrategy::BlueGreen;
        match mode {
            _ if blue_green && job_running && self.input.spec.storage().is_some() => {
                bluegreen::begin(self, t);
                return;
            }
            UpgradeMode::Savepoint if job_running => {
                let spec = self.deployed_spec();
                let target = self.savepoint_target(&spec);
                t.savepoint_target = target.as_ref().map(|t| t.url.clone());
                t.savepoint_trigger = target.as_ref().map(|t| t.request_id.clone());
                self.status.transition = Some(t);
                match target {
                    Some(SavepointTarget { url, request_id }) => {
                        self.actions.push(Action::TriggerSavepoint { stop: true, target: url, request_id });
                        self.enter(Stage::Savepointing);
                    }
                    None => self.enter(Stage::Stopping),
                }
            }
            UpgradeMode::Savepoint | UpgradeMode::LastState => {
                // No savepoint possible (or wanted): the newest checkpoint, else what the
                // deployment itself restored from. Never empty state.
                t.restore_from = self.last_state_restore();
                self.status.transition = Some(t);
                self.enter(Stage::Stopping);
            }
            UpgradeMode::Stateless => {
                self.status.transition = Some(t);
                self.enter(Stage::Stopping);
            }
        }
        let note = format!("{kind:?} started ({} mode)", mode.as_str());
        self.event("TransitionStarted", note);
        self.poll();
    }

    /// Restore point of a last-state redeploy: the `_latest` checkpoint of the deployed job
    /// when it has completed one, else what the deployment restored from.
    pub fn last_state_restore(&self) -> Option<String> {
        let deployed = self.status.deployed.as_ref()?;
        let has_checkpoint = self.status.last_checkpoint.as_ref().is_some_and(|c| c.job_id == deployed.job_id)
            || self.job_is(Some(&deployed.job_id)).is_some_and(|j| j.last_checkpoint.is_some());
        if has_checkpoint { self.latest_pointer(&deployed.job_id) } else { deployed.restore_from.clone() }
    }

    /// Records what the coordinator reports (state, newest checkpoint, error).
    pub fn observe_job(&mut self) {
        let Some(job) = self.job() else { return };
        // Blue/green: the coordinator behind `<job>-rest` is blue's, the deployed one.
        let current = match &self.status.transition {
            Some(t) if t.slot.is_none() => t.job_id.clone().or_else(|| self.deployed_job_id()),
            _ => self.deployed_job_id(),
        };
        if Some(&job.id) != current.as_ref() {
            return;
        }
        self.status.job_state = Some(job.state.as_str().to_string());
        if let Some(c) = &job.last_checkpoint {
            self.status.last_checkpoint =
                Some(CheckpointRecord { id: c.id as i64, url: c.url.clone(), timestamp: c.timestamp, job_id: job.id.clone() });
        }
    }

    /// Completes the transition: the new deployment is healthy.
    pub fn complete(&mut self, t: &Transition, job_id: &str) {
        let dep = Deployment {
            job_id: job_id.to_string(),
            generation: t.target_generation,
            spec: t.target_spec.clone(),
            restore_from: t.restore_from.clone(),
            deployed_at: self.input.now,
            slot: t.slot.unwrap_or(self.active_slot()),
        };
        self.status.deployed = Some(dep.clone());
        self.status.last_stable = Some(dep);
        self.status.job_id = Some(job_id.to_string());
        if t.kind == TransitionKind::Rescale {
            self.status.last_rescale_at = Some(self.input.now);
        }
        if t.kind != TransitionKind::Rollback {
            self.status.failed_generation = None;
            self.status.message = None;
        }
        self.status.error = None;
        self.status.transition = None;
        let paused_ms = match t.kind {
            TransitionKind::Upgrade | TransitionKind::Rescale | TransitionKind::Restart | TransitionKind::Rollback => {
                self.job_is(Some(job_id)).and_then(|j| j.running_since).map(|since| since - t.started_at).filter(|ms| *ms >= 0)
            }
            _ => None,
        };
        self.status.last_transition = Some(TransitionRecord {
            kind: t.kind,
            mode: t.mode,
            job_id: job_id.to_string(),
            started_at: t.started_at,
            finished_at: self.input.now,
            paused_ms,
        });
        let secs = (self.input.now - t.started_at).max(0) as f64 / 1000.0;
        self.completed = Some(Completed { kind: t.kind, secs, paused_secs: paused_ms.map(|ms| ms as f64 / 1000.0) });
    }
}

/// Puts what keeps the job `job_id` from running healthy — a pod problem (image, crash
/// loop with the container's last words, configuration) or the runtime restarting
/// after an error (e.g. checkpoint storage unreachable) — into `status.message` and a
/// Warning Event (repeated Events with the same words fold into one series). Leaves a
/// message about a refused update alone.
pub(crate) fn report_health(ctx: &mut Ctx<'_>, job_id: Option<&str>) {
    let problem = ctx.input.observed.pods.as_ref().and_then(|p| p.problem.clone());
    let restarting = ctx
        .job_is(job_id)
        .filter(|j| matches!(j.state, JobState::Restarting | JobState::Failing | JobState::Created))
        .and_then(|j| j.error.as_ref().map(|e| (j.id.clone(), j.restarts, e.clone())));
    let note = match (problem, restarting) {
        (Some(p), _) => Some(("PodProblem", p.to_string())),
        (None, Some((id, n, e))) => Some(("JobRestarting", format!("job {id} is restarting ({n} restarts so far): {e}"))),
        (None, None) => None,
    };
    if let Some((reason, note)) = note {
        if ctx.status.failed_generation.is_none() {
            ctx.status.message = Some(note.clone());
        }
        ctx.warn(reason, note);
    }
}

/// Computes the next status and actions. Pure: no I/O, no clock.
pub fn step(input: &Input<'_>) -> Step {
    let mut ctx = Ctx { input, status: input.status.clone(), actions: Vec::new(), events: Vec::new(), requeue_ms: STEADY_MS, completed: None };
    let from = ctx.stage();
    ctx.observe_job();
    if input.deleting {
        deleting::next(&mut ctx);
    } else {
        match from {
            Stage::New => new::next(&mut ctx),
            Stage::Deploying => deploying::next(&mut ctx),
            Stage::Running => running::next(&mut ctx),
            Stage::Savepointing => savepointing::next(&mut ctx),
            Stage::Stopping => stopping::next(&mut ctx),
            Stage::Suspended => suspended::next(&mut ctx),
            Stage::Failed | Stage::Finished => failed::next(&mut ctx),
            Stage::Deleting => deleting::next(&mut ctx),
            Stage::BlueGreenSavepoint => bluegreen::savepoint(&mut ctx),
            Stage::BlueGreenDeploying => bluegreen::deploying(&mut ctx),
            Stage::BlueGreenSwitching => bluegreen::switching(&mut ctx),
            Stage::BlueGreenRetiring | Stage::BlueGreenAborting => bluegreen::removing(&mut ctx),
        }
    }
    let to = ctx.stage();
    if from != to {
        ctx.event("StageChanged", format!("{from:?} -> {to:?}"));
    }
    finish(&mut ctx);
    Step { status: ctx.status, actions: ctx.actions, events: ctx.events, requeue_ms: ctx.requeue_ms, completed: ctx.completed }
}

/// The human-facing phase of a stage.
pub fn phase(stage: Stage, transition: Option<TransitionKind>) -> &'static str {
    match (stage, transition) {
        (Stage::New, _) => "Pending",
        (Stage::Running, _) => "Running",
        (Stage::Suspended, _) => "Suspended",
        (Stage::Failed, _) => "Failed",
        (Stage::Finished, _) => "Finished",
        (Stage::Deleting, _) => "Deleting",
        (Stage::BlueGreenSavepoint | Stage::BlueGreenDeploying | Stage::BlueGreenSwitching | Stage::BlueGreenRetiring, _) => "Upgrading",
        (Stage::BlueGreenAborting, _) => "RollingBack",
        (_, Some(TransitionKind::Upgrade)) => "Upgrading",
        (_, Some(TransitionKind::Rescale)) => "Rescaling",
        (_, Some(TransitionKind::Rollback)) => "RollingBack",
        (_, Some(TransitionKind::Suspend)) => "Suspending",
        (_, Some(TransitionKind::Restart | TransitionKind::Recover)) => "Restarting",
        (_, Some(TransitionKind::Delete)) => "Deleting",
        (_, _) => "Deploying",
    }
}

/// Derived fields: phase, replicas, selector, conditions, observedGeneration.
fn finish(ctx: &mut Ctx<'_>) {
    let stage = ctx.stage();
    let kind = ctx.status.transition.as_ref().map(|t| t.kind);
    ctx.status.phase = Some(phase(stage, kind).to_string());
    ctx.status.selector = Some(format!("{}={}", crate::resources::LABEL_JOB, ctx.input.name));
    ctx.status.active_slot = ctx.status.deployed.as_ref().map(|d| d.slot);
    ctx.status.replicas = match stage {
        Stage::Suspended | Stage::New => 0,
        _ => ctx.input.observed.pods.as_ref().map(|p| p.current).unwrap_or(0),
    };
    // A generation counts as observed once it is deployed, ignored or reported as failed.
    let handled = [
        ctx.status.deployed.as_ref().map(|d| d.generation),
        ctx.status.failed_generation,
        ctx.status.transition.as_ref().map(|t| t.target_generation),
    ];
    if handled.contains(&Some(ctx.input.generation)) || stage == Stage::Suspended {
        ctx.status.observed_generation = Some(ctx.input.generation);
    }
    let job_running = ctx.status.job_state.as_deref() == Some(JobState::Running.as_str());
    let (ready, ready_reason, ready_msg) = match stage {
        Stage::Running if job_running => (true, "JobRunning", "the job runs the deployed spec".to_string()),
        Stage::BlueGreenSavepoint | Stage::BlueGreenDeploying | Stage::BlueGreenAborting if job_running => {
            (true, "JobRunning", format!("the deployed spec runs (blue) during a blue/green rollout, stage {stage:?}"))
        }
        Stage::Running => (false, "JobNotRunning", format!("job state {}", ctx.status.job_state.as_deref().unwrap_or("unknown"))),
        s => (false, phase(s, kind), format!("stage {s:?}")),
    };
    let progressing = ctx.status.transition.as_ref().map(|t| (format!("{:?}", t.kind), format!("{:?} in stage {stage:?}", t.kind)));
    let live = matches!(
        stage,
        Stage::Deploying | Stage::Running | Stage::Savepointing | Stage::BlueGreenSavepoint | Stage::BlueGreenDeploying | Stage::BlueGreenSwitching
    );
    let pod_problem = ctx.input.observed.pods.as_ref().and_then(|p| p.problem.clone()).filter(|_| live);
    let restarting = ctx
        .input
        .observed
        .job_status()
        .filter(|j| live && Some(&j.id) == ctx.status.job_id.as_ref() && matches!(j.state, JobState::Restarting | JobState::Failing))
        .and_then(|j| j.error.clone());
    let degraded: Option<(String, String)> = match (&ctx.status.error, &ctx.status.message, ctx.status.failed_generation) {
        (Some(e), _, _) => Some(("JobFailed".into(), e.clone())),
        (None, Some(m), Some(_)) => Some(("UpdateNotApplied".into(), m.clone())),
        _ if pod_problem.is_some() => pod_problem.map(|p| (p.reason.clone(), p.to_string())),
        _ if restarting.is_some() => restarting.map(|e| ("JobRestarting".to_string(), e)),
        _ if stage == Stage::Failed => Some(("JobFailed".into(), "the job failed".to_string())),
        _ => None,
    };
    let now = ctx.input.now;
    let gen_ = ctx.input.generation;
    set_condition(&mut ctx.status.conditions, "Ready", ready, ready_reason, &ready_msg, now, gen_);
    match progressing {
        Some((r, m)) => set_condition(&mut ctx.status.conditions, "Progressing", true, &r, &m, now, gen_),
        None => set_condition(&mut ctx.status.conditions, "Progressing", false, "Idle", "no transition in progress", now, gen_),
    }
    match degraded {
        Some((r, m)) => set_condition(&mut ctx.status.conditions, "Degraded", true, &r, &m, now, gen_),
        None => set_condition(&mut ctx.status.conditions, "Degraded", false, "Healthy", "no error", now, gen_),
    }
}

pub fn set_condition(conds: &mut Vec<Condition>, type_: &str, on: bool, reason: &str, message: &str, now: i64, generation: i64) {
    let status = if on { "True" } else { "False" };
    let time = format_rfc3339(now);
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = time;
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = Some(generation);
        }
        None => conds.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: time,
            observed_generation: Some(generation),
        }),
    }
}

/// Epoch ms → RFC 3339 (UTC, seconds).
pub fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil-from-days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests;
