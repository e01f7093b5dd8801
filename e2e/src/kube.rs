//! Helpers of the Kubernetes end-to-end tests (`e2e/tests/kubernetes*.rs`): the cluster
//! (`KUBECONFIG`; on the k8s-harness that `./test.sh` starts, also the harness's logs and
//! the host's view of pods), the operator installed from the chart once per test binary
//! (`scripts/k8s/install-chart.sh`), kubectl wrappers, StreamJob status getters, Events,
//! pods, `wait_for` that prints how long each transition took, diagnostics on failure,
//! and a runner that runs every scenario of a test binary at once, each in its own
//! namespace (the tests mostly wait on the cluster; libtest would run only as many as
//! there are cores).
//!
//! Scenarios print to stderr directly (`[scenario] ...` lines, not captured), and the
//! timing of each transition as `TIMING <scenario>: <what>: <seconds>s`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository root.
pub fn repo_root() -> PathBuf {
    manifest_dir().parent().expect("repo root").to_path_buf()
}

/// Writes a line to stderr, bypassing libtest's capture.
pub fn say(line: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{line}");
}

// ---------------------------------------------------------------- the cluster

/// What the tests run against.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The k8s-harness (`WEIR_E2E_CLUSTER=harness`): pods are host processes, files are
    /// shared with the host, pods reach the host at `host_ip`.
    pub harness: bool,
    /// IP of the host as pods see it (the harness bridge).
    pub host_ip: Option<String>,
    /// The k8s-harness script (for `logs`).
    pub harness_cmd: Option<String>,
    /// Image of the runtime and of the operator.
    pub image: String,
    pub operator_image: String,
    /// Release namespace of the operator.
    pub operator_ns: String,
}

/// The cluster, or `None` (with a loud message) when the tests cannot run here.
pub fn cluster() -> Option<&'static Cluster> {
    static C: OnceLock<Result<Cluster, String>> = OnceLock::new();
    let c = C.get_or_init(|| {
        if let Ok(why) = std::env::var("WEIR_E2E_SKIP") {
            return Err(format!("./test.sh could not start the k8s-harness: {why}"));
        }
        if std::env::var_os("KUBECONFIG").is_none() {
            return Err("KUBECONFIG is not set: run ./test.sh (starts the k8s-harness), or `eval \"$(scripts/k8s/harness.sh up)\"`, or point KUBECONFIG at a cluster".into());
        }
        if let Err(e) = kubectl(&["version", "--request-timeout=5s"]) {
            return Err(format!("KUBECONFIG is set but no cluster answers: {e}"));
        }
        let harness = std::env::var("WEIR_E2E_CLUSTER").is_ok_and(|c| c == "harness");
        Ok(Cluster {
            harness,
            host_ip: std::env::var("WEIR_E2E_HOST_IP").ok(),
            harness_cmd: std::env::var("WEIR_K8S_HARNESS").ok(),
            image: std::env::var("WEIR_E2E_IMAGE").unwrap_or_else(|_| "ghcr.io/weir/weir:e2e".into()),
            operator_image: std::env::var("WEIR_E2E_OPERATOR_IMAGE").unwrap_or_else(|_| "ghcr.io/weir/weir-operator:e2e".into()),
            operator_ns: std::env::var("WEIR_E2E_OPERATOR_NAMESPACE").unwrap_or_else(|_| "weir-system".into()),
        })
    });
    match c {
        Ok(c) => Some(c),
        Err(why) => {
            say(&format!("\n**********\nSKIPPED: the Kubernetes e2e tests did not run: {why}\n**********\n"));
            None
        }
    }
}

/// Installs the chart (CRDs, RBAC, the operator Deployment) once per test binary and
/// waits for the operator.
pub fn ensure_operator(c: &Cluster) {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let r = DONE.get_or_init(|| {
        let t0 = Instant::now();
        let script = repo_root().join("scripts/k8s/install-chart.sh");
        let out = Command::new(&script)
            .args(["--namespace", &c.operator_ns, "--operator-image", &c.operator_image])
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return Err(format!("installing the chart failed:\n{text}"));
        }
        say(&format!("operator installed: {}", text.trim()));
        say(&format!("TIMING install: chart install to operator available: {:.1}s", t0.elapsed().as_secs_f64()));
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------- kubectl

/// kubectl with `args`: stdout, or the error with stderr.
pub fn kubectl(args: &[&str]) -> Result<String, String> {
    kubectl_in(args, None)
}

/// kubectl with `args` and `stdin`.
pub fn kubectl_in(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new("kubectl");
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| format!("kubectl: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// `kubectl get ... -o json`, parsed.
pub fn get_json(args: &[&str]) -> Option<Value> {
    let mut a: Vec<&str> = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    kubectl(&a).ok().and_then(|s| serde_json::from_str(&s).ok())
}

/// Reads `path` (dot-separated keys, numbers index arrays) out of `v`.
pub fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        cur = match part.parse::<usize>() {
            Ok(i) if cur.is_array() => cur.get(i)?,
            _ => cur.get(part)?,
        };
    }
    if cur.is_null() { None } else { Some(cur) }
}

/// `at` as a string (numbers are printed).
pub fn at_str(v: &Value, path: &str) -> Option<String> {
    at(v, path).map(|x| match x {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

// ---------------------------------------------------------------- a scenario's namespace

/// One scenario: its namespace (created fresh, deleted at the end unless
/// `WEIR_E2E_KEEP=1`), a scratch dir on the host for file:// storage (the harness
/// shares the host's /tmp with pods), and its log prefix.
pub struct Ctx {
    pub name: String,
    pub ns: String,
    pub cluster: &'static Cluster,
    t0: Instant,
}

impl Ctx {
    fn new(name: &str, cluster: &'static Cluster) -> Ctx {
        // namespace: a DNS label
        let short: String = name.replace('_', "-").chars().take(40).collect();
        let ns = format!("e2e-{}-{}", short.trim_end_matches('-'), std::process::id() % 100000);
        let _ = kubectl(&["delete", "namespace", &ns, "--wait=true", "--timeout=60s", "--ignore-not-found"]);
        kubectl(&["create", "namespace", &ns]).unwrap_or_else(|e| panic!("creating namespace {ns}: {e}"));
        let ctx = Ctx { name: name.to_string(), ns, cluster, t0: Instant::now() };
        let _ = std::fs::remove_dir_all(ctx.dir());
        std::fs::create_dir_all(ctx.dir()).expect("scratch dir");
        ctx
    }

    /// Prints `[scenario] msg`.
    pub fn log(&self, msg: &str) {
        say(&format!("[{} +{:>5.1}s] {msg}", self.name, self.t0.elapsed().as_secs_f64()));
    }

    /// Prints a timing line for the README.
    pub fn timing(&self, what: &str, d: Duration) {
        say(&format!("TIMING {}: {what}: {:.1}s", self.name, d.as_secs_f64()));
    }

    /// The host directory of this scenario (also the pods' view on the harness).
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/weir-e2e/{}", self.ns))
    }

    /// Checkpoint storage URL for job `job`: `WEIR_E2E_STORAGE/<ns>/<job>` or, by
    /// default, a file:// URL under `dir()`.
    pub fn storage(&self, job: &str) -> String {
        match std::env::var("WEIR_E2E_STORAGE") {
            Ok(s) => format!("{}/{}/{job}", s.trim_end_matches('/'), self.ns),
            Err(_) => format!("file://{}/{job}", self.dir().display()),
        }
    }

    /// Skips (returns false, with a message) unless on the harness, for scenarios that
    /// need the host's view of pods (their processes, files, logs, the bridge IP).
    pub fn needs_harness(&self) -> bool {
        if !self.cluster.harness {
            self.log("SKIPPED: needs the k8s-harness (pods as host processes sharing /tmp); this cluster is not one");
        }
        self.cluster.harness
    }

    /// `kubectl -n <ns> args`.
    pub fn k(&self, args: &[&str]) -> Result<String, String> {
        let mut a = vec!["-n", self.ns.as_str()];
        a.extend_from_slice(args);
        kubectl(&a)
    }

    /// `kubectl -n <ns> apply -f -` with `yaml`.
    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        kubectl_in(&["-n", &self.ns, "apply", "-f", "-"], Some(yaml))
    }

    /// Applies `yaml`, panicking with kubectl's message when refused.
    pub fn must_apply(&self, yaml: &str) {
        if let Err(e) = self.apply(yaml) {
            panic!("apply refused: {e}\n{yaml}");
        }
    }

    /// A StreamJob handle.
    pub fn job(&self, name: &str) -> Job<'_> {
        Job { ctx: self, name: name.to_string() }
    }

    /// Polls `check` every `every` until it returns `Some`; prints how long it took
    /// (and, on timeout, panics with `what` and the StreamJob `job`'s state).
    pub fn wait_for<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                self.log(&format!("ok: {what} ({:.1}s)", start.elapsed().as_secs_f64()));
                return v;
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(700));
        }
    }

    /// The pods of job `job`: (name, phase, ready, restarts, reason, podIP).
    pub fn pods(&self, job: &str) -> Vec<PodInfo> {
        let Some(v) = get_json(&["-n", &self.ns, "pods", "-l", &format!("weir.dev/job={job}")]) else { return vec![] };
        let mut out: Vec<PodInfo> = v["items"].as_array().into_iter().flatten().map(PodInfo::from_json).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Events in this namespace about object `name` (all kinds), oldest first.
    pub fn events(&self, name: &str) -> Vec<EventInfo> {
        let Some(v) = get_json(&["-n", &self.ns, "events", "--field-selector", &format!("involvedObject.name={name}")]) else { return vec![] };
        let mut out: Vec<EventInfo> = v["items"].as_array().into_iter().flatten().map(EventInfo::from_json).collect();
        out.sort_by(|a, b| a.time.cmp(&b.time));
        out
    }

    /// Every Event of the namespace.
    pub fn all_events(&self) -> Vec<EventInfo> {
        let Some(v) = get_json(&["-n", &self.ns, "events"]) else { return vec![] };
        v["items"].as_array().into_iter().flatten().map(EventInfo::from_json).collect()
    }

    /// Fails when an Event of this namespace says `forbidden` (the operator's RBAC).
    pub fn assert_no_forbidden_events(&self) {
        let bad: Vec<String> = self.all_events().into_iter().filter(|e| is_rbac_denial(&e.message)).map(|e| e.to_string()).collect();
        assert!(bad.is_empty(), "Events say forbidden (RBAC of the chart is missing a permission):\n{}", bad.join("\n"));
    }

    /// The pids (on the host) of the processes of pod `pod` of this namespace: the
    /// harness runs pods as host processes; the runtime's have WEIR_POD_NAME and
    /// WEIR_NAMESPACE in their environment.
    pub fn pod_pids(&self, pod: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc") else { return out };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
            let vars: HashSet<&[u8]> = env.split(|b| *b == 0).collect();
            if vars.contains(format!("WEIR_POD_NAME={pod}").as_bytes()) && vars.contains(format!("WEIR_NAMESPACE={}", self.ns).as_bytes()) {
                out.push(pid);
            }
        }
        out
    }

    /// Sends `sig` (e.g. "KILL", "STOP", "CONT") to every process of pod `pod`.
    pub fn signal_pod(&self, pod: &str, sig: &str) -> usize {
        let pids = self.pod_pids(pod);
        for p in &pids {
            let _ = Command::new("kill").args([&format!("-{sig}"), &p.to_string()]).status();
        }
        pids.len()
    }

    /// A container's log on the harness (`k8s-harness logs`).
    pub fn pod_log(&self, ns: &str, pod: &str) -> String {
        harness_log(self.cluster, ns, pod)
    }

    /// What a failing scenario prints: the StreamJobs (describe), Events, pods, the
    /// operator's log lines about this namespace and the tails of the job pods' logs.
    pub fn dump(&self) {
        let mut s = String::new();
        s.push_str(&format!("\n======== diagnostics of {} (namespace {}) ========\n", self.name, self.ns));
        s.push_str(&self.k(&["describe", "streamjobs"]).unwrap_or_else(|e| e));
        s.push_str("\n-------- status (yaml)\n");
        s.push_str(&self.k(&["get", "streamjobs", "-o", "yaml"]).unwrap_or_else(|e| e));
        s.push_str("\n-------- events\n");
        s.push_str(&self.k(&["get", "events", "--sort-by=.lastTimestamp"]).unwrap_or_else(|e| e));
        s.push_str("\n-------- pods\n");
        s.push_str(&self.k(&["get", "pods,statefulsets,services,configmaps", "-o", "wide"]).unwrap_or_else(|e| e));
        s.push_str("\n-------- operator log (lines naming this namespace, last 150)\n");
        let op = operator_log(self.cluster);
        let lines: Vec<&str> = op.lines().filter(|l| l.contains(&self.ns)).collect();
        for l in &lines[lines.len().saturating_sub(150)..] {
            s.push_str(l);
            s.push('\n');
        }
        if self.cluster.harness {
            if let Some(v) = get_json(&["-n", &self.ns, "pods"]) {
                for p in v["items"].as_array().into_iter().flatten() {
                    let name = p["metadata"]["name"].as_str().unwrap_or_default();
                    let log = self.pod_log(&self.ns, name);
                    let lines: Vec<&str> = log.lines().collect();
                    s.push_str(&format!("\n-------- pod {name}: last 40 log lines\n"));
                    for l in &lines[lines.len().saturating_sub(40)..] {
                        s.push_str(l);
                        s.push('\n');
                    }
                }
            }
        }
        s.push_str("======== end of diagnostics ========\n");
        say(&s);
    }

    fn cleanup(&self, passed: bool) {
        if std::env::var("WEIR_E2E_KEEP").is_ok_and(|v| v == "1") || (!passed && std::env::var("WEIR_E2E_KEEP").is_ok_and(|v| v == "failed")) {
            self.log(&format!("keeping namespace {} (WEIR_E2E_KEEP)", self.ns));
            return;
        }
        // StreamJobs go first without waiting for their final savepoints (their
        // finalizers are the operator's business; the namespace deletion waits).
        let _ = self.k(&["delete", "streamjobs", "--all", "--wait=false"]);
        let _ = kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
    }
}

/// A pod as the tests see it.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub name: String,
    pub phase: String,
    pub ready: bool,
    pub restarts: i64,
    /// Reason of a failed pod or waiting/terminated container (e.g. ImageNotMapped).
    pub reason: String,
    pub ip: String,
    pub job_id: String,
}

impl PodInfo {
    fn from_json(p: &Value) -> PodInfo {
        let cs = &p["status"]["containerStatuses"][0];
        let reason = [p["status"]["reason"].as_str(), cs["state"]["waiting"]["reason"].as_str(), cs["state"]["terminated"]["reason"].as_str()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(",");
        PodInfo {
            name: p["metadata"]["name"].as_str().unwrap_or_default().into(),
            phase: p["status"]["phase"].as_str().unwrap_or_default().into(),
            ready: cs["ready"].as_bool().unwrap_or(false),
            restarts: cs["restartCount"].as_i64().unwrap_or(0),
            reason,
            ip: p["status"]["podIP"].as_str().unwrap_or_default().into(),
            job_id: p["metadata"]["labels"]["weir.dev/job-id"].as_str().unwrap_or_default().into(),
        }
    }
}

/// An Event as the tests see it.
#[derive(Debug, Clone)]
pub struct EventInfo {
    pub kind: String,
    pub reason: String,
    pub message: String,
    pub object: String,
    pub time: String,
    pub count: i64,
}

impl EventInfo {
    fn from_json(e: &Value) -> EventInfo {
        let time = [e["lastTimestamp"].as_str(), e["eventTime"].as_str(), e["metadata"]["creationTimestamp"].as_str()].into_iter().flatten().next().unwrap_or_default();
        EventInfo {
            kind: e["type"].as_str().unwrap_or_default().into(),
            reason: e["reason"].as_str().unwrap_or_default().into(),
            message: e["message"].as_str().or(e["note"].as_str()).unwrap_or_default().into(),
            object: format!("{}/{}", e["involvedObject"]["kind"].as_str().unwrap_or_default(), e["involvedObject"]["name"].as_str().unwrap_or_default()),
            time: time.into(),
            count: e["count"].as_i64().unwrap_or(1),
        }
    }
}

impl std::fmt::Display for EventInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {} {}: {}", self.time, self.kind, self.object, self.reason, self.message)
    }
}

// ---------------------------------------------------------------- StreamJobs

/// A StreamJob of a scenario.
pub struct Job<'a> {
    pub ctx: &'a Ctx,
    pub name: String,
}

impl Job<'_> {
    /// The object, or `None` when it does not exist (any more).
    pub fn get(&self) -> Option<Value> {
        get_json(&["-n", &self.ctx.ns, "streamjob", &self.name])
    }

    /// A field of the object (e.g. `status.phase`), as a string.
    pub fn field(&self, path: &str) -> Option<String> {
        self.get().and_then(|v| at_str(&v, path))
    }

    pub fn phase(&self) -> Option<String> {
        self.field("status.phase")
    }

    /// Condition `type` of the status: (status, reason, message).
    pub fn condition(&self, v: &Value, ty: &str) -> Option<(String, String, String)> {
        at(v, "status.conditions")?.as_array()?.iter().find(|c| c["type"] == ty).map(|c| {
            (c["status"].as_str().unwrap_or_default().into(), c["reason"].as_str().unwrap_or_default().into(), c["message"].as_str().unwrap_or_default().into())
        })
    }

    /// Events about this StreamJob.
    pub fn events(&self) -> Vec<EventInfo> {
        self.ctx.events(&self.name).into_iter().filter(|e| e.object.starts_with("StreamJob/")).collect()
    }

    /// Waits until the status satisfies `f`, printing the phases it went through;
    /// returns the object. Times the whole wait under `what`.
    pub fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Value) -> bool) -> Value {
        let start = Instant::now();
        let mut seen = String::new();
        loop {
            let v = self.get();
            if let Some(v) = &v {
                let p = format!("{}/{}", at_str(v, "status.phase").unwrap_or_default(), at_str(v, "status.stage").unwrap_or_default());
                if !seen.ends_with(&p) {
                    if !seen.is_empty() {
                        seen.push_str(" -> ");
                    }
                    seen.push_str(&p);
                }
                if f(v) {
                    self.ctx.log(&format!("ok: {what} after {:.1}s (phase/stage: {seen})", start.elapsed().as_secs_f64()));
                    return v.clone();
                }
            }
            if start.elapsed() > timeout {
                let msg = v.as_ref().and_then(|v| at_str(v, "status.message")).unwrap_or_default();
                panic!("timed out after {timeout:?} waiting for {what} (phase/stage: {seen}; message: {msg})");
            }
            std::thread::sleep(Duration::from_millis(700));
        }
    }

    /// Waits for phase Running with job state RUNNING and a job id other than `not`;
    /// returns the object.
    pub fn wait_running(&self, what: &str, timeout: Duration, not: Option<&str>) -> Value {
        self.wait(what, timeout, |v| {
            at_str(v, "status.phase").as_deref() == Some("Running")
                && at_str(v, "status.jobState").as_deref() == Some("RUNNING")
                && at(v, "status.transition").is_none()
                && not.is_none_or(|old| at_str(v, "status.jobId").as_deref().is_some_and(|id| id != old))
        })
    }

    /// `kubectl patch streamjob --type merge -p <json>`.
    pub fn patch(&self, json: &str) {
        self.ctx.k(&["patch", "streamjob", &self.name, "--type", "merge", "-p", json]).unwrap_or_else(|e| panic!("patch {json}: {e}"));
    }
}

// ---------------------------------------------------------------- logs

fn harness_log(c: &Cluster, ns: &str, pod: &str) -> String {
    let Some(h) = &c.harness_cmd else { return String::new() };
    Command::new(h).args(["logs", "-n", ns, pod]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

/// The operator's log: on the harness every operator pod's log file, including pods
/// deleted since (the harness keeps their files); elsewhere `kubectl logs`.
pub fn operator_log(c: &Cluster) -> String {
    if c.harness {
        if let Ok(home) = std::env::var("K8S_HARNESS_HOME") {
            let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(&home).join("logs"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{}_", c.operator_ns)) && n.ends_with("_operator.log")))
                .collect();
            files.sort();
            return files.iter().map(|f| std::fs::read_to_string(f).unwrap_or_default()).collect::<Vec<_>>().join("\n");
        }
    }
    kubectl(&["-n", &c.operator_ns, "logs", "-l", "app.kubernetes.io/component=operator", "--tail=-1", "--prefix"]).unwrap_or_default()
}

/// The operator's pod names (running ones).
pub fn operator_pods(c: &Cluster) -> Vec<String> {
    get_json(&["-n", &c.operator_ns, "pods", "-l", "app.kubernetes.io/component=operator"])
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Lines of the operator log that mention `forbidden` (RBAC denials).
pub fn forbidden_lines(log: &str) -> Vec<String> {
    log.lines().filter(|l| is_rbac_denial(l)).map(str::to_string).collect()
}

/// An authorization refusal (`... is forbidden: User "..." cannot <verb> resource ...`, the
/// API server's RBAC wording),
/// not the other 403s a real API server gives (a namespace being terminated refuses
/// new Events with "forbidden" too).
pub fn is_rbac_denial(line: &str) -> bool {
    let l = line.to_lowercase();
    l.contains("is forbidden: user \"") && l.contains("\" cannot ")
}

// ---------------------------------------------------------------- files

/// Savepoint directories under `<storage dir>/savepoints/` that hold a `_metadata`.
pub fn savepoints_on_disk(storage_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(storage_dir.join("savepoints"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("_metadata").exists())
        .collect();
    out.sort();
    out
}

/// The local path of a `file://` URL.
pub fn file_path(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").unwrap_or(url))
}

// ---------------------------------------------------------------- common StreamJobs


/// A fraud-detection StreamJob: `rate` events/s, checkpoints every second to the
/// scenario's storage, short rollout timeouts; `extra` = more spec lines (YAML, at the
/// spec's indentation; a `rollout:` there replaces the default one).
pub fn fraud(ctx: &Ctx, name: &str, parallelism: u32, rate: u32, extra: &str) -> String {
    let mut spec = format!(
        "job:\n  builtin: fraud-detection\n  params:\n    rate: {rate}\nparallelism: {parallelism}\ncheckpointing:\n  interval: 1s\n  storage: {}\n",
        ctx.storage(name)
    );
    if !extra.contains("rollout:") {
        spec.push_str("rollout:\n  readinessTimeout: 60s\n  savepointTimeout: 30s\n  shutdownTimeout: 30s\n");
    }
    spec.push_str(extra);
    streamjob_yaml(name, &ctx.cluster.image, &spec)
}


/// Deploys `yaml` (StreamJob `name`) and waits for Running; prints apply->Running.
pub fn deploy(ctx: &Ctx, name: &str, yaml: &str) -> Value {
    let t0 = Instant::now();
    ctx.must_apply(yaml);
    let v = ctx.job(name).wait_running("apply -> Running", Duration::from_secs(180), None);
    ctx.timing("apply -> Running", t0.elapsed());
    v
}

/// Waits for a completed checkpoint of the current deployment newer than `after`.
pub fn wait_checkpoint(ctx: &Ctx, name: &str, after: Option<i64>) -> Value {
    ctx.job(name).wait(&format!("a completed checkpoint of the current deployment (after id {after:?})"), Duration::from_secs(60), |v| {
        at(v, "status.lastCheckpoint").is_some()
            && at_str(v, "status.lastCheckpoint.jobId") == at_str(v, "status.jobId")
            && after.is_none_or(|a| at(v, "status.lastCheckpoint.id").and_then(Value::as_i64).unwrap_or(0) > a)
    })
}

pub fn savepoint_exists(url: &str) -> bool {
    !url.starts_with("file://") || file_path(url).join("_metadata").exists()
}


// ---------------------------------------------------------------- the runner

pub type Scenario = fn(&Ctx);

struct Runner {
    results: Mutex<HashMap<&'static str, Option<Result<(), String>>>>,
    done: Condvar,
}

fn runner() -> &'static Arc<Runner> {
    static R: OnceLock<Arc<Runner>> = OnceLock::new();
    R.get_or_init(|| Arc::new(Runner { results: Mutex::new(HashMap::new()), done: Condvar::new() }))
}

/// The scenario names libtest will run, from this process's arguments (filters,
/// `--exact`, `--skip`), as far as they can be told.
fn selected(all: &[(&'static str, Scenario)]) -> Vec<&'static str> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let mut exact = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "--exact" => exact = true,
            "--skip" => {
                if let Some(s) = args.get(i + 1) {
                    skips.push(s.clone());
                }
                i += 1;
            }
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" | "--report-time" | "--shuffle-seed" => i += 1,
            s if s.starts_with('-') => {}
            s => filters.push(s.to_string()),
        }
        i += 1;
    }
    let matches = |name: &str, f: &str| if exact { name == f } else { name.contains(f) };
    all.iter()
        .map(|(n, _)| *n)
        .filter(|n| filters.is_empty() || filters.iter().any(|f| matches(n, f)))
        .filter(|n| !skips.iter().any(|s| matches(n, s)))
        .collect()
}

fn start(name: &'static str, f: Scenario, cluster: &'static Cluster, slots: Arc<(Mutex<usize>, Condvar)>) {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            {
                let (m, cv) = &*slots;
                let mut free = m.lock().unwrap();
                while *free == 0 {
                    free = cv.wait(free).unwrap();
                }
                *free -= 1;
            }
            let t0 = Instant::now();
            let result = (|| {
                ensure_operator(cluster);
                let ctx = Ctx::new(name, cluster);
                ctx.log(&format!("namespace {}", ctx.ns));
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    f(&ctx);
                    ctx.assert_no_forbidden_events();
                }));
                let r = r.map_err(|p| p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "panicked".into()));
                if let Err(e) = &r {
                    ctx.log(&format!("FAILED: {e}"));
                    ctx.dump();
                }
                ctx.cleanup(r.is_ok());
                r
            })();
            say(&format!("[{name}] finished in {:.1}s: {}", t0.elapsed().as_secs_f64(), if result.is_ok() { "ok" } else { "FAILED" }));
            {
                let (m, cv) = &*slots;
                *m.lock().unwrap() += 1;
                cv.notify_all();
            }
            let r = runner();
            r.results.lock().unwrap_or_else(|e| e.into_inner()).insert(name, Some(result));
            r.done.notify_all();
        })
        .expect("spawn scenario thread");
}

/// Runs scenario `name` of `all`: the first call starts every selected scenario
/// (at most `WEIR_E2E_PARALLEL` at a time, default 8), each call waits for its own.
pub fn run(name: &'static str, all: &'static [(&'static str, Scenario)]) {
    let Some(cluster) = cluster() else { return };
    let r = runner();
    {
        let mut results = r.results.lock().unwrap_or_else(|e| e.into_inner());
        if results.is_empty() {
            let parallel: usize = std::env::var("WEIR_E2E_PARALLEL").ok().and_then(|p| p.parse().ok()).unwrap_or(8).max(1);
            let slots = Arc::new((Mutex::new(parallel), Condvar::new()));
            let mut names = selected(all);
            if !names.contains(&name) {
                names.push(name);
            }
            say(&format!("running {} Kubernetes scenario(s), {parallel} at a time: {}", names.len(), names.join(", ")));
            for n in names {
                let f = all.iter().find(|(x, _)| *x == n).map(|(_, f)| *f).expect("scenario");
                results.insert(n, None);
                start(n, f, cluster, slots.clone());
            }
            STARTED_SLOTS.set(slots).ok();
        } else if !results.contains_key(name) {
            let f = all.iter().find(|(x, _)| *x == name).map(|(_, f)| *f).expect("scenario");
            results.insert(name, None);
            start(name, f, cluster, STARTED_SLOTS.get().cloned().expect("slots"));
        }
    }
    let res = {
        let mut results = r.results.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(Some(res)) = results.get(name) {
                break res.clone();
            }
            results = r.done.wait(results).unwrap_or_else(|e| e.into_inner());
        }
    };
    if let Err(e) = res {
        panic!("{name} failed: {e}");
    }
}

static STARTED_SLOTS: OnceLock<Arc<(Mutex<usize>, Condvar)>> = OnceLock::new();

/// Declares the scenarios of a test binary: one `#[test]` per scenario function of
/// module `$m`, all run at once by [`run`].
#[macro_export]
macro_rules! kube_scenarios {
    ($m:ident: $($name:ident),* $(,)?) => {
        static ALL_SCENARIOS: &[(&str, $crate::kube::Scenario)] = &[$((stringify!($name), $m::$name as $crate::kube::Scenario)),*];
        $(
            #[test]
            fn $name() {
                $crate::kube::run(stringify!($name), ALL_SCENARIOS);
            }
        )*
    };
}

/// A StreamJob manifest from parts (YAML text), for the tests.
pub fn streamjob_yaml(name: &str, image: &str, spec_rest: &str) -> String {
    let mut s = format!("apiVersion: weir.dev/v1alpha1\nkind: StreamJob\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n");
    for line in spec_rest.trim_matches('\n').lines() {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// Key/value pairs of `map` as a sorted list (for messages).
pub fn describe_map(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::is_rbac_denial;

    #[test]
    fn only_authorization_refusals_count_as_rbac_denials() {
        let rbac = r#"WARN reconcile failed error=cannot get StreamJob "fraud": ApiError: streamjobs.weir.dev "fraud" is forbidden: User "system:serviceaccount:weir-system:weir-weir-operator" cannot get resource "streamjobs" in API group "weir.dev""#;
        assert!(is_rbac_denial(rbac));
        let terminating = r#"WARN cannot publish event error=ApiError: events.events.k8s.io "fraud.1" is forbidden: unable to create new content in namespace x because it is being terminated"#;
        assert!(!is_rbac_denial(terminating));
    }
}

/// This package's directory: cargo's `CARGO_MANIFEST_DIR` at run time (the build's
/// value only as a fallback: a test binary built from another checkout carries that
/// checkout's path).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from)
}
