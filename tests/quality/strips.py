"""Frame strips: sampled output frames around the face(s), with audio and mouth plotted below.

A person should be able to see at a glance whether the mouth opens with the
sound: each panel under the frames shows one person's audio loudness (grey
area) and measured mouth opening (coloured line) over the whole clip, with
the sampled frames marked by number and pauses shaded.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from tests.quality.metrics import active_frames, pause_frames
from tests.quality.scenarios import ModeQuality, PersonQuality

UInt8Array = npt.NDArray[np.uint8]

TILE_HEIGHT = 200
MAX_WIDTH = 1900
PLOT_HEIGHT = 120
HEADER_HEIGHT = 46
MARGIN = 8
FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)
INK = (40, 40, 40)
GRID = (215, 215, 215)
AUDIO_FILL = (190, 190, 190)
PAUSE_FILL = (250, 236, 222)  # light blue (BGR)
PERSON_COLOURS = ((40, 90, 220), (170, 100, 20))  # red-orange, blue


def draw_strip(quality: ModeQuality) -> UInt8Array:
    tiles = _tiles(quality)
    width = tiles.shape[1]
    panels = [
        _plot(person, quality, width, PERSON_COLOURS[index % len(PERSON_COLOURS)])
        for index, person in enumerate(quality.people)
    ]
    return np.vstack([_header(quality, width), tiles, *panels])


def write_strip(quality: ModeQuality, path: str | Path) -> Path:
    path = Path(path)
    if not cv2.imwrite(str(path), draw_strip(quality)):
        raise RuntimeError(f"could not write {path}")
    return path


def _crop_size(quality: ModeQuality, person: int) -> tuple[int, int]:
    """One crop size per person for every tile (the median face box), so tiles compare alike."""
    spans = [
        (box[2] - box[0], box[3] - box[1])
        for boxes in quality.boxes
        if (box := boxes[person]) is not None
    ]
    if not spans:
        return quality.width, quality.height
    w, h = np.median(np.array(spans), axis=0)
    return min(int(w), quality.width), min(int(h), quality.height)


def _tiles(quality: ModeQuality) -> UInt8Array:
    """One tile per sampled frame: each person's face crop, stacked top (left) to bottom."""
    people = len(quality.people)
    sizes = [_crop_size(quality, person) for person in range(people)]
    crop_h = TILE_HEIGHT if people == 1 else TILE_HEIGHT * 3 // 4
    tile_w = max(round(crop_h * w / max(h, 1)) for w, h in sizes)
    tile_w = min(tile_w, MAX_WIDTH // max(len(quality.samples), 1))
    centres = [
        (quality.width * (2 * p + 1) / (2 * people), quality.height / 2) for p in range(people)
    ]
    tiles = []
    for (index, frame), boxes in zip(quality.samples, quality.boxes, strict=True):
        parts = []
        for person, (crop_w, crop_hh) in enumerate(sizes):
            box = boxes[person]
            if box is not None:  # else: where this face was last seen
                centres[person] = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            cx, cy = centres[person]
            x0 = int(np.clip(cx - crop_w / 2, 0, quality.width - crop_w))
            y0 = int(np.clip(cy - crop_hh / 2, 0, quality.height - crop_hh))
            crop = frame[y0 : y0 + crop_hh, x0 : x0 + crop_w]
            parts.append(cv2.resize(crop, (tile_w, crop_h), interpolation=cv2.INTER_AREA))
        tile = np.vstack(parts)
        label = f"{_number(quality, index)}  {index / quality.fps:.2f}s"
        cv2.rectangle(tile, (0, 0), (len(label) * 9 + 8, 20), INK, -1)
        cv2.putText(tile, label, (4, 15), FONT, 0.45, WHITE, 1, cv2.LINE_AA)
        tiles.append(tile)
        tiles.append(np.full((tile.shape[0], 2, 3), 255, np.uint8))
    return np.hstack(tiles[:-1]) if tiles else np.full((TILE_HEIGHT, 640, 3), 255, np.uint8)


def _number(quality: ModeQuality, frame_index: int) -> str:
    order = [index for index, _ in quality.samples]
    return f"#{order.index(frame_index) + 1}"


def _header(quality: ModeQuality, width: int) -> UInt8Array:
    header = np.full((HEADER_HEIGHT, width, 3), 255, np.uint8)
    title = (
        f"lipsync-{quality.mode}  {quality.width}x{quality.height} @ {quality.fps:g} fps,"
        f" {quality.duration_s:.1f} s"
    )
    parts = [
        f"{p.name}: r={p.sync.best_r:.2f} at lag {p.sync.best_lag:+d}, "
        f"pause opening {p.closed.fraction:.2f} of speaking"
        for p in quality.people
    ]
    if quality.psnr_outside_min_db is not None:
        parts.append(f"PSNR outside mouth/jaw {quality.psnr_outside_min_db:.1f} dB")
    if quality.flicker is not None:
        parts.append(f"edge flicker excess {quality.flicker.excess:.2f} grey")
    cv2.putText(header, title, (MARGIN, 18), FONT, 0.55, INK, 1, cv2.LINE_AA)
    cv2.putText(header, " | ".join(parts), (MARGIN, 38), FONT, 0.42, INK, 1, cv2.LINE_AA)
    return header


def _plot(
    person: PersonQuality, quality: ModeQuality, width: int, colour: tuple[int, int, int]
) -> UInt8Array:
    panel = np.full((PLOT_HEIGHT, width, 3), 255, np.uint8)
    left, right, top, bottom = 50, width - MARGIN, 18, PLOT_HEIGHT - 16
    frames = person.opening.size
    xs = left + (right - left) * (np.arange(frames) + 0.5) / max(frames, 1)

    def y_of(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return bottom - (bottom - top) * np.clip(values, -0.1, 1.1)

    # Pauses (where the mouth must be closed), shaded.
    pauses = pause_frames(active_frames(person.envelope), quality.fps)
    step = (right - left) / max(frames, 1)
    for index in np.flatnonzero(pauses):
        x0 = int(left + index * step)
        cv2.rectangle(panel, (x0, top), (int(x0 + step) + 1, bottom), PAUSE_FILL, -1)
    # Audio loudness as a filled area, floor .. peak.
    env = person.envelope.astype(np.float64)
    level = (env - env.min()) / max(float(env.max() - env.min()), 1e-6)
    area = np.concatenate(
        [np.stack([xs, y_of(level)], 1), [[xs[-1], bottom], [xs[0], bottom]]]
    ).round()
    cv2.fillPoly(panel, [area.astype(np.int32)], AUDIO_FILL, cv2.LINE_AA)
    # Mouth opening: 0 = the most closed it gets (or the face at rest), 1 = the widest seen.
    opening = person.opening.astype(np.float64)
    low, high = person.closed.most_closed, person.closed.rest
    if np.isfinite(opening).any():
        high = max(float(np.nanmax(opening)), high)
    scaled = (opening - low) / max(high - low, 1e-6)
    rest_y = int(y_of(np.array([(person.closed.rest - low) / max(high - low, 1e-6)]))[0])
    for x in range(left, right, 8):  # dashed: the input face's resting opening
        cv2.line(panel, (x, rest_y), (min(x + 4, right), rest_y), colour, 1)
    points = np.stack([xs, y_of(scaled)], 1)
    good = np.isfinite(points).all(axis=1)
    for run in np.split(np.arange(frames), np.flatnonzero(np.diff(good.astype(int))) + 1):
        if run.size > 1 and good[run[0]]:
            cv2.polylines(
                panel, [points[run].round().astype(np.int32)], False, colour, 2, cv2.LINE_AA
            )
    # Sampled frames, numbered like the tiles.
    for number, (index, _) in enumerate(quality.samples, start=1):
        x = int(xs[min(index, frames - 1)])
        cv2.line(panel, (x, top - 4), (x, bottom), INK, 1)
        cv2.putText(panel, str(number), (x - 4, top - 6), FONT, 0.35, INK, 1, cv2.LINE_AA)
    cv2.rectangle(panel, (left, top), (right, bottom), GRID, 1)
    cv2.putText(panel, person.name, (4, top + 12), FONT, 0.45, colour, 1, cv2.LINE_AA)
    legend = (
        "grey: audio RMS (40 dB range)   line: mouth opening (lip gap / eye distance, min..max;"
        " dashes: the input at rest)   shaded: pauses"
    )
    cv2.putText(panel, legend, (left, PLOT_HEIGHT - 3), FONT, 0.38, INK, 1, cv2.LINE_AA)
    return panel
