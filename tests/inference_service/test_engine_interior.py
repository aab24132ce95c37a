"""The mouth's interior: the person's own from an open frame (video mode), else painted."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inference_service.engine import LipsyncEngine
from inference_service.engine import landmarks as lm
from inference_service.engine.mouth_interior import (
    COLS,
    OPEN_ENOUGH,
    ROWS,
    Interior,
    InteriorBank,
    capture,
    fill,
    mouth_frame,
    mouth_gap,
    painted,
)
from inference_service.engine.mouth_rig import MouthRig
from inference_service.media import load_image_bgr
from tests.media_fixtures import portrait_path
from tests.quality import inputs
from tests.quality.faces import FaceTracker
from tests.quality.metrics import iter_frames
from tests.quality.scenarios import rest_landmarks, scaled_reference

RED = (0, 0, 255)
GREEN = (0, 255, 0)
# The teeth of the source video's speaker in the end-to-end test: a green no painted
# interior has, so every green pixel of the output's mouth came from the source's frames.
MARKER_TEETH = (40, 210, 40)


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut at 480p and her landmarks."""
    image = scaled_reference(load_image_bgr(portrait_path()), 480)
    points = rest_landmarks(image, 1)[0]
    assert points is not None
    return image, points.astype(np.float32)


def opened(image: np.ndarray, points: np.ndarray, gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Her landmarks with the inner lower lip moved down to a gap of ``gap`` mouth widths,
    and the image with that gap painted red in its upper half and green in its lower."""
    frame, width = mouth_frame(points)
    moved = points.copy()
    upper = frame.to_uv(points[list(lm.INNER_UPPER_LIP)])
    lower_ids = list(lm.INNER_LOWER_LIP)
    uv = frame.to_uv(points[lower_ids])
    span = max(float(np.ptp(uv[:, 0])) / 2, 1.0)
    centre = float(uv[:, 0].mean())
    profile = np.sqrt(np.clip(1 - ((uv[:, 0] - centre) / span) ** 2, 0, 1))
    uv[:, 1] = np.interp(uv[:, 0], *upper[np.argsort(upper[:, 0])].T) + gap * width * profile
    moved[lower_ids] = frame.to_xy(uv)
    picture = image.copy()
    top = points[list(lm.INNER_UPPER_LIP)]
    bottom = moved[lower_ids][::-1]
    middle = (top + moved[lower_ids]) / 2
    cv2.fillPoly(picture, [np.round(np.concatenate([top, middle[::-1]])).astype(np.int32)], RED)
    cv2.fillPoly(picture, [np.round(np.concatenate([middle, bottom])).astype(np.int32)], GREEN)
    return picture, moved


def test_a_closed_mouth_gives_no_exemplar(face: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = face
    picture, moved = opened(image, points, 0.5 * OPEN_ENOUGH)
    assert mouth_gap(moved) < OPEN_ENOUGH
    assert capture(picture, moved) is None


def test_an_open_mouth_is_captured_top_to_bottom(face: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = face
    picture, moved = opened(image, points, 0.25)
    interior = capture(picture, moved)
    assert interior is not None
    assert interior.texture.shape == (ROWS, COLS, 3)
    assert interior.opening == pytest.approx(0.25, abs=0.03)
    middle = interior.texture[:, COLS // 2]
    # Rows run from the upper inner lip (red half) down to the lower one (green half).
    assert middle[2 : ROWS // 2 - 2, 2].min() > 200 and middle[2 : ROWS // 2 - 2, 1].max() < 60
    assert middle[ROWS // 2 + 2 : -2, 1].min() > 200 and middle[ROWS // 2 + 2 : -2, 2].max() < 60


def striped(opening: float = 0.2) -> Interior:
    """An exemplar red above, green below, of ``opening`` at every column."""
    texture = np.zeros((ROWS, COLS, 3), np.float32)
    texture[: ROWS // 2] = RED
    texture[ROWS // 2 :] = GREEN
    return Interior(
        texture, np.full(COLS, opening, np.float32), np.array([100, 100, 160], np.float32), opening
    )


def column(depths: np.ndarray, gap: float, interior: Interior) -> np.ndarray:
    across = np.full_like(depths, 0.5)
    return fill(interior, across, depths, np.full_like(depths, gap), None)


def test_a_smaller_gap_shows_the_top_of_the_exemplar_only() -> None:
    # Upper teeth stay with the skull: a half-open mouth hides what lies low in the exemplar.
    depths = np.linspace(0.0, 0.09, 10, dtype=np.float32)
    colours = column(depths, 0.09, striped(0.2))
    assert (colours[:, 2] > 150).all() and (colours[:, 1] < 10).all()


def test_a_taller_gap_keeps_the_top_on_the_upper_lip_and_the_bottom_on_the_lower() -> None:
    depths = np.linspace(0.0, 0.4, 41, dtype=np.float32)
    colours = column(depths, 0.4, striped(0.2))
    assert (colours[depths < 0.08, 2] > 200).all()  # the top half, at its own scale
    # The bottom half, on the lower lip (whose shadow darkens the last rows).
    assert (colours[(depths > 0.32) & (depths < 0.38), 1] > 200).all()
    assert colours[-1, 1] < colours[-5, 1]


def test_the_exemplar_is_relit_to_the_lips_of_the_frame_drawn() -> None:
    interior = striped()
    depths = np.full(4, 0.02, np.float32)
    across = np.full(4, 0.5, np.float32)
    gap = np.full(4, 0.2, np.float32)
    same = fill(interior, across, depths, gap, interior.lip_colour)
    darker = fill(interior, across, depths, gap, 0.8 * interior.lip_colour)
    np.testing.assert_allclose(darker, 0.8 * same, rtol=1e-4, atol=1e-3)
    # Never by more than the limit: a wrong lip reading cannot turn teeth black.
    assert fill(interior, across, depths, gap, 0.1 * interior.lip_colour).max() > 0.5 * 255


def test_the_bank_keeps_the_widest_mouth_and_ignores_small_gains(
    face: tuple[np.ndarray, np.ndarray],
) -> None:
    image, points = face
    bank = InteriorBank()
    bank.offer(*opened(image, points, 0.5 * OPEN_ENOUGH))
    assert bank.best is None
    bank.offer(*opened(image, points, 0.2))
    first = bank.best
    assert first is not None
    bank.offer(*opened(image, points, 0.21))
    assert bank.best is first  # no swap for nearly the same opening: teeth would flicker
    bank.offer(*opened(image, points, 0.3))
    assert bank.best is not first and bank.best.opening > first.opening


def test_the_painted_interior_has_teeth_above_a_dark_cavity() -> None:
    lips, skin = np.array([90, 95, 170], np.float32), np.array([150, 170, 205], np.float32)
    interior = painted(lips, skin, teeth=True)
    middle = interior.texture[:, COLS // 2].mean(axis=1)
    assert middle[ROWS // 10] > 150  # shaded enamel under the upper lip
    assert middle[ROWS // 2] < 40  # the mouth's shadow
    # Teeth recede into shadow toward the corners, and have a soft edge, not a hard one.
    centre_tooth = interior.texture[ROWS // 10, COLS // 2 - 3].mean()
    assert interior.texture[ROWS // 10, COLS // 16].mean() < 0.8 * centre_tooth
    steps = np.abs(np.diff(middle[: ROWS // 2]))
    assert steps.max() < 0.5 * (middle.max() - middle.min())
    no_teeth = painted(lips, skin, teeth=False)
    assert no_teeth.texture[ROWS // 10, COLS // 2].mean() < 60


def test_the_rig_fills_a_video_mouth_from_the_exemplar(
    face: tuple[np.ndarray, np.ndarray],
) -> None:
    image, points = face
    own, plain = image.copy(), image.copy()
    MouthRig(image, points, close_source=True, interior=striped()).render_into(own, 0.8)
    MouthRig(image, points, close_source=True).render_into(plain, 0.8)
    red = (own[..., 2] > 200) & (own[..., 1] < 60) & (own[..., 0] < 60)
    green = (own[..., 1] > 200) & (own[..., 2] < 60) & (own[..., 0] < 60)
    # The gap shows the exemplar's top (red) and, this wide open, its bottom (green).
    assert red.sum() > 50 and green.sum() > 20
    assert not ((plain[..., 1] > 200) & (plain[..., 2] < 60)).any()


def green_in_mouths(path: Path) -> list[int]:
    """Per frame, the green pixels around the tracked inner lips."""
    tracker = FaceTracker(people=1)
    counts = []
    for frame in iter_frames(path):
        found = tracker.faces(frame)
        assert found, "the face is tracked in every frame"
        mouth = found[0][list(lm.INNER_UPPER_LIP + lm.INNER_LOWER_LIP)]
        (x0, y0), (x1, y1) = mouth.min(axis=0).astype(int) - 4, mouth.max(axis=0).astype(int) + 5
        b, g, r = (frame[y0:y1, x0:x1, c].astype(int) for c in range(3))
        counts.append(int(((g > 150) & (g > r + 60) & (g > b + 60)).sum()))
    return counts


def test_a_video_shows_the_speakers_own_teeth(
    tmp_path: Path, engine: LipsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: the speaker's green teeth, seen wide open in the first second, fill the
    new mouth; with the exemplar withheld (the painted interior) far less green is seen
    (only what closing the source's own smile leaves of it)."""
    sound = inputs.speech_signal(3.0, seed=5)
    openings = inputs.mouth_openings(sound, 75)
    openings[:25] = np.maximum(openings[:25], 0.8)
    openings[25:] = 0.0
    source = inputs.write_face_video(tmp_path / "src.mp4", sound, openings, teeth=MARKER_TEETH)
    audio = inputs.write_speech(tmp_path / "new.wav", 3.0, seed=8, head_s=1.2)
    engine.render_video(source, audio, tmp_path / "own.mp4", height=480, seed=3)
    monkeypatch.setattr(InteriorBank, "offer", lambda self, image, points: None)
    engine.render_video(source, audio, tmp_path / "painted.mp4", height=480, seed=3)
    own = green_in_mouths(tmp_path / "own.mp4")[30:]
    painted_ = green_in_mouths(tmp_path / "painted.mp4")[30:]
    assert sum(count > 20 for count in own) > len(own) // 4, own
    assert sum(own) > 3 * sum(painted_) + 200, (own, painted_)
