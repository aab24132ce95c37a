"""The face detector and face mesh a render uses, and the pool that lends them out.

cv2.dnn networks keep per-call state (the input blob, the layer buffers) and
are not thread-safe, while one engine may render several jobs at once, each on
a thread of its own (a video render tracks faces on its prefetch thread). So
each render borrows a ``FaceModels`` of its own for its whole length instead of
sharing one behind a lock: renders never wait for one another's face tracking,
which is most of a video frame's CPU time. Returned models are lent again, so
the networks (about 40 ms to load) are loaded once per render running at the
same time, not once per render.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from inference_service.engine.face_detect import FaceDetector
from inference_service.engine.face_mesh import FaceMesh


@dataclass(frozen=True)
class FaceModels:
    """A detector and a mesh for one user at a time (one render, or one test)."""

    detector: FaceDetector
    mesh: FaceMesh

    @classmethod
    def load(cls, models_dir: str | Path | None = None) -> FaceModels:
        return cls(FaceDetector(models_dir), FaceMesh(models_dir))


class FaceModelPool:
    """Lends each caller ``FaceModels`` nobody else holds, loading more when all are out."""

    def __init__(self, models_dir: str | Path | None = None) -> None:
        self._models_dir = models_dir
        self._idle: list[FaceModels] = []
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Load a set now, ready for the next render (and a missing model fails here)."""
        models = FaceModels.load(self._models_dir)
        with self._lock:
            self._idle.append(models)

    @contextmanager
    def borrow(self) -> Iterator[FaceModels]:
        with self._lock:
            models = self._idle.pop() if self._idle else None
        if models is None:
            models = FaceModels.load(self._models_dir)
        try:
            yield models
        finally:
            with self._lock:
                self._idle.append(models)
