"""Fixtures shared by the engine tests."""

from __future__ import annotations

import pytest

from inference_service.engine import LipsyncEngine


@pytest.fixture(scope="module")
def engine() -> LipsyncEngine:
    """The built-in engine, set up once per test module (a module may override it)."""
    engine = LipsyncEngine()
    engine.setup()
    return engine
