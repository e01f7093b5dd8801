#!/usr/bin/env bash
# Offline checks of the Helm chart, the examples and the delivery files: render
# and lint the chart with the Helm 4 SDK, validate every rendered object and
# every example against the Kubernetes 1.32 schemas and the StreamJob CRD,
# compare the chart's RBAC with operator/rbac.yaml, refuse bad values.
# See ci/chart-check/README.md. Usage: ci/chart-check/check.sh [-v]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=ci/chart-check/venv.sh
source "$here/venv.sh"
exec "$CHART_CHECK_PY" "$here/check.py" "$@"
