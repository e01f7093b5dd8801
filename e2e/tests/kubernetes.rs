//! Against a real Kubernetes cluster (when `KUBECONFIG` points at one; skipped with a
//! message otherwise): install the CRD and the operator, apply the minimal StreamJob,
//! wait until it runs, change its parallelism, and see a savepoint and the new replicas,
//! with the new deployment restored from that savepoint.
//!
//! Needs: `kubectl` on PATH, a cluster that can pull `WEIR_E2E_IMAGE` (the runtime image)
//! and `WEIR_E2E_OPERATOR_IMAGE`, and S3-compatible storage reachable from the pods, given
//! as `WEIR_E2E_STORAGE` (default `file:///tmp/weir-e2e`, enough for a single-node cluster).

use std::process::Command;
use std::time::{Duration, Instant};

fn kubectl(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut cmd = Command::new("kubectl");
    cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(std::process::Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|e| format!("kubectl: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
    }
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<String>) -> String {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_secs(3));
    }
}

fn jsonpath(ns: &str, path: &str) -> Option<String> {
    kubectl(&["-n", ns, "get", "streamjob", "fraud", "-o", &format!("jsonpath={{{path}}}")], None).ok().filter(|s| !s.is_empty())
}

#[test]
fn streamjob_runs_and_rescales_with_a_savepoint() {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("skipped: KUBECONFIG is not set (this test needs a real Kubernetes cluster)");
        return;
    }
    if kubectl(&["version", "--request-timeout=5s"], None).is_err() {
        eprintln!("skipped: KUBECONFIG is set but no cluster answers");
        return;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let image = std::env::var("WEIR_E2E_IMAGE").unwrap_or_else(|_| "ghcr.io/weir/weir:0.1.0".into());
    let operator_image = std::env::var("WEIR_E2E_OPERATOR_IMAGE").unwrap_or_else(|_| "ghcr.io/weir/weir-operator:0.1.0".into());
    let storage = std::env::var("WEIR_E2E_STORAGE").unwrap_or_else(|_| "file:///tmp/weir-e2e".into());
    let ns = format!("weir-e2e-{}", std::process::id());

    kubectl(&["apply", "--server-side", "-f", &format!("{root}/crds/streamjobs.weir.dev.yaml")], None).expect("install CRD");
    kubectl(&["create", "namespace", &ns], None).expect("namespace");
    let operator = format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: weir-operator, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: weir-operator, namespace: {ns}}}
rules:
  - {{apiGroups: [weir.dev], resources: [streamjobs], verbs: [list, watch, patch]}}
  - {{apiGroups: [weir.dev], resources: [streamjobs/status], verbs: [patch]}}
  - {{apiGroups: [apps], resources: [statefulsets], verbs: [get, list, watch, patch]}}
  - {{apiGroups: [""], resources: [services, configmaps], verbs: [list, watch, patch]}}
  - {{apiGroups: [events.k8s.io], resources: [events], verbs: [create, patch]}}
  - {{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: weir-operator, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: weir-operator}}
subjects: [{{kind: ServiceAccount, name: weir-operator, namespace: {ns}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: weir-operator, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: weir-operator}}}}
  template:
    metadata: {{labels: {{app: weir-operator}}}}
    spec:
      serviceAccountName: weir-operator
      containers:
        - name: operator
          image: {operator_image}
          args: [run, --namespaces, {ns}, --lease-namespace, {ns}]
"#
    );
    kubectl(&["apply", "-f", "-"], Some(&operator)).expect("install operator");

    let minimal = std::fs::read_to_string(format!("{root}/examples/streamjobs/minimal.yaml")).expect("minimal example");
    let job = minimal
        .replace("ghcr.io/weir/weir:0.1.0", &image)
        .replace("s3://weir-state/jobs/fraud", &storage)
        .replace("    secretRef:\n      name: weir-s3\n", "");
    kubectl(&["-n", &ns, "apply", "-f", "-"], Some(&job)).expect("apply minimal job");

    let phase_is = |p: &'static str| {
        let ns = ns.clone();
        move || jsonpath(&ns, ".status.phase").filter(|s| s == p)
    };
    wait_for("phase Running", Duration::from_secs(300), phase_is("Running"));
    let first_id = jsonpath(&ns, ".status.jobId").expect("job id");

    kubectl(&["-n", &ns, "scale", "streamjob", "fraud", "--replicas=3"], None).expect("scale");
    wait_for("a savepoint", Duration::from_secs(300), || jsonpath(&ns, ".status.lastSavepoint.url"));
    wait_for("phase Running after rescale", Duration::from_secs(300), || {
        jsonpath(&ns, ".status.phase").filter(|s| s == "Running").and(jsonpath(&ns, ".status.jobId")).filter(|id| *id != first_id)
    });
    let ready = wait_for("3 ready pods", Duration::from_secs(300), || {
        kubectl(&["-n", &ns, "get", "statefulset", "fraud", "-o", "jsonpath={.status.readyReplicas}"], None).ok().filter(|r| r == "3")
    });
    assert_eq!(ready, "3");
    let sp = jsonpath(&ns, ".status.lastSavepoint.url").expect("savepoint");
    let restored = jsonpath(&ns, ".status.deployed.restoreFrom").expect("restored");
    assert_eq!(restored, sp, "the rescaled job restores from the rescale savepoint (state preserved)");

    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"], None);
}
