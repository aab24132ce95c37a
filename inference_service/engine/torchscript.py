"""Run an operator-supplied TorchScript lip-sync model (Wav2Lip-style contract).

Contract (see CAPABILITIES.md): ``model(faces, mels) -> crops`` with

* ``faces``: float32 ``(N, 6, 96, 96)`` in [0, 1], channels-first RGB; channels
  0-2 are the target face crop with its lower half (rows 48-95) zeroed, 3-5
  the same crop unmasked as the identity reference (as Wav2Lip's inference);
* ``mels``: float32 ``(N, 1, 80, 16)``, the 0.2 s log-mel window of each frame
  (``mel.py``);
* output: float32 ``(N, 3, 96, 96)`` in [0, 1], the face crop with a mouth.

This module does everything else: the face crop (a square around the mesh
landmarks, the chin inside), mel features per audio track, batching frames
on the device (CUDA when torch sees a GPU), and pasting the crop back
through a feathered mask around the mouth, so nothing outside it changes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import torch

from inference_service.engine import landmarks as lm
from inference_service.engine.animator import FrameJob
from inference_service.engine.mel import MEL_STEP, N_MELS, log_mel, mel_window

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]

CROP = 96
DEFAULT_BATCH = 32
# Square crop side as a multiple of the landmarks' extent, and its downward shift (of the side).
CROP_SCALE = 1.2
CROP_DROP = 0.06
_MOUTH = lm.OUTER_UPPER_LIP + lm.OUTER_LOWER_LIP + (lm.CHIN,)


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def crop_matrix(points: FloatArray) -> FloatArray:
    """2x3 affine matrix from frame pixels to the 96x96 crop."""
    low, high = points.min(axis=0), points.max(axis=0)
    side = float(max(high - low)) * CROP_SCALE
    cx = float(low[0] + high[0]) / 2
    cy = float(low[1] + high[1]) / 2 + CROP_DROP * side
    scale = CROP / side
    return np.array(
        [[scale, 0, CROP / 2 - scale * cx], [0, scale, CROP / 2 - scale * cy]], np.float32
    )


def mouth_mask(points: FloatArray, shape: tuple[int, int]) -> tuple[FloatArray, tuple[int, ...]]:
    """Feathered weights around lips and chin, and their box (y0, y1, x0, x1) in the frame."""
    width = float(np.linalg.norm(points[lm.MOUTH_CORNER_RIGHT] - points[lm.MOUTH_CORNER_LEFT]))
    margin = max(2, round(0.35 * width))
    region = points[list(_MOUTH)]
    x0, y0 = np.floor(region.min(axis=0)).astype(int) - 2 * margin
    x1, y1 = np.ceil(region.max(axis=0)).astype(int) + 2 * margin
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, shape[1]), min(y1, shape[0])
    mask = np.zeros((max(y1 - y0, 1), max(x1 - x0, 1)), np.uint8)
    hull = cv2.convexHull(np.round(region - [x0, y0]).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255)
    mask = cv2.dilate(mask, np.ones((margin, margin), np.uint8))
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), margin / 2)
    return soft[..., np.newaxis].astype(np.float32), (y0, y1, x0, x1)


class TorchScriptAnimator:
    """An ``Animator`` around a scripted model; frames go to the device in batches."""

    # The model redraws the whole lower face, interior included.
    draws_interior = False

    def __init__(
        self, model_path: str | Path, *, device: str | None = None, batch_size: int = DEFAULT_BATCH
    ) -> None:
        self.device = device or pick_device()
        self.batch_size = batch_size
        if self.device == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        self._model = torch.jit.load(str(model_path), map_location=self.device).eval()

    def start(self, tracks: Sequence[FloatArray], fps: float, frames: int) -> TorchScriptAnimation:
        return TorchScriptAnimation(
            self._model, self.device, [log_mel(track) for track in tracks], fps
        )


class TorchScriptAnimation:
    """One job's mel features per track, run through the animator's (shared) model.

    A scripted module in ``inference_mode`` keeps no state between calls, so jobs on
    several threads may call it at once.
    """

    def __init__(
        self, model: torch.jit.ScriptModule, device: str, mels: list[FloatArray], fps: float
    ) -> None:
        self._model = model
        self._device = device
        self._mels = mels
        self._fps = fps

    def animate(self, jobs: Sequence[FrameJob]) -> list[UInt8Array]:
        outputs = [job.frame.copy() for job in jobs]
        entries = [(n, face) for n, job in enumerate(jobs) for face in job.faces]
        if not entries:
            return outputs
        matrices = [crop_matrix(face.points) for _, face in entries]
        crops = np.stack(
            [
                cv2.warpAffine(
                    jobs[n].frame,
                    matrix,
                    (CROP, CROP),
                    flags=cv2.INTER_AREA,
                    borderMode=cv2.BORDER_REPLICATE,
                )
                for (n, _), matrix in zip(entries, matrices, strict=True)
            ]
        )
        rgb = crops[..., ::-1].astype(np.float32) / 255.0
        masked = rgb.copy()
        masked[:, CROP // 2 :] = 0.0
        faces = np.concatenate([masked, rgb], axis=3).transpose(0, 3, 1, 2)
        mels = np.stack(
            [mel_window(self._mels[face.track], jobs[n].index, self._fps) for n, face in entries]
        )[:, np.newaxis]
        assert mels.shape[1:] == (1, N_MELS, MEL_STEP)
        with torch.inference_mode():
            result = self._model(
                torch.from_numpy(np.ascontiguousarray(faces)).to(self._device),
                torch.from_numpy(np.ascontiguousarray(mels)).to(self._device),
            )
        generated = result.clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()
        for (n, face), matrix, crop in zip(entries, matrices, generated, strict=True):
            self._paste(outputs[n], jobs[n].frame, face.points, matrix, crop)
        return outputs

    @staticmethod
    def _paste(
        canvas: UInt8Array,
        frame: UInt8Array,
        points: FloatArray,
        matrix: FloatArray,
        crop: FloatArray,
    ) -> None:
        weights, (y0, y1, x0, x1) = mouth_mask(points, frame.shape[:2])
        if y1 <= y0 or x1 <= x0:
            return
        bgr = np.ascontiguousarray(crop[..., ::-1] * 255.0, dtype=np.float32)
        back = cv2.invertAffineTransform(matrix)
        back[:, 2] -= (x0, y0)  # straight into the mask's box
        patch = cv2.warpAffine(
            bgr, back, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        source = frame[y0:y1, x0:x1].astype(np.float32)
        blended = source + (patch - source) * weights
        canvas[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
