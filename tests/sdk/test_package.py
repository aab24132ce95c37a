"""The SDK as a package of its own: installable alone, typed, strict-mypy clean.

`pip install ./sdk/python` into a fresh virtualenv (pip as `make install`
runs it, from the machine's package index) must give a working `lipsync`
without anything else of this repository; that venv has no `rich`, so it
also draws the plain progress bar, checked on a pseudo-terminal.
"""

from __future__ import annotations

import io
import os
import pty
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lipsync_client import cli
from lipsync_client.models import JobData, Progress
from lipsync_client.mp4 import duration_seconds
from lipsync_client.progress import NoDisplay, PlainDisplay, make_display

from tests.media_fixtures import write_talking_video
from tests.sdk.conftest import SdkStack

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / "sdk" / "python"


def test_mypy_strict_on_the_package() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            "pyproject.toml",
            "--cache-dir",
            str(REPO / ".mypy_cache" / "sdk"),
        ],
        cwd=SDK,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_only_httpx_at_runtime() -> None:
    text = (SDK / "pyproject.toml").read_text()
    assert 'dependencies = ["httpx>=0.27,<1"]' in text
    assert (SDK / "lipsync_client" / "py.typed").exists()


def test_mp4_duration_from_the_container(tmp_path: Path) -> None:
    video = write_talking_video(tmp_path / "clip.mp4", 2.0)
    duration = duration_seconds(video)
    assert duration is not None and abs(duration - 2.0) < 0.05
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x08free" + b"x" * 100)
    assert duration_seconds(tmp_path / "junk.mp4") is None
    assert duration_seconds(tmp_path / "missing.mp4") is None


def test_plain_bar_redraws_one_line_per_bar() -> None:
    out = io.StringIO()
    display = PlainDisplay(out)
    display.upload("face.jpg", 50, 100)
    display.upload("face.jpg", 100, 100)
    job = JobData(id="j", progress=Progress("rendering", 40, 12))
    display.job(job)
    job.status, job.progress = "completed", None
    display.job(job)
    display.close()
    lines = out.getvalue().split("\n")
    assert "upload face.jpg" in lines[0] and "100%" in lines[0]
    assert "job rendering" in lines[1] and " 40% ETA 12 s" in lines[1]
    assert lines[1].endswith("job completed            [" + "#" * 30 + "] 100% " + " " * 20)
    # Not a terminal: nothing at all is drawn.
    assert isinstance(make_display(True, io.StringIO()), NoDisplay)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["image"], ["jobs"], ["estimate", "image", "a.jpg"], ["nonsense"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == cli.EXIT_USAGE, argv
    with pytest.raises(SystemExit) as helped:
        cli.main(["--help"])
    assert helped.value.code == 0
    assert "Exit codes" in capsys.readouterr().out


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    # A copy of sdk/python alone: nothing outside it can be needed, and pip's build/ stays out
    # of the checkout.
    source = root / "lipsync-client"
    shutil.copytree(SDK, source, ignore=shutil.ignore_patterns("*.egg-info", "build", ".*cache*"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    yield venv


def _run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_pip_install_alone_gives_a_working_lipsync(
    fresh_venv: Path, sdk_stack: SdkStack, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    python, lipsync = str(fresh_venv / "bin" / "python"), str(fresh_venv / "bin" / "lipsync")

    helped = _run(lipsync, "--help", env=env, cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "lipsync" in helped.stdout and "estimate" in helped.stdout

    probe = (
        "import importlib.util as u, pathlib, lipsync_client as l;"
        "print(pathlib.Path(l.__file__).parent);"
        "print(pathlib.Path(l.__file__).with_name('py.typed').exists());"
        "print([m for m in ('lipsync_common', 'gateway', 'rich', 'fastapi') if u.find_spec(m)])"
    )
    seen = _run(python, "-c", probe, env=env, cwd=tmp_path)
    assert seen.returncode == 0, seen.stderr
    where, typed, others = seen.stdout.splitlines()
    assert Path(where).is_relative_to(fresh_venv), "imported from the repository, not the venv"
    assert typed == "True" and others == "[]"

    # It talks to the stack, and without rich it draws the plain bar on a terminal.
    account = sdk_stack.account(credits=50)
    run_env = {**sdk_stack.cli_env(account.key), "PATH": env.get("PATH", "")}
    balance = _run(lipsync, "balance", "--json", env=run_env, cwd=tmp_path)
    assert balance.returncode == 0, balance.stderr
    assert balance.stdout.strip().startswith("{") and '"api_credits": 50' in balance.stdout

    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [
                lipsync,
                "image",
                sdk_stack.url("portrait.jpg"),
                sdk_stack.url("speech-3s.wav"),
                "-o",
                "out.mp4",
            ],
            env=run_env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
        os.close(terminal)
        drawn = b""
        while select.select([controller], [], [], 120)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
        stdout, _ = process.communicate(timeout=30)
    finally:
        os.close(controller)
    assert process.returncode == 0
    assert b"job completed" in drawn and b"[" + b"#" * 30 + b"] 100%" in drawn
    assert stdout.decode().splitlines()[0] == "out.mp4"
    assert (tmp_path / "out.mp4").stat().st_size > 0
