"""Audio-to-mouth curve and the mouth warp, tested without encoding."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inference_service.engine import LipsyncEngine, scale_to_height
from inference_service.engine import landmarks as lm
from inference_service.engine.mouth_curve import mouth_openness
from inference_service.engine.mouth_rig import MouthRig
from inference_service.media import load_audio_mono
from tests.media_fixtures import portrait_path, write_speech_wav

FPS = 25


def _curve(tmp_path: Path, seconds: float, head: float, tail: float) -> np.ndarray:
    wav = write_speech_wav(tmp_path / "v.wav", seconds, silence_head=head, silence_tail=tail)
    samples = load_audio_mono(wav, 16000)
    return mouth_openness(samples, 16000, FPS, round(seconds * FPS))


def test_mouth_is_closed_in_silence_and_opens_with_speech(tmp_path: Path) -> None:
    curve = _curve(tmp_path, 4.0, head=1.0, tail=1.0)
    assert curve.shape == (100,) and curve.dtype == np.float32
    assert np.all((curve >= 0) & (curve <= 1))
    # The mouth leads the sound by one frame, so only the frame before speech may move.
    assert np.all(curve[: FPS - 1] == 0)
    assert np.all(curve[-FPS + 8 :] < 0.02)  # closed once the release has settled
    speech = curve[FPS : 3 * FPS]
    assert speech.max() > 0.8
    # Syllables: the mouth closes partly between them, it does not stay open.
    assert np.sum(np.diff(np.sign(np.diff(speech))) < 0) >= 6


def test_the_curve_is_independent_of_the_recording_level(tmp_path: Path) -> None:
    wav = write_speech_wav(tmp_path / "v.wav", 2.0)
    samples = load_audio_mono(wav, 16000)
    loud = mouth_openness(samples, 16000, FPS, 50)
    quiet = mouth_openness(samples * 0.5, 16000, FPS, 50)  # 6 dB quieter
    np.testing.assert_allclose(loud, quiet, atol=1e-4)
    # Far quieter still (-26 dB) the absolute noise gate engages, yet the mouth still moves.
    whisper = mouth_openness(samples * 0.05, 16000, FPS, 50)
    assert whisper.max() > 0.8 and np.corrcoef(loud, whisper)[0, 1] > 0.9


def test_pure_silence_keeps_the_mouth_closed() -> None:
    assert not mouth_openness(np.zeros(16000, np.float32), 16000, FPS, 25).any()


def rig_points() -> np.ndarray:
    prepared = LipsyncEngine().prepare_face(portrait_path())
    return scale_to_height(prepared.image, prepared.landmarks.points, 480)[1]


@pytest.fixture(scope="module")
def rig() -> MouthRig:
    prepared = LipsyncEngine().prepare_face(portrait_path())
    frame, points = scale_to_height(prepared.image, prepared.landmarks.points, 480)
    return MouthRig(frame, points)


def test_closed_mouth_frame_is_the_source(rig: MouthRig) -> None:
    canvas = rig.source.copy()
    rig.render_into(canvas, 1.0)
    rig.render_into(canvas, 0.0)  # the canvas is reused between frames
    np.testing.assert_array_equal(canvas, rig.source)


def test_only_the_mouth_region_changes(rig: MouthRig) -> None:
    canvas = rig.source.copy()
    rig.render_into(canvas, 1.0)
    changed = np.any(canvas != rig.source, axis=2)
    rows, cols = np.nonzero(changed)
    box = rig.box
    assert rows.size > 0.02 * (box.y1 - box.y0) * (box.x1 - box.x0)
    assert rows.min() >= box.y0 and rows.max() < box.y1
    assert cols.min() >= box.x0 and cols.max() < box.x1
    # The region is small: mouth and chin, not the face.
    assert (box.y1 - box.y0) * (box.x1 - box.x0) < 0.1 * canvas.shape[0] * canvas.shape[1]


def test_wider_opening_changes_more_pixels(rig: MouthRig) -> None:
    def changed(opening: float) -> float:
        canvas = rig.source.copy()
        rig.render_into(canvas, opening)
        return float(np.abs(canvas.astype(int) - rig.source).mean())

    assert 0 < changed(0.3) < changed(0.6) < changed(1.0)


def _face_oval(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    jaw = points[list(lm.JAW)]
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(jaw).astype(np.int32)), 1)
    return mask.astype(bool)


def test_nothing_beside_the_face_moves(rig: MouthRig) -> None:
    # The jaw may drag skin down over the neck, but nothing left or right of the face's
    # outline moves: background, hair and collars beside the cheeks stay put.
    canvas = rig.source.copy()
    rig.render_into(canvas, 1.0)
    changed = np.any(canvas != rig.source, axis=2)
    jaw_x = rig_points()[list(lm.JAW)][:, 0]
    assert changed.any()
    assert not changed[:, : int(np.floor(jaw_x.min()))].any()
    assert not changed[:, int(np.ceil(jaw_x.max())) + 1 :].any()


def test_closing_a_video_mouth_never_pulls_the_neck_onto_the_chin(tmp_path: Path) -> None:
    # A video frame: the portrait with its mouth wide open and a black collar right under
    # the jaw line. Closing the mouth must not bring black up onto the chin.
    prepared = LipsyncEngine().prepare_face(portrait_path())
    frame, points = scale_to_height(prepared.image, prepared.landmarks.points, 480)
    opened = frame.copy()
    MouthRig(frame, points).render_into(opened, 1.0)
    cv2.imwrite(str(tmp_path / "open.png"), opened)
    open_points = LipsyncEngine().prepare_face(tmp_path / "open.png").landmarks.points
    oval = _face_oval(open_points, opened.shape)
    rows = np.arange(opened.shape[0])[:, np.newaxis]
    chin_y = float(open_points[lm.CHIN][1])
    opened[(~oval) & (rows > open_points[lm.MOUTH_CORNER_LEFT][1])] = 0

    closed = opened.copy()
    MouthRig(opened, open_points, close_source=True).render_into(closed, 0.0)
    # The chin: inside the oval, between the lower lip and the jaw line.
    lip_y = float(open_points[lm.LOWER_LIP_BOTTOM][1])
    chin = oval & (rows > lip_y + 0.3 * (chin_y - lip_y))
    dark_before = int(np.sum(opened[chin].max(axis=1) < 40))
    dark_after = int(np.sum(closed[chin].max(axis=1) < 40))
    assert dark_after <= dark_before + 5, (dark_before, dark_after)
