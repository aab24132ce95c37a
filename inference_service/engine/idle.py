"""Idle motion that keeps a still portrait alive: blinks, a slight head sway, and small
nods and eyebrow raises on the speech's emphasis.

Both are driven by the job's seed, so the same seed gives the same blinks at
the same frames. Blinks warp each upper eyelid down over the eye (the lid's
skin is stretched, the lash line moves with it); the sway is a small
similarity transform (rotation under a degree about a point below the chin,
a pixel or two of drift), slow like breathing, applied to the head only: its
weight is 1 over the face and fades to 0 a little outside it, so the body and
background stay still. That is also what keeps it cheap: only the head region
is resampled, and x264 skips the unchanged blocks around it.

Emphasis (``speech_emphasis``): a stressed syllable is louder and higher than
its neighbours, so peaks of the loudness and of the pitch (each relative to a
one-second running median, so the clip's level and the speaker's register do
not matter) mark it; peaks at least ``EMPHASIS_GAP_S`` apart each start a nod
(the head dips by up to ``NOD_DRIFT`` of the face height and comes back, over
``NOD_S``) and a brow raise (the eyebrows lift by up to ``BROW_LIFT`` of the
face height; the eyes below stay put). Amplitudes vary per nod from the seed,
so the same seed and audio give the same motion. Nods are part of the sway
(off with a mask, and in multi); brow raises follow the blinks' rule.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from inference_service.engine import landmarks as lm
from inference_service.engine.warp_math import FaceFrame, smoothstep

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]

# Seconds between blinks (uniform) and the blink's phases: close, hold, open.
BLINK_GAP_S = (2.0, 5.5)
BLINK_PHASES_S = (0.08, 0.04, 0.12)
# The lid stops short of the lower lid so the lash lines meet without overlapping.
BLINK_DEPTH = 0.92
# Sway amplitudes: degrees of roll, and drift as a fraction of the face size.
SWAY_DEGREES = 0.7
SWAY_DRIFT = 0.012
SWAY_FREQS_HZ = (0.11, 0.23, 0.37)
# Emphasis: peaks at least this far apart; a nod's and a brow raise's duration and size.
EMPHASIS_GAP_S = 0.7
NOD_S = 0.45
NOD_DRIFT = 0.008
BROW_LIFT = 0.012
# Eyebrows (image left, image right): MediaPipe's upper and lower brow contours.
LEFT_BROW = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55)
RIGHT_BROW = (300, 293, 334, 296, 336, 276, 283, 282, 295, 285)


def blink_curve(seed: int, fps: float, frames: int) -> FloatArray:
    """Per-frame eyelid closure in [0, 1] (1: closed)."""
    rng = np.random.default_rng([seed, 1])
    curve = np.zeros(frames, np.float32)
    times = np.arange(frames) / fps
    close, hold, reopen = BLINK_PHASES_S
    start = rng.uniform(0.6, BLINK_GAP_S[1])
    while start < frames / fps:
        rel = times - start
        closing = np.clip(rel / close, 0, 1)
        opening = 1.0 - np.clip((rel - close - hold) / reopen, 0, 1)
        shape = np.where(rel < close, closing, opening) * (rel >= 0)
        curve = np.maximum(curve, (shape * shape * (3 - 2 * shape)).astype(np.float32))
        start += rng.uniform(*BLINK_GAP_S)
    return curve


class EyelidRig:
    """Closes one eye by sliding its upper lid down; precomputed per still image."""

    def __init__(
        self, source: UInt8Array, points: FloatArray, upper: tuple[int, ...], lower: tuple[int, ...]
    ) -> None:
        corners = points[[lower[0], lower[-1]]]
        self.frame = FaceFrame(corners.mean(axis=0), corners[1] - corners[0], points[lm.CHIN])
        width = float(np.linalg.norm(corners[1] - corners[0]))
        up = self._sorted(points, (lower[0], *upper, lower[-1]))
        low = self._sorted(points, lower)
        skin = 0.45 * width
        height, full_w = source.shape[:2]
        self.box = self.frame.bounding_box(
            float(low[0, 0]) - 0.3 * width,
            float(low[-1, 0]) + 0.3 * width,
            float(up[:, 1].min()) - skin - 2,
            float(low[:, 1].max()) + 2,
            full_w,
            height,
        )
        x0, y0, x1, y1 = self.box
        u, v = self.frame.grid_uv(x0, y0, x1, y1)
        self._v = v
        self._v_up = np.interp(u, up[:, 0], up[:, 1]).astype(np.float32)
        self._gap = np.maximum(np.interp(u, low[:, 0], low[:, 1]) - self._v_up, 0).astype(
            np.float32
        )
        # Fade the effect out past the eye corners so no seam shows.
        half = 0.5 * width
        self._taper = (1.0 - smoothstep(half * 0.85, half * 1.25, np.abs(u))).astype(np.float32)
        self._skin = skin
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self._xs, self._ys = xs, ys
        self.source = source

    def _sorted(self, points: FloatArray, indices: tuple[int, ...]) -> FloatArray:
        uv = self.frame.to_uv(points[list(indices)])
        return uv[np.argsort(uv[:, 0])]

    def render_into(self, canvas: UInt8Array, closure: float) -> None:
        if closure <= 0.01 or self.box[2] <= self.box[0] or self.box[3] <= self.box[1]:
            return
        x0, y0, x1, y1 = self.box
        drop = closure * BLINK_DEPTH * self._gap * self._taper
        top = self._v_up - self._skin
        lid_bottom = self._v_up + drop
        # Above the moved lid line: the lid skin stretched over [top, lid_bottom].
        stretch = top + (self._v - top) * self._skin / np.maximum(lid_bottom - top, 1e-3)
        source_v = np.where((self._v >= top) & (self._v <= lid_bottom), stretch, self._v)
        shift = (source_v - self._v).astype(np.float32)
        map_x = self._xs + shift * self.frame.ey[0]
        map_y = self._ys + shift * self.frame.ey[1]
        # Maps hold absolute coordinates, so remap reads the whole canvas and returns the ROI.
        canvas[y0:y1, x0:x1] = cv2.remap(
            canvas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )


def speech_emphasis(samples: FloatArray, rate: int, fps: float, frames: int) -> FloatArray:
    """Per-frame emphasis in [0, 1]: a raised-cosine pulse of ``NOD_S`` on each stressed
    syllable (a peak of loudness and pitch), scaled by how much it stands out."""
    out = np.zeros(frames, np.float32)
    # Pitch and level need nothing above 4 kHz: half the rate, a quarter of the FFT work.
    even = samples[: samples.size // 2 * 2]
    samples, rate = ((even[0::2] + even[1::2]) / 2).astype(np.float32), rate // 2
    hop = rate / fps
    size = 1 << int(np.ceil(np.log2(1.5 * hop)))
    if frames == 0 or samples.size < size:
        return out
    starts = np.clip(np.round((np.arange(frames) + 0.5) * hop - size / 2), 0, samples.size - size)
    index = starts.astype(np.int64)[:, np.newaxis] + np.arange(size)[np.newaxis, :]
    windows = samples[index] * np.hanning(size).astype(np.float32)
    level = 10.0 * np.log10(np.mean(windows.astype(np.float64) ** 2, axis=1) + 1e-10)
    voiced = level > max(float(level.max()) - 30.0, -60.0)
    if not voiced.any():
        return out
    # Pitch by autocorrelation (70-400 Hz), in semitones; 0 where unvoiced.
    spectrum = np.abs(np.fft.rfft(windows, 2 * size, axis=1)) ** 2
    correlation = np.fft.irfft(spectrum, axis=1)[:, :size]
    low, high = int(rate / 400), min(int(rate / 70), size - 1)
    lag = low + np.argmax(correlation[:, low:high], axis=1)
    pitch = np.where(voiced, 12.0 * np.log2(rate / lag / 100.0), 0.0)
    second = max(1, round(fps))
    score = np.maximum(level - _running_median(level, second), 0.0) / 6.0
    score += np.where(voiced, np.maximum(pitch - _running_median(pitch, second), 0.0) / 3.0, 0.0)
    score = np.where(voiced, score, 0.0)
    pulse_frames = max(2, round(NOD_S * fps))
    pulse = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(pulse_frames) / pulse_frames)
    gap = max(1, round(EMPHASIS_GAP_S * fps))
    blocked = np.zeros(frames, bool)
    # The strongest peaks first; each one keeps the others EMPHASIS_GAP_S away.
    for peak in np.argsort(-score, kind="stable").tolist():
        strength = min(float(score[peak]), 1.0)
        if strength < 0.25:
            break
        if blocked[peak]:
            continue
        blocked[max(peak - gap + 1, 0) : peak + gap] = True
        first = max(peak - pulse_frames // 2, 0)
        part = (pulse[: frames - first] * strength).astype(np.float32)
        span = out[first : first + part.size]
        np.maximum(span, part[: span.size], out=span)
    return out


def _running_median(values: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.float64]:
    padded = np.pad(values, size // 2, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, size)[: values.size]
    return np.asarray(np.median(windows, axis=1), np.float64)


class BrowRig:
    """Lifts one eyebrow (and the forehead skin above it) without moving the eye below."""

    def __init__(self, source: UInt8Array, points: FloatArray, brow: tuple[int, ...]) -> None:
        face = float(np.ptp(points[:, 1]))
        self.lift = BROW_LIFT * face
        pts = points[list(brow)]
        centre = pts.mean(axis=0)
        half = float(np.ptp(pts[:, 0])) / 2 + 0.1 * face
        reach = 0.18 * face
        height, width = source.shape[:2]
        x0, x1 = int(max(centre[0] - half * 1.3, 0)), int(min(centre[0] + half * 1.3, width))
        y0 = int(max(centre[1] - 2.2 * reach, 0))
        y1 = int(min(centre[1] + 0.8 * reach, height))
        self.box = (x0, y0, x1, y1)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self._xs, self._ys = xs, ys
        across = 1.0 - smoothstep(0.6 * half, 1.3 * half, np.abs(xs - centre[0]))
        # Full lift on the brow, fading to nothing at the upper eyelid and up the forehead.
        below = 1.0 - smoothstep(0.05 * reach, 0.35 * reach, ys - centre[1])
        above = 1.0 - smoothstep(0.5 * reach, 2.2 * reach, centre[1] - ys)
        self._weight = (across * below * above).astype(np.float32)

    def render_into(self, canvas: UInt8Array, amount: float) -> None:
        x0, y0, x1, y1 = self.box
        if amount <= 0.01 or x1 <= x0 or y1 <= y0:
            return
        map_y = self._ys + amount * self.lift * self._weight
        canvas[y0:y1, x0:x1] = cv2.remap(
            canvas,
            self._xs,
            map_y.astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )


class IdleMotion:
    """Blinks and sway for one still portrait, per output frame; with ``speech`` (mono at
    ``speech_rate``), nods (with the sway) and brow raises on its emphasis."""

    def __init__(
        self,
        source: UInt8Array,
        points: FloatArray,
        seed: int,
        fps: float,
        frames: int,
        *,
        sway: bool = True,
        speech: FloatArray | None = None,
        speech_rate: int = 16000,
    ) -> None:
        self._eyes = [
            EyelidRig(source, points, lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER),
            EyelidRig(source, points, lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER),
        ]
        self._blinks = blink_curve(seed, fps, frames)
        emphasis = (
            speech_emphasis(speech, speech_rate, fps, frames)
            if speech is not None
            else np.zeros(frames, np.float32)
        )
        rng = np.random.default_rng([seed, 3])
        # Some people nod on every stress, some hardly: the seed picks this one's vigour.
        self._emphasis = (emphasis * rng.uniform(0.6, 1.0)).astype(np.float32)
        self._brows = [BrowRig(source, points, LEFT_BROW), BrowRig(source, points, RIGHT_BROW)]
        self._transforms = _sway(seed, fps, frames, points, nods=self._emphasis) if sway else None
        # The head region and its weight: 1 within one face size of the face centre,
        # fading to 0 at 1.6 face sizes.
        height, width = source.shape[:2]
        centre = (points.min(axis=0) + points.max(axis=0)) / 2
        size = float(np.ptp(points, axis=0).max())
        x0, y0 = np.maximum(np.floor(centre - 1.6 * size), 0).astype(int)
        x1, y1 = np.ceil(centre + 1.6 * size).astype(int) + 1
        x1, y1 = min(int(x1), width), min(int(y1), height)
        self._box = (int(x0), int(y0), x1, y1)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        distance = np.hypot(xs - centre[0], ys - centre[1])
        self._xs, self._ys = xs, ys
        self._weight = (1.0 - smoothstep(size, 1.6 * size, distance)).astype(np.float32)

    def apply(self, canvas: UInt8Array, index: int) -> UInt8Array:
        closure = float(self._blinks[min(index, self._blinks.size - 1)])
        for eye in self._eyes:
            eye.render_into(canvas, closure)
        raise_brows = float(self._emphasis[min(index, self._emphasis.size - 1)])
        for brow in self._brows:
            brow.render_into(canvas, raise_brows)
        if self._transforms is None:
            return canvas
        matrix = self._transforms[min(index, len(self._transforms) - 1)]
        # Backward map: output pixel p shows p + w(p) * (M^-1 p - p).
        inverse = cv2.invertAffineTransform(matrix)
        xs, ys, weight = self._xs, self._ys, self._weight
        map_x = xs + weight * ((inverse[0, 0] - 1) * xs + inverse[0, 1] * ys + inverse[0, 2])
        map_y = ys + weight * (inverse[1, 0] * xs + (inverse[1, 1] - 1) * ys + inverse[1, 2])
        x0, y0, x1, y1 = self._box
        canvas[y0:y1, x0:x1] = cv2.remap(
            canvas,
            map_x.astype(np.float32),
            map_y.astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT101,
        )
        return canvas


def _sway(
    seed: int, fps: float, frames: int, points: FloatArray, nods: FloatArray | None = None
) -> list[FloatArray]:
    rng = np.random.default_rng([seed, 2])
    face = float(np.ptp(points[:, 1]))
    chin = points[lm.CHIN]
    pivot = (float(chin[0]), float(chin[1] + 0.4 * face))
    t = np.arange(frames) / fps
    phases = rng.uniform(0, 2 * math.pi, (3, len(SWAY_FREQS_HZ)))

    def wave(row: int) -> FloatArray:
        parts = [
            np.sin(2 * math.pi * f * t + p) for f, p in zip(SWAY_FREQS_HZ, phases[row], strict=True)
        ]
        # Start from rest so the first frame is the source image.
        return ((np.sum(parts, axis=0) - np.sum(np.sin(phases[row]))) / len(parts)).astype(
            np.float32
        )

    angle, dx, dy = wave(0) * SWAY_DEGREES, wave(1) * SWAY_DRIFT * face, wave(2) * SWAY_DRIFT * face
    if nods is not None and nods.size == frames:
        # A nod: the head dips (down the image) and comes back with the emphasis pulse.
        dy = (dy + nods * NOD_DRIFT * face).astype(np.float32)
    out = []
    for a, x, y in zip(angle.tolist(), dx.tolist(), dy.tolist(), strict=True):
        matrix = cv2.getRotationMatrix2D(pivot, a, 1.0)
        matrix[:, 2] += (x, y)
        out.append(matrix.astype(np.float32))
    return out
