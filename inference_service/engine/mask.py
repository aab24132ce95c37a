"""The user's ``mask_image``: white marks where pixels may change, black where they may not.

The mask is scaled to the output frame and used as a per-pixel blend weight
between the source frame and the rendered one, so a black pixel is exactly
the source and a grey one changes only partly. Only the bounding box of the
mask's non-black area is blended per frame; everything else is the source.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from inference_service.media.image import load_image_bgr
from inference_service.media.probe import DEFAULT_MAX_IMAGE_SIDE

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]


class FrameMask:
    def __init__(self, weights: FloatArray) -> None:
        self.full = bool(np.all(weights >= 1.0))
        rows, cols = np.nonzero(weights > 0)
        if rows.size:
            self.box: tuple[int, int, int, int] | None = (
                int(rows.min()),
                int(rows.max()) + 1,
                int(cols.min()),
                int(cols.max()) + 1,
            )
            y0, y1, x0, x1 = self.box
            self._weights = weights[y0:y1, x0:x1, np.newaxis]
        else:
            self.box = None
            self._weights = np.zeros((0, 0, 1), np.float32)

    @classmethod
    def load(
        cls, path: str | Path, width: int, height: int, max_side: int = DEFAULT_MAX_IMAGE_SIDE
    ) -> FrameMask:
        """Decode a mask image (same limits as the portrait) and scale it to the frame."""
        image = load_image_bgr(path, max_side)
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        scaled = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
        return cls((scaled.astype(np.float32) / 255.0).astype(np.float32))

    def apply(self, source: UInt8Array, rendered: UInt8Array) -> UInt8Array:
        """``rendered`` where the mask is white, ``source`` where it is black, blended between."""
        if self.full:
            return rendered
        out = source.copy()
        if self.box is None:
            return out
        y0, y1, x0, x1 = self.box
        src = source[y0:y1, x0:x1].astype(np.float32)
        new = rendered[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.rint(src + (new - src) * self._weights).astype(np.uint8)
        return out
