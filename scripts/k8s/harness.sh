#!/usr/bin/env bash
# The k8s-harness (a real kube-apiserver + kube-controller-manager and "podrunner",
# a node agent running pods as local processes) with the settings of Weir's CI: its
# own state dir, ports, bridge and subnet (../shared/k8s-harness/README.md, "CI"),
# so it never meets a developer's harness. ./test.sh starts it through this script
# (scripts/test.d/50-k8s-harness.sh); you can too:
#
#   scripts/k8s/harness.sh up        # reset, then up with the Weir image mappings; prints exports
#   eval "$(scripts/k8s/harness.sh env)"
#   cargo test -p weir-e2e --test kubernetes -- --nocapture
#   scripts/k8s/harness.sh down
#
# Commands: up | down | reset | env | status | path | any other k8s-harness command
# (kubectl, logs, pod-exec, host-exec ...), run with these settings.
# Environment:
#   WEIR_K8S_HARNESS      the k8s-harness script (default: <repo>/../shared/k8s-harness/k8s-harness,
#                         else /work/shared/k8s-harness/k8s-harness)
#   WEIR_E2E_BIN_DIR      where the weir and weir-operator binaries are (default
#                         $CARGO_TARGET_DIR/debug); `up` copies them to a snapshot dir
#                         so that a later `cargo build` does not change running tests
#   WEIR_K8S_HARNESS_ATTEMPTS  how many times `up` resets and starts the harness before it
#                         gives up (default 3)
#   K8S_HARNESS_HOME ...  the harness settings (defaults: the CI settings below)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

harness_path() {
  local c
  for c in "${WEIR_K8S_HARNESS:-}" "$repo/../shared/k8s-harness/k8s-harness" /work/shared/k8s-harness/k8s-harness; do
    if [ -n "$c" ] && [ -x "$c" ]; then readlink -f "$c"; return 0; fi
  done
  return 1
}

export K8S_HARNESS_HOME="${K8S_HARNESS_HOME:-$HOME/.cache/k8s-harness-ci}"
export K8S_HARNESS_APISERVER_PORT="${K8S_HARNESS_APISERVER_PORT:-6643}"
export K8S_HARNESS_ETCD_PORT="${K8S_HARNESS_ETCD_PORT:-2579}"
export K8S_HARNESS_ETCD_PEER_PORT="${K8S_HARNESS_ETCD_PEER_PORT:-2580}"
export K8S_HARNESS_CONTROLLER_MANAGER_PORT="${K8S_HARNESS_CONTROLLER_MANAGER_PORT:-10457}"
export K8S_HARNESS_BRIDGE="${K8S_HARNESS_BRIDGE:-k8shci0}"
export K8S_HARNESS_SUBNET="${K8S_HARNESS_SUBNET:-10.246.0.0/24}"
export K8S_HARNESS_NETNS_PREFIX="${K8S_HARNESS_NETNS_PREFIX:-cp-}"
export K8S_HARNESS_VETH_PREFIX="${K8S_HARNESS_VETH_PREFIX:-vc}"
host_ip="${K8S_HARNESS_SUBNET%.*}.1"
snapshot="$K8S_HARNESS_HOME.bin"

K=$(harness_path) || { echo "harness.sh: no k8s-harness found (set WEIR_K8S_HARNESS)" >&2; exit 1; }

print_env() {
  cat <<ENV
export KUBECONFIG=$K8S_HARNESS_HOME/kubeconfig
export K8S_HARNESS_HOME=$K8S_HARNESS_HOME
export WEIR_K8S_HARNESS=$K
export WEIR_E2E_CLUSTER=harness
export WEIR_E2E_HOST_IP=$host_ip
export WEIR_E2E_IMAGE=ghcr.io/weir/weir:e2e
export WEIR_E2E_OPERATOR_IMAGE=ghcr.io/weir/weir-operator:e2e
ENV
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  up)
    bin_dir="${WEIR_E2E_BIN_DIR:-${CARGO_TARGET_DIR:-$repo/target}/debug}"
    for b in weir weir-operator; do
      [ -x "$bin_dir/$b" ] || { echo "harness.sh: $bin_dir/$b is missing: cargo build -p weir-cli --bin weir -p weir-operator --bin weir-operator" >&2; exit 1; }
    done
    mkdir -p "$snapshot"
    # A copy: pods started later in the run use the binaries the run started with.
    cp -f "$bin_dir/weir" "$snapshot/weir.new" && mv -f "$snapshot/weir.new" "$snapshot/weir"
    cp -f "$bin_dir/weir-operator" "$snapshot/weir-operator.new" && mv -f "$snapshot/weir-operator.new" "$snapshot/weir-operator"
    # A control-plane component can die (or be taken for dead) in its first second on a
    # loaded machine (CI once saw kube-controller-manager "exit" before it wrote a line);
    # a whole reset + up again is cheap next to failing the run, so try three times.
    attempts="${WEIR_K8S_HARNESS_ATTEMPTS:-3}"
    for ((attempt = 1; ; attempt++)); do
      # Reset first: a clean cluster, and no pods or netns left by a killed earlier run.
      "$K" reset >&2
      # reset keeps the logs: drop the pods' logs of earlier runs (named <ns>_<pod>_<container>.log;
      # the control plane's own logs stay), so the tests read only this run's.
      find "$K8S_HARNESS_HOME/logs" -maxdepth 1 -name '*_*_*.log' -delete 2>/dev/null || true
      # First match wins: the operator's glob before the runtime's.
      if "$K" up --image "ghcr.io/weir/weir-operator*=$snapshot/weir-operator" \
                 --image "ghcr.io/weir/weir*=$snapshot/weir" "$@" >/dev/null; then
        break
      fi
      if [ "$attempt" -ge "$attempts" ]; then
        echo "harness.sh: the k8s-harness did not come up in $attempts attempts" >&2
        exit 1
      fi
      echo "harness.sh: the k8s-harness did not come up (attempt $attempt of $attempts); stopping it and trying again" >&2
      "$K" down >&2 || true
      sleep 2
    done
    print_env
    ;;
  env) print_env ;;
  path) echo "$K" ;;
  down | reset | status) exec "$K" "$cmd" "$@" ;;
  ""|-h|--help) sed -n '2,24p' "$0" ;;
  *) exec "$K" "$cmd" "$@" ;;
esac
