"""A job's audio: what goes into the output file, and the signal driving each mouth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from inference_service.engine.animator import ANALYSIS_RATE
from inference_service.media.audio import load_audio
from inference_service.media.probe import probe_audio

FloatArray = npt.NDArray[np.float32]

# AAC at 48 kHz: every input rate maps onto it without a second resampling in the player.
AUDIO_RATE = 48000
ORDERS = ("left_right", "right_left", "meanwhile")


@dataclass(frozen=True)
class JobAudio:
    output: FloatArray  # (channels, samples) at AUDIO_RATE
    tracks: list[FloatArray]  # one mono signal at ANALYSIS_RATE per mouth, output-aligned

    @property
    def duration_s(self) -> float:
        return self.output.shape[1] / AUDIO_RATE


@dataclass(frozen=True)
class _Decoded:
    output: FloatArray
    analysis: FloatArray


def _decode(path: str | Path, max_s: float | None, channels: int | None = None) -> _Decoded:
    info = probe_audio(path, max_duration_s=max_s)
    wanted = channels or min(info.channels, 2)
    # Decoders may emit codec padding past the stated end; the stated duration is what
    # the user was billed for and what the output must last.
    output = load_audio(path, AUDIO_RATE, channels=wanted)
    output = output[:, : max(1, round(info.duration_s * AUDIO_RATE))]
    analysis = load_audio(path, ANALYSIS_RATE, channels=1)[0]
    analysis = _fit(analysis, round(output.shape[1] * ANALYSIS_RATE / AUDIO_RATE))
    return _Decoded(np.ascontiguousarray(output), analysis)


def _fit(samples: FloatArray, length: int) -> FloatArray:
    if samples.shape[-1] >= length:
        return np.ascontiguousarray(samples[..., :length])
    pad = [(0, 0)] * (samples.ndim - 1) + [(0, length - samples.shape[-1])]
    return np.pad(samples, pad).astype(np.float32)


def single_audio(path: str | Path, max_s: float | None) -> JobAudio:
    decoded = _decode(path, max_s)
    return JobAudio(decoded.output, [decoded.analysis])


def pair_audio(
    left_path: str | Path, right_path: str | Path, order: str, max_s: float | None
) -> JobAudio:
    """Left and right speakers' audio laid out by ``order``; tracks are [left, right]."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
    channels = max(
        min(probe_audio(p, max_duration_s=max_s).channels, 2) for p in (left_path, right_path)
    )
    left = _decode(left_path, max_s, channels)
    right = _decode(right_path, max_s, channels)
    if order == "meanwhile":
        length = max(left.output.shape[1], right.output.shape[1])
        mixed = _fit(left.output, length) + _fit(right.output, length)
        # Two full-scale voices would clip; scale down only when they actually do.
        peak = float(np.abs(mixed).max()) if mixed.size else 0.0
        output = mixed / peak if peak > 1.0 else mixed
        analysis = max(left.analysis.size, right.analysis.size)
        tracks = [_fit(left.analysis, analysis), _fit(right.analysis, analysis)]
        return JobAudio(output.astype(np.float32), tracks)
    first, second = (left, right) if order == "left_right" else (right, left)
    output = np.concatenate([first.output, second.output], axis=1)
    silent_first = np.zeros(first.analysis.size, np.float32)
    silent_second = np.zeros(second.analysis.size, np.float32)
    first_track = np.concatenate([first.analysis, silent_second])
    second_track = np.concatenate([silent_first, second.analysis])
    tracks = [first_track, second_track] if order == "left_right" else [second_track, first_track]
    return JobAudio(np.ascontiguousarray(output), tracks)
