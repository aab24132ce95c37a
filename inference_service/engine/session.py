"""One render's own state: its seed, its face models and its stage timings.

``LipsyncEngine`` is long-lived and may run several renders at once on
different threads, so it holds only settings and what every job shares (the
animator's weights, the pool of face models). Each render makes a
``RenderSession``, and everything else it changes while it runs is made by the
render too and reachable from it alone: the animator's ``Animation`` (mouth
shapes, rigs, mel features), the face tracker, the idle motion and its random
generators (seeded from ``seed``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from inference_service.engine.face_models import FaceModels


@dataclass
class RenderSession:
    seed: int
    models: FaceModels  # lent to this render alone (cv2.dnn nets are not thread-safe)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the time spent in the ``with`` block to ``stage``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - started

    def timings_ms(self) -> dict[str, int]:
        return {stage: round(seconds * 1000) for stage, seconds in self.timings.items()}
