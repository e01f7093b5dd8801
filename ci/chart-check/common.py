"""Paths and file lists shared by check.py and sync.py."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "weir-operator"
CRD_DIR = ROOT / "crds"
CRD_FILE = CRD_DIR / "streamjobs.weir.dev.yaml"
CHART_CRD_DIR = CHART / "crds"
OPERATOR_RBAC = ROOT / "operator" / "rbac.yaml"
CHART_RBAC = CHART / "files" / "rbac.yaml"
REFERENCE = ROOT / "docs" / "streamjob-reference.md"
EXAMPLES = ROOT / "examples"


def crd_files() -> list[Path]:
    """The generated CRDs (crds/*.yaml)."""
    return sorted(p for p in CRD_DIR.glob("*.y*ml") if p.is_file())


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)
