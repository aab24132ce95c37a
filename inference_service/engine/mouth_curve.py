"""Mouth shape per video frame from the audio: how far open, and how rounded.

Loud voiced sounds (vowels) open the jaw, pauses close it. The envelope is
measured in dB relative to the clip's own speaking level, so a quiet
recording animates as much as a loud one, and the room-noise floor is gated
so breathing and hiss keep the mouth shut.

Roundness comes from the spectrum, not the level: rounded vowels (o, u) have
a low second formant, so their energy sits below ~1 kHz, while spread vowels
(i, e) carry strong energy at 1.5-3 kHz. The low/high band ratio, relative
to the clip's own median, says how rounded each frame is.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

# Levels more than this far below the speaking level count as silence.
DYNAMIC_RANGE_DB = 30.0
# Frames within this range of the loudest one take part in estimating the speaking level.
ACTIVE_RANGE_DB = 40.0
# Anything quieter than this (absolute, dBFS) is silence whatever the clip's level.
ABSOLUTE_FLOOR_DB = -60.0
# Fraction of the normalised level below which the mouth stays closed.
GATE = 0.25
# One-pole smoothing per frame at 25 fps: jaws open fast and close a little slower.
ATTACK = 0.75
RELEASE = 0.5
# Lips move before the sound they make is heard.
LEAD_FRAMES = 1
# The rates above are per frame at this rate; other rates get the same time constants.
REFERENCE_FPS = 25.0
# Band edges (Hz) of the roundness feature and its scale: dB of low/high ratio per unit.
LOW_BAND = (250.0, 1000.0)
HIGH_BAND = (1300.0, 3500.0)
ROUNDNESS_DB_SCALE = 12.0
ROUNDNESS_SMOOTHING = 0.45
_BLOCK_FRAMES = 1024


def frame_levels_db(samples: FloatArray, sample_rate: int, fps: float, frames: int) -> FloatArray:
    """RMS level in dBFS of a two-frame window centred on each frame's midpoint."""
    hop = sample_rate / fps
    energy = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    centres = (np.arange(frames) + 0.5) * hop
    start = np.clip(np.round(centres - hop).astype(np.int64), 0, samples.size)
    end = np.clip(np.round(centres + hop).astype(np.int64), 0, samples.size)
    counts = np.maximum(end - start, 1)
    mean_square = (energy[end] - energy[start]) / counts
    return (10.0 * np.log10(mean_square + 1e-12)).astype(np.float32)


def mouth_openness(
    samples: FloatArray,
    sample_rate: int,
    fps: float,
    frames: int,
    jaw: FloatArray | None = None,
) -> FloatArray:
    """Per-frame mouth opening in [0, 1] for mono ``samples``: 0 closed, 1 wide open.

    ``jaw`` (per frame, from the phonemes) scales how far the loudness opens the jaw before
    the smoothing, so an "ee" opens less than an "ah" with the same attack and release."""
    if frames <= 0:
        return np.zeros(0, np.float32)
    levels = frame_levels_db(samples, sample_rate, fps, frames)
    peak = float(levels.max())
    if peak < ABSOLUTE_FLOOR_DB:
        return np.zeros(frames, np.float32)
    # The 90th percentile of the active frames is the clip's speaking level; louder peaks clip
    # to 1. "Active" is relative to the peak so that the estimate does not depend on gain.
    active = levels[levels > peak - ACTIVE_RANGE_DB]
    speaking = float(np.percentile(active, 90))
    floor = max(speaking - DYNAMIC_RANGE_DB, ABSOLUTE_FLOOR_DB)
    level = np.clip((levels - floor) / max(speaking - floor, 1e-6), 0.0, 1.0)
    target = np.clip((level - GATE) / (1.0 - GATE), 0.0, 1.0)
    # A gentle curve so mid-level consonants open the mouth partly, not fully.
    target = target**1.3
    if jaw is not None:
        target = target * jaw
    smoothed = _attack_release(
        target.astype(np.float32), _per_frame(ATTACK, fps), _per_frame(RELEASE, fps)
    )
    return _lead(smoothed, frames)


def mouth_roundness(
    samples: FloatArray, sample_rate: int, fps: float, openness: FloatArray
) -> FloatArray:
    """Per-frame lip rounding in [0, 1], gated by ``openness`` (a closed mouth is not rounded)."""
    frames = openness.shape[0]
    if frames == 0 or not openness.any():
        return np.zeros(frames, np.float32)
    ratio = _band_ratio_db(samples, sample_rate, fps, frames)
    # Lead the ratio like the opening, so both describe the same (upcoming) sound.
    ratio = _lead(ratio, frames)
    active = openness > 0.2
    centre = float(np.median(ratio[active])) if active.any() else float(np.median(ratio))
    target = np.clip((ratio - centre) / ROUNDNESS_DB_SCALE + 0.3, 0.0, 1.0)
    target *= np.clip(openness / 0.3, 0.0, 1.0)
    rate = _per_frame(ROUNDNESS_SMOOTHING, fps)
    return _attack_release(target.astype(np.float32), rate, rate)


def _band_ratio_db(samples: FloatArray, sample_rate: int, fps: float, frames: int) -> FloatArray:
    """Low-band over high-band energy (dB) of a two-frame Hann window at each frame."""
    hop = sample_rate / fps
    size = 1 << int(np.ceil(np.log2(2 * hop)))
    starts = np.round((np.arange(frames) + 0.5) * hop - size / 2).astype(np.int64)
    padded = np.concatenate([np.zeros(size, np.float32), samples, np.zeros(size, np.float32)])
    window = np.hanning(size).astype(np.float32)
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    low = (freqs >= LOW_BAND[0]) & (freqs < LOW_BAND[1])
    high = (freqs >= HIGH_BAND[0]) & (freqs < HIGH_BAND[1])
    ratio = np.empty(frames, np.float32)
    # In blocks: a 10-minute clip's spectra at once would take half a gigabyte.
    for first in range(0, frames, _BLOCK_FRAMES):
        block = starts[first : first + _BLOCK_FRAMES]
        index = block[:, np.newaxis] + size + np.arange(size)[np.newaxis, :]
        windows = padded[np.clip(index, 0, padded.size - 1)] * window
        power = np.abs(np.fft.rfft(windows, axis=1)) ** 2
        ratio[first : first + block.size] = 10.0 * np.log10(
            (power[:, low].sum(axis=1) + 1e-9) / (power[:, high].sum(axis=1) + 1e-9)
        )
    return ratio


def _per_frame(rate_at_reference: float, fps: float) -> float:
    """The one-pole rate at ``fps`` with the same time constant as at 25 fps."""
    return float(1.0 - (1.0 - rate_at_reference) ** (REFERENCE_FPS / fps))


def _lead(curve: FloatArray, frames: int) -> FloatArray:
    led = np.concatenate([curve[LEAD_FRAMES:], np.repeat(curve[-1:], LEAD_FRAMES)])
    return led[:frames].astype(np.float32)


def _attack_release(target: FloatArray, attack: float, release: float) -> FloatArray:
    out = np.empty_like(target)
    value = 0.0
    for index, goal in enumerate(target.tolist()):
        rate = attack if goal > value else release
        value += rate * (goal - value)
        out[index] = value
    return out
