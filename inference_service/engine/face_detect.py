"""BlazeFace face detection (MediaPipe short- and full-range models) decoded in numpy.

The TFLite graph stops at raw SSD outputs: per anchor, 16 regressors (box
centre, size, six keypoints, in input pixels relative to the anchor) and one
logit. Anchors, sigmoid and non-maximum suppression follow MediaPipe's
``face_detection_*_common.pbtxt`` and were checked against a real portrait.
Input is RGB scaled to [-1, 1], letterboxed to a square.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from inference_service.engine.models import (
    FULL_RANGE_DETECTOR,
    SHORT_RANGE_DETECTOR,
    load_tflite,
    models_dir,
)

FloatArray = npt.NDArray[np.float32]

MIN_SCORE = 0.5
NMS_IOU = 0.3
# MediaPipe clips logits at +-100; float32 sigmoid overflows sooner, 80 is safe.
RAW_SCORE_LIMIT = 80.0


@dataclass(frozen=True)
class DetectorSpec:
    file: str
    input_size: int
    strides: tuple[int, ...]
    # Same-stride layers are merged; with interpolated scale each layer adds 2 anchors per cell.
    anchors_per_layer: int


SHORT_RANGE = DetectorSpec(SHORT_RANGE_DETECTOR, 128, (8, 16, 16, 16), 2)
FULL_RANGE = DetectorSpec(FULL_RANGE_DETECTOR, 192, (4,), 1)


@dataclass(frozen=True)
class FaceBox:
    """A detected face in image pixels.

    ``keypoints`` rows: eye (image left), eye (image right), nose tip, mouth
    centre, ear region (image left), ear region (image right).
    """

    x: float
    y: float
    width: float
    height: float
    score: float
    keypoints: FloatArray  # (6, 2)

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2

    @property
    def size(self) -> float:
        return max(self.width, self.height)


def ssd_anchors(spec: DetectorSpec) -> FloatArray:
    """Anchor centres (normalised x, y) in the order of the model's outputs."""
    centres: list[FloatArray] = []
    index = 0
    strides = spec.strides
    while index < len(strides):
        stride = strides[index]
        repeats = 0
        while index < len(strides) and strides[index] == stride:
            repeats += spec.anchors_per_layer
            index += 1
        cells = spec.input_size // stride
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cell_centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell_centres, repeats, axis=0))
    return np.concatenate(centres).astype(np.float32)


class FaceDetector:
    """BlazeFace short- and full-range detectors over one image."""

    def __init__(self, model_folder: str | Path | None = None) -> None:
        folder = models_dir(model_folder)
        self._stages = [
            (spec, load_tflite(folder / spec.file), ssd_anchors(spec))
            for spec in (SHORT_RANGE, FULL_RANGE)
        ]

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> list[FaceBox]:
        """Face candidates above the score threshold: short-range ones first, each largest first.

        Both models run (a few ms each): the short-range model is precise on
        portraits but fires on some smooth gradients, and the full-range one
        finds faces too small for it. The caller confirms candidates with the
        face mesh's presence score, which rejects those false positives.
        """
        candidates: list[FaceBox] = []
        for spec, net, anchors in self._stages:
            faces = _run(spec, net, anchors, image_bgr)
            candidates.extend(sorted(faces, key=lambda face: face.size, reverse=True))
        return candidates


def _run(
    spec: DetectorSpec, net: cv2.dnn.Net, anchors: FloatArray, image_bgr: npt.NDArray[np.uint8]
) -> list[FaceBox]:
    size = spec.input_size
    height, width = image_bgr.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    # INTER_AREA avoids aliasing when a multi-megapixel photo shrinks to 128 px.
    resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_AREA)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).astype(np.float32) / 127.5 - 1.0
    net.setInput(np.ascontiguousarray(rgb.transpose(2, 0, 1)[np.newaxis]))
    outputs = net.forward(net.getUnconnectedOutLayersNames())
    regressors = next(o for o in outputs if o.shape[-1] == 16).reshape(-1, 8, 2)
    logits = next(o for o in outputs if o.shape[-1] == 1).reshape(-1)
    clipped = np.clip(logits, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
    scores = (1.0 / (1.0 + np.exp(-clipped))).astype(np.float32)
    keep = np.flatnonzero(scores > MIN_SCORE)
    if keep.size == 0:
        return []
    raw = (regressors[keep] / size).astype(np.float32)
    # Box centre and keypoints are offsets from the anchor; width/height are absolute.
    points = raw.copy()
    points[:, 0] += anchors[keep]
    points[:, 2:] += anchors[keep][:, np.newaxis, :]
    boxes = np.concatenate(
        [points[:, 0] - raw[:, 1] / 2, points[:, 0] + raw[:, 1] / 2], axis=1
    ).astype(np.float32)
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    faces = _weighted_nms(boxes[valid], points[valid, 2:], scores[keep][valid])
    # Undo the letterbox: tensor-normalised -> image pixels.
    result = []
    for box, keypoints, score in faces:
        px = (box * size - [pad_x, pad_y, pad_x, pad_y]) / scale
        kp = (keypoints * size - [pad_x, pad_y]) / scale
        result.append(
            FaceBox(
                x=float(px[0]),
                y=float(px[1]),
                width=float(px[2] - px[0]),
                height=float(px[3] - px[1]),
                score=float(score),
                keypoints=kp.astype(np.float32),
            )
        )
    return result


def _iou(box: FloatArray, others: FloatArray) -> FloatArray:
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[2], others[:, 2])
    y1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return (inter / np.maximum(area + areas - inter, 1e-9)).astype(np.float32)


def _weighted_nms(
    boxes: FloatArray, keypoints: FloatArray, scores: FloatArray
) -> list[tuple[FloatArray, FloatArray, float]]:
    """MediaPipe's weighted NMS: overlapping detections are averaged, weighted by score.

    Averaging (rather than keeping only the best) steadies the box, which
    matters because the face mesh crop is derived from it.
    """
    order = np.argsort(-scores)
    remaining = order
    faces = []
    while remaining.size:
        best = remaining[0]
        overlaps = _iou(boxes[best], boxes[remaining])
        cluster = remaining[overlaps > NMS_IOU]
        weights = scores[cluster][:, np.newaxis]
        total = float(weights.sum())
        box = (boxes[cluster] * weights).sum(axis=0) / total
        kps = (keypoints[cluster] * weights[:, :, np.newaxis]).sum(axis=0) / total
        faces.append((box, kps, float(scores[best])))
        remaining = remaining[overlaps <= NMS_IOU]
    return faces
