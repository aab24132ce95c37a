"""What every mode shares: the mask, seeded idle motion, and the spectral mouth shape."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inference_service.engine import LipsyncEngine
from inference_service.engine.idle import blink_curve
from inference_service.engine.mask import FrameMask
from inference_service.engine.mouth_curve import mouth_openness, mouth_roundness
from tests.media_fixtures import decode_frames, portrait_path, write_speech_wav

FPS = 25
RATE = 16000


@pytest.fixture(scope="module")
def lossless() -> LipsyncEngine:
    """x264 at crf 0: unchanged pixels decode identically in every frame (no codec noise)."""
    engine = LipsyncEngine(crf=0)
    engine.setup()
    return engine


def test_mask_keeps_black_pixels_exactly_and_blends_grey_ones() -> None:
    weights = np.zeros((4, 6), np.float32)
    weights[1:3, 2:4] = 1.0
    weights[0, 0] = 0.5
    mask = FrameMask(weights)
    source = np.full((4, 6, 3), 100, np.uint8)
    rendered = np.full((4, 6, 3), 200, np.uint8)
    out = mask.apply(source, rendered)
    assert (out[1:3, 2:4] == 200).all() and out[0, 0, 0] == 150
    untouched = weights == 0
    assert (out[untouched] == 100).all()


def test_a_black_mask_leaves_the_portrait_still(lossless: LipsyncEngine, tmp_path: Path) -> None:
    audio = write_speech_wav(tmp_path / "v.wav", 1.0)
    black = tmp_path / "mask.png"
    cv2.imwrite(str(black), np.zeros((64, 64), np.uint8))
    out = tmp_path / "o.mp4"
    lossless.render_image(str(portrait_path()), str(audio), str(out), height=480, mask_path=black)
    frames = decode_frames(out)
    assert all(np.array_equal(frame, frames[0]) for frame in frames)


def test_a_mouth_mask_confines_every_change(lossless: LipsyncEngine, tmp_path: Path) -> None:
    audio = write_speech_wav(tmp_path / "v.wav", 1.0)
    mask_path = tmp_path / "mask.png"
    mask = np.zeros((512, 512), np.uint8)
    mask[140:200, 180:280] = 255  # around the mouth in the 512 px source
    cv2.imwrite(str(mask_path), mask)
    out = tmp_path / "o.mp4"
    lossless.render_image(
        str(portrait_path()), str(audio), str(out), height=480, mask_path=mask_path, seed=1
    )
    frames = np.stack(decode_frames(out)).astype(np.int16)
    change = np.abs(frames - frames[0]).max(axis=(0, 3))
    scaled = cv2.resize(mask, (480, 480), interpolation=cv2.INTER_AREA)
    # One pixel of margin: chroma is subsampled 2x2, so a colour edge bleeds by one pixel.
    outside = cv2.dilate(scaled, np.ones((3, 3), np.uint8)) == 0
    assert change[outside].max() == 0 and change[scaled > 0].max() > 40


def test_idle_motion_is_reproducible_from_the_seed(
    engine: LipsyncEngine, tmp_path: Path, encoded: dict[str, list[str]]
) -> None:
    audio = write_speech_wav(tmp_path / "v.wav", 1.2)
    renders = []
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        out = tmp_path / f"{name}.mp4"
        engine.render_image(str(portrait_path()), str(audio), str(out), height=480, seed=seed)
        renders.append(decode_frames(out))
    # The frames given to the encoder (tests/inference_service/conftest.py `encoded`).
    assert encoded["a.mp4"] == encoded["b.mp4"]
    assert encoded["a.mp4"] != encoded["c.mp4"]
    # The head sways: the top of the frame (hair, background) moves a little.
    top = [frame[:100].astype(int) for frame in renders[0]]
    assert max(np.abs(t - top[0]).mean() for t in top) > 0.5


def test_blinks_are_short_seeded_and_regular() -> None:
    curve = blink_curve(seed=4, fps=FPS, frames=30 * FPS)
    assert np.array_equal(curve, blink_curve(seed=4, fps=FPS, frames=30 * FPS))
    assert not np.array_equal(curve, blink_curve(seed=5, fps=FPS, frames=30 * FPS))
    closed = curve > 0.9
    blinks = int(np.sum(closed[1:] & ~closed[:-1]))
    assert 5 <= blinks <= 15 and closed.mean() < 0.05
    assert curve.min() >= 0 and curve.max() <= 1


def _vowel(f1: float, f2: float, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    signal = np.zeros_like(t)
    for k in range(1, 30):
        freq = 140.0 * k
        gain = np.exp(-(((freq - f1) / 120) ** 2)) + 0.8 * np.exp(-(((freq - f2) / 150) ** 2))
        signal += (gain + 0.02) * np.sin(2 * np.pi * freq * t)
    return (0.3 * signal / np.abs(signal).max()).astype(np.float32)


def test_rounded_vowels_round_the_lips_and_spread_ones_do_not() -> None:
    # "oo" (F2 ~ 800 Hz) then "ee" (F2 ~ 2300 Hz), equally loud.
    samples = np.concatenate([_vowel(320, 800, 1.0), _vowel(300, 2300, 1.0)])
    frames = 2 * FPS
    openness = mouth_openness(samples, RATE, FPS, frames)
    roundness = mouth_roundness(samples, RATE, FPS, openness)
    assert roundness.shape == (frames,) and roundness.min() >= 0 and roundness.max() <= 1
    assert roundness[8:20].mean() > roundness[33:45].mean() + 0.3


def test_silence_is_neither_open_nor_rounded() -> None:
    silence = np.zeros(RATE, np.float32)
    openness = mouth_openness(silence, RATE, FPS, FPS)
    assert not mouth_roundness(silence, RATE, FPS, openness).any()


def test_other_frame_rates_keep_the_same_timing() -> None:
    samples = _vowel(700, 1200, 1.0)
    samples[: RATE // 2] = 0
    at_25 = mouth_openness(samples, RATE, 25, 25)
    at_30 = mouth_openness(samples, RATE, 30, 30)
    # Time to half-open after the onset is about the same in seconds.
    assert abs(np.argmax(at_25 > 0.5) / 25 - np.argmax(at_30 > 0.5) / 30) <= 0.05
