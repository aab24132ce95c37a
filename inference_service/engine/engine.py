"""The lip-sync engine: ``setup()`` once, then render jobs (a cog-style predictor).

This module knows nothing of gRPC or NATS; the worker calls it with local
file paths and turns ``MediaError`` into a failed job with ``user_message``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from inference_service.engine.face_detect import FaceDetector
from inference_service.engine.face_mesh import FaceLandmarks, FaceMesh
from inference_service.engine.mouth_curve import mouth_openness
from inference_service.engine.mouth_rig import MouthRig
from inference_service.media.audio import load_audio
from inference_service.media.encode import (
    DEFAULT_CRF,
    DEFAULT_PRESET,
    Mp4Writer,
    even_size,
    frame_count,
)
from inference_service.media.errors import FaceTooSmallError, MediaError, NoFaceError
from inference_service.media.image import load_image_bgr
from inference_service.media.probe import DEFAULT_MAX_IMAGE_SIDE, probe_audio

UInt8Array = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float32]

SUPPORTED_HEIGHTS = (480, 720)
FPS = 25
# AAC at 48 kHz: every input rate maps onto it without a second resampling in the player.
AUDIO_RATE = 48000
# Below this the face mesh is unreliable and a mouth a few pixels wide cannot be animated.
MIN_FACE_PX = 64
MAX_AUDIO_S = 600.0
# Wider or taller than this and the output frame would be absurd (e.g. 480 x 30000 px).
MAX_ASPECT = 4.0
# Face candidates checked with the mesh (~3 ms each) before giving up.
MAX_CANDIDATES = 8


@dataclass(frozen=True)
class RenderResult:
    duration_s: float
    frames: int
    seed: int
    width: int
    height: int
    timings_ms: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedFace:
    """A decoded portrait with its face landmarks, in source-image pixels."""

    image: UInt8Array
    landmarks: FaceLandmarks
    face_px: int


def resolve_seed(seed: int | None) -> int:
    """The seed a job runs with: the caller's, or a fresh random one for None / negative."""
    if seed is None or seed < 0:
        return secrets.randbelow(2**31)
    return int(seed)


class LipsyncEngine:
    """Built-in engine: BlazeFace + face mesh landmarks, audio-driven mouth warp, x264 encode."""

    def __init__(
        self,
        *,
        models_dir: str | Path | None = None,
        min_face_px: int = MIN_FACE_PX,
        max_image_side: int = DEFAULT_MAX_IMAGE_SIDE,
        max_audio_s: float | None = MAX_AUDIO_S,
        preset: str = DEFAULT_PRESET,
        crf: int = DEFAULT_CRF,
    ) -> None:
        self._models_dir = models_dir
        self.min_face_px = min_face_px
        self.max_image_side = max_image_side
        self.max_audio_s = max_audio_s
        self.preset = preset
        self.crf = crf
        # The built-in engine is OpenCV/numpy on the CPU; a neural engine would report "cuda".
        self.device = "cpu"
        self._detector: FaceDetector | None = None
        self._mesh: FaceMesh | None = None
        # cv2.dnn networks keep per-call state; a worker may render jobs on several threads.
        self._models_lock = threading.Lock()

    def setup(self) -> None:
        """Load the models once; later calls are no-ops."""
        with self._models_lock:
            if self._detector is None:
                self._detector = FaceDetector(self._models_dir)
                self._mesh = FaceMesh(self._models_dir)
                cv2.setNumThreads(os.cpu_count() or 1)

    def prepare_face(self, image_path: str | Path) -> PreparedFace:
        """Decode the portrait and locate the largest face; raises MediaError subclasses."""
        self.setup()
        assert self._detector is not None and self._mesh is not None
        image = load_image_bgr(image_path, self.max_image_side)
        with self._models_lock:
            faces = self._detector.detect(image)[:MAX_CANDIDATES]
            # The first candidate the face mesh confirms wins; detector-only hits on
            # textures and gradients are dropped here.
            for face in faces:
                landmarks = self._mesh.landmarks(image, face)
                if landmarks is not None:
                    break
            else:
                raise NoFaceError()
        face_px = round(face.size)
        if face_px < self.min_face_px:
            raise FaceTooSmallError(face_px, self.min_face_px)
        return PreparedFace(image=image, landmarks=landmarks, face_px=face_px)

    def render_image(
        self,
        image_path: str | Path,
        audio_path: str | Path,
        out_path: str | Path,
        *,
        height: int = 480,
        seed: int | None = None,
    ) -> RenderResult:
        """Animate the portrait's mouth to the audio; write an H.264/AAC MP4 to ``out_path``."""
        if height not in SUPPORTED_HEIGHTS:
            raise ValueError(f"height must be one of {SUPPORTED_HEIGHTS}, not {height}")
        used_seed = resolve_seed(seed)
        timings: dict[str, float] = {}

        started = time.perf_counter()
        info = probe_audio(audio_path, max_duration_s=self.max_audio_s)
        audio = load_audio(audio_path, AUDIO_RATE, channels=min(info.channels, 2))
        # Decoders may emit codec padding past the stated end; the stated duration is what
        # the user was billed for and what the output must last.
        audio = audio[:, : max(1, round(info.duration_s * AUDIO_RATE))]
        self.setup()
        timings["decode"] = time.perf_counter() - started

        started = time.perf_counter()
        prepared = self.prepare_face(image_path)
        frame, points = scale_to_height(prepared.image, prepared.landmarks.points, height)
        rig = MouthRig(frame, points)
        duration_s = audio.shape[1] / AUDIO_RATE
        frames = frame_count(duration_s, FPS)
        openness = mouth_openness(audio.mean(axis=0), AUDIO_RATE, FPS, frames)
        timings["detect"] = time.perf_counter() - started

        render_s = self._encode(out_path, frame, rig, openness, audio, timings)
        timings["render"] = render_s
        return RenderResult(
            duration_s=round(duration_s, 3),
            frames=frames,
            seed=used_seed,
            width=frame.shape[1],
            height=frame.shape[0],
            timings_ms={stage: round(seconds * 1000) for stage, seconds in timings.items()},
        )

    def _encode(
        self,
        out_path: str | Path,
        frame: UInt8Array,
        rig: MouthRig,
        openness: FloatArray,
        audio: FloatArray,
        timings: dict[str, float],
    ) -> float:
        """Render and encode frame by frame; returns the seconds spent rendering."""
        render_s = 0.0
        canvas = frame.copy()
        try:
            with Mp4Writer(
                out_path,
                width=frame.shape[1],
                height=frame.shape[0],
                fps=FPS,
                audio_rate=AUDIO_RATE,
                audio_channels=audio.shape[0],
                crf=self.crf,
                preset=self.preset,
            ) as writer:
                writer.write_audio(audio)
                for value in openness.tolist():
                    started = time.perf_counter()
                    rig.render_into(canvas, value)
                    render_s += time.perf_counter() - started
                    writer.write_bgr(canvas)
            timings["encode"] = writer.encode_s
        except BaseException:
            with contextlib.suppress(OSError):
                Path(out_path).unlink()
            raise
        return render_s


def scale_to_height(
    image: UInt8Array, points: FloatArray, height: int
) -> tuple[UInt8Array, FloatArray]:
    """Scale the portrait to the output height (even width, aspect kept) with its landmarks."""
    source_h, source_w = image.shape[:2]
    if max(source_w / source_h, source_h / source_w) > MAX_ASPECT:
        raise MediaError(
            f"image is {source_w}x{source_h} pixels; its aspect ratio is too extreme"
            f" (at most {MAX_ASPECT:g}:1 either way)"
        )
    width, height = even_size(source_w * height / source_h, height)
    # Area averaging when shrinking avoids moiré; cubic when enlarging keeps edges crisp.
    shrinking = width < source_w
    scaled = cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    )
    scale = np.array([width / source_w, height / source_h], np.float32)
    return np.ascontiguousarray(scaled, dtype=np.uint8), (points * scale).astype(np.float32)
