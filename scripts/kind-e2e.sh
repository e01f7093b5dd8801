#!/usr/bin/env bash
# Runs Weir's Kubernetes end-to-end tests (e2e/tests/kubernetes.rs) against a
# real cluster, the same steps as .github/workflows/kind-e2e.yml:
#
#   1. a cluster: the one KUBECONFIG (or the current kubectl context) names, or
#      a new kind cluster when none is reachable and `kind` is installed;
#   2. build the runtime and operator images (docker/*.Dockerfile) and load them
#      into kind (or push them to $WEIR_IMAGE_REGISTRY for any other cluster);
#   3. apply the CRDs, `helm upgrade --install` the chart (watching the namespace
#      weir-smoke only), wait for the operator;
#   4. the walkthrough (examples/walkthrough) in weir-smoke through the chart: the
#      S3-compatible store and its Secret, run, upgrade with a savepoint, rescale,
#      suspend/resume, delete, each step checked on the StreamJob's status;
#   5. cargo test -p weir-e2e --test kubernetes --test kubernetes_disruptive (the
#      tests install the chart with scripts/k8s/install-chart.sh, all namespaces);
#   6. on failure, dump the cluster's state into $WEIR_E2E_ARTIFACTS.
#
# Usage: scripts/kind-e2e.sh [--no-build] [--keep-cluster] [--no-tests]
# Environment:
#   KUBECONFIG               cluster to use (default: current context, else a new kind cluster)
#   KIND_CLUSTER_NAME        kind cluster to create/use (default weir-e2e)
#   WEIR_IMAGE_TAG           image tag (default e2e)
#   WEIR_IMAGE_REGISTRY      push images there instead of `kind load` (non-kind clusters)
#   WEIR_OPERATOR_NAMESPACE  namespace of the release (default weir-system)
#   WEIR_E2E_ARTIFACTS       where diagnostics go on failure (default target/e2e-artifacts)
#   HELM                     helm binary (default helm)
set -euo pipefail
cd "$(dirname "$0")/.."

build=1 keep=0 tests=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    --keep-cluster) keep=1 ;;
    --no-tests) tests=0 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "kind-e2e: unknown argument $arg" >&2; exit 2 ;;
  esac
done

cluster="${KIND_CLUSTER_NAME:-weir-e2e}"
tag="${WEIR_IMAGE_TAG:-e2e}"
registry="${WEIR_IMAGE_REGISTRY:-}"
ns="${WEIR_OPERATOR_NAMESPACE:-weir-system}"
artifacts="${WEIR_E2E_ARTIFACTS:-target/e2e-artifacts}"
helm="${HELM:-helm}"
prefix="${registry:-ghcr.io/weir}"; prefix="${prefix%/}"
runtime_image="$prefix/weir:$tag"
operator_image="$prefix/weir-operator:$tag"

log() { printf '\n=== kind-e2e: %s\n' "$*"; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "kind-e2e: $1 is required ($2)" >&2; exit 1; }; }

need kubectl "https://kubernetes.io/docs/tasks/tools/"
need "$helm" "https://helm.sh/docs/intro/install/"
need cargo "https://rustup.rs"
[ "$build" = 0 ] || need docker "a Docker engine builds the images"

# ---------------------------------------------------------------- 1. cluster
created=0
if kubectl version --request-timeout=5s >/dev/null 2>&1; then
  log "using the cluster of context $(kubectl config current-context)"
elif command -v kind >/dev/null 2>&1; then
  log "no reachable cluster: creating kind cluster $cluster"
  kind create cluster --name "$cluster" --wait 180s
  created=1
else
  echo "kind-e2e: no reachable cluster (KUBECONFIG=${KUBECONFIG:-unset}) and kind is not installed" >&2
  exit 1
fi
is_kind=0
case "$(kubectl config current-context)" in kind-*) is_kind=1; cluster="$(kubectl config current-context)"; cluster="${cluster#kind-}" ;; esac

cleanup() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    log "failed (exit $rc): collecting diagnostics into $artifacts"
    mkdir -p "$artifacts"
    kubectl get streamjobs -A -o yaml >"$artifacts/streamjobs.yaml" 2>&1 || true
    kubectl get all,configmaps,leases,networkpolicies -A -o wide >"$artifacts/resources.txt" 2>&1 || true
    kubectl get events -A --sort-by=.lastTimestamp >"$artifacts/events.txt" 2>&1 || true
    kubectl -n "$ns" logs -l app.kubernetes.io/component=operator --all-containers --prefix --tail=-1 >"$artifacts/operator.log" 2>&1 || true
    kubectl logs -A -l app.kubernetes.io/managed-by=weir-operator --all-containers --prefix --tail=2000 >"$artifacts/jobs.log" 2>&1 || true
  fi
  if [ "$created" = 1 ] && [ "$keep" = 0 ]; then
    log "deleting kind cluster $cluster"
    kind delete cluster --name "$cluster" || true
  fi
  exit "$rc"
}
trap cleanup EXIT

# ---------------------------------------------------------------- 2. images
if [ "$build" = 1 ]; then
  log "building $runtime_image and $operator_image"
  DOCKER_BUILDKIT=1 docker build -f docker/weir.Dockerfile -t "$runtime_image" .
  DOCKER_BUILDKIT=1 docker build -f docker/weir-operator.Dockerfile -t "$operator_image" .
fi
if [ -n "$registry" ]; then
  log "pushing the images to $registry"
  docker push "$runtime_image"
  docker push "$operator_image"
elif [ "$is_kind" = 1 ]; then
  log "loading the images into kind cluster $cluster"
  kind load docker-image "$runtime_image" "$operator_image" --name "$cluster"
else
  echo "kind-e2e: the cluster is not kind: set WEIR_IMAGE_REGISTRY to a registry it pulls from" >&2
  exit 1
fi

# ---------------------------------------------------------------- 3. operator
# The chart's operator watches only the smoke-test namespace: the Rust e2e tests
# install their own operator in namespaces of their own, and two operators must
# never reconcile the same StreamJob.
smoke_ns=weir-smoke
log "installing the CRDs and the chart (release weir in $ns, watching $smoke_ns)"
# Helm installs crds/ only on first install; apply them so an upgrade updates them.
kubectl apply --server-side --force-conflicts -f crds/
sed "s/weir-demo/$smoke_ns/g" examples/walkthrough/00-namespace.yaml | kubectl apply -f -
"$helm" upgrade --install weir charts/weir-operator \
  --namespace "$ns" --create-namespace \
  --set image.repository="$prefix/weir-operator" --set image.tag="$tag" \
  --set image.pullPolicy=IfNotPresent \
  --set operator.logLevel=debug --set operator.logFormat=text \
  --set "watchNamespaces={$smoke_ns}" \
  --set networkPolicy.enabled=true \
  --wait --timeout 5m
kubectl -n "$ns" rollout status deployment -l app.kubernetes.io/component=operator --timeout=180s
"$helm" test weir -n "$ns" --logs

# ---------------------------------------------------------------- 3b. server-side validation
# What ci/chart-check/check.sh validates offline, now by a real API server: every
# object the chart renders with its optional features (except the Prometheus
# Operator kinds, whose CRDs a bare cluster lacks), every example manifest, and
# every examples/invalid manifest must be refused.
log "server-side dry run of the rendered chart and the examples"
"$helm" lint --strict charts/weir-operator
"$helm" template weir charts/weir-operator -n "$ns" \
  --set replicaCount=2 --set podDisruptionBudget.enabled=true --set networkPolicy.enabled=true \
  --set "watchNamespaces={$smoke_ns}" \
  | kubectl apply --dry-run=server -f - >/dev/null
for f in examples/walkthrough/0*.yaml examples/streamjobs/*.yaml; do
  [ -e "$f" ] || continue
  case "$f" in *prometheus-adapter*) continue ;; esac   # its namespace (monitoring) may not exist
  sed "s/weir-demo/$smoke_ns/g" "$f" | kubectl apply --dry-run=server -n "$smoke_ns" -f - >/dev/null \
    || { echo "kind-e2e: the API server refuses $f" >&2; exit 1; }
done
for f in examples/invalid/*.yaml; do
  [ -e "$f" ] || continue
  grep -q '^# old:' "$f" && continue   # needs an update of an existing object
  if kubectl apply --dry-run=server -n "$smoke_ns" -f "$f" >/dev/null 2>&1; then
    echo "kind-e2e: the API server accepts $f, which must be refused" >&2; exit 1
  fi
done

# ---------------------------------------------------------------- 4. the walkthrough
# examples/walkthrough step by step in $smoke_ns, run by the chart-installed
# operator under the chart's RBAC, as the chart's job ServiceAccount, behind its
# NetworkPolicy: S3-compatible storage and its credentials Secret, the job, an
# upgrade through a savepoint, a rescale, suspend and resume, delete.
log "walkthrough in $smoke_ns: run, upgrade, rescale, suspend/resume, delete"
walk() { sed -e "s/weir-demo/$smoke_ns/g" -e "s#image: ghcr.io/weir/weir:0.1.0#image: $runtime_image#" "examples/walkthrough/$1"; }
walk 01-s3-credentials.yaml | kubectl apply -f -
walk 02-object-storage.yaml | kubectl apply -f -
kubectl -n "$smoke_ns" rollout status deployment/weir-s3 --timeout=180s
kubectl -n "$smoke_ns" wait --for=condition=complete job/weir-s3-create-bucket --timeout=180s
sj() { kubectl -n "$smoke_ns" get streamjob fraud -o jsonpath="{$1}" 2>/dev/null || true; }
# wait_for <what> <seconds> <command...>: poll until the command succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "kind-e2e: timed out after ${secs}s waiting for $what (phase: $(sj .status.phase), message: $(sj .status.message))" >&2
      kubectl -n "$smoke_ns" describe streamjob fraud >&2 || true
      return 1
    fi
    sleep 3
  done
  echo "ok: $what"
}
running() { [ "$(sj .status.phase)" = Running ] && [ "$(sj .status.jobState)" = RUNNING ]; }
running_new() { running && [ "$(sj .status.jobId)" != "$1" ]; }
ready_pods() { [ "$(kubectl -n "$smoke_ns" get statefulset fraud -o jsonpath='{.status.readyReplicas}' 2>/dev/null)" = "$1" ]; }
has() { [ -n "$(sj "$1")" ]; }

walk 03-streamjob.yaml | kubectl apply -f -                               # step 3: run
wait_for "fraud Running" 300 running
wait_for "a completed checkpoint" 180 has .status.lastCheckpoint.url
id=$(sj .status.jobId)
walk 04-upgrade.yaml | kubectl apply -f -                                 # step 4: upgrade (savepoint)
wait_for "upgrade: a new deployment running" 420 running_new "$id"
[ "$(sj .status.deployed.restoreFrom)" = "$(sj .status.lastSavepoint.url)" ] \
  || { echo "kind-e2e: the upgraded job did not restore from the upgrade's savepoint" >&2; exit 1; }
id=$(sj .status.jobId)
walk 05-rescale.yaml | kubectl apply -f -                                 # step 5: rescale to 4
wait_for "rescale: 4 pods running a new deployment" 420 eval 'running_new "$id" && ready_pods 4'
walk 07-suspend.yaml | kubectl apply -f -                                 # step 7: suspend
wait_for "suspended with a savepoint to resume from" 300 eval '[ "$(sj .status.phase)" = Suspended ] && has .status.resumeFrom'
resume_from=$(sj .status.resumeFrom)
walk 05-rescale.yaml | kubectl apply -f -                                 # ... and resume
wait_for "resumed" 420 running
[ "$(sj .status.deployed.restoreFrom)" = "$resume_from" ] \
  || { echo "kind-e2e: the resumed job did not restore from $resume_from" >&2; exit 1; }
kubectl -n "$smoke_ns" delete streamjob fraud --timeout=5m                # step 8: delete (final savepoint)
wait_for "pods gone" 180 eval '! kubectl -n "$smoke_ns" get pods -l weir.dev/job=fraud -o name | grep -q .'

# ---------------------------------------------------------------- 5. tests
if [ "$tests" = 1 ]; then
  # The tests install the chart themselves (scripts/k8s/install-chart.sh, watching all
  # namespaces, release weir in $ns): remove the walkthrough's release first, so that
  # two operators never share the Lease or a StreamJob.
  log "uninstalling the walkthrough's release; cargo test -p weir-e2e --test kubernetes --test kubernetes_disruptive"
  "$helm" uninstall weir -n "$ns" --wait --timeout 3m || true
  export WEIR_E2E_IMAGE="$runtime_image"
  export WEIR_E2E_OPERATOR_IMAGE="$operator_image"
  export WEIR_E2E_OPERATOR_NAMESPACE="$ns"
  export WEIR_E2E_CLUSTER=kind
  # Scenarios that need the k8s-harness (pods as host processes sharing /tmp) skip here.
  # WEIR_E2E_STORAGE: passed through when set (default of the tests: file:///tmp/weir-e2e/<ns>,
  # which needs the pods of a job to share /tmp: set it to shared storage on kind).
  KUBECONFIG="${KUBECONFIG:-$HOME/.kube/config}" cargo test -p weir-e2e --test kubernetes --test kubernetes_disruptive -- --nocapture
fi
log "passed"
