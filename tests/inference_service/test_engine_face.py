"""Face detection and landmarks on a real portrait (NASA's Eileen Collins, 512x512)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference_service.engine import LipsyncEngine
from inference_service.engine import landmarks as lm
from inference_service.engine.face_detect import FaceDetector
from inference_service.engine.face_mesh import FaceMesh
from inference_service.media import FaceTooSmallError, MediaError, NoFaceError, load_image_bgr
from tests.media_fixtures import portrait_path, write_garbage, write_no_face_image


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def test_face_is_found_with_a_plausible_box(detector: FaceDetector) -> None:
    faces = detector.detect(load_image_bgr(portrait_path()))
    assert len(faces) == 2  # one per model (short and full range), same face
    face = faces[0]
    assert np.hypot(*np.subtract(faces[1].center, face.center)) < 0.1 * face.size
    assert face.score > 0.8
    # Hand-measured on the photo: the face spans about x 180-270, y 80-175.
    cx, cy = face.center
    assert 200 < cx < 250 and 105 < cy < 155
    assert 70 < face.width < 130 and 70 < face.height < 130
    left_eye, right_eye, nose, mouth = face.keypoints[:4]
    assert left_eye[0] < right_eye[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < mouth[1]


def test_lip_landmarks_surround_the_mouth(detector: FaceDetector) -> None:
    image = load_image_bgr(portrait_path())
    face = detector.detect(image)[0]
    landmarks = FaceMesh().landmarks(image, face)
    assert landmarks is not None and landmarks.presence > 0.9
    points = landmarks.points
    assert points.shape == (468, 2)
    mouth_kp = face.keypoints[3]
    left, right = points[lm.MOUTH_CORNER_LEFT], points[lm.MOUTH_CORNER_RIGHT]
    centre = (left + right) / 2
    assert np.linalg.norm(centre - mouth_kp) < 0.15 * face.size
    assert 0.25 * face.size < right[0] - left[0] < 0.7 * face.size
    upper = points[list(lm.OUTER_UPPER_LIP)][:, 1].mean()
    lower = points[list(lm.OUTER_LOWER_LIP)][:, 1].mean()
    assert upper < lower < points[lm.CHIN][1]
    assert points[lm.NOSE_TIP][1] < upper


def test_a_faceless_image_has_no_face(tmp_path: Path, detector: FaceDetector) -> None:
    image = load_image_bgr(write_no_face_image(tmp_path / "plain.png"))
    mesh = FaceMesh()
    # The detector may fire on smooth gradients; the mesh must reject every such candidate.
    assert all(mesh.landmarks(image, face) is None for face in detector.detect(image))
    with pytest.raises(NoFaceError) as caught:
        LipsyncEngine().prepare_face(tmp_path / "plain.png")
    assert caught.value.user_message == "no face found in image"


def test_face_below_the_minimum_size_is_refused() -> None:
    with pytest.raises(FaceTooSmallError) as caught:
        LipsyncEngine(min_face_px=300).prepare_face(portrait_path())
    assert "minimum of 300 px" in caught.value.user_message


def test_undecodable_image_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="image could not be decoded"):
        LipsyncEngine().prepare_face(write_garbage(tmp_path / "face.jpg"))
