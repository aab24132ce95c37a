"""Every kustomize folder renders, and each environment is exactly its services.

An environment folder (envs/dev, envs/prod, overlays/gpu) lists one folder per
service and one for the platform; applying a service's folder alone must roll
out the same objects the whole stack has for it, so the stack is checked to be
the union of its parts with nothing twice.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import (
    ENVIRONMENTS,
    K8S,
    REPO,
    SERVICES,
    RenderError,
    env,
    key,
    kustomizations,
    named,
    of_kind,
    pod_spec,
    render,
)


def test_every_environment_and_service_folder_is_found() -> None:
    folders = {path.relative_to(K8S).as_posix() for path in kustomizations()}
    for name in ("envs/dev", "envs/prod", "overlays/gpu"):
        assert name in folders
    for service in SERVICES:
        assert f"services/{service}" in folders
        assert f"envs/dev/{service}" in folders
        assert f"envs/prod/{service}" in folders


@pytest.mark.parametrize(
    "folder", kustomizations(), ids=lambda path: path.relative_to(K8S).as_posix()
)
def test_folder_renders(folder: Path) -> None:
    objects = render(folder)
    assert objects, "renders to nothing"
    counts = Counter(key(obj) for obj in objects)
    assert not [name for name, count in counts.items() if count > 1]


def test_a_broken_folder_is_reported(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(RenderError, match=r"missing\.yaml"):
        render(tmp_path)


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_environment_is_the_union_of_its_folders(name: str) -> None:
    folder = ENVIRONMENTS[name]
    listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    parts: list[tuple[str, str, str]] = []
    for entry in listed:
        assert (folder / entry).is_dir(), f"{entry}: an environment lists folders only"
        parts.extend(key(obj) for obj in render((folder / entry).resolve()))
    assert len(parts) == len(set(parts)), "an object is in two folders"
    assert set(parts) == {key(obj) for obj in env(name)}


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_everything_is_in_the_lipsync_namespace(name: str) -> None:
    for obj in env(name):
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == "lipsync"
        else:
            assert obj["metadata"].get("namespace") == "lipsync", key(obj)


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_each_service_has_its_own_config_map(name: str) -> None:
    """A changed value rolls only the service whose ConfigMap it is in: each
    Deployment loads one ConfigMap of its own, whose name carries a content hash."""
    objects = env(name)
    users: dict[str, set[str]] = {}
    for deployment in of_kind(objects, "Deployment"):
        service = deployment["metadata"]["name"]
        refs = [
            source["configMapRef"]["name"]
            for container in pod_spec(deployment)["containers"]
            for source in container.get("envFrom", [])
            if "configMapRef" in source
        ]
        assert len(refs) == 1, f"{service} loads {refs}"
        assert refs[0].startswith(f"{service}-config-"), f"{service}: {refs[0]}"
        named(objects, "ConfigMap", refs[0])
        users.setdefault(refs[0], set()).add(service)
    assert all(len(deployments) == 1 for deployments in users.values()), users


def test_no_file_of_deploy_is_left_out() -> None:
    """Every YAML file under deploy/k8s is used by some kustomization."""
    used: set[Path] = set()
    for path in K8S.rglob("kustomization.yaml"):
        doc = yaml.safe_load(path.read_text())
        entries = list(doc.get("resources", []))
        entries += [p["path"] for p in doc.get("patches", []) if "path" in p]
        for entry in entries:
            used.add((path.parent / entry).resolve())
    unused = [
        path.relative_to(REPO).as_posix()
        for path in K8S.rglob("*.yaml")
        if path.name != "kustomization.yaml" and path.resolve() not in used
    ]
    assert not unused
