"""Offline checks of the Helm chart, the example manifests and what derives from
the operator's files. Run through check.sh (which provides the venv).

Sections (each prints its findings; the exit status is non-zero if any failed):
  sync       chart copies of crds/ and operator/rbac.yaml, docs/streamjob-reference.md up to date
  yamllint   source YAML (chart values, examples, workflows) and every rendered manifest
  lint       `helm lint --strict` (Helm 4 SDK) with each value set
  render     every value set renders; every object validates against the Kubernetes
             1.32 schemas (strict) or the bundled monitoring.coreos.com schemas;
             hardening of the pods; unique names; namespaces set
  rbac       the operator's granted permissions == operator/rbac.yaml, per value set
  values     values.schema.json (and template guards) reject bad value sets
  crds       the CRDs (crds/ and the chart's copy) validate as CustomResourceDefinitions
  examples   every manifest under examples/ validates (StreamJobs against the CRD schema
             with defaults and CEL rules); every examples/invalid manifest is rejected
  files      Dockerfiles, .dockerignore, workflows and scripts: static sanity
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import extra_schemas  # noqa: E402
import kube_schema  # noqa: E402
import rbac  # noqa: E402
import sync  # noqa: E402
from common import CHART, CHART_CRD_DIR, CRD_FILE, EXAMPLES, OPERATOR_RBAC, ROOT, crd_files, rel  # noqa: E402

K8S_VERSION = "1.32"
RELEASE = "weir"
RELEASE_NS = "weir-system"
HERE = Path(__file__).resolve().parent
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace", "PriorityClass", "StorageClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}

# The value sets every check renders the chart with.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "cluster-wide, all optional features": {
        "replicaCount": 2,
        "podDisruptionBudget": {"enabled": True},
        "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}, "podMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "jobNamespaces": ["team-a", "team-b"],
        "jobServiceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/weir-checkpoints"}},
        "podAnnotations": {"example.com/team": "data"},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "weir-operator"}}}],
    },
    "namespaced watch list": {"watchNamespaces": ["team-a", "team-b"]},
    "namespaced watch list, all optional features": {
        "watchNamespaces": ["team-a", "team-b", "team-a"],
        "replicaCount": 3,
        "podDisruptionBudget": {"enabled": True, "minAvailable": "50%"},
        "networkPolicy": {"enabled": True},
        "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
        "jobServiceAccount": {"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]},
        "image": {"digest": "sha256:" + "a" * 64},
        "imagePullSecrets": [{"name": "regcred"}],
    },
    "custom names, no leader election, minimal": {
        "fullnameOverride": "weir-op",
        "serviceAccount": {"name": "weir-operator-sa"},
        "leaderElection": {"enabled": False},
        "jobServiceAccount": {"create": False},
        "metrics": {"service": {"enabled": False}},
        "livenessProbe": None,
    },
}

# Value sets that must be refused at install time, and a fragment of the reason.
BAD_VALUE_SETS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown top-level key", {"replicas": 2}, "additional properties 'replicas'"),
    ("two replicas without leader election", {"replicaCount": 2, "leaderElection": {"enabled": False}}, "leaderElection"),
    ("bad pull policy", {"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ("watch namespace that is not a DNS label", {"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
    ("resource quantity that is not one", {"resources": {"limits": {"memory": "lots"}}}, "memory"),
    ("port as a string", {"httpPort": "8080"}, "httpPort"),
    ("privileged port", {"httpPort": 80}, "httpPort"),
    ("malformed image digest", {"image": {"digest": "latest"}}, "digest"),
    ("wildcard verbs for job pods", {"jobServiceAccount": {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]}}, "verbs"),
    ("bad job pod selector operator", {"networkPolicy": {"enabled": True, "jobPodSelector": {"matchExpressions": [{"key": "weir.dev/job", "operator": "Has"}]}}}, "jobPodSelector"),
    ("PDB that blocks every drain", {"podDisruptionBudget": {"enabled": True}}, "minAvailable"),
    ("ServiceMonitor without the metrics Service", {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}, "metrics.service.enabled"),
]


class Report:
    def __init__(self, verbose: bool) -> None:
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.counts: dict[str, int] = {}
        self.verbose = verbose
        self.section = ""

    def start(self, name: str) -> None:
        self.section = name
        print(f"== {name}", flush=True)

    def fail(self, msg: str) -> None:
        self.failures.append(f"[{self.section}] {msg}")
        print(f"  FAIL {msg}", flush=True)

    def ok(self, msg: str) -> None:
        if self.verbose:
            print(f"  ok   {msg}")

    def note(self, msg: str) -> None:
        self.notes.append(f"[{self.section}] {msg}")
        print(f"  note {msg}")

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n


def load_docs(text: str, where: str, r: Report) -> list[dict[str, Any]]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        r.fail(f"{where}: not valid YAML: {e}")
        return []


def obj_name(o: dict[str, Any]) -> str:
    md = o.get("metadata") or {}
    ns = md.get("namespace")
    return f"{o.get('kind')}/{(ns + '/') if ns else ''}{md.get('name')}"


def validate_k8s(o: dict[str, Any], where: str, r: Report, crds: dict) -> bool:
    """One object against its schema: Kubernetes core (strict), bundled
    monitoring schemas, or a CRD from crds/. False if invalid or unknown."""
    api, kind = o.get("apiVersion"), o.get("kind")
    if not api or not kind:
        r.fail(f"{where}: object without apiVersion/kind")
        return False
    if (api, kind) in crds:
        errors, skipped = kube_schema.validate(crds[(api, kind)], o)
        for s in skipped:
            if "transition rule" in s:
                r.count("CEL transition rules left to updates (oldSelf)")
            else:
                r.note(f"{where}: {obj_name(o)}: CEL rule not checked offline: {s}")
        for e in errors:
            r.fail(f"{where}: {obj_name(o)}: {e}")
        r.count(f"{kind} objects validated against the CRD schema")
        # spec.podTemplate is free-form in the CRD (merged over the generated pod):
        # validate it as a core/v1 PodTemplateSpec so typos do not vanish silently.
        pt = (o.get("spec") or {}).get("podTemplate")
        if isinstance(pt, dict):
            tmpl = dict(pt)
            if isinstance(tmpl.get("spec"), dict):
                tmpl["spec"] = {"containers": [], **tmpl["spec"]}
            wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "podtemplate"}, "template": tmpl}
            try:
                kubernetes_validate.validate(wrapped, K8S_VERSION, strict=True)
                r.count("StreamJob podTemplates validated as PodTemplateSpec (strict)")
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in list(e.path)[1:]) or "<root>"
                r.fail(f"{where}: {obj_name(o)}: spec.podTemplate.{path}: {e.message}")
                errors.append("podTemplate")
        return not errors
    if (api, kind) in extra_schemas.SCHEMAS:
        errs = sorted(jsonschema.Draft7Validator(extra_schemas.SCHEMAS[(api, kind)]).iter_errors(o), key=lambda e: list(e.absolute_path))
        for e in errs:
            r.fail(f"{where}: {obj_name(o)}: {'.'.join(map(str, e.absolute_path))}: {e.message}")
        r.count("objects validated against bundled monitoring.coreos.com schemas")
        return not errs
    try:
        kubernetes_validate.validate(o, K8S_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        r.fail(f"{where}: {obj_name(o)}: no schema for {api} {kind} (not a Kubernetes {K8S_VERSION} kind, no CRD in crds/)")
        return False
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path) or "<root>"
        r.fail(f"{where}: {obj_name(o)}: {path}: {e.message}")
        return False
    r.count(f"objects validated against Kubernetes {K8S_VERSION} schemas (strict)")
    return True


def load_crds(r: Report) -> dict[tuple[str, str], kube_schema.CrdVersion]:
    out = {}
    for p in crd_files():
        for doc in load_docs(p.read_text(), rel(p), r):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            for v in kube_schema.load_crd(doc):
                out[(f"{v.group}/{v.version}", v.kind)] = v
    return out


# ----------------------------------------------------------------- sections

def check_sync(r: Report) -> None:
    r.start("sync: chart copies and generated docs")
    missing = [p for p in (CRD_FILE, OPERATOR_RBAC) if not p.exists()]
    for p in missing:
        msg = f"{rel(p)} does not exist (the operator has not produced it yet): checks that derive from it are skipped"
        if os.environ.get("WEIR_CHART_CHECK_REQUIRE_OPERATOR") == "1":
            r.fail(msg)
        else:
            r.note(msg)
    for path, text in sync.expected().items():
        if not path.exists():
            r.fail(f"{rel(path)} is missing: run ci/chart-check/sync.sh and commit the result")
        elif path.read_text() != text:
            r.fail(f"{rel(path)} is out of date with its source: run ci/chart-check/sync.sh and commit the result")
        else:
            r.ok(f"{rel(path)} up to date")
            r.count("derived files up to date")
    for p in sync.stale_chart_crds():
        r.fail(f"{rel(p)} has no source in crds/ any more: run ci/chart-check/sync.sh")


YAMLLINT_SOURCE = YamlLintConfig(file=str(HERE / "yamllint.yaml"))
YAMLLINT_RENDERED = YamlLintConfig(
    "extends: relaxed\nrules:\n  line-length: disable\n  key-duplicates: enable\n  trailing-spaces: enable\n  empty-lines: disable\n  indentation: disable\n"
)


def yamllint_text(text: str, where: str, conf: YamlLintConfig, r: Report) -> None:
    problems = [p for p in linter.run(io.StringIO(text), conf) if p.level == "error"]
    for p in problems:
        r.fail(f"{where}:{p.line}:{p.column}: {p.desc} ({p.rule})")
    r.count("YAML files and rendered templates linted")


def source_yaml_files() -> list[Path]:
    files = [CHART / "Chart.yaml", CHART / "values.yaml", CHART / "files" / "rbac.yaml"]
    files += sorted((ROOT / "examples" / "walkthrough").rglob("*.y*ml"))
    files += sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
    files += [HERE / "yamllint.yaml"]
    return [f for f in files if f.exists()]


def check_yamllint(r: Report) -> None:
    r.start("yamllint: chart values, walkthrough manifests, workflows")
    for f in source_yaml_files():
        yamllint_text(f.read_text(), rel(f), YAMLLINT_SOURCE, r)


def check_lint(r: Report) -> None:
    r.start(f"helm lint --strict --kube-version v{K8S_VERSION}.0 (Helm SDK {helm.helm_sdk_version()})")
    for name, values in VALUE_SETS.items():
        rep = helm.lint(str(CHART), values, strict=True, namespace=RELEASE_NS, kube_version=f"v{K8S_VERSION}.0")
        bad = [m for m in rep.get("messages", []) if m.get("severity", 0) >= 2]
        for m in bad:
            r.fail(f"[{name}] {m.get('path')}: {m.get('error').strip()}")
        for e in rep.get("errors", []) or []:
            if not any(e.strip() in (m.get("error") or "") for m in bad):
                r.fail(f"[{name}] {e.strip()}")
        if not bad and not rep.get("errors"):
            r.ok(f"[{name}] lint clean")
        r.count("helm lint runs")


def render(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=RELEASE, namespace=RELEASE_NS, is_install=True)


def pod_specs(o: dict[str, Any]) -> list[dict[str, Any]]:
    kind = o.get("kind")
    spec = o.get("spec") or {}
    if kind == "Pod":
        return [spec]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [spec.get("template", {}).get("spec", {})]
    if kind == "CronJob":
        return [spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})]
    return []


def check_hardening(o: dict[str, Any], where: str, r: Report) -> None:
    for ps in pod_specs(o):
        psc = ps.get("securityContext") or {}
        label = f"{where}: {obj_name(o)}"
        if psc.get("runAsNonRoot") is not True:
            r.fail(f"{label}: pod securityContext.runAsNonRoot is not true")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            r.fail(f"{label}: pod seccompProfile is not RuntimeDefault")
        if ps.get("hostNetwork") or ps.get("hostPID") or ps.get("hostIPC"):
            r.fail(f"{label}: uses host namespaces")
        for c in ps.get("containers", []) + ps.get("initContainers", []):
            sc = c.get("securityContext") or {}
            cl = f"{label} container {c.get('name')}"
            if sc.get("readOnlyRootFilesystem") is not True:
                r.fail(f"{cl}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                r.fail(f"{cl}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                r.fail(f"{cl}: capabilities do not drop ALL")
            if (sc.get("capabilities") or {}).get("add"):
                r.fail(f"{cl}: adds capabilities")
            res = c.get("resources") or {}
            if not (res.get("requests") or {}).get("memory") or not (res.get("limits") or {}).get("memory"):
                r.fail(f"{cl}: no memory request and limit")
            if o.get("kind") == "Deployment":
                rp = ((c.get("readinessProbe") or {}).get("httpGet") or {}).get("path")
                if rp not in ("/healthz", "/readyz"):
                    r.fail(f"{cl}: readiness probe is not GET /healthz or /readyz")
                lp = c.get("livenessProbe")
                if lp is not None and (lp.get("httpGet") or {}).get("path") != "/healthz":
                    r.fail(f"{cl}: liveness probe is not GET /healthz")
            if ":" not in c.get("image", "") and "@" not in c.get("image", ""):
                r.fail(f"{cl}: image {c.get('image')!r} has no tag or digest")


def env_of(o: dict[str, Any], name: str) -> str | None:
    for ps in pod_specs(o):
        for c in ps.get("containers", []):
            for e in c.get("env", []) or []:
                if e.get("name") == name:
                    return e.get("value")
    return None


def operator_env_names() -> set[str]:
    """Environment variables weir-operator reads: clap `env = "..."` in operator/src."""
    names: set[str] = set()
    for p in (ROOT / "operator" / "src").rglob("*.rs"):
        names.update(re.findall(r'\benv\s*=\s*"([A-Z0-9_]+)"', p.read_text(errors="replace")))
    return names


def check_render(r: Report, crds: dict, calls: list[rbac.Call] | None) -> None:
    r.start(f"render + validate (Kubernetes {K8S_VERSION}, strict) + hardening + RBAC, per value set")
    for name, values in VALUE_SETS.items():
        try:
            out = render(values)
        except helm.HelmError as e:
            r.fail(f"[{name}] render failed: {e}")
            continue
        merged = helm.Chart.load(str(CHART)).merge_values(values)
        objs: list[dict[str, Any]] = []
        seen: dict[str, str] = {}
        for tpl, text in sorted(out.items()):
            where = f"[{name}] {tpl}"
            if tpl.endswith("NOTES.txt"):
                if "kubectl" not in text:
                    r.fail(f"{where}: NOTES.txt does not tell the user what to run next")
                continue
            if not text.strip():
                continue
            yamllint_text(text, where, YAMLLINT_RENDERED, r)
            for o in load_docs(text, where, r):
                key = f"{o.get('apiVersion')} {obj_name(o)}"
                if key in seen:
                    r.fail(f"{where}: {key} rendered twice (also in {seen[key]})")
                seen[key] = tpl
                if o.get("kind") not in CLUSTER_SCOPED and not (o.get("metadata") or {}).get("namespace"):
                    r.fail(f"{where}: {obj_name(o)} has no metadata.namespace")
                validate_k8s(o, where, r, crds)
                check_hardening(o, where, r)
                objs.append(o)
        r.count("value sets rendered")
        deployments = [o for o in objs if o.get("kind") == "Deployment"]
        if len(deployments) != 1:
            r.fail(f"[{name}] expected one operator Deployment, got {len(deployments)}")
            continue
        dep = deployments[0]
        watch = list(dict.fromkeys(merged.get("watchNamespaces") or []))
        if (env_of(dep, "WEIR_OPERATOR_NAMESPACES") or "") != ",".join(watch):
            r.fail(f"[{name}] WEIR_OPERATOR_NAMESPACES={env_of(dep, 'WEIR_OPERATOR_NAMESPACES')!r}, expected {','.join(watch)!r}")
        # Every variable the chart sets is one the operator reads (clap `env = "..."`).
        reads = operator_env_names()
        if reads:
            for c in dep["spec"]["template"]["spec"]["containers"]:
                for e in c.get("env") or []:
                    if e["name"] not in reads and e["name"] not in {x.get("name") for x in merged["operator"].get("extraEnv") or []}:
                        r.fail(f"[{name}] the Deployment sets {e['name']}, which weir-operator does not read (operator/src: {sorted(reads)})")
        if dep["spec"]["replicas"] > 1 and env_of(dep, "WEIR_OPERATOR_NO_LEADER_ELECTION") == "true":
            r.fail(f"[{name}] {dep['spec']['replicas']} replicas without leader election")
        # The job pods' Roles grant only what the values ask for.
        job_sa = (merged.get("jobServiceAccount") or {})
        for o in objs:
            if o.get("kind") == "Role" and (o["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "job":
                if (o.get("rules") or []) != (job_sa.get("rules") or []):
                    r.fail(f"[{name}] {obj_name(o)}: job pods get rules {o.get('rules')}, values ask for {job_sa.get('rules')}")
        # The operator's RBAC against operator/rbac.yaml.
        if not merged["rbac"]["create"]:
            continue
        sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
        grants, problems = rbac.granted(objs, sa, RELEASE_NS)
        for p in problems:
            r.fail(f"[{name}] rbac: {p}")
        if calls is None:
            continue  # noted in the sync section
        for p in rbac.compare(calls, grants, watch, RELEASE_NS, bool(merged["leaderElection"]["enabled"])):
            r.fail(f"[{name}] rbac: {p}")
        r.count("value sets whose RBAC was compared with operator/rbac.yaml")
        r.ok(f"[{name}] {len(objs)} objects, {len(grants)} (group, resource, verb, namespace) grants")


def check_bad_values(r: Report) -> None:
    r.start("values: bad value sets are refused at install time")
    for name, values, reason in BAD_VALUE_SETS:
        try:
            render(values)
        except (helm.HelmValuesError, helm.HelmRenderError) as e:
            msg = str(e)
            if reason not in msg:
                r.fail(f"{name}: refused, but the message does not mention {reason!r}: {msg.strip()}")
            else:
                r.ok(f"{name}: refused ({msg.strip().splitlines()[-1].strip()})")
            r.count("bad value sets refused")
            continue
        r.fail(f"{name}: {values} was accepted")


def check_crds(r: Report) -> None:
    r.start("crds: the CRDs validate as apiextensions.k8s.io/v1 objects")
    files = crd_files() + sorted(CHART_CRD_DIR.glob("*.y*ml"))
    if not files:
        r.note("crds/ holds no CRD yet")
    for p in files:
        for doc in load_docs(p.read_text(), rel(p), r):
            validate_k8s(doc, rel(p), r, {})
            r.count("CRD documents validated")


def example_files() -> list[Path]:
    out = []
    for p in sorted(EXAMPLES.rglob("*")):
        if not p.is_file() or p.suffix not in (".yaml", ".yml"):
            continue
        if p.relative_to(EXAMPLES).parts[0] == "jobs":
            continue  # runtime job files (`weir run <file>`), not Kubernetes manifests
        out.append(p)
    return out


def check_examples(r: Report, crds: dict) -> None:
    r.start("examples: every manifest validates; every examples/invalid manifest is rejected")
    invalid_dir = EXAMPLES / "invalid"
    for p in example_files():
        where = rel(p)
        if p.name.endswith(".values.yaml"):
            # Helm values for the chart (e.g. examples/walkthrough/kind.values.yaml).
            try:
                out = render(yaml.safe_load(p.read_text()) or {})
                for tpl, text in out.items():
                    if not tpl.endswith("NOTES.txt"):
                        for o in load_docs(text, f"{where} -> {tpl}", r):
                            validate_k8s(o, f"{where} -> {tpl}", r, crds)
                r.count("example Helm values files rendered")
            except helm.HelmError as e:
                r.fail(f"{where}: the chart refuses these values: {e}")
            continue
        text = p.read_text()
        docs = load_docs(text, where, r)
        if invalid_dir in p.parents:
            # Conventions of examples/invalid (shared with operator/tests/schema.rs):
            #   # expect: <text the API server's error contains>
            #   # old: <spec field> <value>   an update of the same object that had <value>
            expect = next((ln[len("# expect: "):].strip() for ln in text.splitlines() if ln.startswith("# expect: ")), None)
            old_line = next((ln[len("# old: "):].strip() for ln in text.splitlines() if ln.startswith("# old: ")), None)
            for i, o in enumerate(docs):
                label = f"{where}#{i}"
                key = (o.get("apiVersion"), o.get("kind"))
                if key not in crds:
                    if not crds:
                        r.note(f"{label}: no CRD in crds/ yet: cannot check that it is rejected")
                    else:
                        r.fail(f"{label}: {key} is not a custom resource of crds/ (examples/invalid holds bad StreamJobs)")
                    continue
                old = None
                if old_line:
                    field, _, raw = old_line.partition(" ")
                    old = yaml.safe_load(yaml.safe_dump(o))
                    node = old.setdefault("spec", {})
                    *parents, leaf = field.split(".")
                    for part in parents:
                        node = node.setdefault(part, {})
                    node[leaf] = yaml.safe_load(raw)
                errors, skipped = kube_schema.validate(crds[key], o, old)
                if not errors:
                    extra = f" (CEL rules not evaluated offline: {skipped})" if skipped else ""
                    r.fail(f"{label}: {obj_name(o)} should be rejected but validates against the CRD schema{extra}")
                elif expect and not any(expect in e for e in errors):
                    r.fail(f"{label}: rejected, but no error contains the expected {expect!r}: {errors}")
                else:
                    r.ok(f"{label}: rejected: {errors[0]}")
                    r.count("invalid StreamJobs rejected (with the expected message)")
            continue
        if not docs:
            r.fail(f"{where}: no YAML document")
        for o in docs:
            if (o.get("apiVersion"), o.get("kind")) not in crds and o.get("apiVersion", "").startswith("weir.dev/") and not crds:
                r.note(f"{where}: {obj_name(o)}: no CRD in crds/ yet: not validated")
                continue
            validate_k8s(o, where, r, crds)
            r.count("example manifests validated")


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore excludes `path` (Docker's semantics: last match wins)."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        pat = pat.strip("/")
        rx = re.escape(pat).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(rx, pre) for pre in prefixes):
            ignored = not neg
    return ignored


def check_files(r: Report) -> None:
    r.start("files: Dockerfiles, .dockerignore, workflows, scripts")
    di = ROOT / ".dockerignore"
    patterns = [ln.strip() for ln in di.read_text().splitlines() if ln.strip() and not ln.startswith("#")] if di.exists() else []
    if not di.exists():
        r.fail(".dockerignore is missing")
    members = re.findall(r'"([^"]+)"', re.search(r"members\s*=\s*\[([^\]]*)\]", (ROOT / "Cargo.toml").read_text()).group(1))
    for need in ["Cargo.toml", "Cargo.lock", *[f"{m}/Cargo.toml" for m in members], *[f"{m}/src/lib.rs" for m in members], "docker/custom-job/Cargo.toml", "docker/custom-job/src/main.rs"]:
        if dockerignored(need, patterns):
            r.fail(f".dockerignore excludes {need}, which the image builds need")
    for junk in ["target/release/weir", "runtime/weir/target/x", ".git/HEAD", "out/x.jsonl"]:
        if not dockerignored(junk, patterns):
            r.fail(f".dockerignore lets {junk} into the build context")
    dockerfiles = {"docker/weir.Dockerfile": "weir", "docker/weir-operator.Dockerfile": "weir-operator", "docker/custom-job/Dockerfile": None}
    for f, pkg in dockerfiles.items():
        p = ROOT / f
        if not p.exists():
            r.fail(f"{f} is missing")
            continue
        text = p.read_text()
        stages = re.split(r"(?im)^FROM\s", text)
        final = stages[-1]
        if pkg and f"cargo build --release --locked -p {pkg}" not in text:
            r.fail(f"{f}: does not build `-p {pkg}` with --release --locked")
        if not re.search(r"(?m)^USER 65532(:65532)?\s*$", final) and "nonroot" not in final.splitlines()[0] and "WEIR_IMAGE" not in final.splitlines()[0]:
            r.fail(f"{f}: the final stage does not run as uid 65532")
        if pkg and not re.search(r"(?m)^USER 65532:65532\s*$", final):
            r.fail(f"{f}: the final stage has no numeric `USER 65532:65532` (runAsNonRoot cannot verify a name)")
        for tool in ("clang", "cmake", "build-essential", "gcc", "cargo ", "rustc"):
            if re.search(rf"apt-get install[^\n]*\b{re.escape(tool.strip())}\b", final):
                r.fail(f"{f}: the final stage installs build tool {tool.strip()}")
        r.count("Dockerfiles checked")
    for wf, needles in {
        ".github/workflows/ci.yml": ["bash .ci/run"],
        ".github/workflows/kind-e2e.yml": ["scripts/kind-e2e.sh", "helm/kind-action", "azure/setup-helm"],
    }.items():
        p = ROOT / wf
        if not p.exists():
            r.fail(f"{wf} is missing")
            continue
        doc = yaml.safe_load(p.read_text())
        if not isinstance(doc, dict) or "jobs" not in doc or (True not in doc and "on" not in doc):
            r.fail(f"{wf}: not a workflow (no `on:` or `jobs:`)")
        for n in needles:
            if n not in p.read_text():
                r.fail(f"{wf}: does not use {n}")
        r.count("workflows checked")
    script = ROOT / "scripts" / "kind-e2e.sh"
    for s in [script, HERE / "check.sh", HERE / "sync.sh"]:
        if not s.exists() or not os.access(s, os.X_OK):
            r.fail(f"{rel(s)} is missing or not executable")
            continue
        res = subprocess.run(["bash", "-n", str(s)], capture_output=True, text=True)
        if res.returncode:
            r.fail(f"{rel(s)}: bash -n: {res.stderr.strip()}")
    if script.exists():
        text = script.read_text()
        for needle in ["cargo test -p weir-e2e --test kubernetes", "helm upgrade --install", "kind load docker-image", "docker/weir.Dockerfile", "docker/weir-operator.Dockerfile"]:
            if needle not in text:
                r.fail(f"scripts/kind-e2e.sh does not run `{needle}`")


METRIC_RX = re.compile(r"\bweir_[a-z0-9_]+\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def check_metrics(r: Report) -> None:
    r.start("metrics: dashboard and examples use only metrics documented in docs/operations.md")
    doc = ROOT / "docs" / "operations.md"
    dash = ROOT / "docs" / "grafana-dashboard.json"
    if not doc.exists() or not dash.exists():
        r.fail("docs/operations.md or docs/grafana-dashboard.json is missing")
        return
    table = set(re.findall(r"^\| `(weir_[a-z0-9_]+)`(?:, `(weir_[a-z0-9_]+)`)?", doc.read_text(), re.M))
    documented = {m for pair in table for m in pair if m}
    try:
        import json

        dashboard = json.loads(dash.read_text())
    except ValueError as e:
        r.fail(f"docs/grafana-dashboard.json is not JSON: {e}")
        return
    if not dashboard.get("panels") or dashboard.get("uid") is None:
        r.fail("docs/grafana-dashboard.json has no panels or no uid")
    used: dict[str, str] = {}
    for f in [dash, *sorted((EXAMPLES / "walkthrough").glob("*.yaml")), CHART / "templates" / "prometheusrule.yaml"]:
        for m in METRIC_RX.findall(f.read_text()):
            base = m
            for suf in HISTOGRAM_SUFFIXES:
                if m.endswith(suf) and m[: -len(suf)] in documented:
                    base = m[: -len(suf)]
            used.setdefault(base, rel(f))
    for m, where in sorted(used.items()):
        if m not in documented and not m.startswith("weir_records_in_per_second"):
            r.fail(f"{where} uses {m}, which docs/operations.md does not list")
    r.count("metric names cross-checked (docs, dashboard, examples)", len(used))
    # Which documented metrics the components do not export yet (a note, for alignment).
    sources = ""
    for d in ("runtime", "operator"):
        for p in (ROOT / d).rglob("*.rs"):
            sources += p.read_text(errors="replace")
    missing = sorted(m for m in documented if m not in sources and m.removesuffix("_total") not in sources)
    if missing:
        r.note(f"documented metrics not found in runtime/ or operator/ sources yet: {', '.join(missing)}")


def check_self(r: Report) -> None:
    """The checkers themselves reject what they must (so a pass above means something)."""
    r.start("self-test: the validators reject known-bad input")
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "spec": {"group": "t.dev", "names": {"kind": "T", "plural": "ts"}, "scope": "Namespaced", "versions": [{
            "name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                "type": "object", "required": ["n"],
                "x-kubernetes-validations": [{"rule": "self.n <= self.m", "message": "n must not exceed m"}],
                "properties": {"n": {"type": "integer", "minimum": 1}, "m": {"type": "integer", "default": 4,
                               "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "m is fixed"}]},
                               "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}}}]},
    }
    t = kube_schema.load_crd(crd)[0]
    obj = lambda spec: {"apiVersion": "t.dev/v1", "kind": "T", "metadata": {"name": "x"}, "spec": spec}  # noqa: E731
    cases = [
        ("valid object with a defaulted field", obj({"n": 2, "free": {"any": 1}}), None, None),
        ("unknown field", obj({"n": 2, "typo": 1}), None, 'unknown field "spec.typo"'),
        ("missing required field", obj({}), None, "spec.n: Required value"),
        ("minimum", obj({"n": 0}), None, "should be greater than or equal to 1"),
        ("CEL rule after defaulting", obj({"n": 5}), None, "n must not exceed m"),
        ("CEL transition rule on update", obj({"n": 2, "m": 8}), obj({"n": 2, "m": 4}), "m is fixed"),
    ]
    for name, o, old, want in cases:
        errors, _ = kube_schema.validate(t, o, old)
        if want is None and errors:
            r.fail(f"{name}: rejected: {errors}")
        elif want is not None and not any(want in e for e in errors):
            r.fail(f"{name}: expected an error containing {want!r}, got {errors}")
        r.count("self-test cases")
    try:
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a"}, "typo": 1}, K8S_VERSION, strict=True)
        r.fail("kubernetes-validate accepted an unknown field in strict mode")
    except kubernetes_validate.ValidationError:
        r.count("self-test cases")
    calls = [rbac.Call("apps", "statefulsets", "patch", "namespaced")]
    grants = [rbac.Grant("apps", "statefulsets", "patch", "*", "x"), rbac.Grant("", "secrets", "get", "*", "x")]
    probs = rbac.compare(calls, grants, ["a"], RELEASE_NS, True)
    if not any("too broad" in p for p in probs) or not any("not needed" in p and "secrets" in p for p in probs):
        r.fail(f"rbac.compare missed a too-broad or unneeded grant: {probs}")
    if not rbac.compare(calls, [], [], RELEASE_NS, True):
        r.fail("rbac.compare missed a missing grant")
    r.count("self-test cases", 2)
    if not dockerignored("target/release/weir", ["**/target"]) or dockerignored("docker/custom-job/src/main.rs", ["docker", "!docker/custom-job"]):
        r.fail(".dockerignore matcher is wrong")
    r.count("self-test cases")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true", help="print passing checks too")
    args = ap.parse_args()
    t0 = time.monotonic()
    r = Report(args.verbose)
    helm.disable_logging() if hasattr(helm, "disable_logging") else None
    r.start("load")
    crds = load_crds(r)
    print(f"  custom resources with a CRD in crds/: {sorted(k for _, k in crds) or 'none yet'}")
    calls = None
    if OPERATOR_RBAC.exists():
        try:
            calls = rbac.parse_calls(OPERATOR_RBAC.read_text())
            print(f"  operator/rbac.yaml: {len(calls)} (group, resource, verb) calls")
        except ValueError as e:
            r.fail(str(e))
    sections: list[Callable[[], None]] = [
        lambda: check_self(r),
        lambda: check_sync(r),
        lambda: check_yamllint(r),
        lambda: check_lint(r),
        lambda: check_render(r, crds, calls),
        lambda: check_bad_values(r),
        lambda: check_crds(r),
        lambda: check_examples(r, crds),
        lambda: check_files(r),
        lambda: check_metrics(r),
    ]
    for s in sections:
        try:
            s()
        except Exception as e:  # noqa: BLE001 - a crash of one section is a failure, not the end
            import traceback

            traceback.print_exc()
            r.fail(f"check crashed: {type(e).__name__}: {e}")
    print("== summary")
    for what, n in sorted(r.counts.items()):
        print(f"  {n:5d}  {what}")
    if r.notes:
        print(f"  {len(r.notes)} note(s) above")
    dt = time.monotonic() - t0
    if r.failures:
        print(f"chart-check: {len(r.failures)} failure(s) in {dt:.1f}s:")
        for f in r.failures:
            print(f"  - {f}")
        return 1
    print(f"chart-check: all checks passed in {dt:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
