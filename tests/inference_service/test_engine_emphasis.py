"""Speech-driven motion in image mode: nods and brow raises on stressed syllables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference_service.engine.idle import (
    EMPHASIS_GAP_S,
    LEFT_BROW,
    NOD_DRIFT,
    IdleMotion,
    speech_emphasis,
)
from inference_service.media import load_audio_mono, load_image_bgr
from tests.media_fixtures import portrait_path
from tests.quality.scenarios import rest_landmarks, scaled_reference

FPS = 25
DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio_mono(DATA / "speech-en.wav", 16000)


@pytest.fixture(scope="module")
def portrait() -> tuple[np.ndarray, np.ndarray]:
    image = scaled_reference(load_image_bgr(portrait_path()), 480)
    points = rest_landmarks(image, 1)[0]
    assert points is not None
    return image, points.astype(np.float32)


def test_stressed_syllables_make_separate_pulses(speech: np.ndarray) -> None:
    frames = round(speech.size / 16000 * FPS)
    emphasis = speech_emphasis(speech, 16000, FPS, frames)
    assert emphasis.shape == (frames,) and emphasis.min() >= 0.0 and emphasis.max() <= 1.0
    peaks = [
        i
        for i in range(1, frames - 1)
        if emphasis[i] > 0.3 and emphasis[i] >= emphasis[i - 1] and emphasis[i] > emphasis[i + 1]
    ]
    assert len(peaks) >= 2  # a 2.5 s sentence has stressed syllables
    assert min(np.diff(peaks)) >= EMPHASIS_GAP_S * FPS - 1
    # Nothing before the speech starts (0.3 s of silence).
    assert not emphasis[: round(0.2 * FPS)].any()
    # The same audio gives the same pulses; silence gives none.
    assert np.array_equal(emphasis, speech_emphasis(speech, 16000, FPS, frames))
    assert not speech_emphasis(np.zeros(32000, np.float32), 16000, FPS, 50).any()


def test_the_head_nods_and_the_brows_rise_on_emphasis_reproducibly(
    speech: np.ndarray, portrait: tuple[np.ndarray, np.ndarray]
) -> None:
    image, points = portrait
    frames = round(speech.size / 16000 * FPS)
    emphasis = speech_emphasis(speech, 16000, FPS, frames)
    peak = int(np.argmax(emphasis))

    def frame(index: int, **kwargs: object) -> np.ndarray:
        motion = IdleMotion(image, points, 5, FPS, frames, **kwargs)  # type: ignore[arg-type]
        return motion.apply(image.copy(), index)

    talking = frame(peak, sway=False, speech=speech)
    quiet = frame(peak, sway=False)
    assert np.array_equal(talking, frame(peak, sway=False, speech=speech))  # seeded
    brow = points[list(LEFT_BROW)]
    x0, y0 = np.floor(brow.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(brow.max(axis=0)).astype(int) + 2
    assert np.any(talking[y0:y1, x0:x1] != quiet[y0:y1, x0:x1])  # the brow moved
    # ...and the mouth did not (the brows' warp stays above the eyes).
    mouth = points[[61, 291, 0, 17]]
    mx0, my0 = np.floor(mouth.min(axis=0)).astype(int)
    mx1, my1 = np.ceil(mouth.max(axis=0)).astype(int)
    assert np.array_equal(talking[my0:my1, mx0:mx1], quiet[my0:my1, mx0:mx1])

    # With the sway on, the nod moves the head down by up to NOD_DRIFT of the face height.
    nodding = IdleMotion(image, points, 5, FPS, frames, speech=speech)._transforms
    still = IdleMotion(image, points, 5, FPS, frames)._transforms
    assert nodding is not None and still is not None
    dip = float(nodding[peak][1, 2] - still[peak][1, 2])
    face = float(np.ptp(points[:, 1]))
    assert 0.3 * NOD_DRIFT * face < dip <= NOD_DRIFT * face + 1e-4
    assert float(nodding[0][1, 2] - still[0][1, 2]) == 0.0  # no nod in the leading silence
