"""Turn CustomResourceDefinitions into the strict JSON schemas the manifest tests use.

The repository keeps one JSON schema per custom kind the manifests create
(KEDA's ScaledObject, the Prometheus Operator's ServiceMonitor and
PrometheusRule) under tests/deploy/schemas/, so `make test` needs no cluster and
no network. They are the `openAPIV3Schema` of the upstream CRD, made strict the
way the API server treats a structural schema: a field the schema does not name
is an error (the server would prune it silently, which hides a typo), except
where the schema says `x-kubernetes-preserve-unknown-fields`. Descriptions are
dropped to keep the files small.

Kept now: KEDA 2.20 (`config/crd/bases/keda.sh_scaledobjects.yaml`) and the
Prometheus Operator 0.93.0 (`example/prometheus-operator-crd/`). Regenerate
from the CRD files of the releases you run after upgrading either:

    .venv/bin/python -m tests.deploy.crd_schemas keda.sh_scaledobjects.yaml \\
        monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

SCHEMAS = Path(__file__).parent / "schemas"


def schema_file(kind: str, api_version: str) -> Path:
    """Where the schema of `kind` at `api_version` (group/version) is kept."""
    group, _, version = api_version.rpartition("/")
    return SCHEMAS / f"{kind.lower()}-{group}-{version}.json"


def strict(node: Any) -> Any:
    """The schema without descriptions, closed to fields it does not name."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items() if key != "description"}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def convert(crd: dict[str, Any]) -> dict[Path, dict[str, Any]]:
    """One schema per served version of a CRD."""
    spec = crd["spec"]
    out = {}
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = strict(version["schema"]["openAPIV3Schema"])
        # The CRD leaves metadata open (the server checks it as ObjectMeta).
        schema["properties"]["metadata"] = {"type": "object"}
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
        api_version = f"{spec['group']}/{version['name']}"
        out[schema_file(spec["names"]["kind"], api_version)] = schema
    return out


def main(paths: list[str]) -> None:
    for path in paths:
        for crd in yaml.safe_load_all(Path(path).read_text()):
            for target, schema in convert(crd).items():
                target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                print(f"{path} -> {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
