"""Quality measurements on rendered lip-sync videos.

Everything here measures the *output* with models and signal processing of
its own choosing, never with the engine's internals, so a bug in the engine
cannot hide behind the same bug in the measurement:

* faces and mouth opening: ``tests.quality.faces``;
* loudness envelope: RMS in dBFS over each frame's display interval;
* sync: Pearson r between opening and envelope at lags -5..+5 frames;
* stability: PSNR against a reference outside the mouth/jaw region, and the
  frame-to-frame flicker of the edit in a band around that region's edge;
* closed mouth: the opening in pauses against the face's resting opening.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

from tests.quality.faces import CHIN, EYE_OUTER_LEFT, EYE_OUTER_RIGHT, JAW, NOSE_BASE, inter_ocular

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]

MAX_LAG = 5
# The envelope's floor below its peak: speech spans ~30-40 dB; deeper "silence" is noise.
ENVELOPE_RANGE_DB = 40.0
# A frame counts as speech when within this many dB of the clip's peak.
ACTIVE_RANGE_DB = 30.0
# PSNR of identical images is infinite; report this instead so JSON stays valid.
PSNR_CAP_DB = 100.0


def smoothstep(edge0: float, edge1: float, x: FloatArray) -> FloatArray:
    t = np.clip((x - edge0) / max(edge1 - edge0, 1e-6), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


# --- decoding ---------------------------------------------------------------------------------


def video_fps(path: str | Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        return float(rate) if rate else 0.0


def iter_frames(path: str | Path) -> Iterator[UInt8Array]:
    """Decoded BGR frames, one at a time (720p is 2.7 MB a frame: keep only what you need)."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)


def luma(frame: UInt8Array) -> FloatArray:
    """BT.601 luma as float32: what x264 codes at full resolution (chroma is 4:2:0)."""
    return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), np.float32)


# --- audio ------------------------------------------------------------------------------------


def frame_envelope_db(samples: FloatArray, sample_rate: int, fps: float, frames: int) -> FloatArray:
    """RMS level (dBFS) of the audio heard while each frame is on screen, floored.

    Frame ``t`` is shown during [t/fps, (t+1)/fps). Levels more than
    ``ENVELOPE_RANGE_DB`` below the loudest frame are clamped to that floor, so
    digital silence (-inf dB) does not dominate the correlation.
    """
    edges = np.clip(np.round(np.arange(frames + 1) * sample_rate / fps).astype(np.int64), 0, None)
    edges = np.minimum(edges, samples.size)
    energy = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    counts = np.maximum(np.diff(edges), 1)
    mean_square = (energy[edges[1:]] - energy[edges[:-1]]) / counts
    levels = 10.0 * np.log10(mean_square + 1e-12)
    floor = max(float(levels.max()) - ENVELOPE_RANGE_DB, -100.0)
    return np.maximum(levels, floor).astype(np.float32)


def active_frames(envelope_db: FloatArray) -> BoolArray:
    """Frames with audible speech: within ``ACTIVE_RANGE_DB`` of the clip's peak."""
    return np.asarray(envelope_db > float(envelope_db.max()) - ACTIVE_RANGE_DB, bool)


def pause_frames(
    active: BoolArray, fps: float, *, min_pause_s: float = 0.3, release_s: float = 0.16
) -> BoolArray:
    """Frames inside real pauses, where a speaker's mouth must be closed.

    Only pauses of at least ``min_pause_s`` count: between syllables (30-150 ms)
    a natural mouth does not shut. The first ``release_s`` after speech (lips
    closing, ~4 frames) and the last 80 ms before it (lips anticipate the
    sound) are excluded.
    """
    frames = active.size
    pauses = np.zeros(frames, bool)
    release, anticipate = round(release_s * fps), round(0.08 * fps)
    start = 0
    while start < frames:
        if active[start]:
            start += 1
            continue
        end = start
        while end < frames and not active[end]:
            end += 1
        if (end - start) / fps >= min_pause_s:
            lo = start + (release if start > 0 else 0)
            hi = end - (anticipate if end < frames else 0)
            pauses[lo:hi] = True
        start = end
    return pauses


# --- sync -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    """Pearson r per lag; lag > 0 means the mouth moves *before* the sound (by that many frames)."""

    r_by_lag: dict[int, float]
    best_lag: int
    best_r: float


def pearson(a: FloatArray, b: FloatArray) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep].astype(np.float64), b[keep].astype(np.float64)
    if a.size < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def lag_correlation(
    opening: FloatArray, envelope: FloatArray, max_lag: int = MAX_LAG
) -> SyncResult:
    """Correlate ``opening[t]`` with ``envelope[t + lag]`` for lag in -max_lag..max_lag."""
    n = min(opening.size, envelope.size)
    r_by_lag: dict[int, float] = {}
    for lag in range(-max_lag, max_lag + 1):
        lo, hi = max(0, -lag), min(n, n - lag)
        r_by_lag[lag] = round(pearson(opening[lo:hi], envelope[lo + lag : hi + lag]), 4)
    best = max(r_by_lag, key=lambda lag: (r_by_lag[lag], -abs(lag)))
    return SyncResult(r_by_lag=r_by_lag, best_lag=best, best_r=r_by_lag[best])


# --- closed mouth -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Closedness:
    """How far the mouth opens in pauses, as a fraction of how far it opens to speak.

    ``fraction`` = (pause opening - rest) / (speaking opening - most closed):
    0 (or less) means as closed as the face at rest, 1 as open as in typical
    speech. ``rest`` is the input face's own opening (a smile can show teeth);
    the span is measured from the most closed the mouth ever gets, which is
    below ``rest`` when the engine shuts lips that were apart in the source.
    """

    rest: float
    most_closed: float
    speaking: float
    pause: float
    fraction: float
    pause_frames: int


def closedness(
    opening: FloatArray, rest: float, active: BoolArray, pauses: BoolArray
) -> Closedness:
    finite = np.isfinite(opening)
    speaking_values = opening[active & finite]
    pause_values = opening[pauses & finite]
    # 90th percentile: the opening of the stressed syllables, not one outlier frame.
    speaking = float(np.percentile(speaking_values, 90)) if speaking_values.size else math.nan
    # 95th percentile of the pause: a mouth open for more than ~1 frame in 20 counts.
    pause = float(np.percentile(pause_values, 95)) if pause_values.size else math.nan
    most_closed = min(rest, float(np.percentile(opening[finite], 5))) if finite.any() else rest
    span = speaking - most_closed
    fraction = (pause - rest) / span if span > 1e-6 else math.inf
    return Closedness(
        rest=round(rest, 4),
        most_closed=round(most_closed, 4),
        speaking=round(speaking, 4),
        pause=round(pause, 4),
        fraction=round(fraction, 3),
        pause_frames=int(pause_values.size),
    )


# --- stability --------------------------------------------------------------------------------


def mouth_jaw_region(points: FloatArray, shape: tuple[int, ...]) -> BoolArray:
    """Where a lip-sync engine may change pixels: nose base to below the chin, cheek to cheek.

    The convex hull of the lower face oval and the nose base, swept half an
    inter-ocular distance down (an opening jaw drags the skin under the chin
    and the jaw line over the neck) and widened by 0.2 of it for the feathered
    edge of any warp. (Widening a convex polygon = the hull of its corners
    ringed by the margin, so no image dilation is needed.)
    """
    iod = inter_ocular(points)
    outline = points[list(JAW) + list(NOSE_BASE)]
    eyes = (points[EYE_OUTER_LEFT] + points[EYE_OUTER_RIGHT]) / 2
    down = points[CHIN] - eyes
    down = down / max(float(np.linalg.norm(down)), 1e-6)
    swept = np.concatenate([outline, points[list(JAW)] + 0.5 * iod * down])
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = 0.2 * iod * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    widened = (swept[:, np.newaxis, :] + ring[np.newaxis, :, :]).reshape(-1, 2)
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(widened).astype(np.int32)), 1)
    return mask.astype(bool)


def psnr(a: UInt8Array, b: UInt8Array, mask: BoolArray | None = None) -> float:
    """Luma PSNR (dB) of ``a`` against ``b`` over ``mask`` (default: all pixels).

    Luma, because the 4:2:0 chroma subsampling that every H.264 player needs
    alone keeps colour PSNR under 40 dB on saturated edges, whatever the engine.
    """
    return psnr_luma(luma(a), luma(b), mask)


def psnr_luma(a: FloatArray, b: FloatArray, mask: BoolArray | None = None) -> float:
    diff = a - b
    values = diff[mask] if mask is not None else diff.ravel()
    mse = float(np.mean(values.astype(np.float64) ** 2)) if values.size else 0.0
    if mse <= 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(255.0**2 / mse))


@dataclass(frozen=True)
class Flicker:
    """RMS frame-to-frame change (grey levels) of the smoothed edit around the region's edge.

    The boundary is cut into ``SECTORS`` angular sectors (seen from the region's
    centre) so that a seam along part of it is not averaged away by the rest.
    ``edge``: the band straddling the boundary in the worst sector; ``outside``:
    the ring just beyond it in that sector (same kind of texture, where nothing
    should change); ``inside``: the region's core, where the mouth moves.
    """

    edge: float
    outside: float
    inside: float

    @property
    def excess(self) -> float:
        """How much more the edge flickers than the untouched ring next to it."""
        return self.edge - self.outside


SECTORS = 12


class FlickerMeter:
    """Accumulates the frame-to-frame change of ``output - reference`` per zone and sector.

    The edit, not the output, is differenced so that a moving source video does
    not count as flicker; a still region that the engine leaves alone has an
    edit of (codec) noise only. The change is blurred (sigma ~ 3 % of the eye
    distance, 1.5-2.5 px): flicker is a coherent change of brightness over an
    area, while x264 re-quantising the macroblocks next to a moving mouth adds
    grain of 1-2 grey levels that averages out (any encoder adds it; it is no
    seam). A hard-edged or toggling patch at the boundary survives the blur.
    """

    def __init__(self, band_px: int, blur_px: float) -> None:
        self.band = max(1, band_px)
        self.blur = blur_px
        self._previous: FloatArray | None = None
        # Rows: edge band, outside ring; columns: sectors. Plus the core, unsectored.
        self._sums = np.zeros((2, SECTORS))
        self._counts = np.zeros((2, SECTORS))
        self._core = np.zeros(2)
        self._zones_for: BoolArray | None = None
        self._zones: _Zones | None = None

    def add(self, output: UInt8Array, reference: UInt8Array, region: BoolArray) -> None:
        self.add_luma(luma(output), luma(reference), region)

    def add_luma(self, output: FloatArray, reference: FloatArray, region: BoolArray) -> None:
        edit = output - reference
        if self._previous is not None and region.any():
            zones = self._zones_of(region)
            # Blurring is linear: blur(edit_t) - blur(edit_t-1) = blur(edit_t - edit_t-1).
            pad = math.ceil(3 * self.blur)
            rows, cols = zones.core.shape
            y0, x0 = max(zones.y0 - pad, 0), max(zones.x0 - pad, 0)
            raw = (edit - self._previous)[y0 : zones.y0 + rows + pad, x0 : zones.x0 + cols + pad]
            blurred = cv2.GaussianBlur(raw, (0, 0), self.blur)
            change = blurred[zones.y0 - y0 :, zones.x0 - x0 :][:rows, :cols] ** 2
            for index, zone in enumerate((zones.edge, zones.outside)):
                self._sums[index] += np.bincount(
                    zones.sector[zone], weights=change[zone], minlength=SECTORS
                )
                self._counts[index] += np.bincount(zones.sector[zone], minlength=SECTORS)
            self._core += (float(change[zones.core].sum()), int(zones.core.sum()))
        self._previous = edit

    def skip(self) -> None:
        """A frame without a usable face: do not difference across it."""
        self._previous = None

    def result(self) -> Flicker:
        rms = np.sqrt(self._sums / np.maximum(self._counts, 1))
        seen = (self._counts > 0).all(axis=0)
        excess = np.where(seen, rms[0] - rms[1], -np.inf)
        worst = int(np.argmax(excess))
        inside = math.sqrt(self._core[0] / max(self._core[1], 1))
        return Flicker(
            edge=round(float(rms[0, worst]), 3),
            outside=round(float(rms[1, worst]), 3),
            inside=round(inside, 3),
        )

    def _zones_of(self, region: BoolArray) -> _Zones:
        if self._zones is None or self._zones_for is not region:
            self._zones, self._zones_for = _Zones.around(region, self.band), region
        return self._zones


@dataclass(frozen=True)
class _Zones:
    """Edge band, outside ring, core and sector map of a region, in a crop at (y0, x0)."""

    y0: int
    x0: int
    edge: BoolArray
    outside: BoolArray
    core: BoolArray
    sector: npt.NDArray[np.intp]

    @classmethod
    def around(cls, region: BoolArray, band: int) -> _Zones:
        ys, xs = np.nonzero(region)
        reach = 4 * band + 2
        y0, x0 = max(int(ys.min()) - reach, 0), max(int(xs.min()) - reach, 0)
        y1 = min(int(ys.max()) + reach + 1, region.shape[0])
        x1 = min(int(xs.max()) + reach + 1, region.shape[1])
        inside = region[y0:y1, x0:x1]
        mask = inside.astype(np.uint8)
        # Distances to the boundary from either side (cheaper than large dilations).
        outward = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 5)
        inward = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
        grid_y, grid_x = np.mgrid[y0:y1, x0:x1]
        angle = np.arctan2(grid_y - ys.mean(), grid_x - xs.mean())
        sector = ((angle + np.pi) / (2 * np.pi) * SECTORS).astype(np.intp) % SECTORS
        return cls(
            y0=y0,
            x0=x0,
            edge=(inside & (inward <= band)) | (~inside & (outward <= band)),
            outside=~inside & (outward > 2 * band) & (outward <= 4 * band),
            core=inside & (inward > band),
            sector=sector,
        )
