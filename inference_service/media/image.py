"""Decode a still image after its header passed the size check."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from inference_service.media.errors import MediaError, short_reason
from inference_service.media.probe import DEFAULT_MAX_IMAGE_SIDE, probe_image

UInt8Array = npt.NDArray[np.uint8]


def load_image_bgr(path: str | Path, max_pixels_side: int = DEFAULT_MAX_IMAGE_SIDE) -> UInt8Array:
    """Return the image as a BGR uint8 array (EXIF orientation applied, alpha dropped).

    ``probe_image`` runs first so that an oversized or non-image file is refused
    before OpenCV allocates anything for it.
    """
    probe_image(path, max_pixels_side)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise MediaError(f"image could not be decoded: {short_reason(exc).lower()}") from exc
    # imdecode applies the EXIF orientation, so phone portraits come out upright.
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise MediaError("image could not be decoded: the pixel data is corrupt or truncated")
    return np.ascontiguousarray(image, dtype=np.uint8)
