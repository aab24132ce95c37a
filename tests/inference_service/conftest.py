"""Fixtures shared by the engine tests."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inference_service.engine import LipsyncEngine
from inference_service.media import encode


@pytest.fixture(scope="module")
def engine() -> LipsyncEngine:
    """The built-in engine, set up once per test module (a module may override it)."""
    engine = LipsyncEngine()
    engine.setup()
    return engine


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """A digest of every frame each output file was given, by file name.

    For comparing renders: x264 with frame threads does not always produce the
    same bitstream for the same frames on a loaded machine, so decoded outputs
    would test the encoder's scheduling, not the engine."""
    frames: dict[str, list[str]] = {}
    write = encode.Mp4Writer.write_bgr
    lock = threading.Lock()

    def record(writer: encode.Mp4Writer, frame: np.ndarray) -> None:
        name = Path(writer._container.name).name
        with lock:
            frames.setdefault(name, []).append(hashlib.sha256(frame.tobytes()).hexdigest())
        write(writer, frame)

    monkeypatch.setattr(encode.Mp4Writer, "write_bgr", record)
    yield frames
