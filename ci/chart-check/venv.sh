# Sourced by check.sh and sync.sh: a Python venv under ~/.cache with the check's
# tools, created (or completed) when missing. Sets CHART_CHECK_PY.
CHART_CHECK_VENV="${CHART_CHECK_VENV:-$HOME/.cache/weir-chart-venv}"
CHART_CHECK_PY="$CHART_CHECK_VENV/bin/python"
# Pinned so every machine checks with the same schemas and the same Helm.
chart_check_pkgs=(
  "helm-python-sdk==0.2.2"
  "kubernetes-validate==1.37.0"
  "yamllint==1.38.0"
  "PyYAML==6.0.4"
  "jsonschema==4.26.0"
  "cel-python==0.5.0"
)
if ! "$CHART_CHECK_PY" - "${chart_check_pkgs[@]}" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if version(name) != want:
        sys.exit(1)
PY
then
  echo "chart-check: installing ${chart_check_pkgs[*]} into $CHART_CHECK_VENV"
  [ -x "$CHART_CHECK_PY" ] || python3 -m venv "$CHART_CHECK_VENV"
  "$CHART_CHECK_VENV/bin/pip" install -q --disable-pip-version-check "${chart_check_pkgs[@]}"
fi
