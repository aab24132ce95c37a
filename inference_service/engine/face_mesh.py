"""MediaPipe's 468-point face mesh, run on a rotated square crop around a detected face.

Model contract (checked on a real portrait): input 1x3x192x192 RGB in [0, 1];
outputs 1404 values (x, y, z per landmark, x/y in crop pixels) and one logit
saying whether the crop holds a face. The crop follows MediaPipe's
``face_detection_to_roi``: the detection box's centre, 1.5 x its longer
side, rotated so the eyes are level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from inference_service.engine.face_detect import FaceBox
from inference_service.engine.models import FACE_MESH, load_tflite, models_dir

FloatArray = npt.NDArray[np.float32]

INPUT_SIZE = 192
NUM_LANDMARKS = 468
ROI_SCALE = 1.5
MIN_FACE_PRESENCE = 0.5


@dataclass(frozen=True)
class FaceLandmarks:
    points: FloatArray  # (468, 2) image pixels
    presence: float  # probability that the crop held a face


class FaceMesh:
    def __init__(self, model_folder: str | Path | None = None) -> None:
        self._net = load_tflite(models_dir(model_folder) / FACE_MESH)

    def landmarks(self, image_bgr: npt.NDArray[np.uint8], face: FaceBox) -> FaceLandmarks | None:
        """Landmarks in image pixels, or None when the model says the crop holds no face."""
        to_crop = crop_transform(face)
        crop = cv2.warpAffine(
            image_bgr,
            to_crop,
            (INPUT_SIZE, INPUT_SIZE),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        self._net.setInput(np.ascontiguousarray(rgb.transpose(2, 0, 1)[np.newaxis]))
        outputs = self._net.forward(self._net.getUnconnectedOutLayersNames())
        raw = next(o for o in outputs if o.size >= NUM_LANDMARKS * 3)
        logit = float(next(o for o in outputs if o.size == 1).ravel()[0])
        presence = 1.0 / (1.0 + math.exp(-max(-80.0, min(80.0, logit))))
        if presence < MIN_FACE_PRESENCE:
            return None
        crop_points = raw.reshape(-1)[: NUM_LANDMARKS * 3].reshape(NUM_LANDMARKS, 3)[:, :2]
        back = cv2.invertAffineTransform(to_crop)
        points = crop_points @ back[:, :2].T + back[:, 2]
        return FaceLandmarks(points=points.astype(np.float32), presence=presence)


def crop_transform(face: FaceBox) -> FloatArray:
    """2x3 affine matrix from image pixels to the 192x192 model input."""
    (left_x, left_y), (right_x, right_y) = face.keypoints[0], face.keypoints[1]
    angle = math.atan2(right_y - left_y, right_x - left_x)  # roll of the eye line
    side = face.size * ROI_SCALE
    cx, cy = face.center
    ux = np.array([math.cos(angle), math.sin(angle)]) * side
    uy = np.array([-math.sin(angle), math.cos(angle)]) * side
    top_left = np.array([cx, cy]) - ux / 2 - uy / 2
    src = np.array([top_left, top_left + ux, top_left + uy], dtype=np.float32)
    dst = np.array([[0, 0], [INPUT_SIZE, 0], [0, INPUT_SIZE]], dtype=np.float32)
    return np.asarray(cv2.getAffineTransform(src, dst), dtype=np.float32)
