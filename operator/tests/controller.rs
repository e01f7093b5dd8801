//! The controller at its HTTP boundaries: a mocked Kubernetes API (kube-rs style,
//! `tower_test::mock::pair`) that records every call, and a stub of the runtime's REST
//! API (a real axum server on 127.0.0.1 implementing weir-api). Asserts the exact
//! objects and patches sent, and that every call is allowed by operator/rbac.yaml.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::routing::{get, post};
use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use weir_api::{JobState, JobStatus, SavepointRequest, Triggered};
use weir_operator::controller::{Context, reconcile};
use weir_operator::crd::StreamJob;
use weir_operator::jobclient::JobClient;
use weir_operator::metrics::Metrics;

#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    query: String,
    body: Value,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// Serves the mocked API server: answers by path, records every call.
fn mock_kube(job: Value, sts: Option<Value>) -> (Client, Calls) {
    mock_kube_refusing(job, sts, None)
}

/// Like [`mock_kube`], but answers every call whose path ends with `refuse` with a real
/// API server's 403.
fn mock_kube_refusing(job: Value, sts: Option<Value>, refuse: Option<&'static str>) -> (Client, Calls) {
    mock_kube_slots(job, sts, None, refuse)
}

/// Like [`mock_kube_refusing`], with slot green's StatefulSet `fraud-green` (when given).
fn mock_kube_slots(job: Value, sts: Option<Value>, green: Option<Value>, refuse: Option<&'static str>) -> (Client, Calls) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls: Calls = Arc::default();
    let rec = calls.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or_default().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            rec.lock().unwrap().push(Call { method: method.clone(), path: path.clone(), query, body: body.clone() });
            let (code, answer) = if refuse.is_some_and(|r| path.ends_with(r)) {
                let msg = "configmaps \"fraud-job\" is forbidden: User \"system:serviceaccount:weir-system:weir-operator\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"prod\"";
                (403, json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":msg}))
            } else if path.ends_with("/pods") && method == "GET" {
                (200, json!({"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}))
            } else if (path.ends_with("/statefulsets/fraud") || path.ends_with("/statefulsets/fraud-green")) && method == "GET" {
                match if path.ends_with("/fraud") { &sts } else { &green } {
                    Some(s) => (200, s.clone()),
                    None => (404, json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"not found"})),
                }
            } else if method == "DELETE" {
                (200, json!({"kind":"Status","apiVersion":"v1","status":"Success","code":200,"metadata":{}}))
            } else if path.contains("/streamjobs/fraud") {
                let mut j = job.clone();
                if let Some(st) = body.get("status") {
                    j["status"] = st.clone();
                }
                (200, j)
            } else {
                (200, body)
            };
            let resp = Response::builder().status(code).body(Body::from(serde_json::to_vec(&answer).unwrap())).unwrap();
            send.send_response(resp);
        }
    });
    (Client::new(svc, "prod"), calls)
}

#[derive(Default)]
struct Runtime {
    savepoint_requests: Mutex<Vec<SavepointRequest>>,
}

/// A stub coordinator: job j1 RUNNING, savepoints accepted as sp-1.
async fn stub_runtime() -> (String, Arc<Runtime>) {
    let state = Arc::new(Runtime::default());
    let s = state.clone();
    let app = axum::Router::new()
        .route(
            weir_api::paths::JOB,
            get(|| async {
                Json(JobStatus {
                    id: "j1".into(),
                    name: "fraud".into(),
                    state: JobState::Running,
                    parallelism: 2,
                    max_parallelism: 720,
                    started: 1,
                    running_since: None,
                    last_checkpoint: None,
                    restarts: 0,
                    watermark: None,
                    error: None,
                })
            }),
        )
        .route(
            weir_api::paths::SAVEPOINTS,
            post(move |Json(req): Json<SavepointRequest>| {
                let s = s.clone();
                async move {
                    s.savepoint_requests.lock().unwrap().push(req);
                    (StatusCode::ACCEPTED, Json(Triggered { id: "sp-1".into() }))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), state)
}

fn streamjob(generation: i64, image: &str, status: Value) -> Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "StreamJob",
        "metadata": {"name": "fraud", "namespace": "prod", "uid": "u-1", "generation": generation, "resourceVersion": "7",
                     "finalizers": ["weir.dev/finalizer"]},
        "spec": {"image": image, "job": {"builtin": "fraud-detection"}, "parallelism": 2, "maxParallelism": 720,
                 "checkpointing": {"storage": "s3://b/jobs/fraud", "interval": "30s", "retain": 3}},
        "status": status,
    })
}

fn context(client: Client, url: String) -> Arc<Context> {
    let jobs = JobClient::new(Arc::new(move |_, _| url.clone())).unwrap();
    let ctx = Context::new(client, jobs, Arc::new(Metrics::new().unwrap()), Some("test".into()))
        .with_clock(Arc::new(|| 1_700_000_000_000), Arc::new(|| "j-new".to_string()));
    Arc::new(ctx)
}

fn find<'a>(calls: &'a [Call], method: &str, path_end: &str) -> &'a Call {
    calls.iter().find(|c| c.method == method && c.path.ends_with(path_end)).unwrap_or_else(|| panic!("no {method} …{path_end} in {:#?}", summary(calls)))
}

fn summary(calls: &[Call]) -> Vec<String> {
    calls.iter().map(|c| format!("{} {}", c.method, c.path)).collect()
}

fn env(sts: &Value, name: &str) -> Option<String> {
    sts["spec"]["template"]["spec"]["containers"][0]["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str().map(String::from)
}

#[tokio::test]
async fn new_job_writes_status_first_then_applies_its_objects() {
    let job = streamjob(1, "weir:1", Value::Null);
    let (client, calls) = mock_kube(job.clone(), None);
    let (url, _rt) = stub_runtime().await;
    let obj: StreamJob = serde_json::from_value(job).unwrap();
    reconcile(Arc::new(obj), context(client, url)).await.expect("reconcile");
    let calls = calls.lock().unwrap().clone();
    let order: Vec<String> = summary(&calls).into_iter().filter(|c| !c.contains("/events")).collect();
    assert_eq!(
        order,
        [
            "GET /apis/weir.dev/v1alpha1/namespaces/prod/streamjobs/fraud",
            "GET /apis/apps/v1/namespaces/prod/statefulsets/fraud",
            "PATCH /apis/weir.dev/v1alpha1/namespaces/prod/streamjobs/fraud/status",
            "PATCH /api/v1/namespaces/prod/configmaps/fraud-job",
            "PATCH /api/v1/namespaces/prod/services/fraud-peers",
            "PATCH /api/v1/namespaces/prod/services/fraud-rest",
            "PATCH /apis/apps/v1/namespaces/prod/statefulsets/fraud",
        ]
    );
    let status = &find(&calls, "PATCH", "/streamjobs/fraud/status").body;
    assert!(find(&calls, "PATCH", "/streamjobs/fraud/status").query.contains("fieldManager=weir-operator"));
    assert_eq!(status["status"]["stage"], "Deploying");
    assert_eq!(status["status"]["transition"]["jobId"], "j-new");
    assert_eq!(status["status"]["phase"], "Deploying");
    let sts = &find(&calls, "PATCH", "/statefulsets/fraud").body;
    assert_eq!(sts["spec"]["replicas"], 2);
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    assert_eq!(sts["metadata"]["ownerReferences"][0]["uid"], "u-1");
    assert_eq!(env(sts, "WEIR_JOB_ID").as_deref(), Some("j-new"));
    assert_eq!(env(sts, "WEIR_CHECKPOINT_URL").as_deref(), Some("s3://b/jobs/fraud/j-new"));
    assert_eq!(env(sts, "WEIR_RESTORE_FROM"), None);
    let cm = &find(&calls, "PATCH", "/configmaps/fraud-job").body;
    assert!(cm["data"]["job.yaml"].as_str().unwrap().contains("job: fraud-detection"));
    let rest = &find(&calls, "PATCH", "/services/fraud-rest").body;
    assert_eq!(rest["spec"]["selector"]["statefulset.kubernetes.io/pod-name"], "fraud-0");
    assert!(calls.iter().any(|c| c.method == "POST" && c.path == "/apis/events.k8s.io/v1/namespaces/prod/events"));
    assert_rbac(&calls);
}

#[tokio::test]
async fn upgrade_records_the_savepoint_target_before_triggering_it() {
    let spec1 = json!({"image": "weir:1", "job": {"builtin": "fraud-detection"}, "parallelism": 2, "maxParallelism": 720,
                       "checkpointing": {"storage": "s3://b/jobs/fraud", "interval": "30s", "retain": 3}});
    let dep = json!({"jobId": "j1", "generation": 1, "spec": spec1.to_string(), "deployedAt": 1});
    let job = streamjob(2, "weir:2", json!({"stage": "Running", "deployed": dep, "lastStable": dep, "jobId": "j1", "replicas": 2}));
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "fraud"},
                     "spec": {"replicas": 2, "selector": {}, "template": {}, "serviceName": "fraud-peers"},
                     "status": {"replicas": 2, "readyReplicas": 2}});
    let (client, calls) = mock_kube(job.clone(), Some(sts));
    let (url, rt) = stub_runtime().await;
    let obj: StreamJob = serde_json::from_value(job).unwrap();
    reconcile(Arc::new(obj), context(client, url)).await.expect("reconcile");
    let calls = calls.lock().unwrap().clone();
    let status_patches: Vec<&Call> = calls.iter().filter(|c| c.path.ends_with("/status")).collect();
    // One write-ahead record, before the savepoint request, naming the request id the
    // trigger then uses: nothing about the trigger needs recording afterwards.
    assert_eq!(status_patches.len(), 1, "{:#?}", summary(&calls));
    let t = &status_patches[0].body["status"]["transition"];
    assert_eq!(status_patches[0].body["status"]["stage"], "Savepointing");
    assert_eq!(t["kind"], "Upgrade");
    assert_eq!(t["savepointTarget"], "s3://b/jobs/fraud/savepoints/sp-j1-1");
    assert_eq!(t["savepointTrigger"], "sp-j1-1");
    let patch_at = calls.iter().position(|c| c.path.ends_with("/status")).unwrap();
    let reqs = rt.savepoint_requests.lock().unwrap().clone();
    assert_eq!(
        reqs,
        [SavepointRequest { stop: true, target: Some("s3://b/jobs/fraud/savepoints/sp-j1-1".into()), request_id: Some("sp-j1-1".into()) }]
    );
    assert!(patch_at > 0);
    // The old job keeps its objects (generation 1, job j1) until it stopped.
    let sts = &find(&calls, "PATCH", "/statefulsets/fraud").body;
    assert_eq!(sts["spec"]["template"]["spec"]["containers"][0]["image"], "weir:1");
    assert_eq!(env(sts, "WEIR_JOB_ID").as_deref(), Some("j1"));
    assert_rbac(&calls);
}

#[tokio::test]
async fn a_forbidden_apply_reaches_status_and_an_event_at_once() {
    let job = streamjob(1, "weir:1", Value::Null);
    let (client, calls) = mock_kube_refusing(job.clone(), None, Some("/configmaps/fraud-job"));
    let (url, _rt) = stub_runtime().await;
    let obj: StreamJob = serde_json::from_value(job).unwrap();
    let err = reconcile(Arc::new(obj), context(client, url)).await.expect_err("the apply is refused");
    assert!(err.to_string().contains("cannot apply ConfigMap \"fraud-job\" in namespace prod"), "{err}");
    let calls = calls.lock().unwrap().clone();
    let last_status = calls.iter().rev().find(|c| c.path.ends_with("/status")).expect("a status write after the failure");
    let msg = last_status.body["status"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("forbidden") && msg.contains("cannot create resource \"configmaps\""), "{msg}");
    assert!(msg.contains("lacks this permission"), "says what to do: {msg}");
    let degraded = last_status.body["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Degraded").cloned().unwrap();
    assert_eq!((degraded["status"].as_str(), degraded["reason"].as_str()), (Some("True"), Some("ReconcileError")));
    let event = calls.iter().find(|c| c.method == "POST" && c.path.ends_with("/events") && c.body["reason"] == "ReconcileError").expect("event");
    assert_eq!(event.body["type"], "Warning");
    assert!(event.body["note"].as_str().unwrap().contains("forbidden"));
}

#[tokio::test]
async fn deletion_removes_the_finalizer_without_a_resource_version_after_its_own_status_write() {
    let spec1 = json!({"image": "weir:1", "job": {"builtin": "fraud-detection"}, "parallelism": 2, "maxParallelism": 720,
                       "checkpointing": {"storage": "s3://b/jobs/fraud", "interval": "30s", "retain": 3}, "upgradeMode": "stateless"});
    let dep = json!({"jobId": "j1", "generation": 1, "spec": spec1.to_string(), "deployedAt": 1});
    let mut job = streamjob(1, "weir:1", json!({"stage": "Running", "deployed": dep, "lastStable": dep, "jobId": "j1", "replicas": 2}));
    job["spec"]["upgradeMode"] = json!("stateless");
    job["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:13:20Z");
    job["metadata"]["finalizers"] = json!(["other.io/keep", "weir.dev/finalizer"]);
    let (client, calls) = mock_kube(job.clone(), None);
    let (url, _rt) = stub_runtime().await;
    let obj: StreamJob = serde_json::from_value(job).unwrap();
    reconcile(Arc::new(obj), context(client, url)).await.expect("reconcile");
    let calls = calls.lock().unwrap().clone();
    let fin = calls.iter().rposition(|c| c.method == "PATCH" && c.path.ends_with("/streamjobs/fraud")).expect("finalizer patch");
    assert_eq!(
        calls[fin].body,
        json!([{"op": "test", "path": "/metadata/finalizers/1", "value": "weir.dev/finalizer"}, {"op": "remove", "path": "/metadata/finalizers/1"}])
    );
    let deleted_event = calls.iter().position(|c| c.path.ends_with("/events") && c.body["reason"] == "Deleted").expect("Deleted event");
    assert!(deleted_event < fin, "the Event is published before the finalizer goes: {:#?}", summary(&calls));
    assert_rbac(&calls);
}

/// Every call is allowed by operator/rbac.yaml.
fn assert_rbac(calls: &[Call]) {
    let text = std::fs::read_to_string(manifest_dir().join("rbac.yaml")).unwrap();
    let rbac: Value = serde_yaml_ng::from_str(&text).unwrap();
    let rules = rbac["rules"].as_array().unwrap();
    for c in calls {
        let parts: Vec<&str> = c.path.trim_start_matches('/').split('/').collect();
        // /api/v1/namespaces/ns/res[/name[/sub]] or /apis/group/version/namespaces/ns/res[/name[/sub]]
        let (group, rest) = if parts[0] == "api" { ("", &parts[2..]) } else { (parts[1], &parts[3..]) };
        assert_eq!(rest[0], "namespaces", "{}", c.path);
        let resource = match rest.len() {
            5 => format!("{}/{}", rest[2], rest[4]),
            _ => rest[2].to_string(),
        };
        let named = rest.len() >= 4;
        let verb = match (c.method.as_str(), named) {
            ("GET", true) => "get",
            ("GET", false) if c.query.contains("watch=true") => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PATCH", _) => "patch",
            ("PUT", _) => "update",
            ("DELETE", _) => "delete",
            (m, _) => panic!("unexpected method {m}"),
        };
        let allowed = |verb: &str| {
            rules.iter().any(|r| {
                r["apiGroup"] == group && r["resource"] == resource.as_str() && r["verbs"].as_array().unwrap().iter().any(|v| v == verb)
            })
        };
        assert!(allowed(verb), "{} {} ({group}/{resource} {verb}) is not in operator/rbac.yaml", c.method, c.path);
        // A real API server authorizes a server-side apply of an absent object as
        // `create` too (only subresources such as status cannot be created).
        let server_side_apply = c.method == "PATCH" && c.query.contains("fieldManager=") && !resource.contains('/');
        if server_side_apply {
            assert!(allowed("create"), "{} {} is a server-side apply: {group}/{resource} needs `create` in operator/rbac.yaml", c.method, c.path);
        }
    }
}

/// This package's directory: cargo's `CARGO_MANIFEST_DIR` at run time (the build's
/// value only as a fallback: a test binary built from another checkout carries that
/// checkout's path).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from)
}

// ------------------------------------------------------------ blue/green

/// A stub coordinator of job `id` in `state`; `GET /v1/savepoints/{id}` answers COMPLETED
/// at `savepoint` (404 without one).
async fn stub_job(id: &'static str, state: JobState, savepoint: Option<&'static str>) -> (String, Arc<Runtime>) {
    let state_ = Arc::new(Runtime::default());
    let s = state_.clone();
    let app = axum::Router::new()
        .route(
            weir_api::paths::JOB,
            get(move || async move {
                Json(JobStatus {
                    id: id.into(),
                    name: "fraud".into(),
                    state,
                    parallelism: 2,
                    max_parallelism: 720,
                    started: 1,
                    running_since: Some(1_699_999_990_000),
                    last_checkpoint: Some(weir_api::CheckpointRef { id: 3, url: format!("s3://b/jobs/fraud/{id}/checkpoints/chk-3"), timestamp: 1, bytes: 1 }),
                    restarts: 0,
                    watermark: None,
                    error: None,
                })
            }),
        )
        .route(
            "/v1/savepoints/{id}",
            get(move |axum::extract::Path(req): axum::extract::Path<String>| async move {
                match savepoint {
                    Some(url) => (
                        StatusCode::OK,
                        Json(json!({"id": req, "status": "COMPLETED", "url": url})),
                    ),
                    None => (StatusCode::NOT_FOUND, Json(json!({"error": "unknown savepoint request"}))),
                }
            }),
        )
        .route(
            weir_api::paths::SAVEPOINTS,
            post(move |Json(req): Json<SavepointRequest>| {
                let s = s.clone();
                async move {
                    s.savepoint_requests.lock().unwrap().push(req);
                    (StatusCode::ACCEPTED, Json(Triggered { id: "sp-2".into() }))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), state_)
}

/// The operator reaches `<key>-rest`: `fraud` (the active slot) and `fraud-green`.
fn context_slots(client: Client, blue: String, green: String) -> Arc<Context> {
    let jobs = JobClient::new(Arc::new(move |key, _| if key == "fraud" { blue.clone() } else { green.clone() })).unwrap();
    let ctx = Context::new(client, jobs, Arc::new(Metrics::new().unwrap()), Some("test".into()))
        .with_clock(Arc::new(|| 1_700_000_000_000), Arc::new(|| "j-new".to_string()));
    Arc::new(ctx)
}

fn bg_spec(image: &str) -> Value {
    json!({"image": image, "job": {"builtin": "fraud-detection"}, "parallelism": 2, "maxParallelism": 720,
           "checkpointing": {"storage": "s3://b/jobs/fraud", "interval": "30s", "retain": 3},
           "rollout": {"strategy": "blueGreen"}})
}

fn sts_json(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
           "spec": {"replicas": 2, "selector": {}, "template": {}, "serviceName": format!("{name}-peers")},
           "status": {"replicas": 2, "readyReplicas": 2}})
}

fn bg_streamjob(status: Value) -> Value {
    let mut job = streamjob(2, "weir:2", status);
    job["spec"] = bg_spec("weir:2");
    job
}

fn bg_transition(extra: Value) -> Value {
    let mut t = json!({"kind": "Upgrade", "mode": "savepoint", "targetSpec": bg_spec("weir:2").to_string(), "targetGeneration": 2,
                       "savepointTarget": "s3://b/jobs/fraud/savepoints/sp-j1-1", "savepointTrigger": "sp-j1-1",
                       "startedAt": 1_699_999_900_000i64, "stageStartedAt": 1_699_999_900_000i64, "slot": "green"});
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    t
}

#[tokio::test]
async fn blue_green_deploys_green_with_its_own_objects_beside_blue() {
    let dep = json!({"jobId": "j1", "generation": 1, "spec": bg_spec("weir:1").to_string(), "deployedAt": 1});
    let job = bg_streamjob(json!({"stage": "BlueGreenSavepoint", "deployed": dep, "lastStable": dep, "jobId": "j1", "replicas": 2,
                                  "transition": bg_transition(json!({}))}));
    let (client, calls) = mock_kube_slots(job.clone(), Some(sts_json("fraud")), None, None);
    let (blue, blue_rt) = stub_job("j1", JobState::Running, Some("s3://b/jobs/fraud/savepoints/sp-j1-1")).await;
    let (green, _) = stub_job("j-new", JobState::Created, None).await;
    let obj: StreamJob = serde_json::from_value(job).unwrap();
    reconcile(Arc::new(obj), context_slots(client, blue, green)).await.expect("reconcile");
    let calls = calls.lock().unwrap().clone();
    let status = &find(&calls, "PATCH", "/streamjobs/fraud/status").body["status"];
    assert_eq!(status["stage"], "BlueGreenDeploying");
    assert_eq!(status["transition"]["jobId"], "j-new");
    assert_eq!(status["transition"]["restoreFrom"], "s3://b/jobs/fraud/savepoints/sp-j1-1");
    assert_eq!((status["jobId"].as_str(), status["activeSlot"].as_str()), (Some("j1"), Some("blue")));
    let status_at = calls.iter().position(|c| c.path.ends_with("/status")).unwrap();
    let green_at = calls.iter().position(|c| c.method == "PATCH" && c.path.ends_with("/statefulsets/fraud-green")).expect("green applied");
    assert!(status_at < green_at, "write-ahead: {:#?}", summary(&calls));
    // Blue is untouched: its objects are applied as they were (weir:1, j1, fraud-rest on fraud-0).
    let blue_sts = &find(&calls, "PATCH", "/statefulsets/fraud").body;
    assert_eq!((blue_sts["spec"]["template"]["spec"]["containers"][0]["image"].as_str(), env(blue_sts, "WEIR_JOB_ID").as_deref()), (Some("weir:1"), Some("j1")));
    let rests: Vec<&Call> = calls.iter().filter(|c| c.method == "PATCH" && c.path.ends_with("/services/fraud-rest")).collect();
    assert!(rests.iter().all(|c| c.body["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == "fraud-0"), "fraud-rest stays on blue");
    // Green: its own StatefulSet, Services and ConfigMap, owned by the StreamJob.
    let sts = &find(&calls, "PATCH", "/statefulsets/fraud-green").body;
    assert_eq!(sts["metadata"]["ownerReferences"][0]["uid"], "u-1");
    assert_eq!(sts["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(sts["spec"]["selector"]["matchLabels"], json!({"weir.dev/job": "fraud", "weir.dev/slot": "green"}));
    assert_eq!(sts["spec"]["serviceName"], "fraud-green-peers");
    assert_eq!(sts["spec"]["template"]["metadata"]["labels"]["weir.dev/slot"], "green");
    assert_eq!(sts["spec"]["template"]["spec"]["containers"][0]["image"], "weir:2");
    assert_eq!(env(sts, "WEIR_JOB_ID").as_deref(), Some("j-new"));
    assert_eq!(env(sts, "WEIR_CHECKPOINT_URL").as_deref(), Some("s3://b/jobs/fraud/j-new"), "its own checkpoint prefix");
    assert_eq!(env(sts, "WEIR_RESTORE_FROM").as_deref(), Some("s3://b/jobs/fraud/savepoints/sp-j1-1"));
    assert_eq!(env(sts, "WEIR_PEERS").as_deref(), Some("fraud-green-{ordinal}.fraud-green-peers.{namespace}.svc:6121"));
    let peers = &find(&calls, "PATCH", "/services/fraud-green-peers").body;
    assert_eq!(peers["spec"]["selector"], json!({"weir.dev/job": "fraud", "weir.dev/slot": "green"}));
    assert_eq!(peers["metadata"]["ownerReferences"][0]["uid"], "u-1");
    let own_rest = &find(&calls, "PATCH", "/services/fraud-green-rest").body;
    assert_eq!(own_rest["spec"]["selector"]["statefulset.kubernetes.io/pod-name"], "fraud-green-0");
    let cm = &find(&calls, "PATCH", "/configmaps/fraud-green-job").body;
    assert_eq!(cm["metadata"]["ownerReferences"][0]["uid"], "u-1");
    let vols = sts["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    assert!(vols.iter().any(|v| v["configMap"]["name"] == "fraud-green-job"));
    // The savepoint was followed (not triggered again), and nothing was deleted.
    assert!(blue_rt.savepoint_requests.lock().unwrap().is_empty());
    assert!(!calls.iter().any(|c| c.method == "DELETE"));
    let reasons: Vec<&str> = calls.iter().filter(|c| c.path.ends_with("/events")).filter_map(|c| c.body["reason"].as_str()).collect();
    assert!(reasons.contains(&"GreenDeploying"), "{reasons:?}");
    assert_rbac(&calls);
}

#[tokio::test]
async fn blue_green_switch_points_the_rest_service_at_green_and_deletes_blue() {
    let dep = json!({"jobId": "j1", "generation": 1, "spec": bg_spec("weir:1").to_string(), "deployedAt": 1});
    let t = bg_transition(json!({"jobId": "j-new", "restoreFrom": "s3://b/jobs/fraud/savepoints/sp-j1-1",
                                 "savepointTarget": "s3://b/jobs/fraud/savepoints/sp-j1-2", "savepointTrigger": "sp-j1-2"}));
    let job = bg_streamjob(json!({"stage": "BlueGreenSwitching", "deployed": dep, "lastStable": dep, "jobId": "j1", "replicas": 2, "transition": t}));
    let (client, calls) = mock_kube_slots(job.clone(), Some(sts_json("fraud")), Some(sts_json("fraud-green")), None);
    let (blue, _) = stub_job("j1", JobState::Finished, Some("s3://b/jobs/fraud/savepoints/sp-j1-2")).await;
    let (green, _) = stub_job("j-new", JobState::Running, None).await;
    let obj: StreamJob = serde_json::from_value(job).unwrap();
    reconcile(Arc::new(obj), context_slots(client, blue, green)).await.expect("reconcile");
    let calls = calls.lock().unwrap().clone();
    let status = &find(&calls, "PATCH", "/streamjobs/fraud/status").body["status"];
    assert_eq!(status["stage"], "BlueGreenRetiring");
    assert_eq!((status["deployed"]["jobId"].as_str(), status["deployed"]["slot"].as_str()), (Some("j-new"), Some("green")));
    assert_eq!((status["jobId"].as_str(), status["activeSlot"].as_str()), (Some("j-new"), Some("green")));
    assert_eq!(status["lastSavepoint"]["url"], "s3://b/jobs/fraud/savepoints/sp-j1-2");
    assert_eq!(status["lastBlueGreen"]["outcome"], "Switched");
    // <job>-rest now selects green's pod 0.
    let rest = &find(&calls, "PATCH", "/services/fraud-rest").body;
    assert_eq!(rest["spec"]["selector"], json!({"weir.dev/job": "fraud", "weir.dev/slot": "green", "statefulset.kubernetes.io/pod-name": "fraud-green-0"}));
    let sts = &find(&calls, "PATCH", "/statefulsets/fraud-green").body;
    assert_eq!(env(sts, "WEIR_JOB_ID").as_deref(), Some("j-new"));
    assert!(!calls.iter().any(|c| c.method == "PATCH" && c.path.ends_with("/statefulsets/fraud")), "blue is not applied any more");
    // Blue's objects are deleted, its StatefulSet in the foreground (its pods first).
    let deleted: Vec<String> = calls.iter().filter(|c| c.method == "DELETE").map(|c| c.path.clone()).collect();
    assert_eq!(
        deleted,
        [
            "/apis/apps/v1/namespaces/prod/statefulsets/fraud",
            "/api/v1/namespaces/prod/services/fraud-peers",
            "/api/v1/namespaces/prod/services/fraud-blue-rest",
            "/api/v1/namespaces/prod/configmaps/fraud-job",
        ]
    );
    assert_eq!(find(&calls, "DELETE", "/statefulsets/fraud").body["propagationPolicy"], "Foreground");
    let status_at = calls.iter().position(|c| c.path.ends_with("/status")).unwrap();
    let delete_at = calls.iter().position(|c| c.method == "DELETE").unwrap();
    assert!(status_at < delete_at, "write-ahead");
    let reasons: Vec<&str> = calls.iter().filter(|c| c.path.ends_with("/events")).filter_map(|c| c.body["reason"].as_str()).collect();
    assert!(reasons.contains(&"Switched"), "{reasons:?}");
    assert_rbac(&calls);
}
