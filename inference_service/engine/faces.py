"""Find the faces of a still image: one for a portrait, two (left, right) for a conversation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference_service.engine.face_detect import FaceBox
from inference_service.engine.face_mesh import FaceLandmarks
from inference_service.engine.face_models import FaceModels
from inference_service.media.errors import FaceTooSmallError, MediaError, NoFaceError

UInt8Array = npt.NDArray[np.uint8]

# Face candidates checked with the mesh (~3 ms each) before giving up.
MAX_CANDIDATES = 8
# Two candidates whose centres are closer than this (fraction of the larger) are one face.
SAME_FACE = 0.5


@dataclass(frozen=True)
class FoundFace:
    box: FaceBox
    landmarks: FaceLandmarks

    @property
    def size(self) -> float:
        return self.box.size


def _same(a: FaceBox, b: FaceBox) -> bool:
    distance = float(np.hypot(a.center[0] - b.center[0], a.center[1] - b.center[1]))
    return distance < SAME_FACE * max(a.size, b.size)


def find_faces(models: FaceModels, image: UInt8Array, *, wanted: int) -> list[FoundFace]:
    """Distinct faces the face mesh confirms, the detector's order (largest first per model).

    Stops after ``wanted`` faces. When the whole image holds fewer, each half is
    searched again: the detectors see a letterboxed 128 or 192 px thumbnail, in
    which the faces of a wide two-person shot can be too small to fire on.
    """
    found: list[FoundFace] = []
    width = image.shape[1]
    regions = [(0, width)]
    if wanted > 1:
        overlap = width // 10
        regions += [(0, width // 2 + overlap), (width // 2 - overlap, width)]
    for x0, x1 in regions:
        tile = np.ascontiguousarray(image[:, x0:x1])
        for box in models.detector.detect(tile)[:MAX_CANDIDATES]:
            box = _shifted(box, x0)
            if any(_same(box, face.box) for face in found):
                continue
            landmarks = models.mesh.landmarks(image, box)
            if landmarks is not None:
                found.append(FoundFace(box, landmarks))
            if len(found) == wanted:
                return found
    return found


def _shifted(box: FaceBox, dx: int) -> FaceBox:
    if dx == 0:
        return box
    keypoints = box.keypoints + np.array([dx, 0], np.float32)
    return FaceBox(box.x + dx, box.y, box.width, box.height, box.score, keypoints)


def one_face(faces: list[FoundFace], min_face_px: int) -> FoundFace:
    if not faces:
        raise NoFaceError()
    return _big_enough(faces[0], min_face_px)


def two_faces(faces: list[FoundFace], min_face_px: int) -> tuple[FoundFace, FoundFace]:
    """The two largest faces, ordered left to right by their centres."""
    if not faces:
        raise NoFaceError("no face found in the image; lipsync-image-multi needs two")
    if len(faces) == 1:
        raise MediaError("found 1 face in the image; lipsync-image-multi needs two")
    pair = sorted(
        sorted(faces, key=lambda face: face.size, reverse=True)[:2],
        key=lambda face: face.box.center[0],
    )
    return _big_enough(pair[0], min_face_px), _big_enough(pair[1], min_face_px)


def _big_enough(face: FoundFace, min_face_px: int) -> FoundFace:
    if round(face.size) < min_face_px:
        raise FaceTooSmallError(round(face.size), min_face_px)
    return face
