#!/usr/bin/env bash
# Installs charts/weir-operator on the cluster kubectl points at, as `helm install`
# would (rendered with the Helm SDK, like ci/chart-check; no helm binary needed).
# Usage: scripts/k8s/install-chart.sh [--namespace weir-system] [--operator-image IMG]
#          [--watch-namespace NS]... [--job-namespace NS]... [--set-json PATH=JSON]... [--dry-run]
# See scripts/k8s/install-chart.py --help. The e2e tests (e2e/src/kube.rs) run it once
# per test binary.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=/dev/null
source "$here/../../ci/chart-check/venv.sh" >&2
exec "$CHART_CHECK_PY" "$here/install-chart.py" "$@"
