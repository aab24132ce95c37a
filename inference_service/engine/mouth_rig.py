"""Open and close the mouth of a still portrait by warping the lower lip and jaw.

Everything that does not depend on the opening is computed once: the region
of interest (ROI) around mouth and chin, a per-pixel displacement basis, and
the colour layers for the mouth cavity and teeth. A frame then costs one
``cv2.remap`` of the ROI plus an anti-aliased polygon composite, and pixels
outside the ROI are never touched.

Model, in a face frame with ``u`` along the mouth (corner to corner) and
``v`` down toward the chin:

* Above the resting inner lower lip nothing moves: upper lip and any teeth
  already visible stay with the skull, as anatomy says.
* Below it, content moves down by ``opening * amplitude * B(u, v)``. Near the
  lip line ``B`` follows the mouth's elliptical gap profile (zero at the
  corners); further down it blends into a rigid jaw profile that covers the
  chin and fades out across the cheeks and into the neck.
* The newly opened gap between the resting and the displaced inner lower lip
  is painted as mouth cavity (dark, derived from the lip colour) with upper
  teeth along its top edge when the source mouth was closed.
* Rounded vowels (o, u) pull the lips toward the mouth's centre along ``u``
  (``roundness``), which also narrows the painted gap; spread ones (i, e:
  negative roundness) pull them outward.
* A bilabial (``closure``) must shut the lips even on a portrait whose rest
  mouth is open (a smile showing teeth): the lower lip rises by ``SEAL_LOWER``
  of the rest gap and the upper lip comes down by ``SEAL_UPPER`` of it, meeting
  over the teeth. An f or v (``teeth``) shows the upper teeth down to the lower lip.
* Video frames come with their own, moving mouth. With ``close_source`` the
  rest line is the inner *upper* lip and every frame first lifts the lower
  lip and jaw by the source's own gap (a flatter profile than an opening's, so
  the corners close too, easing off toward the jaw line so no neck is pulled
  onto the chin), so the original speech is suppressed before the new one is
  drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from inference_service.engine import landmarks as lm
from inference_service.engine import mouth_interior
from inference_service.engine.mouth_interior import Interior
from inference_service.engine.warp_math import FaceFrame, smoothstep

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]

# Widest opening as a fraction of the mouth width (corner to corner); a relaxed "ah".
MAX_OPEN_RATIO = 0.32
# Openings below this are drawn as the untouched source (avoids sub-pixel shimmer in pauses).
MIN_VISIBLE_OPENING = 0.02
# A source gap (inner lips apart) below this fraction of the mouth width counts as closed.
CLOSED_MOUTH_RATIO = 0.06
# An f or v: the gap shows this much (mouth widths) of the interior's top, the upper teeth,
# stretched down to the lower lip.
TEETH_ON_LIP = 0.05
# How far (fraction of the distance to the centre) fully rounded lips move inward; negative
# roundness (spread vowels) moves them outward. The face mesh reads lip width compressed (at
# 0.22 a full pucker measured 6 % narrower), and people's rounded vowels are 15-25 % narrower
# than their spread ones. The articulation bench reads rounded vowels at 0.87 (English) and
# 0.875 (Korean) of the spread ones' width; stronger pulls measured no narrower (the mesh
# holds the corners to its mean shape): what narrows them further is a surer rounding
# (visemes.py, ``LEAN_PLAIN``).
PUCKER = 0.56
# The same for spread lips (negative roundness), read from nearer the centre.
SPREAD = 0.56
# Sealing an open rest mouth: the shares of its gap by which the lower lip rises and the
# upper lip comes down.
SEAL_LOWER = 0.7
SEAL_UPPER = 0.55
# The face mesh under-reads a wide-open mouth (its lips are drawn toward the mean shape),
# so a source gap is closed a little more than measured.
CLOSING_GAIN = 1.2
# A smiling source mouth stays open into its corners, where an ellipse (the profile of a new
# opening) would leave dark slivers of it: closing uses a flatter, wider profile.
CLOSING_WIDTH = 1.15
CLOSING_FLATNESS = 0.5
# Width of the fade at the face oval (fraction of the mouth width) beyond which nothing moves.
FACE_FEATHER = 0.12
# fillPoly sub-pixel precision: coordinates are in 1/16 px.
_SHIFT = 4
_POLY_POINTS = 24


@dataclass(frozen=True)
class Box:
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


class MouthRig:
    """Renders the mouth region of ``source`` at any opening in [0, 1]."""

    def __init__(
        self,
        source: UInt8Array,
        points: FloatArray,
        *,
        close_source: bool = False,
        interior: Interior | None = None,
    ) -> None:
        self.source = source
        height, width = source.shape[:2]
        left, right = points[lm.MOUTH_CORNER_LEFT], points[lm.MOUTH_CORNER_RIGHT]
        self.frame = FaceFrame((left + right) / 2, right - left, points[lm.CHIN])
        self.mouth_width = float(np.linalg.norm(right - left))

        lower = self._sorted_uv(points, lm.INNER_LOWER_LIP)
        upper = self._sorted_uv(points, lm.INNER_UPPER_LIP)
        rest = upper if close_source else lower
        self._lip_u, self._lip_v = rest[:, 0], rest[:, 1]
        self.half_width = float(max((lower[-1, 0] - lower[0, 0]) / 2, 1.0))
        self.centre_u = float((lower[-1, 0] + lower[0, 0]) / 2)
        chin_v = float(self.frame.to_uv(points[lm.CHIN])[1])
        lip_bottom_v = float(self.frame.to_uv(points[lm.LOWER_LIP_BOTTOM])[1])
        lip_v = float(np.interp(self.centre_u, self._lip_u, self._lip_v))
        fade = max(0.5 * (chin_v - lip_v), 0.25 * self.mouth_width)
        source_gap = float(np.max(lower[:, 1] - np.interp(lower[:, 0], upper[:, 0], upper[:, 1])))
        widest = MAX_OPEN_RATIO * self.mouth_width
        # Pixels the lower lip must rise to close the source mouth: in every frame of a video,
        # and for a portrait only where a bilabial seals its lips (``closure``), which matters
        # for a rest mouth that is open (a smile showing teeth).
        lift = CLOSING_GAIN * max(source_gap, 0.0)
        self.closing = lift if close_source else 0.0
        self.seal = 0.0 if close_source else lift
        if close_source:
            self.draw_teeth = True
            self.amplitude = widest
        else:
            self.draw_teeth = source_gap < CLOSED_MOUTH_RATIO * self.mouth_width
            # A mouth that is already open (a smile showing teeth) needs less extra opening.
            self.amplitude = max(widest - 0.5 * max(source_gap, 0.0), 0.6 * widest)
        outer_top_v = float(self._sorted_uv(points, lm.OUTER_UPPER_LIP)[:, 1].min())

        reach = 1.25 * self.mouth_width
        box = self.frame.bounding_box(
            self.centre_u - reach,
            self.centre_u + reach,
            min(float(self._lip_v.min()) - self.amplitude, outer_top_v - 0.2 * self.mouth_width)
            - 2.0,
            chin_v + fade + 2.0,
            width,
            height,
        )
        self.box = Box(*box)
        u, v = self.frame.grid_uv(*box)
        self._u = u
        face = self._face_weight(points, fade)
        basis = self._displacement_basis(u, v, lip_bottom_v, chin_v, fade, self._lip_profile(u))
        basis *= face
        ys, xs = np.mgrid[self.box.y0 : self.box.y1, self.box.x0 : self.box.x1].astype(np.float32)
        self._grid_x, self._grid_y = xs, ys
        # Backward map: the output pixel p shows source pixel p - d(p) * down.
        self._shift_x = (self.amplitude * basis * self.frame.ey[0]).astype(np.float32)
        self._shift_y = (self.amplitude * basis * self.frame.ey[1]).astype(np.float32)
        # Closing a video's own mouth lifts the lower lip and jaw by its gap; each pixel
        # shows skin from above the jaw line, never the neck or collar beyond it, which
        # would surface on the chin as a dark blot. The chin's outline stays where it is:
        # the lift eases off over the last gap's height above the jaw line (a hard limit
        # would show the jaw line's own row in a whole band, as vertical streaks).
        to_jaw_line = np.maximum(self._jaw_line_v(points, u) - v, 0.0)
        closing_lips = self._lip_profile(u, CLOSING_WIDTH) ** CLOSING_FLATNESS
        close_basis = self._displacement_basis(u, v, lip_bottom_v, chin_v, fade, closing_lips)
        wanted = lift * close_basis * face
        close = wanted * (1.0 - np.exp(-to_jaw_line / np.maximum(wanted, 1e-3)))
        self._close_x = (close * self.frame.ey[0]).astype(np.float32)
        self._close_y = (close * self.frame.ey[1]).astype(np.float32)
        # Sealing an open rest mouth (a bilabial on a smiling portrait): the lips meet in
        # between, the lower one rising by SEAL_LOWER of the gap, the upper one coming down by
        # SEAL_UPPER (together a little more than the gap: pressed), over the teeth.
        upper_v = np.interp(u, upper[:, 0], upper[:, 1]).astype(np.float32)
        lower_v = np.interp(u, lower[:, 0], lower[:, 1]).astype(np.float32)
        margin = 0.1 * self.mouth_width
        upper_lip = smoothstep(outer_top_v - margin, upper_v, v) * (
            1.0 - smoothstep(lower_v, lower_v + margin, v)
        )
        drop = self.seal * SEAL_UPPER * upper_lip * closing_lips * face
        self._seal_x = (drop * self.frame.ey[0]).astype(np.float32)
        self._seal_y = (drop * self.frame.ey[1]).astype(np.float32)
        pucker, spread = self._pucker_basis(u, v, outer_top_v, lip_bottom_v)
        self._pucker_x = (pucker * self.frame.ex[0]).astype(np.float32)
        self._pucker_y = (pucker * self.frame.ex[1]).astype(np.float32)
        self._spread_x = (spread * self.frame.ex[0]).astype(np.float32)
        self._spread_y = (spread * self.frame.ex[1]).astype(np.float32)
        lips = mouth_interior.lip_colour(source, points)
        self._lips_now = np.array([90, 90, 150], np.float32) if lips is None else lips
        if interior is None:
            skin = mouth_interior.skin_colour(source, points)
            interior = mouth_interior.painted(self._lips_now, skin, teeth=self.draw_teeth)
        self.interior = interior

    def _sorted_uv(self, points: FloatArray, indices: tuple[int, ...]) -> FloatArray:
        uv = self.frame.to_uv(points[list(indices)])
        return uv[np.argsort(uv[:, 0])]

    def _lip_profile(self, u: FloatArray, widen: float = 1.0) -> FloatArray:
        """Relative gap height along the mouth: an ellipse, 1 in the middle, 0 at the corners
        (``widen`` times half the mouth away from its centre)."""
        x = (u - self.centre_u) / (self.half_width * widen)
        return np.sqrt(np.clip(1.0 - x * x, 0.0, 1.0)).astype(np.float32)

    def _displacement_basis(
        self,
        u: FloatArray,
        v: FloatArray,
        lip_bottom_v: float,
        chin_v: float,
        fade: float,
        lips: FloatArray,
    ) -> FloatArray:
        """Downward displacement per unit drop: the gap profile ``lips`` along the lip line,
        blending into a rigid jaw toward the chin."""
        lip_v = np.interp(u, self._lip_u, self._lip_v).astype(np.float32)
        du = np.abs(u - self.centre_u)
        jaw = 1.0 - smoothstep(0.45 * self.mouth_width, 1.15 * self.mouth_width, du)
        # The lips part along a sharp line inside the mouth; past the corners skin stretches.
        tear_width = 1.0 + np.maximum(du - self.half_width, 0.0) * 0.8
        tear = smoothstep(lip_v - 0.5, lip_v - 0.5 + tear_width, v)
        to_jaw = smoothstep(lip_v, lip_bottom_v + 0.5 * (chin_v - lip_bottom_v), v)
        below_chin = 1.0 - smoothstep(chin_v, chin_v + fade, v)
        return (tear * ((1.0 - to_jaw) * lips + to_jaw * jaw) * below_chin).astype(np.float32)

    def _jaw_line_v(self, points: FloatArray, u: FloatArray) -> FloatArray:
        """``v`` of the lower face outline at each ``u`` (no limit beyond its ends)."""
        jaw = self._sorted_uv(points, lm.JAW)
        line = np.interp(u, jaw[:, 0], jaw[:, 1]).astype(np.float32)
        outside = (u < jaw[0, 0]) | (u > jaw[-1, 0])
        return np.where(outside, np.float32(np.inf), line).astype(np.float32)

    def _face_weight(self, points: FloatArray, fade: float) -> FloatArray:
        """1 inside the face oval (and the skin a chin drags below it), 0 beyond, feathered.

        The jaw profile alone reaches 1.15 mouth widths sideways, past a narrow face's
        cheeks onto the background, collar or hair; in a video those pixels would bend
        frame to frame as the opening changes. Skin moves, what lies outside it does not.
        """
        jaw = points[list(lm.JAW)]
        dragged = jaw + fade * self.frame.ey  # the chin pulls the skin under it along
        hull = cv2.convexHull(
            np.round(np.concatenate([jaw, dragged]) * (1 << _SHIFT)).astype(np.int32)
        )
        rows, cols = self.box.y1 - self.box.y0, self.box.x1 - self.box.x0
        mask = np.zeros((rows, cols), np.uint8)
        offset = np.array([[self.box.x0, self.box.y0]], np.int32) * (1 << _SHIFT)
        cv2.fillConvexPoly(mask, hull - offset, 255, cv2.LINE_AA, _SHIFT)
        # Feather inward so the weight reaches 0 at the oval, not a blur-width beyond it.
        feather = max(FACE_FEATHER * self.mouth_width, 1.0)
        size = 2 * int(np.ceil(feather)) + 1
        inner = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
        weight = cv2.GaussianBlur(inner.astype(np.float32) / 255.0, (0, 0), feather / 2)
        return np.asarray(weight, np.float32)

    def _pucker_basis(
        self, u: FloatArray, v: FloatArray, top_v: float, bottom_v: float
    ) -> tuple[FloatArray, FloatArray]:
        """Pull along ``u`` per unit roundness, lips only, fading into the cheeks: inward for
        rounded lips (positive roundness), outward for spread ones.

        Rounding is defined forward: a source point at ``s`` from the centre is drawn at
        ``s / (1 + PUCKER)`` out to ``reach``, then less and less squeezed, to unmoved at
        ``reach + margin``, and the backward map is that inverted. Written backward (show
        the source at ``du * (1 + PUCKER * fade)``) it folds where the fade falls, showing
        the cheek beside the corners twice, mirrored: grey smudges on a smiling face. The
        forward map only stretches there, and never reads past ``reach + margin``.
        Spreading (read from nearer the centre) does not fold written backward.
        """
        margin = 0.25 * self.mouth_width
        rows = smoothstep(top_v - margin, top_v, v) * (
            1.0 - smoothstep(bottom_v, bottom_v + margin, v)
        )
        du = u - self.centre_u
        reach = 0.5 * self.mouth_width
        source = np.linspace(0.0, reach + margin, 512, dtype=np.float32)
        keep = 1.0 - smoothstep(reach, reach + margin, source)
        drawn = source - source * keep * (PUCKER / (1.0 + PUCKER))
        far = np.abs(du)
        pull = np.where(far < drawn[-1], np.interp(far, drawn, source) - far, 0.0)
        inward = np.sign(du) * pull * rows
        cols = 1.0 - smoothstep(reach, reach + margin, np.abs(du))
        outward = -SPREAD * du * rows * cols
        return inward.astype(np.float32), outward.astype(np.float32)

    def _gap_outline(self, opening: float, roundness: float) -> FloatArray:
        """Outline (ROI pixels) of the opened gap."""
        u = np.linspace(self._lip_u[0], self._lip_u[-1], _POLY_POINTS).astype(np.float32)
        rest_v = np.interp(u, self._lip_u, self._lip_v).astype(np.float32)
        low_v = rest_v + opening * self.amplitude * self._lip_profile(u)
        # Rounded lips: the same gap profile, squeezed toward the centre like the lips around it.
        u = (self.centre_u + (u - self.centre_u) * (1.0 - PUCKER * roundness)).astype(np.float32)
        ring = np.concatenate([np.stack([u, rest_v], 1), np.stack([u, low_v], 1)[::-1]])
        return self.frame.to_xy(ring) - np.array([self.box.x0, self.box.y0], np.float32)

    def render_into(
        self,
        canvas: UInt8Array,
        opening: float,
        roundness: float = 0.0,
        closure: float = 0.0,
        teeth: float = 0.0,
    ) -> None:
        """Write the mouth ROI into ``canvas`` (a copy of the source frame).

        ``opening`` in [0, 1]; ``roundness`` in [-1, 1] (negative spreads the lips);
        ``closure`` in [0, 1] seals an open rest mouth (a bilabial); ``teeth`` in [0, 1]
        shows the upper teeth over the whole gap, resting on the lower lip (an f or v).
        """
        rows, cols = self.box.slices
        opening, roundness = float(opening), float(np.clip(roundness, -1.0, 1.0))
        seal = float(np.clip(closure, 0.0, 1.0)) if self.seal > 0.0 else 0.0
        lift = 1.0 if self.closing > 0.0 else seal * SEAL_LOWER
        if opening < MIN_VISIBLE_OPENING:
            opening = 0.0
        if (
            opening == 0.0
            and self.closing < 0.5
            and seal * self.seal < 0.5
            and abs(roundness) < MIN_VISIBLE_OPENING
        ):
            canvas[rows, cols] = self.source[rows, cols]
            return
        # The lower lip drops by the new opening after rising by the source's own (video) gap.
        rounded, spread = max(roundness, 0.0), max(-roundness, 0.0)
        map_x = (
            self._grid_x
            - opening * self._shift_x
            + lift * self._close_x
            - seal * self._seal_x
            + rounded * self._pucker_x
            + spread * self._spread_x
        ).astype(np.float32)
        map_y = (
            self._grid_y
            - opening * self._shift_y
            + lift * self._close_y
            - seal * self._seal_y
            + rounded * self._pucker_y
            + spread * self._spread_y
        ).astype(np.float32)
        # remap returns a new ROI-sized array, so the source stays pristine for the next frame.
        warped = np.asarray(
            cv2.remap(self.source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
            np.uint8,
        )
        if opening > 0.0:
            self._fill_mouth(warped, opening, roundness, float(np.clip(teeth, 0.0, 1.0)))
        canvas[rows, cols] = warped

    def _fill_mouth(self, roi: UInt8Array, opening: float, roundness: float, teeth: float) -> None:
        """The opened gap, filled from the interior (``mouth_interior.fill``)."""
        gap = self._gap_outline(opening, roundness)
        box = _patch_box(gap, roi.shape)
        if box is None:
            return
        x0, y0, x1, y1 = box
        u, v = self.frame.grid_uv(
            self.box.x0 + x0, self.box.y0 + y0, self.box.x0 + x1, self.box.y0 + y1
        )
        # Undo the pucker's squeeze: where along the resting lip line each pixel comes from.
        u = self.centre_u + (u - self.centre_u) / (1.0 - PUCKER * roundness)
        depth = (v - np.interp(u, self._lip_u, self._lip_v)) / self.mouth_width
        height = opening * self.amplitude * self._lip_profile(u) / self.mouth_width
        # An f or v: the upper teeth reach down to the lower lip tucked under them.
        depth = depth * (
            1.0 - teeth + teeth * np.minimum(1.0, TEETH_ON_LIP / np.maximum(height, 1e-3))
        )
        span = max(float(self._lip_u[-1] - self._lip_u[0]), 1.0)
        colour = mouth_interior.fill(
            self.interior,
            ((u - self._lip_u[0]) / span).astype(np.float32),
            depth.astype(np.float32),
            height.astype(np.float32),
            self._lips_now,
        )
        alpha = _coverage(gap, np.array([x0, y0], np.float32), (y1 - y0, x1 - x0))
        patch = roi[y0:y1, x0:x1].astype(np.float32)
        blended = patch * (1.0 - alpha) + colour * alpha + 0.5
        roi[y0:y1, x0:x1] = np.clip(blended, 0, 255).astype(np.uint8)


def _patch_box(outline: FloatArray, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """The ROI pixels a polygon can touch, with a margin for anti-aliasing; None if none."""
    x0 = max(int(np.floor(outline[:, 0].min())) - 2, 0)
    y0 = max(int(np.floor(outline[:, 1].min())) - 2, 0)
    x1 = min(int(np.ceil(outline[:, 0].max())) + 3, shape[1])
    y1 = min(int(np.ceil(outline[:, 1].max())) + 3, shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def _coverage(outline: FloatArray, origin: FloatArray, size: tuple[int, int]) -> FloatArray:
    """Anti-aliased coverage in [0, 1] of a polygon, shaped (rows, cols, 1)."""
    mask = np.zeros(size, np.uint8)
    points = np.round((outline - origin) * float(1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(mask, [points], 255, cv2.LINE_AA, _SHIFT)
    return (mask.astype(np.float32) / 255.0)[..., np.newaxis]
