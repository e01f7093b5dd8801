//! The StreamJob controller: read the StreamJob fresh from the API server (never act
//! on a cached copy older than our own last status write), observe (StatefulSet, pods,
//! the coordinator's REST API), decide ([`lifecycle::step`], pure), write status first
//! (write-ahead), publish the Events, then act (server-side apply of the owned objects
//! with one field manager, savepoint triggers under request ids recorded in status,
//! disposal, the finalizer). A failed reconcile is reported where users look: status
//! message, the `Degraded` condition and a Warning Event, with the API server's words.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};
use weir_api::SavepointRequest;

use crate::crd::{Slot, StreamJob, StreamJobStatus};
use crate::error::{Error, Result};
use crate::events::Publisher;
use crate::jobclient::JobClient;
use crate::lifecycle::{self, Action as Act, Input, JobObserved, Observed, PodsObserved, SideObserved, Stage};
use crate::metrics::Metrics;
use crate::resources;
use crate::{FIELD_MANAGER, FINALIZER};

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    pub jobs: JobClient,
    pub metrics: Arc<Metrics>,
    pub events: Publisher,
    /// Epoch ms (a function so tests can fix the time).
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// A fresh job id (a function so tests are deterministic).
    pub new_job_id: Arc<dyn Fn() -> String + Send + Sync>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, jobs: JobClient, metrics: Arc<Metrics>, instance: Option<String>) -> Self {
        let instance = instance.unwrap_or_else(|| FIELD_MANAGER.to_string());
        let events = Publisher::new(client.clone(), FIELD_MANAGER, &instance);
        Context {
            client,
            jobs,
            metrics,
            events,
            clock: Arc::new(now_ms),
            new_job_id: Arc::new(|| uuid::Uuid::new_v4().to_string()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> i64 + Send + Sync>, ids: Arc<dyn Fn() -> String + Send + Sync>) -> Self {
        self.clock = clock;
        self.new_job_id = ids;
        self
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Runs the controller for `namespaces` (all when empty) until a shutdown signal.
pub async fn run(ctx: Arc<Context>, namespaces: Vec<String>) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() { vec![None] } else { namespaces.into_iter().map(Some).collect() };
    let controllers = scopes.into_iter().map(|ns| {
        let client = ctx.client.clone();
        let api = |c: Client| -> (Api<StreamJob>, Api<StatefulSet>, Api<Service>, Api<ConfigMap>) {
            match &ns {
                Some(ns) => (Api::namespaced(c.clone(), ns), Api::namespaced(c.clone(), ns), Api::namespaced(c.clone(), ns), Api::namespaced(c, ns)),
                None => (Api::all(c.clone()), Api::all(c.clone()), Api::all(c.clone()), Api::all(c)),
            }
        };
        let (jobs, sts, svc, cm) = api(client);
        let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=weir-operator");
        Controller::new(jobs, watcher::Config::default())
            .owns(sts, owned.clone())
            .owns(svc, owned.clone())
            .owns(cm, owned)
            .shutdown_on_signal()
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|r| async move {
                match r {
                    Ok((obj, _)) => debug!(job = %obj.name, namespace = ?obj.namespace, "reconciled"),
                    Err(e) => debug!(error = %e, "reconcile failed"),
                }
            })
    });
    futures::future::join_all(controllers).await;
}

/// Requeue after a failure: exponential backoff per object, 5 s up to 5 min.
pub fn error_policy(job: Arc<StreamJob>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.errors.with_label_values(&[err.metric_label()]).inc();
    let key = format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any());
    let n = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        })
        .unwrap_or(1);
    let delay = Duration::from_secs((5u64 << n.min(6).saturating_sub(1)).min(300));
    warn!(job = %job.name_any(), namespace = ?job.namespace(), error = %err, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

/// Reconciles one StreamJob.
pub async fn reconcile(job: Arc<StreamJob>, ctx: Arc<Context>) -> Result<Action> {
    let name = job.metadata.name.clone().ok_or(Error::MissingField("metadata.name"))?;
    let ns = job.metadata.namespace.clone().ok_or(Error::MissingField("metadata.namespace"))?;
    let span = info_span!("reconcile", job = %name, namespace = %ns);
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let jobs_api: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &ns);
    // The watch cache may still hold the object from before our own last status write;
    // deciding on it would repeat a step (a second stop-with-savepoint). Read it fresh.
    let fresh = match jobs_api.get_opt(&name).await {
        Ok(Some(j)) => Arc::new(j),
        Ok(None) => return Ok(Action::await_change()),
        Err(source) => return Err(Error::Object { verb: "get", kind: "StreamJob", name, namespace: ns, source }),
    };
    let r = reconcile_inner(fresh.clone(), &ctx, &name, &ns).instrument(span).await;
    ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
    match &r {
        Ok(_) => {
            if let Ok(mut f) = ctx.failures.lock() {
                f.remove(&format!("{ns}/{name}"));
            }
        }
        Err(e) => report_failure(&ctx, &jobs_api, &fresh, e).await,
    }
    r
}

/// A reconcile failed (typically a Kubernetes API call refused): the reason goes to
/// `status.message`, the `Degraded` condition and a Warning Event at once, in the API
/// server's words plus what to do, instead of only the operator's log.
async fn report_failure(ctx: &Context, api: &Api<StreamJob>, job: &StreamJob, err: &Error) {
    let note = err.explain();
    let mut status = job.status.clone().unwrap_or_default();
    if status.message.as_deref() != Some(note.as_str()) {
        status.message = Some(note.clone());
        let generation = job.metadata.generation.unwrap_or(0);
        lifecycle::set_condition(&mut status.conditions, "Degraded", true, "ReconcileError", &note, (ctx.clock)(), generation);
        if let Err(e) = patch_status(api, &job.name_any(), &status).await {
            warn!(error = %e, "cannot record the reconcile error in status");
        }
    }
    publish(ctx, job, &lifecycle::Event { warning: true, reason: "ReconcileError", note }).await;
}

async fn reconcile_inner(job: Arc<StreamJob>, ctx: &Context, name: &str, ns: &str) -> Result<Action> {
    let jobs_api: Api<StreamJob> = Api::namespaced(ctx.client.clone(), ns);
    let deleting = job.metadata.deletion_timestamp.is_some();
    let has_finalizer = job.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        ctx.metrics.set_phase(&format!("{ns}/{name}"), None);
        return Ok(Action::await_change());
    }
    if !has_finalizer {
        add_finalizer(&jobs_api, &job).await?;
    }

    let observed = observe(ctx, &job, name, ns).await;
    let status = job.status.clone().unwrap_or_default();
    let fresh_id = (ctx.new_job_id)();
    let input = Input {
        name,
        namespace: ns,
        generation: job.metadata.generation.unwrap_or(0),
        spec: &job.spec,
        status: &status,
        observed: &observed,
        now: (ctx.clock)(),
        deleting,
        fresh_job_id: &fresh_id,
    };
    let step = lifecycle::step(&input);
    let mut new_status = step.status.clone();

    // Write-ahead: the decision is recorded before anything is done.
    if new_status != status {
        patch_status(&jobs_api, name, &new_status).await?;
    }
    // The story first: an action that fails below must not swallow the Events of the
    // decision (nor may a removed finalizer).
    for ev in &step.events {
        publish(ctx, &job, ev).await;
    }
    let mut status_dirty = false;
    let mut finalizer_removed = false;
    for action in &step.actions {
        match action {
            Act::Apply(plan) => apply_objects(ctx, &job, plan).await?,
            Act::TriggerSavepoint { stop, target, request_id } => {
                // The request id is in status already: a lost answer, a retry or a
                // stale second decision asks for the same savepoint, never a second one.
                let req = SavepointRequest { stop: *stop, target: Some(target.clone()), request_id: Some(request_id.clone()) };
                match ctx.jobs.trigger_savepoint(name, ns, &req).await {
                    Ok(t) => info!(trigger = %t.id, stop, %target, "savepoint triggered"),
                    // The stage asks again (same request id) or gives up after its timeout.
                    Err(e) => warn!(error = %e, request = %request_id, "savepoint trigger failed"),
                }
            }
            Act::Dispose(urls) => {
                for url in urls {
                    match ctx.jobs.dispose(name, ns, url).await {
                        Ok(()) => {
                            new_status.pending_disposal.retain(|u| u != url);
                            status_dirty = true;
                            info!(savepoint = %url, "savepoint disposed of");
                        }
                        Err(e) => warn!(error = %e, savepoint = %url, "savepoint disposal failed; will retry"),
                    }
                }
            }
            Act::RemoveSlot(slot) => remove_slot(ctx, &job, *slot).await?,
            Act::RemoveFinalizer => {
                remove_finalizer(&jobs_api, &job).await?;
                finalizer_removed = true;
            }
        }
    }
    if status_dirty && !finalizer_removed {
        patch_status(&jobs_api, name, &new_status).await?;
    }
    if let Some(c) = step.completed {
        let kind = format!("{:?}", c.kind);
        ctx.metrics.transitions.with_label_values(&[&kind]).observe(c.secs);
        if let Some(paused) = c.paused_secs {
            ctx.metrics.pauses.with_label_values(&[&kind]).observe(paused);
        }
    }
    let key = format!("{ns}/{name}");
    ctx.metrics.set_phase(&key, if finalizer_removed { None } else { new_status.phase.as_deref() });
    if finalizer_removed {
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(Duration::from_millis(step.requeue_ms.max(1000) as u64)))
}

/// The StatefulSet of `slot` and its pods' most telling problem.
async fn observe_pods(ctx: &Context, name: &str, ns: &str, slot: Slot) -> Option<PodsObserved> {
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let sts_name = resources::slot_name(name, slot);
    match sts_api.get_opt(&sts_name).await {
        Ok(Some(sts)) => Some(PodsObserved {
            desired: sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            current: sts.status.as_ref().map(|s| s.replicas).unwrap_or(0),
            ready: sts.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
            problem: pod_problem(ctx, name, ns, slot).await,
        }),
        Ok(None) => None,
        Err(e) => {
            warn!(error = %e, statefulset = %sts_name, "cannot read the StatefulSet");
            // Unknown: assume pods may exist (never skip a stop because of a failed read).
            Some(PodsObserved { desired: 1, current: 1, ready: 0, problem: None })
        }
    }
}

/// `GET /v1/job` through the Service `<key>-rest`, when there are pods to ask.
async fn observe_job(ctx: &Context, key: &str, ns: &str, pods: &Option<PodsObserved>) -> JobObserved {
    if !pods.as_ref().is_some_and(|p| p.desired > 0 || p.current > 0) {
        return JobObserved::NotQueried;
    }
    match ctx.jobs.job(key, ns).await {
        Ok(s) => JobObserved::Status(s),
        Err(e) => JobObserved::Unreachable(e.to_string()),
    }
}

async fn observe(ctx: &Context, job: &StreamJob, name: &str, ns: &str) -> Observed {
    let status = job.status.clone().unwrap_or_default();
    let active = status.deployed.as_ref().map(|d| d.slot).unwrap_or_default();
    let pods = observe_pods(ctx, name, ns, active).await;
    let has_pods = pods.as_ref().is_some_and(|p| p.desired > 0 || p.current > 0);
    let job_state = observe_job(ctx, name, ns, &pods).await;
    // Blue/green: the other slot too (green before the switch, what is being removed after).
    let blue_green = matches!(
        status.stage,
        Some(
            Stage::BlueGreenSavepoint | Stage::BlueGreenDeploying | Stage::BlueGreenSwitching | Stage::BlueGreenRetiring | Stage::BlueGreenAborting
        )
    );
    let other = if blue_green {
        let slot = active.other();
        let pods = observe_pods(ctx, name, ns, slot).await;
        let job = observe_job(ctx, &resources::slot_rest_key(name, slot), ns, &pods).await;
        Some(SideObserved { pods, job })
    } else {
        None
    };
    let trigger = status
        .transition
        .as_ref()
        .and_then(|t| t.savepoint_trigger.clone())
        .or_else(|| status.pending_savepoint.as_ref().and_then(|p| p.trigger.clone()));
    let job_answered = matches!(job_state, JobObserved::Status(_));
    let (savepoint, savepoint_missing) = match trigger {
        Some(id) if has_pods && job_answered => match ctx.jobs.savepoint(name, ns, &id).await {
            Ok(Some(s)) => (Some(s), false),
            Ok(None) => (None, true),
            Err(e) => {
                debug!(error = %e, "savepoint status unavailable");
                (None, false)
            }
        },
        _ => (None, false),
    };
    Observed { pods, job: job_state, other, savepoint, savepoint_missing }
}

/// The most telling problem of the pods of one slot (image, crash loop, configuration).
async fn pod_problem(ctx: &Context, name: &str, ns: &str, slot: Slot) -> Option<crate::pods::PodProblem> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default().labels(&resources::pod_selector(name, slot));
    match api.list(&lp).await {
        Ok(list) => crate::pods::problem(&list.items),
        Err(e) => {
            warn!(error = %e, "cannot list the job's pods");
            None
        }
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Server-side apply of the four owned objects of the plan's slot (ConfigMap first:
/// pods mount it). `<job>-rest` selects the active deployment; a deployment that is not
/// active yet (green) gets `<job>-<slot>-rest` instead.
async fn apply_objects(ctx: &Context, job: &StreamJob, plan: &lifecycle::DeployPlan) -> Result<()> {
    let ns = job.metadata.namespace.clone().ok_or(Error::MissingField("metadata.namespace"))?;
    let name = job.name_any();
    let base = resources::slot_name(&name, plan.slot);
    let svc_api = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    let cm = resources::config_map(job, &plan.spec, plan.replicas.max(1), plan.slot);
    apply(&Api::namespaced(ctx.client.clone(), &ns), &resources::config_name(&base), &cm).await?;
    apply(&svc_api, &resources::peers_name(&base), &resources::peers_service(job, plan.slot)).await?;
    if plan.active {
        apply(&svc_api, &resources::rest_name(&name), &resources::rest_service(job, plan.slot)).await?;
    } else {
        apply(&svc_api, &resources::slot_rest_name(&name, plan.slot), &resources::slot_rest_service(job, plan.slot)).await?;
    }
    apply(&Api::namespaced(ctx.client.clone(), &ns), &base, &resources::stateful_set(job, plan)).await?;
    Ok(())
}

/// Deletes the objects of `slot`: its StatefulSet (foreground: it stays visible until its
/// pods are gone, which is what the lifecycle waits for), peers, `<job>-<slot>-rest` and
/// ConfigMap. Absent objects count as deleted.
async fn remove_slot(ctx: &Context, job: &StreamJob, slot: Slot) -> Result<()> {
    let ns = job.metadata.namespace.clone().ok_or(Error::MissingField("metadata.namespace"))?;
    let name = job.name_any();
    let base = resources::slot_name(&name, slot);
    let sts: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let svc: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let cm: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    delete(&sts, &base, &DeleteParams::foreground()).await?;
    delete(&svc, &resources::peers_name(&base), &DeleteParams::default()).await?;
    delete(&svc, &resources::slot_rest_name(&name, slot), &DeleteParams::default()).await?;
    delete(&cm, &resources::config_name(&base), &DeleteParams::default()).await?;
    info!(%slot, statefulset = %base, "slot objects deleted");
    Ok(())
}

async fn delete<K>(api: &Api<K>, name: &str, dp: &DeleteParams) -> Result<()>
where
    K: k8s_openapi::Resource + kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => {
            let namespace = api.namespace().unwrap_or_default().to_string();
            Err(Error::Object { verb: "delete", kind: K::KIND, name: name.to_string(), namespace, source })
        }
    }
}

/// Server-side apply of one object; an error names the object (a create and a patch are
/// both authorized separately: SSA of an absent object needs `create`).
async fn apply<K>(api: &Api<K>, name: &str, obj: &K) -> Result<()>
where
    K: k8s_openapi::Resource + kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = with_kind(obj, K::API_VERSION, K::KIND)?;
    match api.patch(name, &apply_params(), &Patch::Apply(body)).await {
        Ok(_) => Ok(()),
        Err(source) => {
            let namespace = api.namespace().unwrap_or_default().to_string();
            Err(Error::Object { verb: "apply", kind: K::KIND, name: name.to_string(), namespace, source })
        }
    }
}

fn with_kind<T: serde::Serialize>(obj: &T, api_version: &str, kind: &str) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(obj).map_err(|source| Error::Serialization { what: "owned object", source })?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(v)
}

async fn patch_status(api: &Api<StreamJob>, name: &str, status: &StreamJobStatus) -> Result<()> {
    let body = json!({
        "apiVersion": StreamJob::api_version(&()),
        "kind": StreamJob::kind(&()),
        "status": status,
    });
    match api.patch_status(name, &apply_params(), &Patch::Apply(body)).await {
        Ok(_) => Ok(()),
        Err(source) => Err(object_error("update the status of", name, api, source)),
    }
}

fn object_error(verb: &'static str, name: &str, api: &Api<StreamJob>, source: kube::Error) -> Error {
    Error::Object { verb, kind: "StreamJob", name: name.to_string(), namespace: api.namespace().unwrap_or_default().to_string(), source }
}

async fn add_finalizer(api: &Api<StreamJob>, job: &StreamJob) -> Result<()> {
    let mut finalizers = job.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": job.resource_version()}});
    match api.patch(&job.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(source) => Err(object_error("add the finalizer to", &job.name_any(), api, source)),
    }
}

/// Removes our finalizer with a JSON patch that tests it is still where we saw it:
/// no resourceVersion precondition, so our own status write just before cannot make it
/// fail with `409 Conflict` (it did, and deletion then looped forever).
async fn remove_finalizer(api: &Api<StreamJob>, job: &StreamJob) -> Result<()> {
    let Some(i) = job.finalizers().iter().position(|f| f == FINALIZER) else { return Ok(()) };
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
    ]))
    .map_err(|source| Error::Serialization { what: "finalizer patch", source })?;
    match api.patch(&job.name_any(), &PatchParams::default(), &Patch::<()>::Json(ops)).await {
        Ok(_) => Ok(()),
        // Gone already: deletion is done.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(object_error("remove the finalizer from", &job.name_any(), api, source)),
    }
}

async fn publish(ctx: &Context, job: &StreamJob, ev: &lifecycle::Event) {
    if ev.warning {
        warn!(reason = ev.reason, note = %ev.note, "event");
    } else {
        info!(reason = ev.reason, note = %ev.note, "event");
    }
    match ctx.events.publish(&job.object_ref(&()), ev.warning, ev.reason, &ev.note).await {
        Ok(()) => {}
        // The namespace is being deleted with the job: nobody will read the Event.
        Err(kube::Error::Api(s)) if s.message.contains("being terminated") => debug!(reason = ev.reason, "namespace terminating: event dropped"),
        Err(err) => warn!(error = %err, reason = ev.reason, "cannot publish event"),
    }
}
