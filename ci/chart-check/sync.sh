#!/usr/bin/env bash
# Regenerates the chart's copies of crds/ and operator/rbac.yaml and
# docs/streamjob-reference.md (see sync.py). Run it after the operator's CRD or
# API calls change, then commit the result.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=ci/chart-check/venv.sh
source "$here/venv.sh"
exec "$CHART_CHECK_PY" "$here/sync.py" "$@"
