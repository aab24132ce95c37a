from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from billing_service.ledger import Ledger
from tests.billing_service.billing_harness import BillingHarness, open_ledger, running_billing


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with open_ledger(tmp_path) as opened:
        yield opened


@pytest.fixture
async def billing(tmp_path: Path) -> AsyncIterator[BillingHarness]:
    async with running_billing(tmp_path) as harness:
        yield harness
