"""Follow one face through a video: detection now and then, the face mesh every frame.

Running BlazeFace on every frame would cost more than the rest of the frame
(two models, ~5-20 ms on this CPU), so like MediaPipe's face-mesh graph we
run it every ``detect_every`` frames, or when the mesh loses the face, and
otherwise crop the next frame around the previous frame's landmarks.

Raw mesh landmarks jitter by a pixel or so from frame to frame; a warp that
follows them would make the mouth region shimmer. A One-Euro filter (Casiez
et al., CHI 2012) smooths them: heavily while the face is still, lightly
while it moves fast, so motion does not lag.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from inference_service.engine import landmarks as lm
from inference_service.engine.face_detect import FaceBox
from inference_service.engine.face_models import FaceModels

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]

DETECT_EVERY = 15
# One-Euro parameters: cutoff in Hz at rest; beta in Hz per (face size per second) of speed.
MIN_CUTOFF = 1.5
BETA = 6.0
DERIVATIVE_CUTOFF = 1.0
# The mesh crop follows landmarks; a face that moved more than this (face sizes) is re-detected.
MAX_JUMP = 0.5
_LEFT_EYE = lm.LEFT_EYE_UPPER + lm.LEFT_EYE_LOWER
_RIGHT_EYE = lm.RIGHT_EYE_UPPER + lm.RIGHT_EYE_LOWER


class OneEuroFilter:
    """Vectorised One-Euro filter over an array of points; speeds are scaled by ``scale``."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._value: FloatArray | None = None
        self._speed: FloatArray | None = None

    def reset(self) -> None:
        self._value = None
        self._speed = None

    def _alpha(self, cutoff: FloatArray | float) -> FloatArray:
        tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float32))
        return (1.0 / (1.0 + tau / self.period)).astype(np.float32)

    def __call__(self, value: FloatArray, scale: float) -> FloatArray:
        if self._value is None or self._speed is None:
            self._value = value.copy()
            self._speed = np.zeros_like(value)
            return value
        speed = (value - self._value) / self.period
        self._speed = self._speed + self._alpha(DERIVATIVE_CUTOFF) * (speed - self._speed)
        magnitude = np.linalg.norm(self._speed, axis=-1, keepdims=True) / max(scale, 1.0)
        alpha = self._alpha(MIN_CUTOFF + BETA * magnitude)
        self._value = (self._value + alpha * (value - self._value)).astype(np.float32)
        return self._value


def box_from_landmarks(points: FloatArray, calibration: tuple[float, float, float]) -> FaceBox:
    """A detector-like box around mesh landmarks (``calibration`` from a real detection)."""
    size_ratio, offset_x, offset_y = calibration
    low, high = points.min(axis=0), points.max(axis=0)
    size = float(max(high - low)) * size_ratio
    cx = float(low[0] + high[0]) / 2 + offset_x * size
    cy = float(low[1] + high[1]) / 2 + offset_y * size
    eyes = np.stack([points[list(_LEFT_EYE)].mean(axis=0), points[list(_RIGHT_EYE)].mean(axis=0)])
    keypoints = np.zeros((6, 2), np.float32)
    keypoints[:2] = eyes
    return FaceBox(cx - size / 2, cy - size / 2, size, size, 1.0, keypoints)


def calibrate(face: FaceBox, points: FloatArray) -> tuple[float, float, float]:
    """How a detection box relates to its landmarks' bounding box (size ratio, centre offset)."""
    low, high = points.min(axis=0), points.max(axis=0)
    mesh_size = float(max(high - low))
    cx, cy = face.center
    return (
        face.size / max(mesh_size, 1.0),
        (cx - float(low[0] + high[0]) / 2) / face.size,
        (cy - float(low[1] + high[1]) / 2) / face.size,
    )


class FaceTracker:
    """Smoothed 468-point landmarks of one face per frame, or None where there is none.

    One per video render: it holds that video's filter state and last face box.
    """

    def __init__(self, models: FaceModels, fps: float, *, detect_every: int = DETECT_EVERY) -> None:
        self._detector = models.detector
        self._mesh = models.mesh
        self._detect_every = detect_every
        self._filter = OneEuroFilter(fps)
        self._box: FaceBox | None = None
        self._calibration = (1.0, 0.0, 0.0)
        self._since_detect = 0
        self.detections = 0
        self.face_px = 0.0

    def update(self, frame: UInt8Array) -> FloatArray | None:
        """Landmarks for this frame (image pixels, smoothed), or None: no face here."""
        points = None
        if self._box is not None and self._since_detect < self._detect_every:
            found = self._mesh.landmarks(frame, self._box)
            points = None if found is None else found.points
        if points is None or self._jumped(points):
            points = self._detect(frame)
        if points is None:
            self._box = None
            self._filter.reset()
            return None
        self._since_detect += 1
        self._box = box_from_landmarks(points, self._calibration)
        self.face_px = self._box.size
        return self._filter(points, self._box.size)

    def _jumped(self, points: FloatArray) -> bool:
        assert self._box is not None
        centre = points.mean(axis=0)
        return bool(np.hypot(*(centre - self._box.center)) > MAX_JUMP * self._box.size)

    def _detect(self, frame: UInt8Array) -> FloatArray | None:
        self.detections += 1
        self._since_detect = 0
        faces = self._detector.detect(frame)
        if self._box is not None:
            # Stay with the face we were following, not whichever is largest now.
            previous = np.array(self._box.center)
            faces.sort(key=lambda face: float(np.hypot(*(np.array(face.center) - previous))))
        for face in faces[:4]:
            found = self._mesh.landmarks(frame, face)
            if found is not None:
                self._calibration = calibrate(face, found.points)
                return found.points
        return None
