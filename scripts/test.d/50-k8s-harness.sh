# Sourced by test.sh: the Kubernetes e2e tests (e2e/tests/kubernetes*.rs) run on a
# real control plane, the k8s-harness (../shared/k8s-harness), started here with
# CI's own state dir and settings (scripts/k8s/harness.sh) and stopped at exit.
# - KUBECONFIG already set: the tests use that cluster (e.g. kind, scripts/kind-e2e.sh);
#   nothing is started.
# - not root, no harness, no network namespaces: a loud SKIPPING line, and the
#   tests skip with a message (WEIR_E2E_SKIP says why).
# - otherwise: build weir and weir-operator (debug), `reset` + `up` the harness with
#   the image mappings ghcr.io/weir/weir-operator* and ghcr.io/weir/weir*, export
#   KUBECONFIG and the WEIR_E2E_* variables; a failing `up` fails test.sh.
k8s_skip=""
if [ -n "${KUBECONFIG:-}" ]; then
  echo "test.sh: Kubernetes e2e tests use the cluster of KUBECONFIG=$KUBECONFIG (no harness started)"
  export WEIR_E2E_CLUSTER="${WEIR_E2E_CLUSTER:-external}"
elif [ "$(id -u)" -ne 0 ]; then
  k8s_skip="not root (the k8s-harness needs root)"
elif ! k8s_harness=$(scripts/k8s/harness.sh path 2>/dev/null); then
  k8s_skip="no k8s-harness (set WEIR_K8S_HARNESS, or put it at ../shared/k8s-harness)"
elif ! unshare -n true 2>/dev/null; then
  k8s_skip="network namespaces do not work here (unshare -n failed)"
elif ! command -v kubectl >/dev/null 2>&1; then
  k8s_skip="kubectl is not installed"
fi
if [ -n "$k8s_skip" ]; then
  echo "test.sh: SKIPPING the Kubernetes e2e tests: $k8s_skip" >&2
  export WEIR_E2E_SKIP="$k8s_skip"
elif [ -z "${KUBECONFIG:-}" ]; then
  # One run at a time uses the CI harness (a second ./test.sh waits here).
  mkdir -p "$HOME/.cache"
  exec {k8s_lock_fd}>"$HOME/.cache/k8s-harness-ci.lock"
  if ! flock -n "$k8s_lock_fd"; then
    echo "test.sh: waiting for another ./test.sh to release the CI k8s-harness"
    flock "$k8s_lock_fd"
  fi
  # `cargo test --no-run` over the whole workspace builds the binaries the pods run
  # (target/debug/weir, weir-operator) with the same features as the test run below,
  # so nothing is compiled twice (`cargo build -p ...` unifies features differently).
  echo "test.sh: building the workspace's tests and binaries (weir, weir-operator run in the pods)"
  cargo test --workspace --no-run -q
  echo "test.sh: starting the k8s-harness ($k8s_harness, state ${K8S_HARNESS_HOME:-$HOME/.cache/k8s-harness-ci})"
  k8s_t0=$SECONDS
  at_exit scripts/k8s/harness.sh down
  if ! k8s_env=$(WEIR_E2E_BIN_DIR="$CARGO_TARGET_DIR/debug" scripts/k8s/harness.sh up); then
    echo "test.sh: the k8s-harness did not start (see above); failing" >&2
    exit 1
  fi
  eval "$k8s_env"
  echo "test.sh: k8s-harness up in $((SECONDS - k8s_t0))s: KUBECONFIG=$KUBECONFIG, pods reach the host at $WEIR_E2E_HOST_IP"
fi
unset k8s_skip k8s_harness k8s_env k8s_t0
