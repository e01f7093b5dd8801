"""Regenerate what the chart and the docs derive from the operator's files:

  crds/*.yaml          -> charts/weir-operator/crds/ (byte-identical copies)
  operator/rbac.yaml   -> charts/weir-operator/files/rbac.yaml (normalized rules)
  crds/streamjobs...   -> docs/streamjob-reference.md

check.py fails when any of them is out of date. Usage: python sync.py
"""

from __future__ import annotations

import sys

import yaml

import rbac
import reference
from common import CHART_CRD_DIR, CHART_RBAC, CRD_FILE, OPERATOR_RBAC, REFERENCE, crd_files, rel


def expected() -> dict:
    """path -> expected content (None: the source is missing, nothing to derive)."""
    out = {}
    for p in crd_files():
        out[CHART_CRD_DIR / p.name] = p.read_text()
    if OPERATOR_RBAC.exists():
        out[CHART_RBAC] = rbac.render_calls(rbac.parse_calls(OPERATOR_RBAC.read_text()), rel(OPERATOR_RBAC))
    if CRD_FILE.exists():
        crd = yaml.safe_load(CRD_FILE.read_text())
        out[REFERENCE] = reference.generate(crd, rel(CRD_FILE))
    return out


def stale_chart_crds() -> list:
    """Copies in the chart whose source in crds/ no longer exists."""
    want = {p.name for p in crd_files()}
    return [p for p in CHART_CRD_DIR.glob("*.y*ml") if p.name not in want]


def main() -> int:
    for path, text in expected().items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"sync: wrote {rel(path)}")
    for p in stale_chart_crds():
        p.unlink()
        print(f"sync: removed {rel(p)}")
    for src in (CRD_FILE, OPERATOR_RBAC):
        if not src.exists():
            print(f"sync: {rel(src)} does not exist yet; nothing derived from it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
