from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.auth_service.auth_harness import AuthHarness, running_auth


@pytest.fixture
async def auth(tmp_path: Path) -> AsyncIterator[AuthHarness]:
    async with running_auth(tmp_path) as harness:
        yield harness
