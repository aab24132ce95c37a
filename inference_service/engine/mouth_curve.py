"""How far the mouth is open in each video frame, from the audio's loudness.

Loud voiced sounds (vowels) open the jaw, pauses close it. The envelope is
measured in dB relative to the clip's own speaking level, so a quiet
recording animates as much as a loud one, and the room-noise floor is gated
so breathing and hiss keep the mouth shut.
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


def mouth_openness(samples: FloatArray, sample_rate: int, fps: float, frames: int) -> FloatArray:
    """Per-frame mouth opening in [0, 1] for mono ``samples``: 0 closed, 1 wide open."""
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
    smoothed = _attack_release(target.astype(np.float32))
    led = np.concatenate([smoothed[LEAD_FRAMES:], np.repeat(smoothed[-1:], LEAD_FRAMES)])
    return led[:frames].astype(np.float32)


def _attack_release(target: FloatArray) -> FloatArray:
    out = np.empty_like(target)
    value = 0.0
    for index, goal in enumerate(target.tolist()):
        rate = ATTACK if goal > value else RELEASE
        value += rate * (goal - value)
        out[index] = value
    return out
