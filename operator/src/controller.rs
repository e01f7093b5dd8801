//! The StreamJob controller: observe (StatefulSet, the coordinator's REST API), decide
//! ([`lifecycle::step`], pure), write status first (write-ahead), then act (server-side
//! apply of the owned objects with one field manager, savepoint triggers, disposal,
//! the finalizer) and publish Events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};
use weir_api::SavepointRequest;

use crate::crd::{StreamJob, StreamJobStatus};
use crate::error::{Error, Result};
use crate::jobclient::JobClient;
use crate::lifecycle::{self, Action as Act, Input, JobObserved, Observed, PodsObserved};
use crate::metrics::Metrics;
use crate::resources;
use crate::{FIELD_MANAGER, FINALIZER};

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    pub jobs: JobClient,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Epoch ms (a function so tests can fix the time).
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// A fresh job id (a function so tests are deterministic).
    pub new_job_id: Arc<dyn Fn() -> String + Send + Sync>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, jobs: JobClient, metrics: Arc<Metrics>, instance: Option<String>) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance });
        Context {
            client,
            jobs,
            metrics,
            recorder,
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
    let r = reconcile_inner(job, &ctx, &name, &ns).instrument(span).await;
    ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
    if r.is_ok()
        && let Ok(mut f) = ctx.failures.lock()
    {
        f.remove(&format!("{ns}/{name}"));
    }
    r
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
    let mut status_dirty = false;
    let mut finalizer_removed = false;
    for action in &step.actions {
        match action {
            Act::Apply(plan) => apply_objects(ctx, &job, plan).await?,
            Act::TriggerSavepoint { stop, target } => {
                let req = SavepointRequest { stop: *stop, target: Some(target.clone()), request_id: None };
                match ctx.jobs.trigger_savepoint(name, ns, &req).await {
                    Ok(t) => {
                        info!(trigger = %t.id, stop, "savepoint triggered");
                        if *stop {
                            if let Some(tr) = new_status.transition.as_mut() {
                                tr.savepoint_trigger = Some(t.id);
                            }
                        } else if let Some(p) = new_status.pending_savepoint.as_mut() {
                            p.trigger = Some(t.id);
                        }
                        status_dirty = true;
                    }
                    // The stage retries (same target) or gives up after its timeout.
                    Err(e) => warn!(error = %e, "savepoint trigger failed"),
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
            Act::RemoveFinalizer => {
                remove_finalizer(&jobs_api, &job).await?;
                finalizer_removed = true;
            }
        }
    }
    if status_dirty && !finalizer_removed {
        patch_status(&jobs_api, name, &new_status).await?;
    }
    for ev in &step.events {
        publish(ctx, &job, ev).await;
    }
    if let Some((kind, secs)) = step.completed {
        ctx.metrics.transitions.with_label_values(&[&format!("{kind:?}")]).observe(secs);
    }
    let key = format!("{ns}/{name}");
    ctx.metrics.set_phase(&key, if finalizer_removed { None } else { new_status.phase.as_deref() });
    if finalizer_removed {
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(Duration::from_millis(step.requeue_ms.max(1000) as u64)))
}

async fn observe(ctx: &Context, job: &StreamJob, name: &str, ns: &str) -> Observed {
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let pods = match sts_api.get_opt(name).await {
        Ok(Some(sts)) => Some(PodsObserved {
            desired: sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            current: sts.status.as_ref().map(|s| s.replicas).unwrap_or(0),
            ready: sts.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
        }),
        Ok(None) => None,
        Err(e) => {
            warn!(error = %e, "cannot read the StatefulSet");
            // Unknown: assume pods may exist (never skip a stop because of a failed read).
            Some(PodsObserved { desired: 1, current: 1, ready: 0 })
        }
    };
    let has_pods = pods.as_ref().is_some_and(|p| p.desired > 0 || p.current > 0);
    let job_state = if has_pods {
        match ctx.jobs.job(name, ns).await {
            Ok(s) => JobObserved::Status(s),
            Err(e) => JobObserved::Unreachable(e.to_string()),
        }
    } else {
        JobObserved::NotQueried
    };
    let status = job.status.clone().unwrap_or_default();
    let trigger = status
        .transition
        .as_ref()
        .and_then(|t| t.savepoint_trigger.clone())
        .or_else(|| status.pending_savepoint.as_ref().and_then(|p| p.trigger.clone()));
    let savepoint = match trigger {
        Some(id) if has_pods => match ctx.jobs.savepoint(name, ns, &id).await {
            Ok(s) => Some(s),
            Err(e) => {
                debug!(error = %e, "savepoint status unavailable");
                None
            }
        },
        _ => None,
    };
    Observed { pods, job: job_state, savepoint }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Server-side apply of the four owned objects (ConfigMap first: pods mount it).
async fn apply_objects(ctx: &Context, job: &StreamJob, plan: &lifecycle::DeployPlan) -> Result<()> {
    let ns = job.metadata.namespace.clone().ok_or(Error::MissingField("metadata.namespace"))?;
    let name = job.name_any();
    let cm = resources::config_map(job, &plan.spec, plan.replicas.max(1));
    Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns).patch(&resources::config_name(&name), &apply_params(), &Patch::Apply(with_kind(&cm, "v1", "ConfigMap")?)).await?;
    let svc_api = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    let peers = resources::peers_service(job);
    svc_api.patch(&resources::peers_name(&name), &apply_params(), &Patch::Apply(with_kind(&peers, "v1", "Service")?)).await?;
    let rest = resources::rest_service(job);
    svc_api.patch(&resources::rest_name(&name), &apply_params(), &Patch::Apply(with_kind(&rest, "v1", "Service")?)).await?;
    let sts = resources::stateful_set(job, plan);
    Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns).patch(&name, &apply_params(), &Patch::Apply(with_kind(&sts, "apps/v1", "StatefulSet")?)).await?;
    Ok(())
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
    api.patch_status(name, &apply_params(), &Patch::Apply(body)).await?;
    Ok(())
}

async fn add_finalizer(api: &Api<StreamJob>, job: &StreamJob) -> Result<()> {
    let mut finalizers = job.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": job.resource_version()}});
    api.patch(&job.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

async fn remove_finalizer(api: &Api<StreamJob>, job: &StreamJob) -> Result<()> {
    let finalizers: Vec<&String> = job.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": job.resource_version()}});
    api.patch(&job.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

async fn publish(ctx: &Context, job: &StreamJob, ev: &lifecycle::Event) {
    let e = KubeEvent {
        type_: if ev.warning { EventType::Warning } else { EventType::Normal },
        reason: ev.reason.to_string(),
        note: Some(ev.note.chars().take(1000).collect()),
        action: ev.reason.to_string(),
        secondary: None,
    };
    if ev.warning {
        warn!(reason = ev.reason, note = %ev.note, "event");
    } else {
        info!(reason = ev.reason, note = %ev.note, "event");
    }
    if let Err(err) = ctx.recorder.publish(&e, &job.object_ref(&())).await {
        warn!(error = %err, reason = ev.reason, "cannot publish event");
    }
}
