"""The lip-sync engine: ``setup()`` once, then render jobs (a cog-style predictor).

This module knows nothing of gRPC or NATS; the worker calls it with local
file paths and turns ``MediaError`` into a failed job with ``user_message``.
What each mode does, and what the built-in engine does with a prompt, is in
``CAPABILITIES.md`` next to this file.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from inference_service.engine.animator import (
    Animation,
    Animator,
    BuiltinAnimator,
    FaceDrive,
    FrameJob,
)
from inference_service.engine.face_mesh import FaceLandmarks
from inference_service.engine.face_models import FaceModelPool, FaceModels
from inference_service.engine.faces import find_faces, one_face, two_faces
from inference_service.engine.idle import IdleMotion
from inference_service.engine.job_audio import (
    AUDIO_RATE,
    ORDERS,
    JobAudio,
    pair_audio,
    single_audio,
)
from inference_service.engine.mask import FrameMask
from inference_service.engine.mouth_interior import Interior, InteriorBank
from inference_service.engine.render_loop import FrameCallback, PostProcess, write_video
from inference_service.engine.session import RenderSession
from inference_service.engine.tracker import FaceTracker
from inference_service.media.encode import DEFAULT_CRF, DEFAULT_PRESET, even_size, frame_count
from inference_service.media.errors import FaceTooSmallError, MediaError, NoFaceError
from inference_service.media.image import load_image_bgr
from inference_service.media.probe import DEFAULT_MAX_IMAGE_SIDE
from inference_service.media.video import DEFAULT_CACHE_BYTES, VideoReader, ping_pong

UInt8Array = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float32]

__all__ = ["AUDIO_RATE", "LipsyncEngine", "RenderResult", "resolve_seed", "scale_to_height"]

SUPPORTED_HEIGHTS = (480, 720)
FPS = 25
# Below this the face mesh is unreliable and a mouth a few pixels wide cannot be animated.
MIN_FACE_PX = 64
MAX_AUDIO_S = 600.0
# Video mode holds back up to this many first frames (25 MB each at 720p: 66 MB) while it
# looks for the person's own open mouth, stopping early at one open WIDE_OPEN mouth widths;
# later frames are looked at while none is found.
INTERIOR_LOOKAHEAD = 24
WIDE_OPEN = 0.2
# Wider or taller than this and the output frame would be absurd (e.g. 480 x 30000 px).
MAX_ASPECT = 4.0


@dataclass(frozen=True)
class RenderResult:
    duration_s: float
    frames: int
    seed: int
    width: int
    height: int
    timings_ms: dict[str, int] = field(default_factory=dict)
    fps: float = float(FPS)
    # Video mode: frames in which a face was found and animated (the rest pass through).
    face_frames: int | None = None


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


def _check_height(height: int) -> None:
    if height not in SUPPORTED_HEIGHTS:
        raise ValueError(f"height must be one of {SUPPORTED_HEIGHTS}, not {height}")


class LipsyncEngine:
    """BlazeFace + face mesh landmarks, an animator for the mouth (built-in warp by default).

    One engine serves every job of a worker, on several threads at once: it holds
    settings and what all jobs share (the animator's weights, a pool of face models).
    Each render keeps its own state in a ``RenderSession`` (``session.py``).
    """

    def __init__(
        self,
        *,
        models_dir: str | Path | None = None,
        min_face_px: int = MIN_FACE_PX,
        max_image_side: int = DEFAULT_MAX_IMAGE_SIDE,
        max_audio_s: float | None = MAX_AUDIO_S,
        preset: str = DEFAULT_PRESET,
        crf: int = DEFAULT_CRF,
        animator: Animator | None = None,
        pingpong_cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.min_face_px = min_face_px
        self.max_image_side = max_image_side
        self.max_audio_s = max_audio_s
        self.preset = preset
        self.crf = crf
        self.animator: Animator = animator or BuiltinAnimator()
        self.pingpong_cache_bytes = pingpong_cache_bytes
        self._face_models = FaceModelPool(models_dir)
        self._ready = False
        self._setup_lock = threading.Lock()

    @property
    def device(self) -> str:
        """Where the mouth is rendered: "cpu", or "cuda" for a neural animator on a GPU."""
        return self.animator.device

    def setup(self) -> None:
        """Load the models once; later calls are no-ops."""
        with self._setup_lock:
            if not self._ready:
                self._face_models.warm()
                cv2.setNumThreads(os.cpu_count() or 1)
                self._ready = True

    @contextmanager
    def face_models(self) -> Iterator[FaceModels]:
        """A face detector and mesh that nobody else uses until the ``with`` block ends."""
        self.setup()
        with self._face_models.borrow() as models:
            yield models

    @contextmanager
    def _session(self, seed: int | None) -> Iterator[RenderSession]:
        with self.face_models() as models:
            yield RenderSession(resolve_seed(seed), models)

    def prepare_face(self, image_path: str | Path) -> PreparedFace:
        """Decode the portrait and locate the largest face; raises MediaError subclasses."""
        with self.face_models() as models:
            return self._prepare_face(models, image_path)

    def _prepare_face(self, models: FaceModels, image_path: str | Path) -> PreparedFace:
        image = load_image_bgr(image_path, self.max_image_side)
        face = one_face(find_faces(models, image, wanted=1), self.min_face_px)
        return PreparedFace(image=image, landmarks=face.landmarks, face_px=round(face.size))

    def render_image(
        self,
        image_path: str | Path,
        audio_path: str | Path,
        out_path: str | Path,
        *,
        height: int = 480,
        seed: int | None = None,
        mask_path: str | Path | None = None,
        idle_motion: bool = True,
        on_frames: FrameCallback | None = None,
    ) -> RenderResult:
        """Animate the portrait's mouth to the audio; write an H.264/AAC MP4 to ``out_path``.

        ``on_frames(done, total)`` is called as frames start and after each batch
        (``render_loop.write_video``); an exception it raises stops the render.
        """
        _check_height(height)
        with self._session(seed) as job:
            with job.timed("decode"):
                audio = single_audio(audio_path, self.max_audio_s)
            with job.timed("detect"):
                prepared = self._prepare_face(job.models, image_path)
                frame, points = scale_to_height(prepared.image, prepared.landmarks.points, height)
                frames = frame_count(audio.duration_s, FPS)
                mask = self._mask(mask_path, frame)
                # A masked job keeps everything outside the mask still, so no sway (blinks
                # are masked).
                idle = (
                    [
                        IdleMotion(
                            frame,
                            points,
                            job.seed,
                            FPS,
                            frames,
                            sway=mask is None,
                            speech=audio.tracks[0],
                        )
                    ]
                    if idle_motion
                    else []
                )
                animation = self.animator.start(audio.tracks, FPS, frames)
            faces = [FaceDrive(points, 0, rig_key=0)]
            return self._render_still(
                job, out_path, frame, faces, audio, frames, animation, idle, mask, on_frames
            )

    def render_multi(
        self,
        image_path: str | Path,
        left_audio_path: str | Path,
        right_audio_path: str | Path,
        out_path: str | Path,
        *,
        order: str = "left_right",
        height: int = 480,
        seed: int | None = None,
        mask_path: str | Path | None = None,
        idle_motion: bool = True,
        on_frames: FrameCallback | None = None,
    ) -> RenderResult:
        """Two people, two audios: each mouth follows its own audio, in ``order``."""
        _check_height(height)
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
        with self._session(seed) as job:
            with job.timed("decode"):
                audio = pair_audio(left_audio_path, right_audio_path, order, self.max_audio_s)
            with job.timed("detect"):
                image = load_image_bgr(image_path, self.max_image_side)
                found = find_faces(job.models, image, wanted=2)
                left, right = two_faces(found, self.min_face_px)
                frame, left_points = scale_to_height(image, left.landmarks.points, height)
                _, right_points = scale_to_height(image, right.landmarks.points, height)
                frames = frame_count(audio.duration_s, FPS)
                mask = self._mask(mask_path, frame)
                idle = (
                    [
                        IdleMotion(
                            frame,
                            points,
                            job.seed + person,
                            FPS,
                            frames,
                            sway=False,
                            speech=audio.tracks[person],
                        )
                        for person, points in enumerate((left_points, right_points))
                    ]
                    if idle_motion
                    else []
                )
                animation = self.animator.start(audio.tracks, FPS, frames)
            faces = [FaceDrive(left_points, 0, rig_key=0), FaceDrive(right_points, 1, rig_key=1)]
            return self._render_still(
                job, out_path, frame, faces, audio, frames, animation, idle, mask, on_frames
            )

    def render_video(
        self,
        video_path: str | Path,
        audio_path: str | Path,
        out_path: str | Path,
        *,
        height: int = 480,
        seed: int | None = None,
        mask_path: str | Path | None = None,
        on_frames: FrameCallback | None = None,
    ) -> RenderResult:
        """Re-animate the tracked face of a video to new audio; lasts exactly the audio."""
        _check_height(height)
        with self._session(seed) as job:
            with job.timed("decode"):
                audio = single_audio(audio_path, self.max_audio_s)
                reader = VideoReader(video_path, height)
            frames = frame_count(audio.duration_s, reader.fps)
            animation = self.animator.start(audio.tracks, float(reader.fps), frames)
            mask = self._mask(mask_path, np.zeros((reader.height, reader.width, 3), np.uint8))
            tracker = FaceTracker(job.models, float(reader.fps))
            stats = _TrackStats()
            written = write_video(
                out_path,
                self._video_jobs(reader, frames, tracker, stats, job),
                audio,
                animation=animation,
                batch_size=self.animator.batch_size,
                fps=reader.fps,
                size=(reader.width, reader.height),
                post=_video_post(mask),
                timings=job.timings,
                crf=self.crf,
                preset=self.preset,
                total=frames,
                on_frames=on_frames,
            )
            if stats.animated == 0:
                Path(out_path).unlink(missing_ok=True)
                if stats.largest_px > 0:
                    raise FaceTooSmallError(
                        round(stats.largest_px), self.min_face_px, source="video"
                    )
                raise NoFaceError("no face found in the video")
            return RenderResult(
                duration_s=round(audio.duration_s, 3),
                frames=written,
                seed=job.seed,
                width=reader.width,
                height=reader.height,
                timings_ms=job.timings_ms(),
                fps=round(float(reader.fps), 3),
                face_frames=stats.animated,
            )

    def _render_still(
        self,
        job: RenderSession,
        out_path: str | Path,
        frame: UInt8Array,
        faces: list[FaceDrive],
        audio: JobAudio,
        frames: int,
        animation: Animation,
        idle: list[IdleMotion],
        mask: FrameMask | None,
        on_frames: FrameCallback | None,
    ) -> RenderResult:
        """Image and multi modes: the same still frame, ``frames`` times, faces animated."""
        written = write_video(
            out_path,
            (FrameJob(index, frame, faces) for index in range(frames)),
            audio,
            animation=animation,
            batch_size=self.animator.batch_size,
            fps=Fraction(FPS),
            size=(frame.shape[1], frame.shape[0]),
            post=_still_post(idle, mask),
            timings=job.timings,
            crf=self.crf,
            preset=self.preset,
            total=frames,
            on_frames=on_frames,
        )
        return RenderResult(
            duration_s=round(audio.duration_s, 3),
            frames=written,
            seed=job.seed,
            width=frame.shape[1],
            height=frame.shape[0],
            timings_ms=job.timings_ms(),
            fps=float(FPS),
        )

    def _video_jobs(
        self,
        reader: VideoReader,
        frames: int,
        tracker: FaceTracker,
        stats: _TrackStats,
        job: RenderSession,
    ) -> Iterator[FrameJob]:
        timings = job.timings
        # Frames held back until the person's own open mouth is seen (or for at most
        # INTERIOR_LOOKAHEAD of them), so that the first frames drawn already use it.
        held: list[tuple[int, UInt8Array, FloatArray | None]] = []
        bank = InteriorBank() if self.animator.draws_interior else None
        holding = bank is not None
        source = ping_pong(reader, frames, self.pingpong_cache_bytes)
        for index in range(frames):
            started = time.perf_counter()
            frame = next(source)
            decoded = time.perf_counter()
            points = tracker.update(frame)
            timings["decode"] = timings.get("decode", 0.0) + decoded - started
            timings["detect"] = timings.get("detect", 0.0) + time.perf_counter() - decoded
            animated: FloatArray | None = None
            if points is not None:
                stats.largest_px = max(stats.largest_px, tracker.face_px)
                if tracker.face_px >= self.min_face_px:
                    animated = points
                    stats.animated += 1
            if bank is None:
                yield self._video_frame(index, frame, animated, None)
                continue
            # While holding, the widest mouth wins; afterwards only a first one is taken
            # (swapping teeth mid-video would show).
            if animated is not None and (holding or bank.best is None):
                bank.offer(frame, animated)
            if not holding:
                yield self._video_frame(index, frame, animated, bank.best)
                continue
            held.append((index, frame, animated))
            seen = bank.best is not None and bank.best.opening >= WIDE_OPEN
            if seen or len(held) == INTERIOR_LOOKAHEAD or index + 1 == frames:
                holding = False
                for number, early, early_points in held:
                    yield self._video_frame(number, early, early_points, bank.best)
                held.clear()

    @staticmethod
    def _video_frame(
        index: int, frame: UInt8Array, points: FloatArray | None, interior: Interior | None
    ) -> FrameJob:
        if points is None:
            return FrameJob(index, frame, [])
        return FrameJob(index, frame, [FaceDrive(points, 0, close_source=True, interior=interior)])

    def _mask(self, mask_path: str | Path | None, frame: UInt8Array) -> FrameMask | None:
        if mask_path is None:
            return None
        return FrameMask.load(mask_path, frame.shape[1], frame.shape[0], self.max_image_side)


@dataclass
class _TrackStats:
    animated: int = 0
    largest_px: float = 0.0


def _still_post(idle: list[IdleMotion], mask: FrameMask | None) -> PostProcess:
    def post(job: FrameJob, frame: UInt8Array) -> UInt8Array:
        for motion in idle:
            frame = motion.apply(frame, job.index)
        return frame if mask is None else mask.apply(job.frame, frame)

    return post


def _video_post(mask: FrameMask | None) -> PostProcess:
    def post(job: FrameJob, frame: UInt8Array) -> UInt8Array:
        return frame if mask is None else mask.apply(job.frame, frame)

    return post


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
