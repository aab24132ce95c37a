"""The SDK README's Python examples run as they are written, against the real stack.

Each ```python block of sdk/python/README.md runs in a fresh interpreter
with LIPSYNC_API_KEY and LIPSYNC_BASE_URL set, the walk-through's media
address (127.0.0.1:8099) swapped for the test's media host.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sdk.conftest import SdkStack

README = Path(__file__).resolve().parents[2] / "sdk" / "python" / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.integration
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(sdk_stack: SdkStack, tmp_path: Path, index: int) -> None:
    account = sdk_stack.account(credits=100)
    code = BLOCKS[index].replace("http://127.0.0.1:8099", sdk_stack.media.url)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=sdk_stack.cli_env(account.key),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if "job.download(" in code:
        assert "completed" in result.stdout and (tmp_path / "out.mp4").stat().st_size > 0
    if "ConflictError" in code:
        assert "409 job_finished" in result.stdout
    if "AsyncClient" in code:
        assert result.stdout.startswith("completed http")
