"""Install charts/weir-operator on the cluster kubectl points at, as `helm install`
would, without a helm binary: the chart is rendered with the Helm SDK (the same
helm-python-sdk and call as ci/chart-check/check.py), then
  1. the namespaces (release namespace and --job-namespace ones) are created,
  2. the chart's crds/ are applied (server-side) and waited for (Established),
  3. the rendered manifests, minus `helm test` hooks, in Helm's install order, with
     Helm's ownership metadata, are applied server-side,
  4. the operator Deployment is waited for (Available).
Idempotent: running it again updates the release in place.

Run through install-chart.sh, which provides the venv.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "weir-operator"

# Helm's InstallOrder (pkg/release/util/kind_sorter.go).
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
    "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]


def kubectl(*args: str, stdin: str | None = None) -> str:
    res = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"install-chart: kubectl {' '.join(args)} failed:\n{res.stderr.strip()}")
    return res.stdout


def set_path(values: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = values
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release", default="weir")
    ap.add_argument("--namespace", default="weir-system", help="release namespace (default weir-system)")
    ap.add_argument("--operator-image", default="ghcr.io/weir/weir-operator:e2e", help="repository:tag of the operator image")
    ap.add_argument("--watch-namespace", action="append", default=[], help="a namespace to watch (repeatable; none: all namespaces)")
    ap.add_argument("--job-namespace", action="append", default=[], help="a namespace for the job ServiceAccount (repeatable)")
    ap.add_argument("--log-level", default="info,weir_operator=debug")
    ap.add_argument("--set-json", action="append", default=[], metavar="PATH=JSON", help="any other value, e.g. replicaCount=2")
    ap.add_argument("--timeout", type=int, default=180, help="seconds to wait for the operator")
    ap.add_argument("--dry-run", action="store_true", help="print the manifests instead of applying them")
    args = ap.parse_args()
    t0 = time.monotonic()

    repo, _, tag = args.operator_image.rpartition(":")
    if not repo or "/" in tag:
        repo, tag = args.operator_image, ""
    values: dict = {
        "image": {"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"},
        "operator": {"logLevel": args.log_level, "logFormat": "text"},
    }
    if args.watch_namespace:
        values["watchNamespaces"] = args.watch_namespace
    if args.job_namespace:
        values["jobNamespaces"] = args.job_namespace
    for kv in args.set_json:
        path, _, raw = kv.partition("=")
        set_path(values, path, json.loads(raw))

    helm.disable_logging() if hasattr(helm, "disable_logging") else None
    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values, name=args.release, namespace=args.namespace, is_install=True)

    docs: list[dict] = []
    for fname, text in sorted(rendered.items()):
        if not fname.endswith((".yaml", ".yml")) or "/crds/" in fname:
            continue
        for d in yaml.safe_load_all(text):
            if not d:
                continue
            hooks = ((d.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", "")
            if "test" in hooks:  # `helm install` never creates test hooks (`helm test` does)
                continue
            if hooks:
                sys.exit(f"install-chart: {fname}: hook {hooks!r} not supported by this installer")
            md = d.setdefault("metadata", {})
            if d.get("kind") not in ("ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition"):
                md.setdefault("namespace", args.namespace)
            # What `helm install` adds to every object it creates (ownership of the release).
            md.setdefault("annotations", {}).update({"meta.helm.sh/release-name": args.release, "meta.helm.sh/release-namespace": args.namespace})
            md.setdefault("labels", {}).setdefault("app.kubernetes.io/managed-by", "Helm")
            docs.append(d)
    rank = {k: i for i, k in enumerate(INSTALL_ORDER)}
    docs.sort(key=lambda d: rank.get(d.get("kind"), len(INSTALL_ORDER)))
    manifest = yaml.safe_dump_all(docs, sort_keys=False)
    if args.dry_run:
        print(manifest)
        return 0

    namespaces = sorted({args.namespace, *args.watch_namespace, *args.job_namespace})
    ns_docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in namespaces]
    kubectl("apply", "--server-side", "--field-manager=weir-e2e", "-f", "-", stdin=yaml.safe_dump_all(ns_docs))
    crd_files = sorted(str(p) for p in (CHART / "crds").glob("*.y*ml"))
    for f in crd_files:
        kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=helm", "-f", f)
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *[a for f in crd_files for a in ("-f", f)])
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=helm", "-f", "-", stdin=manifest)
    deployments = [d["metadata"]["name"] for d in docs if d.get("kind") == "Deployment"]
    for name in deployments:
        kubectl("-n", args.namespace, "rollout", "status", f"deployment/{name}", f"--timeout={args.timeout}s")
    kinds = ", ".join(sorted({d["kind"] for d in docs}))
    print(f"install-chart: release {args.release} in {args.namespace} ({len(docs)} objects: {kinds}; "
          f"operator {args.operator_image}; watching {args.watch_namespace or 'all namespaces'}) "
          f"ready in {time.monotonic() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
