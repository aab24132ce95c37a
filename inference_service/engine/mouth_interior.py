"""The inside of a re-opened mouth in video mode: the person's own teeth, tongue and shadow.

A video usually shows its speaker's mouth open somewhere. The most open such
frame is kept as an *exemplar*: the gap between the inner lips, resampled into
a small texture (rows from the upper inner lip down to the lower one, columns
from corner to corner) with each column's height. A newly opened mouth is then
filled from that texture, warped to the new gap, instead of painted teeth:

* The upper teeth belong to the skull, so the texture hangs from the upper lip
  at its own scale (in mouth widths). A gap smaller than the exemplar's shows
  its top part only (upper teeth, shadow): the lower lip hides the rest, as the
  lower teeth are hidden in a half-open mouth.
* A gap taller than the exemplar's keeps the exemplar's top half on the upper
  lip and its bottom half (tongue, lower teeth) on the lower lip, and stretches
  the dark middle in between: a wider "ah" shows more throat, not longer teeth.
* The texture is relit by the ratio of the lips' colour now to the lips' colour
  in the exemplar's frame, so a face that walks into shade keeps a matching mouth.

Which frames: ``InteriorBank`` watches frames with their landmarks and keeps
the widest open mouth it has seen, if any opened to ``OPEN_ENOUGH`` at all. The
engine holds back the video's first frames (up to a second) until one is open
wide, so those are drawn with it too, then keeps looking while it has none.

Where no frame shows it (a still portrait with closed lips, a video whose
speaker never opens the mouth), ``painted`` makes the same kind of texture from
the face's own colours, filled the same way: upper teeth shaded by the upper
lip's shadow above and fading into the dark below (no hard edge, no outline),
a deep cavity, the tongue low in it, and the lower teeth as a thin, darker band
just above the lower lip, which a half-open mouth hides entirely.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from inference_service.engine import landmarks as lm
from inference_service.engine.warp_math import FaceFrame

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]

# A gap narrower than this (fraction of the mouth width) is mostly lip edge and shadow:
# too thin to show what the teeth look like.
OPEN_ENOUGH = 0.14
# Texture size: rows from the upper inner lip to the lower, columns from corner to corner.
ROWS, COLS = 32, 64
# Relighting never changes a channel by more than this factor either way.
RELIGHT_LIMIT = 1.35
# The painted interior, in mouth widths below the upper lip: the gap it is drawn for,
# the upper teeth (with the lip's shadow over their top), the lower teeth and the
# tongue above the lower lip.
PAINTED_GAP = 0.17
UPPER_TEETH = 0.06
LIP_SHADOW = 0.025
LOWER_TEETH = 0.035
TONGUE = 0.06
# How dark the cavity is against the lip-and-throat colour. Real open mouths are deep
# shadow; at 1.0 the cavity read as a brown patch, and the face mesh (tests/quality) put
# the inner lower lip halfway down it, measuring a wide-open mouth as barely parted. At
# 0.4 the measured opening grows monotonically with the rendered one on both test faces.
CAVITY_SHADE = 0.4
# The darkest the lower lip's shadow makes what is just above it.
LOWER_LIP_SHADE = 0.75
# A frame's exemplar replaces the kept one only when its mouth is this much more open:
# swapping teeth for nearly the same opening would only make them flicker.
BETTER_BY = 1.15


@dataclass(frozen=True)
class Interior:
    """One frame's open mouth, resampled: see the module's docstring."""

    texture: FloatArray  # (ROWS, COLS, 3) BGR
    heights: FloatArray  # (COLS,) the gap's height per column, in mouth widths
    lip_colour: FloatArray  # (3,) the lips' mean BGR in that frame
    opening: float  # the widest column's height, in mouth widths


def mouth_frame(points: FloatArray) -> tuple[FaceFrame, float]:
    """The face frame of the mouth (``u`` corner to corner, ``v`` toward the chin) and the
    mouth's width in pixels, as ``MouthRig`` uses them."""
    left, right = points[lm.MOUTH_CORNER_LEFT], points[lm.MOUTH_CORNER_RIGHT]
    return FaceFrame((left + right) / 2, right - left, points[lm.CHIN]), float(
        np.linalg.norm(right - left)
    )


def lip_colour(image: UInt8Array, points: FloatArray) -> FloatArray | None:
    """Mean BGR of the lower lip (between its inner and outer contours), None if it has no area."""
    ring = np.concatenate(
        [points[list(lm.INNER_LOWER_LIP)], points[list(lm.OUTER_LOWER_LIP)][::-1]]
    )
    x0, y0 = np.floor(ring.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(ring.max(axis=0)).astype(int) + 2
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    x1, y1 = min(int(x1), image.shape[1]), min(int(y1), image.shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round(ring - [x0, y0]).astype(np.int32)], 255)
    if not np.any(mask):
        return None
    return np.asarray(cv2.mean(image[y0:y1, x0:x1], mask=mask)[:3], np.float32)


def skin_colour(image: UInt8Array, points: FloatArray) -> FloatArray:
    """Mean BGR of the chin's skin, between the lower lip and the chin point."""
    width = mouth_frame(points)[1]
    centre = (points[lm.LOWER_LIP_BOTTOM] + points[lm.CHIN]) / 2
    half = max(0.15 * width, 1.0)
    x0, y0 = (np.floor(centre - half)).astype(int)
    x1, y1 = (np.ceil(centre + half)).astype(int) + 1
    patch = image[max(y0, 0) : min(y1, image.shape[0]), max(x0, 0) : min(x1, image.shape[1])]
    if patch.size == 0:
        return np.array([150, 170, 200], np.float32)
    return np.asarray(patch.reshape(-1, 3).mean(axis=0), np.float32)


def _inner_lips(frame: FaceFrame, points: FloatArray) -> tuple[FloatArray, FloatArray]:
    def sorted_uv(indices: tuple[int, ...]) -> FloatArray:
        uv = frame.to_uv(points[list(indices)])
        return uv[np.argsort(uv[:, 0])]

    return sorted_uv(lm.INNER_UPPER_LIP), sorted_uv(lm.INNER_LOWER_LIP)


def mouth_gap(points: FloatArray) -> float:
    """The inner lips' widest vertical gap, in mouth widths (0 for a closed mouth)."""
    frame, width = mouth_frame(points)
    upper, lower = _inner_lips(frame, points)
    gap = lower[:, 1] - np.interp(lower[:, 0], upper[:, 0], upper[:, 1])
    return max(float(gap.max()), 0.0) / max(width, 1.0)


def capture(image: UInt8Array, points: FloatArray) -> Interior | None:
    """The open mouth of ``image`` as an exemplar, or None if it is not open enough."""
    frame, width = mouth_frame(points)
    upper, lower = _inner_lips(frame, points)
    u = np.linspace(
        max(upper[0, 0], lower[0, 0]), min(upper[-1, 0], lower[-1, 0]), COLS, dtype=np.float32
    )
    top = np.interp(u, upper[:, 0], upper[:, 1]).astype(np.float32)
    heights = np.maximum(np.interp(u, lower[:, 0], lower[:, 1]) - top, 0.0).astype(np.float32)
    colour = lip_colour(image, points)
    if colour is None or float(heights.max()) < OPEN_ENOUGH * width:
        return None
    t = np.linspace(0.0, 1.0, ROWS, dtype=np.float32)[:, np.newaxis]
    uv = np.stack(np.broadcast_arrays(u[np.newaxis, :], top + t * heights), axis=-1)
    xy = frame.to_xy(uv.astype(np.float32))
    texture = cv2.remap(
        image, xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return Interior(
        texture=np.asarray(texture, np.float32),
        heights=heights / width,
        lip_colour=colour,
        opening=float(heights.max()) / width,
    )


def fill(
    interior: Interior,
    across: FloatArray,
    depth: FloatArray,
    gap: FloatArray,
    lips_now: FloatArray | None,
) -> FloatArray:
    """The exemplar's colours for pixels of a new gap.

    ``across``: each pixel's place along the mouth, 0 at one inner corner to 1 at the other;
    ``depth``: its distance below the upper lip and ``gap``: the gap's height at that
    place, both in mouth widths. Returns BGR float32 of the same shape plus a channel axis.
    """
    column = np.clip(across, 0.0, 1.0) * (COLS - 1)
    own = np.interp(column, np.arange(COLS, dtype=np.float32), interior.heights)
    own = np.maximum(own, 1e-3).astype(np.float32)
    below = gap - depth  # distance above the lower lip
    # Top-anchored while the new gap is no taller than the exemplar's; then top half on the
    # upper lip, bottom half on the lower one, the dark middle row stretched between.
    stretched = np.where(
        depth < own / 2, depth / own, np.where(below < own / 2, 1.0 - below / own, 0.5)
    )
    t = np.where(gap <= own, depth / own, stretched)
    row = np.clip(t, 0.0, 1.0) * (ROWS - 1)
    colours = cv2.remap(
        interior.texture,
        column.astype(np.float32),
        row.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    colours = np.asarray(colours, np.float32).reshape(*across.shape, 3)
    # The lower lip's inner edge shadows what lies right above it, whatever the texture
    # shows there (a small gap shows only the exemplar's top).
    colours = (
        colours
        * (LOWER_LIP_SHADE + (1.0 - LOWER_LIP_SHADE) * np.clip(below / 0.015, 0.0, 1.0))[
            ..., np.newaxis
        ]
    )
    if lips_now is not None:
        gain = np.clip(
            lips_now / np.maximum(interior.lip_colour, 1.0), 1 / RELIGHT_LIMIT, RELIGHT_LIMIT
        )
        colours = colours * gain.astype(np.float32)
    return colours


def painted(lips: FloatArray, skin: FloatArray, *, teeth: bool) -> Interior:
    """An interior from the face's colours (``lips``, ``skin``: mean BGR), for a mouth no
    frame shows open; ``teeth=False`` leaves the teeth out (a portrait already showing
    its own, which stay where they are)."""
    depth = np.linspace(0.0, PAINTED_GAP, ROWS, dtype=np.float32)[:, np.newaxis, np.newaxis]
    across = np.linspace(-1.0, 1.0, COLS, dtype=np.float32)
    profile = np.sqrt(np.clip(1.0 - across * across, 0.0, 1.0))[np.newaxis, :, np.newaxis]
    brightness = float(np.clip(lips.mean() / 140.0, 0.55, 1.15))
    # A deep red-brown shadow (half the lips' own hue, half a fixed throat colour),
    # darkest in the middle where the throat is.
    throat = np.array([22, 24, 80], np.float32) * brightness
    colour = (0.5 * lips * 0.35 + 0.5 * throat) * (1.15 - 0.45 * profile) * CAVITY_SHADE
    from_bottom = PAINTED_GAP - depth
    # The tongue: a muted, redder version of the lips, rising softly from the bottom.
    tongue = lips * np.array([0.5, 0.5, 0.78], np.float32) * (0.7 + 0.3 * profile)
    colour = _over(colour, tongue, 0.7 * _band(from_bottom, 0.0, TONGUE, soft=0.03))
    if teeth:
        # Enamel: near white, warmed by the skin, as bright as the face allows, receding
        # into shadow toward the corners.
        grey = float(np.clip(skin.mean() * 1.05 + 30.0, 120.0, 235.0))
        enamel = 0.75 * grey + 0.25 * skin * (grey / max(float(skin.mean()), 1.0))
        shade = 0.35 + 0.6 * profile
        # Under the upper lip they are in its shadow; their tips fade into the dark, each
        # tooth's a little rounded, with a faint seam between neighbours.
        lit = 0.72 + 0.28 * np.clip(depth / LIP_SHADOW, 0.0, 1.0)
        seams = _tooth_seams(across)[np.newaxis, :, np.newaxis]
        upper = enamel * shade * lit * (1.0 - 0.18 * seams)
        tips = UPPER_TEETH * (1.0 - 0.3 * seams)
        colour = _over(colour, upper, 0.95 * _band(depth, -1.0, tips, soft=0.02))
        lower = enamel * shade * 0.6
        colour = _over(colour, lower, 0.85 * _band(from_bottom, 0.008, LOWER_TEETH, soft=0.012))
    heights = (PAINTED_GAP * profile[0, :, 0]).astype(np.float32)
    return Interior(np.ascontiguousarray(colour, np.float32), heights, lips, PAINTED_GAP)


# Where neighbouring upper teeth meet, across the mouth (-1 .. 1): incisors, laterals, canines.
_SEAMS = (0.0, 0.2, -0.2, 0.38, -0.38, 0.55, -0.55)


def _tooth_seams(across: FloatArray) -> FloatArray:
    """1 on a seam between two teeth, falling to 0 over a few hundredths of the mouth."""
    near = np.min(np.abs(across[:, np.newaxis] - np.array(_SEAMS, np.float32)), axis=1)
    return np.clip(1.0 - near / 0.035, 0.0, 1.0).astype(np.float32)


def _band(x: FloatArray, start: float, end: FloatArray | float, *, soft: float) -> FloatArray:
    """1 from ``start`` to ``end`` along ``x``, fading out over ``soft`` past ``end``."""
    inside = np.clip((end + soft - x) / soft, 0.0, 1.0) * (x >= start)
    return (inside * inside * (3.0 - 2.0 * inside)).astype(np.float32)


def _over(under: FloatArray, top: FloatArray, alpha: FloatArray) -> FloatArray:
    return (under * (1.0 - alpha) + top * alpha).astype(np.float32)


class InteriorBank:
    """The widest open mouth seen so far in one video (one render, one face)."""

    def __init__(self) -> None:
        self.best: Interior | None = None

    def offer(self, image: UInt8Array, points: FloatArray) -> None:
        """Keep this frame's mouth if it is open enough and clearly wider than the kept one."""
        gap = mouth_gap(points)
        if gap < OPEN_ENOUGH:
            return
        if self.best is not None and gap < BETTER_BY * self.best.opening:
            return
        found = capture(image, points)
        if found is not None:
            self.best = found
