"""What turns source frames plus audio into talking frames: the animator interface.

Every mode (image, video, multi) reduces a job to a stream of ``FrameJob``s:
a source frame, and for each face in it the landmarks and which audio track
drives it. An animator renders them in batches (the built-in warp takes one
frame at a time; a neural model takes many at once on its device).

An engine is long-lived and may render several jobs at once on different
threads, so an ``Animator`` holds only what every job shares (its weights,
its batch size); ``start`` returns the job's own ``Animation``, holding all
that one job's audio and frames make (mouth shapes, mel features, rigs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from inference_service.engine.mouth_curve import mouth_openness, mouth_roundness
from inference_service.engine.mouth_interior import Interior
from inference_service.engine.mouth_rig import PUCKER, MouthRig
from inference_service.engine.phonemes import PhonemeRecognizer, PhonemesUnavailable
from inference_service.engine.visemes import MouthTargets, mouth_targets

_log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]

ANALYSIS_RATE = 16000
# The spectral rounding (no phonemes) is a guess from the band ratio, not a heard vowel: it
# keeps the pucker it had before the rig's pucker grew for phoneme-driven vowels.
SPECTRAL_ROUNDING = 0.22 / PUCKER


@dataclass(frozen=True)
class FaceDrive:
    """One face in one frame: its landmarks and the audio track that moves its mouth."""

    points: FloatArray
    track: int
    # Video frames carry their own mouth movement, which must be removed first.
    close_source: bool = False
    # Equal keys within one job promise equal frame and landmarks (a still image): the rig
    # is reused.
    rig_key: object | None = None
    # The person's own open mouth from another frame (video mode): what a new opening shows.
    interior: Interior | None = None


@dataclass(frozen=True)
class FrameJob:
    index: int  # output frame number: where in the audio this frame sits
    frame: UInt8Array  # the source frame; animators never modify it
    faces: Sequence[FaceDrive]


class Animation(Protocol):
    """One job's animation: made by ``Animator.start``, used by that job only."""

    def animate(self, jobs: Sequence[FrameJob]) -> list[UInt8Array]:
        """The rendered frames, one per job, in order (new arrays)."""


class Animator(Protocol):
    batch_size: int
    device: str
    # Whether ``FaceDrive.interior`` is used: the engine looks for one only then.
    draws_interior: bool

    def start(self, tracks: Sequence[FloatArray], fps: float, frames: int) -> Animation:
        """A job's animation from its per-track mono audio at ``ANALYSIS_RATE``, aligned
        to the output timeline."""


@dataclass(frozen=True)
class MouthShape:
    """Per output frame: jaw opening [0, 1], lip rounding [-1, 1] (negative: spread), lip
    closure [0, 1] (a bilabial) and upper teeth on the lower lip [0, 1] (an f or v)."""

    openness: FloatArray
    roundness: FloatArray
    closure: FloatArray
    teeth: FloatArray


def mouth_shapes(
    tracks: Sequence[FloatArray],
    fps: float,
    frames: int,
    phonemes: PhonemeRecognizer | None = None,
) -> list[MouthShape]:
    """Each track's mouth: the loudness opens the jaw; with ``phonemes``, the visemes of what
    is said shape it (``visemes.py``), blended back to loudness alone where the model is
    unsure."""
    shapes = []
    for samples in tracks:
        loud = mouth_openness(samples, ANALYSIS_RATE, fps, frames)
        targets = _targets(phonemes, samples, fps, frames) if loud.any() else None
        if targets is None:
            roundness = SPECTRAL_ROUNDING * mouth_roundness(samples, ANALYSIS_RATE, fps, loud)
            none = np.zeros(frames, np.float32)
            shapes.append(MouthShape(loud, roundness, none, none))
            continue
        openness = mouth_openness(samples, ANALYSIS_RATE, fps, frames, jaw=targets.jaw)
        spectral = mouth_roundness(samples, ANALYSIS_RATE, fps, openness)
        roundness = targets.round + (1.0 - targets.confidence) * SPECTRAL_ROUNDING * spectral
        # However loud the sound around it, a bilabial shuts the lips.
        openness = openness * (1.0 - targets.closure)
        shapes.append(
            MouthShape(
                openness.astype(np.float32),
                roundness.astype(np.float32),
                targets.closure,
                targets.teeth,
            )
        )
    return shapes


def _targets(
    phonemes: PhonemeRecognizer | None, samples: FloatArray, fps: float, frames: int
) -> MouthTargets | None:
    if phonemes is None:
        return None
    try:
        posteriors = phonemes.posteriors(samples, ANALYSIS_RATE)
    except PhonemesUnavailable as exc:
        _log.warning("phoneme model unavailable, mouth follows loudness only: %s", exc)
        return None
    return mouth_targets(posteriors, fps, frames)


class BuiltinAnimator:
    """The audio-driven mouth warp of ``MouthRig``: no model weights beyond the phoneme
    model's (shared by every job), CPU only."""

    batch_size = 1
    device = "cpu"
    draws_interior = True

    def __init__(self, *, phonemes: bool = True) -> None:
        # ``phonemes=False``: loudness alone drives the mouth (the articulation bench's baseline).
        self.phonemes = PhonemeRecognizer() if phonemes else None

    def start(self, tracks: Sequence[FloatArray], fps: float, frames: int) -> BuiltinAnimation:
        return BuiltinAnimation(mouth_shapes(tracks, fps, frames, self.phonemes))


class BuiltinAnimation:
    """One job's mouth shapes per track, and the rigs of its still faces."""

    def __init__(self, shapes: list[MouthShape]) -> None:
        self._shapes = shapes
        # Keyed by ``FaceDrive.rig_key``, which is unique within one job only.
        self._rigs: dict[object, MouthRig] = {}

    def animate(self, jobs: Sequence[FrameJob]) -> list[UInt8Array]:
        out = []
        for job in jobs:
            canvas = job.frame.copy()
            for face in job.faces:
                rig = self._rig(job.frame, face)
                shape = self._shapes[face.track]
                index = min(job.index, shape.openness.shape[0] - 1)
                rig.render_into(
                    canvas,
                    float(shape.openness[index]),
                    float(shape.roundness[index]),
                    float(shape.closure[index]),
                    float(shape.teeth[index]),
                )
            out.append(canvas)
        return out

    def _rig(self, frame: UInt8Array, face: FaceDrive) -> MouthRig:
        if face.rig_key is None:
            return MouthRig(
                frame, face.points, close_source=face.close_source, interior=face.interior
            )
        rig = self._rigs.get(face.rig_key)
        if rig is None:
            rig = MouthRig(
                frame, face.points, close_source=face.close_source, interior=face.interior
            )
            self._rigs[face.rig_key] = rig
        return rig
