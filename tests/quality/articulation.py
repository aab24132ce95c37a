"""Articulation: does the mouth say the words? Measured against espeak-ng's own phoneme timings.

For each sentence (English and Korean, dense in m/b/p and in rounded, spread
and open vowels), espeak-ng speaks it and reports when every phoneme starts
and ends (``speech.py``). The engine renders the astronaut portrait (image
mode) to that audio; the face mesh of ``faces.py`` measures every output frame:

* lip gap: inner-lip landmarks 13/14 over the outer-eye distance (as ``sync``);
* mouth width: the mouth corners 61/291 over the same distance.

Frame ``i`` shows the audio from ``i / fps`` to ``(i + 1) / fps``; a phoneme's
frames are those its span overlaps (with one frame of slack after it at most
when the span is shorter than a frame, so every phoneme has at least one).

The scale: the mesh reads a rendered, encoded mouth compressed (a wide "ah"
is ~0.04 eye distances above a closed one), so levels are relative to the
render's own: *closed* is the median gap over the silent lead-in and tail
(``PAD_S`` each, the mouth there is the untouched portrait through the codec),
*span* is the 90th percentile of the gap over the spoken phonemes minus closed.

* **closures**: a bilabial (m, b, p) is closed when on one of its frames the
  lip gap is at most closed + ``CLOSED_TOLERANCE`` x span. Target >= 90 %.
* **openings**: an open vowel (a, ɑ, æ, ɐ, aɪ, aʊ) is open when its widest frame
  shows a gap of at least closed + ``OPEN_MIN`` x span. Target >= 90 %.
* **rounding**: the mean width over rounded vowels' frames (u, o, ɔ, ʊ) over
  that of spread vowels' frames (i, e, ɛ, ɪ). Target <= 0.88 (people: 0.75-0.85).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from inference_service.engine import LipsyncEngine
from inference_service.engine.mouth_rig import MouthRig
from inference_service.media import load_image_bgr
from tests.media_fixtures import portrait_path
from tests.quality import speech
from tests.quality.faces import FaceTracker, face_box, inter_ocular, mouth_opening
from tests.quality.inputs import write_wav
from tests.quality.metrics import frame_envelope_db, iter_frames, lag_correlation, video_fps
from tests.quality.scenarios import rest_landmarks, scaled_reference

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]

MOUTH_CORNERS = (61, 291)
CLOSED_TOLERANCE = 0.25
OPEN_MIN = 0.5
# Pause frames next to speech are left out of the closed level (the lips lead the sound).
PAUSE_MARGIN_FRAMES = 4
CLOSURE_MIN = 0.9
OPENING_MIN = 0.9
ROUND_MAX_RATIO = 0.88
PAD_S = 0.6

SENTENCES: dict[str, tuple[str, ...]] = {
    "en-us": (
        "My mother bought a big blue boat.",
        "Peter picked a pack of purple plums by the pond.",
        "Bob made apple pie for my mom, and a bowl of soup.",
        "We met a tall man, who keeps two cats, at the zoo.",
    ),
    "ko": (
        "바보 엄마가 밥을 먹어요.",
        "우리 모두 바다에 가요.",
        "비빔밥 맛이 아주 좋아요.",
        "보리밭 위로 비가 옵니다.",
    ),
}


def kind_of(ipa: str) -> str | None:
    """The articulation class of an espeak-ng IPA phoneme, or None for the rest."""
    first = ipa.lstrip("ˈˌ")[:1]
    if first in ("m", "b", "p"):
        return "bilabial"
    if first in ("a", "ɑ", "æ", "ɐ"):
        return "open"
    if first in ("u", "o", "ɔ", "ʊ"):
        return "rounded"
    if first in ("i", "e", "ɛ", "ɪ"):
        return "spread"
    return None


@dataclass
class Sentence:
    voice: str
    text: str
    gap: FloatArray  # per output frame, over the eye distance
    width: FloatArray
    rest_gap: float  # the input portrait's own gap, unencoded (for reference)
    fps: float
    phonemes: list[speech.SpokenPhoneme]
    render_s: float
    duration_s: float
    sync_r: float
    samples: list[tuple[str, str, UInt8Array]] = field(default_factory=list, repr=False)

    @property
    def closed_level(self) -> float:
        lead_in = int(PAD_S * self.fps) - PAUSE_MARGIN_FRAMES
        tail = self.gap[-lead_in:] if lead_in > 0 else self.gap[:0]
        return float(np.nanmedian(np.concatenate([self.gap[: max(lead_in, 1)], tail])))

    @property
    def span(self) -> float:
        spoken = sorted({i for p in self.phonemes for i in self.frames_of(p)})
        return max(float(np.nanpercentile(self.gap[spoken], 90)) - self.closed_level, 1e-3)

    def frames_of(self, phone: speech.SpokenPhoneme) -> list[int]:
        start, end = phone.start_s + PAD_S, phone.end_s + PAD_S
        first = math.floor(start * self.fps)
        last = max(first, math.ceil(end * self.fps) - 1)
        return [i for i in range(first, last + 1) if 0 <= i < self.gap.size]


@dataclass
class LanguageFigures:
    voice: str
    bilabials: int
    closed: int
    opens: int
    opened: int
    rounded_width: float
    spread_width: float
    sync_r: list[float]
    speed: float

    @property
    def closure_share(self) -> float:
        return self.closed / max(self.bilabials, 1)

    @property
    def opening_share(self) -> float:
        return self.opened / max(self.opens, 1)

    @property
    def round_ratio(self) -> float:
        return self.rounded_width / max(self.spread_width, 1e-9)

    def verdicts(self) -> list[tuple[str, str, bool]]:
        return [
            (
                f"closures >= {CLOSURE_MIN:.0%} ({self.voice})",
                f"{self.closed}/{self.bilabials} ({self.closure_share:.0%})",
                self.closure_share >= CLOSURE_MIN,
            ),
            (
                f"openings >= {OPENING_MIN:.0%} ({self.voice})",
                f"{self.opened}/{self.opens} ({self.opening_share:.0%})",
                self.opening_share >= OPENING_MIN,
            ),
            (
                f"rounded/spread width <= {ROUND_MAX_RATIO} ({self.voice})",
                f"{self.round_ratio:.3f}",
                self.round_ratio <= ROUND_MAX_RATIO,
            ),
        ]

    def summary(self) -> dict[str, Any]:
        return {
            "voice": self.voice,
            "bilabials": self.bilabials,
            "closed": self.closed,
            "closure_share": round(self.closure_share, 3),
            "open_vowels": self.opens,
            "opened": self.opened,
            "opening_share": round(self.opening_share, 3),
            "rounded_width": round(self.rounded_width, 4),
            "spread_width": round(self.spread_width, 4),
            "round_ratio": round(self.round_ratio, 3),
            "sync_r": [round(r, 3) for r in self.sync_r],
            "output_s_per_wall_s": round(self.speed, 2),
        }


def render_sentence(
    engine: LipsyncEngine,
    work: Path,
    voice: str,
    text: str,
    index: int,
    height: int,
    portrait: Path | None = None,
) -> Sentence:
    portrait = portrait or portrait_path()
    utterance = speech.synthesize(text, voice)
    pad = np.zeros(round(PAD_S * utterance.rate), np.float32)
    samples = np.concatenate([pad, utterance.samples, pad])
    audio = write_wav(work / f"{voice}-{index}.wav", samples, utterance.rate)
    out = work / f"{voice}-{index}-{height}.mp4"
    started = time.perf_counter()
    engine.render_image(
        str(portrait), str(audio), str(out), height=height, seed=1, idle_motion=False
    )
    render_s = time.perf_counter() - started
    reference = scaled_reference(load_image_bgr(portrait), height)
    rest = rest_landmarks(reference, 1)[0]
    if rest is None:
        raise RuntimeError("no face in the reference portrait")
    tracker = FaceTracker(1)
    gaps, widths, frames = [], [], []
    for frame in iter_frames(out):
        points = tracker.track(frame)[0]
        gaps.append(mouth_opening(points))
        widths.append(_width(points))
        frames.append(frame)
    fps = video_fps(out)
    gap = np.array(gaps, np.float32)
    envelope = frame_envelope_db(_resampled(samples, utterance.rate), 16000, fps, gap.size)
    sentence = Sentence(
        voice=voice,
        text=text,
        gap=gap,
        width=np.array(widths, np.float32),
        rest_gap=mouth_opening(rest),
        fps=fps,
        phonemes=utterance.phonemes,
        render_s=render_s,
        duration_s=samples.size / utterance.rate,
        sync_r=lag_correlation(gap, envelope).best_r,
    )
    sentence.samples = _samples(sentence, frames, face_box(rest, margin=0.05))
    return sentence


def _resampled(samples: FloatArray, rate: int) -> FloatArray:
    times = np.arange(0, samples.size / rate, 1 / 16000)
    return np.interp(times, np.arange(samples.size) / rate, samples).astype(np.float32)


def _width(points: FloatArray | None) -> float:
    if points is None:
        return math.nan
    left, right = points[MOUTH_CORNERS[0]], points[MOUTH_CORNERS[1]]
    return float(np.linalg.norm(left - right)) / max(inter_ocular(points), 1e-6)


def _samples(
    sentence: Sentence, frames: list[UInt8Array], box: tuple[int, int, int, int]
) -> list[tuple[str, str, UInt8Array]]:
    """The most telling frame of each classified phoneme: the most closed for a bilabial,
    the widest open for an open vowel, the middle one otherwise."""
    x0, y0, x1, y1 = box
    # The lower half of the face: mouth and chin.
    y0 = (y0 + y1) // 2
    out = []
    for phone in sentence.phonemes:
        kind = kind_of(phone.ipa)
        indices = sentence.frames_of(phone)
        if kind is None or not indices:
            continue
        gaps = sentence.gap[indices]
        if kind == "bilabial":
            pick = indices[int(np.nanargmin(gaps))] if np.isfinite(gaps).any() else indices[0]
        elif kind == "open":
            pick = indices[int(np.nanargmax(gaps))] if np.isfinite(gaps).any() else indices[0]
        else:
            pick = indices[len(indices) // 2]
        frame = frames[pick]
        crop = frame[max(y0, 0) : y1, max(x0, 0) : x1]
        out.append((phone.ipa, kind, crop.copy()))
    return out


def figures(voice: str, sentences: list[Sentence]) -> LanguageFigures:
    bilabials = closed = opens = opened = 0
    rounded: list[float] = []
    spread: list[float] = []
    for sentence in sentences:
        closed_level, span = sentence.closed_level, sentence.span
        for phone in sentence.phonemes:
            kind = kind_of(phone.ipa)
            indices = sentence.frames_of(phone)
            if kind is None or not indices:
                continue
            gaps = sentence.gap[indices]
            if kind == "bilabial":
                bilabials += 1
                closed += bool(np.nanmin(gaps) <= closed_level + CLOSED_TOLERANCE * span)
            elif kind == "open":
                opens += 1
                opened += bool(np.nanmax(gaps) >= closed_level + OPEN_MIN * span)
            elif kind == "rounded":
                rounded += sentence.width[indices].tolist()
            else:
                spread += sentence.width[indices].tolist()
    speed = sum(s.duration_s for s in sentences) / max(sum(s.render_s for s in sentences), 1e-9)
    return LanguageFigures(
        voice=voice,
        bilabials=bilabials,
        closed=closed,
        opens=opens,
        opened=opened,
        rounded_width=float(np.nanmean(rounded)) if rounded else math.nan,
        spread_width=float(np.nanmean(spread)) if spread else math.nan,
        sync_r=[s.sync_r for s in sentences],
        speed=speed,
    )


def measure(
    engine: LipsyncEngine,
    work: Path | None = None,
    *,
    height: int = 480,
    voices: tuple[str, ...] = ("en-us", "ko"),
    progress: Callable[[str], None] | None = None,
    portrait: Path | None = None,
) -> tuple[list[LanguageFigures], dict[str, list[Sentence]]]:
    """Render every sentence of each voice (on ``portrait``, the astronaut by default) and
    return the figures per voice."""
    with tempfile.TemporaryDirectory(prefix="articulation-") as tmp:
        folder = work or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results: list[LanguageFigures] = []
        rendered: dict[str, list[Sentence]] = {}
        for voice in voices:
            sentences = [
                render_sentence(engine, folder, voice, text, index, height, portrait)
                for index, text in enumerate(SENTENCES[voice])
            ]
            rendered[voice] = sentences
            results.append(figures(voice, sentences))
            if progress is not None:
                progress(f"articulation {voice}: {results[-1].summary()}")
    return results, rendered


def closed_mouth_portrait(path: Path) -> Path:
    """The astronaut with her lips closed at rest, written to ``path``: her smile shows
    teeth, so every m/b/p seals lips that are apart in every pause, which weighs on the
    loudness sync; this face tells that effect from the drive's own. Her lips are sealed
    by the engine's own rig (``MouthRig(closure=1)``), the one input made with engine code."""
    image = load_image_bgr(portrait_path())
    points = rest_landmarks(image, 1)[0]
    if points is None:
        raise RuntimeError("no face in the portrait")
    sealed = image.copy()
    MouthRig(image, points.astype(np.float32)).render_into(sealed, 0.0, 0.0, closure=1.0)
    if not cv2.imwrite(str(path), sealed):
        raise RuntimeError(f"could not write {path}")
    return path


# --- strips -----------------------------------------------------------------------------------

TILE = 120
KIND_COLOURS = {
    "bilabial": (40, 40, 200),
    "open": (40, 150, 40),
    "rounded": (170, 90, 20),
    "spread": (20, 140, 190),
}


def strip(sentences: list[Sentence], per_row: int = 14) -> UInt8Array:
    """One tile per classified phoneme of each sentence, labelled with its IPA and class
    colour (red: m/b/p, most closed frame; green: open vowel, widest; blue: rounded;
    orange: spread)."""
    rows = []
    for sentence in sentences:
        tiles = [_tile(ipa, kind, crop) for ipa, kind, crop in sentence.samples]
        for first in range(0, len(tiles), per_row):
            row = tiles[first : first + per_row]
            row += [np.full_like(tiles[0], 255)] * (per_row - len(row))
            rows.append(np.hstack(row))
    return np.vstack(rows) if rows else np.full((TILE, TILE, 3), 255, np.uint8)


def _tile(ipa: str, kind: str, crop: UInt8Array) -> UInt8Array:
    scale = TILE / max(crop.shape[1], 1)
    size = (TILE, max(1, round(crop.shape[0] * scale)))
    image = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), np.uint8)
    label = np.full((22, TILE, 3), 255, np.uint8)
    # Hershey fonts draw ASCII only: the class letter, plus the IPA where it is ASCII.
    text = kind[0].upper() + " " + "".join(c for c in ipa if c.isascii())
    cv2.putText(label, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, KIND_COLOURS[kind], 1)
    tile = np.vstack([label, image])
    cv2.rectangle(tile, (0, 0), (TILE - 1, tile.shape[0] - 1), KIND_COLOURS[kind], 2)
    return tile


def write_strip(sentences: list[Sentence], path: Path) -> Path:
    if not cv2.imwrite(str(path), strip(sentences)):
        raise RuntimeError(f"could not write {path}")
    return path
