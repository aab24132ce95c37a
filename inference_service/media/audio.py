"""Decode any FFmpeg-readable audio into float32 sample arrays."""

from __future__ import annotations

from pathlib import Path

import av
import av.audio.resampler
import numpy as np
import numpy.typing as npt

from inference_service.media.errors import MediaError, short_reason

FloatArray = npt.NDArray[np.float32]

_LAYOUTS = {1: "mono", 2: "stereo"}


def load_audio(path: str | Path, sample_rate: int, channels: int = 1) -> FloatArray:
    """Decode the first audio stream, resampled to ``sample_rate`` and mixed to 1 or 2 channels.

    Returns a C-contiguous ``(channels, samples)`` float32 array in [-1, 1].
    FFmpeg's resampler does the rate and layout conversion, so every input
    format (MP3, AAC, OGG, FLAC, WAV in any sample format) takes the same path.
    """
    if channels not in _LAYOUTS:
        raise ValueError(f"channels must be 1 or 2, not {channels}")
    resampler = av.audio.resampler.AudioResampler(
        format="fltp", layout=_LAYOUTS[channels], rate=sample_rate
    )
    chunks: list[FloatArray] = []
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.audio:
                raise MediaError("audio could not be decoded: the file has no audio stream")
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().astype(np.float32, copy=False))
            for out in resampler.resample(None):  # flush the resampler's delay line
                chunks.append(out.to_ndarray().astype(np.float32, copy=False))
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise MediaError(f"audio could not be decoded: {short_reason(exc).lower()}") from exc
    if not chunks:
        raise MediaError("audio could not be decoded: the audio is empty")
    samples = np.ascontiguousarray(np.concatenate(chunks, axis=1), dtype=np.float32)
    if samples.shape[1] == 0:
        raise MediaError("audio could not be decoded: the audio is empty")
    return samples


def load_audio_mono(path: str | Path, sample_rate: int = 16000) -> FloatArray:
    """Decode to a 1-D float32 mono signal at ``sample_rate`` (for analysis)."""
    return load_audio(path, sample_rate, channels=1)[0]
