"""Faces in output frames: BlazeFace + the 468-point face mesh, tracked, left to right.

Mouth opening is the inner-lip gap (landmarks 13/14) over the distance between
the outer eye corners (33/263): independent of resolution and zoom. The models
are the engine's own model files, but detection, tracking and every measure
here are independent of the engine's code.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference_service.engine.face_detect import FaceBox, FaceDetector
from inference_service.engine.face_mesh import FaceMesh

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]

# Mesh indices: inner lip centres, outer eye corners, lower face oval, nose base.
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
EYE_OUTER_LEFT, EYE_OUTER_RIGHT = 33, 263
# Eye corners per eye (image left, image right): their midpoints define the eye line.
EYE_LEFT, EYE_RIGHT = (33, 133), (263, 362)
JAW = (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361)
NOSE_BASE = (98, 2, 327)
CHIN = 152
_MAX_CANDIDATES = 8
# Mesh re-runs on a newly detected face, on the crop that tracking will use next.
REFINE_PASSES = 2


@functools.cache
def _models() -> tuple[FaceDetector, FaceMesh]:
    return FaceDetector(), FaceMesh()


@dataclass(frozen=True)
class _Anchor:
    """Where the detector put its box relative to the eyes, in eye-distance units.

    Tracking reuses it to place the next frame's mesh crop as the detector
    would, from the previous landmarks (MediaPipe's own tracking scheme).
    """

    offset: FloatArray  # box centre from the eye midpoint, along / across the eye line
    size: float


def _eye_frame(points: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, float]:
    left = points[list(EYE_LEFT)].mean(axis=0)
    right = points[list(EYE_RIGHT)].mean(axis=0)
    distance = max(float(np.linalg.norm(right - left)), 1e-6)
    along = (right - left) / distance
    across = np.array([-along[1], along[0]], np.float32)  # image "down" for an upright face
    return left, right, along, across, distance


def _calibrate(box: FaceBox, points: FloatArray) -> _Anchor:
    left, right, along, across, distance = _eye_frame(points)
    rel = np.asarray(box.center, np.float32) - (left + right) / 2
    offset = np.array([rel @ along, rel @ across], np.float32) / distance
    return _Anchor(offset=offset, size=box.size / distance)


def _box_from(points: FloatArray, anchor: _Anchor) -> FaceBox:
    left, right, along, across, distance = _eye_frame(points)
    centre = (left + right) / 2 + (anchor.offset[0] * along + anchor.offset[1] * across) * distance
    size = anchor.size * distance
    keypoints = np.zeros((6, 2), np.float32)
    keypoints[0], keypoints[1] = left, right
    return FaceBox(
        x=float(centre[0] - size / 2),
        y=float(centre[1] - size / 2),
        width=size,
        height=size,
        score=1.0,
        keypoints=keypoints,
    )


class FaceTracker:
    """Face mesh landmarks of up to ``people`` faces per frame, ordered left to right.

    The first frame (and any frame where a face is lost) runs the detector;
    later frames crop around the previous landmarks, which is ~5x faster and
    steadier, as in MediaPipe's face-mesh pipeline.
    """

    def __init__(self, people: int = 1) -> None:
        self.people = people
        self._detector, self._mesh = _models()
        self._previous: list[tuple[FloatArray, _Anchor] | None] = [None] * people

    def faces(self, frame: UInt8Array) -> list[FloatArray]:
        """Landmarks of distinct mesh-confirmed faces, in the detector's order (largest first)."""
        return [points for points, _ in self._detect(frame)]

    def _detect(self, frame: UInt8Array) -> list[tuple[FloatArray, _Anchor]]:
        found: list[tuple[FloatArray, _Anchor]] = []
        for box in self._detector.detect(frame)[:_MAX_CANDIDATES]:
            cx, cy = box.center
            # Both detector models report the same face; keep the first hit per face.
            if any(_inside_hull(points, cx, cy) for points, _ in found):
                continue
            landmarks = self._mesh.landmarks(frame, box)
            if landmarks is not None:
                found.append(
                    self._refine(frame, landmarks.points, _calibrate(box, landmarks.points))
                )
            if len(found) == self.people:
                break
        return found

    def _refine(
        self, frame: UInt8Array, points: FloatArray, anchor: _Anchor
    ) -> tuple[FloatArray, _Anchor]:
        """Re-run the mesh on the crop tracking would use, so that the first frame and the
        following (tracked) ones are measured alike (the mesh's lip gap moves by ~0.01 eye
        distances with the crop)."""
        for _ in range(REFINE_PASSES):
            landmarks = self._mesh.landmarks(frame, _box_from(points, anchor))
            if landmarks is None:
                break
            points = landmarks.points
        return points, anchor

    def track(self, frame: UInt8Array) -> list[FloatArray | None]:
        """One slot per person (left first); None where that person was not found."""
        slots: list[tuple[FloatArray, _Anchor] | None] = [None] * self.people
        for index, previous in enumerate(self._previous):
            if previous is not None:
                landmarks = self._mesh.landmarks(frame, _box_from(*previous))
                if landmarks is not None:
                    slots[index] = (landmarks.points, previous[1])
        if any(slot is None for slot in slots):
            slots = self._assign(self._detect(frame), frame.shape[1])
        self._previous = slots
        return [slot[0] if slot is not None else None for slot in slots]

    def _assign(
        self, found: list[tuple[FloatArray, _Anchor]], width: int
    ) -> list[tuple[FloatArray, _Anchor] | None]:
        slots: list[tuple[FloatArray, _Anchor] | None] = [None] * self.people
        if len(found) == self.people:
            ordered = sorted(found, key=lambda face: float(face[0][:, 0].mean()))
            return list(ordered)
        # Fewer faces than people: each goes to the slot it was last seen in, or by position.
        for face in found:
            centre = face[0].mean(axis=0)
            free = [i for i in range(self.people) if slots[i] is None]
            seen = [i for i in free if self._previous[i] is not None]
            if seen:
                slot = min(seen, key=lambda i: _distance(self._previous[i], centre))
            else:
                slot = min(int(centre[0] / width * self.people), self.people - 1)
                slot = slot if slot in free else free[0]
            slots[slot] = face
        return slots


def _distance(previous: tuple[FloatArray, _Anchor] | None, centre: FloatArray) -> float:
    return (
        math.inf if previous is None else float(np.linalg.norm(previous[0].mean(axis=0) - centre))
    )


def _inside_hull(points: FloatArray, x: float, y: float) -> bool:
    low, high = points.min(axis=0), points.max(axis=0)
    return bool(low[0] <= x <= high[0] and low[1] <= y <= high[1])


def inter_ocular(points: FloatArray) -> float:
    return float(np.linalg.norm(points[EYE_OUTER_LEFT] - points[EYE_OUTER_RIGHT]))


def mouth_opening(points: FloatArray | None) -> float:
    """Inner-lip gap over inter-ocular distance; NaN when there is no face."""
    if points is None:
        return math.nan
    gap = float(np.linalg.norm(points[UPPER_INNER_LIP] - points[LOWER_INNER_LIP]))
    return gap / max(inter_ocular(points), 1e-6)


def face_box(points: FloatArray, margin: float = 0.35) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around the landmarks, widened by ``margin`` of the face size each side."""
    low, high = points.min(axis=0), points.max(axis=0)
    pad = margin * float(max(high - low))
    return (
        int(low[0] - pad),
        int(low[1] - pad),
        math.ceil(high[0] + pad),
        math.ceil(high[1] + pad),
    )
