"""``render_multi``: two people (the portrait and its mirror image), two audios, three orders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference_service.engine import LipsyncEngine, scale_to_height
from inference_service.engine.faces import find_faces, two_faces
from inference_service.engine.mouth_rig import MouthRig
from inference_service.media import MediaError, NoFaceError, load_image_bgr, probe_output
from tests.media_fixtures import (
    decode_frames,
    portrait_path,
    write_no_face_image,
    write_speech_wav,
    write_two_face_image,
)

FPS = 25
LEFT_S, RIGHT_S = 1.2, 0.8


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("multi")
    return (
        write_two_face_image(folder / "two.png"),
        write_speech_wav(folder / "left.wav", LEFT_S),
        write_speech_wav(folder / "right.wav", RIGHT_S),
    )


def _mouth_boxes(engine: LipsyncEngine, image: Path) -> list[tuple[slice, slice]]:
    source = load_image_bgr(image)
    with engine.face_models() as models:
        faces = two_faces(find_faces(models, source, wanted=2), 64)
    boxes = []
    for face in faces:
        frame, points = scale_to_height(source, face.landmarks.points, 480)
        boxes.append(MouthRig(frame, points).box.slices)
    return boxes


def _motion(frames: list[np.ndarray], still: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
    """Mean absolute difference of a mouth region from the still image, per frame."""
    reference = still[box].astype(np.float32)
    return np.array([np.abs(frame[box].astype(np.float32) - reference).mean() for frame in frames])


def test_two_faces_are_found_left_then_right(
    engine: LipsyncEngine, inputs: tuple[Path, Path, Path]
) -> None:
    left, right = _mouth_boxes(engine, inputs[0])
    assert left[1].stop < right[1].start


@pytest.mark.parametrize(
    ("order", "seconds"),
    [("left_right", LEFT_S + RIGHT_S), ("right_left", LEFT_S + RIGHT_S), ("meanwhile", LEFT_S)],
)
def test_each_mouth_moves_only_while_its_audio_plays(
    engine: LipsyncEngine,
    inputs: tuple[Path, Path, Path],
    tmp_path: Path,
    order: str,
    seconds: float,
) -> None:
    image, left_audio, right_audio = inputs
    out = tmp_path / "out.mp4"
    result = engine.render_multi(
        str(image),
        str(left_audio),
        str(right_audio),
        str(out),
        order=order,
        height=480,
        seed=3,
        idle_motion=False,
    )
    info = probe_output(out)
    assert abs(info.duration_s - seconds) <= 1 / FPS and info.audio_codec == "aac"
    assert result.frames == round(seconds * FPS)
    frames = decode_frames(out)
    still, _ = scale_to_height(load_image_bgr(image), np.zeros((1, 2), np.float32), 480)
    left, right = (_motion(frames, still, box) for box in _mouth_boxes(engine, image))
    first, second = round(LEFT_S * FPS), round(RIGHT_S * FPS)
    # A still mouth differs from the still image by constant encoder noise only (ptp < 1), a
    # talking one by 7-10 grey levels over its box. A few frames of margin: the mouth leads
    # the sound and closes on release.
    if order == "left_right":
        assert np.ptp(left[:first]) > 5 and np.ptp(right[: first - 1]) < 1
        assert np.ptp(right[first:]) > 5 and np.ptp(left[first + 8 :]) < 1
    elif order == "right_left":
        assert np.ptp(right[:second]) > 5 and np.ptp(left[: second - 1]) < 1
        assert np.ptp(left[second:]) > 5 and np.ptp(right[second + 8 :]) < 1
    else:
        assert np.ptp(left) > 5 and np.ptp(right) > 5


def test_one_face_is_not_enough(engine: LipsyncEngine, tmp_path: Path) -> None:
    audio = write_speech_wav(tmp_path / "v.wav", 0.4)
    with pytest.raises(MediaError, match=r"^found 1 face in the image; .* needs two$"):
        engine.render_multi(
            str(portrait_path()), str(audio), str(audio), str(tmp_path / "o.mp4"), height=480
        )


def test_no_face_says_two_are_needed(engine: LipsyncEngine, tmp_path: Path) -> None:
    audio = write_speech_wav(tmp_path / "v.wav", 0.4)
    image = write_no_face_image(tmp_path / "wall.png")
    with pytest.raises(NoFaceError, match="needs two"):
        engine.render_multi(str(image), str(audio), str(audio), str(tmp_path / "o.mp4"), height=480)


def test_unknown_order_is_a_programming_error(
    engine: LipsyncEngine, inputs: tuple[Path, Path, Path]
) -> None:
    image, left, right = inputs
    with pytest.raises(ValueError, match="order"):
        engine.render_multi(str(image), str(left), str(right), "/nonexistent.mp4", order="both")
