"""Mouth shapes from phonemes: six visemes, coarticulation, and how sure the model was.

Every phone the recogniser can emit (``phonemes.py``: IPA for English, Korean
and most other languages) maps to one of six mouth shapes by its first sound:

| viseme | phones | jaw | lips |
| --- | --- | --- | --- |
| closed | m b p (Korean ㅁ ㅂ ㅃ ㅍ: m, p, p͈, pʰ) | shut | sealed |
| labiodental | f v | nearly shut | lower lip under the upper teeth |
| rounded | u o ɔ ʊ w y ø, and wa we wi jo ju | mid (ɔ: most of the way) | pursed |
| spread | i e ɛ ɪ ɯ (Korean ㅡ) | mid (ɛ: most of the way) | wide |
| open | a ɑ æ ɐ ʌ, aɪ aʊ | wide | relaxed |
| neutral | every other consonant, ə ɝ | most of the way | relaxed |

The loudness drive (``mouth_curve.py``) still says *how far* the jaw opens;
the viseme scales it (``jaw``): an "ah" opens fully, an "ee" about half, an
"m" not at all. Lips round (positive ``round``) or spread (negative) with the
vowel, and a bilabial closes them for at least one frame (``closure``), however
loud the sound around it.

Coarticulation, as in speech: lips round ``ROUND_LEAD_S`` before a rounded
vowel is heard (across the consonants before it), and close ahead of a
bilabial's burst: the recogniser emits a stop where it is released (a median
46 ms after the phoneme's start in espeak-ng's timings), so the closure spans
``CLOSE_BEFORE_S`` to ``-CLOSE_AFTER_S`` before the emission; the video frames
at least half inside it show the lips shut, its neighbours part way. A consonant's
shape holds ``CONSONANT_S``, a vowel's until the next phone.

Closures are found on the bilabial probability itself, not only on the best
path: the model often hears a synthetic or quiet "p" as "f" or a blank while
still giving "p" a tenth of the mass, and a missed closure is what viewers see.

Confidence: each frame carries the mean probability of the phones heard
within ``CONFIDENCE_REACH_S`` (0 where none is), smoothed over
``CONFIDENCE_SMOOTH_S``, mapped from ``UNSURE``..``CONFIDENT`` to 0..1.
Where it is low (noise, music, singing the model cannot read) the shapes fade
to neutral and ``confidence`` lets the caller blend in the loudness-only drive,
so the mouth never freezes and never jumps; closures need ``CLOSE_CONFIDENCE``
(or, from ``UNSURE`` on, a bilabial probability of ``STRONG_CLOSE``), and a
vowel rounds or spreads the lips as far as either its neighbourhood or its own
probability is trusted (the model hears Korean less surely phone by phone).
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from inference_service.engine.phonemes import FRAME_S, Posteriors

FloatArray = npt.NDArray[np.float32]


class Viseme(IntEnum):
    CLOSED = 0
    LABIODENTAL = 1
    ROUNDED = 2
    SPREAD = 3
    OPEN = 4
    NEUTRAL = 5


# Per viseme: how far the jaw opens (times the loudness drive) and the lips' rounding.
JAW = np.array([0.0, 0.12, 0.6, 0.55, 1.0, 0.7], np.float32)
ROUND = np.array([0.0, 0.0, 1.0, -1.0, 0.0, 0.0], np.float32)

_CLOSED = set("mbpɓʙ")
_LABIODENTAL = set("fvʋɱ")
_ROUNDED = set("uoɔɒʊwyøœʉɵʏɥɞɶ")
_SPREAD = set("ieɛɪɨɯɘ")
_OPEN = set("aɑæɐʌäàåã")
# Consonants and central vowels: a sound, so a mouth shape, just not a distinctive one.
_NEUTRAL = set("tdnkgɡqcɟlrɾɹɻszʃʒʂʐɕʑçʝxɣχʁhɦjŋɲɳɴθðʔɫʎəɚɝɜɤɰʈɖɗʀħɮɸβɽ")

# Open-mid vowels (aw in "bought", e in "bed") open the jaw nearly as far as an open one:
# their viseme says the lips' shape, this the jaw's. The model often hears an unstressed
# "a" after a rounded vowel as ɔ ("bought a big"), which then still opens.
_OPEN_MID = set("ɔɒɛœɞ")
OPEN_MID_JAW = 0.85

# Lips round this far ahead of a rounded vowel, and spread this far ahead of a spread one.
ROUND_LEAD_S = 0.1
SPREAD_LEAD_S = 0.06
# Lips reach each shape a little before it is heard.
LIP_LEAD_S = 0.02
JAW_LEAD_S = 0.0
CLOSE_BEFORE_S = 0.08
CLOSE_AFTER_S = -0.01
CLOSE_MERGE_S = 0.07
# How long a consonant's shape holds after its emission, and a vowel's rounding at most.
CONSONANT_S = 0.06
VOWEL_HOLD_S = 0.35
# A local peak of bilabial probability at least this high is a closure, where the model
# hears speech (confidence at least CLOSE_CONFIDENCE: on noise, music or speech-like
# synthetic sound, stray peaks of 0.03-0.1 come with the confidence of no language).
CLOSE_EVIDENCE = 0.03
CLOSE_CONFIDENCE = 0.5
# ...or, where the confidence dips (0.3-0.5: a blank-heavy stretch of real speech, such as
# Korean "밥을" heard as a-blank-p), a peak at least this high. Speech-like synthetic sound
# peaked at 0.2 at most at such confidence (7 voices of the quality bench), noise and tones
# at 0; that "밥을" at 0.35.
STRONG_CLOSE = 0.28
CONFIDENCE_SMOOTH_S = 0.12
CONFIDENCE_REACH_S = 0.3
# Phone probability (smoothed) from which the visemes are trusted at all, and fully. The
# model's typical value on clear speech is 0.7-1.0; noise and music emit nothing, and
# speech-like sound that is no language (the quality bench's synthetic voices) 0.2-0.45.
UNSURE = 0.3
CONFIDENT = 0.6
# A rounded or spread vowel's rounding is its classes' lean (rounded minus spread mass over
# the vowel mass), firmed up: from ``LEAN_PLAIN`` on it rises to 1 at ``LEAN_FULL``. The
# model hears Korean rounded vowels split between o/u and ʌ/ə (leans of 0.3-0.9 where
# English ones have 0.95-1), but the side it leans to is the lips' shape. Open vowels keep
# their plain lean: an "a" rounded or spread further reads less open. The articulation
# bench measured Korean rounded vowels at 0.91 of the spread ones' width before, 0.875 after.
LEAN_PLAIN = 0.5
LEAN_FULL = 0.75


def viseme_of(symbol: str) -> Viseme | None:
    """The mouth shape of one IPA phone; None for tokens that are not a sound."""
    letters = [c for c in unicodedata.normalize("NFD", symbol) if not unicodedata.combining(c)]
    if not letters:
        return None
    first = letters[0]
    # Glides lead into their vowel: "ja" is an open a, "wa" starts rounded.
    if first == "j" and len(letters) > 1:
        first = letters[1]
    for shape, group in (
        (Viseme.CLOSED, _CLOSED),
        (Viseme.LABIODENTAL, _LABIODENTAL),
        (Viseme.ROUNDED, _ROUNDED),
        (Viseme.SPREAD, _SPREAD),
        (Viseme.OPEN, _OPEN),
        (Viseme.NEUTRAL, _NEUTRAL),
    ):
        if first in group:
            return shape
    return None


def class_matrix(symbols: list[str]) -> FloatArray:
    """(symbols, visemes) one-hot: which mouth shape each model token makes."""
    matrix = np.zeros((len(symbols), len(Viseme)), np.float32)
    for index, symbol in enumerate(symbols):
        shape = viseme_of(symbol) if not symbol.startswith("<") else None
        if shape is not None:
            matrix[index, shape] = 1.0
    return matrix


def jaw_matrix(symbols: list[str], matrix: FloatArray) -> FloatArray:
    """(symbols,): how far each model token opens the jaw: its viseme's ``JAW``, and
    ``OPEN_MID_JAW`` for the open-mid vowels."""
    jaw = matrix @ JAW
    for index, symbol in enumerate(symbols):
        letters = unicodedata.normalize("NFD", symbol)
        if jaw[index] > 0.0 and letters[:1] in _OPEN_MID:
            jaw[index] = OPEN_MID_JAW
    return jaw.astype(np.float32)


@dataclass(frozen=True)
class MouthTargets:
    """Per video frame: jaw scale [0, 1], rounding [-1, 1], closure [0, 1], labiodental teeth
    [0, 1] and confidence [0, 1] (blend toward the loudness drive where it is low)."""

    jaw: FloatArray
    round: FloatArray
    closure: FloatArray
    teeth: FloatArray
    confidence: FloatArray


def mouth_targets(posteriors: Posteriors, fps: float, frames: int) -> MouthTargets:
    probs = posteriors.probs
    matrix = class_matrix(posteriors.symbols)
    mass = probs @ matrix  # (t, visemes): probability of each shape per 20 ms
    shapes, held_jaw = _held_shapes(posteriors, matrix)
    confidence = _moving_average(_phone_confidence(posteriors), CONFIDENCE_SMOOTH_S)
    trust = _trust(confidence)
    # Between phones (a blank run past a phone's hold) the loudness alone says how open.
    uncovered = 1.0 - shapes.sum(axis=1)
    jaw = trust * (held_jaw + uncovered) + (1.0 - trust)
    rounding, heard = _vowel_rounding(posteriors, matrix)
    # A vowel the model emits surely rounds or spreads the lips even among unsure phones
    # (Korean is heard phone by phone less surely than English, its vowels no less).
    rounding *= np.maximum(trust, heard)
    teeth = trust * shapes[:, Viseme.LABIODENTAL]
    rounded = np.clip(rounding, 0.0, None)
    spread = np.clip(rounding, None, 0.0)
    return MouthTargets(
        jaw=_to_frames(jaw, fps, frames, JAW_LEAD_S, 1.0),
        round=_to_frames(rounded, fps, frames, LIP_LEAD_S, 0.0)
        + _to_frames(spread, fps, frames, LIP_LEAD_S, 0.0),
        closure=_closures(
            _closure_evidence(mass[:, Viseme.CLOSED], confidence),
            shapes[:, Viseme.CLOSED],
            fps,
            frames,
        ),
        teeth=_to_frames(teeth, fps, frames, 0.0, 0.0),
        confidence=_to_frames(trust, fps, frames, 0.0, 0.0),
    )


def _phone_confidence(posteriors: Posteriors) -> FloatArray:
    """Per 20 ms: the mean probability of the phones heard within ``CONFIDENCE_REACH_S``
    (0 where none is). Over several phones, not one: real speech is heard at 0.6-1.0 phone
    after phone, sound that is no language at 0.2-0.45 with the odd confident one."""
    frames = posteriors.probs.shape[0]
    sums = np.zeros(frames + 1, np.float64)
    counts = np.zeros(frames + 1, np.float64)
    for phone in posteriors.phones():
        if viseme_of(phone.symbol) is None:
            continue
        at = min(round(phone.start_s / FRAME_S), frames - 1)
        sums[at] += phone.confidence
        counts[at] += 1
    reach = round(CONFIDENCE_REACH_S / FRAME_S)
    total, number = np.cumsum(sums), np.cumsum(counts)
    lo = np.clip(np.arange(frames) - reach - 1, -1, frames - 1)
    hi = np.clip(np.arange(frames) + reach, 0, frames - 1)

    def window(cumulative: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return cumulative[hi] - np.where(lo >= 0, cumulative[np.maximum(lo, 0)], 0.0)

    heard = window(number)
    return np.where(heard > 0, window(total) / np.maximum(heard, 1), 0.0).astype(np.float32)


def _held_shapes(posteriors: Posteriors, matrix: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per 20 ms: the shape mix of the phone being spoken (its emission frame's class mass,
    held over the phone; zeros where no phone is), and its jaw (``jaw_matrix``)."""
    shapes = np.zeros((posteriors.probs.shape[0], matrix.shape[1]), np.float32)
    jaw = np.zeros(posteriors.probs.shape[0], np.float32)
    token_jaw = jaw_matrix(posteriors.symbols, matrix)
    for phone in posteriors.phones():
        if viseme_of(phone.symbol) is None:
            continue
        first = round(phone.start_s / FRAME_S)
        mix = posteriors.probs[first] @ matrix
        total = float(mix.sum())
        if total <= 0.0:
            continue
        # A consonant is brief; a vowel lasts until the next phone (or the hold's end).
        vowel = float(mix[Viseme.ROUNDED] + mix[Viseme.SPREAD] + mix[Viseme.OPEN]) / total
        hold = CONSONANT_S + vowel * (phone.end_s - phone.start_s - CONSONANT_S)
        last = max(first + 1, round((phone.start_s + max(hold, FRAME_S)) / FRAME_S))
        shapes[first:last] = mix / total
        jaw[first:last] = float(posteriors.probs[first] @ token_jaw) / total
    return shapes, jaw


def _vowel_rounding(posteriors: Posteriors, matrix: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per 20 ms: the lips' rounding of the vowel being spoken, held over the consonants
    up to the next vowel (rounding spreads over them in speech) for ``VOWEL_HOLD_S`` at most,
    and how surely that vowel was heard (its probability, ``UNSURE``..``CONFIDENT`` to 0..1)."""
    out = np.zeros(posteriors.probs.shape[0], np.float32)
    heard = np.zeros_like(out)
    vowels = []
    for phone in posteriors.phones():
        mix = posteriors.probs[round(phone.start_s / FRAME_S)] @ matrix
        vowel = float(mix[Viseme.ROUNDED] + mix[Viseme.SPREAD] + mix[Viseme.OPEN])
        if vowel > 0.5 * float(mix.sum()) > 0.0:
            rounding = float(mix @ ROUND) / vowel
            if viseme_of(phone.symbol) in (Viseme.ROUNDED, Viseme.SPREAD):
                rounding = _firm(rounding)
            vowels.append((phone.start_s, rounding, float(_trust(vowel))))
    for index, (start, rounding, sure) in enumerate(vowels):
        following = vowels[index + 1][0] if index + 1 < len(vowels) else math.inf
        end = min(following, start + VOWEL_HOLD_S)
        # Rounding starts ahead of its vowel, over the consonants and the previous vowel's
        # tail; spreading a little ahead too (the model emits a vowel some 60 ms into it).
        start -= ROUND_LEAD_S if rounding > 0.0 else SPREAD_LEAD_S
        span = slice(max(round(start / FRAME_S), 0), round(end / FRAME_S))
        out[span] = rounding
        heard[span] = sure
    return out, heard


def _firm(lean: float) -> float:
    """A rounded or spread vowel's lean, firmed up (``LEAN_PLAIN``, ``LEAN_FULL``)."""
    size = float(np.interp(abs(lean), (0.0, LEAN_PLAIN, LEAN_FULL), (0.0, LEAN_PLAIN, 1.0)))
    return math.copysign(size, lean)


def _trust(confidence: FloatArray | float) -> FloatArray:
    """``UNSURE``..``CONFIDENT`` onto 0..1: how far a probability is trusted."""
    return np.clip((np.asarray(confidence, np.float32) - UNSURE) / (CONFIDENT - UNSURE), 0.0, 1.0)


def _closure_evidence(closed: FloatArray, confidence: FloatArray) -> FloatArray:
    """The bilabial probability where a closure may be placed: where the model hears speech,
    or a strong peak where it is merely unsure; 0 elsewhere."""
    heard = confidence >= CLOSE_CONFIDENCE
    strong = (closed >= STRONG_CLOSE) & (confidence >= UNSURE)
    return (closed * (heard | strong)).astype(np.float32)


def _closures(evidence: FloatArray, best: FloatArray, fps: float, frames: int) -> FloatArray:
    """1 on the frames a bilabial closes the lips (at least one per bilabial), 0 elsewhere."""
    out = np.zeros(frames, np.float32)
    if frames == 0 or evidence.size == 0:
        return out
    padded = np.concatenate([[0.0], evidence, [0.0]])
    peaks = (padded[1:-1] >= padded[:-2]) & (padded[1:-1] > padded[2:])
    candidates = np.flatnonzero((peaks & (evidence >= CLOSE_EVIDENCE)) | _onsets(best > 0.5))
    events: list[int] = []
    for event in candidates.tolist():
        # The best path's onset and the probability peak of one stop are a frame or two apart.
        if events and (event - events[-1]) * FRAME_S < CLOSE_MERGE_S:
            continue
        events.append(event)
    starts = np.arange(frames) / fps
    ends = starts + 1.0 / fps
    for event in events:
        at = event * FRAME_S
        first, last = at - CLOSE_BEFORE_S, at + CLOSE_AFTER_S
        overlap = np.clip(np.minimum(ends, last) - np.maximum(starts, first), 0.0, None)
        # Frames at least half inside the closure (and the one holding its middle) shut fully,
        # the others it touches half by their overlap: the lips approach and leave.
        cover = np.where(overlap * fps >= 0.49, 1.0, 0.5 * overlap * fps)
        middle = int(np.clip(np.floor((first + last) / 2 * fps), 0, frames - 1))
        cover[middle] = 1.0
        np.maximum(out, np.clip(cover, 0.0, 1.0).astype(np.float32), out=out)
    return out


def _onsets(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    return mask & ~np.concatenate([[False], mask[:-1]])


def _moving_average(values: FloatArray, seconds: float) -> FloatArray:
    size = max(1, round(seconds / FRAME_S)) | 1
    kernel = np.ones(size, np.float32) / size
    return np.convolve(values, kernel, mode="same").astype(np.float32)


def _to_frames(
    values: FloatArray, fps: float, frames: int, lead_s: float, rest: float
) -> FloatArray:
    """The mean of a 20 ms series over each video frame's interval, ``lead_s`` ahead."""
    if frames == 0:
        return np.zeros(0, np.float32)
    edges = (np.arange(frames + 1) / fps + lead_s) / FRAME_S
    padded = np.concatenate([values.astype(np.float64), [rest]])
    cumulative = np.concatenate([[0.0], np.cumsum(padded)])

    def integral(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # Beyond the series the value is ``rest``; before it too.
        inside = np.clip(x, 0.0, values.size)
        whole = np.floor(inside).astype(np.int64)
        part = inside - whole
        at = cumulative[whole] + part * padded[np.minimum(whole, values.size)]
        return at + (x - inside) * rest

    totals = integral(edges[1:]) - integral(edges[:-1])
    return (totals / np.maximum(edges[1:] - edges[:-1], 1e-9)).astype(np.float32)
