from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from lipsync_common.heap import YOUNG_GENERATION_THRESHOLD, settle_after_startup


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settling_freezes_the_start_up_heap_and_collects_less_often(
    restored_collector: None,
) -> None:
    kept = [object() for _ in range(100)]
    settle_after_startup()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD
