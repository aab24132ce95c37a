"""The quality measurements themselves, on inputs whose answer is known (no engine involved).

A talking-face video made by ``tests.quality.inputs`` opens its mouth exactly
with its own sound track, so sync must come out high at lag 0; delaying the
audio must move the lag by as much; a mouth that never moves must show no sync;
a mouth held open in pauses, or a patch flickering at the region's edge, must
fail the rules that the engine's renders pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference_service.media import Mp4Writer, load_audio_mono, load_image_bgr
from tests.media_fixtures import portrait_path
from tests.quality import inputs, rules
from tests.quality.faces import mouth_opening
from tests.quality.metrics import (
    FlickerMeter,
    active_frames,
    closedness,
    frame_envelope_db,
    iter_frames,
    lag_correlation,
    mouth_jaw_region,
    pause_frames,
    psnr,
)
from tests.quality.scenarios import measure_frames, openings, rest_landmarks, scaled_reference

RATE, FPS, SECONDS = inputs.SPEECH_RATE, 25, 3.0


def _measured_openings(path: Path) -> np.ndarray:
    frames = list(iter_frames(path))
    return openings(measure_frames(iter(frames), len(frames), 1).slots, 0)


@pytest.fixture(scope="module")
def talking() -> tuple[np.ndarray, np.ndarray]:
    """(measured opening per frame, the video's own sound) of a lip-synced-by-design video."""
    path = inputs.face_video(SECONDS, talk_seed=5)
    return _measured_openings(path), load_audio_mono(path, RATE)


def test_a_lip_synced_video_measures_as_synced_at_lag_zero(
    talking: tuple[np.ndarray, np.ndarray],
) -> None:
    opening, sound = talking
    sync = lag_correlation(opening, frame_envelope_db(sound, RATE, FPS, opening.size))
    assert sync.best_r >= 0.8 and sync.best_lag == 0, sync


@pytest.mark.parametrize("shift", [3, -3])
def test_shifting_the_audio_moves_the_best_lag_by_as_much(
    talking: tuple[np.ndarray, np.ndarray], shift: int
) -> None:
    opening, sound = talking
    hop = RATE // FPS
    # Audio later than the mouth (shift > 0): the mouth leads, which is a positive lag.
    shifted = np.concatenate([np.zeros(shift * hop), sound]) if shift > 0 else sound[-shift * hop :]
    sync = lag_correlation(opening, frame_envelope_db(shifted, RATE, FPS, opening.size))
    assert sync.best_lag == shift, sync
    assert sync.best_r >= 0.8


def test_a_mouth_that_never_moves_shows_no_sync() -> None:
    # The same pan and zoom, the mouth still: head motion alone must not look like speech.
    opening = _measured_openings(inputs.face_video(SECONDS, talk_seed=None))
    sound = inputs.speech_signal(SECONDS, seed=5)
    sync = lag_correlation(opening, frame_envelope_db(sound, RATE, FPS, opening.size))
    # The zoom drifts the measured opening slowly, which a slow trend in the speech can
    # match at some lag; near lag 0, where sync is looked for, there is none.
    near = [r for lag, r in sync.r_by_lag.items() if abs(lag) <= rules.SYNC_MAX_LAG]
    assert max(abs(r) for r in near) < 0.3, sync
    assert sync.best_r < rules.SYNC_MIN_R, sync


def test_a_mouth_open_in_pauses_fails_the_closed_rule(tmp_path: Path) -> None:
    sound = inputs.speech_signal(SECONDS, seed=6, head_s=0.6, tail_s=0.8)
    frames = round(SECONDS * FPS)
    envelope = frame_envelope_db(sound, RATE, FPS, frames)
    active = active_frames(envelope)
    pauses = pause_frames(active, FPS)
    rest = mouth_opening(rest_landmarks(load_image_bgr(portrait_path()), 1)[0])
    figures = {}
    for name, held in (("closes", 0.0), ("hangs open", 0.5)):
        driven = inputs.mouth_openings(sound, frames)
        driven[~active] = np.maximum(driven[~active], held)
        path = inputs.write_face_video(tmp_path / f"{held}.mp4", sound, driven)
        figures[name] = closedness(_measured_openings(path), rest, active, pauses).fraction
    assert figures["closes"] <= rules.PAUSE_MAX_FRACTION, figures
    assert figures["hangs open"] > rules.PAUSE_MAX_FRACTION, figures


def test_pauses_are_long_silences_without_the_lip_release() -> None:
    active = np.array([False] * 20 + [True] * 10 + [False] * 3 + [True] * 10 + [False] * 12)
    pauses = pause_frames(active, FPS)
    assert pauses[:18].all()  # the leading silence, up to 80 ms (2 frames) before speech
    assert not pauses[18:43].any()  # a 120 ms gap between syllables is no pause
    assert not pauses[43:47].any() and pauses[47:].all()  # 160 ms for the lips to close


def _portrait_frames(offsets: list[float], region: np.ndarray) -> list[np.ndarray]:
    """The portrait with a patch of ``offsets[i]`` grey levels straddling the region's edge."""
    image = load_image_bgr(portrait_path())
    ys, xs = np.nonzero(region)
    patch = (slice(int(ys.max()) - 12, int(ys.max()) + 12), slice(int(xs.min()), int(xs.max())))
    frames = []
    for offset in offsets:
        frame = image.astype(np.int16)
        frame[patch] += int(offset)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def _encoded(frames: list[np.ndarray], path: Path) -> list[np.ndarray]:
    height, width = frames[0].shape[:2]
    with Mp4Writer(path, width=width, height=height) as writer:
        writer.write_audio(np.zeros((1, 4800), np.float32))
        for frame in frames:
            writer.write_bgr(frame)
    return list(iter_frames(path))


def test_flicker_at_the_region_edge_is_caught_and_a_steady_edge_passes(tmp_path: Path) -> None:
    reference = load_image_bgr(portrait_path())
    points = rest_landmarks(reference, 1)[0]
    assert points is not None
    region = mouth_jaw_region(points, reference.shape)
    excess = {}
    for name, offsets in (("steady", [0.0] * 20), ("toggling", [0.0, 3.0] * 10)):
        meter = FlickerMeter(5, 1.7)
        for frame in _encoded(_portrait_frames(offsets, region), tmp_path / f"{name}.mp4"):
            meter.add(frame, reference, region)
        excess[name] = meter.result().excess
    assert excess["steady"] <= rules.FLICKER_MAX_EXCESS / 2, excess
    assert excess["toggling"] > rules.FLICKER_MAX_EXCESS, excess


def test_psnr_is_luma_and_capped() -> None:
    image = scaled_reference(load_image_bgr(portrait_path()), 480)
    assert psnr(image, image) == 100.0
    brighter = np.clip(image.astype(np.int16) + 2, 0, 255).astype(np.uint8)
    unclipped = (image < 250).all(axis=2)
    # +2 on every channel is +2 in luma: 20 log10(255 / 2) = 42.11 dB.
    assert psnr(brighter, image, unclipped) == pytest.approx(42.11, abs=0.05)


def test_envelope_is_floored_40_db_under_the_peak() -> None:
    sound = np.concatenate([np.zeros(RATE), 0.5 * np.ones(RATE)]).astype(np.float32)
    envelope = frame_envelope_db(sound, RATE, FPS, 2 * FPS)
    assert envelope[:FPS] == pytest.approx(np.full(FPS, envelope.max() - 40.0))
    assert envelope[FPS:] == pytest.approx(np.full(FPS, 20 * np.log10(0.5)), abs=1e-3)
