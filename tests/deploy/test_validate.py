"""Every rendered object validates strictly: a field the schema does not know fails.

Kubernetes kinds are checked by kubernetes-validate against the schemas of
KUBERNETES_VERSION; the custom kinds (KEDA, Prometheus Operator) against the
schemas kept in tests/deploy/schemas/ (see tests/deploy/crd_schemas.py). An
object of a kind neither knows fails too: it would be refused by a cluster.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError

from tests.deploy.crd_schemas import schema_file
from tests.deploy.manifests import ENVIRONMENTS, Obj, env, key, named

KUBERNETES_VERSION = "1.37.0"


@functools.cache
def crd_validator(kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    path = schema_file(kind, api_version)
    if not path.exists():
        return None
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema)


def problems(obj: Obj) -> list[str]:
    """Why `obj` does not validate; empty when it does."""
    validator = crd_validator(obj["kind"], obj["apiVersion"])
    if validator is not None:
        return [
            f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(obj)
        ]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except SchemaNotFoundError:
        return [f"no schema for {obj['apiVersion']} {obj['kind']}"]
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.absolute_path))}: {exc.message}"]
    return []


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_every_object_validates(name: str) -> None:
    failures = {"/".join(key(obj)): problems(obj) for obj in env(name)}
    assert not {obj: why for obj, why in failures.items() if why}


def test_the_custom_kinds_are_checked_against_their_own_schemas() -> None:
    kinds = {(obj["kind"], obj["apiVersion"]) for name in ENVIRONMENTS for obj in env(name)}
    for kind in (
        ("ScaledObject", "keda.sh/v1alpha1"),
        ("ServiceMonitor", "monitoring.coreos.com/v1"),
        ("PrometheusRule", "monitoring.coreos.com/v1"),
    ):
        assert kind in kinds
        assert crd_validator(*kind) is not None


def typo(obj: Obj, path: list[Any], field: str) -> Obj:
    """`obj` with an unknown field added at `path`."""
    changed = copy.deepcopy(obj)
    node = changed
    for step in path:
        node = node[step]
    node[field] = "x"
    return changed


@pytest.mark.parametrize(
    ("kind", "name", "path"),
    [
        ("Deployment", "job-service", ["spec", "template", "spec", "containers", 0]),
        ("NetworkPolicy", "inference-service", ["spec"]),
        ("ServiceMonitor", "gateway", ["spec", "endpoints", 0]),
        ("PrometheusRule", "lipsync", ["spec", "groups", 0, "rules", 0]),
        ("ScaledObject", "inference-service", ["spec", "triggers", 0]),
    ],
)
def test_an_unknown_field_fails(kind: str, name: str, path: list[Any]) -> None:
    obj = named(env("gpu"), kind, name)
    assert problems(obj) == []
    assert problems(typo(obj, path, "livenesProbe"))


def test_an_unknown_kind_fails() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert problems(obj) == ["no schema for example.com/v1 Widget"]
