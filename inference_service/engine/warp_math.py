"""Small vectorised helpers shared by the facial rigs."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def smoothstep(edge0: FloatArray | float, edge1: FloatArray | float, x: FloatArray) -> FloatArray:
    """Hermite ramp from 0 at ``edge0`` to 1 at ``edge1``; C1, so warps show no creases."""
    t = np.clip((x - edge0) / np.maximum(np.asarray(edge1) - edge0, 1e-6), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


class FaceFrame:
    """A 2-D frame attached to the face: ``u`` along an axis, ``v`` perpendicular to it.

    Rigs are defined in this frame so a tilted head animates like an upright one.
    """

    def __init__(self, origin: FloatArray, axis: FloatArray, down_hint: FloatArray) -> None:
        self.origin = origin.astype(np.float32)
        self.ex = (axis / max(float(np.linalg.norm(axis)), 1e-6)).astype(np.float32)
        ey = np.array([-self.ex[1], self.ex[0]], np.float32)
        # Orient v toward the hint (e.g. the chin), whatever the image's handedness.
        if float(np.dot(down_hint - self.origin, ey)) < 0:
            ey = -ey
        self.ey = ey

    def to_uv(self, points: FloatArray) -> FloatArray:
        rel = np.asarray(points, np.float32) - self.origin
        return np.stack([rel @ self.ex, rel @ self.ey], axis=-1).astype(np.float32)

    def to_xy(self, uv: FloatArray) -> FloatArray:
        uv = np.asarray(uv, np.float32)
        return (self.origin + uv[..., :1] * self.ex + uv[..., 1:2] * self.ey).astype(np.float32)

    def grid_uv(self, x0: int, y0: int, x1: int, y1: int) -> tuple[FloatArray, FloatArray]:
        """(u, v) of every pixel centre in the box [x0, x1) x [y0, y1)."""
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        rx, ry = xs - self.origin[0], ys - self.origin[1]
        u = rx * self.ex[0] + ry * self.ex[1]
        v = rx * self.ey[0] + ry * self.ey[1]
        return u.astype(np.float32), v.astype(np.float32)

    def bounding_box(
        self, u0: float, u1: float, v0: float, v1: float, width: int, height: int
    ) -> tuple[int, int, int, int]:
        """Integer image box covering a (u, v) rectangle, clipped to the image."""
        corners = self.to_xy(np.array([[u0, v0], [u1, v0], [u0, v1], [u1, v1]], np.float32))
        x0 = int(np.clip(np.floor(corners[:, 0].min()), 0, width))
        x1 = int(np.clip(np.ceil(corners[:, 0].max()) + 1, 0, width))
        y0 = int(np.clip(np.floor(corners[:, 1].min()), 0, height))
        y1 = int(np.clip(np.ceil(corners[:, 1].max()) + 1, 0, height))
        return x0, y0, x1, y1
